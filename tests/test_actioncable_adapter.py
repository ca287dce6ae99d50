"""The ActionCable and Voxsig adapters, sans I/O: frame by frame with an explicit clock."""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime_sync._json import dumps
from realtime_sync._redact import redact
from realtime_sync.events import ErrorInfo, Event, Subscription, public_subscription
from realtime_sync.exceptions import ConfigurationError, ProtocolError
from realtime_sync.models._converter import read_int
from realtime_sync.models.voxsig import (
    Contact,
    Conversation,
    Message,
    NotificationEvent,
    Presence,
    TypingEvent,
    User,
    as_datetime,
    structure_payload,
)
from realtime_sync.protocols.actioncable import ActionCableAdapter, origin_for, serialize_identifier
from realtime_sync.protocols.base import ConnectRequest, SubState
from realtime_sync.protocols.voxsig import VoxsigAdapter, room_identifier
from realtime_sync.testing.actioncable import (
    contact_payload,
    conversation_payload,
    message_payload,
    notification_payload,
    typing_payload,
)

CHAT = serialize_identifier("ChatChannel", room="lobby")
TOKEN = "pubsub-SECRET-abc123"


def welcome(a: ActionCableAdapter, now: float = 0.0) -> None:
    a.connection_made(now)
    a.receive_text('{"type":"welcome"}', now)


def confirm(a: ActionCableAdapter, ident: str, now: float) -> None:
    a.receive_text(dumps({"identifier": ident, "type": "confirm_subscription"}), now)


def frames(a: ActionCableAdapter) -> list[dict[str, Any]]:
    return [json.loads(f) for f in a.data_to_send()]


def names(a: ActionCableAdapter) -> list[str]:
    return [e.name for e in a.events_received()]


# -- handshake ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("wss://app.voxsig.com/cable", "https://app.voxsig.com"),
        ("ws://127.0.0.1:3000/cable", "http://127.0.0.1:3000"),
        ("wss://h.example:443/cable", "https://h.example"),
        ("ws://h.example:80/cable?x=1", "http://h.example"),
        ("wss://[::1]:8443/cable", "https://[::1]:8443"),
        ("ftp://h/cable", None),
    ],
)
def test_origin_is_derived_from_the_url(url: str, origin: str | None) -> None:
    assert origin_for(url) == origin


def test_prepare_connect_offers_subprotocols_and_origin() -> None:
    a = ActionCableAdapter()
    req = a.prepare_connect(ConnectRequest("wss://app.voxsig.com/cable", subprotocols=("custom",)))
    assert req.subprotocols == ("actioncable-v1-json", "actioncable-unsupported", "custom")
    assert req.origin == "https://app.voxsig.com"
    # ConnectOptions.origin: explicit wins, "" means no header.
    assert a.prepare_connect(ConnectRequest("wss://h/cable", origin="https://other")).origin == "https://other"
    assert a.prepare_connect(ConnectRequest("wss://h/cable", origin="")).origin == ""
    assert a.has_heartbeat is True


# -- identifiers --------------------------------------------------------------------------------


def test_identifier_serialisation() -> None:
    assert CHAT == '{"channel":"ChatChannel","room":"lobby"}'
    assert serialize_identifier({"channel": "C", "a": 1}, b=2) == '{"channel":"C","a":1,"b":2}'
    raw = '{"room":"lobby", "channel":"ChatChannel"}'
    assert serialize_identifier(raw) == raw  # kept byte for byte
    for bad in ({"room": 1}, 5, "", '{"nochannel":1}', "{not json"):
        with pytest.raises(ConfigurationError):
            serialize_identifier(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        serialize_identifier("C", obj=object())


def test_room_identifier_matches_the_seed() -> None:
    assert json.loads(room_identifier("t0k3n", 1, 7)) == {
        "channel": "RoomChannel",
        "pubsub_token": "t0k3n",
        "account_id": 1,
        "user_id": 7,
    }
    assert list(json.loads(room_identifier("t0k3n", 1, 7))) == ["channel", "pubsub_token", "account_id", "user_id"]
    assert json.loads(room_identifier("t0k3n")) == {"channel": "RoomChannel", "pubsub_token": "t0k3n"}
    with pytest.raises(ConfigurationError):
        room_identifier("")
    with pytest.raises(ConfigurationError):
        room_identifier("t0k3n", user_id=True)  # type: ignore[arg-type]


# -- subscribe / welcome / confirm -----------------------------------------------------------------


def test_subscriptions_are_sent_after_welcome_only_and_reuse_the_same_string() -> None:
    a = ActionCableAdapter()
    sub = a.subscribe(CHAT, 0.0)
    assert sub == Subscription("channel", CHAT)
    assert a.data_to_send() == []  # not connected
    a.connection_made(0.0)
    assert a.data_to_send() == []  # connected, no welcome yet
    a.receive_text('{"type":"welcome"}', 0.1)
    sent = a.data_to_send()
    assert sent == [dumps({"command": "subscribe", "identifier": CHAT})]
    confirm(a, CHAT, 0.2)
    assert names(a) == ["subscribed"]
    assert a.subscription_state(sub) is SubState.CONFIRMED
    # Reconnect: the very same frame again, after the new welcome only.
    a.connection_lost(1.0, "drop")
    a.connection_made(2.0)
    assert a.data_to_send() == []
    a.receive_text('{"type":"welcome"}', 2.1)
    assert a.data_to_send() == sent
    confirm(a, CHAT, 2.2)
    assert names(a) == ["subscribed"]


def test_subscribe_while_welcomed_is_sent_at_once_and_duplicates_are_one() -> None:
    a = ActionCableAdapter()
    welcome(a)
    a.subscribe(CHAT, 0.5)
    a.subscribe(CHAT, 0.5)
    assert len(frames(a)) == 1
    confirm(a, CHAT, 0.6)
    confirm(a, CHAT, 0.7)  # a duplicate confirmation is not a second "subscribed"
    assert names(a) == ["subscribed"]


def test_key_order_makes_a_different_subscription() -> None:
    a = ActionCableAdapter()
    welcome(a)
    s1 = a.subscribe('{"channel":"C","room":1}', 0.0)
    s2 = a.subscribe('{"room":1,"channel":"C"}', 0.0)
    assert s1 != s2
    assert [f["identifier"] for f in frames(a)] == ['{"channel":"C","room":1}', '{"room":1,"channel":"C"}']


def test_reject_is_reported_and_forgotten() -> None:
    a = ActionCableAdapter()
    welcome(a)
    sub = a.subscribe(CHAT, 0.0)
    a.data_to_send()
    a.receive_text(dumps({"identifier": CHAT, "type": "reject_subscription"}), 0.1)
    (event,) = a.events_received()
    assert event.name == "subscription_rejected" and event.subscription == sub
    assert "rejected by the server" in (event.data.reason or "")
    assert sub not in a.subscriptions
    a.handle_timer(5.0)  # no retry
    assert a.data_to_send() == []
    a.connection_lost(6.0)
    welcome(a, 7.0)
    assert a.data_to_send() == []  # not re-sent after a reconnect


def test_unconfirmed_subscribe_is_retried_then_reported_after_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="realtime_sync")
    a = ActionCableAdapter(confirm_timeout=10.0, retry_interval=0.5)
    welcome(a)
    sub = a.subscribe(CHAT, 0.0)
    assert len(frames(a)) == 1
    assert a.next_deadline() == 0.5
    a.handle_timer(0.4)
    assert a.data_to_send() == []
    t = 0.5
    retries = 0
    while t < 10.0:
        a.receive_text('{"type":"ping","message":1}', t)  # keep the connection alive
        a.handle_timer(t)
        retries += len(frames(a))
        t = round(t + 0.5, 3)
    assert retries == 19  # every 500 ms, like the JS SubscriptionGuarantor
    assert a.events_received() == []
    a.handle_timer(10.0)
    events = a.events_received()
    assert [e.name for e in events] == ["subscription_rejected", "error"]
    assert "no confirmation within 10 s" in (events[0].data.reason or "")
    # Rails answers a subscribe to a class it does not have with silence (it logs "Subscription
    # class not found"): the reason names that cause too (review 13: a wrong channel name).
    assert "no such channel class" in (events[0].data.reason or "")
    assert isinstance(events[1].data, ErrorInfo) and events[1].data.kind == "subscription"
    # One WARNING line for it (the error event's), not two.
    assert [r.getMessage().split(" not confirmed")[0] for r in caplog.records] == [
        'subscription: subscription {"channel":"ChatChannel","room":"lobby"}'
    ]
    assert events[1].subscription == sub
    a.handle_timer(20.0)
    assert a.data_to_send() == [] and a.events_received() == []
    # A late confirmation still counts.
    confirm(a, CHAT, 21.0)
    assert names(a) == ["subscribed"]


def test_timed_out_subscription_is_tried_again_on_the_next_connection() -> None:
    a = ActionCableAdapter(confirm_timeout=1.0, stale_after=None)
    welcome(a)
    a.subscribe(CHAT, 0.0)
    a.handle_timer(1.0)
    a.data_to_send(), a.events_received()
    a.connection_lost(2.0)
    welcome(a, 3.0)
    assert [f["command"] for f in frames(a)] == ["subscribe"]


# -- liveness -------------------------------------------------------------------------------------


def test_stale_connection_is_replaced_after_six_silent_seconds() -> None:
    a = ActionCableAdapter()
    welcome(a, 100.0)
    assert a.next_deadline() == 106.0
    a.receive_text('{"type":"ping","message":1795246204}', 103.0)
    assert a.next_deadline() == 109.0
    a.handle_timer(108.9)
    assert a.close_request() is None
    a.handle_timer(109.0)
    req = a.close_request()
    assert req is not None and req.reason == "stale" and req.reconnect and req.delay == 0


def test_any_frame_counts_as_life_even_a_bad_one() -> None:
    a = ActionCableAdapter(stale_after=2.0)
    welcome(a)
    a.receive_text("garbage", 1.5)
    a.events_received()
    a.handle_timer(3.0)
    assert a.close_request() is None


def test_no_timers_while_disconnected() -> None:
    a = ActionCableAdapter()
    a.subscribe(CHAT, 0.0)
    assert a.next_deadline() is None
    welcome(a)
    a.connection_lost(1.0)
    assert a.next_deadline() is None


# -- disconnect ---------------------------------------------------------------------------------


def test_disconnect_reconnect_false_reports_and_stops() -> None:
    a = ActionCableAdapter()
    welcome(a)
    a.receive_text('{"type":"disconnect","reason":"unauthorized","reconnect":false}', 1.0)
    (event,) = a.events_received()
    assert event.name == "error" and event.data.kind == "auth"
    req = a.close_request()
    assert req is not None and req.reconnect is False and req.auth is True and req.reason == "unauthorized"


def test_disconnect_invalid_request_without_reconnect_is_a_server_error() -> None:
    a = ActionCableAdapter()
    welcome(a)
    a.receive_text('{"type":"disconnect","reason":"invalid_request","reconnect":false}', 1.0)
    assert [e.data.kind for e in a.events_received()] == ["server"]
    req = a.close_request()
    assert req is not None and not req.reconnect and not req.auth


def test_server_restart_reconnects_quietly() -> None:
    a = ActionCableAdapter()
    welcome(a)
    a.receive_text('{"type":"disconnect","reason":"server_restart","reconnect":true}', 1.0)
    assert a.events_received() == []
    req = a.close_request()
    assert req is not None and req.reconnect and req.reason == "server_restart" and not req.auth


# -- broadcasts, perform, unsubscribe -----------------------------------------------------------------


def test_broadcast_becomes_a_message_event() -> None:
    a = ActionCableAdapter()
    welcome(a)
    sub = a.subscribe(CHAT, 0.0)
    confirm(a, CHAT, 0.1)
    a.events_received()
    a.receive_text(dumps({"identifier": CHAT, "message": {"text": "hi"}}), 0.2)
    (event,) = a.events_received()
    assert (event.name, event.data, event.subscription) == ("message", {"text": "hi"}, sub)
    assert event.raw == {"identifier": CHAT, "message": {"text": "hi"}}
    # A broadcast for an identifier we do not hold is ignored.
    a.receive_text(dumps({"identifier": '{"channel":"Other"}', "message": 1}), 0.3)
    assert a.events_received() == []


def test_decoder_hook_names_events_and_its_failures_are_error_events() -> None:
    a = ActionCableAdapter(decoder=lambda m: (m["kind"], m["body"], m.get("id")))
    welcome(a)
    a.subscribe(CHAT, 0.0)
    a.receive_text(dumps({"identifier": CHAT, "message": {"kind": "chat.said", "body": "yo", "id": 3}}), 0.1)
    a.receive_text(dumps({"identifier": CHAT, "message": {"oops": 1}}), 0.2)
    a.receive_text(dumps({"identifier": CHAT, "message": {"kind": "chat.said", "body": "again"}}), 0.3)
    events = a.events_received()
    assert [(e.name, e.entity_id) for e in events] == [("chat.said", 3), ("error", None), ("chat.said", None)]
    assert events[1].data.kind == "bad_frame"


def test_perform_sends_data_as_a_json_string() -> None:
    a = ActionCableAdapter()
    assert a.perform(CHAT, "speak", 0.0, text="hi") is False  # dropped while disconnected
    welcome(a)
    a.subscribe(CHAT, 0.0)
    a.data_to_send()
    assert a.perform(CHAT, "speak", 0.1, text="hi") is True
    (frame,) = frames(a)
    assert frame["command"] == "message" and frame["identifier"] == CHAT
    assert isinstance(frame["data"], str) and json.loads(frame["data"]) == {"text": "hi", "action": "speak"}
    # Any data key works, even the names of the method's own parameters.
    a.perform(CHAT, "speak", 0.2, now=1, identifier="x", action="ignored")
    (frame,) = frames(a)
    assert json.loads(frame["data"]) == {"now": 1, "identifier": "x", "action": "speak"}


def test_unsubscribe_sends_once_and_is_not_restored() -> None:
    a = ActionCableAdapter()
    welcome(a)
    sub = a.subscribe(CHAT, 0.0)
    confirm(a, CHAT, 0.1)
    a.data_to_send(), a.events_received()
    assert a.unsubscribe(sub, 0.2) is True
    assert frames(a) == [{"command": "unsubscribe", "identifier": CHAT}]
    assert a.unsubscribe(sub, 0.3) is False
    a.receive_text(dumps({"identifier": CHAT, "message": {"late": True}}), 0.4)
    assert a.events_received() == []
    a.connection_lost(1.0)
    welcome(a, 2.0)
    assert a.data_to_send() == []


# -- bad frames ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1,2]",
        '"welcome"',
        '{"foo":1}',
        '{"type":5}',
        '{"type":"confirm_subscription","identifier":{"channel":"ChatChannel"}}',
        '{"identifier":7,"message":{}}',
    ],
)
def test_bad_frames_become_error_events_and_change_nothing(text: str) -> None:
    a = ActionCableAdapter()
    welcome(a)
    a.subscribe(CHAT, 0.0)
    a.data_to_send()
    a.receive_text(text, 0.1)
    events = a.events_received()
    assert [e.name for e in events] == ["error"] and events[0].data.kind == "bad_frame"
    confirm(a, CHAT, 0.2)
    assert names(a) == ["subscribed"]


def test_unknown_types_are_ignored() -> None:
    a = ActionCableAdapter()
    welcome(a)
    a.receive_text('{"type":"from_the_future","x":1}', 0.1)
    assert a.events_received() == [] and a.close_request() is None


# -- Voxsig -----------------------------------------------------------------------------------------


def voxsig(**kw: Any) -> VoxsigAdapter:
    kw.setdefault("account_id", 1)
    kw.setdefault("user_id", 7)
    return VoxsigAdapter(TOKEN, **kw)


def broadcast(a: VoxsigAdapter, event: str, data: Any, now: float = 1.0) -> list[Event]:
    a.receive_text(dumps({"identifier": a.identifier, "message": {"event": event, "data": data}}), now)
    return a.events_received()


def confirmed_voxsig(**kw: Any) -> VoxsigAdapter:
    a = voxsig(**kw)
    welcome(a)
    confirm(a, a.identifier, 0.0)
    a.data_to_send(), a.events_received()
    return a


def presence_frames(a: ActionCableAdapter) -> int:
    return sum(
        1 for f in frames(a) if f.get("command") == "message" and json.loads(f["data"])["action"] == "update_presence"
    )


def test_voxsig_subscribes_to_its_room_after_welcome() -> None:
    a = voxsig()
    welcome(a)
    (frame,) = frames(a)
    assert frame == {"command": "subscribe", "identifier": room_identifier(TOKEN, 1, 7)}
    contact = VoxsigAdapter("contact-tok-1")
    welcome(contact)
    assert json.loads(frames(contact)[0]["identifier"]) == {"channel": "RoomChannel", "pubsub_token": "contact-tok-1"}


def test_presence_one_interval_after_confirmation_then_every_interval() -> None:
    # Chatwoot's RoomChannel#subscribed records presence itself: an update_presence at the
    # confirmation would only double it (and a second presence.update broadcast).
    a = voxsig(presence_interval=30.0)
    welcome(a)
    a.data_to_send()
    assert a.update_presence(0.05) is False  # not confirmed yet
    confirm(a, a.identifier, 0.1)
    assert presence_frames(a) == 0
    assert a.next_deadline() == pytest.approx(6.1)  # the stale timer comes first
    t = 0.1
    sent_at = []
    while t < 95:
        t = round(t + 1.0, 3)
        a.receive_text('{"type":"ping","message":1}', t)
        a.handle_timer(t)
        if presence_frames(a):
            sent_at.append(t)
    assert sent_at == [30.1, 60.1, 90.1]


def test_presence_restarts_after_every_reconnect() -> None:
    a = voxsig(presence_interval=30.0)
    welcome(a)
    confirm(a, a.identifier, 0.0)
    assert presence_frames(a) == 0
    a.connection_lost(10.0)
    assert a.next_deadline() is None  # no presence timer while disconnected
    welcome(a, 11.0)
    assert presence_frames(a) == 0  # only the subscribe
    confirm(a, a.identifier, 11.5)  # the server recorded presence again: the cadence restarts
    assert presence_frames(a) == 0
    a.receive_text('{"type":"ping"}', 41.0)
    a.handle_timer(41.5)
    assert presence_frames(a) == 1


def test_no_presence_on_a_connection_being_replaced() -> None:
    a = confirmed_voxsig(presence_interval=6.0)  # presence and staleness both due at t=6
    a.handle_timer(6.0)
    assert a.close_request() is not None
    assert presence_frames(a) == 0


def test_presence_off_and_manual_update() -> None:
    a = confirmed_voxsig(presence_interval=None)
    a.handle_timer(5.0)
    assert presence_frames(a) == 0
    assert a.update_presence(5.0) is True
    assert presence_frames(a) == 1


@pytest.mark.parametrize(
    ("name", "data", "cls", "entity"),
    [
        ("message.created", message_payload(5, 42), Message, 42),
        ("message.updated", message_payload(5, 43), Message, 43),
        ("first.reply.created", message_payload(6, 44, incoming=False), Message, 44),
        ("conversation.created", conversation_payload(42), Conversation, 42),
        ("conversation.status_changed", conversation_payload(42, "resolved"), Conversation, 42),
        ("conversation.read", conversation_payload(9), Conversation, 9),
        ("conversation.updated", conversation_payload(9), Conversation, 9),
        ("conversation.contact_changed", conversation_payload(9), Conversation, 9),
        ("conversation.mentioned", conversation_payload(9), Conversation, 9),
        ("assignee.changed", conversation_payload(11), Conversation, 11),
        ("team.changed", conversation_payload(12), Conversation, 12),
        ("conversation.typing_on", typing_payload(42), TypingEvent, 42),
        ("conversation.typing_off", typing_payload(42, by_contact=False), TypingEvent, 42),
        ("contact.created", contact_payload(101), Contact, 101),
        ("contact.updated", contact_payload(102), Contact, 102),
        ("contact.deleted", contact_payload(103), Contact, 103),
        ("contact.merged", contact_payload(104), Contact, 104),
        ("notification.created", notification_payload(500), NotificationEvent, 500),
        ("notification.updated", notification_payload(501), NotificationEvent, 501),
        ("notification.deleted", {"notification": {"id": 502}, "unread_count": 0, "count": 0}, NotificationEvent, 502),
        ("presence.update", {"account_id": 1, "users": {"7": "online"}, "contacts": {"101": "online"}}, Presence, 1),
    ],
)
def test_voxsig_events_are_typed_with_entity_ids(name: str, data: dict[str, Any], cls: type, entity: int) -> None:
    a = confirmed_voxsig()
    (event,) = broadcast(a, name, {**data, "account_id": 1})
    assert event.name == name
    assert isinstance(event.data, cls)
    assert event.entity_id == entity
    assert event.subscription == public_subscription(a.room)  # the token redacted
    assert event.raw["message"]["event"] == name


def test_typed_payload_details() -> None:
    a = confirmed_voxsig()
    (typing,) = broadcast(a, "conversation.typing_on", typing_payload(42, by_contact=True, is_private=True))
    assert isinstance(typing.data.user, Contact) and typing.data.is_private is True
    (typing,) = broadcast(a, "conversation.typing_off", typing_payload(42, by_contact=False))
    assert isinstance(typing.data.user, User)
    (msg,) = broadcast(a, "message.created", message_payload(5, 42, "hello"))
    assert msg.data.content == "hello" and isinstance(msg.data.sender, Contact)
    assert as_datetime(msg.data.created_at) is not None and as_datetime(msg.data.updated_at) is not None
    (conv,) = broadcast(a, "conversation.created", conversation_payload(42))
    assert conv.data.meta.assignee.id == 7 and conv.data.meta.sender.id == 101
    (note,) = broadcast(a, "notification.created", notification_payload(500, unread_count=3))
    assert note.data.unread_count == 3 and note.data.notification.primary_actor_id == 42


def test_missing_and_extra_fields_never_break_decoding() -> None:
    a = confirmed_voxsig()
    (event,) = broadcast(a, "message.created", {"brand_new_field": [1, 2], "conversation_id": 7})
    assert event.data.id is None and event.entity_id == 7
    (event,) = broadcast(a, "conversation.created", {})
    assert event.data.id is None and event.entity_id is None
    (event,) = broadcast(a, "conversation.status_changed", {"id": 3, "meta": None})
    assert event.data.meta.assignee is None


def test_timestamps_as_unix_seconds_or_iso_strings() -> None:
    a = confirmed_voxsig()
    (e1,) = broadcast(a, "message.created", {"created_at": 1700000000, "conversation_id": 1})
    (e2,) = broadcast(a, "message.created", {"created_at": "2023-11-14T22:13:20.000Z", "conversation_id": 1})
    (e3,) = broadcast(a, "message.created", {"created_at": 1700000000.5, "conversation_id": 1})
    assert e1.data.created_at == 1700000000 and e2.data.created_at == "2023-11-14T22:13:20.000Z"
    assert as_datetime(e1.data.created_at) == as_datetime(e2.data.created_at)
    assert as_datetime(e3.data.created_at) is not None
    assert as_datetime("garbage") is None and as_datetime(None) is None and as_datetime(True) is None
    assert as_datetime(1700000000000) == as_datetime(1700000000)  # milliseconds


def test_wrong_types_are_error_events() -> None:
    a = confirmed_voxsig()
    # Delivered anyway (typed as far as it fits), then reported: never lost, never guessed.
    events = broadcast(a, "message.created", {"id": "five", "conversation_id": 1})
    assert [e.name for e in events] == ["message.created", "error"]
    assert events[0].data.id is None and events[0].data.conversation_id == 1 and events[0].entity_id == 1
    assert "Message.id" in events[0].decode_error
    assert events[1].data.kind == "decode" and "Message.id" in events[1].data.message
    events = broadcast(a, "conversation.created", [1, 2])
    assert [e.name for e in events] == ["conversation.created", "error"]
    assert events[0].data == [1, 2] and events[0].decode_error is not None
    # ... and the next good one is delivered.
    assert [e.name for e in broadcast(a, "message.created", {"id": 5})] == ["message.created"]


def test_unknown_events_pass_through_and_malformed_messages_are_errors() -> None:
    a = confirmed_voxsig()
    (event,) = broadcast(a, "pipeline.item_changed", {"pipeline_id": 3, "account_id": 1})
    assert event.name == "pipeline.item_changed" and event.data == {"pipeline_id": 3, "account_id": 1}
    assert event.entity_id is None
    bad_messages: list[Any] = [[1], {"data": {}}, {"event": 5}, "text"]
    for message in bad_messages:
        a.receive_text(dumps({"identifier": a.identifier, "message": message}), 2.0)
        assert [e.name for e in a.events_received()] == ["error"]


def test_the_pubsub_token_never_shows() -> None:
    a = confirmed_voxsig()
    assert TOKEN not in repr(a.room)
    a.receive_text(
        dumps({"identifier": a.identifier, "message": {"event": "message.created", "data": {"id": "x"}}}), 1.0
    )
    (delivered, event) = a.events_received()
    assert delivered.decode_error is not None and TOKEN not in repr(delivered)
    assert TOKEN not in repr(event) and TOKEN not in (event.data.frame or "") and TOKEN not in event.data.message
    a.receive_text("{" + a.identifier, 1.1)
    (event,) = a.events_received()
    assert TOKEN not in (event.data.frame or "")


# -- property tests ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
frame_dicts = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["welcome", "ping", "confirm_subscription", "reject_subscription", "disconnect"])
        | json_values,
        "identifier": st.just(room_identifier(TOKEN, 1, 7)) | json_values,
        "message": json_values,
        "reason": json_values,
        "reconnect": json_values,
    },
)
event_names = (
    st.sampled_from(
        [
            "message.created",
            "conversation.created",
            "conversation.typing_on",
            "contact.updated",
            "notification.created",
            "presence.update",
            "x.unknown",
        ]
    )
    | st.text(max_size=12)
    | json_values
)


def check_outputs(a: ActionCableAdapter) -> None:
    for e in a.events_received():
        assert isinstance(e, Event)
        if e.name == "error":
            assert isinstance(e.data, ErrorInfo)
    assert all(isinstance(f, str) for f in a.data_to_send())
    a.close_request()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.text(max_size=200) | frame_dicts.map(json.dumps), max_size=8))
def test_any_frames_give_events_never_exceptions(texts: list[str]) -> None:
    for a in (ActionCableAdapter(), voxsig()):
        welcome(a)
        for i, text in enumerate(texts):
            a.receive_text(text, 0.1 * i)
            a.handle_timer(0.1 * i)
            check_outputs(a)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    event_names,
    json_values
    | st.dictionaries(
        st.sampled_from(
            [
                "id",
                "conversation_id",
                "content",
                "created_at",
                "meta",
                "sender",
                "user",
                "conversation",
                "notification",
                "users",
                "attachments",
                "messages",
                "labels",
                "account_id",
            ]
        ),
        json_values,
        max_size=6,
    ),
)
def test_any_voxsig_broadcast_gives_an_event_or_an_error(name: Any, data: Any) -> None:
    a = confirmed_voxsig()
    a.receive_text(json.dumps({"identifier": a.identifier, "message": {"event": name, "data": data}}), 1.0)
    events = a.events_received()
    if "Infinity" in json.dumps(data) or "NaN" in json.dumps(data):
        return  # not JSON at all: a bad frame (tested elsewhere)
    account = data.get("account_id") if isinstance(data, dict) else None
    if isinstance(account, int) and not -(2**63) <= account < 2**64:
        return  # orjson reads integers beyond 64 bits as floats: another value than the one drawn
    try:
        other_account = account is not None and read_int(account) != 1
    except TypeError:
        other_account = isinstance(account, str)
    if not isinstance(name, str) or not name:
        assert [(e.name, e.data.kind) for e in events] == [("error", "bad_frame")]  # no event name at all
        return
    if other_account:
        assert events == [] and a.dropped_other_accounts == 1  # another account's: dropped
        return
    # Always the event itself; an error of kind "decode" only with a mismatch on the event.
    assert [e.name for e in events] in ([name], [name, "error"])
    assert (len(events) == 2) == (events[0].decode_error is not None)
    if len(events) == 2:
        assert events[1].data.kind == "decode"


# -- hardening (review of issue 4) ---------------------------------------------------------------------


def test_identifier_bytes_are_reused_for_retries_reconnects_perform_and_unsubscribe() -> None:
    ident = serialize_identifier({"room": "é\u2028<x>", "channel": "ChatChannel", "n": 1.5})
    a = ActionCableAdapter(retry_interval=0.5, confirm_timeout=10)
    a.subscribe(ident, 0.0)
    seen: list[str] = []
    for start in (0.0, 20.0):
        welcome(a, start)
        a.handle_timer(start + 0.5)  # one retry while unconfirmed
        confirm(a, ident, start + 0.6)
        a.perform(ident, "speak", start + 0.7, text="hi")
        seen += [f["identifier"] for f in frames(a)]
        a.connection_lost(start + 1.0)
    welcome(a, 40.0)
    a.unsubscribe(ident, 40.1)
    seen += [f["identifier"] for f in frames(a)]
    assert len(seen) == 8 and set(seen) == {ident}


def test_a_second_confirmation_is_not_a_second_subscription() -> None:
    a = voxsig(presence_interval=30.0)
    welcome(a)
    a.data_to_send()
    confirm(a, a.identifier, 0.1)
    confirm(a, a.identifier, 0.2)  # a server that answers the retried subscribe too
    assert names(a) == ["subscribed"]
    assert presence_frames(a) == 0
    assert a.next_deadline() == pytest.approx(6.2)  # the stale timer; presence at 30.1, not 30.2


def test_no_presence_burst_after_a_long_disconnect_or_a_late_timer() -> None:
    a = voxsig(presence_interval=1.0, stale_after=None)
    welcome(a)
    confirm(a, a.identifier, 0.0)
    assert presence_frames(a) == 0
    a.handle_timer(10.0)  # the transport thread was starved for 10 intervals: one presence, not ten
    assert presence_frames(a) == 1
    a.handle_timer(10.5)
    assert presence_frames(a) == 0
    assert a.next_deadline() == pytest.approx(11.0)
    a.connection_lost(10.6)
    assert a.next_deadline() is None  # nothing to do while disconnected
    welcome(a, 500.0)
    a.handle_timer(500.0)
    assert [f["command"] for f in frames(a)] == ["subscribe"]  # no presence before the confirmation
    confirm(a, a.identifier, 500.1)
    assert presence_frames(a) == 0
    a.handle_timer(500.5)
    assert presence_frames(a) == 0
    a.handle_timer(501.1)
    assert presence_frames(a) == 1


def test_perform_while_disconnected_or_before_welcome_is_dropped_not_queued() -> None:
    a = ActionCableAdapter()
    a.subscribe(CHAT, 0.0)
    assert a.perform(CHAT, "speak", 0.0, text="lost") is False
    a.connection_made(0.1)
    assert a.perform(CHAT, "speak", 0.1, text="lost too") is False  # no welcome yet
    a.receive_text('{"type":"welcome"}', 0.2)
    confirm(a, CHAT, 0.3)
    assert [f["command"] for f in frames(a)] == ["subscribe"]


@pytest.mark.parametrize(
    "token",
    [
        'pub"sub\\Tok1en',
        "pub'sub\"Tok2en",
        # (a control character such as \n, \t or \x01 is refused at construction: no token holds one)
        "pub\u2029sub/Tok3en",
        "pub<sub>&Tok4en\u2028é",
    ],
)
def test_a_token_with_characters_that_json_escapes_never_shows(token: str) -> None:
    a = VoxsigAdapter(token, 1, 7, presence_interval=30.0)
    welcome(a)
    sent = a.data_to_send()
    # A Rails server escapes <, > and & as \u003c... when it echoes the identifier.
    rails = json.dumps({"identifier": a.identifier, "type": "confirm_subscription"}).replace("<", "\\u003c")
    a.receive_text(rails, 0.1)
    a.receive_text(
        dumps({"identifier": a.identifier, "message": {"event": "message.created", "data": {"id": "x"}}}), 0.2
    )
    a.receive_text("{" + rails, 0.3)
    events = a.events_received()
    assert [e.name for e in events] == ["subscribed", "message.created", "error", "error"]
    errors = events[2:]
    texts = [repr(a.room), repr(events), *(str(e.data) for e in errors), str(events[1].decode_error)]
    texts += [str(e.data.exception) for e in errors]
    texts += [redact(t) for t in (*sent, rails, repr(sent), repr(rails), a.identifier, repr(a.identifier))]
    for text in texts:
        assert "Tok" not in text, text


def test_null_payloads_and_null_collections_decode_to_defaults() -> None:
    a = confirmed_voxsig()
    for name, data in [
        ("message.created", None),
        ("message.created", {"id": 1, "attachments": None, "sender": None, "created_at": None}),
        ("conversation.updated", {"id": 2, "labels": None, "messages": None, "meta": None, "timestamp": None}),
        ("conversation.updated", {"id": 3, "messages": [{"id": 1, "attachments": None}]}),
        ("presence.update", {"account_id": 1, "users": None, "contacts": None}),
        ("notification.created", {"notification": None, "unread_count": None}),
        ("conversation.typing_on", {"conversation": None, "user": None}),
    ]:
        a.receive_text(dumps({"identifier": a.identifier, "message": {"event": name, "data": data}}), 1.0)
        (event,) = a.events_received()
        assert event.name == name, event
    assert structure_payload({"users": None}, Presence).users == {}
    assert structure_payload({"labels": None, "messages": None}, Conversation).labels == ()
    with pytest.raises(ProtocolError):
        structure_payload({"labels": "not-a-list"}, Conversation)


@pytest.mark.parametrize(
    "value",
    [
        1700000000,
        1700000000.0,
        1700000000000,
        "1700000000",
        "2023-11-14T22:13:20Z",
        "2023-11-14T23:13:20+01:00",
        "2023-11-14 22:13:20 UTC",
        "2023-11-14T22:13:20.000Z",
    ],
)
def test_timestamps_in_seconds_milliseconds_and_iso_strings(value: Any) -> None:
    a = confirmed_voxsig()
    data = {"id": 1, "created_at": value, "updated_at": value, "timestamp": value, "agent_last_seen_at": value}
    a.receive_text(dumps({"identifier": a.identifier, "message": {"event": "conversation.created", "data": data}}), 1)
    (event,) = a.events_received()
    assert event.data.created_at == value  # kept as sent
    assert as_datetime(event.data.timestamp) == datetime.datetime(
        2023, 11, 14, 22, 13, 20, tzinfo=datetime.timezone.utc
    )


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("ws://h:80/cable", "http://h"),
        ("wss://h:443/cable", "https://h"),
        ("wss://h:80/cable", "https://h:80"),
        ("ws://h:443/cable", "http://h:443"),
        ("WSS://App.Example.COM:8443/cable?x=1", "https://app.example.com:8443"),
        ("wss://user:pw@h/cable", "https://h"),
        ("ws://[::1]:3000/cable", "http://[::1]:3000"),
    ],
)
def test_origin_with_ports_and_userinfo(url: str, origin: str) -> None:
    assert origin_for(url) == origin
    req = ActionCableAdapter().prepare_connect(ConnectRequest(url=url, origin="https://override.example"))
    assert req.origin == "https://override.example"


def test_the_token_spellings_are_renewed_before_every_connect() -> None:
    from realtime_sync import _redact

    token = 'pub"sub\\Tok9renew'
    a = VoxsigAdapter(token, 1, 7)
    # Other clients' rotating tokens flood the bounded registry...
    for i in range(getattr(_redact, "MAX_SECRETS", 256) + 10):
        _redact.register_secret(f"rotating-token-{i:06d}")
    a.prepare_connect(ConnectRequest(url="wss://h/cable"))  # ...a reconnect registers them again
    welcome(a)
    (sent,) = a.data_to_send()
    assert "Tok9" not in redact(sent) and "Tok9" not in repr(a.room)
