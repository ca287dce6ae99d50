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


#: The RoomChannel identifier every contender subscribes with (``room_identifier(TOKEN, 1, 7)``).
TOKEN = "bench-pubsub-token-8f2c1d"
IDENTIFIER = json.dumps(
    {"channel": "RoomChannel", "pubsub_token": TOKEN, "account_id": 1, "user_id": 7}, separators=(",", ":")
)


def voxsig_message(i: int) -> dict[str, Any]:
    """``message.created`` as Chatwoot broadcasts it on RoomChannel: ``Message#push_event_data``
    (the message's attributes, ``created_at`` as unix seconds, ``conversation_id`` the display
    id, a ``conversation`` summary and the ``sender``'s ``push_event_data``)."""
    conversation = 1000 + i % 97
    contact = 90_000 + i % 97
    created = 1_700_000_000 + i
    return {
        "event": "message.created",
        "data": {
            "id": 500_000 + i,
            "content": _CONTENTS[i % len(_CONTENTS)],
            "account_id": 1,
            "inbox_id": 3,
            "conversation_id": conversation,
            "message_type": 0,
            "created_at": created,
            "updated_at": "2023-11-14T22:13:20.512Z",
            "private": False,
            "status": "sent",
            "source_id": None,
            "content_type": "text",
            "content_attributes": {},
            "sender_type": "Contact",
            "sender_id": contact,
            "external_source_ids": {},
            "additional_attributes": {},
            "sentiment": {},
            "conversation": {
                "assignee_id": 7,
                "unread_count": 1 + i % 5,
                "last_activity_at": created,
                "contact_inbox": {"source_id": "3f8e9c2a-51b7-4d0e-9a61-7c2d5e8f1b43"},
            },
            "sender": {
                "additional_attributes": {},
                "custom_attributes": {},
                "email": "jane.doe@example.com",
                "id": contact,
                "identifier": None,
                "name": "Jane Doe",
                "phone_number": "+15550100",
                "thumbnail": "",
                "type": "contact",
            },
        },
    }


def encode_cable(i: int) -> bytes:
    """One ActionCable broadcast frame (about 780 bytes), as Rails writes it."""
    return frame(json.dumps({"identifier": IDENTIFIER, "message": voxsig_message(i)}, separators=(",", ":")).encode())


_PING = frame(b'{"type":"ping","message":1700000000}')


_blasts: dict[int, bytes] = {}
_blasts_lock = threading.Lock()


def blast_bytes(n: int) -> bytes:
    with _blasts_lock:
        data = _blasts.get(n)
        if data is None:
            data = _blasts[n] = b"".join(encode(i) for i in range(n))
        return data


_cable_blasts: dict[int, bytes] = {}


def cable_blast_bytes(n: int) -> bytes:
    # ActionCable pings every 3 s; one every 5,000 broadcasts keeps heartbeat checks honest.
    with _blasts_lock:
        data = _cable_blasts.get(n)
        if data is None:
            data = _cable_blasts[n] = b"".join(encode_cable(i) + (_PING if i % 5000 == 4999 else b"") for i in range(n))
        return data


def read_client_frame(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """One (masked) frame from the client: (opcode, payload)."""

    def need(k: int) -> None:
        while len(buf) < k:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("EOF")
            buf.extend(chunk)

    need(2)
    n = buf[1] & 0x7F
    pos = 2
    if n == 126:
        need(4)
        n = struct.unpack_from("!H", buf, 2)[0]
        pos = 4
    elif n == 127:
        need(10)
        n = struct.unpack_from("!Q", buf, 2)[0]
        pos = 10
    need(pos + 4 + n)
    key = buf[pos : pos + 4]
    payload = bytes(b ^ key[i % 4] for i, b in enumerate(buf[pos + 4 : pos + 4 + n]))
    op = buf[0] & 0x0F
    del buf[: pos + 4 + n]
    return op, payload


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
    protocol = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
        elif name.strip().lower() == "sec-websocket-protocol" and "actioncable-v1-json" in value:
            protocol = "Sec-WebSocket-Protocol: actioncable-v1-json\r\n"
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    sock.sendall(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n{protocol}\r\n"
        ).encode()
    )
    return path


def _await_close(sock: socket.socket, buf: bytearray | None = None) -> None:
    # Skip whatever the client sends (pings, presence updates) until its close frame: answer it.
    sock.settimeout(30)
    buf = bytearray() if buf is None else buf
    while True:
        op, _ = read_client_frame(sock, buf)
        if op == 0x8:
            sock.sendall(b"\x88\x02\x03\xe8")
            return


def _serve_cable(sock: socket.socket, n: int) -> None:
    """ActionCable as Rails speaks it: welcome, confirm the RoomChannel subscription, broadcasts."""
    sock.sendall(frame(b'{"type":"welcome"}'))
    buf = bytearray()
    while True:
        op, payload = read_client_frame(sock, buf)
        if op == 0x1 and json.loads(payload).get("command") == "subscribe":
            break
    confirm = {"identifier": IDENTIFIER, "type": "confirm_subscription"}
    sock.sendall(frame(json.dumps(confirm, separators=(",", ":")).encode()) + cable_blast_bytes(n))
    _await_close(sock, buf)


def serve_connection(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        path = _handshake(sock)
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        n = int(query.get("n", "1000"))
        if parts.path == "/cable":
            _serve_cable(sock, n)
            return
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
        cable_blast_bytes(int(n))

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
