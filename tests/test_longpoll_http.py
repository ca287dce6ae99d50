"""Long-polling knows HTTP, not Bayeux: held requests go on their own HTTP connection because the
adapter marks them (never by parsing), and HTTP outcomes reach the client as typed results
(a credential refusal, a server error), not as invented protocol replies."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import realtime_sync as rs
from realtime_sync.cometd import CometDClient
from realtime_sync.testing.bayeux import FakeBayeuxServer

from .conftest import FAST, Recorder, T


def test_http_401_is_a_credential_refusal_and_stop_on_auth_failure_ends_the_client() -> None:
    with FakeBayeuxServer(websocket=False, basic_auth=("agent", "right-password")) as server:
        policy = rs.ReconnectPolicy(stop_on_auth_failure=True, instant_retries=0, interval=0.1, jitter=0)
        client = CometDClient(
            server.http_url, transport="long-polling", username="agent", password="wrong-pass", reconnect=policy
        )
        rec = Recorder(client)
        try:
            client.start()
            err = rec.wait("error", where=lambda e: e.data.kind == "auth")
            assert "401" in err.data.message
            assert rec.wait("disconnected").data.will_reconnect is False
            assert client.closed
            assert "wrong-pass" not in err.data.message
        finally:
            client.close(timeout=T(5))


def test_start_wait_raises_on_http_401() -> None:
    with FakeBayeuxServer(websocket=False, basic_auth=("agent", "right-password")) as server:
        client = CometDClient(server.http_url, transport="long-polling", username="agent", password="nope-nope")
        try:
            try:
                client.start(wait=True, timeout=T(5))
            except rs.AuthenticationError as exc:
                assert "401" in str(exc)
            else:
                raise AssertionError("start(wait=True) did not raise")
        finally:
            client.close(timeout=T(5))


@contextlib.contextmanager
def subscribed_client(hold: float, **options: Any) -> Iterator[tuple[FakeBayeuxServer, CometDClient, Recorder]]:
    """A long-polling client subscribed to /chat/room on a fake server holding connects ``hold`` s."""
    with FakeBayeuxServer(timeout=hold, websocket=False) as server:
        client = CometDClient(server.http_url, transport="long-polling", reconnect=FAST, **options)
        client.subscribe("/chat/room")
        rec = Recorder(client)
        try:
            client.start()
            rec.wait("subscribed")
            yield server, client, rec
        finally:
            client.close(timeout=T(5))


def test_http_500_ends_the_connection_and_the_client_comes_back() -> None:
    with subscribed_client(1.0) as (server, _client, rec):
        server.refuse_http(500)
        info = rec.wait("disconnected", timeout=5).data
        assert "HTTP 500" in info.reason and info.will_reconnect
        assert not [e for e in rec.events if e.name == "error" and e.data.kind == "auth"]
        server.refuse_http(None)
        rec.wait("connected", count=2, timeout=10)  # the session resumes: no new subscribe
        server.publish("/chat/room", {"n": 1})
        assert rec.wait("message").data == {"n": 1}


def test_a_held_request_never_delays_control_requests() -> None:
    # The adapter marks /meta/connect as held; a publish goes at once on the control connection
    # even while the server holds the connect (and even if its data mentions /meta/connect).
    with subscribed_client(20.0) as (server, client, _rec):
        server.wait_until(lambda: len(server.bayeux_messages("/meta/connect")) >= 2, timeout=5)
        done = threading.Event()
        client.on("message", lambda e: done.set())
        client.publish("/chat/room", {"channel": "/meta/connect"})
        assert done.wait(T(2.5)), "the publish waited behind the held connect"
