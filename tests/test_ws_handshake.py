"""The opening handshake against hostile servers (issue 10): redirects are never followed,
``connect_timeout`` bounds the whole handshake, a refused handshake's body is read only up to a
bound, the response head is bounded, https:// proxies are refused, and errors keep no library exception
(with response headers) in their context.

Each hostile-server test runs twice (``on_hub``): a standalone client opens with the blocking
handshake, a client on a hub with the non-blocking one on the hub's selector (``Handshake``)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

import realtime_sync as rs

from ._rawws import RawServer, accept_key, server_frame
from .conftest import FAST, Recorder, T, poll_until


def _key(request: bytes) -> bytes:
    for line in request.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            return line.split(b":", 1)[1].strip()
    raise AssertionError("no Sec-WebSocket-Key")


_HUBS: list[rs.Hub] = []


@pytest.fixture(params=[False, True], ids=["standalone", "hub"])
def on_hub(request):
    yield request.param
    while _HUBS:
        assert _HUBS.pop().close(T(10))


def _client(url: str, on_hub: bool = False, **kw):
    from ._echo import EchoClient

    kw.setdefault("reconnect", FAST)
    if on_hub:
        hub = rs.Hub(workers=1, handshake_workers=1, name="t-hostile")
        _HUBS.append(hub)
        kw["hub"] = hub
    return EchoClient(url, **kw)


def _first_error(client, timeout: float = 5.0):
    rec = Recorder(client)
    client.start()
    return rec.wait("error", timeout=timeout).data


def _error_against(handshake, on_hub):
    """The first error of a client whose server answers the upgrade with ``handshake``."""
    with RawServer(handshake=handshake) as server:
        client = _client(server.url, on_hub)
        try:
            return _first_error(client)
        finally:
            client.close(timeout=5)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_never_followed_and_credentials_stay_home(status, on_hub):
    with RawServer() as target:
        location = f"{target.url.replace('ws://', 'ws://user:pw@')}/next?access_token=LEAK"

        def redirect(sock: socket.socket, request: bytes) -> None:
            sock.sendall(f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())

        with RawServer(handshake=redirect) as server:
            client = _client(
                server.url, on_hub, headers={"Authorization": "Bearer SECRET-TOKEN"}, cookies={"sid": "COOKIE"}
            )
            try:
                err = _first_error(client)
            finally:
                client.close(timeout=5)
        assert err.kind == "connect" and f"HTTP {status}" in err.message
        assert f"redirect to ws://127.0.0.1:{target.port}" in err.message
        assert "LEAK" not in err.message and "user" not in err.message and "/next" not in err.message
        assert isinstance(err.exception, rs.ConnectError) and err.exception.status == status
        assert target.requests == [], "the redirect target must never see the handshake"
        assert b"SECRET-TOKEN" in server.requests[0]


def test_connect_timeout_bounds_a_trickling_handshake(on_hub):
    stop = threading.Event()

    def trickle(sock: socket.socket, request: bytes) -> None:
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
        while not stop.wait(0.05):  # a header byte every 50 ms, forever: each recv() succeeds
            sock.sendall(b"X")

    with RawServer(handshake=trickle) as server:
        client = _client(server.url, on_hub, connect_timeout=0.5)
        try:
            t0 = time.monotonic()
            err = _first_error(client)
            elapsed = time.monotonic() - t0
        finally:
            stop.set()
            client.close(timeout=5)
    assert err.kind == "connect" and "timed out" in err.message
    assert elapsed < 0.5 + T(5), elapsed  # without the bound the trickle keeps it connecting forever


def test_refused_handshake_body_is_read_only_up_to_a_bound(on_hub):
    sent = []

    def refuse(sock: socket.socket, request: bytes) -> None:
        sock.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 1000000000\r\nSet-Cookie: s=SECRET\r\n\r\n")
        try:
            for _ in range(200):  # 200 MiB on offer
                sock.sendall(b"x" * (1 << 20))
                sent.append(1)
        except OSError:
            pass

    with RawServer(handshake=refuse) as server:
        client = _client(server.url, on_hub)
        try:
            t0 = time.monotonic()
            err = _first_error(client)
            elapsed = time.monotonic() - t0
        finally:
            client.close(timeout=5)
    assert err.kind == "connect" and "HTTP 500" in err.message and err.exception.status == 500
    assert elapsed < T(10) and len(sent) < 50, (elapsed, len(sent))  # the bound is on what is read
    assert err.exception.__context__ is None and err.exception.__cause__ is None


def test_a_404_says_to_check_the_path_and_the_origin(on_hub):
    def not_found(sock: socket.socket, request: bytes) -> None:
        sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 15\r\n\r\nPage not found\n")

    err = _error_against(not_found, on_hub)
    assert err.kind == "connect" and "HTTP 404" in err.message and err.exception.status == 404
    assert "check the URL's path" in err.message and "origin=" in err.message


def test_response_head_is_bounded(on_hub):
    def endless_headers(sock: socket.socket, request: bytes) -> None:
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
        try:
            for _ in range(1000):
                sock.sendall(b"X-Filler: " + b"a" * 1000 + b"\r\n")
        except OSError:
            pass

    err = _error_against(endless_headers, on_hub)
    assert err.kind == "connect" and "response head larger than 65536 bytes" in err.message


@pytest.mark.parametrize(
    "status, exc", [(401, rs.AuthenticationError), (403, rs.AuthenticationError), (404, rs.ConnectError)]
)
def test_refusals_keep_no_library_exception_in_their_context(status, exc, on_hub):
    def refuse(sock: socket.socket, request: bytes) -> None:
        sock.sendall(f"HTTP/1.1 {status} No\r\nWWW-Authenticate: Bearer realm=SECRET-REALM\r\n\r\n".encode())

    err = _error_against(refuse, on_hub)
    assert type(err.exception) is exc and err.exception.status == status
    assert err.exception.__context__ is None and err.exception.__cause__ is None
    assert "SECRET-REALM" not in err.message


@pytest.mark.parametrize(
    "headers, problem",
    [
        ({"Sec-WebSocket-Accept": "d3Jvbmc="}, "Sec-WebSocket-Accept"),
        ({"Upgrade": "h2c"}, "Upgrade"),
        ({"Sec-WebSocket-Extensions": "permessage-deflate"}, "extension"),
        ({"Sec-WebSocket-Protocol": "not-offered"}, "subprotocol"),
    ],
)
def test_invalid_101_answers_fail_the_handshake(headers, problem, on_hub):
    def answer(sock: socket.socket, request: bytes) -> None:
        base = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept_key(_key(request))}
        base.update(headers)
        head = "".join(f"{k}: {v}\r\n" for k, v in base.items())
        sock.sendall(f"HTTP/1.1 101 Switching Protocols\r\n{head}\r\n".encode())

    err = _error_against(answer, on_hub)
    assert err.kind == "connect" and problem in err.message and "RFC 6455 4.1" in err.message


def test_frames_sent_with_the_101_answer_are_delivered(on_hub):
    def answer(sock: socket.socket, request: bytes) -> None:
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
            b"Sec-WebSocket-Accept: "
            + accept_key(_key(request)).encode()
            + b"\r\n\r\n"
            + server_frame(1, b'{"event":"early","id":1}')
        )
        threading.Event().wait(T(5))

    with RawServer(handshake=answer) as server:
        client = _client(server.url, on_hub)
        try:
            rec = Recorder(client)
            client.start()
            assert rec.wait("early").entity_id == 1
        finally:
            client.close(timeout=5)


def test_https_proxy_is_refused_at_construction():
    with pytest.raises(rs.ConfigurationError, match="plain HTTP"):
        rs.ConnectOptions(proxy="https://user:pw@proxy.example:3128")
    with pytest.raises(rs.ConfigurationError, match="not supported"):
        rs.ConnectOptions(proxy="ftp://proxy.example:21")
    assert rs.ConnectOptions(proxy="proxy.example:3128").proxy == "proxy.example:3128"
    assert rs.ConnectOptions(proxy="socks5h://proxy.example:1080").proxy


def test_https_proxy_from_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("https_proxy", "https://user:pw@127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    client = _client("wss://realtime.example.invalid/ws")
    try:
        err = _first_error(client)
    finally:
        client.close(timeout=5)
    assert "https:// proxy" in err.message and "pw" not in err.message


def test_set_cookie_of_the_upgrade_response_is_kept():
    from realtime_sync._wsconn import WebSocketConnection
    from realtime_sync.protocols.base import ConnectRequest

    def answer(sock: socket.socket, request: bytes) -> None:
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Set-Cookie: a=1; Path=/\r\nSet-Cookie: b=2, c\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(_key(request)).encode() + b"\r\n\r\n"
        )
        threading.Event().wait(T(2))

    with RawServer(handshake=answer) as server:
        conn = WebSocketConnection()
        conn.open(ConnectRequest(server.url), rs.ConnectOptions())
        try:
            assert conn.set_cookies == ["a=1; Path=/", "b=2, c"]
        finally:
            conn.close()


def test_an_abort_that_came_before_the_socket_existed_is_not_missed():
    # close() aborts an opening from another thread; if that happens while the socket is still
    # being made (DNS, TCP, a proxy's CONNECT, TLS), the handshake must fail once the socket is
    # there, not wait out connect_timeout on a silent server.
    from realtime_sync._wsconn import WebSocketConnection
    from realtime_sync.protocols.base import ConnectRequest

    listener = socket.create_server(("127.0.0.1", 0), backlog=8)  # never accept()ed: never answers
    url = f"ws://127.0.0.1:{listener.getsockname()[1]}/ws"
    try:
        for make in ("blocking", "non-blocking"):
            conn = WebSocketConnection()
            conn.abort()
            with pytest.raises(rs.ConnectError, match="aborted"):
                if make == "blocking":
                    conn.open(ConnectRequest(url), rs.ConnectOptions(connect_timeout=T(60)))
                else:
                    hs = conn.begin_open(ConnectRequest(url), rs.ConnectOptions(connect_timeout=T(60)))
                    assert hs is not None
                    try:
                        hs.resolve()
                        hs.start()
                    finally:
                        hs.close()
            assert conn.fileno() == -1  # no socket left open
    finally:
        listener.close()


def test_close_ends_handshakes_waiting_on_a_silent_server_at_once(on_hub):
    """A server that accepts TCP and never answers: close() ends the pending handshakes at once,
    not after connect_timeout.  On a hub, 20 of them are in flight on the selector, with no
    handshake thread."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)  # never accept()ed: the kernel completes TCP
    url = f"ws://127.0.0.1:{listener.getsockname()[1]}/ws"
    try:
        first = _client(url, on_hub, connect_timeout=60)
        clients = [first]
        if on_hub:
            hub = first._hub
            clients += [_client(url, connect_timeout=60, hub=hub) for _ in range(19)]
        for c in clients:
            c.start()
        if on_hub:
            poll_until(lambda: hub.stats.handshakes_in_flight == 20, 10, "20 handshakes in flight")
            assert hub.stats.threads == 2  # the loop and one worker: ws:// handshakes need no thread
        t0 = time.monotonic()
        for c in clients:
            c.close(timeout=T(10))
        assert time.monotonic() - t0 < T(5)
        assert all(c.closed for c in clients)
    finally:
        listener.close()
