"""Per-stage CPU cost of the realtime_sync pipeline on throughput.py's realistic frames.

    python benchmarks/stages.py          # with orjson when installed
    python benchmarks/stages.py json     # with the json module

One thread, each stage alone over the same 2,000 frames, the best of 15 passes (CPU time of
the thread); prints Markdown table rows (µs per message).  The garbage collector is off while a
stage runs and nothing a stage builds is kept (each result is dropped before the next), so the
figures are the work itself: a stage that kept 20,000 results alive used to pay for the
collector traversing them again and again (``orjson.loads`` looked 6x dearer than it is).  The
collector's share in the end-to-end run is what flow control keeps small (see the README).
"""

from __future__ import annotations

import gc
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
from realtime_sync import _json, _redact  # noqa: E402
from realtime_sync._frames import ClientCodec  # noqa: E402
from realtime_sync.events import Event, build_event  # noqa: E402
from realtime_sync.models import voxsig as mv  # noqa: E402

N = 2000
frames = [_server.encode_cable(i) for i in range(N)]
blob = b"".join(frames)
texts = [f[4:].decode() for f in frames]
dicts = [json.loads(t) for t in texts]
datas = [d["message"]["data"] for d in dicts]


def best(fn: Callable[[], Any], reps: int = 15) -> float:
    """CPU µs per message of ``fn`` (one pass over the N frames), the best of ``reps``."""
    gc.collect()
    gc.disable()
    try:
        out = []
        for _ in range(reps):
            t0 = time.thread_time()
            fn()
            out.append(time.thread_time() - t0)
    finally:
        gc.enable()
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


def each(fn: Callable[[Any], Any], items: list[Any]) -> Callable[[], None]:
    def run() -> None:
        for x in items:
            fn(x)  # the result is dropped at once: nothing outlives its message

    return run


message_hook = mv.structure_hook(mv.Message)
model = message_hook(datas[0], mv.Message)
client = rs.VoxsigClient("ws://127.0.0.1:1/cable", _server.TOKEN, account_id=1, user_id=7)
adapter: Any = client._engine.adapter  # type: ignore[attr-defined]
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
        adapter._events.clear()  # as the engine hands them over: none kept


res = {
    "websocket frames -> str, realtime_sync codec": best(codec),
    "websocket frames -> str, python-websockets Protocol": best(pyws_parse),
    f"JSON decode ({_json.CODEC})": best(each(_json.loads, texts)),
    "Message model (with Contact sender), generated hook": best(each(lambda d: message_hook(d, mv.Message), datas)),
    "Event construction, `Event(...)`": best(
        each(lambda d: Event("message.created", model, 5, d, 1.0, None, None, None, 1, False), dicts)
    ),
    "Event construction, `build_event` (the adapter's)": best(
        each(lambda d: build_event("message.created", model, 5, d, 1.0, None, None, None, 1, False), dicts)
    ),
    "VoxsigAdapter.receive_text, whole (JSON + model + Event; the raw's secret walk deferred)": best(adapt),
    "the deferred secret walk of `event.raw` (paid on its first read only)": best(
        each(_redact.redact_members, [d["message"] for d in dicts])
    ),
}
for k, v in res.items():
    print(f"| {k} | {v:.1f} |")

# The collector's share when events pile up (what flow control prevents): the adapter step
# again with the collector on and every event kept, as a queue 2,000 events deep keeps them.
kept: list[Any] = []


def adapt_keep() -> None:
    for x in texts:
        adapter.receive_text(x, now)
    kept.extend(adapter.events_received())


def timed_keep() -> float:
    kept.clear()
    gc.collect()
    t0 = time.thread_time()
    adapt_keep()
    return (time.thread_time() - t0) / N * 1e6


piled = min(timed_keep() for _ in range(5))
print(f"| (adapter step with the collector on and 2,000 events kept alive: {piled:.1f}) | |")
