"""GWS CSRF protection over the wire (issue 11): the token read from ``GET /api/v2/me`` before the
handshake and sent on every long-polling POST, standalone and on a hub; a rotated token is
fetched again once and the session goes on; a refusal that stands is a credential refusal; the
token never shows in a log line, a repr or an event."""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync._csrf import CsrfToken
from realtime_sync.testing.bayeux import FakeGenesysServer

from .conftest import FAST, Recorder, T, poll_until

USER, PASSWORD = "agent1", "agent1-password"


@pytest.fixture
def gws() -> Iterator[FakeGenesysServer]:
    with FakeGenesysServer(websocket=False, timeout=1.0, csrf=True, basic_auth=(USER, PASSWORD)) as server:
        yield server


def client_for(gws: FakeGenesysServer, hub: rs.Hub | None = None, **options: Any) -> rs.GenesysChatClient:
    options.setdefault("reconnect", FAST)
    options.setdefault("transport", "long-polling")
    if hub is not None:
        options["hub"] = hub
    return rs.GenesysChatClient(gws.http_url, username=USER, password=PASSWORD, csrf=True, **options)


@contextlib.contextmanager
def running(
    gws: FakeGenesysServer, hub: rs.Hub | None = None, **options: Any
) -> Iterator[tuple[rs.GenesysChatClient, Recorder]]:
    """A started client (see :func:`client_for`), once subscribed to the chats."""
    client = client_for(gws, hub, **options)
    rec = Recorder(client)
    try:
        client.start()
        gws.wait_for_subscription(gws.CHATS, timeout=T(10))
        yield client, rec
    finally:
        client.close(timeout=T(5))


def posts(gws: FakeGenesysServer) -> list[Any]:
    with gws._cond:
        return [r for r in gws.http_requests if r.method == "POST"]


def header(request: Any, name: str) -> str | None:
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), None)


def test_the_token_is_fetched_before_the_handshake_and_sent_on_every_post(
    gws: FakeGenesysServer, hub: rs.Hub | None
) -> None:
    with running(gws, hub) as (_client, rec):
        gws.chat_state_change("chat-1", "StatusChange")
        assert rec.wait("chat.status_change").entity_id == "chat-1"
        with gws._cond:
            requests = list(gws.http_requests)
        assert requests[0].method == "GET" and requests[0].path == "/api/v2/me"
        token = gws.csrf_issued[0]
        sent = posts(gws)
        assert len(sent) >= 3  # handshake, subscribe, connects
        assert all(header(r, "X-CSRF-TOKEN") == token for r in sent)
        # The token belongs to the HTTP session the GET opened: its cookie goes along.
        assert all(f"JSESSIONID={next(iter(gws.http_sessions))}" in (header(r, "Cookie") or "") for r in sent)
        assert len(gws.csrf_issued) == 1
        assert not [e for e in rec.events if e.name == "error"]


def test_without_the_option_a_csrf_protected_server_refuses_the_handshake(gws: FakeGenesysServer) -> None:
    policy = rs.ReconnectPolicy(stop_on_auth_failure=True)
    client = rs.GenesysChatClient(
        gws.http_url, username=USER, password=PASSWORD, transport="long-polling", reconnect=policy
    )
    rec = Recorder(client)
    try:
        client.start()
        err = rec.wait("error").data
        assert err.kind == "auth" and "403" in err.message
        rec.wait("disconnected")
        assert "connected" not in rec.names()
    finally:
        client.close(timeout=T(5))


def test_a_rotated_token_is_fetched_again_once_and_the_session_goes_on(
    gws: FakeGenesysServer, hub: rs.Hub | None
) -> None:
    with running(gws, hub) as (_client, rec):
        session = next(iter(gws.sessions))
        gws.rotate_csrf()  # the HTTP session expired: its token is refused from now on
        gws.wait_until(lambda: len(gws.csrf_issued) == 2, timeout=T(10))
        rec.wait("connected", count=2, timeout=10)
        gws.chat_state_change("chat-2", "StatusChange")
        assert rec.wait("chat.status_change").entity_id == "chat-2"
        # One refetch, on a new connection at once; the CometD session resumed (no new handshake).
        assert len(gws.csrf_issued) == 2 and list(gws.sessions) == [session]
        assert rec.names().count("handshake") == 1
        info = rec.wait("disconnected").data
        assert "HTTP 403" in info.reason and "renewed token" in info.reason and info.will_reconnect
        assert not [e for e in rec.events if e.name == "error"]
        new_token = gws.csrf_issued[1]
        assert header(posts(gws)[-1], "X-CSRF-TOKEN") == new_token
        # A second rotation later gets its one refetch too.
        gws.rotate_csrf()
        gws.wait_until(lambda: len(gws.csrf_issued) == 3, timeout=T(10))
        gws.chat_state_change("chat-3", "StatusChange")
        assert rec.wait("chat.status_change", count=2).entity_id == "chat-3"
        assert not [e for e in rec.events if e.name == "error"]


def test_a_routine_renewal_logs_no_warning_and_a_failed_one_does(
    gws: FakeGenesysServer, hub: rs.Hub | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")

    def warnings() -> list[str]:
        return [
            f"{r.name}: {r.getMessage()}"
            for r in caplog.records
            if r.levelno >= logging.WARNING and not r.name.startswith("realtime_sync.testing")
        ]

    with running(gws, hub, reconnect=rs.ReconnectPolicy(stop_on_auth_failure=True)) as (_client, rec):
        gws.rotate_csrf()  # a routine expiry: one refetch, the session goes on
        gws.wait_until(lambda: len(gws.csrf_issued) == 2, timeout=T(10))
        rec.wait("connected", count=2, timeout=10)
        gws.chat_state_change("chat-4", "StatusChange")
        rec.wait("chat.status_change")
        assert warnings() == []
        assert any("CSRF" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
        gws.refuse_csrf()  # a renewal that cannot help: a warning and an error event
        assert rec.wait("error", timeout=10).data.kind == "auth"
        poll_until(warnings, 10, "a warning for the refusal that stands")


def test_a_token_that_expired_while_disconnected_is_renewed_quietly(gws: FakeGenesysServer) -> None:
    with running(gws) as (_client, rec):
        gws.refuse_http(500)  # the node is down a while ...
        rec.wait("disconnected")
        rec.wait("error", where=lambda e: "HTTP 500" in e.data.message, timeout=10)
        gws.rotate_csrf()  # ... and comes back without the HTTP sessions
        gws.refuse_http(None)
        gws.wait_until(lambda: len(gws.csrf_issued) == 2, timeout=T(10))
        rec.wait("connected", count=2, timeout=10)
        gws.chat_state_change("chat-7", "StatusChange")
        assert rec.wait("chat.status_change").entity_id == "chat-7"
        # The cached token's refusal on the new connection's first request is routine: no error.
        assert [e.data.kind for e in rec.events if e.name == "error" and "500" not in e.data.message] == []


def test_a_late_answer_with_the_old_token_does_not_earn_another_renewal() -> None:
    # A renewal replaces the connection; an answer still arriving on the old one carries the old
    # token and must not reset the "once".
    tokens = iter(["token-one-1234", "token-two-5678", "token-three-9012"])
    csrf = CsrfToken(lambda: next(tokens), "https://gws.example.com")
    options = rs.ConnectOptions()
    old = csrf.fetch({}, options, None)
    assert csrf.refused(old) is True  # the first refusal: renewed
    new = csrf.fetch({}, options, None)
    assert new == {"X-CSRF-TOKEN": "token-two-5678"}
    csrf.accepted(old)  # late, on the replaced connection
    assert csrf.refused(new) is False  # the renewed token refused too: it stands
    newer = csrf.fetch({}, options, None)  # the next attempt (after the auth backoff) fetches again
    csrf.accepted(newer)  # ... and once it works, a later refusal gets its renewal again
    assert csrf.refused(newer) is True


def test_a_refusal_that_stands_after_one_refetch_is_a_credential_refusal(
    gws: FakeGenesysServer, hub: rs.Hub | None
) -> None:
    with running(gws, hub, reconnect=rs.ReconnectPolicy(stop_on_auth_failure=True)) as (client, rec):
        gws.refuse_csrf()  # every token refused: fetching another cannot help
        err = rec.wait("error", timeout=10).data
        assert err.kind == "auth" and "403" in err.message
        assert rec.wait("disconnected", count=2, timeout=10).data.will_reconnect is False
        assert len(gws.csrf_issued) == 2  # the first, and exactly one refetch
        assert client.closed


def test_the_token_never_shows_in_logs_reprs_or_events(
    gws: FakeGenesysServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    with running(gws) as (client, rec):
        gws.rotate_csrf()
        gws.wait_until(lambda: len(gws.csrf_issued) == 2, timeout=T(10))
        gws.chat_state_change("chat-9", "StatusChange")
        rec.wait("chat.status_change")
        gws.refuse_csrf()
        rec.wait("error", timeout=10)
        shown = [caplog.text, repr(client), str(client.snapshot), repr(client.cookies)]
        shown += [f"{e.name} {e.data!r} {e.raw!r}" for e in rec.events]
        text = "\n".join(shown)
        assert gws.csrf_issued and "HTTP 403" in caplog.text
        for token in gws.csrf_issued:
            assert token not in text
        assert PASSWORD not in text


def test_a_callable_gives_the_token_of_the_users_own_rest_session(gws: FakeGenesysServer) -> None:
    # The application keeps its own REST session (as a requests.Session would): its JSESSIONID
    # and the token GWS handed out with it.
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    req = urllib.request.Request(
        gws.http_url.replace("/notifications", "/me"), headers={"Authorization": f"Basic {basic}"}
    )
    with urllib.request.urlopen(req, timeout=T(5)) as resp:
        assert resp.headers["X-CSRF-HEADER"] == "X-CSRF-TOKEN"
        token = resp.headers["X-CSRF-TOKEN"]
        jsessionid = resp.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    calls: list[int] = []

    def from_my_session() -> tuple[str, str]:
        calls.append(1)
        return "X-CSRF-TOKEN", token

    client = rs.GenesysChatClient(
        gws.http_url, cookies={"JSESSIONID": jsessionid}, csrf=from_my_session, transport="long-polling", reconnect=FAST
    )
    rec = Recorder(client)
    try:
        client.start()
        gws.wait_for_subscription(gws.CHATS, timeout=T(10))
        gws.chat_state_change("chat-4", "StatusChange")
        assert rec.wait("chat.status_change").entity_id == "chat-4"
        assert calls == [1]
        assert [r.method for r in gws.http_requests].count("GET") == 1  # ours only
    finally:
        client.close(timeout=T(5))


def test_csrf_over_auto_uses_the_websocket_which_needs_no_token() -> None:
    with FakeGenesysServer(csrf=True, basic_auth=(USER, PASSWORD)) as gws:
        with running(gws, transport="auto") as (client, rec):
            gws.chat_state_change("chat-5", "StatusChange")
            assert rec.wait("chat.status_change").entity_id == "chat-5"
            assert client.transport == "websocket"
            assert gws.csrf_issued == [] and posts(gws) == []


def test_csrf_over_auto_sends_the_token_once_the_websocket_is_refused(
    gws: FakeGenesysServer, hub: rs.Hub | None
) -> None:
    with running(gws, hub, transport="auto") as (client, rec):
        gws.chat_state_change("chat-6", "StatusChange")
        assert rec.wait("chat.status_change").entity_id == "chat-6"
        assert client.transport == "long-polling"
        assert len(gws.csrf_issued) == 1
        assert all(header(r, "X-CSRF-TOKEN") == gws.csrf_issued[0] for r in posts(gws))


def test_a_refused_token_request_is_a_credential_refusal() -> None:
    with FakeGenesysServer(websocket=False, csrf=True, basic_auth=(USER, PASSWORD)) as gws:
        client = rs.GenesysChatClient(
            gws.http_url,
            username=USER,
            password="not-the-password",
            csrf=True,
            transport="long-polling",
            reconnect=rs.ReconnectPolicy(stop_on_auth_failure=True),
        )
        rec = Recorder(client)
        try:
            client.start()
            err = rec.wait("error").data
            assert err.kind == "auth" and "GET" in err.message and "/api/v2/me" in err.message and "401" in err.message
            assert posts(gws) == []  # no POST without a token
        finally:
            client.close(timeout=T(5))


def test_a_failing_callable_is_a_token_error() -> None:
    with FakeGenesysServer(websocket=False, csrf=True) as gws:

        def broken() -> str:
            raise RuntimeError("REST session gone")

        client = rs.GenesysChatClient(gws.http_url, csrf=broken, transport="long-polling", reconnect=FAST)
        rec = Recorder(client)
        try:
            client.start()
            err = rec.wait("error").data
            assert err.kind == "token" and "REST session gone" in err.message
        finally:
            client.close(timeout=T(5))


@pytest.mark.parametrize(
    "csrf, match",
    [
        (123, "csrf= takes True"),
        ("ftp://gws.example.com/api/v2/me", "http"),
        ("/api/v2/me", "http"),
    ],
)
def test_bad_csrf_options_raise_at_construction(csrf: Any, match: str) -> None:
    with pytest.raises(rs.ConfigurationError, match=match):
        rs.GenesysChatClient("https://gws.example.com", csrf=csrf)


def test_csrf_with_the_websocket_transport_is_refused_at_construction() -> None:
    with pytest.raises(rs.ConfigurationError, match="long-polling"):
        rs.GenesysChatClient("https://gws.example.com", csrf=True, transport="websocket")


def test_the_token_url_follows_the_client_url() -> None:
    token = CsrfToken(True, "wss://gws.example.com:8443/api/v2/notifications")
    assert "https://gws.example.com:8443/api/v2/me" in repr(token)
    assert "gws.example.com/sso" in repr(CsrfToken("https://alice:pw@gws.example.com/sso", "https://x"))
    assert "pw" not in repr(CsrfToken("https://alice:pw-secret@gws.example.com/sso", "https://x"))


@contextlib.contextmanager
def silent_server() -> Iterator[tuple[str, list[Any]]]:
    """A TCP server that accepts and never answers (a hung GWS node): its URL and its sockets."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.05)  # close() does not wake a blocked accept(): poll the flag
    accepted: list[Any] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                accepted.append(srv.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    t = threading.Thread(target=accept, name="test-silent-server", daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}/api/v2/notifications", accepted
    finally:
        done.set()
        t.join(T(5))
        srv.close()
        for s in accepted:
            s.close()


@pytest.mark.parametrize("transport", ["long-polling", "auto"])
def test_close_during_the_token_fetch_returns_promptly(hub: rs.Hub | None, transport: str) -> None:
    # The GET hangs (connect_timeout is long): close() must interrupt it, as it interrupts a
    # websocket handshake, not wait the fetch out; no thread of ours is left behind.
    with silent_server() as (url, accepted):
        client = rs.GenesysChatClient(
            url,
            username=USER,
            password=PASSWORD,
            csrf=True,
            transport=transport,
            connect_timeout=T(60),
            **({"hub": hub} if hub is not None else {}),
        )
        client.start()
        poll_until(lambda: accepted, timeout=10, what="the token request")
        started = time.monotonic()
        client.close(timeout=T(30))
        if hub is not None:
            assert hub.close(timeout=T(30))
        assert time.monotonic() - started < T(5)
        assert not [t.name for t in threading.enumerate() if t.name.startswith("realtime_sync")]
