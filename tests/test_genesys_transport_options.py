"""The long-polling transport's TLS and proxy options, against the fake Bayeux server on 127.0.0.1.

TLS: verification on by default (a self-signed certificate is refused), ``ca_bundle``,
``ssl_context``, ``verify=False``.  Proxy: a small threaded HTTP proxy (absolute-URI forwarding
for ``http://``, ``CONNECT`` for ``https://``) used through ``proxy=`` and through the
environment (``http_proxy`` / ``https_proxy``), and ignored with ``trust_env=False``.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.genesys import GenesysChatClient
from realtime_sync.testing.bayeux import FakeGenesysServer

from .conftest import Recorder, T

CHATS = "/v2/me/chats"
QUICK = rs.ReconnectPolicy(instant_retries=0, interval=0.2, max_interval=0.2, jitter=0.0, stable_after=5.0)
ONCE = rs.ReconnectPolicy(max_attempts=0)


@pytest.fixture(params=["standalone", "hub"])
def make(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Long-polling clients, standalone (blocking HTTP on two threads) or on a hub (h11 on the
    hub's loop): the same TLS and proxy behaviour from both."""
    clients: list[GenesysChatClient] = []
    hub = rs.Hub(workers=1, handshake_workers=1, name="t-lp-options") if request.param == "hub" else None

    def make(url: str, **kw: Any) -> GenesysChatClient:
        kw.setdefault("reconnect", QUICK)
        kw.setdefault("transport", "long-polling")
        if hub is not None:
            kw["hub"] = hub
        c = GenesysChatClient(url, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close(timeout=5)
    if hub is not None:
        assert hub.close(T(10))


def _first_error(client: GenesysChatClient, kind: str) -> rs.ErrorInfo:
    """Start ``client`` and return its first ``error`` event's data of ``kind`` (recorded from
    before start(), so an error immediately followed by the client giving up is not missed)."""
    cond = threading.Condition()
    errors: list[Any] = []

    def add(event: rs.Event) -> None:
        with cond:
            errors.append(event.data)
            cond.notify_all()

    client.on("error", add)
    client.start()
    with cond:
        assert cond.wait_for(lambda: any(e.kind == kind for e in errors), T(5)), errors
        return next(e for e in errors if e.kind == kind)


def _tls_gws(tls_files: tuple[str, str]) -> FakeGenesysServer:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_files)
    return FakeGenesysServer(timeout=1.0, ssl_context=ctx)


def _local(host: str) -> str:
    """The proxy resolves test names (``gws.test``) to this machine: nothing leaves 127.0.0.1."""
    return "127.0.0.1" if host.endswith(".test") else host


def _named(url: str) -> str:
    """The same URL under a name only the proxy resolves (loopback URLs never use a proxy
    from the environment)."""
    return url.replace("127.0.0.1", "gws.test")


def _chat_round_trip(gws: FakeGenesysServer, client: GenesysChatClient) -> None:
    got = Recorder(client)  # before the server sends: a wait_for() after it could miss the event
    client.wait_for("subscribed", timeout=T(5))  # starts the client
    gws.chat_state_change("c-1", "StatusChange")
    assert got.wait("chat.status_change", timeout=T(10)).entity_id == "c-1"


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_verification_is_on_by_default(tls_files: tuple[str, str], make: Any) -> None:
    with _tls_gws(tls_files) as gws:
        assert gws.http_url.startswith("https://")
        client = make(gws.http_url, reconnect=ONCE)
        assert "CERTIFICATE_VERIFY_FAILED" in _first_error(client, "connect").message
        gws.wait_until(lambda: gws.tls_failures >= 1, timeout=5)
        assert gws.http_requests == []


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
def test_tls_with_a_ca_bundle(tls_files: tuple[str, str], make: Any, transport: str) -> None:
    with _tls_gws(tls_files) as gws:
        client = make(gws.http_url, ca_bundle=tls_files[0], transport=transport)
        _chat_round_trip(gws, client)
        assert client.transport == transport
        assert bool(gws.http_requests) == (transport == "long-polling")


def test_tls_with_an_ssl_context_and_without_verification(tls_files: tuple[str, str], make: Any) -> None:
    with _tls_gws(tls_files) as gws:
        ctx = ssl.create_default_context(cafile=tls_files[0])
        _chat_round_trip(gws, make(gws.http_url, ssl_context=ctx))
        _chat_round_trip(gws, make(gws.http_url, verify=False))


# -- proxy -------------------------------------------------------------------------------------


def _read_head(f: Any) -> list[str] | None:
    lines = []
    while True:
        line = f.readline(65537)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            return lines
        lines.append(line.decode("latin-1").rstrip("\r\n"))


def _body(f: Any, head: list[str]) -> bytes:
    length = next((int(h.split(":", 1)[1]) for h in head[1:] if h.lower().startswith("content-length:")), 0)
    return f.read(length) if length else b""


class HttpProxy:
    """A threaded HTTP proxy on 127.0.0.1 recording what it was asked: ``requests`` holds
    ``(method, target, Proxy-Authorization)`` of every request (each forwarded POST, each CONNECT)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[str, str, str | None]] = []
        self._cond = threading.Condition()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, name="test-proxy", daemon=True).start()

    def wait(self, predicate: Any, timeout: float = 5.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self.requests), T(timeout)), self.requests

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self._cond:
                self._conns.append(c)
            threading.Thread(target=self._serve, args=(c,), name="test-proxy-conn", daemon=True).start()

    def _record(self, head: list[str]) -> tuple[str, str]:
        method, target, _ = head[0].split(" ", 2)
        auth = next(
            (h.split(":", 1)[1].strip() for h in head[1:] if h.lower().startswith("proxy-authorization:")), None
        )
        with self._cond:
            self.requests.append((method, target, auth))
            self._cond.notify_all()
        return method, target

    def _serve(self, c: socket.socket) -> None:
        up: socket.socket | None = None
        try:
            cf = c.makefile("rb")
            while True:
                head = _read_head(cf)
                if head is None:
                    return
                method, target = self._record(head)
                if method == "CONNECT":
                    host, port = target.rsplit(":", 1)
                    up = socket.create_connection((_local(host), int(port)))
                    c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self._pipe(c, up)
                    return
                # Absolute-URI forwarding: origin-form upstream, one upstream per client connection.
                assert target.startswith("http://"), target
                hostport, _, path = target[len("http://") :].partition("/")
                host, port = hostport.rsplit(":", 1)
                body = _body(cf, head)
                if up is None:
                    up = socket.create_connection((_local(host), int(port)))
                    uf = up.makefile("rb")
                headers = [
                    h for h in head[1:] if not h.lower().startswith(("proxy-authorization:", "proxy-connection:"))
                ]
                up.sendall(
                    ("\r\n".join([f"{method} /{path} HTTP/1.1", *headers]) + "\r\n\r\n").encode("latin-1") + body
                )
                rhead = _read_head(uf)
                if rhead is None:
                    return
                rbody = _body(uf, rhead)
                c.sendall(("\r\n".join(rhead) + "\r\n\r\n").encode("latin-1") + rbody)
        except OSError:
            return
        finally:
            for s in (c, up):
                if s is not None:
                    s.close()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        while True:
            r, _, _ = select.select([a, b], [], [], 30)
            if not r:
                return
            for s in r:
                d = s.recv(65536)
                if not d:
                    return
                (b if s is a else a).sendall(d)

    def close(self) -> None:
        self.sock.close()
        with self._cond:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def proxy() -> Iterator[HttpProxy]:
    p = HttpProxy()
    yield p
    p.close()


def test_proxy_option_forwards_http_requests_with_absolute_uris(
    make: Any, proxy: HttpProxy, no_env_proxy: pytest.MonkeyPatch
) -> None:
    with FakeGenesysServer(timeout=1.0) as gws:
        client = make(gws.http_url, proxy=f"http://agent:proxy-pw@127.0.0.1:{proxy.port}")
        _chat_round_trip(gws, client)
        assert proxy.requests and all(m == "POST" and t == gws.http_url for m, t, _ in proxy.requests)
        assert all(a is not None and a.startswith("Basic ") for _, _, a in proxy.requests)
        # The server saw origin-form requests, without the proxy's credentials.
        assert all(r.path == "/api/v2/notifications" for r in gws.http_requests)
        assert not any("proxy-authorization" in {k.lower() for k in r.headers} for r in gws.http_requests)
        # Held connects and the other requests all went through the proxy (which records a
        # request before the server sees it: count the server's first).
        seen = len(gws.http_requests)
        assert len(proxy.requests) >= seen >= 3


def test_proxy_option_tunnels_https_with_connect(
    tls_files: tuple[str, str], make: Any, proxy: HttpProxy, no_env_proxy: pytest.MonkeyPatch
) -> None:
    with _tls_gws(tls_files) as gws:
        client = make(gws.http_url, proxy=f"http://agent:proxy-pw@127.0.0.1:{proxy.port}", ca_bundle=tls_files[0])
        _chat_round_trip(gws, client)
        target = f"127.0.0.1:{gws.port}"
        assert proxy.requests and all(m == "CONNECT" and t == target for m, t, _ in proxy.requests)
        assert all(a is not None and a.startswith("Basic ") for _, _, a in proxy.requests)
        assert len(proxy.requests) >= 2  # one tunnel per worker (send, connect)


def test_proxy_from_the_environment(make: Any, proxy: HttpProxy, no_env_proxy: pytest.MonkeyPatch) -> None:
    no_env_proxy.setenv("http_proxy", proxy.url)
    with FakeGenesysServer(timeout=1.0) as gws:
        _chat_round_trip(gws, make(_named(gws.http_url)))
        assert proxy.requests and all(m == "POST" and t == _named(gws.http_url) for m, t, _ in proxy.requests)
        assert all(a is None for _, _, a in proxy.requests)


def test_https_proxy_from_the_environment(
    tls_files: tuple[str, str], make: Any, proxy: HttpProxy, no_env_proxy: pytest.MonkeyPatch
) -> None:
    no_env_proxy.setenv("https_proxy", proxy.url)
    no_env_proxy.setenv("http_proxy", "http://127.0.0.1:9")  # the wrong scheme's proxy: unused
    with _tls_gws(tls_files) as gws:
        _chat_round_trip(gws, make(_named(gws.http_url), ca_bundle=tls_files[0]))
        assert proxy.requests and all(m == "CONNECT" for m, _, _ in proxy.requests)


def test_loopback_and_no_proxy_bypass_the_environment_proxy(
    make: Any, proxy: HttpProxy, no_env_proxy: pytest.MonkeyPatch
) -> None:
    no_env_proxy.setenv("http_proxy", proxy.url)
    no_env_proxy.setenv("no_proxy", "127.0.0.1")
    with FakeGenesysServer(timeout=1.0) as gws:
        _chat_round_trip(gws, make(gws.http_url))
    assert proxy.requests == []


def test_trust_env_false_ignores_the_proxy_environment(
    make: Any, proxy: HttpProxy, no_env_proxy: pytest.MonkeyPatch
) -> None:
    no_env_proxy.setenv("http_proxy", proxy.url)
    no_env_proxy.setenv("https_proxy", proxy.url)
    with FakeGenesysServer(timeout=1.0) as gws:
        _chat_round_trip(gws, make(gws.http_url, trust_env=False))
    assert proxy.requests == []


def test_an_unreachable_proxy_is_a_connect_error(make: Any, no_env_proxy: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with FakeGenesysServer(timeout=1.0) as gws:
        client = make(gws.http_url, proxy=f"http://127.0.0.1:{port}", reconnect=ONCE)
        assert "ConnectionRefusedError" in _first_error(client, "connect").message
        assert gws.http_requests == []


def test_a_socks_proxy_on_a_closed_port_is_named(make: Any, no_env_proxy: pytest.MonkeyPatch, dead_port: int) -> None:
    # Long-polling speaks SOCKS (it refused socks proxies before; tests/test_longpoll_socks.py).
    with FakeGenesysServer(timeout=1.0) as gws:
        client = make(gws.http_url, proxy=f"socks5://127.0.0.1:{dead_port}", reconnect=ONCE)
        message = _first_error(client, "connect").message
        assert f"cannot connect to the proxy socks5://127.0.0.1:{dead_port} (for " in message, message
        assert "ConnectionRefusedError" in message and "check the proxy's host and port" in message, message
        assert gws.http_requests == []


@pytest.mark.parametrize(
    ("answer", "kind"), [(b"407 Proxy Authentication Required", "auth"), (b"403 Forbidden", "connect")]
)
def test_a_proxy_refusing_the_tunnel_is_a_connect_error(
    tls_files: tuple[str, str], make: Any, no_env_proxy: pytest.MonkeyPatch, answer: bytes, kind: str
) -> None:
    # A 407 (our proxy credentials refused) is a credential refusal ("auth": the slow backoff, a
    # stop with stop_on_auth_failure); any other refusal of the tunnel is a connect error.
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def refuse() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                with conn:
                    conn.settimeout(5)
                    try:
                        conn.recv(4096)
                        conn.sendall(b"HTTP/1.1 " + answer + b"\r\nContent-Length: 0\r\n\r\n")
                    except OSError:
                        pass

        t = threading.Thread(target=refuse, name="test-proxy-407", daemon=True)
        t.start()
        try:
            with _tls_gws(tls_files) as gws:
                client = make(gws.http_url, proxy=f"http://agent:proxy-pw@127.0.0.1:{port}", reconnect=ONCE)
                message = _first_error(client, kind).message
                assert answer[:3].decode() in message and "proxy-pw" not in message
                assert f"the proxy http://***@127.0.0.1:{port}" in message, message
                assert gws.http_requests == []
        finally:
            stop.set()
            t.join(5)
