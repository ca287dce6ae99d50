"""Bayeux long-polling through SOCKS proxies, standalone (two worker threads) and on a hub (the
loop's non-blocking HTTP), on the wire: the fake Genesys server of realtime_sync.testing behind
Debian's microsocks (a real SOCKS5 server; ``bash .ci/install-servers.sh`` installs it) and
behind the tests' own SOCKS4/4a/5 relay (which records what it was asked); then every way a
proxy fails (refused credentials, a closed port, a refused tunnel, a peer that is no SOCKS
proxy, a proxy that accepts the connection and never answers), and a silent HTTP proxy, which
used to end in a Bayeux reply timeout naming neither the proxy nor ``connect_timeout``.

Every error names the proxy (credentials hidden) and says what to check, as the websocket
transport's do (tests/test_ws_proxy.py); the password appears in no log line, repr, exception
or event.  Long-polling refused SOCKS proxies before ("long-polling supports HTTP proxies
only"): each test here failed on that code.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.testing.bayeux import FakeGenesysServer

from . import test_ws_proxy
from ._relay import Socks5Server
from .conftest import Recorder, T
from .test_ws_proxy import PASSWORD, USER, StubProxy, _closes_at_once, _no_secrets, _realtime_threads

#: Debian's microsocks on 127.0.0.1 (user USER, password PASSWORD), skipped cleanly when absent.
microsocks = test_ws_proxy.microsocks

WHERE = ["standalone", "hub"]


@pytest.fixture
def gws() -> Iterator[FakeGenesysServer]:
    with FakeGenesysServer(timeout=1.0) as server:
        yield server


@pytest.fixture(params=WHERE)
def hub(request: pytest.FixtureRequest) -> Iterator[rs.Hub | None]:
    if request.param == "standalone":
        yield None
        return
    h = rs.Hub(workers=1, handshake_workers=1, name="t-lp-socks")
    yield h
    assert h.close(T(10))


def _client(url: str, hub: rs.Hub | None, proxy: str, **kw: Any) -> rs.GenesysChatClient:
    kw.setdefault("reconnect", False)
    return rs.GenesysChatClient(url, transport="long-polling", proxy=proxy, hub=hub, **kw)


def _round_trip(gws: FakeGenesysServer, client: rs.GenesysChatClient) -> list[str]:
    """Handshake, subscribe, one event through the proxy; the texts a user could see (reprs,
    stats, events) for the secrets check."""
    rec = Recorder(client, timeout=10)
    try:
        client.start()
        rec.wait("subscribed")
        assert client.transport == "long-polling"
        gws.chat_state_change("c-1", "StatusChange")
        assert rec.wait("chat.status_change").entity_id == "c-1"
        return [repr(client), repr(client.snapshot), str(client.stats), *(repr(e) for e in rec.events)]
    finally:
        client.close(timeout=T(10))


def _failure(client: rs.GenesysChatClient) -> tuple[str, list[str]]:
    """Start ``client`` (reconnect=False): why it failed, and its error events."""
    errors: list[str] = []
    client.on("error", lambda e: errors.append(e.data.message))
    try:
        with pytest.raises(rs.ConnectError) as caught:
            client.start(wait=True, timeout=T(15))
    finally:
        client.close(timeout=T(10))
    return str(caught.value), errors


# -- a real SOCKS5 server ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_events_flow_through_microsocks(
    gws: FakeGenesysServer, hub: rs.Hub | None, microsocks: int, scheme: str, no_env_proxy: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    # socks5h: the proxy resolves the name (localhost), the client sends it as a name.
    url = gws.http_url.replace("127.0.0.1", "localhost") if scheme == "socks5h" else gws.http_url
    client = _client(url, hub, f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{microsocks}")
    texts = _round_trip(gws, client)
    assert gws.http_requests, "no request reached the server"
    _no_secrets(caplog.text, *texts)


def test_tls_through_microsocks(
    hub: rs.Hub | None, microsocks: int, tls_files: tuple[str, str], no_env_proxy: Any
) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_files)
    with FakeGenesysServer(timeout=1.0, ssl_context=ctx) as gws:
        assert gws.http_url.startswith("https://")
        proxy = f"socks5://{USER}:{PASSWORD}@127.0.0.1:{microsocks}"
        _round_trip(gws, _client(gws.http_url, hub, proxy, ca_bundle=tls_files[0]))


def test_microsocks_refusing_the_password_is_named(
    gws: FakeGenesysServer, hub: rs.Hub | None, microsocks: int, no_env_proxy: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    wrong = "wr0ng-pa55word"
    message, errors = _failure(_client(gws.http_url, hub, f"socks5://{USER}:{wrong}@127.0.0.1:{microsocks}"))
    assert f"cannot tunnel through the proxy socks5://***@127.0.0.1:{microsocks} (for " in message, message
    assert "refused the user name and password" in message and "check the proxy's user name" in message, message
    assert errors and f"127.0.0.1:{microsocks}" in errors[0], errors
    assert wrong not in caplog.text + message + "".join(errors)
    assert gws.http_requests == []


# -- the tests' own relay: SOCKS4/4a too, and what was asked ------------------------------------


@pytest.mark.parametrize(
    ("scheme", "credentials"), [("socks5h", True), ("socks5", False), ("socks4a", True), ("socks4", False)]
)
def test_events_flow_through_a_socks_relay(
    gws: FakeGenesysServer, hub: rs.Hub | None, scheme: str, credentials: bool, no_env_proxy: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    socks = Socks5Server(credentials=(USER, PASSWORD) if credentials else None)
    # A name only the proxy resolves (the relay connects to 127.0.0.1 whatever the name) where
    # the proxy does the look-up; an address where the client does.
    host = "gws.test" if scheme in ("socks5h", "socks4a") else "127.0.0.1"
    userinfo = f"{USER}:{PASSWORD}@" if credentials else ""
    try:
        texts = _round_trip(gws, _client(gws.http_url.replace("127.0.0.1", host), hub,
                                         f"{scheme}://{userinfo}127.0.0.1:{socks.port}"))  # fmt: skip
    finally:
        socks.close()
    assert socks.requests and set(socks.requests) == {(host, gws.port)}, socks.requests
    if credentials and scheme.startswith("socks5"):
        assert set(socks.logins) == {(USER, PASSWORD)}
    _no_secrets(caplog.text, *texts)


# -- failures name the proxy and say what to check ------------------------------------------------


def test_a_socks_proxy_refusing_the_credentials_is_named(
    gws: FakeGenesysServer, hub: rs.Hub | None, no_env_proxy: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    socks = Socks5Server(credentials=("someone-else", "an0ther-pa55word"))
    try:
        message, errors = _failure(_client(gws.http_url, hub, f"socks5h://{USER}:{PASSWORD}@127.0.0.1:{socks.port}"))
    finally:
        socks.close()
    label = f"the proxy socks5h://***@127.0.0.1:{socks.port}"
    assert f"cannot tunnel through {label} (for {gws.http_url}): it refused the user name and password" in message
    assert message.endswith("check the proxy's user name and password (the proxy= option)"), message
    assert errors and label in errors[0], errors
    assert socks.logins == [(USER, PASSWORD)]  # RFC 1929: what the URL said
    _no_secrets(message, *errors, caplog.text)


def test_a_closed_socks_port_is_named(gws: FakeGenesysServer, hub: rs.Hub | None, no_env_proxy: Any,
                                      dead_port: int) -> None:  # fmt: skip
    message, errors = _failure(_client(gws.http_url, hub, f"socks5h://{USER}:{PASSWORD}@127.0.0.1:{dead_port}"))
    assert f"cannot connect to the proxy socks5h://***@127.0.0.1:{dead_port} (for " in message, message
    assert "ConnectionRefusedError" in message and "check the proxy's host and port" in message, message
    _no_secrets(message, *errors)


def test_a_tunnel_the_proxy_cannot_open_is_named(
    gws: FakeGenesysServer, hub: rs.Hub | None, no_env_proxy: Any, dead_port: int
) -> None:
    socks = Socks5Server(credentials=(USER, PASSWORD))  # answers "connection refused" (RFC 1928 reply 5)
    try:
        url = gws.http_url.replace(f":{gws.port}/", f":{dead_port}/")
        message, errors = _failure(_client(url, hub, f"socks5://{USER}:{PASSWORD}@127.0.0.1:{socks.port}"))
    finally:
        socks.close()
    assert f"cannot tunnel through the proxy socks5://***@127.0.0.1:{socks.port} (for " in message, message
    assert f"CONNECT 127.0.0.1:{dead_port} refused: connection refused" in message, message
    assert "the proxy could not reach it" in message, message
    _no_secrets(message, *errors)


class _NotSocks:
    """A peer that answers anything with an HTTP error and closes (an HTTP proxy, say)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, name="test-not-socks", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                try:
                    c.recv(4096)
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_a_peer_that_is_no_socks_proxy_is_named(gws: FakeGenesysServer, hub: rs.Hub | None,
                                                no_env_proxy: Any) -> None:  # fmt: skip
    peer = _NotSocks()
    try:
        message, errors = _failure(_client(gws.http_url, hub, f"socks5://{USER}:{PASSWORD}@127.0.0.1:{peer.port}"))
    finally:
        peer.close()
    assert f"cannot tunnel through the proxy socks5://***@127.0.0.1:{peer.port} (for " in message, message
    assert "it did not answer as a SOCKS5 proxy; check that it is a SOCKS5 proxy" in message, message
    _no_secrets(message, *errors)


# -- a proxy that accepts the connection and never answers ---------------------------------------


@pytest.mark.parametrize("scheme", ["socks5h", "socks4a"])
def test_a_silent_socks_proxy_times_out_naming_the_proxy(
    gws: FakeGenesysServer, hub: rs.Hub | None, scheme: str, no_env_proxy: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    silent = StubProxy(None)
    try:
        started = time.monotonic()
        client = _client(gws.http_url, hub, f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{silent.port}",
                         connect_timeout=T(1.0))  # fmt: skip
        message, errors = _failure(client)
        assert time.monotonic() - started < T(6)  # connect_timeout bounds it, not a reply timeout
    finally:
        silent.close()
    label = f"the proxy {scheme}://***@127.0.0.1:{silent.port}"
    assert f"cannot tunnel through {label} (for " in message, message
    assert "no answer to the SOCKS handshake" in message and f"connect_timeout={T(1.0)}s" in message, message
    assert f"check that it is a {scheme[:6]} proxy and that it is working (the proxy= option)" in message, message
    assert errors and label in errors[0], errors
    _no_secrets(message, *errors, caplog.text)
    assert gws.http_requests == []


@pytest.mark.parametrize("proxy", ["socks5h", "http-connect"])
def test_close_ends_a_connect_stuck_in_a_silent_proxy_at_once(
    hub: rs.Hub | None, proxy: str, tls_files: tuple[str, str], no_env_proxy: Any
) -> None:
    """Before, a hub's handshake thread stayed in a silent proxy's CONNECT for the whole
    ``connect_timeout`` (measured: ``hub.close()`` took 57 s with connect_timeout=60)."""
    ctx = None
    if proxy == "http-connect":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls_files)
    silent = StubProxy(None)
    url = silent.url() if proxy == "http-connect" else f"socks5h://{USER}:{PASSWORD}@127.0.0.1:{silent.port}"
    before = _realtime_threads()
    try:
        with FakeGenesysServer(timeout=1.0, ssl_context=ctx) as gws:
            client = _client(gws.http_url, hub, url, connect_timeout=T(60), ca_bundle=tls_files[0])
            client.start()
            assert silent.heard.wait(T(10)), "the client never spoke to the proxy"
            _closes_at_once(client, silent, hub, before, timeout=1, within=T(1), hub_within=T(2))
    finally:
        silent.close()


@pytest.mark.parametrize("secure", [False, True], ids=["http-absolute-form", "https-connect"])
def test_a_silent_http_proxy_times_out_naming_the_proxy_and_the_timeout(
    hub: rs.Hub | None, secure: bool, tls_files: tuple[str, str], no_env_proxy: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    ctx = None
    if secure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls_files)
    silent = StubProxy(None)  # reads the request (or CONNECT) head, never answers
    try:
        with FakeGenesysServer(timeout=1.0, ssl_context=ctx) as gws:
            started = time.monotonic()
            client = _client(gws.http_url, hub, silent.url(), connect_timeout=T(1.0), ca_bundle=tls_files[0])
            message, errors = _failure(client)
            assert time.monotonic() - started < T(6)
    finally:
        silent.close()
    label = f"the proxy http://***@127.0.0.1:{silent.port}"
    assert label in message and f"connect_timeout={T(1.0)}s" in message, message
    if secure:
        assert f"cannot tunnel through {label} (for " in message and "no answer to CONNECT" in message, message
    else:
        assert f"cannot get an answer through {label} (for " in message, message
        assert "no answer to the first request" in message and "check that it is an HTTP proxy" in message, message
    assert errors and label in errors[0], errors
    assert "no reply to /meta/handshake" not in message + "".join(errors)
    _no_secrets(message, *errors, caplog.text)


def test_a_socks_proxy_from_the_environment(
    gws: FakeGenesysServer, hub: rs.Hub | None, no_env_proxy: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``http_proxy=socks5h://...`` with ``trust_env`` (the default), for a name only the proxy
    resolves (a loopback URL never uses the environment's proxy)."""
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    socks = Socks5Server(credentials=(USER, PASSWORD))
    no_env_proxy.setenv("http_proxy", f"socks5h://{USER}:{PASSWORD}@127.0.0.1:{socks.port}")
    try:
        client = rs.GenesysChatClient(gws.http_url.replace("127.0.0.1", "gws.test"), transport="long-polling",
                                      hub=hub, reconnect=False)  # fmt: skip
        texts = _round_trip(gws, client)
    finally:
        socks.close()
    assert socks.requests and set(socks.requests) == {("gws.test", gws.port)}, socks.requests
    _no_secrets(caplog.text, *texts)
