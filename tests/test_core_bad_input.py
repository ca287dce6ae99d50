"""Malformed frames become error events with context; the connection and later events carry on."""

from __future__ import annotations

import pytest

import realtime_sync as rs

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


def test_binary_messages_are_reported_not_delivered(echo_server, make_client):
    # None of our protocols sends binary messages: each is an error event (never a text event)
    # and the connection carries on.  Invalid UTF-8 in a *text* message fails the connection
    # instead (RFC 6455 8.1): see test_ws_conformance.py.
    client = make_client(echo_server.url)
    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send_bytes(b'{"event": "bin", "id": 1}')
    conn.send({"event": "valid"})
    rec.wait("valid")
    assert "bin" not in rec.names()
    (err,) = _errors(rec)
    assert err.kind == "bad_frame" and "binary message of 25 bytes" in err.message
    assert len(echo_server.connections) == 1


def test_oversized_frame_is_refused_without_losing_the_connection(echo_server, make_client):
    client = make_client(echo_server.url, max_frame_size=1000)
    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send({"event": "big", "data": {"blob": "x" * 100_000}})
    conn.send({"event": "valid", "id": 2})
    assert rec.wait("valid").entity_id == 2
    (err,) = _errors(rec)
    assert "exceeds max_frame_size=1000" in err.message and err.kind == "bad_frame"
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
