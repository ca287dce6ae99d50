"""Events across a process boundary: to_dict()/from_dict(), a dedup key, no secret in the data.

Issue 12 item 4: ``event.raw`` and ``event.subscription.key`` carried the pubsub token in clear
(forwarding ``event.raw`` to Celery put it into Redis), and an ``Event`` could not be serialised.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

import realtime_sync as rs
from realtime_sync.events import ConnectionInfo, ErrorInfo, Event, Subscription, SubscriptionInfo
from realtime_sync.models.genesys import ChatMessage, MessageLogUpdate, Participant
from realtime_sync.models.jifeline import SystemEvent, SystemEventPayload, TicketRef
from realtime_sync.models.voxsig import Attachment, Contact, Message, User
from realtime_sync.testing.actioncable import FakeVoxsigServer, message_payload

from .conftest import FAST, Recorder

SECRET = "pubsub-SECRET-token-7781"


def roundtrip(event: Event) -> Event:
    return Event.from_dict(json.loads(json.dumps(event.to_dict())))


@pytest.fixture
def voxsig_server() -> Iterator[FakeVoxsigServer]:
    with FakeVoxsigServer(users={SECRET: 7}) as server:
        yield server


def test_a_voxsig_event_over_the_wire_carries_no_token_and_survives_json(voxsig_server: FakeVoxsigServer) -> None:
    client = rs.VoxsigClient(voxsig_server.url, pubsub_token=SECRET, account_id=1, user_id=7, reconnect=FAST)
    rec = Recorder(client)
    try:
        client.start()
        rec.wait("subscribed")
        voxsig_server.send_event(SECRET, "message.created", message_payload(5, 42, "hello"))
        event = rec.wait("message.created")
    finally:
        client.close(timeout=5)
    # The data a user would forward: no token anywhere, in any spelling.
    for value in (event.raw, event.subscription.key if event.subscription else None, event.to_dict()):
        assert SECRET not in json.dumps(value), value
    assert "***" in event.raw["identifier"]
    assert event.subscription == client.room  # the public handle compares equal
    assert SECRET not in repr(client.room)
    back = roundtrip(event)
    assert isinstance(back.data, Message) and back.data == event.data
    assert back.data.content == "hello" and back.entity_id == 42
    assert back.subscription == event.subscription
    assert back.raw == event.raw and back.key == event.key
    assert back.received_at == event.received_at


def test_unsubscribe_and_perform_take_the_public_subscription() -> None:
    # Two identifiers that differ only by their secret stay two subscriptions once redacted.
    with FakeVoxsigServer(users={"pubsub-token-AAAA-1": 7, "pubsub-token-BBBB-2": 7}) as server:
        client = rs.ActionCableClient(server.url, reconnect=FAST)
        rec = Recorder(client)
        try:
            # (An agent subscription needs its account_id: Chatwoot answers nothing without it.)
            a = client.subscribe(
                {"channel": "RoomChannel", "pubsub_token": "pubsub-token-AAAA-1", "account_id": 1, "user_id": 7}
            )
            b = client.subscribe(
                {"channel": "RoomChannel", "pubsub_token": "pubsub-token-BBBB-2", "account_id": 1, "user_id": 7}
            )
            assert a.key == b.key and a != b
            client.start()
            rec.wait("subscribed", count=2)
            client.unsubscribe(a)
            client.perform(b, "update_presence")
            server.wait_for_presence("pubsub-token-BBBB-2")
            server.send_event("pubsub-token-AAAA-1", "gone", {})
            server.send_event("pubsub-token-BBBB-2", "kept", {})
            rec.wait("message", where=lambda e: e.data["event"] == "kept")
            # (presence.update arrives on both at subscribe, as Chatwoot broadcasts it there.)
            sent = [e for e in rec.events if e.name == "message" and e.data["event"] in ("gone", "kept")]
            assert {e.subscription for e in sent} == {b}
        finally:
            client.close(timeout=5)


@pytest.mark.parametrize(
    "data",
    [
        Message(
            id=1,
            content="hi",
            created_at=1700000000,
            sender=Contact(id=3, type="contact", additional_attributes={"x": [1]}),
            attachments=(Attachment(id=9, file_type="image"),),
        ),
        Message(id=2, sender=User(id=7, name="Ana", type="user")),
        MessageLogUpdate(
            notification_type="Messages",
            messages=(ChatMessage(index=1, from_=Participant(nickname="Bo", participant_id="p1"), text="yo"),),
            chat_uri="http://h/api/v2/chats/c1",
        ),
        SystemEvent("01HZX3", "tickets.ticket.created", SystemEventPayload(ticket=TicketRef(id=5))),
        ConnectionInfo("wss://h/cable", "actioncable-v1-json", 2),
        SubscriptionInfo(Subscription("ticket", 7), "nope"),
        {"plain": ["json", 1, None]},
    ],
)
def test_typed_data_comes_back_typed(data: object) -> None:
    event = Event("some.event", data, entity_id=5, raw={"x": 1}, received_at=12.5, changes=frozenset({"b", "a"}))
    d = event.to_dict()
    assert d["changes"] == ["a", "b"]
    back = roundtrip(event)
    assert back == event
    assert type(back.data) is type(data)


def test_genesys_data_uses_the_wire_names() -> None:
    update = MessageLogUpdate(messages=(ChatMessage(from_=Participant(participant_id="p1")),), chat_uri="u")
    d = Event("chat.new_messages", update).to_dict()
    assert d["data_type"] == "genesys.MessageLogUpdate"
    assert d["data"]["chatUri"] == "u" and d["data"]["messages"][0]["from"]["participantId"] == "p1"


def test_an_error_event_is_serialisable_and_keeps_no_secret() -> None:
    rs_secret = "sk-live-0123456789abcdef"
    from realtime_sync._redact import register_secret

    register_secret(rs_secret)
    inner = Event("message.created", {"text": f"token {rs_secret}"}, raw={"t": rs_secret})
    err = Event("error", ErrorInfo("handler", "boom", None, ValueError("bad")), raw=inner)
    d = err.to_dict()
    text = json.dumps(d)
    assert rs_secret not in text
    back = Event.from_dict(json.loads(text))
    assert isinstance(back.data, ErrorInfo) and back.data.kind == "handler" and back.data.exception is None
    assert back.raw["name"] == "message.created"


def test_a_payload_that_no_longer_fits_its_model_follows_the_decoding_policy() -> None:
    # As live decoding does: the model with every field that fits, and decode_error says why.
    d = Event("message.created", Message(id=1, content="hi")).to_dict()
    d["data"]["id"] = "not an int"
    back = Event.from_dict(d)
    assert isinstance(back.data, Message) and back.data.id is None and back.data.content == "hi"
    assert back.decode_error is not None and "Message.id" in back.decode_error
    assert Event.from_dict(Event("message.created", Message(id=1)).to_dict()).decode_error is None
    d["data_type"] = "nosuchmodule.Thing"
    assert isinstance(Event.from_dict(d).data, dict)
    with pytest.raises(ValueError):
        Event.from_dict({"data": 1})


def test_the_key_is_stable_for_the_same_event_and_differs_otherwise() -> None:
    a = Event(
        "message.created",
        Message(id=1),
        entity_id=4,
        raw={"event": "message.created", "data": {"id": 1}},
        received_at=1.0,
    )
    a2 = Event(
        "message.created",
        Message(id=1),
        entity_id=4,
        raw={"data": {"id": 1}, "event": "message.created"},
        received_at=9.0,
    )
    b = Event("message.updated", Message(id=1), entity_id=4, raw={"event": "message.updated", "data": {"id": 1}})
    assert a.key == a2.key != b.key
    sys_event = Event("tickets.ticket.created", SystemEvent("01HZX3", "tickets.ticket.created"))
    assert sys_event.key == "jifeline/01HZX3"
    # Lifecycle events (no raw frame) are told apart by their time.
    assert Event("connected", received_at=1.0).key != Event("connected", received_at=2.0).key


def test_from_dict_in_another_process_rebuilds_the_model() -> None:
    # The consumer (a Celery worker) has not imported the vendor's models: from_dict does.
    d = Event("chat.new_messages", MessageLogUpdate(chat_uri="http://h/api/v2/chats/c9")).to_dict()
    code = (
        "import json, sys; from realtime_sync.events import Event; "
        "e = Event.from_dict(json.loads(sys.stdin.read())); print(type(e.data).__name__, e.data.chat_id)"
    )
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(d), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["MessageLogUpdate", "c9"]
