"""VoxsigClient against a REAL Rails ActionCable server (actioncable 6.1 under puma).

The server and its Chatwoot-shaped RoomChannel live in tests/servers/ (harness.py); install them
with ``bash .ci/install-servers.sh``.  Skipped, with the reason, only when they are not installed.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.events import Event
from realtime_sync.models.voxsig import Message, Presence
from realtime_sync.voxsig import VoxsigClient

from .conftest import FAST, T, on
from .conftest import poll_until as eventually
from .servers.harness import ActionCableServer, actioncable_available
from .test_voxsig_client import Recorder as _Recorder

AVAILABLE, WHY = actioncable_available()


class Recorder(_Recorder):
    """Waits whose default deadline suits a Rails server: a Ruby process of its own, which a loaded
    2-core machine starves far longer than the 5 s that in-process fakes get (a deadline for a
    hang: the wait returns as soon as the event is there)."""

    def wait(self, pred: Callable[[list[Event]], bool], timeout: float = 30.0) -> None:
        super().wait(pred, timeout)

    def wait_count(self, name: str, count: int = 1, timeout: float = 30.0) -> list[Event]:
        return super().wait_count(name, count, timeout)


pytestmark = pytest.mark.skipif(not AVAILABLE, reason=f"real ActionCable server not installed: {WHY}")


@pytest.fixture(scope="module")
def cable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActionCableServer]:
    server = ActionCableServer(log_dir=tmp_path_factory.mktemp("actioncable"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clients() -> Iterator[Callable[..., VoxsigClient]]:
    made: list[VoxsigClient] = []

    def make(url: str, token: str, **kw: Any) -> VoxsigClient:
        kw.setdefault("reconnect", FAST)
        kw.setdefault("presence_interval", None)
        client = VoxsigClient(url, token, **kw)
        made.append(client)
        return client

    yield make
    for c in made:
        c.close(timeout=5)


def test_subscribe_confirm_and_typed_broadcast(cable: ActionCableServer, clients: Any, hub: rs.Hub | None) -> None:
    token = f"user-7-typed-{'hub' if hub else 'alone'}"
    client = clients(cable.url, token, account_id=1, user_id=7, **on(hub))
    rec = Recorder(client)
    client.start()
    (connected,) = rec.wait_count("connected")
    assert connected.data.subprotocol == "actioncable-v1-json"
    (subscribed,) = rec.wait_count("subscribed")
    assert subscribed.subscription == client.room
    cable.broadcast(
        token,
        {
            "event": "message.created",
            "data": {
                "id": 11,
                "content": "hello from rails",
                "conversation_id": 42,
                "account_id": 1,
                "created_at": 1700000000,
                "updated_at": "2023-11-14T22:13:20.000Z",
                "sender": {"type": "user", "id": 7},
            },
        },
    )
    cable.broadcast(
        "account_1", {"event": "conversation.status_changed", "data": {"id": 42, "status": "resolved", "account_id": 1}}
    )
    cable.broadcast(token, {"event": "custom.fork_event", "data": {"x": [1, 2], "account_id": 1}})
    (msg,) = rec.wait_count("message.created")
    assert isinstance(msg.data, Message) and msg.data.content == "hello from rails" and msg.entity_id == 42
    assert msg.data.sender is not None and msg.data.sender.id == 7
    (status,) = rec.wait_count("conversation.status_changed")
    assert status.entity_id == 42 and status.data.status == "resolved"
    (custom,) = rec.wait_count("custom.fork_event")
    assert custom.data == {"x": [1, 2], "account_id": 1}
    assert rec.named("error") == []


def test_contact_subscription(cable: ActionCableServer, clients: Any) -> None:
    client = clients(cable.url, "contact-token-1")
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    cable.broadcast(
        "contact-token-1", {"event": "message.created", "data": {"id": 3, "conversation_id": 9, "account_id": 1}}
    )
    assert rec.wait_count("message.created")[0].entity_id == 9


def test_presence_reaches_the_server_at_once_and_at_the_interval(
    cable: ActionCableServer, clients: Any, hub: rs.Hub | None
) -> None:
    # On a hub the presence timer is one entry in the loop's heap, not a thread of the client.
    token = f"user-7-presence-{'hub' if hub else 'alone'}"
    client = clients(cable.url, token, account_id=1, user_id=7, presence_interval=0.5, **on(hub))
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    (presence, *_) = rec.wait_count("presence.update")  # the server answers the first update_presence
    assert isinstance(presence.data, Presence) and presence.data.users.get("7") == "online" and presence.entity_id == 1
    eventually(lambda: cable.presence_count(token) >= 3, 5, "3 presence updates")


def test_an_account_the_user_is_not_in_gets_no_answer(cable: ActionCableServer, clients: Any) -> None:
    # Chatwoot's RoomChannel never rejects: `@current_user.accounts.find(3)` raises in `subscribed`.
    client = clients(cable.url, "user-7-not-in-3", account_id=3, user_id=7, confirm_timeout=1.0)
    rec = Recorder(client)
    client.start()
    (rej,) = rec.wait_count("subscription_rejected", timeout=10)
    assert rej.subscription == client.room and "no confirmation" in (rej.data.reason or "")


def test_start_wait_says_what_to_check_when_the_server_says_nothing(cable: ActionCableServer, clients: Any) -> None:
    # A wrong account (or token, or user id) makes RoomChannel#subscribed raise: no rejection
    # comes, so "rejected by the server" would mislead; the error says what to check.
    client = clients(cable.url, "user-7-not-in-3", account_id=3, user_id=7, confirm_timeout=1.0)
    with pytest.raises(rs.RemoteError) as caught:
        client.start(wait=True, timeout=T(20))
    message = str(caught.value)
    assert "no confirmation within 1 s" in message and "rejected by the server" not in message
    assert "pubsub_token, account_id or user_id" in message
    assert "user-7-not-in-3" not in message


def test_exception_in_subscribed_is_reported_after_the_confirm_timeout(
    cable: ActionCableServer, clients: Any, hub: rs.Hub | None
) -> None:
    client = clients(cable.url, "explode", account_id=1, user_id=7, confirm_timeout=1.0, **on(hub))
    rec = Recorder(client)
    client.start()
    (rej,) = rec.wait_count("subscription_rejected", timeout=10)
    assert "no confirmation within 1 s" in (rej.data.reason or "")
    assert [e.data.kind for e in rec.named("error")] == ["subscription"]


def test_unauthorized_connection_is_reported_and_stops(
    cable: ActionCableServer, clients: Any, hub: rs.Hub | None
) -> None:
    # Rails: `connect` raises UnauthorizedError inside Connection#handle_open, before the welcome;
    # the rescue transmits {"type":"disconnect","reason":"unauthorized","reconnect":false} and
    # closes the websocket.  On a hub the same events, in the same order, as standalone.
    client = clients(cable.url + "?reject=1", "user-token-1", account_id=1, user_id=7, **on(hub))
    rec = Recorder(client)
    runner = threading.Thread(target=client.run_forever, name="test-run-forever")
    runner.start()
    runner.join(T(10))
    assert not runner.is_alive(), "run_forever() must return after an unauthorized disconnect"
    errors = rec.named("error")
    assert [e.data.kind for e in errors] == ["auth"]
    assert isinstance(errors[0].data.exception, rs.AuthenticationError)
    assert [e.data.will_reconnect for e in rec.named("disconnected")] == [False]
    # The upgrade itself succeeds (Rails refuses in the first frame, before any welcome): the
    # same sequence standalone and on a hub.
    assert [(e.name, getattr(e.data, "reason", None)) for e in rec.events] == [
        ("connected", None),
        ("error", None),
        ("disconnected", "unauthorized"),
    ]


def test_unauthorized_disconnect_makes_start_wait_raise_authentication_error(
    cable: ActionCableServer, clients: Any, hub: rs.Hub | None
) -> None:
    # Rails' reject_unauthorized_connection: {"type":"disconnect","reason":"unauthorized",
    # "reconnect":false}. start(wait=True) raises what a 401 raises, with the server's reason,
    # and the snapshot keeps the refusal for whoever looks later (run_forever() callers).
    client = clients(cable.url + "?reject=1", "user-token-1", account_id=1, user_id=7, **on(hub))
    with pytest.raises(rs.AuthenticationError, match="unauthorized") as raised:
        client.start(wait=True, timeout=T(30))
    assert "user-token-1" not in str(raised.value)
    last = client.snapshot.last_error
    assert last is not None and last.kind == "auth" and "unauthorized" in last.message
    assert client.state is rs.State.CLOSED

    again = clients(cable.url + "?reject=1", "user-token-1", account_id=1, user_id=7, **on(hub))
    runner = threading.Thread(target=again.run_forever, name="test-run-forever")
    runner.start()
    runner.join(T(30))
    assert not runner.is_alive(), "run_forever() must return after an unauthorized disconnect"
    last = again.snapshot.last_error
    assert last is not None and last.kind == "auth" and "unauthorized" in last.message


def test_wrong_origin_is_refused(cable: ActionCableServer, clients: Any, hub: rs.Hub | None) -> None:
    # Rails answers the upgrade with a plain HTTP 404 (Connection#respond_to_invalid_request): on
    # a hub the non-blocking handshake on the loop reports it as the blocking one does.
    client = clients(
        cable.url,
        "user-token-1",
        account_id=1,
        user_id=7,
        origin="https://evil.example",
        reconnect=rs.ReconnectPolicy(instant_retries=0, interval=30, max_interval=30),
        **on(hub),
    )
    rec = Recorder(client)
    client.start()
    (error,) = rec.wait_count("error")
    assert error.data.kind == "connect" and "404" in error.data.message


def test_stalled_server_is_detected_and_replaced(cable: ActionCableServer, clients: Any, hub: rs.Hub | None) -> None:
    token = f"user-7-stale-{'hub' if hub else 'alone'}"
    client = clients(cable.url, token, account_id=1, user_id=7, stale_after=1.5, **on(hub))
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    cable.set_pings(False)
    try:
        (disc, *_) = rec.wait_count("disconnected", timeout=10)
        assert disc.data.reason == "stale" and disc.data.will_reconnect
    finally:
        cable.set_pings(True)
    rec.wait_count("subscribed", 2)
    cable.broadcast(token, {"event": "message.created", "data": {"id": 1, "conversation_id": 5, "account_id": 1}})
    assert rec.wait_count("message.created")[0].entity_id == 5


def test_burst_of_thousands_complete_and_in_order(cable: ActionCableServer, clients: Any, hub: rs.Hub | None) -> None:
    # On a hub: the loop reads, the client's lane on the worker pool delivers, in order.
    token = f"user-7-burst-{'hub' if hub else 'alone'}"
    count = 5000
    client = clients(cable.url, token, account_id=1, user_id=7, **on(hub))
    ids: list[int] = []
    done = threading.Event()

    def collect(event: Event) -> None:
        ids.append(event.data.id)
        if len(ids) >= count:
            done.set()

    client.on("message.created", collect)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    t0 = time.monotonic()
    cable.burst(token, count)
    assert done.wait(T(60)), f"got {len(ids)} of {count}"
    elapsed = time.monotonic() - t0
    assert ids == list(range(1, count + 1))
    assert rec.named("error") == []
    print(f"\n{count} messages from Rails in {elapsed:.2f}s ({count / elapsed:.0f} msg/s)")


def test_server_restart_then_process_restart(
    tmp_path_factory: pytest.TempPathFactory, clients: Any, hub: rs.Hub | None
) -> None:
    # Its own server: restarting the shared one would disturb the other tests.
    with ActionCableServer(log_dir=tmp_path_factory.mktemp("actioncable-restart")) as cable:
        token = "user-7-restart"
        client = clients(cable.url, token, account_id=1, user_id=7, presence_interval=1.0, **on(hub))
        rec = Recorder(client)
        client.start()
        rec.wait_count("subscribed")
        eventually(lambda: cable.presence_count(token) >= 1, 5, "first presence")
        # ActionCable.server.restart: {"type":"disconnect","reason":"server_restart","reconnect":true}
        cable.restart_notice()
        (disc,) = rec.wait_count("disconnected")
        assert disc.data.reason == "server_restart" and disc.data.will_reconnect
        rec.wait_count("subscribed", 2)
        eventually(lambda: cable.presence_count(token) >= 2, 5, "presence after the reconnect")
        # A process restart (deploy): the socket dies without a frame, the client comes back.
        cable.restart()
        rec.wait_count("subscribed", 3, timeout=20)
        cable.broadcast(token, {"event": "message.created", "data": {"id": 2, "conversation_id": 6, "account_id": 1}})
        assert rec.wait_count("message.created")[0].entity_id == 6
        eventually(lambda: cable.presence_count(token) >= 1, 5, "presence on the new process")


# -- hardening (review of issue 4) ---------------------------------------------------------------------


def test_retried_subscribes_are_ignored_by_rails_and_the_failure_is_reported(
    cable: ActionCableServer, clients: Any, hub: rs.Hub | None
) -> None:
    # An unknown token: RoomChannel#subscribed raises, Rails keeps the identifier and ignores the
    # client's repeated subscribes (the channel's `subscribed` runs once), the client reports.
    token = f"nobody-retry-probe-{'hub' if hub else 'alone'}"
    client = clients(cable.url, token, account_id=1, user_id=7, retry_interval=0.1, confirm_timeout=1.0, **on(hub))
    rec = Recorder(client)
    client.start()
    (rej,) = rec.wait_count("subscription_rejected", timeout=10)
    attempts = int((rej.data.reason or "").split(" after ")[1].split(" ")[0])
    assert attempts >= 3
    assert cable.stats()["subscribe_counts"].get(token) == 1
    assert rec.named("subscribed") == []


def test_unsubscribe_then_reconnect_does_not_restore_on_rails(
    cable: ActionCableServer, clients: Any, hub: rs.Hub | None
) -> None:
    where = "hub" if hub else "alone"
    gone_token, kept_token = f"user-7-unsub-gone-{where}", f"user-7-unsub-kept-{where}"
    client = rs.ActionCableClient(cable.url, reconnect=FAST, stale_after=6.0, **on(hub))
    try:
        rec = Recorder(client)
        gone = client.subscribe({"channel": "RoomChannel", "pubsub_token": gone_token, "account_id": 1, "user_id": 7})
        kept = client.subscribe({"channel": "RoomChannel", "pubsub_token": kept_token, "account_id": 1, "user_id": 7})
        client.start()
        rec.wait_count("subscribed", 2)
        client.unsubscribe(gone)
        client.perform(kept, "update_presence")  # after the unsubscribe on the same socket: a barrier
        eventually(lambda: cable.presence_count(kept_token) >= 1, 5, "presence of the kept subscription")
        cable.disconnect_all(reason="server_restart", reconnect=True)
        rec.wait_count("subscribed", 3)
        client.perform(kept, "update_presence")
        eventually(lambda: cable.presence_count(kept_token) >= 2, 5, "presence after the reconnect")
        counts = cable.stats()["subscribe_counts"]
        assert counts.get(gone_token) == 1 and counts.get(kept_token) == 2
        assert [e.subscription for e in rec.named("subscribed")][-1] == kept
        cable.broadcast(gone_token, {"event": "message.created", "data": {"id": 1, "conversation_id": 1}})
        cable.broadcast(kept_token, {"event": "marker", "data": {}})
        rec.wait(lambda evs: any(e.name == "message" and e.data.get("event") == "marker" for e in evs))
        # Broadcasts reach the client in order: nothing came through the unsubscribed identifier.
        assert {e.subscription for e in rec.named("message")} == {kept}
    finally:
        client.close(timeout=5)


def test_a_token_that_json_escapes_is_redacted_against_rails(
    cable: ActionCableServer, clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Rails echoes the identifier with its own JSON escaping (\\u003c for <, \\u0026 for &...).
    # (No control character such as a tab: refused at construction, no pubsub token holds one.)
    token = "user-7-Rq1\"Rq2\\Rq3<Rq4>&Rq5'Rq6\u2029Rq7"
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    client = clients(cable.url, token, account_id=1, user_id=7, presence_interval=0.5)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    eventually(lambda: cable.presence_count(token) >= 1, 5, "presence with an escaped token")
    rec.wait_count("presence.update")
    cable.broadcast(token, {"event": "message.created", "data": {"id": "bad", "conversation_id": 1}})
    (error,) = rec.wait_count("error")
    (delivered,) = rec.wait_count("message.created")
    assert delivered.decode_error is not None and "Rq" not in repr(delivered)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "confirm_subscription" in logged and "pubsub_token" in logged
    for text in (
        logged,
        repr(client),
        repr(client.room),
        repr(rec.events),
        repr(error.data),
        str(error.data.exception),
    ):
        assert "Rq" not in text, text


def test_other_users_pubsub_tokens_in_a_payload_never_reach_raw_or_to_dict(
    cable: ActionCableServer, clients: Any
) -> None:
    # Chatwoot's conversation.created carries contact_inbox as the whole row (Conversation#
    # push_event_data), its pubsub_token included: another user's secret, not one the client
    # registered.  Rails relays it as is; the event's raw and to_dict() must not.
    import json

    token = "user-7-own-token"
    client = clients(cable.url, token, account_id=1, user_id=7)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    data = {
        "id": 9,
        "account_id": 1,
        "contact_inbox": {"contact_id": 5, "inbox_id": 1, "source_id": "src-1", "pubsub_token": "CONTACTPUBSUBS3CRET"},
        "meta": {"sender": {"id": 5, "name": "Jane", "pubsub_token": "SENDERS3CRET", "accessToken": "CAMELS3CRET"}},
        "messages": [{"id": 1, "content": "hi", "conversation_id": 9, "account_id": 1, "api_key": "KEYS3CRET"}],
    }
    cable.broadcast(token, {"event": "conversation.created", "data": data})
    cable.broadcast(token, {"event": "custom.unknown", "data": {"account_id": 1, "password": "PWS3CRET"}})
    (conv,) = rec.wait_count("conversation.created")
    (custom,) = rec.wait_count("custom.unknown")
    # The decoded data is the user's, as the server sent it; the forwardable copies hide secrets.
    assert conv.data.contact_inbox.source_id == "src-1" and conv.data.meta.sender.name == "Jane"
    assert conv.raw["message"]["data"]["contact_inbox"]["pubsub_token"] == "***"
    assert conv.raw["message"]["data"]["contact_inbox"]["source_id"] == "src-1"
    assert custom.data["password"] == "PWS3CRET"  # data is the user's own decoded payload
    for event in (conv, custom):
        for text in (json.dumps(event.raw), json.dumps(event.to_dict()), repr(event.raw)):
            for secret in ("CONTACTPUBSUBS3CRET", "SENDERS3CRET", "CAMELS3CRET", "KEYS3CRET", "PWS3CRET", token):
                assert secret not in text, (secret, text)
    assert rec.named("error") == []


# -- on a Hub (one loop thread, a worker pool) against real Rails ------------------------------------


class Ids:
    """The ``message.created`` ids one client received, in delivery order, with a wait for one id."""

    def __init__(self, client: VoxsigClient) -> None:
        self.ids: list[int] = []
        self._cond = threading.Condition()
        client.on("message.created", self._add)

    def _add(self, event: Event) -> None:
        with self._cond:
            self.ids.append(event.data.id)
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[list[int]], bool], what: str, timeout: float = 60.0) -> list[int]:
        with self._cond:
            if not self._cond.wait_for(lambda: pred(self.ids), T(timeout)):
                raise AssertionError(f"{what} not met within {T(timeout)}s; got {len(self.ids)} ids")
            return list(self.ids)


def test_restart_mid_stream_resubscribes_and_loses_only_the_gap(
    cable: ActionCableServer, clients: Any, hub: rs.Hub | None
) -> None:
    """ActionCable.server.restart in the middle of a burst: the client resubscribes on the new
    socket; what it received is in order with no duplicate, and every loss is inside the gap.

    What Rails 6.1 does (actioncable/lib/action_cable/server/base.rb ``restart``): every
    connection gets ``{"type":"disconnect","reason":"server_restart","reconnect":true}`` and its
    websocket is closed; then the worker pool is halted and the pubsub adapter shut down (both
    made again lazily).  ActionCable keeps no history: what is broadcast between the close and the
    new subscription, and what was still queued in the adapter or the worker pool, is gone for
    good.  A confirmation is sent only after every ``stream_from`` of the channel is subscribed in
    the pubsub adapter (channel/streams.rb defers it), so whatever is broadcast after the client
    sees ``confirm_subscription`` reaches it: that part must arrive complete.  A duplicate could
    only come from a second socket (Rails ignores a repeated subscribe on one socket,
    connection/subscriptions.rb ``add``): the server counts one ``subscribed`` per connection.
    """
    token = f"user-7-midstream-{'hub' if hub else 'alone'}"
    count, after = 3000, 300
    client = clients(cable.url, token, account_id=1, user_id=7, **on(hub))
    got = Ids(client)
    rec = Recorder(client)
    client.start()
    rec.wait_count("subscribed")
    burst_error: list[BaseException] = []

    def burst() -> None:
        try:
            cable.burst(token, count)
        except BaseException as exc:  # reported by the assertion below
            burst_error.append(exc)

    sender = threading.Thread(target=burst, name="test-rails-burst")
    sender.start()
    try:
        got.wait_for(lambda ids: len(ids) >= 100, "100 messages before the restart")
        assert cable.restart_notice() >= 1
        (disc,) = rec.wait_count("disconnected")
        assert disc.data.reason == "server_restart" and disc.data.will_reconnect
        rec.wait_count("subscribed", 2)
    finally:
        sender.join(T(120))
    assert not sender.is_alive() and not burst_error, burst_error
    cable.burst(token, after, start=count + 1)  # after the confirmation: nothing may be missing
    ids = got.wait_for(lambda ids: bool(ids) and ids[-1] >= count + after, f"id {count + after}")
    # Delivery order on the client: the events before `disconnected` came on the first socket.
    order = [e.name for e in rec.events]  # complete: the last id was delivered after all of them
    k = order[: order.index("disconnected")].count("message.created")
    assert ids[:k] == list(range(1, k + 1)), "the first socket's messages are a gapless prefix"
    assert all(a < b for a, b in itertools.pairwise(ids)), "in order, no duplicate"
    assert ids[-after:] == list(range(count + 1, count + after + 1)), "everything after the confirmation"
    lost = sorted(set(range(1, count + after + 1)) - set(ids))
    assert all(k < i <= count for i in lost), "losses only inside the restart's gap"
    assert len(rec.named("subscribed")) == 2 and cable.stats()["subscribe_counts"].get(token) == 2
    assert rec.named("error") == []
    print(f"\nrestart after {k} of {count}: {len(lost)} lost in the gap, {len(ids)} delivered")


def test_many_clients_on_one_hub_resubscribe_after_restarts_and_close_leaves_no_threads(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """30 Voxsig clients on one Hub (1 loop + 2 workers + 1 handshake thread) through a
    ``server_restart`` notice and then a process restart (puma stopped: the sockets die without a
    frame, the port refuses until the new process listens).  Every client resubscribes each time,
    receives its own stream exactly once and the account stream once, and ``hub.close()`` joins
    every thread the hub started.

    Rails facts used: a restart notice reaches every open connection
    (``ActionCable.server.connections``: the control answer counts them); stream names follow
    Chatwoot (the pubsub token, and ``account_<id>`` for agents); a new process starts with no
    subscriptions at all, so everything after it depends on the client's resubscription.
    """
    n = 30
    name = "t-rails-many"
    with ActionCableServer(log_dir=tmp_path_factory.mktemp("actioncable-many")) as cable:
        hub = rs.Hub(workers=2, handshake_workers=1, handshake_jitter=0.5, name=name)
        try:
            tokens = [f"user-{100 + i}-many" for i in range(n)]
            clients = [
                VoxsigClient(
                    cable.url, t, account_id=1, user_id=100 + i, hub=hub, reconnect=FAST, presence_interval=None
                )
                for i, t in enumerate(tokens)
            ]
            recs = [Recorder(c) for c in clients]
            for c in clients:
                c.start()

            def all_subscribed(times: int, timeout: float = 60.0) -> None:
                for r in recs:
                    r.wait_count("subscribed", times, timeout=timeout)

            def exactly_once_each(round_: int) -> None:
                # A message on each client's own stream, then one on the account stream that
                # every client shares: per-socket order makes the account marker a barrier.
                for i, t in enumerate(tokens):
                    cable.broadcast(t, {"event": "own", "data": {"i": i, "round": round_, "account_id": 1}})
                cable.broadcast("account_1", {"event": "all", "data": {"round": round_, "account_id": 1}})
                for i, r in enumerate(recs):
                    r.wait(lambda evs: any(e.name == "all" and e.data["round"] == round_ for e in evs), timeout=60)
                    own = [e.data["i"] for e in r.named("own") if e.data["round"] == round_]
                    marks = [e for e in r.named("all") if e.data["round"] == round_]
                    assert own == [i] and len(marks) == 1, (i, own, len(marks))

            all_subscribed(1)
            exactly_once_each(1)
            assert cable.restart_notice() == n
            all_subscribed(2)
            exactly_once_each(2)
            cable.restart()
            all_subscribed(3)
            exactly_once_each(3)
            for r in recs:
                # While the new process is not listening yet, connects are refused: those errors only.
                errors = {(e.data.kind, "Connection refused" in e.data.message) for e in r.named("error")}
                assert len(r.named("subscribed")) == 3 and errors <= {("connect", True)}, errors
                assert r.named("disconnected")[0].data.reason == "server_restart"
            # The new process counts its own subscribes: one per client, no second socket.
            stats = cable.stats()
            assert stats["connections"] == n
            assert all(stats["subscribe_counts"].get(t) == 1 for t in tokens), stats["subscribe_counts"]
            assert hub.stats.states == {"connected": n} and hub.stats.clients == n
        finally:
            assert hub.close(T(20))
        assert [t.name for t in hub.threads if t.is_alive()] == []
        assert [t.name for t in threading.enumerate() if t.name.startswith(f"realtime_sync-{name}")] == []
        assert hub.stats.threads == 0 and all(c.closed for c in clients)


def test_refused_clients_leave_the_hub_when_closed(cable: ActionCableServer) -> None:
    """A client the server stopped for good (Rails' reject_unauthorized_connection: the upgrade
    succeeds, then ``connect`` raises in Connection#handle_open before the welcome and Rails sends
    ``{"type":"disconnect","reason":"unauthorized","reconnect":false}``) is closed by
    ``start(wait=True)`` raising, or by ``run_forever()`` returning; it must leave the hub then,
    as any closed client does: a long-running hub where tokens get refused must not keep every
    refused client (and count it in ``hub.stats``) until the hub itself closes.  The hub's other
    clients carry on."""
    hub = rs.Hub(workers=1, handshake_workers=1, name="t-rails-left")
    try:
        ok = VoxsigClient(cable.url, "user-7-left-ok", account_id=1, user_id=7, hub=hub, presence_interval=None)
        ok_rec = Recorder(ok)
        ok.start(wait=True, timeout=T(30))
        for _ in range(3):
            refused = VoxsigClient(
                cable.url + "?reject=1", "user-token-1", account_id=1, user_id=7, hub=hub, presence_interval=None
            )
            with pytest.raises(rs.AuthenticationError, match="unauthorized"):
                refused.start(wait=True, timeout=T(30))
        stopped = VoxsigClient(
            cable.url + "?reject=1", "user-token-1", account_id=1, user_id=7, hub=hub, presence_interval=None
        )
        runner = threading.Thread(target=stopped.run_forever, name="test-run-forever")
        runner.start()
        runner.join(T(30))
        assert not runner.is_alive(), "run_forever() must return after an unauthorized disconnect"
        assert hub.clients == [ok]
        assert hub.stats.clients == 1 and hub.stats.states == {"connected": 1}
        cable.broadcast("user-7-left-ok", {"event": "message.created", "data": {"id": 1, "conversation_id": 3}})
        assert ok_rec.wait_count("message.created")[0].entity_id == 3
    finally:
        assert hub.close(T(10))
