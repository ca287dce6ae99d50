"""ActionCableClient and VoxsigClient on real sockets against the fake ActionCable server."""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.actioncable import ActionCableClient
from realtime_sync.events import Event
from realtime_sync.models.voxsig import Contact, Message, Presence
from realtime_sync.protocols.voxsig import room_identifier
from realtime_sync.testing.actioncable import (
    FakeActionCableServer,
    FakeVoxsigServer,
    conversation_payload,
    message_payload,
    typing_payload,
)
from realtime_sync.voxsig import VoxsigClient

from .conftest import T
from .conftest import poll_until as eventually

USER_TOKEN = "user-token-1"
CONTACT_TOKEN = "contact-token-1"
ROOM = room_identifier(USER_TOKEN, 1, 7)


class Recorder:
    """Collects every event of a client; waits on conditions with deadlines."""

    def __init__(self, client: rs.Client) -> None:
        self.events: list[Event] = []
        self._cond = threading.Condition()
        client.on("*", self._add)

    def _add(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def named(self, name: str) -> list[Event]:
        with self._cond:
            return [e for e in self.events if e.name == name]

    def wait(self, pred: Callable[[list[Event]], bool], timeout: float = 5.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: pred(self.events), T(timeout)):
                raise AssertionError(
                    f"condition not met within {timeout}s; events: {[e.name for e in self.events][-20:]}"
                )

    def wait_count(self, name: str, count: int = 1, timeout: float = 5.0) -> list[Event]:
        self.wait(lambda evs: sum(1 for e in evs if e.name == name) >= count, timeout)
        return self.named(name)


@pytest.fixture
def cable_server() -> Iterator[FakeActionCableServer]:
    with FakeActionCableServer(ping_interval=0.3) as server:
        yield server


def agent(clients: Callable[..., Any], server: FakeActionCableServer, **kw: Any) -> VoxsigClient:
    kw.setdefault("presence_interval", None)
    kw.setdefault("stale_after", 2.0)
    client: VoxsigClient = clients(VoxsigClient, server.url, USER_TOKEN, account_id=1, user_id=7, **kw)
    return client


# -- handshake, subscribe, typed events ---------------------------------------------------------------


def test_agent_subscribes_and_receives_typed_events(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    client = agent(clients, voxsig_server)
    rec = Recorder(client)
    client.start()
    (connected,) = rec.wait_count("connected")
    assert connected.data.subprotocol == "actioncable-v1-json"
    handshake = voxsig_server.handshakes[-1]
    assert {k.lower(): v for k, v in handshake.headers.items()}["origin"] == voxsig_server.origin
    (subscribed,) = rec.wait_count("subscribed")
    assert subscribed.subscription == client.room
    assert voxsig_server.subscribe_commands[0][1] == ROOM  # the seed's identifier, byte for byte

    voxsig_server.send_event(USER_TOKEN, "message.created", message_payload(5, 42, "hello"))
    voxsig_server.send_event("account_1", "conversation.typing_on", typing_payload(42))
    voxsig_server.send_event(USER_TOKEN, "brand.new_event", {"x": 1})
    rec.wait_count("brand.new_event")
    (msg,) = rec.named("message.created")
    assert isinstance(msg.data, Message) and msg.data.content == "hello" and msg.entity_id == 42
    (typing,) = rec.named("conversation.typing_on")
    assert typing.entity_id == 42 and isinstance(typing.data.user, Contact)
    assert rec.named("brand.new_event")[0].data == {"x": 1, "account_id": 1}


def test_contact_subscription_has_no_user_id(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    client: VoxsigClient = clients(VoxsigClient, voxsig_server.url, CONTACT_TOKEN, presence_interval=None)
    assert client.is_contact
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    assert json.loads(voxsig_server.subscribe_commands[0][1]) == {
        "channel": "RoomChannel",
        "pubsub_token": CONTACT_TOKEN,
    }
    voxsig_server.send_event(CONTACT_TOKEN, "message.created", message_payload(9, 77, "hi contact", incoming=False))
    (event,) = rec.wait_count("message.created")
    assert event.entity_id == 77


def test_origin_mismatch_is_a_404_and_the_override_works(clients: Any) -> None:
    with FakeVoxsigServer(allowed_origins=["https://app.example"]) as server:
        bad = agent(clients, server, reconnect=rs.ReconnectPolicy(instant_retries=0, interval=5, max_interval=5))
        rec = Recorder(bad)
        bad.start()
        (error,) = rec.wait_count("error")
        assert error.data.kind == "connect" and "404" in error.data.message
        bad.close()
        good = agent(clients, server, origin="https://app.example")
        rec = Recorder(good)
        good.start()
        rec.wait_count("subscribed")


# -- liveness and reconnection --------------------------------------------------------------------


def test_silent_server_is_detected_as_stale_and_replaced(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    client = agent(clients, voxsig_server, stale_after=1.0)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    first = voxsig_server.connections[0]
    t0 = time.monotonic()
    first.go_silent()  # TCP stays open, nothing more arrives: no pings, no close
    (disc,) = rec.wait_count("disconnected", timeout=30)
    assert disc.data.reason == "stale" and disc.data.will_reconnect
    assert time.monotonic() - t0 >= 0.99  # not before stale_after; the deadline above bounds the rest
    rec.wait_count("subscribed", 2)
    assert voxsig_server.subscribe_commands[-1] == (voxsig_server.connections[-1].id, ROOM)


def test_pings_keep_an_idle_connection_alive(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    client = agent(clients, voxsig_server, stale_after=1.0)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    # 2.5 stale periods of idle time with pings every 0.3 s: no reconnect.
    with pytest.raises(AssertionError):
        rec.wait_count("disconnected", timeout=2.5)


def test_resubscribe_after_a_drop_and_after_a_restart(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    client = agent(clients, voxsig_server)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    voxsig_server.drop_all()
    rec.wait_count("subscribed", 2)
    voxsig_server.restart()
    rec.wait_count("subscribed", 3)
    assert [ident for _c, ident in voxsig_server.subscribe_commands] == [ROOM] * 3
    voxsig_server.send_event(USER_TOKEN, "message.created", message_payload(1, 5))
    assert rec.wait_count("message.created")[0].entity_id == 5


def test_server_restart_disconnect_reconnects(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    client = agent(clients, voxsig_server)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    voxsig_server.server_restart()
    (disc,) = rec.wait_count("disconnected")
    assert disc.data.reason == "server_restart" and disc.data.will_reconnect
    rec.wait_count("subscribed", 2)
    assert rec.named("error") == []


def test_disconnect_reconnect_false_stops_the_client(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    client = agent(clients, voxsig_server)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    runner = threading.Thread(target=client.run_forever, name="test-run-forever")
    runner.start()
    voxsig_server.disconnect("remote", reconnect=False)
    runner.join(T(5))
    assert not runner.is_alive(), "run_forever() must return when the server says not to reconnect"
    assert client.state is rs.State.CLOSED
    (error,) = rec.named("error")
    assert error.data.kind == "server" and "remote" in error.data.message
    assert [e.data.will_reconnect for e in rec.named("disconnected")] == [False]
    assert len(voxsig_server.connections) == 1  # never came back


def test_unauthorized_connection_is_reported_and_stops(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    voxsig_server.reject_connections = True
    client = agent(clients, voxsig_server)
    rec = Recorder(client)
    client.start()
    rec.wait(lambda evs: any(e.name == "disconnected" and not e.data.will_reconnect for e in evs))
    (error,) = rec.named("error")
    assert error.data.kind == "auth" and isinstance(error.data.exception, rs.AuthenticationError)
    assert rec.named("subscribed") == []
    assert len(voxsig_server.connections) == 1


# -- confirmation: reject, silence, retry --------------------------------------------------------------


def test_an_account_the_user_is_not_in_gets_no_answer_never_a_rejection(
    voxsig_server: FakeVoxsigServer, clients: Any
) -> None:
    # Chatwoot's RoomChannel never calls `reject`: `accounts.find` raises inside `subscribed`.
    client: VoxsigClient = clients(
        VoxsigClient, voxsig_server.url, USER_TOKEN, account_id=3, user_id=7, confirm_timeout=1.0, presence_interval=5
    )
    rec = Recorder(client)
    client.start()
    (rej,) = rec.wait_count("subscription_rejected", timeout=T(10))
    assert rej.subscription == client.room and "no confirmation" in (rej.data.reason or "")
    assert voxsig_server.performed == []  # no presence for an unconfirmed room


def test_user_id_without_account_id_is_a_configuration_error() -> None:
    with pytest.raises(rs.ConfigurationError, match="account_id"):
        VoxsigClient("ws://127.0.0.1:1/cable", USER_TOKEN, user_id=7)


def test_silent_channel_failure_times_out(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    client = clients(
        VoxsigClient, voxsig_server.url, "explode", account_id=1, user_id=7, confirm_timeout=1.0, presence_interval=None
    )
    rec = Recorder(client)
    client.start()
    # The first rejection (a loaded machine may also see a stale connection replaced, and the
    # subscription time out again on the new one).
    rej = rec.wait_count("subscription_rejected", timeout=30)[0]
    assert "no confirmation within 1 s" in (rej.data.reason or "")
    err = next(e for e in rec.named("error") if e.data.kind == "subscription")
    assert "explode" not in repr(err)
    # Retried while waiting (like the JS guarantor); Rails ignores the duplicates.
    assert len(voxsig_server.subscribe_commands) >= 2


def test_lost_subscribe_is_retried_until_confirmed(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    voxsig_server.ignore_subscribes = 2
    client = agent(clients, voxsig_server)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed", timeout=5)
    assert len(voxsig_server.subscribe_commands) == 3
    assert rec.named("error") == []


# -- presence ---------------------------------------------------------------------------------------


def test_presence_at_subscribe_by_the_server_then_at_the_interval(
    voxsig_server: FakeVoxsigServer, clients: Any
) -> None:
    # An interval long enough to tell "at once" from "one interval later" on a loaded machine.
    client = agent(clients, voxsig_server, presence_interval=2.0)
    rec = Recorder(client)
    client.start()
    # RoomChannel#subscribed records presence and broadcasts presence.update itself...
    (presence, *_) = rec.wait_count("presence.update", timeout=30)
    assert isinstance(presence.data, Presence) and presence.data.users == {"7": "online"} and presence.entity_id == 1
    assert presence.account_id == 1
    times = voxsig_server.wait_for_presence(USER_TOKEN, 3, timeout=30)
    performed = voxsig_server.performed
    assert performed[0].action == "update_presence" and performed[0].identifier == ROOM
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Each one is scheduled one interval after the previous one was sent: never early (the
    # receive times jitter a little), late only by the machine's load.
    assert all(g >= 1.9 for g in gaps), gaps
    assert all(g < 2.0 * 2 for g in gaps), gaps
    # ... so the client's first update_presence comes one interval later, not at once (no double).
    subscribed_at = next(m.at for m in voxsig_server.received if m.json and m.json.get("command") == "subscribe")
    assert times[0] - subscribed_at >= 1.9


def test_presence_keeps_the_agent_online_and_its_absence_does_not(
    voxsig_server: FakeVoxsigServer, clients: Any
) -> None:
    # Chatwoot: 20 s presence, 15 s interval; scaled down with a full second of slack, so that a
    # loaded machine's late timer does not look like an agent going offline.
    voxsig_server.presence_duration = 2.0
    client = agent(clients, voxsig_server, presence_interval=1.0)
    Recorder(client)
    client.start()
    voxsig_server.wait_for_presence(USER_TOKEN, 1, timeout=30)
    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline:  # sampled over more than two presence durations
        assert voxsig_server.online_users(1) == {"7": "online"}
        time.sleep(0.05)
    client.close(timeout=5)
    eventually(lambda: voxsig_server.online_users(1) == {}, T(15), "offline once presence stops")


def test_default_presence_interval_is_within_chatwoots_20_s() -> None:
    assert inspect.signature(VoxsigClient).parameters["presence_interval"].default <= 15.0


def test_presence_restarts_after_a_reconnect(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    client = agent(clients, voxsig_server, presence_interval=1.0)
    rec = Recorder(client)
    client.start()
    voxsig_server.wait_for_presence(USER_TOKEN, 1)
    voxsig_server.drop_all()
    rec.wait_count("subscribed", 2)
    conn = voxsig_server.connections[-1]
    subscribed_at = next(
        m.at for m in voxsig_server.received if m.conn_id == conn.id and m.json and m.json.get("command") == "subscribe"
    )
    # The new confirmation restarts the cadence: one interval after it, on the new connection.
    voxsig_server.wait_for_presence(USER_TOKEN, 2, timeout=5)
    second = [p for p in voxsig_server.performed if p.action == "update_presence"][1]
    assert second.conn_id == conn.id and second.at - subscribed_at >= 0.9


def test_presence_off_and_manual_update(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    client = agent(clients, voxsig_server, presence_interval=None)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    assert voxsig_server.presence_count(USER_TOKEN) == 0
    client.update_presence()
    voxsig_server.wait_for_presence(USER_TOKEN, 1)


# -- secrets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "leak"),
    [
        ("user-7-SecretPubsubToken-42", "SecretPubsubToken"),
        # characters that JSON escapes (once, twice, Rails-style): no fragment may survive (a
        # control character such as a newline is refused at construction: not a token's)
        ("user-7-Qv1\"Qv2\\Qv3<Qv4>&Qv5\u2028Qv6/Qv7'Qv8", "Qv"),
    ],
    ids=["plain", "json-escaping"],
)
def test_pubsub_token_is_redacted_in_debug_logs_reprs_and_errors(
    voxsig_server: FakeVoxsigServer, clients: Any, caplog: pytest.LogCaptureFixture, token: str, leak: str
) -> None:
    voxsig_server.users[token] = 7
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    client: VoxsigClient = clients(
        VoxsigClient, voxsig_server.url, token, account_id=1, user_id=7, presence_interval=0.2, confirm_timeout=5
    )
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    voxsig_server.wait_for_presence(token, 2)
    voxsig_server.send_event(token, "message.created", {"id": "not-an-int", "conversation_id": 1})
    (error,) = rec.wait_count("error")
    ours = [r for r in caplog.records if not r.name.startswith("realtime_sync.testing")]
    logged = "\n".join(r.getMessage() for r in ours)
    assert "pubsub_token" in logged and "update_presence" in logged  # frames were logged at DEBUG...
    texts = [logged, repr(client), repr(client.room), repr(rec.events), repr(error.data), str(error.data.exception)]
    for text in texts:  # ...without any part of the token
        assert leak not in text, text


def test_secrets_in_the_servers_payloads_stay_out_of_reprs_raw_to_dict_and_the_identifier(
    voxsig_server: FakeVoxsigServer, cable_server: FakeActionCableServer, clients: Any
) -> None:
    # Review 5: repr(event) showed a dict payload's password and a model's custom attributes;
    # an access_token= inside a string stayed in raw/to_dict; client.identifier gave the token.
    import json

    from realtime_sync.testing.actioncable import contact_payload

    client: VoxsigClient = clients(VoxsigClient, voxsig_server.url, USER_TOKEN, account_id=1, user_id=7)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    custom = {"password": "SRV-CUSTOM-PW-1", "tier": "gold"}
    voxsig_server.send_event(USER_TOKEN, "contact.updated", contact_payload(101, custom_attributes=custom))
    (contact,) = rec.wait_count("contact.updated")
    assert isinstance(contact.data, Contact) and contact.data.custom_attributes == custom  # the app's own
    assert "tier" in repr(contact.data) and "SRV-CUSTOM-PW-1" not in repr(contact.data)
    assert USER_TOKEN not in str(client.identifier) and '"pubsub_token":"***"' in str(client.identifier)
    client.perform(client.identifier, "typing_status", typing_status="on")  # the redacted identifier works
    (performed,) = voxsig_server.wait_for_performed("typing_status")
    assert USER_TOKEN in performed.identifier  # the real one went on the wire

    cable: ActionCableClient = clients(ActionCableClient, cable_server.url)
    got = Recorder(cable)
    chat = cable.subscribe("ChatChannel", room="lobby")
    cable.start()
    got.wait_count("subscribed")
    deep: dict[str, Any] = {"pubsub_token": "SRV-DEEP-2"}
    for _ in range(100):  # nested deep, within the decoder's 128 levels
        deep = {"a": deep}
    cable_server.broadcast(
        chat.key,
        {"user": "bo", "access_token": "SRV-AT-3", "link": "wss://h/cable?access_token=SRV-URL-4", "deep": deep},
    )
    (msg,) = got.wait_count("message")
    assert msg.data["access_token"] == "SRV-AT-3"  # data is the payload as sent
    texts = [repr(contact), str(contact), repr(msg), str(msg), json.dumps(msg.raw), json.dumps(msg.to_dict())]
    texts += [json.dumps(contact.raw), json.dumps(contact.to_dict()), rs.redact(repr(msg.data))]
    for text in texts:
        for secret in ("SRV-CUSTOM-PW-1", "SRV-DEEP-2", "SRV-AT-3", "SRV-URL-4", USER_TOKEN):
            assert secret not in text, (secret, text[:300])


# -- the generic ActionCable client -------------------------------------------------------------------


def test_generic_client_subscribe_perform_broadcast_unsubscribe(
    cable_server: FakeActionCableServer, clients: Any
) -> None:
    client: ActionCableClient = clients(ActionCableClient, cable_server.url, stale_after=2.0)
    rec = Recorder(client)
    chat = client.subscribe("ChatChannel", room="lobby")
    assert chat.key == '{"channel":"ChatChannel","room":"lobby"}'
    client.start()
    rec.wait_count("subscribed")
    client.perform(chat, "speak", text="hi")
    (performed,) = cable_server.wait_for_performed("speak")
    assert performed.data == {"text": "hi", "action": "speak"} and performed.identifier == chat.key
    cable_server.broadcast(chat.key, {"text": "hello"})
    (msg,) = rec.wait_count("message")
    assert msg.data == {"text": "hello"} and msg.subscription == chat
    client.unsubscribe(chat)
    cable_server.wait_for_message(lambda m: m.json.get("command") == "unsubscribe")
    assert cable_server.subscriptions() == []


def test_generic_client_reject_and_decoder(cable_server: FakeActionCableServer, clients: Any) -> None:
    cable_server.rejected_channels.add("SecretChannel")
    client: ActionCableClient = clients(
        ActionCableClient, cable_server.url, decoder=lambda m: (f"chat.{m['kind']}", m, m.get("id"))
    )
    rec = Recorder(client)
    client.start()
    secret = client.subscribe({"channel": "SecretChannel"})
    chat = client.subscribe("ChatChannel")
    (rej,) = rec.wait_count("subscription_rejected")
    assert rej.subscription == secret
    rec.wait_count("subscribed")
    cable_server.broadcast({"channel": "ChatChannel"}, {"kind": "said", "id": 3})
    (event,) = rec.wait_count("chat.said")
    assert event.entity_id == 3 and event.subscription == chat


def test_facade_validates_on_the_callers_thread(cable_server: FakeActionCableServer, clients: Any) -> None:
    client: ActionCableClient = clients(ActionCableClient, cable_server.url)
    with pytest.raises(rs.ConfigurationError):
        client.subscribe({"room": 1})
    with pytest.raises(rs.ConfigurationError):
        client.perform('{"channel":"C"}', "")
    with pytest.raises(rs.ConfigurationError):
        client.perform('{"channel":"C"}', "act", value=object())
    with pytest.raises(rs.ConfigurationError):
        VoxsigClient(cable_server.url, "")
    with pytest.raises(rs.ConfigurationError):
        ActionCableClient(cable_server.url, stale_after=0)


def test_a_burst_arrives_complete_and_in_order(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    client = agent(clients, voxsig_server)
    ids: list[int] = []
    done = threading.Event()

    def collect(event: Event) -> None:
        ids.append(event.data.id)
        if len(ids) == 3000:
            done.set()

    client.on("message.created", collect)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    for i in range(1, 3001):
        voxsig_server.send_event(USER_TOKEN, "message.created", {"id": i, "conversation_id": 1, "content": f"m{i}"})
    assert done.wait(T(20)), f"got {len(ids)} of 3000"
    assert ids == list(range(1, 3001))


def test_unsupported_protocol_stops_the_client():
    import threading

    from realtime_sync.testing import FakeActionCableServer

    class Unsupported(FakeActionCableServer):
        subprotocols = ("actioncable-unsupported",)

    with Unsupported() as server:
        client = rs.ActionCableClient(server.url)
        errors = []
        client.on("error", lambda e: errors.append(e.data))
        t = threading.Thread(target=client.run_forever)
        t.start()
        t.join(T(30))  # a deadline for a hang: run_forever returns as soon as the refusal is handled
        assert not t.is_alive()
        assert errors and "actioncable-unsupported" in errors[0].message
        assert len(server.connections) == 1


# -- hardening (review of issue 4) ---------------------------------------------------------------------


def test_unsubscribed_channel_is_not_restored_and_perform_while_down_is_dropped(
    cable_server: FakeActionCableServer, clients: Any
) -> None:
    client: ActionCableClient = clients(ActionCableClient, cable_server.url, stale_after=2.0)
    rec = Recorder(client)
    gone = client.subscribe("ChatChannel", room="gone")  # sent first on every connection
    kept = client.subscribe({"room": "kept", "channel": "ChatChannel"})
    client.perform(kept, "speak", text="before start")  # not connected: dropped, never queued
    client.start()
    rec.wait_count("subscribed", 2)
    client.unsubscribe(gone)
    cable_server.wait_for_message(lambda m: m.json.get("command") == "unsubscribe")
    cable_server.drop_all()
    rec.wait_count("subscribed", 3)  # kept, re-confirmed on the new connection
    client.perform(kept, "speak", text="after")
    (performed,) = cable_server.wait_for_performed("speak")
    assert performed.data["text"] == "after" and performed.identifier == kept.key
    assert [i for _c, i in cable_server.subscriptions()] == [kept.key]
    first_conn = cable_server.subscribe_commands[0][0]
    later = [i for c, i in cable_server.subscribe_commands if c != first_conn]
    assert later and set(later) == {kept.key}


# -- accounts and rotating tokens (issue 11) ------------------------------------------------------------


def test_an_agent_sees_only_its_account_by_default(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    # The pubsub token is the user's: the one stream carries every account the agent is in, and
    # conversation display ids repeat across accounts (42 in account 1 is not 42 in account 2).
    mine = agent(clients, voxsig_server)
    everything = clients(
        VoxsigClient,
        voxsig_server.url,
        "user-token-2",
        account_id=1,
        user_id=8,
        all_accounts=True,
        presence_interval=None,
    )
    rec_mine, rec_all = Recorder(mine), Recorder(everything)
    mine.start()
    everything.start()
    rec_mine.wait_count("subscribed")
    rec_all.wait_count("subscribed")
    voxsig_server.send_event("account_2", "message.created", message_payload(1, 42, "account two"))
    voxsig_server.send_event("account_1", "message.created", message_payload(2, 42, "account one"))
    (got,) = rec_mine.wait_count("message.created")
    assert got.data.content == "account one" and got.account_id == 1 and got.entity_id == 42
    both = rec_all.wait_count("message.created", 2)
    assert [(e.account_id, e.entity_id, e.data.content) for e in both] == [
        (2, (2, 42), "account two"),
        (1, (1, 42), "account one"),
    ]
    # Nothing of account 2 reached the default client, even later.
    voxsig_server.send_event("account_1", "conversation.created", conversation_payload(43))
    rec_mine.wait_count("conversation.created")
    assert [e.data.content for e in rec_mine.named("message.created")] == ["account one"]


def test_a_callable_pubsub_token_is_read_again_on_every_reconnect(
    voxsig_server: FakeVoxsigServer, clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    current = ["rotating-token-A1"]
    calls = []

    def token() -> str:
        calls.append(current[0])
        return current[0]

    voxsig_server.users = {"rotating-token-A1": 7}
    client = clients(VoxsigClient, voxsig_server.url, token, account_id=1, user_id=7, presence_interval=None)
    assert client.room is None  # not known before the first connect
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    first_room = client.room
    assert first_room is not None and '"pubsub_token":"***"' in (client.identifier or "")
    # The user changed the password: Chatwoot issues a new token; the old stream goes quiet.
    voxsig_server.users = {"rotating-token-B2": 7}
    current[0] = "rotating-token-B2"
    voxsig_server.drop_all()
    (_, second) = rec.wait_count("subscribed", 2)
    assert second.subscription == client.room != first_room
    assert "rotating-token" not in (client.identifier or "x")  # shown redacted, like the room
    voxsig_server.send_event("rotating-token-B2", "message.created", message_payload(5, 42, "after rotation"))
    assert rec.wait_count("message.created")[0].data.content == "after rotation"
    assert calls[:2] == ["rotating-token-A1", "rotating-token-B2"]
    assert "rotating-token" not in caplog.text and "rotating-token" not in repr(client.room)
    assert "rotating-token" not in repr(client.room.key if client.room else "")


def test_the_identifier_is_a_str_from_the_start_and_follows_a_callable_token(
    voxsig_server: FakeVoxsigServer, clients: Any
) -> None:
    # VoxsigClient.identifier was typed str | None (None with a callable token before its first
    # call), so mypy --strict users wrote an assert before every perform(client.identifier, ...).
    # Shown with the token as ***, it is one string whatever the token: known from the start.
    current = ["first-rotating-Tok-1"]
    voxsig_server.users = {"first-rotating-Tok-1": 7}
    client = clients(
        VoxsigClient, voxsig_server.url, lambda: current[0], account_id=1, user_id=7, presence_interval=None
    )
    kept = client.identifier  # before start(): the callable was never called
    assert kept == '{"channel":"RoomChannel","pubsub_token":"***","account_id":1,"user_id":7}'
    assert client.room is None  # a Subscription is per token: not known yet (documented)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    assert client.identifier == kept
    client.perform(kept, "typing_status", typing_status="on")
    (first,) = voxsig_server.wait_for_performed("typing_status")
    assert "first-rotating-Tok-1" in first.identifier
    # The token changes; the identifier kept from before start() still reaches the room, with the
    # token of the moment (not the one it was first read with).
    voxsig_server.users = {"second-rotating-Tok-2": 7}
    current[0] = "second-rotating-Tok-2"
    voxsig_server.drop_all()
    rec.wait_count("subscribed", 2)
    assert client.identifier == kept
    client.perform(kept, "typing_status", typing_status="off")
    second = voxsig_server.wait_for_performed("typing_status", 2)[1]
    assert "second-rotating-Tok-2" in second.identifier and second.data["typing_status"] == "off"
    assert "rotating-Tok" not in repr(client.room) + client.identifier


def test_a_failing_pubsub_token_callable_is_a_token_error_and_the_client_retries(
    voxsig_server: FakeVoxsigServer, clients: Any
) -> None:
    attempts = []

    def token() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("vault unreachable")
        return USER_TOKEN

    client = clients(VoxsigClient, voxsig_server.url, token, account_id=1, user_id=7, presence_interval=None)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    (error,) = rec.named("error")
    assert error.data.kind == "token" and "vault unreachable" in error.data.message


def test_wss_against_the_fake_with_its_origin_check(tls_files: tuple[str, str], clients: Any) -> None:
    # The fakes serve TLS like the real thing: the client's Origin is then https://HOST:PORT,
    # which the fake accepts as a Rails app listing its own address would.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_files)
    with FakeVoxsigServer(ssl_context=ctx) as server:
        assert server.url.startswith("wss://") and server.origin.startswith("https://")
        client: VoxsigClient = clients(
            VoxsigClient, server.url, USER_TOKEN, account_id=1, user_id=7, ca_bundle=tls_files[0]
        )
        client.start(wait=True, timeout=T(20))
        assert server.handshakes[-1].headers.get("Origin") == server.origin
