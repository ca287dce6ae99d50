"""Malformed frames become error events with context; the connection and later events carry on."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import realtime_sync as rs
from realtime_sync._wsconn import FrameError, WebSocketConnection

from .conftest import Recorder, T


def _errors(rec):
    return [e.data for e in rec.events if e.name == "error"]


@pytest.mark.parametrize(
    "frame, reason",
    [
        ("not json at all", "not valid JSON"),
        ('{"event": "x", "data": ', "not valid JSON"),
        ("[1, 2, 3]", "expected an object"),
        ('{"no_event": 1}', "expected an object"),
        ('{"event": 5}', "expected an object"),
        ('{"event": "x", "data": "a string"}', "'data' must be an object"),
        ("", "not valid JSON"),
    ],
)
def test_malformed_text_frames(echo_server, make_client, frame, reason):
    client = make_client(echo_server.url)
    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send(frame)
    conn.send({"event": "valid", "id": 1})
    rec.wait("valid")
    (err,) = _errors(rec)
    assert err.kind == "bad_frame" and reason in err.message
    assert isinstance(err.exception, rs.ProtocolError)
    assert err.frame == frame[:500]
    assert len(echo_server.connections) == 1, "a bad frame must not cost the connection"


def test_invalid_utf8_and_binary_frames(echo_server, make_client):
    client = make_client(echo_server.url)
    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send_bytes(b'{"event": "bin", "id": 1}')  # JSON sent as a binary frame is accepted
    conn.send_bytes(b"\xff\xfe not utf-8")
    conn.send({"event": "valid"})
    rec.wait("valid")
    assert rec.wait("bin").entity_id == 1
    (err,) = _errors(rec)
    assert err.kind == "bad_frame" and "UTF-8" in err.message and "\\xff" in err.frame


def test_oversized_frame_is_refused_without_losing_the_connection(echo_server, make_client):
    client = make_client(echo_server.url, max_frame_size=1000)
    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send({"event": "big", "data": {"blob": "x" * 100_000}})
    conn.send({"event": "valid", "id": 2})
    assert rec.wait("valid").entity_id == 2
    (err,) = _errors(rec)
    assert "exceeds max_frame_size=1000" in err.message
    assert "big" not in rec.names()
    assert len(echo_server.connections) == 1


def test_long_frame_is_truncated_in_the_error(echo_server, make_client):
    client = make_client(echo_server.url)
    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send("x" * 10_000)
    conn.send({"event": "valid"})
    rec.wait("valid")
    (err,) = _errors(rec)
    assert len(err.frame) < 600 and "10000 chars" in err.frame


# -- the frame decoder, driven without a network -----------------------------------------------


def _frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack("!Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def _decoder(max_size: int = 1 << 20) -> WebSocketConnection:
    conn = WebSocketConnection()
    conn._max = max_size
    a, b = socket.socketpair()
    conn._sock = a
    conn._peer = b  # type: ignore[attr-defined]  # keep the other end open for pongs
    return conn


def _feed(conn: WebSocketConnection, stream: bytes, cuts: list[int]) -> list:
    out: list = []
    last = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        conn._buf += stream[last:cut]
        out += conn._parse()
        last = cut
    return out


messages = st.lists(st.text(max_size=300), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(messages, st.lists(st.integers(min_value=0, max_value=5000), max_size=20), st.booleans(), st.data())
def test_any_split_of_a_frame_stream_yields_the_same_messages(texts, cuts, fragment, data):
    stream = b""
    for t in texts:
        raw = t.encode()
        if fragment and len(raw) > 2:
            k = data.draw(st.integers(min_value=1, max_value=len(raw) - 1))
            stream += _frame(1, raw[:k], fin=False) + _frame(0x9, b"p") + _frame(0, raw[k:])
        else:
            stream += _frame(1, raw, mask=b"abcd" if len(raw) % 2 else None)
    conn = _decoder()
    assert _feed(conn, stream, [c for c in cuts if c < len(stream)]) == texts
    assert conn._buf == bytearray()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(blob):
    conn = _decoder(max_size=500)
    out = _feed(conn, blob, [len(blob) // 3, len(blob) // 2])
    assert all(isinstance(x, (str, FrameError)) for x in out)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=501, max_value=70_000), st.lists(st.integers(min_value=0, max_value=80_000), max_size=10))
def test_oversized_frames_are_skipped_exactly(size, cuts):
    stream = _frame(1, b"a" * size) + _frame(1, b'{"ok":1}')
    conn = _decoder(max_size=500)
    out = _feed(conn, stream, [c for c in cuts if c < len(stream)])
    assert isinstance(out[0], FrameError) and out[1:] == ['{"ok":1}']


def test_close_frame_marks_the_connection_closed():
    conn = _decoder()
    out = _feed(conn, _frame(1, b"last") + _frame(8, struct.pack("!H", 4000) + b"bye"), [])
    assert out == ["last"] and conn.closed and "4000" in conn.close_reason and "bye" in conn.close_reason
