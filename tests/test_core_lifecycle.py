"""Lifecycle: start(wait=True), the state right after start(), reconnect= validation, the engine
surviving an unexpected exception on its I/O thread, and a custom protocol on rs.Client."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.engine import Loop

from ._echo import EchoAdapter, EchoClient
from .conftest import FAST, Recorder, T, hold_dispatcher, on, poll_until


def test_state_is_connecting_as_soon_as_start_returns(echo_server, make_client):
    client = make_client(echo_server.url)
    assert client.state is rs.State.IDLE
    client.start()
    assert client.state in (rs.State.CONNECTING, rs.State.CONNECTED)


def test_start_wait_returns_connected_with_subscriptions_confirmed(echo_server, make_client):
    client = make_client(echo_server.url)
    client.start(wait=True, timeout=T(5))
    assert client.state is rs.State.CONNECTED


@pytest.mark.parametrize("bad", [3, "yes", 1.5, True, object()])
def test_reconnect_accepts_a_policy_none_or_false_only(echo_server, bad):
    with pytest.raises(rs.ConfigurationError, match="reconnect must be"):
        EchoClient(echo_server.url, reconnect=bad)
    assert EchoClient(echo_server.url, reconnect=None).reconnect_policy == EchoClient.default_reconnect
    assert EchoClient(echo_server.url, reconnect=False).reconnect_policy.max_attempts == 0


def test_reconnect_false_ends_the_client_at_the_first_drop(echo_server, make_client):
    client = make_client(echo_server.url, reconnect=False)
    rec = Recorder(client)
    client.start(wait=True, timeout=T(5))
    echo_server.wait_for_connection(timeout=T(5)).drop()
    info = rec.wait("disconnected").data
    assert info.will_reconnect is False
    poll_until(lambda: client.state is rs.State.CLOSED, what="closed")
    assert len(echo_server.connections) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_start_wait_times_out_with_the_last_error_and_closes(make_client):
    client = make_client(f"ws://127.0.0.1:{_free_port()}/")
    started = time.monotonic()
    with pytest.raises(rs.WaitTimeout, match="connect"):
        client.start(wait=True, timeout=0.5)
    assert time.monotonic() - started < T(3)
    assert client.closed and client.state is rs.State.CLOSED


def test_start_wait_raises_on_refused_credentials(echo_server, make_client):
    echo_server.refuse(401)
    client = make_client(echo_server.url)
    with pytest.raises(rs.AuthenticationError):
        client.start(wait=True, timeout=T(5))
    assert client.closed


class _FailsOnce(EchoAdapter):
    """A custom protocol whose first connection_made() hits a bug."""

    failed = False

    def connection_made(self, now: float) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("adapter bug")
        super().connection_made(now)


def test_an_unexpected_exception_on_the_io_thread_is_reported_then_reconnects(echo_server):
    client: rs.Client[Any] = rs.Client(echo_server.url, adapter=_FailsOnce(), reconnect=FAST)
    rec = Recorder(client)
    try:
        client.start()
        err = rec.wait("error").data
        assert err.kind == "internal" and "adapter bug" in err.message
        rec.wait("connected", count=2)
        assert client.state is rs.State.CONNECTED
    finally:
        client.close(timeout=T(5))
    assert client.join(0)


def test_a_client_needs_an_adapter():
    with pytest.raises(rs.ConfigurationError, match="adapter="):
        rs.Client("ws://127.0.0.1:1/")


def test_loop_timers_fire_in_order_and_cancelled_ones_never():
    loop = Loop("test")
    fired: list[int] = []
    now = time.monotonic()
    timers = [loop.call_at(now + (i % 7) * 0.001, lambda i=i: fired.append(i)) for i in range(200)]
    for t in timers[::2]:
        loop.cancel(t)
    loop.call_at(now + 0.01, loop.stop)
    loop.run()
    loop.close()
    assert sorted(fired) == list(range(1, 200, 2))
    whens = [timers[i].when for i in fired]
    assert whens == sorted(whens)


@pytest.mark.parametrize("vendor", ["echo-close", "actioncable-server_restart"])
def test_the_first_retry_after_a_server_initiated_disconnect_is_spread_by_restart_jitter(vendor, echo_server):
    """A server restart drops a whole fleet at once: the first retries spread over restart_jitter."""
    from realtime_sync.testing.actioncable import FakeActionCableServer

    policy = rs.ReconnectPolicy(instant_retries=3, interval=0.2, max_interval=0.2, jitter=0, restart_jitter=1.0)
    n = 8
    times: list[float] = []
    lock = threading.Lock()

    def record(_event: rs.Event) -> None:
        with lock:
            times.append(time.monotonic())

    with contextlib.ExitStack() as stack:
        if vendor == "echo-close":
            server: Any = echo_server
            clients: list[rs.Client[Any]] = [EchoClient(server.url, reconnect=policy) for _ in range(n)]
        else:
            server = stack.enter_context(FakeActionCableServer())
            clients = [rs.ActionCableClient(server.url, reconnect=policy) for _ in range(n)]
            for c in clients:
                c.subscribe("ChatChannel", room="lobby")  # type: ignore[attr-defined]
        for c in clients:
            stack.callback(c.close, timeout=T(5))
            c.on("connected", record)
            c.start()
        poll_until(lambda: len(times) == n, what="all connected")
        times.clear()
        if vendor == "echo-close":
            server.close_all()  # a gateway closing its sockets
        else:
            server.server_restart()
        poll_until(lambda: len(times) == n, timeout=10, what="all reconnected")
    spread = max(times) - min(times)
    # 8 uniform draws over 1 s all within 0.15 s: a probability of about 1e-5.
    assert spread > 0.15, f"the fleet came back within {spread:.3f}s: no jitter"


def test_many_engines_share_one_loop_thread(echo_server):
    """The hub model: engines on one Loop (with a small handshake executor), no thread each."""
    from realtime_sync.engine import Call, Engine, EngineOptions
    from realtime_sync.protocols.base import ConnectRequest

    loop = Loop("shared", handshake_workers=2)
    thread = loop.start("realtime_sync-test-shared-loop")
    engines: list[Engine[EchoAdapter]] = []
    got: list[rs.Event] = []
    lock = threading.Lock()
    try:
        for i in range(5):
            engine = Engine(
                EchoAdapter(),
                _websocket,
                EngineOptions(lambda: ConnectRequest(echo_server.url), reconnect=FAST, name=f"e{i}"),
            )
            engine.dispatcher.add("news", lambda e: (lock.acquire(), got.append(e), lock.release()))
            engine.submit(Call(EchoAdapter.subscribe, (f"t{i}",)))
            engine.start(loop)
            engines.append(engine)
        assert all(e.thread is None for e in engines)  # no loop thread of their own
        poll_until(lambda: len(echo_server.live_connections()) == 5, what="5 connections")
        for conn in echo_server.live_connections():
            echo_server.wait_until(lambda c=conn: bool(c.state.get("subs")), timeout=5)
            conn.send({"event": "news", "id": next(iter(conn.state["subs"]))})
        poll_until(lambda: len(got) == 5, what="one event per engine")
        assert sorted(e.entity_id for e in got) == [f"t{i}" for i in range(5)]
        assert all(e.state is rs.State.CONNECTED for e in engines)
    finally:
        for e in engines:
            assert e.stop(T(5))
            e.dispatcher.stop(T(5))
        loop.stop()
        thread.join(T(5))
        loop.close()
    assert not thread.is_alive()


def _websocket() -> Any:
    from realtime_sync.transport import WebSocketConnection

    return WebSocketConnection()


def test_start_wait_for_each_vendor_returns_once_subscribed():
    """Voxsig: welcomed and the room confirmed; Genesys: a session and its topics confirmed."""
    from realtime_sync.testing.actioncable import FakeVoxsigServer
    from realtime_sync.testing.bayeux import FakeGenesysServer

    with FakeVoxsigServer() as cable:
        voxsig = rs.VoxsigClient(cable.url, "user-token-1", account_id=1, user_id=7, reconnect=FAST)
        try:
            voxsig.start(wait=True, timeout=T(5))
            snap = voxsig.snapshot
            assert snap.state is rs.State.CONNECTED and snap.ready and snap.pending == ()
            assert snap.subscriptions == (voxsig.room,)
        finally:
            voxsig.close(timeout=T(5))
    with FakeGenesysServer(timeout=1.0) as gws:
        genesys = rs.GenesysChatClient(gws.url, reconnect=FAST)
        try:
            genesys.start(wait=True, timeout=T(5))
            assert gws.subscribed("/v2/me/chats") and genesys.snapshot.ready
        finally:
            genesys.close(timeout=T(5))


def test_start_wait_raises_when_a_subscription_is_rejected():
    from realtime_sync.testing.bayeux import FakeBayeuxServer

    with FakeBayeuxServer(timeout=1.0, forbidden=["/private/*"]) as server:
        client = rs.CometDClient(server.url, reconnect=FAST)
        client.subscribe("/private/room")
        with pytest.raises(rs.RemoteError, match="rejected"):
            client.start(wait=True, timeout=T(5))
        assert client.closed


def test_close_names_the_thread_a_slow_handler_holds_and_what_to_do(echo_server, make_client, hub, caplog):
    # A handler still running when close()'s timeout ends: the warning names the thread, says it
    # is a handler and what to do, and prints the timeout as given (not 0.2999470...).
    client = make_client(echo_server.url, name="slow-handler", **on(hub))
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    release = hold_dispatcher(client, conn)
    try:
        with caplog.at_level(logging.WARNING, logger="realtime_sync"):
            client.close(timeout="0.3")
    finally:
        release.set()
    (warning,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("close():")]
    assert "after 0.3s" in warning, warning
    expected = "realtime_sync-dispatch-slow-handler" if hub is None else f"realtime_sync-{hub.name}-worker-0"
    assert expected in warning, warning
    assert "a handler is still running" in warning and "return promptly" in warning, warning
    assert "longer timeout" in warning, warning
    assert client.join(T(10))


def test_hub_close_names_the_worker_a_slow_handler_holds(echo_server, make_client, caplog):
    hub = rs.Hub(workers=1, name="slow-hub")
    try:
        client = make_client(echo_server.url, name="on-slow-hub", hub=hub)
        client.start()
        conn = echo_server.wait_for_connection(timeout=T(5))
        release = hold_dispatcher(client, conn)
        try:
            with caplog.at_level(logging.WARNING, logger="realtime_sync"):
                assert not hub.close(timeout=0.3)
        finally:
            release.set()
        (warning,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hub.close():")]
        assert "realtime_sync-slow-hub-worker-0" in warning and "after 0.3s" in warning, warning
        assert "a handler is still running" in warning and "longer timeout" in warning, warning
    finally:
        release.set()
        assert hub.close(T(10))
