"""Throughput, latency and dispatch scaling of realtime_sync against python-websockets' sync client
and a plain websocket-client loop.

    python benchmarks/throughput.py            # full run (a few minutes on 2 cores)
    python benchmarks/throughput.py --quick    # smoke run
    python benchmarks/throughput.py --codec json --no-write

What runs
---------
* ``_server.py`` in its own process: a raw-socket websocket server on 127.0.0.1 speaking
  ActionCable as Rails does (``welcome``, ``confirm_subscription`` for the RoomChannel
  subscription, a ``ping`` every 5,000 broadcasts), then writing pre-built RoomChannel broadcasts
  of ``message.created`` as Chatwoot sends them (``Message#push_event_data``: the message's
  attributes, a ``conversation`` summary and the ``sender``; about 800 bytes of message, 945-byte
  frames) as fast as the socket takes them.  For latency it paces ``/rate`` frames at 1,000 per
  second, each stamped with ``time.monotonic_ns()``.
* One worker process per JSON codec: orjson, then the standard library (the json worker hides
  orjson before importing realtime_sync, whose ``_json`` module picks orjson when importable).
  Each worker runs the contenders in alternating rounds, the order rotating (A B C, B C A, ...),
  so that the machine getting busier or quieter during the run affects them alike:

  - **realtime_sync**: ``rs.VoxsigClient``: typed events (``event.data`` a frozen
    ``Message`` model with its ``Contact`` sender), one handler on ``message.created`` reading
    ``event.data.content`` and counting; the time from ``start()`` (before connecting) to the
    N-th handler call;
  - **python-websockets**: ``websockets.sync.client.connect``, the subscribe command, then
    ``ws.recv()``, ``json.loads``, skip frames with a ``type``, a dict of handler lists keyed by
    event name, a handler reading ``msg["data"]["content"]``; timed the same way;
  - **websocket-client**: the same loop over ``websocket.create_connection(...,
    skip_utf8_validation=True)``;
  - **realtime_sync, 10,000 registrations** (first worker only: it does not depend on the codec):
    as above plus 10,000 registrations that never match (other names, glob patterns, and
    ``entity_id`` filters on the very event name).

  The bare loops build no model and check nothing (no UTF-8 validation in websocket-client's
  case); realtime_sync validates every frame (RFC 6455), every field's type, and builds a typed
  event.  Each run also reports the client process's CPU time per message (every thread),
  which a busy machine disturbs much less than the wall-clock rate.  Then: latency from the
  server's send to the callback at 1,000 msg/s (both clients, alternating), and the dispatcher
  alone (in-process, no socket, its thread's CPU time) with 1, 13 and 10,001 registrations.

The Markdown table is printed and written to ``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

FULL: dict[str, Any] = {"n": 200_000, "rounds": 5, "latency_seconds": 5.0, "micro_n": 200_000}
QUICK: dict[str, Any] = {"n": 30_000, "rounds": 3, "latency_seconds": 2.0, "micro_n": 50_000}
LATENCY_RATE = 1000
WARMUP_LATENCY = 0.1  # seconds of each latency run left out (connection set-up)


# -- measurements (worker process) ---------------------------------------------------------------


class Counter:
    """Counts handler calls; records the time of the n-th."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.t_end = 0.0
        self.cpu_end = 0.0
        self.done = threading.Event()


def _ours_handler(ctr: Counter) -> Callable[[Any], None]:
    n = ctr.n
    perf = time.perf_counter
    cpu = time.process_time

    def on_message(event: Any) -> None:
        event.data.content  # noqa: B018 - the field read the benchmark asks for
        ctr.count += 1
        if ctr.count == n:
            ctr.t_end = perf()
            ctr.cpu_end = cpu()
            ctr.done.set()

    return on_message


def _plain_handler(ctr: Counter) -> Callable[[Any], None]:
    n = ctr.n
    perf = time.perf_counter
    cpu = time.process_time

    def on_message(msg: Any) -> None:
        msg["data"]["content"]  # the same field read
        ctr.count += 1
        if ctr.count == n:
            ctr.t_end = perf()
            ctr.cpu_end = cpu()
            ctr.done.set()

    return on_message


def register_noise(client: Any, k: int) -> None:
    """``k`` registrations that never match a ``message.created`` event of our feed."""
    import warnings

    noop = lambda event: None  # noqa: E731
    with warnings.catch_warnings():
        # on() warns about names the client never sends ("did you mean ...?"): that is the point.
        warnings.simplefilter("ignore")
        _register_noise(client, k, noop)


def _register_noise(client: Any, k: int, noop: Callable[[Any], None]) -> None:
    for i in range(k):
        kind = i % 4
        if kind == 0:
            client.on(f"conversation.event{i}", noop)  # other exact names
        elif kind == 1:
            client.on(f"contact.{i}.*", noop)  # glob patterns matching other names
        elif kind == 2:
            client.on("message.created", noop, entity_id=10_000_000 + i)  # other entities, same name
        else:
            client.on("message.*", noop, entity_id=20_000_000 + i)  # other entities, by pattern


def run_voxsig(base: str, n: int, noise: int = 0) -> tuple[float, float]:
    """``rs.VoxsigClient`` on the realistic Voxsig stream: typed ``message.created`` events."""
    from _server import TOKEN

    import realtime_sync as rs

    ctr = Counter(n)
    # Every event must reach the handler: no drop_oldest during the blast.
    client = rs.VoxsigClient(f"{base}/cable?n={n}", TOKEN, account_id=1, user_id=7, max_queue=10 * n, name="bench")
    client.on("message.created", _ours_handler(ctr))
    if noise:
        register_noise(client, noise)
    c0, t0 = time.process_time(), time.perf_counter()
    client.start()
    try:
        if not ctr.done.wait(180):
            raise RuntimeError(f"voxsig: only {ctr.count}/{n} events in 180 s (stats: {client.stats})")
    finally:
        client.close(timeout=10)
    if client.stats.dropped:
        raise RuntimeError(f"voxsig: {client.stats.dropped} events dropped")
    return n / (ctr.t_end - t0), (ctr.cpu_end - c0) / n * 1e6


def _cable_loop(recv: Callable[[], Any], n: int, ctr: Counter, loads: Callable[[Any], Any]) -> None:
    """What a user writes over a bare websocket library: decode each frame, keep RoomChannel
    broadcasts (no ``type``), route on the event name to a dict of handler lists."""
    handlers: dict[str, list[Callable[[Any], None]]] = {"message.created": [_plain_handler(ctr)]}
    while ctr.count < n:
        frame = loads(recv())
        if "type" in frame:
            continue  # welcome, confirm_subscription, ping
        msg = frame["message"]
        for handler in handlers.get(msg["event"], ()):
            handler(msg)


def run_pyws(base: str, n: int, loads: Callable[[Any], Any] = json.loads) -> tuple[float, float]:
    """python-websockets' sync client, the loop its documentation shows."""
    from _server import IDENTIFIER
    from websockets.sync.client import connect

    ctr = Counter(n)
    c0, t0 = time.process_time(), time.perf_counter()
    with connect(f"{base}/cable?n={n}", subprotocols=["actioncable-v1-json"], max_size=2**20) as ws:  # type: ignore[list-item]
        ws.send(json.dumps({"command": "subscribe", "identifier": IDENTIFIER}))
        _cable_loop(ws.recv, n, ctr, loads)
    return n / (ctr.t_end - t0), (ctr.cpu_end - c0) / n * 1e6


def run_plain_cable(base: str, n: int, loads: Callable[[Any], Any] = json.loads) -> tuple[float, float]:
    """websocket-client, the same loop."""
    import websocket
    from _server import IDENTIFIER

    ctr = Counter(n)
    c0, t0 = time.process_time(), time.perf_counter()
    ws = websocket.create_connection(
        f"{base}/cable?n={n}", subprotocols=["actioncable-v1-json"], skip_utf8_validation=True
    )
    try:
        ws.send(json.dumps({"command": "subscribe", "identifier": IDENTIFIER}))
        _cable_loop(ws.recv, n, ctr, loads)
    finally:
        ws.close()
    return n / (ctr.t_end - t0), (ctr.cpu_end - c0) / n * 1e6


def latency_ours(base: str, n: int) -> list[int]:
    from _client import BenchClient

    samples: list[int] = []
    done = threading.Event()
    mono = time.monotonic_ns

    def on_message(event: Any) -> None:
        event.data.content  # noqa: B018 - the field read the benchmark asks for
        samples.append(mono() - event.raw["ts"])
        if len(samples) == n:
            done.set()

    client = BenchClient(f"{base}/rate?n={n}&rate={LATENCY_RATE}", name="bench")
    client.on("message.created", on_message)
    client.start()
    try:
        if not done.wait(n / LATENCY_RATE + 30):
            raise RuntimeError(f"latency ours: only {len(samples)}/{n} events")
    finally:
        client.close(timeout=10)
    return samples[int(WARMUP_LATENCY * LATENCY_RATE) :]


def latency_plain(base: str, n: int) -> list[int]:
    import websocket

    samples: list[int] = []
    mono = time.monotonic_ns

    def on_message(msg: Any) -> None:
        msg["data"]["content"]
        samples.append(mono() - msg["ts"])

    handlers = {"message.created": [on_message]}
    ws = websocket.create_connection(f"{base}/rate?n={n}&rate={LATENCY_RATE}", skip_utf8_validation=True)
    try:
        while len(samples) < n:
            msg = json.loads(ws.recv())
            for handler in handlers.get(msg["event"], ()):
                handler(msg)
    finally:
        ws.close()
    return samples[int(WARMUP_LATENCY * LATENCY_RATE) :]


def dispatch_micro(n: int, noise: int) -> float:
    """CPU nanoseconds per event in the dispatcher thread alone (routing + one handler call).

    No socket, no decoding: ``n`` ready events are queued before the dispatcher starts, and the
    handler reads the dispatcher thread's CPU clock at the first and at the last event.
    """
    import logging

    from _client import ChatMessage

    from realtime_sync import DispatchOptions, Event
    from realtime_sync.dispatch import Dispatcher

    d = Dispatcher(DispatchOptions(max_queue=2 * n), logging.getLogger("bench"), "bench")
    marks: list[float] = []
    done = threading.Event()
    count = 0
    clock = time.thread_time

    def on_message(event: Any) -> None:
        nonlocal count
        event.data.content  # noqa: B018 - the field read the benchmark asks for
        count += 1
        if count == 1 or count == n:
            marks.append(clock())
            if count == n:
                done.set()

    d.add("message.created", on_message)

    class _Reg:  # register_noise() talks to anything with on()
        def on(self, name: str, handler: Any, entity_id: Any = None) -> None:
            d.add(name, handler, entity_id)

    register_noise(_Reg(), noise)
    events = [Event("message.created", ChatMessage(id=i, content="hello"), 1000 + i % 97) for i in range(n)]
    for i in range(0, n, 256):  # batches, as the transport hands them over
        d.put_many(events[i : i + 256])
    d.start()
    ok = done.wait(60)
    d.stop(5)
    if not ok:
        raise RuntimeError("dispatch micro-benchmark did not finish")
    return (marks[1] - marks[0]) / (n - 1) * 1e9


def alternate(contenders: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[Any]]:
    """Run every contender once per round, in turn, the order rotating (A B C, B C A, C A B ...)."""
    out: dict[str, list[Any]] = {k: [] for k in contenders}
    keys = list(contenders)
    for r in range(rounds):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            out[key].append(contenders[key]())
    return out


def worker(args: argparse.Namespace) -> dict[str, Any]:
    if args.codec == "json":
        sys.modules["orjson"] = None  # type: ignore[assignment]  # realtime_sync._json falls back to json
    sys.path.insert(0, str(ROOT))
    from realtime_sync import _json

    conf = QUICK if args.quick else FULL
    n, rounds = conf["n"], conf["rounds"]
    base = f"ws://127.0.0.1:{args.port}"
    res: dict[str, Any] = {"codec": _json.CODEC}
    contenders: dict[str, Callable[[], tuple[float, float]]] = {
        "ours": lambda: run_voxsig(base, n),
        "pyws": lambda: run_pyws(base, n),
        "plain": lambda: run_plain_cable(base, n),
    }
    if args.scaling:
        contenders["ours_10k"] = lambda: run_voxsig(base, n, noise=10_000)
    # Warm-up (imports, hooks, page cache), not counted.
    for fn in (run_voxsig, run_pyws, run_plain_cable):
        fn(base, n // 10)
    runs = alternate(contenders, rounds)
    rates = {k: [r for r, _ in v] for k, v in runs.items()}
    cpu = {k: [c for _, c in v] for k, v in runs.items()}
    res["rates"] = rates
    res["cpu_us_all"] = cpu
    res["median"] = {k: statistics.median(v) for k, v in rates.items()}
    res["cpu_us"] = {k: statistics.median(v) for k, v in cpu.items()}
    # Ratios per round (the contenders ran side by side), then the median of those.
    res["ratio"] = statistics.median(o / p for o, p in zip(rates["ours"], rates["plain"], strict=True))
    res["cpu_ratio"] = statistics.median(p / o for o, p in zip(cpu["ours"], cpu["plain"], strict=True))
    res["ratio_pyws"] = statistics.median(o / p for o, p in zip(rates["ours"], rates["pyws"], strict=True))
    res["cpu_ratio_pyws"] = statistics.median(p / o for o, p in zip(cpu["ours"], cpu["pyws"], strict=True))
    if args.scaling:
        res["scaling"] = statistics.median(o / t for o, t in zip(rates["ours"], rates["ours_10k"], strict=True))
        res["cpu_scaling"] = statistics.median(t / o for o, t in zip(cpu["ours"], cpu["ours_10k"], strict=True))
        mn = conf["micro_n"]
        micro = alternate(
            {
                "1": lambda: dispatch_micro(mn, 0),
                "12": lambda: dispatch_micro(mn, 12),
                "10k": lambda: dispatch_micro(mn, 10_000),
            },
            rounds,
        )
        res["micro_ns"] = {k: statistics.median(v) for k, v in micro.items()}
        res["micro_ratio"] = statistics.median(t / o for o, t in zip(micro["1"], micro["10k"], strict=True))
        res["micro_growth"] = statistics.median(t / o for o, t in zip(micro["12"], micro["10k"], strict=True))

    half = int(conf["latency_seconds"] * LATENCY_RATE / 2)
    lat = alternate({"ours": lambda: latency_ours(base, half), "plain": lambda: latency_plain(base, half)}, 2)
    res["latency_ms"] = {}
    for key, parts in lat.items():
        samples = [x for part in parts for x in part]
        res["latency_ms"][key] = {"p50": _pct(samples, 50) / 1e6, "p99": _pct(samples, 99) / 1e6, "n": len(samples)}
    return res


def _pct(values: list[int], p: float) -> float:
    s = sorted(values)
    return float(s[min(len(s) - 1, int(len(s) * p / 100))])


# -- orchestration (main process) ----------------------------------------------------------------


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    import websocket

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import orjson

        orjson_version: str | None = orjson.__version__
    except ImportError:
        orjson_version = None
    return {
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(terse=True),
        "websocket_client": websocket.__version__,
        "websockets": _version("websockets"),
        "orjson": orjson_version,
        "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
    }


def _k(x: float) -> str:
    return f"{x:,.0f}"


def table(results: list[dict[str, Any]], info: dict[str, Any], conf: dict[str, Any], frame_size: int) -> str:
    lines = [
        "| | " + " | ".join(f"`{r['codec']}` codec" for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]

    def row(label: str, fn: Callable[[dict[str, Any]], str], needs: str | None = None) -> None:
        cells = [fn(r) if needs is None or needs in r else "—" for r in results]
        if any(c != "—" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("python-websockets sync loop (`json.loads`), msgs/s", lambda r: _k(r["median"]["pyws"]))
    row("websocket-client loop (`json.loads`), msgs/s", lambda r: _k(r["median"]["plain"]))
    row("**realtime_sync `VoxsigClient`, typed events**, msgs/s", lambda r: f"**{_k(r['median']['ours'])}**")
    row(
        "**ratio realtime_sync / python-websockets** (target ≥ 1.0 json, ≥ 1.5 orjson)",
        lambda r: f"**{r['ratio_pyws']:.2f}x**",
    )
    row("ratio realtime_sync / websocket-client loop", lambda r: f"{r['ratio']:.2f}x")
    row(
        "client CPU per message, python-websockets / websocket-client / realtime_sync",
        lambda r: (
            f"{r['cpu_us']['pyws']:.1f} / {r['cpu_us']['plain']:.1f} / {r['cpu_us']['ours']:.1f} µs"
            f" ({r['cpu_ratio_pyws']:.2f}x)"
        ),
    )
    row(
        "realtime_sync with 10,000 non-matching registrations, msgs/s",
        lambda r: _k(r["median"]["ours_10k"]),
        "scaling",
    )
    row(
        "**cost per event, 10,000 vs 1 registration, end to end** (target ≤ 1.1)",
        lambda r: f"**{r['scaling']:.2f}** (CPU: {r['cpu_scaling']:.2f})",
        "scaling",
    )
    row(
        "dispatcher alone, CPU ns/event, 1 / 13 / 10,001 registrations",
        lambda r: " / ".join(f"{r['micro_ns'][k]:,.0f}" for k in ("1", "12", "10k")),
        "micro_ns",
    )

    def latency(key: str) -> Callable[[dict[str, Any]], str]:
        return lambda r: f"{r['latency_ms'][key]['p50']:.2f} / {r['latency_ms'][key]['p99']:.2f} ms"

    for key, label in (("ours", "realtime_sync"), ("plain", "plain loop")):
        row(f"latency send → callback at {LATENCY_RATE:,} msg/s, {label}, p50 / p99", latency(key))
    orjson = f"yes ({info['orjson']})" if info["orjson"] else "no"
    foot = (
        f"{conf['n']:,} ActionCable frames of {frame_size} bytes per run (a Voxsig `message.created` as "
        "Chatwoot broadcasts it, with sender and conversation), median of "
        f"{conf['rounds']} alternating rounds; latency over {conf['latency_seconds']:.0f} s per client.  "
        f"Machine: {info['usable_cpus']} usable CPUs ({info['cpu'] or 'unknown CPU'}), load average "
        f"{info['load']:.1f} at the start, {info['python']}, {info['platform']}, "
        f"websocket-client {info['websocket_client']}, websockets {info['websockets']}, orjson installed: {orjson}."
    )
    return "\n".join(lines) + "\n\n" + foot + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run (about 30 s)")
    parser.add_argument("--codec", choices=("orjson", "json", "both"), default="both")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/results.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scaling", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return

    conf = QUICK if args.quick else FULL
    started = time.monotonic()
    info = machine()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "_server.py"), str(conf["n"]), str(conf["n"] // 10)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        codecs = ["orjson", "json"] if args.codec == "both" else [args.codec]
        if not info["orjson"]:
            codecs = [c for c in codecs if c != "orjson"] or ["json"]
        results = []
        for i, codec in enumerate(codecs):
            print(f"-- {codec} worker ...", file=sys.stderr, flush=True)
            cmd = [sys.executable, __file__, "--worker", "--codec", codec, "--port", str(port)]
            if args.quick:
                cmd.append("--quick")
            if i == 0:  # the dispatch scaling does not depend on the codec: measured once
                cmd.append("--scaling")
            out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
            result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            print(json.dumps(result), file=sys.stderr, flush=True)
            results.append(result)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)
    sys.path.insert(0, str(HERE))
    import _server

    md = table(results, info, conf, round(sum(len(_server.encode_cable(i)) for i in range(100)) / 100))
    print(md)
    print(f"(total {time.monotonic() - started:.0f} s)", file=sys.stderr)
    if not args.no_write:
        (HERE / "results.md").write_text(md)


if __name__ == "__main__":
    main()
