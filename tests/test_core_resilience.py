"""Reconnection, dead connections, refused handshakes, bad frames, overflow: on real sockets."""

from __future__ import annotations

import itertools
import os
import threading

import pytest

import realtime_sync as rs

from .conftest import Recorder, T, hold_dispatcher, poll_until


def test_reconnect_and_resubscribe_after_a_drop(echo_server, make_client):
    client = make_client(echo_server.url)
    rec = Recorder(client)
    client.subscribe("a")
    client.subscribe("b")
    client.start()
    first = echo_server.wait_for_connection(1, timeout=T(5))
    echo_server.wait_until(lambda: first.state.get("subs") == {"a", "b"}, timeout=T(5))
    client.unsubscribe("b")
    echo_server.wait_until(lambda: first.state.get("subs") == {"a"}, timeout=T(5))
    first.drop()
    second = echo_server.wait_for_connection(2, timeout=T(5))
    echo_server.wait_until(lambda: second.state.get("subs") == {"a"}, timeout=T(5))
    second.send({"event": "after", "id": 1})
    assert rec.wait("after").entity_id == 1
    assert client.stats.reconnects == 1


def test_lifecycle_events_on_drop(echo_server, make_client):
    client = make_client(echo_server.url)
    rec = Recorder(client)
    client.start()
    echo_server.wait_for_connection(1, timeout=T(5)).drop()
    echo_server.wait_for_connection(2, timeout=T(5))
    rec.wait("connected", count=2)
    life = [n for n in rec.names() if n in ("connected", "disconnected", "reconnecting")]
    assert life[:4] == ["connected", "disconnected", "reconnecting", "connected"]
    assert rec.wait("disconnected").data.will_reconnect is True


def test_reconnect_after_server_restart(echo_server, make_client):
    client = make_client(echo_server.url)
    rec = Recorder(client)
    client.subscribe("a")
    client.start()
    echo_server.wait_for_connection(1, timeout=T(5))
    echo_server.restart()
    conn = echo_server.wait_for_connection(2, timeout=T(10))
    echo_server.wait_until(lambda: conn.state.get("subs") == {"a"}, timeout=T(5))
    assert conn.send({"event": "back"})
    rec.wait("back")


def test_silent_server_is_detected_and_replaced(echo_server, make_client):
    client = make_client(echo_server.url, ping_interval=0.3, ping_timeout=0.5)
    rec = Recorder(client)
    disconnected = []
    client.on("disconnected", lambda e: disconnected.append(e.data.reason))
    client.start()
    first = echo_server.wait_for_connection(1, timeout=T(5))
    first.go_silent()
    second = echo_server.wait_for_connection(2, timeout=T(10))
    assert not second.silent
    second.send({"event": "alive"})
    rec.wait("alive")
    assert any("dead" in r for r in disconnected)


def test_pings_keep_a_quiet_connection_alive(echo_server, make_client):
    client = make_client(echo_server.url, ping_interval=0.1, ping_timeout=0.5)
    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(1, timeout=T(5))
    # Quiet but alive (the server answers pings): many ping cycles, still one connection.
    # Let several ping cycles (0.1 s) and pong deadlines (0.5 s) pass: nothing to wait on but time.
    threading.Event().wait(1.2)
    conn.send({"event": "still"})
    rec.wait("still")
    assert len(echo_server.connections) == 1


def test_refused_handshake_backs_off_hard(echo_server, make_client):
    policy = rs.ReconnectPolicy(instant_retries=3, interval=0.05, max_interval=0.05, jitter=0, auth_failure_delay=0.6)
    client = make_client(echo_server.url, reconnect=policy)
    errors = []
    client.on("error", lambda e: errors.append(e.data))
    echo_server.refuse(401, "bad token")
    client.start()
    echo_server.wait_until(lambda: len(echo_server.handshakes) >= 2, timeout=T(5))
    first, second = echo_server.handshakes[:2]
    assert errors and errors[0].kind == "auth" and isinstance(errors[0].exception, rs.AuthenticationError)
    assert "401" in errors[0].message
    # Not hammered: despite 3 instant retries in the policy, the second attempt waited >= 0.6 s.
    assert second.at - first.at >= 0.55
    assert echo_server.received == []


def test_stop_on_auth_failure_stops_and_run_forever_returns(echo_server, make_client):
    client = make_client(echo_server.url, reconnect=rs.ReconnectPolicy(stop_on_auth_failure=True))
    echo_server.refuse(403)
    t = threading.Thread(target=client.run_forever)
    t.start()
    t.join(T(5))
    assert not t.is_alive()
    assert client.state is rs.State.CLOSED
    assert len(echo_server.handshakes) == 1


def test_reconnect_cadence_follows_the_policy(echo_server, make_client):
    # Seed 001: a handful of instant retries, then no more often than every `interval`.
    policy = rs.ReconnectPolicy(instant_retries=3, interval=0.4, max_interval=0.4, jitter=0.25)
    client = make_client(echo_server.url, reconnect=policy)
    echo_server.refuse(503)
    client.start()
    echo_server.wait_until(lambda: len(echo_server.handshakes) >= 6, timeout=T(10))
    client.close()
    times = [h.at for h in echo_server.handshakes]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g < 0.3 for g in gaps[:3]), gaps  # instant retries
    assert all(g >= 0.39 for g in gaps[3:5]), gaps  # then >= interval (jitter only adds)


def test_first_connect_follows_the_same_policy_and_token_callable_per_attempt(echo_server, make_client):
    calls = []

    def token():
        calls.append(1)
        return f"tok-{len(calls)}-secret"

    client = make_client(echo_server.url, token=token)
    echo_server.refuse(503)
    client.start()
    echo_server.wait_until(lambda: len(echo_server.handshakes) >= 2, timeout=T(5))
    echo_server.refuse(None)
    echo_server.wait_for_connection(timeout=T(5))
    auths = [h.headers.get("Authorization") for h in echo_server.handshakes]
    assert auths[0] == "Bearer tok-1-secret" and auths[1] == "Bearer tok-2-secret"
    assert len(calls) >= 3


def test_token_callable_failure_is_reported_and_retried(echo_server, make_client):
    state = {"n": 0}

    def token():
        state["n"] += 1
        if state["n"] == 1:
            raise RuntimeError("vault unavailable")
        return "good-token-value"

    client = make_client(echo_server.url, token=token)
    errors = []
    client.on("error", lambda e: errors.append(e.data))
    client.start()
    echo_server.wait_for_connection(timeout=T(5))
    poll_until(lambda: errors, T(5), "the error delivered")  # the dispatcher may still hold it
    assert errors[0].kind == "token" and "vault unavailable" in errors[0].message


def test_slow_handler_never_delays_the_heartbeat(echo_server, make_client):
    client = make_client(echo_server.url)
    release = threading.Event()
    entered = threading.Event()

    @client.on("block")
    def block(event):
        entered.set()
        release.wait(T(10))

    last = threading.Event()
    client.on("queued", lambda e: e.entity_id == 99 and last.set())
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send({"event": "block"})
    assert entered.wait(T(5))
    try:
        pong = conn.ws.ping()
        assert pong.wait(T(2)), "the transport did not answer a ping while a handler was busy"
        for i in range(100):
            conn.send({"event": "queued", "id": i})
        poll_until(lambda: client.stats.queue_depth >= 100)
    finally:
        release.set()
    assert last.wait(T(5))


def test_handler_exceptions_are_isolated(echo_server, make_client, caplog):
    client = make_client(echo_server.url)
    good = []
    errors = []

    @client.on("x")
    def broken(event):
        raise ValueError("boom")

    client.on("x", good.append)
    client.on("error", lambda e: errors.append(e.data))
    rec = Recorder(client)  # registered last: called after the handlers under test
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send({"event": "x", "id": 1})
    conn.send({"event": "x", "id": 2})
    rec.wait("x", where=lambda e: e.entity_id == 2)
    assert [e.entity_id for e in good][:2] == [1, 2]
    assert errors[0].kind == "handler" and isinstance(errors[0].exception, ValueError)
    assert client.stats.handler_errors >= 2
    assert any("boom" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_overflow_drops_oldest_and_reports(echo_server, make_client):
    # Without flow control the client keeps reading and sheds the oldest events.
    client = make_client(echo_server.url, max_queue=10, flow_control=False)
    seen = []
    last = threading.Event()
    client.on("n", lambda e: seen.append(e.entity_id))
    client.on("last", lambda e: last.set())
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    release = hold_dispatcher(client, conn)
    for i in range(50):
        conn.send({"event": "n", "id": i})
    conn.send({"event": "last"})
    poll_until(lambda: client.stats.dropped > 0 and client.stats.frames_received >= 52)
    release.set()
    assert last.wait(T(5))
    assert client.stats.dropped >= 40
    assert seen and seen[-1] == 49 and seen == sorted(seen)


def test_protocol_level_auth_refusal_backs_off_or_stops(echo_server, make_client):
    policy = rs.ReconnectPolicy(instant_retries=3, interval=0.05, max_interval=0.05, jitter=0, auth_failure_delay=0.5)
    client = make_client(echo_server.url, reconnect=policy)
    rec = Recorder(client)
    client.start()
    echo_server.wait_for_connection(1, timeout=T(5)).send({"close": "unauthorized", "auth": True})
    rec.wait("reconnecting")
    assert rec.wait("reconnecting").data.delay == 0.5
    echo_server.wait_for_connection(2, timeout=T(5))

    stopping = make_client(echo_server.url, reconnect=rs.ReconnectPolicy(stop_on_auth_failure=True))
    rec2 = Recorder(stopping)
    stopping.start()
    conn = echo_server.wait_for_connection(3, timeout=T(5))
    conn.send({"close": "unauthorized", "auth": True})
    assert rec2.wait("disconnected").data.will_reconnect is False
    assert stopping.join(T(5)) and stopping.state is rs.State.CLOSED
    assert rec2.wait("error").data.kind == "auth"


def test_server_says_do_not_reconnect(echo_server, make_client):
    client = make_client(echo_server.url)
    rec = Recorder(client)
    client.start()
    echo_server.wait_for_connection(1, timeout=T(5)).send({"close": "go away", "reconnect": False})
    info = rec.wait("disconnected").data
    assert info.will_reconnect is False and info.reason == "go away"
    assert client.join(T(5))
    assert len(echo_server.connections) == 1


def _sent_away(echo_server, client):
    """Start ``client``; the server tells it not to reconnect; it is over."""
    rec = Recorder(client)
    client.start()
    echo_server.wait_for_connection(1, timeout=T(5)).send({"close": "go away", "reconnect": False})
    assert rec.wait("disconnected").data.will_reconnect is False
    assert client.join(T(5))
    return client


def _unix_sockets_opened_since(before: set[str]) -> set[str]:
    """The AF_UNIX sockets (a loop's wake-up socketpair) among the descriptors opened since."""
    with open("/proc/net/unix") as f:
        unix = {line.split()[6] for line in list(f)[1:] if len(line.split()) > 6}
    found = set()
    for fd in set(os.listdir("/proc/self/fd")) - before:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:[") and target[8:-1] in unix:
            found.add(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_a_client_that_stops_for_good_frees_its_descriptors_without_close(echo_server, make_client):
    # A user may never call close() on a client the server sent away: its loop thread's selector
    # and wake-up sockets must not wait for the garbage collector (a ResourceWarning at a random
    # place, and descriptors held meanwhile).
    before = set(os.listdir("/proc/self/fd"))
    _sent_away(echo_server, make_client(echo_server.url))
    poll_until(lambda: not _unix_sockets_opened_since(before), T(5), "the loop's wake-up sockets closed")


def test_run_forever_returns_at_once_when_the_client_already_stopped(echo_server, make_client):
    client = _sent_away(echo_server, make_client(echo_server.url))
    client.run_forever()  # returns, does not raise: the client is over
    assert client.state is rs.State.CLOSED
