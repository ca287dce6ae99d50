"""The garbage collector under realtime_sync's stream in a process with a big heap.

    python benchmarks/big_heap.py                  # 1,000,000 live objects, 6 runs of 100,000
    python benchmarks/big_heap.py --objects 300000 --runs 3

A Django or Flask process holds hundreds of thousands of objects.  CPython's full collection
walks every one of them (tens of milliseconds, every thread stopped), and it comes after enough
middle collections, which come after enough young ones: a client that runs young collections
while its events are alive (promoting them) or more often than the stream needs pays for it
in full collections.  This script keeps ``--objects`` live container objects (a list of
one-item lists, tracked by the collector), collects once (the heap is then long-lived, nothing
pending), and runs ``throughput.run_voxsig`` (the realistic Voxsig stream of ``throughput.py``,
typed events, one handler) ``--runs`` times against ``_server.py`` in another process, counting
every collection by generation with ``gc.callbacks``.  Prints one JSON line: wall time a
message per run, young / middle / full collections over all runs, the full collections'
durations (ms) and the collector's total time.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--objects", type=int, default=1_000_000, help="live objects kept (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=6, help="runs of --messages each (default 6)")
    parser.add_argument("--messages", type=int, default=100_000, help="messages a run (default 100,000)")
    args = parser.parse_args()

    import throughput  # after sys.path

    heap = [[i] for i in range(args.objects)]  # tracked containers: the collector walks them
    server = subprocess.Popen(
        [sys.executable, str(HERE / "_server.py"), str(args.messages)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    collections: list[tuple[int, float]] = []
    started = [0.0]

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            collections.append((info["generation"], time.perf_counter() - started[0]))

    try:
        port = int(server.stdout.readline().split()[1])  # type: ignore[union-attr]
        base = f"ws://127.0.0.1:{port}"
        throughput.run_voxsig(base, 1_000)  # imports and first-call set-up out of the count
        gc.collect()
        gc.callbacks.append(watch)
        walls = [round(1e6 / throughput.run_voxsig(base, args.messages)[0], 2) for _ in range(args.runs)]
    finally:
        if watch in gc.callbacks:
            gc.callbacks.remove(watch)
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(10)
    by_gen = [sum(1 for g, _ in collections if g == k) for k in range(3)]
    result = {
        "objects": len(heap),
        "messages": args.runs * args.messages,
        "wall_us_per_message": walls,
        "young": by_gen[0],
        "middle": by_gen[1],
        "full": by_gen[2],
        "full_ms": [round(d * 1e3, 1) for g, d in collections if g == 2],
        "collector_ms": round(sum(d for _, d in collections) * 1e3, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
