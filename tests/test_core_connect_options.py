"""Connect options on the wire: headers, subprotocols, Origin, cookies, TLS, proxy."""

from __future__ import annotations

import select
import socket
import ssl
import threading

import pytest

import realtime_sync as rs
from realtime_sync.testing import FakeServer

from ._echo import EchoServer
from .conftest import Recorder, T


class ProtoServer(EchoServer):
    subprotocols = ("proto-b",)


def test_headers_subprotocols_origin_cookies(make_client):
    with ProtoServer() as server:
        client = make_client(
            server.url,
            headers={"X-Trace": "abc"},
            subprotocols=["proto-a", "proto-b"],
            origin="https://example.test",
            cookies={"JSESSIONID": "s1", "lang": "en"},
        )
        rec = Recorder(client)
        client.start()
        info = rec.wait("connected").data
        hs = server.handshakes[-1]
        assert hs.headers["X-Trace"] == "abc"
        assert hs.headers["Origin"] == "https://example.test"
        assert hs.headers["Cookie"] == "JSESSIONID=s1; lang=en"
        assert hs.headers["Sec-WebSocket-Protocol"].replace(" ", "") == "proto-a,proto-b"
        assert info.subprotocol == "proto-b"


def test_no_origin_header_when_not_asked(echo_server, make_client):
    client = make_client(echo_server.url)
    rec = Recorder(client)
    client.start()
    rec.wait("connected")
    assert "Origin" not in echo_server.handshakes[-1].headers


def _tls_server(tls_files) -> EchoServer:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_files)
    return EchoServer(ssl_context=ctx)


def test_tls_verification_is_on_by_default(tls_files, make_client):
    with _tls_server(tls_files) as server:
        client = make_client(server.url, reconnect=rs.ReconnectPolicy(max_attempts=0))
        rec = Recorder(client)
        client.start()
        err = rec.wait("error").data
        assert err.kind == "connect" and "CERTIFICATE_VERIFY_FAILED" in err.message
        assert server.connections == []


def test_tls_with_ca_bundle_and_with_ssl_context(tls_files, make_client):
    with _tls_server(tls_files) as server:
        client = make_client(server.url, ca_bundle=tls_files[0])
        rec = Recorder(client)
        client.start()
        conn = server.wait_for_connection(timeout=T(5))
        # Many frames in one burst: decrypted bytes pending inside the TLS layer must be read.
        for i in range(500):
            conn.send({"event": "n", "id": i, "data": {"pad": "x" * 100}})
        assert rec.wait("n", where=lambda e: e.entity_id == 499).entity_id == 499
        assert [e.entity_id for e in rec.events if e.name == "n"] == list(range(500))

        ctx = ssl.create_default_context(cafile=tls_files[0])
        client2 = make_client(server.url, ssl_context=ctx)
        rec2 = Recorder(client2)
        client2.start()
        rec2.wait("connected")


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on 127.0.0.1 that records the targets it was asked for."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.targets: list[str] = []
        self.auth: list[str | None] = []
        self._threads: list[threading.Thread] = []
        self._stop = False
        self._t = threading.Thread(target=self._accept, daemon=True)
        self._t.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, c: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = c.recv(4096)
            if not chunk:
                return
            data += chunk
        head = data.decode().split("\r\n")
        target = head[0].split()[1]
        self.targets.append(target)
        self.auth.append(
            next((h.split(":", 1)[1].strip() for h in head if h.lower().startswith("proxy-authorization")), None)
        )
        host, port = target.rsplit(":", 1)
        if host.endswith(".test"):  # test names stand for this machine: nothing leaves 127.0.0.1
            host = "127.0.0.1"
        up = socket.create_connection((host, int(port)))
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        socks = [c, up]
        try:
            while True:
                r, _, _ = select.select(socks, [], [], 10)
                if not r:
                    return
                for s in r:
                    d = s.recv(65536)
                    if not d:
                        return
                    (up if s is c else c).sendall(d)
        except OSError:
            return
        finally:
            c.close()
            up.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def test_http_proxy_option(echo_server, make_client):
    proxy = ConnectProxy()
    try:
        client = make_client(echo_server.url, proxy=f"http://user:pw@127.0.0.1:{proxy.port}")
        rec = Recorder(client)
        client.start()
        conn = echo_server.wait_for_connection(timeout=T(5))
        conn.send({"event": "via-proxy"})
        rec.wait("via-proxy")
        assert proxy.targets == [f"127.0.0.1:{echo_server.port}"]
        assert proxy.auth[0] and proxy.auth[0].startswith("Basic ")
    finally:
        proxy.close()


def test_proxy_from_environment(echo_server, make_client, monkeypatch):
    proxy = ConnectProxy()
    try:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        # A name only the proxy resolves (to 127.0.0.1): the client must go through it.
        client = make_client(f"ws://echo.test:{echo_server.port}/")
        rec = Recorder(client)
        client.start()
        rec.wait("connected")
        assert proxy.targets == [f"echo.test:{echo_server.port}"]
    finally:
        proxy.close()


def test_loopback_urls_bypass_the_environment_proxy(echo_server, make_client, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    client = make_client(echo_server.url)
    rec = Recorder(client)
    client.start()
    rec.wait("connected")


def test_trust_env_false_ignores_the_environment(echo_server, make_client, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    client = make_client(echo_server.url, trust_env=False)
    rec = Recorder(client)
    client.start()
    rec.wait("connected")


def test_fake_server_refuses_non_loopback():
    with pytest.raises(ValueError):
        FakeServer(host="0.0.0.0")


def test_proxy_selection_rules():
    from realtime_sync._wsconn import _NO_PROXY, _proxy_kwargs, is_loopback

    env = rs.ConnectOptions()
    assert _proxy_kwargs(env, "wss://example.com/ws") == {}  # websocket-client reads the environment
    assert _proxy_kwargs(rs.ConnectOptions(trust_env=False), "wss://example.com/ws") == _NO_PROXY
    assert _proxy_kwargs(env, "ws://127.0.0.1:8000/") == _NO_PROXY
    explicit = _proxy_kwargs(rs.ConnectOptions(proxy="http://u:p@proxy.example:3128"), "ws://127.0.0.1/")
    assert explicit["http_proxy_host"] == "proxy.example" and explicit["http_proxy_auth"] == ("u", "p")
    assert all(is_loopback(h) for h in ("localhost", "127.0.0.1", "127.9.9.9", "::1", "[::1]", "app.localhost"))
    assert not any(is_loopback(h) for h in ("example.com", "10.0.0.1", "", None, "localhost.example.com"))
