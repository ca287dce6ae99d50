"""The Jifeline clients over real sockets, against the fake servers of realtime_sync.testing.jifeline."""

from __future__ import annotations

import itertools
import logging
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.jifeline import GapRecovery, JifelineCustomerClient, JifelinePartnerClient, partner_url
from realtime_sync.models.jifeline import SystemEvent, Ticket
from realtime_sync.oauth import ClientCredentialsTokenProvider
from realtime_sync.testing.jifeline import FakeJifelineCustomerServer, FakeJifelinePartnerServer, FakeJifelineRestServer

from .conftest import T
from .conftest import poll_until as eventually

UUID = "97a0e81d-d0ac-42ae-9195-a11732ad322a"
CONNECTOR = "9389ba6f-3696-4571-84d4-34d588c4b109"
CREATED = "tickets.ticket.created"


class Recorder:
    """A handler that keeps the events it got, thread-safely."""

    def __init__(self) -> None:
        self.events: list[rs.Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: rs.Event) -> None:
        with self._lock:
            self.events.append(event)

    def snapshot(self) -> list[rs.Event]:
        with self._lock:
            return list(self.events)

    def __len__(self) -> int:
        return len(self.snapshot())

    def wait(self, n: int, timeout: float = 5.0) -> list[rs.Event]:
        return eventually(lambda: len(self) >= n and self.snapshot(), timeout, f"{n} events")


@pytest.fixture
def customer() -> Iterator[FakeJifelineCustomerServer]:
    with FakeJifelineCustomerServer(interval=0.1) as server:
        yield server


@pytest.fixture
def partner() -> Iterator[FakeJifelinePartnerServer]:
    with FakeJifelinePartnerServer(interval=0.1) as server:
        yield server


def sent(server, conn=None) -> list[dict]:
    return [m for m in server.messages(conn) if isinstance(m, dict)]


# -- customer: subscriptions ----------------------------------------------------------------


def test_customer_subscribe_and_unsubscribe_send_exact_frames_and_pushes_stop(customer, clients):
    client = clients(JifelineCustomerClient, customer.url)
    tickets = Recorder()
    client.on("ticket.updated", tickets)
    client.subscribe_ticket(1)  # before start: sent on connect
    client.start()
    first = client.wait_for("ticket.updated", timeout=T(5))
    assert isinstance(first.data, Ticket) and first.entity_id == 1
    client.subscribe_connection(UUID)
    client.subscribe_connector(940201043)
    client.wait_for("connector.updated", timeout=T(5))
    client.unsubscribe_ticket(1)
    client.unsubscribe_connection(UUID)
    client.unsubscribe_connector(940201043)
    customer.wait_until(lambda: len(sent(customer)) >= 6, timeout=5)
    assert sent(customer) == [
        {"action": "subscribeToTicket", "ticket_id": 1},
        {"action": "subscribeToConnection", "connection_uuid": UUID},
        {"action": "subscribeToConnector", "connector_id": 940201043},
        {"action": "unsubscribeToTicket", "ticket_id": 1},
        {"action": "unsubscribeToConnection", "connection_uuid": UUID},
        {"action": "unsubscribeFromConnector", "connector_id": 940201043},
    ]
    assert client.subscriptions == []
    # The fake honoured the odd names: ticket 1 is no longer pushed.
    client.subscribe_ticket(2)
    later = Recorder()
    client.on("ticket.updated", later, entity_id=2)
    later.wait(3)
    all_events = tickets.snapshot()
    second_of_2 = [i for i, e in enumerate(all_events) if e.entity_id == 2][1]
    assert all(e.entity_id == 2 for e in all_events[second_of_2:])


def test_subscriptions_restored_after_reconnect_and_unsubscribed_not_restored(customer, clients):
    client = clients(JifelineCustomerClient, customer.url)
    client.subscribe_ticket(1)
    client.subscribe_connection(UUID)
    client.subscribe_connector(7)
    client.unsubscribe_connector(7)
    client.start()
    conn1 = customer.wait_for_connection(1, timeout=5)
    eventually(lambda: len(customer.subscriptions(conn1)) == 2, what="subscription")
    started = time.monotonic()
    customer.drop_all()
    conn2 = customer.wait_for_connection(2, timeout=5)
    reconnect_delay = time.monotonic() - started
    customer.wait_until(lambda: len(sent(customer, conn2)) >= 2, timeout=5)
    assert sent(customer, conn2) == [
        {"action": "subscribeToTicket", "ticket_id": 1},
        {"action": "subscribeToConnection", "connection_uuid": UUID},
    ]
    assert customer.subscriptions(conn2) == [("ticket", 1), ("connection", UUID)]
    # A drop during normal operation: reconnect at once, not after the policy's 5 s interval.
    assert reconnect_delay < T(4.0)
    client.wait_for("ticket.updated", timeout=T(5))


def test_invalid_ids_are_refused_at_the_call(clients):
    client = clients(JifelineCustomerClient, "ws://127.0.0.1:9/")
    with pytest.raises(rs.ConfigurationError):
        client.subscribe_ticket("not-a-number")
    with pytest.raises(rs.ConfigurationError):
        client.subscribe_connection(42)


# -- change detection -----------------------------------------------------------------------


def test_changes_only_reports_real_changes_and_no_spurious_change_after_reconnect(customer, clients):
    client = clients(JifelineCustomerClient, customer.url)
    every, changed = Recorder(), Recorder()
    client.on("ticket.updated", every)

    @client.on("ticket.updated", changes_only=True)
    def on_change(event: rs.Event) -> None:
        changed(event)

    client.subscribe_ticket(1)
    client.start()
    (initial,) = changed.wait(1)
    assert initial.changes is not None and "state" in initial.changes
    every.wait(4)  # three more identical snapshots
    assert len(changed) == 1
    customer.update_ticket(1, state=2)
    changes = changed.wait(2)[1]
    assert changes.changes == {"state"} and changes.data.state == 2
    # Reconnect: the new connection's snapshots equal the last one before the drop.
    before = len(every)
    customer.drop_all()
    customer.wait_for_connection(2, timeout=5)
    every.wait(before + 4)
    assert len(changed) == 2
    after_reconnect = [e for e in every.snapshot()[before:]]
    assert all(e.changes == frozenset() for e in after_reconnect)
    # off() with the original handler removes the changes_only registration.
    assert client.off("ticket.updated", on_change) == 1
    customer.update_ticket(1, state=3)
    eventually(lambda: any(e.data.state == 3 for e in every.snapshot()), what="state 3 seen")
    n = len(every)
    every.wait(n + 1)
    assert len(changed) == 2


def test_a_changes_only_handler_redefined_by_a_re_run_cell_is_registered_once(customer, clients):
    """Issue 12 item 6: a notebook cell run again defines a new function object; ``on()`` replaces
    the earlier registration of the same name (in its place) with changes_only too, and a cell
    edited from a plain handler to ``changes_only=True`` leaves only the new one."""
    client = clients(JifelineCustomerClient, customer.url)
    every = Recorder()
    client.on("ticket.updated", every)  # first: when it has seen a snapshot, the cell's handler has too
    calls: list[tuple[int, int]] = []
    namespace: dict[str, Any] = {"__name__": "__main__", "client": client, "calls": calls}
    cell = """
@client.on("ticket.updated"{options})
def on_change(event, run=RUN):
    calls.append((run, event.data.state))
"""
    for run, options in ((1, ""), (2, ", changes_only=True"), (3, ", changes_only=True")):
        namespace["RUN"] = run
        exec(compile(cell.format(options=options), "<cell>", "exec"), namespace)
    client.subscribe_ticket(1)
    client.start()
    every.wait(3)  # the first snapshot (a change) and two identical ones
    customer.update_ticket(1, state=2)
    eventually(lambda: any(e.data.state == 2 for e in every.snapshot()), what="state 2 seen")
    every.wait(len(every) + 2)
    # One registration, the newest definition (run 3), changes only: not run 1's every snapshot,
    # not each change twice.
    assert calls == [(3, 1), (3, 2)], calls
    assert client.off("ticket.updated", namespace["on_change"]) == 1


# -- tokens ---------------------------------------------------------------------------------


def client_log_text(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("realtime_sync.testing"))


def test_token_sent_as_bearer_header_and_never_logged(clients, caplog):
    token = "hdr-secret-token-123"
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    with FakeJifelineCustomerServer(interval=0.1, token=token) as server:
        client = clients(JifelineCustomerClient, server.url, token=token)
        client.subscribe_ticket(1)
        client.start()
        client.wait_for("ticket.updated", timeout=T(5))
        (handshake,) = server.handshakes
        assert handshake.status == 101
        assert {k.lower(): v for k, v in handshake.headers.items()}["authorization"] == f"Bearer {token}"
        assert "access_token" not in handshake.path
    text = client_log_text(caplog)
    assert "connecting to" in text and "subscribeToTicket" in text  # DEBUG logs were on
    assert token not in text and token not in repr(client)


def test_token_in_query_on_request_and_redacted_everywhere(clients, caplog):
    token = "qry-secret-token-456"
    caplog.set_level(logging.DEBUG)  # every logger
    with FakeJifelinePartnerServer(interval=0.1, token=token) as server:
        client = clients(JifelinePartnerClient, server.url, token=token, token_in_query=True)
        connected: list[rs.Event] = []
        client.on("connected", connected.append)
        client.subscribe_connector(CONNECTOR)
        client.start()
        client.wait_for("connector.status", timeout=T(5))
        (handshake,) = server.handshakes
        assert f"access_token={token}" in handshake.path
        assert "authorization" not in {k.lower() for k in handshake.headers}
    text = client_log_text(caplog)
    assert "connecting to" in text and "access_token=***" in text
    assert token not in text and token not in repr(client) and token not in connected[0].data.url
    # Every logger at DEBUG, the fake server's own (python-websockets logs "< GET /?access_token=")
    # included: a test suite that logs at DEBUG prints no token either (review 5).
    everything = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    assert "websockets.fake_server" in everything and token not in everything


def test_token_callable_is_called_on_every_connect(clients):
    calls: list[str] = []
    with FakeJifelinePartnerServer(interval=0.1) as server:

        def rotating_token() -> str:
            token = f"rotating-token-{len(calls) + 1}"
            server.accept_token(token)  # the server only knows tokens handed out so far
            calls.append(token)
            return token

        client = clients(JifelinePartnerClient, server.url, token=rotating_token)
        client.start()
        server.wait_for_connection(1, timeout=5)
        server.drop_all()
        server.wait_for_connection(2, timeout=5)
        auths = [{k.lower(): v for k, v in h.headers.items()}["authorization"] for h in server.handshakes]
        assert calls == ["rotating-token-1", "rotating-token-2"]
        client.close()
    assert auths == ["Bearer rotating-token-1", "Bearer rotating-token-2"]


@pytest.mark.parametrize("token", [None, "wrong-token-789"])
def test_missing_or_wrong_token_is_refused_with_an_auth_error(clients, token):
    with FakeJifelinePartnerServer(token="the-right-token") as server:
        client = clients(JifelinePartnerClient, server.url, token=token)
        # wait_for registers first, then starts the client: the first (and only) error is seen.
        error = client.wait_for("error", timeout=T(5), where=lambda e: e.data.kind == "auth")
        assert "401" in error.data.message
        assert server.handshakes[0].status == 401
        if token:
            assert token not in error.data.message


# -- faults ---------------------------------------------------------------------------------


def test_gateway_error_and_malformed_frames_become_error_events_and_the_stream_goes_on(customer, clients):
    client = clients(JifelineCustomerClient, customer.url)
    errors = Recorder()
    client.on("error", errors)
    client.subscribe_ticket(1)
    client.start()
    client.wait_for("ticket.updated", timeout=T(5))
    customer.send_gateway_error()
    customer.send_malformed()
    client.send({"action": "unknownRoute"})  # the fake gateway answers Forbidden too
    kinds = [e.data.kind for e in errors.wait(3)]
    assert kinds == ["server", "bad_frame", "server"]
    forbidden = errors.snapshot()[0]
    assert forbidden.data.message.startswith("server error: Forbidden (connectionId=")
    assert set(forbidden.raw) == {"message", "connectionId", "requestId"}
    client.wait_for("ticket.updated", timeout=T(5))
    assert client.state is rs.State.CONNECTED
    assert len(customer.connections) == 1


def _delays(client) -> Recorder:
    """Records the ``reconnecting`` events: the delay the policy chose for each attempt."""
    delays = Recorder()
    client.on("reconnecting", delays)
    return delays


def test_reconnect_cadence_follows_seed_001_scaled(partner, clients):
    """Instant retries a handful of times after a drop, then no faster than the interval.

    The vendor's 5 s is scaled to 2 s here; the next test measures the real default once.  The
    policy's choice is read from the ``reconnecting`` events (what the client decided, free of
    the machine's load); the wire shows that the client never comes back sooner than that (a
    timer never fires early: the server's times can only be later), and tells an instant retry
    from one interval.  How late a loaded machine makes an attempt is no property of the client.
    """
    policy = rs.ReconnectPolicy(instant_retries=3, interval=2.0, max_interval=2.0, jitter=0.25, stable_after=60)
    client = clients(JifelinePartnerClient, partner.url, reconnect=policy)
    delays = _delays(client)
    client.start()
    partner.wait_for_connection(1, timeout=T(15))
    partner.refuse(503)
    partner.drop_all()
    eventually(lambda: len(partner.attempt_times) >= 7, timeout=30, what="7 attempts")
    chosen = [e.data.delay for e in delays.wait(6)[:6]]
    # The first retry after a drop is spread by restart_jitter (up to 1 s: not every client of a
    # restarted server at once); the next two are instant, then the interval with its jitter.
    assert 0.0 <= chosen[0] <= 1.0 and chosen[1:3] == [0.0, 0.0], chosen
    assert all(2.0 <= d <= 2.0 * 1.25 for d in chosen[3:]), chosen
    times = partner.attempt_times[1:7]  # the drop, then 6 attempts
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g < 1.99 for g in gaps[:2]), gaps  # attempts 2-3: instant, not one interval
    assert all(g >= 1.99 for g in gaps[2:]), gaps  # then never sooner than the interval
    assert statistics.median(gaps[2:]) < 2.0 * 1.25 + 2.0, gaps  # and not a growing backoff


def test_reconnect_cadence_default_policy_waits_5s_after_the_instant_retries(partner, clients):
    default = JifelinePartnerClient.default_reconnect
    assert (default.instant_retries, default.interval, default.max_interval) == (3, 5.0, 5.0)
    client = clients(JifelinePartnerClient, partner.url, reconnect=default)
    delays = _delays(client)
    partner.refuse(503)
    client.start()
    eventually(lambda: len(partner.attempt_times) >= 5, timeout=30, what="5 attempts")
    chosen = [e.data.delay for e in delays.wait(4)[:4]]
    assert chosen[:3] == [0.0, 0.0, 0.0] and 5.0 <= chosen[3] <= 5.0 * 1.25, chosen
    times = partner.attempt_times[:5]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g < 4.99 for g in gaps[:3]), gaps  # instant, not one interval
    assert gaps[3] >= 4.99, gaps  # never sooner than the interval


def test_forced_disconnects_are_survived_with_subscriptions_resent(clients):
    with FakeJifelineCustomerServer(interval=0.1, max_connection_age=0.4) as server:
        client = clients(JifelineCustomerClient, server.url)
        client.subscribe_ticket(1)
        client.start()
        conn3 = server.wait_for_connection(3, timeout=10)
        client.wait_for("ticket.updated", timeout=T(5))
        for conn in server.connections[:3]:
            assert sent(server, conn)[0] == {"action": "subscribeToTicket", "ticket_id": 1}
        assert conn3.id == 3


def test_keepalive_keeps_an_idle_gateway_connection_open(clients):
    with FakeJifelineCustomerServer(interval=0.1, idle_timeout=0.6) as server:
        client = clients(JifelineCustomerClient, server.url, keepalive_interval=0.15)
        client.subscribe_ticket(1)
        client.start()
        conn = server.wait_for_connection(1, timeout=5)
        server.wait_until(lambda: len(sent(server, conn)) >= 8, timeout=5)  # 1 subscribe + 7 keepalives
        assert len(server.connections) == 1 and not conn.closed.is_set()
        assert all(m == {"action": "subscribeToTicket", "ticket_id": 1} for m in sent(server, conn))


def test_without_keepalive_the_idle_gateway_closes_and_the_client_comes_back(clients):
    with FakeJifelineCustomerServer(interval=0.1, idle_timeout=0.3) as server:
        client = clients(JifelineCustomerClient, server.url, keepalive_interval=None)
        client.subscribe_ticket(1)
        client.start()
        server.wait_for_connection(2, timeout=5)
        client.wait_for("ticket.updated", timeout=T(5))


# -- partner --------------------------------------------------------------------------------


def test_partner_defaults_and_configuration(clients):
    assert clients(JifelinePartnerClient, token="x-token").url == "wss://partner-api-ws-001.prd.jifeline.cloud/wssprd"
    assert clients(JifelinePartnerClient, token="x-token", cluster="002").url == partner_url("002")
    with pytest.raises(rs.ConfigurationError):
        JifelinePartnerClient("ws://127.0.0.1:9/", cluster="002")
    with pytest.raises(rs.ConfigurationError):
        JifelinePartnerClient("ws://127.0.0.1:9/", gap_recovery=True)  # where is the REST API?
    with pytest.raises(rs.ConfigurationError):
        clients(JifelinePartnerClient, token="x-token").subscribe_event("connected")


def test_partner_camel_case_server_and_typed_events(clients):
    with FakeJifelinePartnerServer(interval=0.1, camel_case=True) as server:
        client = clients(JifelinePartnerClient, server.url)
        client.subscribe_connector(CONNECTOR)
        client.subscribe_event(CREATED)
        client.start()
        status = client.wait_for("connector.status", timeout=T(5))
        assert status.entity_id == CONNECTOR and status.data.voltage == 12.6
        server.wait_until(lambda: len(sent(server)) >= 2, timeout=5)
        assert sent(server) == [
            {"action": "subscribe-to-connector", "connector_id": CONNECTOR},
            {"action": "subscribe-to-event", "event_type": CREATED},
        ]
        eventually(lambda: ("event", CREATED) in server.subscriptions(), what="subscription")
        events = Recorder()
        client.on("tickets.*", events)
        frame = server.emit_event(CREATED)
        (event,) = events.wait(1)
        assert isinstance(event.data, SystemEvent)
        assert (event.name, event.data.event_id) == (CREATED, frame["event_id"])
        assert event.entity_id == frame["message"]["ticket"]["id"]
        client.unsubscribe_event(CREATED)
        server.wait_for_message(lambda m: m.json.get("action") == "unsubscribe-from-event", timeout=5)


# -- OAuth ----------------------------------------------------------------------------------


@pytest.fixture
def rest() -> Iterator[FakeJifelineRestServer]:
    with FakeJifelineRestServer("cid-1", "client-secret-abc") as server:
        yield server


def test_provider_caches_and_is_thread_safe(rest):
    provider = ClientCredentialsTokenProvider(rest.token_url, "cid-1", "client-secret-abc")
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(provider())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T(10))
    assert len(set(results)) == 1 and len(results) == 8
    assert provider() == results[0]
    assert rest.token_requests() == 1 and provider.fetches == 1
    assert "client-secret-abc" not in repr(provider)
    assert provider.expires_in is not None and 3500 < provider.expires_in <= 3600


def test_provider_refreshes_before_expiry(rest):
    now = [0.0]
    provider = ClientCredentialsTokenProvider(rest.token_url, "cid-1", "client-secret-abc", clock=lambda: now[0])
    first = provider()
    now[0] = 1799.0
    assert provider() == first
    now[0] = 1800.0  # the vendor's "about every 30 minutes"
    second = provider()
    assert second != first and rest.token_requests() == 2
    rest.token_ttl = 100.0  # a short-lived token: renewed refresh_margin (60 s) before it expires
    provider.invalidate()
    third = provider()
    now[0] += 39.0
    assert provider() == third
    now[0] += 1.0
    assert provider() != third and rest.token_requests() == 4


def test_provider_refused_secret_is_a_clear_error_without_the_secret(rest, caplog):
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    provider = ClientCredentialsTokenProvider(rest.token_url, "cid-1", "wrong-secret-xyz")
    with pytest.raises(rs.TokenError) as info:
        provider()
    message = str(info.value)
    assert "refused the client credentials" in message and "401" in message and "invalid_client" in message
    assert "wrong-secret-xyz" not in message and info.value.__cause__ is None
    assert "wrong-secret-xyz" not in caplog.text
    assert rs.redact("secret is wrong-secret-xyz") == "secret is ***"


def test_provider_extra_headers_basic_auth_and_unreachable_endpoint(rest):
    rest.api_key = "api-key-0001"
    with pytest.raises(rs.TokenError, match="403"):
        ClientCredentialsTokenProvider(rest.token_url, "cid-1", "client-secret-abc")()
    provider = ClientCredentialsTokenProvider(
        rest.token_url, "cid-1", "client-secret-abc", extra_headers={"x-api-key": "api-key-0001"}, auth_method="basic"
    )
    assert provider().startswith("fake-at-")
    body_post = [h for m, p, h in rest.requests if m == "POST"][-1]
    assert body_post["Authorization"].startswith("Basic ")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = ClientCredentialsTokenProvider(
        f"http://127.0.0.1:{port}/oauth2/token", "cid-1", "client-secret-abc", timeout=2
    )
    with pytest.raises(rs.TokenError, match="cannot reach"):
        dead()


def test_provider_keeps_a_valid_token_when_renewal_fails(rest):
    now = [0.0]
    provider = ClientCredentialsTokenProvider(rest.token_url, "cid-1", "client-secret-abc", clock=lambda: now[0])
    token = provider()
    rest.client_secret = "rotated"  # renewals are refused from now on
    now[0] = 1800.0
    assert provider() == token  # still valid for half an hour
    now[0] = 3600.0
    with pytest.raises(rs.TokenError):
        provider()


def test_partner_client_renews_an_expired_token_on_reconnect(clients, partner):
    # The token's lifetime runs on the provider's clock, which the test moves: a real lifetime of
    # a second ran out on a loaded machine before the handshake that carried it (a third token).
    now = [0.0]
    with FakeJifelineRestServer("cid-1", "client-secret-abc", partner=partner, token_ttl=60.0) as rest:
        provider = ClientCredentialsTokenProvider(
            rest.token_url, "cid-1", "client-secret-abc", refresh_margin=0.5, clock=lambda: now[0]
        )
        client = clients(JifelinePartnerClient, partner.url, token=provider)
        errors = Recorder()
        client.on("error", errors)
        client.start()
        partner.wait_for_connection(1, timeout=T(10))
        first = rest.issued[0]
        now[0] += 60.0  # expires_in has run out ...
        partner.revoke_token(first)  # ... and the server refuses the token from now on
        partner.drop_all()
        partner.wait_for_connection(2, timeout=T(10))
        auths = [{k.lower(): v for k, v in h.headers.items()}["authorization"] for h in partner.handshakes]
        assert auths == [f"Bearer {first}", f"Bearer {rest.issued[1]}"]  # never the expired one
        assert [h.status for h in partner.handshakes] == [101, 101]
        assert rest.token_requests() == 2 and errors.snapshot() == []


# -- gap recovery ---------------------------------------------------------------------------


def gap_client(clients, partner, rest, **gap: Any) -> tuple[JifelinePartnerClient, Recorder]:
    provider = ClientCredentialsTokenProvider(rest.token_url, "cid-1", "client-secret-abc")
    options = {"rest_url": rest.url, "http_timeout": 2.0, "hold_timeout": 5.0, **gap}
    client = clients(JifelinePartnerClient, partner.url, token=provider, gap_recovery=GapRecovery(**options))
    events = Recorder()
    client.on("tickets.*", events)
    client.subscribe_event(CREATED)
    client.start()
    return client, events


def test_gap_recovery_delivers_missed_events_first_and_never_twice(clients, partner):
    with FakeJifelineRestServer("cid-1", "client-secret-abc", partner=partner) as rest:
        _client, events = gap_client(clients, partner, rest)
        eventually(lambda: ("event", CREATED) in partner.subscriptions(), what="subscription")
        e1 = partner.emit_event(CREATED)
        events.wait(1)
        partner.refuse(503)
        partner.drop_all()
        missed = [partner.emit_event(CREATED), partner.emit_event("tickets.ticket.closed"), partner.emit_event(CREATED)]
        rest.events_delay = 0.3  # the fetch is slow: live events arrive meanwhile
        partner.refuse(None)
        conn2 = partner.wait_for_connection(2, timeout=5)
        eventually(lambda: ("event", CREATED) in partner.subscriptions(conn2), what="subscription")
        live = partner.emit_event(CREATED)  # also in the REST answer: must come once
        delivered = events.wait(4)
        live_after = partner.emit_event(CREATED)
        delivered = events.wait(5)
        ids = [e.data.event_id for e in delivered]
        assert ids == [
            e1["event_id"],
            missed[0]["event_id"],
            missed[2]["event_id"],
            live["event_id"],
            live_after["event_id"],
        ]
        assert rest.event_requests() == [f"/v2/system/events?after_id={e1['event_id']}&limit=100"]
        assert [
            {k.lower(): v for k, v in h.items()}.get("authorization", "")[:14]
            for m, p, h in rest.requests
            if m == "GET"
        ] == ["Bearer fake-at"]


def test_gap_recovery_sends_the_api_key_and_keeps_occurred_at(clients, partner, caplog):
    # The API reference's beta revision lists OAuth2 *and* x-api-key for /v2/system/events, and
    # its events carry occurred_at (the live push does not).
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    with FakeJifelineRestServer("cid-1", "client-secret-abc", partner=partner, events_api_key="jfl-key-0042") as rest:
        _client, events = gap_client(clients, partner, rest, api_key="jfl-key-0042")
        eventually(lambda: ("event", CREATED) in partner.subscriptions(), what="subscription")
        partner.emit_event(CREATED)
        events.wait(1)
        partner.refuse(503)
        partner.drop_all()
        missed = partner.emit_event(CREATED)
        partner.refuse(None)
        delivered = events.wait(2)
        assert delivered[0].data.occurred_at is None  # live push: no timestamp on the wire
        assert delivered[1].data.event_id == missed["event_id"]
        assert delivered[1].data.occurred_at == partner.events[-1]["occurred_at"]
        assert delivered[1].decode_error is None
        gets = [{k.lower(): v for k, v in h.items()} for m, p, h in rest.requests if m == "GET"]
        assert [h.get("x-api-key") for h in gets] == ["jfl-key-0042"]
    assert "jfl-key-0042" not in caplog.text
    assert "jfl-key-0042" not in repr(GapRecovery(api_key="jfl-key-0042"))


def test_gap_recovery_failure_is_reported_and_live_events_flow(clients, partner):
    with FakeJifelineRestServer("cid-1", "client-secret-abc", partner=partner) as rest:
        client, events = gap_client(clients, partner, rest, retries=1)
        eventually(lambda: ("event", CREATED) in partner.subscriptions(), what="subscription")
        partner.emit_event(CREATED)
        events.wait(1)
        errors = Recorder()
        client.on("error", errors)
        rest.fail_events += [500, 500]  # the first attempt and its one retry
        partner.drop_all()
        conn2 = partner.wait_for_connection(2, timeout=5)
        error = eventually(
            lambda: [e for e in errors.snapshot() if "gap recovery" in e.data.message], timeout=10, what="error"
        )[0]
        assert error.data.kind == "server" and "HTTP 500" in error.data.message
        assert len(rest.event_requests()) == 2
        eventually(lambda: ("event", CREATED) in partner.subscriptions(conn2), what="subscription")
        live = partner.emit_event(CREATED)
        assert events.wait(2)[1].data.event_id == live["event_id"]


def test_a_failed_gap_fetch_is_retried_and_a_fetch_waits_for_the_subscribe_to_settle(clients, partner):
    with FakeJifelineRestServer("cid-1", "client-secret-abc", partner=partner) as rest:
        _client, events = gap_client(clients, partner, rest)
        eventually(lambda: ("event", CREATED) in partner.subscriptions(), what="subscription")
        partner.emit_event(CREATED)
        events.wait(1)
        partner.refuse(503)
        partner.drop_all()
        missed = partner.emit_event(CREATED)
        rest.fail_events.append(500)  # the first fetch fails; the retry gets the missed event
        partner.refuse(None)
        partner.wait_for_connection(2, timeout=5)
        connected = partner.handshakes[-1].at
        eventually(lambda: rest.event_requests(), timeout=5, what="a fetch")
        assert time.monotonic() - connected >= 0.45  # it waited for the subscribe to settle
        got = events.wait(2, timeout=10)
        assert got[1].data.event_id == missed["event_id"]
        assert len(rest.event_requests()) == 2


def test_a_refused_cached_token_is_invalidated_and_a_new_one_fetched(clients, partner):
    with FakeJifelineRestServer("cid-1", "client-secret-abc", partner=partner) as rest:
        provider = ClientCredentialsTokenProvider(rest.token_url, "cid-1", "client-secret-abc")
        policy = rs.ReconnectPolicy(instant_retries=3, interval=0.1, max_interval=0.1, auth_failure_delay=0.1)
        client = clients(JifelinePartnerClient, partner.url, token=provider, reconnect=policy)
        errors = Recorder()
        client.on("error", errors)
        client.start()
        partner.wait_for_connection(1, timeout=5)
        partner.revoke_token(rest.issued[0])  # e.g. revoked on the vendor's side: still cached here
        partner.drop_all()
        partner.wait_for_connection(2, timeout=5)
        assert [e.data.kind for e in errors.snapshot()] == ["auth"]
        assert [h.status for h in partner.handshakes] == [101, 401, 101]
        assert rest.token_requests() == 2


def test_a_refused_client_secret_backs_off_as_refused_credentials(clients, partner):
    # The token endpoint answers 401 invalid_client: the secret cannot work, so the client must
    # not ask again every few seconds (it did: kind "token", 3 instant retries, then every 5 s).
    with FakeJifelineRestServer("cid-1", "client-secret-abc", partner=partner) as rest:
        provider = ClientCredentialsTokenProvider(rest.token_url, "cid-1", "wrong-secret-xyz")
        client = clients(JifelinePartnerClient, partner.url, token=provider)
        errors, retries = Recorder(), Recorder()
        client.on("error", errors)
        client.on("reconnecting", retries)
        with pytest.raises(rs.TokenRefusedError) as info:
            client.start(wait=True, timeout=T(30))  # at once, not after the timeout
        assert isinstance(info.value, rs.AuthenticationError) and isinstance(info.value, rs.TokenError)
        assert "refused the client credentials" in str(info.value) and "wrong-secret-xyz" not in str(info.value)
        (error,) = errors.snapshot()
        assert error.data.kind == "auth"
        assert rest.token_requests() == 1 and partner.handshakes == []

        # Without wait=True the client stays up and waits auth_failure_delay (60 s by default).
        client2 = clients(JifelinePartnerClient, partner.url, token=provider, reconnect=rs.ReconnectPolicy())
        errors2, retries2 = Recorder(), Recorder()
        client2.on("error", errors2)
        client2.on("reconnecting", retries2)
        client2.start()
        (retry,) = retries2.wait(1, timeout=10)
        assert retry.data.delay >= 60.0 * 0.5  # the auth delay (jitter aside), not the 0-5 s retries
        assert [e.data.kind for e in errors2.snapshot()] == ["auth"]
        assert rest.token_requests() == 2


# -- review: resume point, unsubscribe while disconnected, concurrency, query redaction -----


def applied(client: rs.Client, subscriptions: list) -> None:
    """Wait until the I/O thread applied the queued subscription commands (its snapshot shows them)."""
    eventually(lambda: client.subscriptions == subscriptions, what="the commands applied")


def test_resume_point_fetches_missed_events_on_the_first_connection(clients, partner):
    with FakeJifelineRestServer("cid-1", "client-secret-abc", partner=partner) as rest:
        # What happened while the process was down: e1 was processed and persisted, the rest not.
        e1 = partner.emit_event(CREATED)
        missed = [partner.emit_event(CREATED), partner.emit_event("tickets.ticket.closed"), partner.emit_event(CREATED)]
        rest.events_delay = 0.3  # slow fetch: a live event arrives meanwhile and is held
        client, events = gap_client(clients, partner, rest, after_id=e1["event_id"])
        assert client.last_event_id == e1["event_id"]
        conn = partner.wait_for_connection(1, timeout=5)
        eventually(lambda: ("event", CREATED) in partner.subscriptions(conn), what="subscription")
        live = partner.emit_event(CREATED)  # also in the REST answer: delivered once
        delivered = events.wait(3)
        live_after = partner.emit_event(CREATED)
        delivered = events.wait(4)
        assert [e.data.event_id for e in delivered] == [
            missed[0]["event_id"],
            missed[2]["event_id"],
            live["event_id"],
            live_after["event_id"],
        ]
        assert rest.event_requests() == [f"/v2/system/events?after_id={e1['event_id']}&limit=100"]
        assert client.last_event_id == live_after["event_id"]  # `live` came twice, delivered once (above)


def test_no_fetch_on_the_first_connection_without_a_resume_point(clients, partner):
    with FakeJifelineRestServer("cid-1", "client-secret-abc", partner=partner) as rest:
        partner.emit_event(CREATED)  # before the client existed: not fetched
        client, events = gap_client(clients, partner, rest)
        assert client.last_event_id is None
        eventually(lambda: ("event", CREATED) in partner.subscriptions(), what="subscription")
        live = partner.emit_event(CREATED)
        assert [e.data.event_id for e in events.wait(1)] == [live["event_id"]]
        assert client.last_event_id == live["event_id"]
        assert rest.event_requests() == []
    with pytest.raises(rs.ConfigurationError):
        GapRecovery(after_id="  ")


def test_unsubscribe_while_disconnected_is_not_restored(customer, clients):
    client = clients(JifelineCustomerClient, customer.url)
    client.subscribe_ticket(1)
    client.subscribe_ticket(2)
    client.start()
    conn1 = customer.wait_for_connection(1, timeout=5)
    eventually(lambda: len(customer.subscriptions(conn1)) == 2, what="subscriptions")
    customer.refuse(503)
    customer.drop_all()
    eventually(lambda: client.state is not rs.State.CONNECTED, what="disconnected")
    client.unsubscribe_ticket(2)
    applied(client, [rs.Subscription("ticket", 1)])  # ran while every attempt is refused
    customer.refuse(None)
    conn2 = eventually(lambda: len(customer.live_connections()) == 1 and customer.live_connections()[0], what="back")
    first = client.wait_for("ticket.updated", timeout=T(5), where=lambda e: e.data is not None)
    assert first.entity_id == 1
    customer.wait_until(lambda: len(sent(customer, conn2)) >= 1, timeout=5)
    client.subscribe_connection(UUID)  # a marker: everything sent before it is on the wire first
    customer.wait_until(lambda: len(sent(customer, conn2)) >= 2, timeout=5)
    assert sent(customer, conn2) == [
        {"action": "subscribeToTicket", "ticket_id": 1},
        {"action": "subscribeToConnection", "connection_uuid": UUID},
    ]
    assert client.subscriptions == [rs.Subscription("ticket", 1), rs.Subscription("connection", UUID)]


def test_provider_many_threads_at_once_fetch_once_and_renew_once(rest):
    now = [0.0]
    rest.token_delay = 0.2  # every caller arrives while the first fetch is in flight
    provider = ClientCredentialsTokenProvider(rest.token_url, "cid-1", "client-secret-abc", clock=lambda: now[0])

    def burst() -> set[str]:
        barrier = threading.Barrier(16)
        results: list[str] = []
        lock = threading.Lock()

        def call() -> None:
            barrier.wait(T(5))
            token = provider()
            with lock:
                results.append(token)

        threads = [threading.Thread(target=call) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(T(10))
        assert len(results) == 16
        return set(results)

    first = burst()
    assert len(first) == 1 and rest.token_requests() == 1
    now[0] = 1800.0  # due for renewal
    second = burst()
    assert len(second) == 1 and second != first and rest.token_requests() == 2


def test_token_in_query_with_url_special_characters_is_redacted(clients, caplog):
    token = "qry+secret/token=with==padding"
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    with FakeJifelinePartnerServer(interval=0.1, token=token) as server:
        client = clients(JifelinePartnerClient, server.url, token=token, token_in_query=True)
        connected: list[rs.Event] = []
        client.on("connected", connected.append)
        client.start()
        server.wait_for_connection(1, timeout=5)
        eventually(lambda: connected, what="connected event")
    encoded = "qry%2Bsecret%2Ftoken%3Dwith%3D%3Dpadding"
    text = client_log_text(caplog) + repr(client) + str(connected[0].data)
    assert "connecting to" in text
    assert token not in text and encoded not in text and "secret" not in text
