"""A proxy refusing our proxy credentials is a credential refusal, not a connect failure.

A corporate proxy usually checks directory (AD/LDAP) credentials: a wrong proxy password retried
with the normal backoff (3 instant retries, then every ~5 s, for ever) locks the user's account
within a minute.  So an HTTP proxy's 407 (to ``CONNECT``, or to a request in absolute form), a
SOCKS5 proxy refusing the user name and password (RFC 1929) and a SOCKS5 proxy that accepts none
of the methods offered (0xFF: it requires authentication) get the policy of a server refusing
credentials: an :class:`~realtime_sync.AuthenticationError` (still a ``ConnectError``), an
``error`` event of kind ``"auth"`` naming the proxy (credentials hidden), no instant retries,
``auth_failure_delay`` (60 s) before the next attempt, and a stop with ``stop_on_auth_failure``.

On the wire, on 127.0.0.1: the websocket transport, Bayeux long-polling over ``https://`` (the
proxy's tunnel) and over ``http://`` (an HTTP proxy taking the request in absolute form),
standalone and on a hub; the HTTP proxy is the tests' stub answering 407, the SOCKS5 proxy Debian's
microsocks (behind a relay that counts the connections).  Every test here failed on the code
before (an ``error`` of kind ``"connect"``, then instant retries: 4 connections at once).
"""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.testing import FakeVoxsigServer
from realtime_sync.testing.bayeux import FakeGenesysServer

from . import test_longpoll_socks, test_ws_proxy
from ._relay import ResetRelay, Socks5Server
from .conftest import Recorder, T, poll_until
from .test_genesys_transport_options import HttpProxy, _read_head
from .test_ws_proxy import PASSWORD, USER, StubProxy

#: Debian's microsocks on 127.0.0.1 (user USER, password PASSWORD), skipped cleanly when absent.
microsocks = test_ws_proxy.microsocks
#: Each test standalone, then on a hub.
hub = test_longpoll_socks.hub

WRONG = "wr0ng-pa55word"
TRANSPORTS = ["websocket", "long-polling-https", "long-polling-http"]
PROXIES = ["http-407", "http-407-anonymous", "socks5-wrong-password", "socks5-no-credentials"]
_407 = (
    b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="corp"\r\n'
    b"Content-Length: 13\r\n\r\naccess denied"
)


class CountingRelay(ResetRelay):
    """A relay in front of microsocks that counts the client's connections (``accepted``)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.accepted = threading.Semaphore(0)
        super().__init__(upstream)

    def _serve(self, client: socket.socket) -> None:
        self.accepted.release()
        super()._serve(client)


class Proxy:
    """The refusing proxy of one test: its URL, how errors name it, the texts that must never be
    shown, and its connections (each one an attempt of the client's)."""

    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.secrets = [PASSWORD, WRONG, USER, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]
        self._stub: StubProxy | None = None
        self._relay: CountingRelay | None = None
        if kind.startswith("http"):
            stub = self._stub = StubProxy(_407)
            self.accepted = stub.accepted
            credentials = kind == "http-407"
            self.url = stub.url(credentials=credentials)
            self.label = f"the proxy http://{'***@' if credentials else ''}127.0.0.1:{stub.port}"
        else:
            relay = self._relay = CountingRelay(("127.0.0.1", request.getfixturevalue("microsocks")))
            self.accepted = relay.accepted
            userinfo = f"{USER}:{WRONG}@" if kind == "socks5-wrong-password" else ""
            self.url = f"socks5://{userinfo}127.0.0.1:{relay.port}"
            self.label = f"the proxy socks5://{'***@' if userinfo else ''}127.0.0.1:{relay.port}"

    def attempts(self) -> int:
        if self._stub is not None:
            return len(self._stub._conns)
        assert self._relay is not None
        return len(self._relay.legs)

    def no_second_attempt_within(self, seconds: float) -> bool:
        """The proxy saw one connection, and no second one within ``seconds``."""
        assert self.accepted.acquire(timeout=T(5)), "the proxy saw no connection"
        return not self.accepted.acquire(timeout=seconds)

    def close(self) -> None:
        if self._stub is not None:
            self._stub.close()
        if self._relay is not None:
            self._relay.close()


@pytest.fixture
def gws() -> Iterator[FakeGenesysServer]:
    with FakeGenesysServer(timeout=1.0) as server:
        yield server


@pytest.fixture(params=PROXIES)
def proxy(request: pytest.FixtureRequest, no_env_proxy: Any) -> Iterator[Proxy]:
    p = Proxy(request.param, request)
    yield p
    p.close()


def _client(transport: str, proxy: Proxy, hub: rs.Hub | None, vox: FakeVoxsigServer, gws: FakeGenesysServer,
            policy: rs.ReconnectPolicy) -> Any:  # fmt: skip
    if transport == "websocket":
        return rs.VoxsigClient(
            vox.url, pubsub_token="user-token-1", account_id=1, user_id=7, hub=hub, proxy=proxy.url, reconnect=policy
        )
    # https://: the proxy's tunnel (CONNECT, or SOCKS); http://: an HTTP proxy takes the request in
    # absolute form and answers it (a SOCKS proxy tunnels it all the same).  Refused before TLS.
    url = gws.http_url if transport == "long-polling-http" else gws.http_url.replace("http://", "https://", 1)
    return rs.GenesysChatClient(url, transport="long-polling", hub=hub, proxy=proxy.url, reconnect=policy)


def _check_refusal(proxy: Proxy, error: rs.Event, caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    """``error`` is a credential refusal naming the proxy; no secret shown anywhere."""
    info = error.data
    assert info.kind == "auth", info
    assert proxy.label in info.message, info.message
    # What to check: the user name and password (to give, when the proxy URL has none).
    assert "user name and password" in info.message, info.message
    for text in (info.message, repr(error), caplog.text, *texts):
        for secret in proxy.secrets:
            assert secret not in text, (secret, text)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_proxy_credentials_stop_the_client_after_one_attempt(
    voxsig_server: FakeVoxsigServer, gws: FakeGenesysServer, hub: rs.Hub | None, proxy: Proxy, transport: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    client = _client(transport, proxy, hub, voxsig_server, gws, rs.ReconnectPolicy(stop_on_auth_failure=True))
    rec = Recorder(client, timeout=10)
    try:
        with pytest.raises(rs.AuthenticationError) as caught:
            client.start(wait=True, timeout=T(15))
        assert isinstance(caught.value, rs.ConnectError)  # `except ConnectError` keeps catching it
        error = rec.wait("error")
        poll_until(lambda: client.state == rs.State.CLOSED, 10, "the client closed")
        texts = [str(caught.value), repr(client), repr(client.snapshot), str(client.stats)]
        _check_refusal(proxy, error, caplog, *texts)
        assert proxy.label in str(caught.value)
        assert [e.data.kind for e in rec.named("error")] == ["auth"]
        assert not rec.named("reconnecting")
        assert proxy.attempts() == 1
        assert gws.http_requests == []
    finally:
        client.close(timeout=T(10))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_proxy_credentials_wait_the_auth_failure_delay(
    voxsig_server: FakeVoxsigServer, gws: FakeGenesysServer, hub: rs.Hub | None, proxy: Proxy, transport: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    client = _client(transport, proxy, hub, voxsig_server, gws, rs.ReconnectPolicy())
    rec = Recorder(client, timeout=10)
    try:
        client.start()
        error = rec.wait("error")
        # The next attempt in auth_failure_delay (60 s, no jitter), not 3 instant retries.
        assert rec.wait("reconnecting").data.delay == rs.ReconnectPolicy().auth_failure_delay
        assert proxy.no_second_attempt_within(T(1.0)), f"{proxy.attempts()} attempts"
        assert client.state == rs.State.RECONNECTING
        _check_refusal(proxy, error, caplog, repr(client), repr(client.snapshot), str(client.stats))
        assert [e.data.kind for e in rec.named("error")] == ["auth"]
        assert proxy.attempts() == 1
    finally:
        client.close(timeout=T(10))


# -- the proxy refusing a new connection of a long-polling session under way ----------------------


class TunnelsOnce(HttpProxy):
    """An HTTP proxy that opens the first tunnel (CONNECT), then answers every later request
    with 407: the password was changed (or the account locked) meanwhile."""

    def _serve(self, c: socket.socket) -> None:
        with self._cond:
            first = c is self._conns[0]
        if first:
            super()._serve(c)
            return
        try:
            head = _read_head(c.makefile("rb"))
            if head is not None:
                self._record(head)
                c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                while c.recv(4096):  # until the client closes
                    pass
        except OSError:
            pass
        finally:
            c.close()


class LogsInOnce(Socks5Server):
    """A SOCKS5 proxy that takes the credentials once, then refuses them (RFC 1929)."""

    def _handshake(self, c: socket.socket) -> socket.socket | None:
        upstream = super()._handshake(c)
        if upstream is not None:
            self.credentials = ("someone-else", "an0ther-pa55word")
        return upstream


@pytest.mark.parametrize("stop", [True, False], ids=["stop_on_auth_failure", "default-policy"])
@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_a_proxy_refusing_the_held_connection_of_a_session_is_a_credential_refusal(
    hub: rs.Hub | None, scheme: str, stop: bool, tls_files: tuple[str, str], no_env_proxy: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # The first connection (the control one: the Bayeux handshake) goes through; the held
    # /meta/connect's own connection, made afterwards (standalone: by its worker thread; on a hub:
    # on the loop, non-blocking), is refused: an HTTP proxy's 407 to CONNECT (https://), a SOCKS5
    # proxy's refusal of the password.  Before, the session ended as a broken request and the
    # client reconnected at once (its control connection refused in turn: kind "connect", again
    # and again).
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_files)
    proxy: HttpProxy | LogsInOnce
    if scheme == "http":
        proxy = TunnelsOnce()
        proxy_url = f"http://{USER}:{PASSWORD}@127.0.0.1:{proxy.port}"
        server = FakeGenesysServer(timeout=1.0, ssl_context=ctx)
    else:
        proxy = LogsInOnce(credentials=(USER, PASSWORD))
        proxy_url = f"socks5://{USER}:{PASSWORD}@127.0.0.1:{proxy.port}"
        server = FakeGenesysServer(timeout=1.0)
    label = f"the proxy {scheme}://***@127.0.0.1:{proxy.port}"

    def attempts() -> int:
        if isinstance(proxy, LogsInOnce):
            with proxy.cond:
                return len(proxy.logins)
        with proxy._cond:
            return len(proxy.requests)

    policy = rs.ReconnectPolicy(stop_on_auth_failure=stop)
    try:
        with server as gws:
            client = rs.GenesysChatClient(gws.http_url, transport="long-polling", hub=hub, proxy=proxy_url,
                                          reconnect=policy, ca_bundle=tls_files[0])  # fmt: skip
            rec = Recorder(client, timeout=10)
            try:
                client.start()
                error = rec.wait("error")
                info = error.data
                assert info.kind == "auth", info
                assert label in info.message and "user name and password" in info.message, info.message
                if stop:
                    poll_until(lambda: client.state == rs.State.CLOSED, 10, "the client closed")
                    assert not rec.named("reconnecting")
                else:
                    assert rec.wait("reconnecting").data.delay == policy.auth_failure_delay
                    assert client.state == rs.State.RECONNECTING
                # The connection that worked, the refused one, and no other.
                assert attempts() == 2
                assert [e.data.kind for e in rec.named("error")] == ["auth"]
                texts = [repr(error), caplog.text, repr(client), repr(client.snapshot), str(client.stats)]
            finally:
                client.close(timeout=T(10))
    finally:
        proxy.close()
    assert attempts() == 2
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for text in texts:
        assert PASSWORD not in text and token not in text and f"{USER}:" not in text, text
