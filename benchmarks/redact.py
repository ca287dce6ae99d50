"""How long ``redact()`` takes on 1 MiB of adversarial input (issue 10: it must be linear).

    python benchmarks/redact.py            # 1 MiB per shape, plus 256 KiB to show the scaling
    python benchmarks/redact.py --size 4   # MiB

Each shape targets one of the redactor's rules with the input that makes a backtracking
regex quadratic (the redactor before issue 10 took 23 s on 32 KB of the first one).  It runs with
a typical registry (4 secrets), then with both registries full (the worst case for the
literal pass: one substring search per secret).
The ratio column is time(size) / time(size / 4) with full registries: about 4 means linear.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realtime_sync import _redact

MiB = 1024 * 1024

SHAPES = {
    "plain letters": "abcdefgh",  # the old scheme:// pattern: 23 s on 32 KB
    "scheme:// without @": "a://b:c",
    "escaped quotes": '\\"token\\":\\"' + "\\" * 20,
    "keys without values": '"token" "password" ',
    "header name + spaces": "Authorization" + " " * 40,
    "query keys": "?token&access_token&",
    "unclosed credentials": '{"credentials":{',
    "chat text": "Hello, how can I help you with your order today? ",
}


def _input(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def _time(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        _redact.redact(text)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=float, default=1.0, help="input size in MiB (default 1)")
    args = parser.parse_args(argv)
    size = int(args.size * MiB)
    for i in range(4):  # a typical client: a token, a password, a cookie, a header value
        _redact.register_secret(f"typical-secret-{i:06d}")
    typical = {name: _time(_input(unit, size)) for name, unit in SHAPES.items()}
    for i in range(_redact.MAX_SECRETS):
        _redact.register_secret(f"client-secret-{i:06d}")
    for i in range(_redact.MAX_SERVER_SECRETS):
        _redact.register_server_secret(f"server-cookie-{i:06d}")
    n = _redact.MAX_SECRETS + _redact.MAX_SERVER_SECRETS
    print(f"| input ({args.size:g} MiB) | 4 secrets registered | {n} (both registries full) | ratio to 1/4 size |")
    print("| --- | ---: | ---: | ---: |")
    for name, unit in SHAPES.items():
        full = _time(_input(unit, size))
        quarter = _time(_input(unit, size // 4))
        print(f"| {name} | {typical[name] * 1000:.0f} ms | {full * 1000:.0f} ms | {full / quarter:.1f} |")


if __name__ == "__main__":
    main()
