"""The engine's read path on real sockets: TLS bytes that came with the 101 response."""

from __future__ import annotations

import json
import socket
import ssl
import threading

from ._echo import EchoClient
from ._rawws import accept_key, server_frame
from .conftest import FAST, Recorder, T


def test_a_frame_sent_with_the_101_over_tls_is_read_at_once(tls_files, make_client):
    # The server writes the 101 response and a first frame in one TLS record, then waits: the
    # frame sits decrypted inside the client's TLS layer, invisible to the selector.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_files)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        raw, _ = listener.accept()
        sock = ctx.wrap_socket(raw, server_side=True)
        held.append(sock)
        request = b""
        while b"\r\n\r\n" not in request:
            request += sock.recv(4096)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        head = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
        )
        sock.sendall(head + server_frame(1, json.dumps({"event": "hello", "id": 1}).encode()))
        done.wait(T(30))  # and nothing more: no later read would wake the client

    thread = threading.Thread(target=serve, name="realtime_sync-test-tls-101", daemon=True)
    thread.start()
    try:
        client: EchoClient = make_client(f"wss://127.0.0.1:{port}/", ca_bundle=tls_files[0], reconnect=FAST)
        rec = Recorder(client)
        client.start()
        assert rec.wait("hello", timeout=5).entity_id == 1
    finally:
        done.set()
        thread.join(T(5))
        for s in held:
            s.close()
        listener.close()
