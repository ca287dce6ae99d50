"""An adapter's ``error`` events are logged at WARNING, as the engine's own errors are.

A user who configured logging (``logging.basicConfig()``) but wrote no ``error`` handler saw
the engine's errors (a refused connection, a protocol violation) and a refused token, but not a
server's error, a bad frame or a payload that does not fit its model: those only went to
``error`` handlers.  Now each is one WARNING line on the engine's logger (its name tells which
client), redacted, and a flood is cut to ten lines a kind a minute.  Each test failed before.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from realtime_sync.testing.actioncable import FakeVoxsigServer, message_payload

from .conftest import Recorder, T
from .test_voxsig_client import USER_TOKEN, agent


def _warnings(caplog: pytest.LogCaptureFixture, kind: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and r.getMessage().startswith(f"{kind}: ")]


def test_a_bad_frame_is_one_warning_on_the_clients_logger(echo_server, make_client, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="realtime_sync")
    client = make_client(echo_server.url, name="shop")
    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send("not json at all")
    conn.send({"event": "valid", "id": 1})
    rec.wait("valid")
    (record,) = _warnings(caplog, "bad_frame")
    assert record.name == "realtime_sync.transport.shop"  # the engine's logger, as its own errors
    assert "not valid JSON" in record.getMessage()
    assert [e.data.kind for e in rec.events if e.name == "error"] == ["bad_frame"]


def test_a_flood_of_bad_frames_is_cut_to_ten_lines_and_every_error_event_is_delivered(
    echo_server, make_client, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="realtime_sync")
    client = make_client(echo_server.url)
    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    for i in range(25):
        conn.send(f"not json {i}")
    conn.send({"event": "valid", "id": 1})
    rec.wait("valid")
    lines = [r.getMessage() for r in _warnings(caplog, "bad_frame")]
    assert len(lines) == 11, lines  # ten errors, then one line saying the rest are not logged
    assert "10 errors of this kind in a minute" in lines[-1]
    assert len([e for e in rec.events if e.name == "error"]) == 25  # the events are all there


def test_a_payload_that_does_not_fit_is_a_warning_without_the_pubsub_token(
    voxsig_server: FakeVoxsigServer, clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="realtime_sync")
    client = agent(clients, voxsig_server)
    rec = Recorder(client)
    client.start()
    rec.wait("subscribed")
    voxsig_server.send_event(USER_TOKEN, "message.created", {**message_payload(5, 42, "hello"), "id": "five"})
    voxsig_server.send_event(USER_TOKEN, "message.created", message_payload(6, 42, "next"))
    rec.wait("message.created", count=2)
    (record,) = _warnings(caplog, "decode")
    assert "Message.id" in record.getMessage() and record.name == f"realtime_sync.transport.{client.name}"
    assert all(USER_TOKEN not in r.getMessage() for r in caplog.records)
    first = next(e for e in rec.events if e.name == "message.created")
    assert first.decode_error is not None  # delivered anyway, as before


def test_a_server_error_is_a_warning(voxsig_server: FakeVoxsigServer, clients: Any, caplog) -> None:
    # ActionCable's disconnect with reconnect false and a reason other than "unauthorized".
    caplog.set_level(logging.WARNING, logger="realtime_sync")
    client = agent(clients, voxsig_server)
    rec = Recorder(client)
    client.start()
    rec.wait("subscribed")
    voxsig_server.disconnect(reason="server_restart_not", reconnect=False)
    rec.wait("error")
    (record,) = _warnings(caplog, "server")
    assert "asked not to reconnect" in record.getMessage()
