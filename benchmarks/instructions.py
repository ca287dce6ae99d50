"""Instructions per message, counted by valgrind's callgrind: throughput.py's comparison without
the machine's noise.

    python benchmarks/instructions.py                  # orjson (when installed) and json, n=20,000
    python benchmarks/instructions.py --codec json --n 10000

Wall-clock and CPU-time ratios move with the machine: on one 2-CPU VM the ratio realtime_sync /
python-websockets swung from 1.08x to 1.73x between runs of the same code, and another VM's
CPU ran the two clients' instructions at different speeds.  callgrind counts the instructions a
process executes, which is the same whatever else the machine does (it runs the process on a
simulated CPU, one thread at a time, ~50x slower).  Each contender of throughput.py (the same
functions: ``run_voxsig``, ``run_pyws``, ``run_plain_cable``) runs in its own process under
callgrind twice, for ``n`` and ``2n`` messages from the same server (``_server.py``, in another
process, not counted); the difference divided by ``n`` is the cost of a message, start-up and
imports left out.

What it does not show: time the threads spend idle or waiting for each other (realtime_sync's
hand-overs between its I/O thread and its dispatcher, ~40 µs of wall time each on a VM), cache
misses and the cost of system calls in the kernel.  Use it to compare versions of the code
(an optimisation that does not lower the count did not make less work), and throughput.py for
what a user sees.  Needs ``valgrind`` (Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
CONTENDERS = {
    "ours": "realtime_sync `VoxsigClient`, typed events",
    "pyws": "python-websockets sync loop (`json.loads`)",
    "plain": "websocket-client loop (`json.loads`)",
}


def child(who: str, port: int, n: int, codec: str) -> None:
    if codec == "json":
        sys.modules["orjson"] = None  # type: ignore[assignment]  # realtime_sync._json falls back to json
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    import throughput as t

    base = f"ws://127.0.0.1:{port}"
    runs: dict[str, Callable[[str, int], Any]] = {"ours": t.run_voxsig, "pyws": t.run_pyws, "plain": t.run_plain_cable}
    runs[who](base, n)


def count(who: str, port: int, n: int, codec: str) -> int:
    """Instructions of one child process (its every thread) that handles ``n`` messages."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__]
        cmd += ["--child", who, "--port", str(port), "--n", str(n), "--codec", codec]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"{who} ({codec}, n={n}) failed under callgrind:\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=20_000, help="messages of the shorter run (the longer: 2n)")
    parser.add_argument("--codec", choices=("orjson", "json", "both"), default="both")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.port, args.n, args.codec)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    try:
        import orjson  # noqa: F401

        have_orjson = True
    except ImportError:
        have_orjson = False
    codecs = ["orjson", "json"] if args.codec == "both" else [args.codec]
    codecs = [c for c in codecs if c != "orjson" or have_orjson] or ["json"]
    n = args.n
    server = subprocess.Popen(
        [sys.executable, str(HERE / "_server.py"), str(n), str(2 * n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    rows: dict[str, dict[str, float]] = {}
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        for codec in codecs:
            for who in CONTENDERS:
                if who != "ours" and codec != codecs[0]:
                    continue  # the bare loops always decode with json.loads: counted once
                print(f"-- {who} ({codec}) ...", file=sys.stderr, flush=True)
                short, long = count(who, port, n, codec), count(who, port, 2 * n, codec)
                rows.setdefault(who, {})[codec] = (long - short) / n
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)
    pyws = rows["pyws"][codecs[0]]
    print(f"| instructions a message (callgrind, {n:,} vs {2 * n:,} messages) | " + " | ".join(codecs) + " |")
    print("|---|" + "---:|" * len(codecs))
    for who, label in CONTENDERS.items():
        cells = [f"{rows[who][c]:,.0f}" if c in rows[who] else f"{rows[who][codecs[0]]:,.0f}" for c in codecs]
        print(f"| {label} | " + " | ".join(cells) + " |")
    ratios = [f"**{pyws / rows['ours'][c]:.2f}x**" for c in codecs]
    print(
        "| **ratio python-websockets / realtime_sync** (fewer is better: > 1 means we do less) | "
        + " | ".join(ratios)
        + " |"
    )


if __name__ == "__main__":
    main()
