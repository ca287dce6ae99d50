"""One non-blocking HTTP/1.1 keep-alive connection, driven by selector readiness.

Long-polling on the hub must not cost threads: a Bayeux session holds a ``/meta/connect``
for up to ``advice.timeout`` while control requests go out beside it, and the standalone
transport spends two blocking threads per session on that.  Here each request is a small state
machine that a loop advances when its socket is ready, so thousands of sessions share the
hub's one I/O thread (and its one selector).

The HTTP itself (the request's bytes; the response's framing: Content-Length and chunked,
keep-alive rules, header limits) is :mod:`realtime_sync._h1`, a strict sans-I/O codec of a few
hundred lines.  h11 did it before; it was most of an idle session's CPU (measured, see
``_h1``'s docstring and the README's hub section), and the hub needs one request shape only.
h11 stays the reference the codec is tested against.

Theory of operation
-------------------
::

    request(body, now) --> IDLE: connect?  CONNECTING --writable--> [TUNNEL] --> TLS --want-read/write--> SENDING
                           (kept-alive socket: straight to SENDING)   --writable--> RECEIVING
    RECEIVING --readable--> ResponseReader.feed(bytes) ... complete --> an HttpResponse
                                        (kept alive, back to IDLE; or closed when the server says so)
    IDLE (a kept-alive socket) --readable--> the server closed it (or sent what nobody asked for):
                                        the socket is dropped; the next request opens a fresh one
    any socket/TLS/HTTP failure, a body over ``max_body``, the ``deadline`` passed --> an HttpFailure

The owner asks :attr:`interest` (``selectors.EVENT_READ``/``EVENT_WRITE``; ``EVENT_READ`` on an
idle kept-alive socket, so that its close is seen; 0 without a socket) and
:meth:`fileno` after every call, (re)registers the socket with its selector, calls
:meth:`on_ready` when the socket is ready and :meth:`check` when :attr:`deadline` passes.  Every
call returns ``None`` (nothing finished yet) or the request's one result.

* TLS: the socket is wrapped with ``do_handshake_on_connect=False``; ``SSLWantReadError`` and
  ``SSLWantWriteError`` from the handshake, a read or a write set the interest, so TLS
  renegotiation needs no special case.  Decrypted bytes a read left inside the TLS object
  (``SSLSocket.pending()``) are drained at once: the selector cannot see them.
* Cookies: the shared :class:`~realtime_sync._cookies.CookieJar` is sent on every
  request and updated from every response's ``Set-Cookie``.
* Redirects are never followed: a 3xx is a result like any status (a redirect would carry the
  credentials to wherever the server points).
* Kept-alive sockets: a close seen while idle drops the socket, and :meth:`request` looks once
  more before reusing one (urllib3's ``is_connection_dropped``), so a request goes on a fresh
  socket rather than one the server closed.  A request that still fails on a kept-alive socket
  (EOF or reset before any response byte) is sent once more on a fresh one only when it was not
  sent whole (the server cannot have applied it) or the caller says it is ``idempotent``; any
  other is an ``io`` failure that says it was not re-sent (RFC 9110 section 9.2.2: the server
  may have applied it).
* Host names are resolved with a blocking ``getaddrinfo`` (cached per connection): an IP literal
  or ``localhost`` costs nothing; a slow resolver delays the loop once per new socket.
* Proxies (``proxy=``, or ``http_proxy``/``https_proxy`` with ``trust_env``; loopback never
  uses one), as the standalone transport: an ``http://`` URL goes to the proxy in absolute form
  (``POST http://host/path``, with ``Proxy-Authorization`` when the proxy URL has credentials);
  an ``https://`` URL is tunnelled: ``CONNECT host:port`` (state TUNNEL: the request, then the
  proxy's answer head, bounded), then TLS with the server through the tunnel.  A SOCKS proxy
  (``socks5h://``, ``socks5://``, ``socks4a://``, ``socks4://``) tunnels any URL: state SOCKS
  drives the sans-I/O handshake of :mod:`realtime_sync._socks` (write what a step yields, read
  exactly the bytes it wants, as they arrive).  The blocking first connect
  (:meth:`HttpConnection.connect_blocking`) is the websocket transport's
  :func:`~realtime_sync._wsconn.dial`, which :meth:`HttpConnection.abort` interrupts.  Every
  proxy failure names the proxy (credentials hidden) and what to check, and a proxy that
  accepted the connection and never answers fails at ``connect_timeout``, saying so: in the
  handshake, and for a plain-HTTP proxy, the first answer on a fresh connection of a request
  with a read timeout (the control requests: the server answers them at once).
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import ssl
import time
import urllib.parse
from typing import Any, Union

import attrs

from ._cookies import CookieJar
from ._h1 import BodyTooLarge, HttpProtocolError, ResponseReader, build_request_head, check_header
from ._redact import redact
from ._socks import SocksRefused, handshake
from ._wsconn import (
    _authority,
    _Hop,
    _Refused,
    dial,
    hop_failed,
    proxy_credentials_refused,
    proxy_label,
    silent_proxy,
    socks_refused,
    socks_silence,
    tunnel_hint,
)
from .config import ConnectOptions
from .exceptions import AuthenticationError, ConnectError
from .transport_longpoll import _proxy_for, _ssl_context, proxy_authorization, proxy_hop

__all__ = ["HttpConnection", "HttpFailure", "HttpResponse", "HttpResult"]

log = logging.getLogger("realtime_sync.hub.http")

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_RECV_SIZE = 65536
_MAX_HEADERS = 64 * 1024

IDLE, CONNECTING, TUNNEL, SOCKS, TLS, SENDING, RECEIVING, CLOSED = (
    "idle",
    "connecting",
    "tunnel",
    "socks",
    "tls",
    "sending",
    "receiving",
    "closed",
)


@attrs.frozen
class HttpResponse:
    """A complete response: status, reason, headers (lower-case names) and body."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None


@attrs.frozen
class HttpFailure:
    """A request that got no complete response: ``kind`` is ``"connect"`` (no connection or no
    TLS), ``"auth"`` (a proxy refused our proxy credentials: an HTTP proxy's 407 to ``CONNECT``,
    a SOCKS5 proxy's refusal; a credential refusal, not to be retried every few seconds), ``"timeout"``, ``"too_big"`` (body over ``max_body``), ``"protocol"`` (not a valid HTTP/1.1
    response, or a header that cannot be sent) or ``"io"`` (the connection broke mid-request).  ``message`` is redacted."""

    kind: str
    message: str


HttpResult = Union[HttpResponse, HttpFailure]


class HttpConnection:
    """One keep-alive HTTP/1.1 connection to one origin, one request at a time (see the module
    docstring).

    Args:
        url: ``http://`` or ``https://`` URL; every request is a ``POST`` to its path and query.
        options: TLS (``verify``, ``ca_bundle``, ``ssl_context``), ``connect_timeout``, proxy rules.
        cookies: the jar shared with the client's other connections.
        max_body: the largest response body accepted (0: no limit).
        headers: sent with every request (``Authorization``, ``Content-Type``...).

    Example (a loop of one)::

        conn = HttpConnection("http://127.0.0.1:8080/cometd", ConnectOptions(), CookieJar())
        sel = selectors.DefaultSelector()
        result = conn.request(b'[{"channel":"/meta/handshake",...}]', now=time.monotonic())
        while result is None:
            sel.register(conn.fileno(), conn.interest)
            events = sel.select(conn.deadline - time.monotonic())
            sel.unregister(conn.fileno())
            result = conn.on_ready(events[0][1], time.monotonic()) if events else conn.check(time.monotonic())
        print(result.status, result.body)
    """

    # A hub holds two per long-polling session: no per-instance __dict__.
    __slots__ = (
        "_aborted",
        "_absolute",
        "_addr",
        "_body",
        "_bounded",
        "_dialing",
        "_extra",
        "_family",
        "_fresh",
        "_got_bytes",
        "_head",
        "_hop",
        "_idempotent",
        "_out",
        "_prefix",
        "_reader",
        "_reused",
        "_sock",
        "_steps",
        "_steps_want",
        "_tunnel",
        "_want",
        "completed",
        "cookies",
        "deadline",
        "headers",
        "host",
        "host_header",
        "https",
        "max_body",
        "options",
        "peer",
        "port",
        "read_timeout",
        "sockets_opened",
        "state",
        "target",
        "url",
    )

    def __init__(
        self,
        url: str,
        options: ConnectOptions,
        cookies: CookieJar | None = None,
        *,
        max_body: int = 16 * 1024 * 1024,
        headers: dict[str, str] | None = None,
        read_timeout: float | None = 60.0,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectError(f"not an http(s) URL: {redact(url)}")
        proxy = _proxy_for(parts, options)
        self.url = redact(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        hop = self._hop = None if proxy is None else proxy_hop(parts, proxy, options)
        #: Where the socket goes: the server, or the proxy.
        self.peer: tuple[str, int] = (self.host, self.port) if hop is None else (hop.host, hop.port)
        #: A plain-HTTP proxy taking the requests in absolute form (no tunnel).
        self._absolute = hop is not None and hop.scheme == "http" and not self.https
        self._tunnel = b""  # the CONNECT request, for https:// through a proxy
        default_port = self.port == (443 if self.https else 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        if ":" in self.host and not default_port:
            self.host_header = f"[{self.host}]:{self.port}"
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.options = options
        self.cookies = cookies if cookies is not None else CookieJar()
        self.max_body = max_body
        self.headers = dict(headers or {})
        if proxy is not None and hop is not None and hop.scheme == "http":
            auth = proxy_authorization(proxy)
            if self.https:
                authority = _authority(self.host, self.port)
                lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
                lines += [f"{k}: {v}" for k, v in auth.items()]
                self._tunnel = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            else:  # a plain-HTTP proxy takes the absolute URI in the request line
                self.target = urllib.parse.urlunsplit(parts)
                self.headers.update(auth)
        self._steps: Any = None  # the SOCKS handshake's steps (state SOCKS)
        self._steps_want = 0  # bytes the current SOCKS step reads
        self._dialing: socket.socket | None = None  # connect_blocking()'s socket, for abort()
        self._aborted = False
        self._fresh = False  # no request completed on the socket yet
        self._bounded = False  # the request's deadline is connect_timeout's (see _ready_to_send)
        self.read_timeout = read_timeout
        self.state = IDLE
        #: Absolute monotonic time when :meth:`check` fails the request (None: no request).
        self.deadline: float | None = None
        #: Requests completed over this object's lifetime, and sockets opened for them.
        self.completed = 0
        self.sockets_opened = 0
        self._sock: socket.socket | None = None
        self._reader: ResponseReader | None = None
        self._addr: tuple[object, ...] | None = None
        self._family = socket.AF_INET
        self._out = b""
        self._want = 0
        self._body = b""
        self._extra: dict[str, str] = {}
        self._reused = False
        self._idempotent = False
        self._got_bytes = False
        self._head = b""
        # The request head up to Content-Length, built and checked once: every request of the
        # connection is the same POST with the same headers (the cookies are added per request).
        try:
            self._prefix = build_request_head("POST", self.target, [("Host", self.host_header), *self.headers.items()])
        except ValueError as exc:
            raise ConnectError(f"cannot send a request to {self.url}: {exc}") from None

    # -- the owner's side ------------------------------------------------------------------

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    @property
    def interest(self) -> int:
        """Selector events wanted now (0: nothing to wait for on the socket).  An idle kept-alive
        socket is watched for reading: the server closing it is seen (and the socket dropped)
        before the next request would find out."""
        state = self.state
        if state == IDLE:
            return _READ if self._sock is not None else 0
        return self._want if state != CLOSED else 0

    @property
    def busy(self) -> bool:
        return self.state not in (IDLE, CLOSED)

    def request(
        self, body: bytes, now: float, headers: dict[str, str] | None = None, *, idempotent: bool = False
    ) -> HttpResult | None:
        """Start a ``POST`` of ``body``; returns a result at once only when it failed at once.

        ``idempotent``: the request may be applied twice, so it is sent again on a fresh
        connection when a kept-alive one fails after sending it, before any byte of the answer
        (a ``POST`` is not, by default: RFC 9110 section 9.2.2)."""
        if self.busy:
            raise RuntimeError("a request is already in progress on this connection")
        if self._sock is not None and self.state == IDLE:
            # urllib3's is_connection_dropped: a close that arrived since the loop last looked
            # is seen now, and a fresh connection carries the request.
            self._idle_ready()
        self._body = body
        self._extra = headers or {}
        self._idempotent = idempotent
        self._got_bytes = False
        self._reused = self._sock is not None
        return self._begin(now)

    def on_ready(self, events: int, now: float) -> HttpResult | None:
        """The socket is ready (``events`` from the selector): advance the request."""
        try:
            if self.state == RECEIVING:
                return self._receive(now)
            if self.state == IDLE:
                self._idle_ready()
                return None
            if self.state == CONNECTING:
                return self._connected(now)
            if self.state == TUNNEL:
                return self._tunnelling(now)
            if self.state == SOCKS:
                return self._socksing(now)
            if self.state == TLS:
                return self._handshake(now)
            if self.state == SENDING:
                return self._send(now)
        except ssl.SSLError as exc:
            return self._fail("connect" if self.state == TLS else "io", f"TLS: {exc}")
        except OSError as exc:
            return self._io_error(exc, now)
        return None

    def check(self, now: float) -> HttpResult | None:
        """Fail the request when its deadline has passed (call when :attr:`deadline` is due)."""
        if self.busy and self.deadline is not None and now >= self.deadline:
            hop, state = self._hop, self.state
            if hop is not None and state in (CONNECTING, TUNNEL, SOCKS):
                if state == CONNECTING:
                    what = f"no TCP connection within connect_timeout={self.options.connect_timeout}s"
                    return self._fail("timeout", _message(hop.refused(self.url, what, _NO_TCP)))
                return self._fail("timeout", self._hop_error(TimeoutError()))
            if self._bounded and hop is not None and state in (SENDING, RECEIVING):
                return self._fail("timeout", _message(silent_proxy(hop, self.url, self.options)))
            what = "connect" if state in (CONNECTING, TLS) else "response"
            timeout = self.options.connect_timeout if state in (CONNECTING, TLS) else self.read_timeout
            return self._fail("timeout", f"no {what} from {self.url} within {timeout}s")
        return None

    def connect_blocking(self) -> None:
        """Open the socket now, blocking (TCP, a proxy's tunnel and TLS, within
        ``connect_timeout``), so that an unreachable server fails at once, on the calling thread
        (the hub's handshake threads), as a :class:`~realtime_sync.ConnectError` (naming the
        proxy and what to check when the proxy is at fault).  :meth:`abort` (another thread)
        ends it at once.  The socket is non-blocking afterwards."""
        if self._sock is not None:
            return
        timeout = self.options.connect_timeout or None
        deadline = None if timeout is None else time.monotonic() + timeout
        self.sockets_opened += 1
        aborted = lambda: self._aborted  # noqa: E731
        try:
            try:
                sock = dial(self.host, self.port, self._hop, self.options, deadline, self.url, self._own, aborted,
                            tunnel=not self._absolute)  # fmt: skip
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.https:
                    ctx = _ssl_context(self.options)
                    sock = ctx.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
                    self._own(sock)  # abort() reaches the TLS handshake too
                    sock.do_handshake()
            except _Refused as exc:
                raise exc.error from None
            except (OSError, ssl.SSLError) as exc:
                why = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, TimeoutError):
                    why += f" (connect_timeout={self.options.connect_timeout}s)"
                raise ConnectError(f"cannot connect to {self.url}: {redact(why)}") from None
        except BaseException:
            self._drop_dialing()
            raise
        self._dialing = None
        sock.setblocking(False)
        self._sock = sock
        self._fresh = True
        self.state = IDLE

    def _own(self, sock: socket.socket) -> None:
        self._dialing = sock
        if self._aborted:
            raise ConnectionAbortedError("aborted: the connection is closing")

    def _drop_dialing(self) -> None:
        sock, self._dialing = self._dialing, None
        if sock is not None:
            sock.close()

    def abort(self) -> None:
        """End a :meth:`connect_blocking` in progress at once (from another thread: the
        connection is closing); sticky, so one that has not made its socket yet fails."""
        self._aborted = True
        sock = self._dialing
        if sock is not None:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def proxy_refusal(self, status: int) -> str:
        """For a response with ``status``: when it is a plain-HTTP proxy's 407 (requests in
        absolute form), what happened, naming the proxy (a credential refusal); else ``""``."""
        return proxy_credentials_refused(self._hop, self.url, status, self._absolute)

    def _peer_label(self) -> str:
        """What a failure to reach the peer names: the URL, or the proxy (credentials hidden)."""
        proxy = _proxy_for(urllib.parse.urlsplit(self.url), self.options)
        if proxy is None:
            return self.url
        return f"{proxy_label(proxy.scheme, self.peer[0], self.peer[1], bool(proxy.username))} (for {self.url})"

    def close(self) -> None:
        """Close the socket (a request in progress is abandoned without a result).  Idempotent."""
        self._drop_socket()
        self.state = CLOSED
        self.deadline = None

    # -- internals -------------------------------------------------------------------------

    def _begin(self, now: float) -> HttpResult | None:
        if self._sock is None:
            return self._open(now)
        return self._ready_to_send(now)

    def _idle_ready(self) -> None:
        """The idle kept-alive socket is readable: the server closed it (EOF, reset) or sent
        bytes nobody asked for.  Either way it is not reused (a TLS record that carries no data,
        such as a TLS 1.3 session ticket, only makes the socket readable: nothing is dropped)."""
        sock = self._sock
        assert sock is not None
        try:
            data = sock.recv(1)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except OSError:  # reset: as closed
            data = b""
        why = "sent bytes nobody asked for" if data else "was closed by the server"
        log.debug("the idle kept-alive connection to %s %s: not reused", self.url, why)
        self._drop_socket()
        return None

    def _open(self, now: float) -> HttpResult | None:
        self.sockets_opened += 1
        try:
            if self._addr is None:
                info = socket.getaddrinfo(*self.peer, type=socket.SOCK_STREAM)[0]
                self._family, self._addr = info[0], info[4]
            sock = socket.socket(self._family, socket.SOCK_STREAM)
        except OSError as exc:
            return self._fail("connect", f"cannot connect to {self._peer_label()}: {exc}")
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not TCP
            pass
        self._sock = sock
        self._fresh = True
        timeout = self.options.connect_timeout
        self.deadline = now + timeout if timeout else None
        err = sock.connect_ex(self._addr)  # type: ignore[arg-type]
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            return self._fail("connect", f"cannot connect to {self._peer_label()}: {errno.errorcode.get(err, err)}")
        self.state = CONNECTING
        self._want = _WRITE
        return None

    def _connected(self, now: float) -> HttpResult | None:
        assert self._sock is not None
        err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            return self._fail("connect", f"cannot connect to {self._peer_label()}: {errno.errorcode.get(err, err)}")
        if self._tunnel:
            self.state = TUNNEL
            self._out = self._tunnel
            self._head = b""
            return self._tunnelling(now)
        hop = self._hop
        if hop is not None and hop.scheme != "http":
            self.state = SOCKS
            self._steps = handshake(hop.scheme, self.host, self.port, hop.credentials)
            return self._socks_step(None, now)
        return self._start_tls(now)

    def _socks_step(self, answer: bytes | None, now: float) -> HttpResult | None:
        """The SOCKS handshake's next step (``answer``: the bytes the last one read)."""
        hop = self._hop
        assert hop is not None
        try:
            self._out, self._steps_want = self._steps.send(answer)
        except StopIteration:
            self._steps = None
            return self._start_tls(now)
        except SocksRefused as exc:
            return self._fail("auth" if exc.auth else "connect", _message(socks_refused(exc, hop, self.url)))
        except OSError as exc:  # socks4/socks5 resolve the target's name here
            return self._fail("connect", f"cannot connect to {self.url}: {type(exc).__name__}: {exc}")
        self._head = b""
        return self._socksing(now)

    def _socksing(self, now: float) -> HttpResult | None:
        """Write the step's bytes, then read exactly what it wants, as they arrive."""
        sock = self._sock
        assert sock is not None
        if not self._flush(sock):
            return None
        while len(self._head) < self._steps_want:
            try:
                data = sock.recv(self._steps_want - len(self._head))
            except (BlockingIOError, InterruptedError):
                self._want = _READ
                return None
            if not data:
                return self._fail("connect", self._hop_error(ConnectionError()))
            self._head += data
        return self._socks_step(self._head, now)

    def _flush(self, sock: socket.socket) -> bool:
        """Write what a proxy's handshake has to say (plain socket); False: wait for writable."""
        while self._out:
            try:
                n = sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                self._want = _WRITE
                return False
            self._out = self._out[n:]
        return True

    def _hop_error(self, exc: Exception) -> str:
        """The message of the proxy's handshake (CONNECT or SOCKS) failing with ``exc``."""
        hop = self._hop
        assert hop is not None
        if self.state == SOCKS:
            what, hint = socks_silence(hop, self.host, self.port)
        else:
            what, hint = f"no answer to CONNECT {_authority(self.host, self.port)}", _NOT_HTTP
        return _message(hop_failed(exc, hop, self.url, what, hint, self.options, False))

    def _tunnelling(self, now: float) -> HttpResult | None:
        """``CONNECT`` through the proxy: write the request, then read the proxy's answer head
        (it sends nothing more until our TLS hello, so no byte of the server's is read here)."""
        sock = self._sock
        assert sock is not None
        if not self._flush(sock):
            return None
        while not _tunnel_answered(self._head):
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                self._want = _READ
                return None
            if not data:
                return self._fail("connect", self._hop_error(ConnectionError()))
            self._head += data
        assert self._hop is not None  # a tunnel is only ever through a proxy
        refused = _tunnel_refused(self._head, self._hop, self.url, _authority(self.host, self.port))
        if refused:
            return self._fail(
                "auth" if isinstance(refused.error, AuthenticationError) else "connect", _message(refused)
            )
        return self._start_tls(now)

    def _start_tls(self, now: float) -> HttpResult | None:
        if self.https:
            assert self._sock is not None
            ctx = _ssl_context(self.options)
            self._sock = ctx.wrap_socket(self._sock, server_hostname=self.host, do_handshake_on_connect=False)
            self.state = TLS
            return self._handshake(now)
        return self._ready_to_send(now)

    def _handshake(self, now: float) -> HttpResult | None:
        sock = self._sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want = _READ
            return None
        except ssl.SSLWantWriteError:
            self._want = _WRITE
            return None
        except ssl.SSLError as exc:
            return self._fail("connect", f"TLS handshake with {self.url} failed: {exc.reason or exc}")
        return self._ready_to_send(now)

    def _ready_to_send(self, now: float) -> HttpResult | None:
        failed = self._queue_request()
        if failed is not None:
            return failed
        self.state = SENDING
        self.deadline = now + self.read_timeout if self.read_timeout else None
        # A fresh connection to a plain-HTTP proxy: its first answer within connect_timeout (a
        # proxy that accepted the connection and never answers is named; see the docstring).
        timeout = self.options.connect_timeout
        self._bounded = bool(self._absolute and self._fresh and self.read_timeout and timeout)
        if self._bounded:
            self.deadline = now + min(self.read_timeout or 0.0, timeout)
        return self._send(now)

    def _queue_request(self) -> HttpFailure | None:
        parts = [self._prefix, b"Content-Length: %d\r\n" % len(self._body)]
        try:
            for name, value in self._extra.items():
                check_header(name, value)
                parts.append(f"{name}: {value}\r\n".encode("latin-1"))
            cookie = self.cookies.header()
            if cookie:
                check_header("Cookie", cookie)
                parts.append(b"Cookie: " + cookie.encode("latin-1") + b"\r\n")
        except ValueError as exc:  # a value that would split the request, or not latin-1
            return self._fail("protocol", f"cannot send a request to {self.url}: {type(exc).__name__}: {exc}")
        parts.append(b"\r\n")
        parts.append(self._body)
        self._out = b"".join(parts)
        self._reader = ResponseReader(self.max_body, _MAX_HEADERS)
        return None

    def _send(self, now: float) -> HttpResult | None:
        sock = self._sock
        assert sock is not None
        while self._out:
            try:
                n = sock.send(self._out)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                self._want = _WRITE
                return None
            except ssl.SSLWantReadError:
                self._want = _READ
                return None
            self._out = self._out[n:] if n < len(self._out) else b""
        # No read now: the answer is not there yet (a held request's, for seconds), and the
        # selector says when it is.
        self.state = RECEIVING
        self._want = _READ
        return None

    def _receive(self, now: float) -> HttpResult | None:
        sock, reader = self._sock, self._reader
        assert sock is not None and reader is not None
        while True:
            try:
                data = sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                self._want = _READ
                return None
            except ssl.SSLWantWriteError:
                self._want = _WRITE
                return None
            if not data:
                if not self._got_bytes:
                    if self._reused:
                        return self._retry_fresh(now, "EOF")
                    return self._fail("io", f"{self.url} closed the connection without answering")
                try:
                    reader.eof()  # a body that runs until the close is complete now
                except HttpProtocolError:
                    return self._fail("io", f"{self.url} closed the connection before the response ended")
                return self._complete(reader)
            self._got_bytes = True
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                data += sock.recv(sock.pending())
            try:
                if reader.feed(data):
                    return self._complete(reader)
            except BodyTooLarge:
                return self._fail("too_big", f"response larger than {self.max_body} bytes from {self.url}")
            except HttpProtocolError as exc:
                return self._fail("protocol", f"not a valid HTTP/1.1 response from {self.url}: {exc}")

    def _complete(self, reader: ResponseReader) -> HttpResult:
        headers = reader.headers
        result = HttpResponse(reader.status, reader.reason, headers, reader.body)
        cookies = [v for k, v in headers if k == "set-cookie"]
        if cookies:
            self.cookies.update(cookies)
        self._reader = None  # the response has its headers and body: not held while idle
        self._body = b""
        self.completed += 1
        self._fresh = self._bounded = False
        self.deadline = None
        self.state = IDLE
        self._want = 0
        if not reader.keep_alive:  # Connection: close, HTTP/1.0, a body read until close
            self._drop_socket()
        return result

    def _io_error(self, exc: OSError, now: float) -> HttpResult | None:
        if self._reused and not self._got_bytes and isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            return self._retry_fresh(now, type(exc).__name__)
        if self._hop is not None and self.state in (TUNNEL, SOCKS):
            return self._fail("connect", self._hop_error(exc))
        return self._fail("io" if self.state in (SENDING, RECEIVING) else "connect", f"{self.url}: {exc}")

    def _retry_fresh(self, now: float, why: str) -> HttpResult | None:
        """A kept-alive connection failed with no byte of an answer: one fresh try for a request
        that cannot have been applied (not sent whole) or may be applied twice; else a failure
        that says so (the server may have applied it)."""
        if self.state == RECEIVING and not self._idempotent:
            return self._fail(
                "io", f"{self.url} closed the connection with no answer ({why}); not re-sent: it may have been applied"
            )
        log.debug("kept-alive connection to %s was closed (%s) before any answer: one fresh try", self.url, why)
        self._drop_socket()
        self._reused = False
        self._got_bytes = False
        return self._open(now)

    def _fail(self, kind: str, message: str) -> HttpFailure:
        self._drop_socket()
        self.state = IDLE
        self.deadline = None
        return HttpFailure(kind, redact(message))

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        self._reader = None
        self._want = 0
        if sock is not None:
            try:
                sock.close()
            except OSError:  # pragma: no cover
                pass

    def __repr__(self) -> str:
        return f"<HttpConnection {self.url} {self.state}>"


def _tunnel_answered(head: bytes) -> bool:
    if len(head) > _MAX_HEADERS:
        raise ConnectionError(f"the proxy's answer head is larger than {_MAX_HEADERS} bytes")
    return b"\r\n\r\n" in head


def _tunnel_refused(head: bytes, hop: _Hop, url: str, authority: str) -> _Refused | None:
    """None when the proxy opened the tunnel (a 2xx answer to CONNECT), else why not (an
    :class:`~realtime_sync.AuthenticationError` for a 407: our proxy credentials refused)."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
        status = int(parts[1])
        if 200 <= status < 300:
            return None
        what = f"CONNECT {authority} answered with HTTP {status}"
        return hop.refused(
            url, what, tunnel_hint(status, authority, hop.auth is not None), verb="tunnel through", auth=status == 407
        )
    what = f"not an HTTP answer to CONNECT {authority}: {redact(line)[:80]!r}"
    return hop.refused(url, what, _NOT_HTTP, verb="tunnel through")


def _message(error: Exception) -> str:
    """The text of a :class:`~realtime_sync._wsconn._Refused` (or any exception)."""
    return str(error.error) if isinstance(error, _Refused) else str(error)


_NOT_HTTP = "check that it is an HTTP proxy (a SOCKS proxy needs socks5://)"
_NO_TCP = "check the proxy's host and port, and that this machine may reach it"
