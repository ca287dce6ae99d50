"""Per-stage CPU cost of the realtime_sync pipeline on throughput.py's realistic frames.

    python benchmarks/stages.py          # with orjson when installed
    python benchmarks/stages.py json     # with the json module

One thread, each stage alone, the best of 5 passes; prints Markdown table rows (µs per message).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

if "json" in sys.argv:
    sys.modules["orjson"] = None  # type: ignore[assignment]  # realtime_sync._json falls back to json
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import _server  # noqa: E402
from websockets.protocol import Protocol, Side, State  # noqa: E402

import realtime_sync as rs  # noqa: E402
from realtime_sync import _json  # noqa: E402
from realtime_sync._frames import ClientCodec  # noqa: E402
from realtime_sync.models import voxsig as mv  # noqa: E402

N = 20000
frames = [_server.encode_cable(i) for i in range(N)]
blob = b"".join(frames)
texts = [f[4:].decode() for f in frames]
dicts = [json.loads(t) for t in texts]
datas = [d["message"]["data"] for d in dicts]


def best(fn: Callable[[], Any], reps: int = 5) -> float:
    out = []
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        out.append(time.process_time() - t0)
    return min(out) / N * 1e6


def codec() -> None:
    c = ClientCodec()
    for i in range(0, len(blob), 262144):
        c.receive_data(blob[i : i + 262144])


def pyws_parse() -> None:
    p = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
    for i in range(0, len(blob), 65536):
        p.receive_data(blob[i : i + 65536])
        for f in p.events_received():
            f.data.decode()


hm = mv._converter.get_structure_hook(mv.Message)
client = rs.VoxsigClient("ws://127.0.0.1:1/cable", _server.TOKEN, account_id=1, user_id=7)
adapter: Any = getattr(client, "_adapter", None) or client._engine.adapter  # type: ignore[attr-defined]
now = time.monotonic()
adapter.clock_offset = 0.0
adapter.connection_made(now)
adapter.receive_text('{"type":"welcome"}', now)
adapter.data_to_send()
adapter.receive_text(json.dumps({"identifier": _server.IDENTIFIER, "type": "confirm_subscription"}), now)
adapter.events_received()


def adapt() -> None:
    for x in texts:
        adapter.receive_text(x, now)
    assert len(adapter.events_received()) == N


res = {
    "websocket frames -> str, realtime_sync codec": best(codec),
    "websocket frames -> str, python-websockets Protocol": best(pyws_parse),
    f"JSON decode ({_json.CODEC})": best(lambda: [_json.loads(t) for t in texts]),
    "Message model (with Contact sender), cattrs hook": best(lambda: [hm(d, mv.Message) for d in datas]),
    "VoxsigAdapter.receive_text, whole (JSON + model + Event)": best(adapt),
}
for k, v in res.items():
    print(f"| {k} | {v:.1f} |")
