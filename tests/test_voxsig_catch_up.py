"""Voxsig catch-up after a reconnect: the fake ActionCable server + the fake Chatwoot REST API, on the wire."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.models.voxsig import Conversation, Message
from realtime_sync.testing.actioncable import FakeVoxsigServer, message_payload
from realtime_sync.testing.chatwoot import FakeChatwootRestServer

from .test_voxsig_client import USER_TOKEN, Recorder, agent

API_TOKEN = "chatwoot-api-token-9f3"


@pytest.fixture
def rest() -> Iterator[FakeChatwootRestServer]:
    with FakeChatwootRestServer(API_TOKEN, account_id=1) as server:
        yield server


def _publish(server: FakeVoxsigServer, rest: FakeChatwootRestServer, message: dict[str, Any], *, live: bool) -> None:
    rest.add_message(message)  # Chatwoot stores every message; the cable carries it only to who is there
    if live:
        server.send_event(USER_TOKEN, "message.created", message)


def test_missed_messages_arrive_first_once_typed_then_live(
    voxsig_server: FakeVoxsigServer, rest: FakeChatwootRestServer, clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    client = agent(clients, voxsig_server, catch_up=rs.VoxsigCatchUp(api_url=rest.url, api_access_token=API_TOKEN))
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    assert rest.requests == []  # the first connect fetches nothing
    _publish(voxsig_server, rest, message_payload(1, 42, "before"), live=True)
    rec.wait_count("message.created")

    # The outage: the cable is gone; Chatwoot goes on storing messages.
    voxsig_server.refuse(503)
    voxsig_server.drop_all()
    rec.wait_count("disconnected")
    _publish(voxsig_server, rest, message_payload(2, 42, "missed 1"), live=False)
    _publish(voxsig_server, rest, message_payload(3, 43, "missed 2"), live=False)
    rest.delay = 0.5  # the catch-up is slow: live events meanwhile must wait
    voxsig_server.refuse(None)
    rec.wait_count("subscribed", 2)
    # Live while the catch-up runs: message 3 again (already fetched), message 4 (stored, so
    # fetched too when the fetch comes after it) and message 5 (live only): each once, in order.
    voxsig_server.send_event(USER_TOKEN, "message.created", message_payload(3, 43, "missed 2"))
    _publish(voxsig_server, rest, message_payload(4, 42, "live"), live=True)
    voxsig_server.send_event(USER_TOKEN, "message.created", message_payload(5, 42, "live only"))

    rec.wait(lambda evs: any(e.name == "message.created" and e.data.id == 5 for e in evs), timeout=10)
    second = [i for i, e in enumerate(rec.events) if e.name == "subscribed"][1]
    after = rec.events[second:]
    created = [e for e in after if e.name == "message.created"]
    assert [e.data.id for e in created] == [2, 3, 4, 5]
    assert [e.recovered for e in created if e.data.id != 4] == [True, True, False]
    assert all(isinstance(e.data, Message) and e.account_id == 1 for e in created)
    updated = [e for e in after if e.name == "conversation.updated"]
    assert {e.entity_id for e in updated} == {42, 43} and all(
        isinstance(e.data, Conversation) and e.recovered for e in updated
    )
    assert max(after.index(e) for e in updated) < after.index(created[0])
    # Only what was missed was asked for: messages after the newest seen in conversation 42.
    assert any("/conversations/42/messages?after=1" in p for p in rest.message_requests())
    assert all(e.name != "error" for e in rec.events)
    assert API_TOKEN not in caplog.text
    assert all(API_TOKEN not in str(e.raw) for e in rec.events)


def test_a_failed_catch_up_is_an_error_and_releases_live_events(
    voxsig_server: FakeVoxsigServer, rest: FakeChatwootRestServer, clients: Any
) -> None:
    client = agent(clients, voxsig_server, catch_up=rs.VoxsigCatchUp(api_url=rest.url, api_access_token=API_TOKEN))
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    rest.fail_next = [500]
    rest.delay = 0.3
    voxsig_server.drop_all()
    rec.wait_count("subscribed", 2)
    voxsig_server.send_event(USER_TOKEN, "message.created", message_payload(9, 42, "live"))
    (error,) = rec.wait_count("error", timeout=10)
    assert error.data.kind == "catch_up" and "500" in error.data.message
    (live,) = rec.wait_count("message.created", timeout=10)
    assert live.data.id == 9 and not live.recovered


def test_catch_up_needs_an_account_and_a_token() -> None:
    with pytest.raises(rs.ConfigurationError):
        rs.VoxsigCatchUp(api_url="http://127.0.0.1:1", api_access_token="")
    with pytest.raises(rs.ConfigurationError, match="account_id"):
        rs.VoxsigClient(
            "ws://127.0.0.1:1/cable",
            "contact-token",
            catch_up=rs.VoxsigCatchUp(api_url="http://x", api_access_token="t"),
        )
    assert "t-secret" not in repr(rs.VoxsigCatchUp(api_url="http://x", api_access_token="t-secret"))
