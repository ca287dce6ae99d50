"""Kept-alive long-polling connections that the server closes: a publish is never applied twice.

A server (or a proxy in front of it) closes idle keep-alive connections: cleanly (node's 5 s
``keepAliveTimeout``, Jetty's idle timeout), or by dropping one just as a request arrives.  A
client that re-sends every request that failed on a reused connection (what urllib3 does for
idempotent methods) may deliver a publish twice (RFC 9110 section 9.2.2).  So, on the wire,
standalone and on a hub:

* an idle connection the server closed is seen before it is reused: the request goes on a fresh
  connection, and nothing is written to the closed one;
* a publish whose connection is dropped after the server read it (and applied it) is not sent
  again: it is an ``error`` event of kind ``publish``; the server saw it once;
* a ``/meta/`` request (here a subscribe) dropped the same way is sent again on a fresh
  connection, with no disconnection.

:class:`KeepAliveProxy` is a raw HTTP/1.1 peer on 127.0.0.1 in front of a real Bayeux server (the
fake, faye, cometd-nodejs-server) that relays every request and answer, and closes the kept-alive
connection of the requests it is told to.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from collections.abc import Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync._h1 import ResponseReader
from realtime_sync.cometd import CometDClient
from realtime_sync.testing.bayeux import FakeBayeuxServer
from realtime_sync.transport_longpoll import _Http

from ._relay import _Relaying
from .conftest import FAST, Recorder, T, on
from .conftest import poll_until as eventually
from .servers.harness import CometDNodeServer, FayeServer, cometd_available, faye_available

ROOM = "/chat/room"


class KeepAliveProxy(_Relaying):
    """Relays HTTP/1.1 requests to ``upstream`` (host, port), one upstream connection per client
    connection.  :meth:`plan` picks the first request whose body contains a needle for one action:

    * ``"close-idle"``: relayed and answered, then the connection is closed cleanly (FIN) as an
      idle timeout does; every byte the client writes to it afterwards is counted in
      :attr:`late_bytes` (a request written to a connection the server had closed);
    * ``"drop"`` / ``"reset"``: relayed to the server, which applies it, and its answer awaited;
      then the client's connection is closed (FIN, or RST) with no byte of the answer.

    :attr:`done` lists the actions carried out (``"close-idle-end"`` once the client let go of
    a connection closed idle)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.plans: list[tuple[bytes, str]] = []
        self.bodies: list[bytes] = []  # every request body relayed, in order
        self.done: list[str] = []
        self.late_bytes = 0
        super().__init__("keepalive-proxy")  # listens and accepts; close() ends every connection

    def url(self, upstream_url: str) -> str:
        scheme, rest = upstream_url.split("://", 1)
        path = rest.split("/", 1)[1] if "/" in rest else ""
        return f"{scheme}://127.0.0.1:{self.port}/{path}"

    def plan(self, needle: bytes, action: str) -> None:
        with self.cond:
            self.plans.append((needle, action))

    def relayed(self, needle: bytes) -> int:
        with self.cond:
            return sum(needle in b for b in self.bodies)

    # -- internals ---------------------------------------------------------------------------

    def _track(self, *socks: socket.socket) -> None:
        with self.cond:
            self._socks.update(socks)

    def _take(self, body: bytes) -> str:
        with self.cond:
            self.bodies.append(body)
            for i, (needle, action) in enumerate(self.plans):
                if needle in body:
                    del self.plans[i]
                    return action
        return "relay"

    def _record(self, what: str) -> None:
        with self.cond:
            self.done.append(what)
            self.cond.notify_all()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        buf = b""
        try:
            self._track(client)
            while not self._closing:
                request, buf = _read_request(client, buf)
                if request is None:
                    return
                action = self._take(request[1])
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                    self._track(upstream)
                upstream.sendall(request[0] + request[1])
                answer, keep_alive = _read_response(upstream)
                if not keep_alive:
                    upstream.close()
                    upstream = None
                if action in ("drop", "reset"):
                    if action == "reset":  # RST instead of FIN
                        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client.close()
                    self._record(action)
                    return
                client.sendall(answer)
                if action == "close-idle":
                    client.shutdown(socket.SHUT_WR)
                    self._record("close-idle")
                    while True:
                        data = client.recv(65536)
                        if not data:
                            break
                        with self.cond:
                            self.late_bytes += len(data)
                    self._record("close-idle-end")
                    return
        except (OSError, ValueError):  # a peer went away (ValueError: a response cut short)
            return
        finally:
            for s in (client, upstream):
                if s is not None:
                    s.close()


def _read_request(sock: socket.socket, buf: bytes) -> tuple[tuple[bytes, bytes] | None, bytes]:
    """((head with its blank line, body), what follows) of the next request; None at EOF."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None, b""
        buf += data
    head, _, buf = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buf) < length:
        data = sock.recv(65536)
        if not data:
            return None, b""
        buf += data
    return (head + b"\r\n\r\n", buf[:length]), buf[length:]


def _read_response(sock: socket.socket) -> tuple[bytes, bool]:
    """The raw bytes of one whole response, and whether the connection stays open."""
    reader = ResponseReader()
    raw = b""
    while True:
        data = sock.recv(65536)
        if not data:
            reader.eof()
            return raw, False
        raw += data
        if reader.feed(data):
            return raw, reader.keep_alive


def publish_errors(rec: Recorder) -> list[rs.Event]:
    return [e for e in rec.named("error") if e.data.kind == "publish"]


@pytest.fixture
def fake() -> Iterator[tuple[FakeBayeuxServer, KeepAliveProxy]]:
    with FakeBayeuxServer(websocket=False, timeout=2.0) as server:
        proxy = KeepAliveProxy(("127.0.0.1", server.port))
        try:
            yield server, proxy
        finally:
            proxy.close()


@contextlib.contextmanager
def running(url: str, hub: rs.Hub | None, *, subscribe: bool = True) -> Iterator[tuple[CometDClient, Recorder]]:
    """A started long-polling client on ``url``, subscribed to ROOM (when ``subscribe``); closed
    on exit."""
    client = CometDClient(url, transport="long-polling", reconnect=FAST, **on(hub))
    rec = Recorder(client, timeout=10)
    try:
        if subscribe:
            client.subscribe(ROOM)
        client.start()
        rec.wait("subscribed" if subscribe else "connected")
        yield client, rec
    finally:
        client.close(timeout=T(5))


@pytest.mark.parametrize("how", ["drop", "reset"])
def test_a_publish_dropped_after_the_server_read_it_is_reported_not_sent_twice(
    fake: tuple[FakeBayeuxServer, KeepAliveProxy], hub: rs.Hub | None, how: str
) -> None:
    server, proxy = fake
    with running(proxy.url(server.http_url), hub) as (client, rec):
        client.publish(ROOM, {"n": 0})
        rec.wait("message", where=lambda e: e.data == {"n": 0})  # the control connection is kept alive
        proxy.plan(b'"n":1}', how)
        client.publish(ROOM, {"n": 1})
        err = rec.wait("error", where=lambda e: e.data.kind == "publish")
        assert err.raw["data"] == {"n": 1} and err.entity_id == ROOM
        assert "may have been applied" in err.data.message, err.data.message
        rec.wait("connected", count=2)  # the session goes on on a new connection
        client.publish(ROOM, {"n": 2})
        rec.wait("message", where=lambda e: e.data == {"n": 2})
        # The server applied the dropped publish once: it was not sent again.
        assert [m["data"] for m in server.bayeux_messages(ROOM)] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert proxy.relayed(b'"n":1}') == 1 and how in proxy.done
        assert len(publish_errors(rec)) == 1


def test_a_subscribe_dropped_after_the_server_read_it_is_sent_again_on_a_fresh_connection(
    fake: tuple[FakeBayeuxServer, KeepAliveProxy], hub: rs.Hub | None
) -> None:
    server, proxy = fake
    with running(proxy.url(server.http_url), hub) as (client, rec):
        proxy.plan(b'"/chat/other"', "drop")
        client.subscribe("/chat/other")
        rec.wait("subscribed", count=2)
        assert proxy.relayed(b'"/chat/other"') == 2 and "drop" in proxy.done  # sent again, once
        assert "disconnected" not in rec.names()
        assert [e for e in rec.named("error")] == []


def test_an_idle_connection_the_server_closed_is_not_reused(
    fake: tuple[FakeBayeuxServer, KeepAliveProxy], hub: rs.Hub | None
) -> None:
    server, proxy = fake
    with running(proxy.url(server.http_url), hub) as (client, rec):
        proxy.plan(b'"n":0}', "close-idle")  # its answer arrives, then the idle connection closes
        client.publish(ROOM, {"n": 0})
        rec.wait("message", where=lambda e: e.data == {"n": 0})
        with proxy.cond:
            assert proxy.cond.wait_for(lambda: "close-idle" in proxy.done, T(10))
        client.publish(ROOM, {"n": 1})  # must go on a fresh connection
        rec.wait("message", where=lambda e: e.data == {"n": 1})
        with proxy.cond:
            assert proxy.cond.wait_for(lambda: "close-idle-end" in proxy.done, T(10))
        assert proxy.late_bytes == 0, "a request was written to the connection the server had closed"
        assert "disconnected" not in rec.names() and rec.named("error") == []
        assert [m["data"] for m in server.bayeux_messages(ROOM)] == [{"n": 0}, {"n": 1}]


# -- real servers ---------------------------------------------------------------------------------

FAYE_OK, FAYE_WHY = faye_available()
COMETD_OK, COMETD_WHY = cometd_available()


@pytest.fixture(params=["faye", "cometd"])
def real_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if request.param == "faye":
        if not FAYE_OK:
            pytest.skip(f"faye not available: {FAYE_WHY}")
        server: Any = FayeServer(log_dir=tmp_path_factory.mktemp("faye-keepalive"), timeout=1.0)
    else:
        if not COMETD_OK:
            pytest.skip(f"cometd-nodejs-server not installed: {COMETD_WHY}")
        server = CometDNodeServer(log_dir=tmp_path_factory.mktemp("cometd-keepalive"), timeout_ms=1000)
    with server:
        yield server


def test_real_server_applies_a_publish_dropped_after_it_was_read_once(real_server: Any, hub: rs.Hub | None) -> None:
    proxy = KeepAliveProxy(("127.0.0.1", real_server.port))
    with (
        contextlib.closing(proxy),
        running(real_server.url, None) as (_, seen),  # the subscriber, straight to the server
        running(proxy.url(real_server.url), hub, subscribe=False) as (publisher, rec),
    ):

        def copies(n: int) -> int:
            return sum(1 for e in seen.named("message") if e.data == {"n": n})

        publisher.publish(ROOM, {"n": 0})
        eventually(lambda: copies(0), 10, "the first publish delivered")
        proxy.plan(b'"n":1}', "drop")
        publisher.publish(ROOM, {"n": 1})
        err = rec.wait("error", where=lambda e: e.data.kind == "publish")
        assert err.raw["data"] == {"n": 1}
        rec.wait("connected", count=2)
        publisher.publish(ROOM, {"n": 2})
        eventually(lambda: copies(2), 10, "the publish after the drop delivered")
        # The server applied it (the drop came after its answer) and only once.
        assert copies(1) == 1, [e.data for e in seen.named("message")]
        assert proxy.relayed(b'"n":1}') == 1


def test_a_tls_connection_the_server_keeps_open_is_reused(tls_files: tuple[str, str]) -> None:
    # The idle check must not take TLS 1.3 session tickets (records that make a socket readable
    # after the handshake) for a close: that would cost a TLS handshake per request.  (The hub's
    # connection: tests/test_hub_http11.py, the TLS test.)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_files)
    handshake = b'[{"id":"1","channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]'
    with FakeBayeuxServer(websocket=False, ssl_context=ctx) as server:
        h = _Http(server.http_url, rs.ConnectOptions(ca_bundle=tls_files[0]), T(10))
        try:
            for n in range(1, 4):
                assert h.post(handshake, {"Content-Type": "application/json"}, 0)[0] == 200
                assert h.requests == n  # (a new connection starts counting at 1 again)
        finally:
            h.abort()
