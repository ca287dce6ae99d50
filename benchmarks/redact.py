"""How long ``redact()`` takes on 1 MiB of adversarial input (issue 10: it must be linear).

    python benchmarks/redact.py            # 1 MiB per shape, plus 256 KiB to show the scaling
    python benchmarks/redact.py --size 4   # MiB
    python benchmarks/redact.py --lines    # µs per typical DEBUG log line (the common case)

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
    "free text name: value": "token: password: ",
}


#: Log lines as the transport writes them at DEBUG (frames cut at 500 characters), and a few
#: the free-text ``name: value`` rule acts on.  Every one passes through redact().
LINES = {
    "voxsig frame sent": '> {"command":"message","identifier":"{\\"channel\\":\\"RoomChannel\\",'
    '\\"pubsub_token\\":\\"k3yJxQ9sLmN0pQrStUvWxYz1\\",\\"account_id\\":1,\\"user_id\\":7}",'
    '"data":"{\\"action\\":\\"update_presence\\"}"}',
    "voxsig broadcast received": '< {"identifier":"{\\"channel\\":\\"RoomChannel\\",\\"pubsub_token\\":'
    '\\"k3yJxQ9sLmN0pQrStUvWxYz1\\",\\"account_id\\":1,\\"user_id\\":7}","message":{"event":'
    '"message.created","data":{"id":4711,"content":"Hello, how can I help you with your order today?",'
    '"account_id":1,"inbox_id":3,"conversation_id":42,"message_type":1,"created_at":1732780000,'
    '"private":false,"sender":{"id":7,"name":"Agent Smith","type":"user"}}}}',
    "jifeline push received": '< {"type":"ticket","action":"update","requestId":12,"data":{"id":32423,'
    '"state":2,"vin":"WDB1234561A123456","customer_reference":"order 88","updated_at":"2026-11-28T07:20:00Z"}}',
    "lifecycle": "connected to wss://app.voxsig.com/cable (connection attempt 1)",
    "server error, free text": "handshake refused: HTTP 401: invalid token: k3yJxQ9sLmN0pQrStUvWxYz1",
    "prose with a colon": "CSRF token: GET https://gws.example.com/api/v2/me failed: connection refused",
}


def lines(rounds: int = 20000) -> None:
    """Microseconds per redact() of each typical line (best of 5 timeit runs)."""
    import timeit

    for i in range(4):
        _redact.register_secret(f"typical-secret-{i:06d}")
    print("| line | chars | µs per redact() |")
    print("| --- | ---: | ---: |")
    for name, line in LINES.items():
        best = min(timeit.repeat(lambda line=line: _redact.redact(line), number=rounds, repeat=5)) / rounds
        print(f"| {name} | {len(line)} | {best * 1e6:.2f} |")


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
    parser.add_argument("--lines", action="store_true", help="time typical log lines instead")
    args = parser.parse_args(argv)
    if args.lines:
        lines()
        return
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
