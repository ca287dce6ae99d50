"""A raw-socket websocket server that blasts pre-built frames, for benchmarks/throughput.py.

It runs in its own process (``python benchmarks/_server.py``), prints ``PORT <n>`` on stdout once
it listens on 127.0.0.1, and serves every connection on its own thread until stdin closes.
Written against the bare socket, not python-websockets, so that the server costs as little as
possible and the measurement is the client's: a blast is one ``sendall()`` of frames built
before the connection (the kernel copies; the server process barely runs).

The request path picks the mode:

``/blast?n=N``
    send N ``message.created`` frames as fast as the socket takes them.
``/rate?n=N&rate=R``
    send N frames, R per second, each stamped with ``"ts": time.monotonic_ns()`` just before it
    is written (CLOCK_MONOTONIC is shared by every process on the machine, so the client
    computes the latency as its own ``monotonic_ns()`` minus ``ts``).

After sending, the server waits for the client's close frame, answers it, and closes (websocket
clients wait for that answer, RFC 6455 section 5.5.1).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import sys
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_CONTENTS = [
    "Hello, I ordered a blue kettle last Tuesday and it still has not shipped. Can you check?",
    "Thanks! The tracking number works now.",
    "Could you send me the invoice for order #48213 as a PDF, please?",
    "I would like to change the delivery address to my office.",
]


def message(i: int, ts: int | None = None) -> dict[str, Any]:
    """A Voxsig-like ``message.created`` broadcast (about 400 bytes as JSON)."""
    conversation = 1000 + i % 97
    msg: dict[str, Any] = {
        "event": "message.created",
        "id": conversation,
        "data": {
            "id": 500_000 + i,
            "content": _CONTENTS[i % len(_CONTENTS)],
            "account_id": 1,
            "inbox_id": 3,
            "conversation_id": conversation,
            "message_type": i % 2,
            "created_at": 1_700_000_000 + i,
            "private": False,
            "status": "sent",
            "content_type": "text",
            "sender_type": "Contact",
            "sender_id": 90_000 + i % 97,
            "sender": {"id": 90_000 + i % 97, "name": "Jane Doe", "type": "contact", "email": "jane@example.com"},
        },
    }
    if ts is not None:
        msg["ts"] = ts
    return msg


def frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (servers never mask, RFC 6455 section 5.1)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def encode(i: int, ts: int | None = None) -> bytes:
    return frame(json.dumps(message(i, ts), separators=(",", ":")).encode())


_blasts: dict[int, bytes] = {}
_blasts_lock = threading.Lock()


def blast_bytes(n: int) -> bytes:
    with _blasts_lock:
        data = _blasts.get(n)
        if data is None:
            data = _blasts[n] = b"".join(encode(i) for i in range(n))
        return data


def _handshake(sock: socket.socket) -> str:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("EOF during the handshake")
        buf += chunk
    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    path = lines[0].split(" ")[1]
    key = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    sock.sendall(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )
    return path


def _await_close(sock: socket.socket) -> None:
    # The client sends nothing but a close frame (maybe a ping first): answer the close.
    sock.settimeout(30)
    while True:
        data = sock.recv(65536)
        if not data:
            return
        if data[0] & 0x0F == 0x8:
            sock.sendall(b"\x88\x02\x03\xe8")
            return


def serve_connection(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        path = _handshake(sock)
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        n = int(query.get("n", "1000"))
        if parts.path == "/blast":
            sock.sendall(blast_bytes(n))
        elif parts.path == "/rate":
            interval_ns = int(1e9 / float(query.get("rate", "1000")))
            start = time.monotonic_ns()
            for i in range(n):
                due = start + i * interval_ns
                delay = due - time.monotonic_ns()
                if delay > 0:
                    time.sleep(delay / 1e9)
                sock.sendall(encode(i, time.monotonic_ns()))
        _await_close(sock)
    except OSError:
        pass
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


def main() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    for n in sys.argv[1:]:  # blasts to build before the first connection
        blast_bytes(int(n))

    def accept_loop() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve_connection, args=(sock,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    sys.stdin.read()  # the parent closes our stdin (or dies): stop


if __name__ == "__main__":
    main()
