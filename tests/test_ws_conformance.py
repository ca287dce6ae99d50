"""RFC 6455 on the wire: a raw-socket server sends what no server library would, a real client
answers.

Every violation fails the connection with the RFC's close code (the close frame the client sent
is asserted), the client reports an ``error`` of kind ``"protocol"`` (with the code) before
``disconnected``, reconnects, resubscribes, and loses no valid message sent before the
violation or after the reconnect.  The codec's own tests (test_frames.py) cover the same rules
exhaustively without a network.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest

import realtime_sync as rs
from realtime_sync._frames import Frame
from realtime_sync.engine import CLOSE_LINGER

from ._echo import EchoClient
from ._rawws import RawServer, server_frame
from .conftest import FAST, Recorder, T


@pytest.fixture
def raw_server():
    with RawServer() as server:
        yield server


def _client(url: str, **kw) -> EchoClient:
    kw.setdefault("reconnect", FAST)
    client = EchoClient(url, **kw)
    client.subscribe("room")
    return client


def _msg(name: str, n: int) -> bytes:
    return server_frame(1, f'{{"event":"{name}","id":{n}}}'.encode())


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return server_frame(8, struct.pack("!H", code) + reason)


VIOLATIONS = [
    ("rsv1", server_frame(1, b"{}", rsv=4), 1002),
    ("rsv2", server_frame(1, b"{}", rsv=2), 1002),
    ("rsv3", server_frame(9, b"", rsv=1), 1002),
    ("masked", Frame(1, b"{}").serialize(mask=b"abcd"), 1002),
    ("opcode-3", server_frame(3, b"x"), 1002),
    ("opcode-B", server_frame(0xB, b"x"), 1002),
    ("ping-126", server_frame(9, b"p" * 126), 1002),
    ("ping-2^40", b"\x89\x7f" + struct.pack("!Q", 1 << 40), 1002),
    ("fragmented-ping", server_frame(9, b"p", fin=False), 1002),
    ("text-inside-fragments", server_frame(1, b'{"event":', fin=False) + _msg("lost", 9), 1002),
    ("orphan-continuation", server_frame(0, b"x"), 1002),
    ("close-999", close_frame(999), 1002),
    ("close-1004", close_frame(1004), 1002),
    ("close-1005", close_frame(1005), 1002),
    ("close-1006", close_frame(1006), 1002),
    ("close-1015", close_frame(1015), 1002),
    ("close-5000", close_frame(5000), 1002),
    ("close-1-byte", server_frame(8, b"\x03"), 1002),
    ("invalid-utf8", server_frame(1, b'{"event":"\xff"}'), 1007),
    ("invalid-utf8-fragmented", server_frame(1, b'{"e":"\xce', fin=False) + server_frame(0, b'\xff"}'), 1007),
    ("invalid-utf8-close-reason", close_frame(1000, b"\xed\xa0\x80"), 1007),
    ("too-many-fragments", server_frame(1, b"{", fin=False) + server_frame(0, fin=False) * 5000, 1009),
]


@pytest.mark.parametrize("name, violation, code", VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_violation_fails_the_connection_and_the_client_comes_back(raw_server, name, violation, code):
    client = _client(raw_server.url)
    try:
        rec = Recorder(client)
        client.start()
        conn = raw_server.wait_for_connection(1)
        conn.wait_text('"subscribe":"room"')
        # A valid message, the violation and (in the same write) a message that follows it: the
        # first is delivered, the last is discarded with the failed connection (RFC 6455 7.1.7).
        conn.send_raw(_msg("before", 1) + violation + _msg("after_violation", 2))

        assert conn.wait_close(timeout=T(5))[0] == code
        assert not conn.unmasked_frame
        err = rec.wait("error", where=lambda e: e.data.kind == "protocol")
        assert isinstance(err.data.exception, rs.ProtocolError) and err.data.exception.code == code
        assert f"close code {code}" in err.data.message
        disc = rec.wait("disconnected")
        assert disc.data.will_reconnect and disc.data.code == code
        names = rec.names()
        assert names.index("error") < names.index("disconnected")

        conn2 = raw_server.wait_for_connection(2)
        conn2.wait_text('"subscribe":"room"')  # resubscribed
        conn2.send_raw(_msg("after_reconnect", 3))
        rec.wait("after_reconnect")
        got = [e.name for e in rec.events if e.name in ("before", "after_violation", "lost", "after_reconnect")]
        assert got == ["before", "after_reconnect"]
        assert conn.eof.wait(T(5)), "the client closed the failed connection"
    finally:
        client.close(timeout=5)


def test_ping_is_answered_with_an_exact_pong_and_the_connection_carries_on(raw_server):
    client = _client(raw_server.url)
    try:
        rec = Recorder(client)
        client.start()
        conn = raw_server.wait_for_connection()
        payload = bytes(range(125))
        conn.send_raw(server_frame(9, payload) + _msg("m", 1))
        conn.wait_for(lambda fs: (0xA, payload) in fs)
        rec.wait("m")
        assert "error" not in rec.names()
    finally:
        client.close(timeout=5)


@pytest.mark.parametrize("code", [1000, 1001, 1011, 3000, 4999])
def test_valid_close_is_answered_with_the_same_code_and_the_client_reconnects(raw_server, code):
    client = _client(raw_server.url)
    try:
        rec = Recorder(client)
        client.start()
        conn = raw_server.wait_for_connection()
        conn.send_raw(_msg("m", 1) + close_frame(code, b"bye"))
        assert conn.wait_close() == (code, b"")
        disc = rec.wait("disconnected")
        assert disc.data.code == code and "bye" in disc.data.reason
        assert not [e for e in rec.events if e.name == "error"]
        raw_server.wait_for_connection(2).wait_text('"subscribe":"room"')
    finally:
        client.close(timeout=5)


def test_empty_close_is_answered_with_an_empty_close(raw_server):
    client = _client(raw_server.url)
    try:
        client.start()
        conn = raw_server.wait_for_connection()
        conn.send_raw(server_frame(8))
        assert conn.wait_close() == (None, b"")
    finally:
        client.close(timeout=5)


def test_binary_message_is_an_error_event_not_a_text_event(raw_server):
    client = _client(raw_server.url)
    try:
        rec = Recorder(client)
        client.start()
        conn = raw_server.wait_for_connection()
        conn.send_raw(server_frame(2, b'{"event":"bin","id":1}') + _msg("m", 2))
        rec.wait("m")
        (err,) = [e.data for e in rec.events if e.name == "error"]
        assert err.kind == "bad_frame" and "binary message" in err.message
        assert "bin" not in rec.names() and len(raw_server.connections) == 1
    finally:
        client.close(timeout=5)


def test_fragmented_message_with_control_frames_between(raw_server):
    client = _client(raw_server.url)
    try:
        rec = Recorder(client)
        client.start()
        conn = raw_server.wait_for_connection()
        text = '{"event":"frag","id":7,"data":{"s":"κόσμε"}}'.encode()
        stream = server_frame(1, text[:5], fin=False) + server_frame(9, b"x")
        stream += b"".join(server_frame(0, text[i : i + 1], fin=False) for i in range(5, len(text) - 1))
        stream += server_frame(0xA) + server_frame(0, text[-1:])
        for i in range(0, len(stream), 7):  # split across many reads
            conn.send_raw(stream[i : i + 7])
        assert rec.wait("frag").data == {"s": "κόσμε"}
        conn.wait_for(lambda fs: (0xA, b"x") in fs)
    finally:
        client.close(timeout=5)


def test_oversized_message_is_skipped_and_the_connection_carries_on(raw_server):
    client = _client(raw_server.url, max_frame_size=1000)
    try:
        rec = Recorder(client)
        client.start()
        conn = raw_server.wait_for_connection()
        # One frame over the limit, and a fragmented message over it in total.
        big = server_frame(1, b"x" * 5000)
        frag = server_frame(1, b"y" * 600, fin=False) + server_frame(0, b"y" * 600)
        conn.send_raw(big + frag + _msg("m", 1))
        rec.wait("m")
        errs = [e.data for e in rec.events if e.name == "error"]
        assert [e.kind for e in errs] == ["bad_frame", "bad_frame"]
        assert all("exceeds max_frame_size=1000" in e.message for e in errs)
        assert len(raw_server.connections) == 1
    finally:
        client.close(timeout=5)


def test_ping_flood_does_not_block_the_client(raw_server):
    # The server floods pings and stops reading: the client's socket buffer fills with pongs.
    # Pongs are coalesced and never block the transport: messages keep flowing, close() is quick.
    client = _client(raw_server.url)
    try:
        rec = Recorder(client)
        client.start()
        conn = raw_server.wait_for_connection()
        conn.wait_text('"subscribe":"room"')
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.reading.clear()
        flood = server_frame(9, b"p" * 125) * 2000
        for i in range(40):
            conn.send_raw(flood)
            conn.send_raw(_msg("tick", i))
        rec.wait("tick", where=lambda e: e.entity_id == 39, timeout=20)
        assert "error" not in rec.names()
        t = time.monotonic()
        client.close(timeout=10)
        # This server does not read: after its close frame the client waits CLOSE_LINGER for a
        # FIN that cannot come, and no more (the pongs never block it).
        assert time.monotonic() - t < CLOSE_LINGER + T(2.5)
        conn.reading.set()
    finally:
        client.close(timeout=5)
