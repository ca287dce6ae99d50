"""The hub's non-blocking HTTP/1.1 connection (h11), driven by a selector as the hub's loop
drives it, against the Bayeux fake's long-polling endpoint (plain and TLS) and raw sockets."""

from __future__ import annotations

import json
import selectors
import socket
import ssl
import threading
import time
from typing import Any, Callable

import pytest

pytest.importorskip("h11")

from realtime_sync import ConnectOptions
from realtime_sync._cookies import CookieJar
from realtime_sync._http11 import HttpConnection, HttpFailure, HttpResponse, HttpResult
from realtime_sync.testing import FakeBayeuxServer

from .conftest import T

HANDSHAKE = b'[{"id":"1","channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]'


def drive(conns: list[HttpConnection], results: dict[int, HttpResult], timeout: float = 5.0) -> None:
    """One loop over a selector until every connection has a result (as the hub's loop does):
    re-register each socket after every call, since the interest and even the socket change (a
    new socket may reuse the old one's fd number: ``sockets_opened`` tells them apart)."""
    sel = selectors.DefaultSelector()
    registered: dict[int, tuple[int, int, int]] = {}  # k -> (fd, events, socket serial)
    deadline = time.monotonic() + T(timeout)

    def sync(k: int) -> None:
        c = conns[k]
        want = (c.fileno(), c.interest, c.sockets_opened) if k not in results and c.interest else None
        if registered.get(k) == want:
            return
        if k in registered:
            sel.unregister(registered.pop(k)[0])
        if want is not None:
            sel.register(want[0], want[1], k)
            registered[k] = want

    try:
        while len(results) < len(conns):
            assert time.monotonic() < deadline, f"no result in time: {conns}"
            for k in range(len(conns)):
                sync(k)
            wake = min([c.deadline for c in conns if c.deadline] + [deadline])
            ready = sel.select(max(0.0, min(0.2, wake - time.monotonic())))
            now = time.monotonic()
            for key, events in ready:
                r = conns[key.data].on_ready(events, now)
                if r is not None:
                    results[key.data] = r
                sync(key.data)
            for k, c in enumerate(conns):
                if k not in results:
                    r = c.check(now)
                    if r is not None:
                        results[k] = r
                        sync(k)
    finally:
        sel.close()


def post(conn: HttpConnection, body: bytes, timeout: float = 5.0, *, idempotent: bool = False) -> HttpResult:
    results: dict[int, HttpResult] = {}
    early = conn.request(body, time.monotonic(), idempotent=idempotent)
    if early is not None:
        return early
    drive([conn], results, timeout)
    return results[0]


@pytest.fixture
def bayeux() -> Any:
    with FakeBayeuxServer(websocket=False, timeout=1.0) as server:
        yield server


def test_keep_alive_cookies_and_bayeux_round_trip(bayeux: FakeBayeuxServer) -> None:
    jar = CookieJar()
    conn = HttpConnection(bayeux.http_url, ConnectOptions(), jar, headers={"Content-Type": "application/json"})
    r = post(conn, HANDSHAKE)
    assert isinstance(r, HttpResponse) and r.status == 200, r
    [hs] = json.loads(r.body)
    assert hs["successful"] and hs["clientId"]
    assert jar.get("BAYEUX_BROWSER") == "fake-browser-1"  # Set-Cookie kept ...
    sub = [{"id": "2", "channel": "/meta/subscribe", "subscription": "/a", "clientId": hs["clientId"]}]
    r2 = post(conn, json.dumps(sub).encode())
    assert isinstance(r2, HttpResponse) and json.loads(r2.body)[0]["successful"]
    assert conn.sockets_opened == 1 and conn.completed == 2  # ... and one socket for both
    assert "fake-browser-1" in (bayeux.http_requests[-1].headers.get("Cookie") or "")  # ... sent back
    conn.close()


def test_a_held_connect_does_not_block_a_control_request_on_the_same_loop(bayeux: FakeBayeuxServer) -> None:
    setup = HttpConnection(bayeux.http_url, ConnectOptions())
    [hs] = json.loads(post(setup, HANDSHAKE).body)  # type: ignore[union-attr]
    cid = hs["clientId"]
    held, control = HttpConnection(bayeux.http_url, ConnectOptions()), HttpConnection(bayeux.http_url, ConnectOptions())
    connect = [{"id": "3", "channel": "/meta/connect", "connectionType": "long-polling", "clientId": cid}]
    t0 = time.monotonic()
    assert held.request(json.dumps(connect).encode(), t0) is None
    sub = [{"id": "4", "channel": "/meta/subscribe", "subscription": "/b", "clientId": cid}]
    assert control.request(json.dumps(sub).encode(), t0) is None
    results: dict[int, HttpResult] = {}
    drive([held, control], results)
    # Both answered; the held connect only after the server's timeout (1 s), the control at once.
    assert json.loads(results[1].body)[0]["successful"]  # type: ignore[union-attr]
    assert json.loads(results[0].body)[-1]["channel"] == "/meta/connect"  # type: ignore[union-attr]
    for c in (setup, held, control):
        c.close()


def test_tls_non_blocking_handshake_and_verification(tls_files: tuple[str, str]) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_files)
    with FakeBayeuxServer(websocket=False, ssl_context=ctx) as server:
        assert server.http_url.startswith("https://")
        good = HttpConnection(server.http_url, ConnectOptions(ca_bundle=tls_files[0]))
        r = post(good, HANDSHAKE)
        assert isinstance(r, HttpResponse) and json.loads(r.body)[0]["successful"]
        r = post(good, HANDSHAKE)
        assert isinstance(r, HttpResponse) and good.sockets_opened == 1
        good.close()
        untrusted = HttpConnection(server.http_url, ConnectOptions())
        r = post(untrusted, HANDSHAKE)
        assert isinstance(r, HttpFailure) and r.kind == "connect" and "certificate" in r.message.lower(), r


class RawServer:
    """A one-thread raw HTTP peer: ``answer(request_bytes) -> bytes | None`` per request, None
    closes the socket without an answer."""

    def __init__(self, answer: Callable[[bytes, int], bytes | None], close_after: tuple[int, ...] = ()) -> None:
        self.answer = answer
        self.close_after = close_after  # request numbers after whose answer the socket is closed
        self.closed = threading.Event()  # set when a socket was closed after an answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._run, name="raw-http-fake", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            with sock:
                buf = b""
                while True:
                    while b"\r\n\r\n" not in buf:
                        chunk = sock.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                    if b"\r\n\r\n" not in buf:
                        break
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    length = int(
                        next(
                            (
                                ln.split(b":")[1]
                                for ln in head.split(b"\r\n")
                                if ln.lower().startswith(b"content-length")
                            ),
                            b"0",
                        )
                    )
                    while len(buf) < length:
                        buf += sock.recv(65536)
                    self.requests.append(head)
                    buf = buf[length:]
                    out = self.answer(head, len(self.requests))
                    if out is None:
                        break
                    sock.sendall(out)
                    if len(self.requests) in self.close_after:
                        sock.close()  # a clean close (FIN) of the now idle kept-alive socket
                        self.closed.set()
                        break

    def close(self) -> None:
        self.listener.close()


def _ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body


def test_body_bound_redirect_not_followed_and_chunked() -> None:
    def answer(head: bytes, n: int) -> bytes:
        if n == 1:
            return _ok(b"x" * 5000)
        if n == 2:
            return b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.invalid/\r\nContent-Length: 0\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n"

    srv = RawServer(answer)
    try:
        conn = HttpConnection(
            f"http://127.0.0.1:{srv.port}/x",
            ConnectOptions(),
            max_body=1000,
            headers={"Authorization": "Basic c2VjcmV0"},
        )
        r = post(conn, b"[]")
        assert isinstance(r, HttpFailure) and r.kind == "too_big"
        r = post(conn, b"[]")
        assert isinstance(r, HttpResponse) and r.status == 302 and r.header("location")  # returned, not followed
        r = post(conn, b"[]")
        assert isinstance(r, HttpResponse) and r.body == b"[1,2]"
        assert len(srv.requests) == 3  # nothing went to the Location
        conn.close()
    finally:
        srv.close()


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_request_dropped_after_it_was_read_is_sent_again_only_when_idempotent(idempotent: bool) -> None:
    # The server reads the 2nd request on the kept-alive socket, then closes it with no answer:
    # it may have applied it (RFC 9110 section 9.2.2), so only an idempotent request goes again.
    def answer(head: bytes, n: int) -> bytes | None:
        return _ok(b"[]") if n != 2 else None

    srv = RawServer(answer)
    try:
        conn = HttpConnection(f"http://127.0.0.1:{srv.port}/x", ConnectOptions())
        assert isinstance(post(conn, b"[1]"), HttpResponse)
        r = post(conn, b"[2]", idempotent=idempotent)
        if idempotent:
            assert isinstance(r, HttpResponse) and r.status == 200, r
            assert conn.sockets_opened == 2 and len(srv.requests) == 3
        else:
            assert isinstance(r, HttpFailure) and r.kind == "io" and "not re-sent" in r.message, r
            assert len(srv.requests) == 2  # sent once, never again
            assert isinstance(post(conn, b"[3]"), HttpResponse)  # the next one: a fresh socket
        conn.close()
    finally:
        srv.close()


def test_a_kept_alive_socket_the_server_closed_is_not_reused() -> None:
    # The server closes the idle socket cleanly after its 1st answer; the next request is made
    # before the loop looked at that socket again: request() sees the close itself (urllib3's
    # is_connection_dropped) and opens a fresh socket, so a request that must not be sent twice
    # is never written to a closed socket.
    srv = RawServer(lambda head, n: _ok(b"[]"), close_after=(1,))
    try:
        conn = HttpConnection(f"http://127.0.0.1:{srv.port}/x", ConnectOptions())
        assert isinstance(post(conn, b"[1]"), HttpResponse)
        assert srv.closed.wait(T(5))
        r = post(conn, b"[2]")  # not idempotent
        assert isinstance(r, HttpResponse) and r.status == 200, r
        assert conn.sockets_opened == 2 and len(srv.requests) == 2
        conn.close()
    finally:
        srv.close()


def test_connect_refused_and_read_timeout_are_typed_failures() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = post(HttpConnection(f"http://127.0.0.1:{port}/", ConnectOptions()), b"[]")
    assert isinstance(r, HttpFailure) and r.kind == "connect"

    srv = RawServer(lambda head, n: b"")  # reads the request, never answers
    try:
        conn = HttpConnection(f"http://127.0.0.1:{srv.port}/", ConnectOptions(), read_timeout=0.3)
        r = post(conn, b"[]")
        assert isinstance(r, HttpFailure) and r.kind == "timeout"
        conn.close()
    finally:
        srv.close()


def test_secrets_in_the_url_never_reach_a_message() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    conn = HttpConnection(f"http://127.0.0.1:{port}/n?access_token=hunter2secret", ConnectOptions())
    r = post(conn, b"[]")
    assert isinstance(r, HttpFailure) and "hunter2secret" not in r.message and "hunter2secret" not in repr(conn)


# -- the response reader (realtime_sync._h1), against h11 as the reference ------------------------

h11 = pytest.importorskip("h11")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from realtime_sync._h1 import BodyTooLarge, HttpProtocolError, ResponseReader  # noqa: E402


def ours(parts: list[bytes], eof: bool, max_body: int = 0) -> tuple[Any, ...]:
    r = ResponseReader(max_body)
    try:
        for part in parts:
            if r.feed(part):
                return ("ok", r.status, r.reason, r.headers, r.body, r.keep_alive)
        if eof and r.eof():
            return ("ok", r.status, r.reason, r.headers, r.body, r.keep_alive)
    except (HttpProtocolError, BodyTooLarge) as exc:
        return ("error", type(exc).__name__)
    return ("incomplete",)


def reference(parts: list[bytes], eof: bool) -> tuple[Any, ...]:
    """The same bytes through h11, as a client that sent one POST (a response that only the
    close completed leaves a closed connection: not kept alive)."""
    found = _h11_read(parts, False)
    if found[0] != "incomplete" or not eof:
        return found
    found = _h11_read(parts, True)
    return (*found[:5], False) if found[0] == "ok" else found


def _h11_read(parts: list[bytes], eof: bool) -> tuple[Any, ...]:
    c = h11.Connection(h11.CLIENT)
    c.send(h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "0")]))
    c.send(h11.EndOfMessage())
    data = b"".join(parts)
    c.receive_data(data)
    if eof:
        c.receive_data(b"")
    head: Any = None
    body = b""
    try:
        while True:
            event = c.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return ("incomplete",) if not eof else ("error", "HttpProtocolError")
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers)
                keep = c.their_state is h11.DONE and c.our_state is h11.DONE and not c.trailing_data[0]
                return ("ok", head.status_code, head.reason.decode("latin-1"), headers, body, keep)
    except h11.RemoteProtocolError:
        return ("error", "HttpProtocolError")


_names = st.sampled_from(["Content-Type", "X-Trace", "Set-Cookie", "Cache-Control", "server", "Via", "x-a"])
_values = st.sampled_from(["a", "text/html; charset=UTF-8", "x\ty", "\xe9t\xe9", "!#$%", "k=v; Path=/; HttpOnly"])


@st.composite
def responses(draw: Any) -> tuple[list[bytes], bool]:
    """A well-formed response (with its framing chosen at random), cut at random places, and
    whether the server closes after it."""
    status = draw(st.sampled_from([200, 200, 201, 204, 304, 400, 401, 403, 404, 500, 502]))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    reason = draw(st.sampled_from([b" OK", b" Some Reason", b" ", b""]))
    interim = draw(
        st.sampled_from([b"", b"", b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early\r\nLink: </a>\r\n\r\n"])
    )
    headers = [(draw(_names), draw(_values)) for _ in range(draw(st.integers(0, 4)))]
    body = draw(st.binary(max_size=300)) if status not in (204, 304) else b""
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    if draw(st.booleans()):
        headers.append(("Connection", draw(st.sampled_from(["close", "keep-alive", "Close", "upgrade, close"]))))
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
        payload = body
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", draw(st.sampled_from(["chunked", "Chunked"]))))
        payload = b""
        rest = body
        while rest:
            k = draw(st.integers(1, max(1, len(rest))))
            ext = draw(st.sampled_from([b"", b";a=b", b" "]))
            payload += b"%x%s\r\n%s\r\n" % (k, ext, rest[:k])
            rest = rest[k:]
        payload += b"0\r\n" + draw(st.sampled_from([b"", b"X-Checksum: 1\r\n"])) + b"\r\n"
    else:
        payload = body
    head = b"HTTP/" + version + b" %d" % status + reason + b"\r\n"
    head += b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers) + b"\r\n"
    data = interim + head + (payload if status not in (204, 304) else b"")
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=False) if b > a]
    return parts, framing == "close" or draw(st.booleans())


@settings(max_examples=300, deadline=None)
@given(responses())
def test_the_reader_reads_what_h11_reads(case: tuple[list[bytes], bool]) -> None:
    parts, eof = case
    got = ours(parts, eof)
    if got[0] == "ok":  # h11 hands the transfer coding back lower-cased; the reader as sent
        got = (*got[:3], tuple((k, v.lower() if k == "transfer-encoding" else v) for k, v in got[3]), *got[4:])
    assert got == reference(parts, eof)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",  # conflicting lengths
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",  # only chunked
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # not a hex size
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n",  # no CRLF after data
        b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 0\r\n\r\n",  # space in a name
        b"HTTP/1.1 200 OK\r\nX : y\r\nContent-Length: 0\r\n\r\n",  # space before the colon
        b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n",  # NUL in a value
        b"HTTP/1.1 200 OK\r\n continued\r\nContent-Length: 0\r\n\r\n",  # fold right after status
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",  # nothing here asked to switch
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 70000 + b"\r\n\r\n",  # head over the bound
    ],
)
def test_malformed_responses_are_errors(raw: bytes) -> None:
    assert ours([raw], eof=True)[0] == "error"
    assert ours([raw[i : i + 1] for i in range(len(raw))], eof=True)[0] == "error"  # byte by byte too


def test_reader_bounds_folds_and_keep_alive_rules() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert ours([ok], False) == ("ok", 200, "OK", (("content-length", "5"),), b"hello", True)
    assert ours([ok], False, max_body=4) == ("error", "BodyTooLarge")
    assert ours([ok + b"HTTP/1.1 200"], False)[-1] is False  # bytes beyond the response: not reused
    assert ours([ok[:-1]], True) == ("error", "HttpProtocolError")  # cut short by the close
    folded = b"HTTP/1.1 200 OK\r\nX-Long: a\r\n \t b\r\nContent-Length: 0\r\n\r\n"
    assert ours([folded], False)[3] == (("x-long", "a b"), ("content-length", "0"))
    assert ours([b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n"], False)[4] == b""
    assert ours([b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"], False)[-1] is False
    assert ours([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"], False)[-1] is False


def test_a_header_that_would_split_the_request_is_refused_before_anything_is_sent() -> None:
    from realtime_sync.exceptions import ConnectError

    with pytest.raises(ConnectError, match="invalid character") as info:
        HttpConnection("http://127.0.0.1:9/x", ConnectOptions(), headers={"Authorization": "Bearer t0k\r\nX: y"})
    assert "t0k" not in str(info.value)
