"""Lifecycle: start(wait=True), the state right after start(), reconnect= validation, the engine
surviving an unexpected exception on its I/O thread, and a custom protocol on rs.Client."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.engine import Loop

from ._echo import EchoAdapter, EchoClient
from .conftest import FAST, Recorder, T, poll_until


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
