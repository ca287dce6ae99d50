"""HTTP long-polling, and the websocket-first connection factory with its fallback.

Some CometD servers serve no websocket at all: Genesys GWS 8.5 documents CometD 3 *without*
websocket support.  There the Bayeux long-polling transport carries the very same message
arrays as HTTP ``POST`` bodies, and each response body is an array of replies and messages.
:class:`LongPollingConnection` implements the engine's ``Connection`` interface on top of HTTP
(frames in, response bodies and typed HTTP outcomes out), so the engine and the Bayeux adapter
do not know which one they drive, and this module does not know Bayeux.

Theory of operation
-------------------
The connection knows HTTP, not Bayeux.  Two worker threads, each with its own keep-alive HTTP
connection, because the server *holds* some requests (a Bayeux ``/meta/connect``, up to
``advice.timeout``) while the others (subscribe, publish...) must still go through.  The adapter
says which is which: it sends a held request as a :class:`~realtime_sync.protocols.base.HeldFrame`
(a ``str`` marked ``held``); this module never parses a frame::

    engine --send(frame)--> frame.held? --yes--> held worker ----POST--> held by the server
                                        --no---> control worker -POST--> answered at once
    each outcome --> inbox --> one byte on a socketpair --> the engine's selector wakes
                                                            --> receive() returns the outcomes

Kept-alive connections: before a worker reuses its idle connection it checks whether the server
closed it meanwhile (readable while idle, as urllib3's ``is_connection_dropped``), and opens a
fresh one first.  A request that still fails on a kept-alive connection with no byte of an answer
(the server closed it on reading the request) may have been applied: it is sent again on a fresh
connection only when the adapter marked its frame idempotent
(:class:`~realtime_sync.protocols.base.IdempotentFrame`, or a ``HeldFrame``); any other (a
publish) ends the connection, and the adapter reports it (RFC 9110 section 9.2.2).

Outcomes are typed: a 200 response is its body (a text frame for the adapter); any other status
is an :class:`~realtime_sync.protocols.base.HttpResult` (``status``, ``auth`` for 401/403,
``held``), handed to the adapter's ``http_result()`` (default: a credential refusal, or the end
of the connection), after which the connection ends.  No protocol reply is invented.  A proxy
refusing our proxy credentials (a plain-HTTP proxy's 407 to a request; an HTTP proxy's 407 to
``CONNECT`` or a SOCKS5 refusal when a request needs a new connection) is an ``HttpResult`` of
status 407 too, ``auth``, its ``proxy`` naming the proxy: the adapter's credential refusal.  On
the first connection it is raised from ``open()`` as an :class:`~realtime_sync.AuthenticationError`.

Ordering: outcomes are delivered in the order the responses arrived, and the messages of one
response in the order the server wrote them.  Between the two HTTP connections no order is
knowable (a held response and a control response can cross on the wire).  CometD itself makes
the same rule explicit: without its ``ack`` extension, delivery order across long-polling
requests is not guaranteed (the message ``ack`` extension orders and acknowledges the held
connect's batches); use the extension where order matters.

The threads are named ``realtime_sync-longpoll-<client>-send`` / ``-connect`` and ``close()``
joins them: it first gives a queued control request (a goodbye such as ``/meta/disconnect``) up
to a second to go out and be answered (on the client's own close, the held request's answer
too: a socket closed before its answer came ends with a TCP reset), then shuts the sockets
down, which ends a held request at once.

Cookies (the GWS session cookie JSESSIONID, CometD's BAYEUX_BROWSER) live in a
:class:`CookieJar` shared by both transports of a client: a ``Set-Cookie`` seen on any response
(long-polling, or the websocket upgrade) is sent on every later request.  Auth headers (Basic or
Bearer) come from the :class:`~realtime_sync.protocols.ConnectRequest`, so both transports send
the same ones.
"""

from __future__ import annotations

import base64
import collections
import http.client
import http.cookies
import logging
import queue
import select
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from typing import Any, Callable, Union

import attrs

from ._cookies import CookieJar
from ._csrf import CsrfToken
from ._h1 import check_header
from ._redact import redact, redirect_target, register_secret
from ._socks import SCHEMES as SOCKS_SCHEMES
from ._wsconn import (
    FrameError,
    WebSocketConnection,
    _Hop,
    _Refused,
    dial,
    is_loopback,
    proxy_credentials_refused,
    silent_proxy,
    url_hop,
)
from .config import ConnectOptions
from .exceptions import AuthenticationError, ConnectError
from .protocols.base import ConnectRequest, HttpResult

__all__ = [
    "TRANSPORTS",
    "AutoConnection",
    "CookieJar",
    "CookieWebSocketConnection",
    "LongPollingConnection",
    "http_url",
    "make_connection_factory",
    "ws_url",
]

log = logging.getLogger("realtime_sync.transport.longpoll")

#: Values of the ``transport=`` option of the Bayeux clients.
TRANSPORTS = ("auto", "websocket", "long-polling")

_CONTROL_READ_TIMEOUT = 60.0  # a non-connect request; the adapter's own deadline is shorter
_GOODBYE_GRACE = 1.0


def http_url(url: str) -> str:
    """The long-polling URL for ``url`` (``ws://`` -> ``http://``, ``wss://`` -> ``https://``).

    >>> http_url("wss://gws.example.com/api/v2/notifications")
    'https://gws.example.com/api/v2/notifications'
    """
    scheme, rest = url.split("://", 1) if "://" in url else ("https", url)
    return {"ws": "http", "wss": "https"}.get(scheme.lower(), scheme.lower()) + "://" + rest


def session_request(request: ConnectRequest, jar: CookieJar | None) -> tuple[str, CookieJar, dict[str, str]]:
    """What every request of a long-polling session needs: the HTTP URL, the cookie jar (made from
    the request's cookies, or updated with them) and the headers (the threaded connection and the
    hub's share it)."""
    if jar is None:
        jar = CookieJar(request.cookies)
    elif request.cookies:
        jar.update([c.strip() for c in request.cookies.split(";") if "=" in c])
    headers = {"Content-Type": "application/json;charset=UTF-8", "Accept": "application/json"}
    headers.update(request.headers)
    if request.origin:
        headers["Origin"] = request.origin
    return http_url(request.url), jar, headers


def ws_url(url: str) -> str:
    """The websocket URL for ``url`` (``http://`` -> ``ws://``, ``https://`` -> ``wss://``).

    >>> ws_url("https://gws.example.com/api/v2/notifications")
    'wss://gws.example.com/api/v2/notifications'
    """
    scheme, rest = url.split("://", 1) if "://" in url else ("wss", url)
    return {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower()) + "://" + rest


def _ssl_context(options: ConnectOptions) -> ssl.SSLContext:
    if options.ssl_context is not None:
        return options.ssl_context
    if not options.verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if options.ca_bundle:
        import os

        if os.path.isdir(options.ca_bundle):
            return ssl.create_default_context(capath=options.ca_bundle)
        return ssl.create_default_context(cafile=options.ca_bundle)
    return ssl.create_default_context()


def _proxy_for(parts: urllib.parse.SplitResult, options: ConnectOptions) -> urllib.parse.SplitResult | None:
    """The proxy for ``parts`` (``proxy=``; with ``trust_env``, ``http_proxy``/``https_proxy``
    unless ``no_proxy`` covers the host; a loopback URL never uses the environment's): an HTTP
    proxy (an ``https://`` proxy URL is spoken to in plain HTTP, as the websocket transport
    does) or a SOCKS one (``socks4``, ``socks4a``, ``socks5``, ``socks5h``)."""
    proxy = options.proxy
    if proxy is None and options.trust_env:
        host = parts.hostname or ""
        if is_loopback(host) or urllib.request.proxy_bypass(host):
            return None
        proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy:
        return None
    found = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    if found.scheme.lower() not in ("http", "https", *SOCKS_SCHEMES) or not found.hostname:
        raise ConnectError(
            f"unsupported proxy {redact(proxy)!r}: use http:// or socks5h:// (or socks5, socks4a, socks4)"
        )
    return found


def proxy_hop(parts: urllib.parse.SplitResult, proxy: urllib.parse.SplitResult, options: ConnectOptions) -> _Hop:
    """The proxy hop (see :func:`realtime_sync._wsconn.url_hop`) of ``proxy``, naming where it
    was configured for its errors."""
    source = "the proxy= option" if options.proxy is not None else f"the {parts.scheme}_proxy environment variable"
    return url_hop(proxy, source)


def proxy_authorization(proxy: urllib.parse.SplitResult) -> dict[str, str]:
    """``Proxy-Authorization`` (Basic) for a proxy URL with credentials, else nothing; the token
    is registered as a secret (never logged)."""
    if not proxy.username:
        return {}
    cred = f"{urllib.parse.unquote(proxy.username)}:{urllib.parse.unquote(proxy.password or '')}"
    token = base64.b64encode(cred.encode()).decode()
    register_secret(token)
    return {"Proxy-Authorization": f"Basic {token}"}


class _Http:
    """One keep-alive HTTP connection, as used by one worker thread.

    Through a proxy, the socket is made by :func:`realtime_sync._wsconn.dial` (the websocket
    transport's): TCP to the proxy, then its tunnel (an HTTP proxy's ``CONNECT`` for
    ``https://``, or a SOCKS proxy's handshake), within ``connect_timeout``, on a socket that
    :meth:`abort` reaches at every step; http.client then speaks TLS (``https://``) and HTTP
    on it.  A plain-HTTP proxy gets ``http://`` requests in absolute form, and the first answer
    on a fresh connection to it (the control requests': the server answers them at once) is
    awaited ``connect_timeout`` at most: a proxy that accepted the connection and never answers
    is named, with the timeout, instead of leaving a Bayeux reply timeout that names neither.
    """

    def __init__(self, url: str, options: ConnectOptions, read_timeout: float | None) -> None:
        self.parts = urllib.parse.urlsplit(url)
        if self.parts.scheme not in ("http", "https") or not self.parts.hostname:
            raise ConnectError(f"not an http(s) URL: {redact(url)}")
        self.url = url
        self.options = options
        self.read_timeout = read_timeout
        self.conn: http.client.HTTPConnection | None = None
        self.requests = 0  # completed on the current TCP connection
        self.target = self.parts.path or "/"
        if self.parts.query:
            self.target += "?" + self.parts.query
        self.proxy_headers: dict[str, str] = {}
        self.aborted = False
        self.hop: _Hop | None = None  # the proxy's hop (see proxy_hop), when there is one
        self.absolute = False  # requests go to a plain-HTTP proxy in absolute form
        self._dialing: socket.socket | None = None  # the socket dial() is making, for abort()

    def _new(self) -> http.client.HTTPConnection:
        p, o = self.parts, self.options
        timeout = o.connect_timeout or None
        proxy = _proxy_for(p, o)
        https = p.scheme == "https"
        host = p.hostname or ""
        port = p.port or (443 if https else 80)
        conn: http.client.HTTPConnection
        if https:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=_ssl_context(o))
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        if proxy is None:
            return conn
        hop = self.hop = proxy_hop(p, proxy, o)
        if hop.scheme == "http" and not https:
            # A plain-HTTP proxy takes the absolute URI in the request line.
            self.absolute = True
            self.target = urllib.parse.urlunsplit(p)
            self.proxy_headers = proxy_authorization(proxy)
        # http.client makes its socket with _create_connection: ours goes through the proxy.
        conn._create_connection = self._dial  # type: ignore[attr-defined]
        return conn

    def _dial(self, address: Any, timeout: Any = None, source_address: Any = None) -> socket.socket:
        o = self.options
        deadline = time.monotonic() + o.connect_timeout if o.connect_timeout else None
        host, port = address
        try:
            return dial(host, port, self.hop, o, deadline, self.url, self._own, lambda: self.aborted,
                        tunnel=not self.absolute)  # fmt: skip
        except _Refused as exc:
            raise exc.error from None

    def _own(self, sock: socket.socket) -> None:
        self._dialing = sock
        if self.aborted:
            raise ConnectionAbortedError("aborted: the connection is closing")

    def connect(self) -> None:
        if self.aborted:  # abort() came before the connection existed: it must not start one
            raise ConnectionAbortedError("aborted: the connection is closing")
        conn = self.conn or self._new()
        self.conn = conn
        try:
            conn.connect()
        finally:
            self._dialing = None
        if self.aborted:  # abort() ran while the socket did not exist yet: it could not shut it
            conn.close()
            raise ConnectionAbortedError("aborted: the connection is closing")
        if conn.sock is not None:
            conn.sock.settimeout(self.read_timeout)
            try:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - not TCP
                pass
        self.requests = 0

    def post(
        self,
        body: bytes,
        headers: dict[str, str],
        max_size: int,
        *,
        method: str = "POST",
        idempotent: bool | None = None,
    ) -> tuple[int, str, http.client.HTTPMessage, bytes]:
        """POST ``body`` (or send another ``method``); returns (status, reason, response
        headers, response body).

        A kept-alive connection is checked before it is reused (urllib3's
        ``is_connection_dropped``): readable while idle means the server closed it (or sent what
        nobody asked for), and a fresh one is opened first.  A request that still fails on a
        kept-alive connection with no byte of an answer is sent once more on a fresh connection
        when it cannot have been applied (it was not sent whole) or may be applied twice
        (``idempotent``; by default a GET is and a POST is not, RFC 9110 section 9.2.2); else
        :class:`NotResent` is raised.
        """
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "OPTIONS")
        for name, value in headers.items():
            # http.client lets a folded line ("\r\n X-Injected: yes") through: refused here, as
            # the websocket and the hub's HTTP refuse any CR or LF (ValueError, nothing sent).
            check_header(name, value)
        for attempt in (0, 1):
            conn = self.conn
            if conn is not None and conn.sock is not None and self.requests and _dropped(conn.sock):
                log.debug(
                    "the idle kept-alive connection to %s was closed by the server: not reused", self.parts.hostname
                )
                conn.close()
            if conn is None or conn.sock is None:
                self.connect()
            conn = self.conn
            assert conn is not None
            reused = self.requests > 0
            sent = False
            try:
                conn.request(
                    method,
                    self.target,
                    body=body if method == "POST" else None,
                    headers={**headers, **self.proxy_headers},
                )
                sent = True
                # A fresh connection to a plain-HTTP proxy: its first answer within connect_timeout.
                first = self.absolute and not reused and self.read_timeout is not None and self.options.connect_timeout
                if first and conn.sock is not None:
                    conn.sock.settimeout(min(self.read_timeout or 0.0, self.options.connect_timeout))
                try:
                    resp = conn.getresponse()
                except TimeoutError:
                    if first and self.hop is not None and not self.aborted:
                        conn.close()
                        raise silent_proxy(self.hop, self.url, self.options).error from None
                    raise
                if first and conn.sock is not None:
                    conn.sock.settimeout(self.read_timeout)
                data = resp.read(max_size + 1) if max_size else resp.read()
                if max_size and len(data) > max_size:
                    conn.close()
                    raise _TooBig(len(data))
                self.requests += 1
                if resp.will_close:
                    conn.close()
                return resp.status, resp.reason, resp.msg, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                # A kept-alive connection the server closed (while idle, or on reading this
                # request): one fresh try, as urllib3 does, but only for a request that cannot
                # have been applied, or may be applied twice.  On a fresh connection the
                # failure is real.
                if attempt or not reused or self.aborted:
                    raise
                if sent and not idempotent:
                    raise NotResent(f"{type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def abort(self) -> None:
        """Unblock a request in progress (from another thread) and close: a socket being made
        by dial() too (a proxy that accepted the connection and never answers its handshake)."""
        self.aborted = True
        conn = self.conn
        for sock in (self._dialing, conn.sock if conn is not None else None):
            if sock is not None:
                try:
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass
        if conn is not None:
            try:
                conn.close()
            except Exception:  # pragma: no cover - best effort
                pass


def _dropped(sock: socket.socket) -> bool:
    """urllib3's ``is_connection_dropped``: an idle kept-alive socket that is readable was
    closed by the server (EOF or reset) or holds bytes nobody asked for; either way it must not
    carry the next request."""
    if hasattr(select, "poll"):
        p = select.poll()
        p.register(sock, select.POLLIN)
        return bool(p.poll(0))
    return bool(select.select([sock], [], [], 0)[0])  # pragma: no cover - no poll()


class NotResent(ConnectionError):
    """A request that is not safe to repeat failed on a kept-alive connection after it was sent,
    with no byte of an answer: the server may have applied it, so it is not sent again."""

    def __init__(self, cause: str) -> None:
        super().__init__(f"the connection was closed with no answer ({cause}); not re-sent: it may have been applied")


class _TooBig(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"response larger than max_frame_size ({size}+ bytes)")


Received = list[Union[str, FrameError, HttpResult]]


class LongPollingBase:
    """What both long-polling connections share (this module's threaded one and the hub's on its
    loop): the attributes the engine reads, the opening of a session (cookies, headers, the CSRF
    token fetched before the first request) and the reading of a response into an outcome."""

    kind = "long-polling"
    subprotocol: str | None = None

    def __init__(self, cookies: CookieJar | None = None, name: str = "client", csrf: CsrfToken | None = None) -> None:
        self.cookies = cookies
        self.name = name
        #: GWS' CSRF token (see :mod:`realtime_sync._csrf`), or None.
        self.csrf = csrf
        self.closed = False
        self.close_reason = ""
        self.close_code: int | None = None
        self.last_activity = 0.0
        #: The server answered a request: the engine reports ``connected`` from then on (a
        #: refused first request is a refused connection, as a refused websocket upgrade is).
        self.established = False
        self._url = ""
        self._headers: dict[str, str] = {}
        self._aborted = False
        self._opening: Any = None  # the CSRF GET or the control connect under way (an _Http, or
        # the hub's HttpConnection): what abort() interrupts

    def pending(self) -> bool:
        return False

    def ping(self) -> None:
        """Nothing to ping: the held ``/meta/connect`` is the heartbeat."""

    def abort(self) -> None:
        """Interrupt an ``open()`` blocked in the CSRF token's ``GET`` (or, here, the control
        connection's connect); called from another thread by ``close()``.  Sticky: an ``open()``
        that has not reached its request yet fails at once instead of starting it."""
        self._aborted = True
        h = self._opening
        if h is not None:
            h.abort()

    def _watch(self, h: Any) -> None:
        self._opening = h
        if self._aborted:
            h.abort()

    def _open_session(self, request: ConnectRequest, options: ConnectOptions) -> str:
        """The session's HTTP URL; sets the cookie jar, the (redacted) URL shown in reasons and
        the headers of every request, the CSRF token among them (fetched now when needed)."""
        url, self.cookies, headers = session_request(request, self.cookies)
        self._url = redact(url)
        if self.csrf is not None:
            try:
                headers.update(self.csrf.fetch(headers, options, self.cookies, self._watch))
            finally:
                self._opening = None
        self._headers = headers
        return url

    def _response(
        self, status: int, reason: str, body: bytes, location: str | None, held: bool, proxy: str = ""
    ) -> Any:
        """A response as the engine takes it: a 200's body (a text frame), else an
        :class:`HttpResult` (a redirect names its target; a 403 may renew the CSRF token;
        ``proxy``: a plain-HTTP proxy's 407, naming the proxy: a credential refusal)."""
        if status == 200:
            self.established = True
            if self.csrf is not None:
                self.csrf.accepted(self._headers)
            try:
                return body.decode("utf-8")
            except UnicodeDecodeError as exc:
                return FrameError(f"response is not valid UTF-8: {exc.reason} at byte {exc.start}")
        detail = ""
        if 300 <= status < 400:
            detail = f"a redirect to {redirect_target(self._url, location)}, not followed"
        renewed = status == 403 and self.csrf is not None and self.csrf.refused(self._headers)
        result = HttpResult(status, reason, held=held, detail=detail, renewed=renewed, url=self._url, proxy=proxy)
        if not renewed:  # a renewed CSRF token is routine (logged at INFO by the token)
            log.warning("long-polling request refused: %s", result)
        return result


class LongPollingConnection(LongPollingBase):
    """One Bayeux long-polling "connection" (see the module docstring).

    ``cookies`` is the client's shared :class:`CookieJar` (a private one when omitted).  The
    engine drives it like a websocket, its ``fileno()`` registered in the loop's selector::

        conn = LongPollingConnection(CookieJar(), name="gws")
        conn.open(ConnectRequest("https://gws.example.com/api/v2/notifications"), ConnectOptions())
        conn.send('[{"channel":"/meta/handshake", ...}]')   # a HeldFrame goes on the held worker
        selector.register(conn.fileno(), selectors.EVENT_READ); selector.select()
        replies = conn.receive()          # ['[{"channel":"/meta/handshake",...}]'] or [HttpResult(401)]
        conn.close()
    """

    def __init__(self, cookies: CookieJar | None = None, name: str = "client", csrf: CsrfToken | None = None) -> None:
        super().__init__(cookies, name, csrf)
        self._lock = threading.Lock()
        self._inbox: collections.deque[str | FrameError | HttpResult] = collections.deque()
        self._ended = False
        self._closing = False
        self._close_called = False
        self._r: socket.socket | None = None
        self._w: socket.socket | None = None
        self._queues: dict[str, queue.SimpleQueue[tuple[bytes, bool] | None]] = {}
        self._https: dict[str, _Http] = {}
        self._threads: list[threading.Thread] = []
        # Requests queued or out, per worker ("send", "connect"); close() waits for both.
        self._pending = {"send": 0, "connect": 0}
        self._idle = threading.Condition(self._lock)
        self._max = 0
        #: Set by the engine before a clean close: the goodbye's wait ends then at the latest.
        self.goodbye_until: float | None = None

    # -- opening ---------------------------------------------------------------------------

    def open(self, request: ConnectRequest, options: ConnectOptions) -> None:
        url = self._open_session(request, options)
        self._max = options.max_frame_size or 0
        control = _Http(url, options, _CONTROL_READ_TIMEOUT)
        try:
            self._watch(control)
            control.connect()  # fail fast (and let the transport's policy apply) if unreachable
        except ConnectError:  # through a proxy: it names the proxy and what to check
            control.abort()
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            control.abort()
            raise ConnectError(f"cannot connect to {self._url}: {redact(f'{type(exc).__name__}: {exc}')}") from None
        finally:
            self._opening = None
        # The connect worker's read has no timeout of its own: the server holds the request up to
        # advice.timeout, and the adapter's deadline (timeout + network allowance) closes us.
        self._https = {"send": control, "connect": _Http(url, options, None)}
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        for role in ("send", "connect"):
            q: queue.SimpleQueue[tuple[bytes, bool] | None] = queue.SimpleQueue()
            self._queues[role] = q
            t = threading.Thread(
                target=self._work, args=(role, q), name=f"realtime_sync-longpoll-{self.name}-{role}", daemon=True
            )
            self._threads.append(t)
        for t in self._threads:
            t.start()
        self.last_activity = time.monotonic()

    # -- the transport thread's side --------------------------------------------------------

    def fileno(self) -> int:
        return self._r.fileno() if self._r is not None else -1

    def receive(self) -> Received | None:
        r = self._r
        if r is None:
            return None
        try:
            while r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            pass
        with self._lock:
            items: Received = list(self._inbox)
            self._inbox.clear()
            ended = self._ended
        if items:
            if ended:
                self._signal()  # the end is still to be reported by the next receive()
            return items
        if ended or self._close_called:
            self.closed = True
            return None
        return []

    def send(self, text: str) -> None:
        if self._ended or self._close_called:
            return  # the end is reported by receive(); nothing to send it on
        role = "connect" if getattr(text, "held", False) else "send"
        with self._lock:
            self._pending[role] += 1
        # Whether the request may be sent twice is the adapter's call too (IdempotentFrame).
        self._queues[role].put((text.encode("utf-8"), getattr(text, "idempotent", False)))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Let a queued goodbye go out (up to 1 s, for ``code`` 1000), then abort the requests
        and join the threads.  Idempotent."""
        with self._lock:
            if self._close_called:
                return
            self._close_called = True
            # On a normal close (code 1000) /meta/disconnect was queued just before: give it a
            # moment to reach the server.  A dead connection (1001) is abandoned at once.
            # No answer yet from the server (the handshake still out, a server that accepted
            # the connection and never answered): no session to say goodbye to, close at once.
            deadline = time.monotonic() + (_GOODBYE_GRACE if code == 1000 and self.established else 0.0)
            if self.goodbye_until is not None:  # what close(timeout=...) leaves for it
                deadline = min(deadline, self.goodbye_until)
            # On the client's own clean close (the engine set goodbye_until), the held
            # /meta/connect too, which the server answers on the disconnect: a socket closed with
            # an answer unread, or before it came, ends with a TCP reset instead of a FIN
            # (measured against faye: 14 of 60 connections).  Not on a reconnect: no wait there.
            pending = self._pending
            held = self.goodbye_until is not None
            while (pending["send"] or (held and pending["connect"])) and not self._ended:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._idle.wait(remaining)
            self._closing = True
        for q in self._queues.values():
            q.put(None)
        for h in self._https.values():
            h.abort()
        me = threading.current_thread()
        for t in self._threads:
            if t is not me:
                t.join(2.0)
        for s in (self._r, self._w):
            if s is not None:
                try:
                    s.close()
                except OSError:  # pragma: no cover
                    pass
        self._r = self._w = None
        self.closed = True
        if not self.close_reason:
            self.close_reason = reason or "closed by the client"

    # -- worker threads --------------------------------------------------------------------

    def _signal(self) -> None:
        w = self._w
        if w is not None:
            try:
                w.send(b"\0")
            except OSError:
                pass  # full (a wake-up is pending anyway) or closed

    def _push(self, item: str | FrameError | HttpResult) -> None:
        with self._lock:
            self._inbox.append(item)
        self._signal()

    def _end(self, reason: str) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
            if not self.close_reason:
                self.close_reason = reason
            self._idle.notify_all()
        self._signal()

    def _work(self, role: str, q: queue.SimpleQueue[tuple[bytes, bool] | None]) -> None:
        h = self._https[role]
        while True:
            item = q.get()
            if item is None or self._closing:
                break
            try:
                self._post(h, item[0], role, item[1])
            finally:
                with self._lock:
                    self._pending[role] -= 1
                    if not self._pending[role]:
                        self._idle.notify_all()
            if self._ended:
                break
        h.abort()

    def _post(self, h: _Http, body: bytes, role: str, idempotent: bool) -> None:
        headers = dict(self._headers)
        assert self.cookies is not None
        cookie = self.cookies.header()
        if cookie:
            headers["Cookie"] = cookie
        try:
            status, reason, msg, data = h.post(body, headers, self._max, idempotent=idempotent)
        except _TooBig as exc:
            self._push(FrameError(str(exc)))
            self._end(f"long-polling response too big from {self._url}")
            return
        except AuthenticationError as exc:  # a proxy refused our credentials on a new connection
            if not self._closing:
                self._push(HttpResult.proxy_refused(str(exc), held=role == "connect", url=self._url))
                self._end(f"long-polling request to {self._url} failed: {exc}")
            return
        except (OSError, http.client.HTTPException, ValueError, ConnectError) as exc:
            if not self._closing:
                why = str(exc) if isinstance(exc, ConnectError) else f"{type(exc).__name__}: {exc}"
                self._end(f"long-polling request to {self._url} failed: {redact(why)}")
            return
        except AttributeError:
            # close() aborted the request from another thread: http.client's response lost its
            # file under the read ('NoneType' object has no attribute ...).  Not a bug to print.
            if not h.aborted:
                raise
            self._end(f"long-polling request to {self._url} aborted")
            return
        self.last_activity = time.monotonic()
        set_cookies = msg.get_all("Set-Cookie")
        if set_cookies:
            self.cookies.update(set_cookies)
        proxy = proxy_credentials_refused(h.hop, self._url, status, h.absolute)
        result = self._response(status, reason, data, msg.get("Location"), role == "connect", proxy)
        self._push(result)
        if not isinstance(result, HttpResult):
            return
        self._end(f"{result} from {self._url}")


class CookieWebSocketConnection(WebSocketConnection):
    """The core websocket connection, sending the shared jar's cookies on the upgrade and
    keeping the cookies the upgrade response sets, on a URL given in any scheme."""

    def __init__(self, cookies: CookieJar | None = None) -> None:
        super().__init__()
        self.cookies = cookies

    def open(self, request: ConnectRequest, options: ConnectOptions) -> None:
        jar = self.cookies
        cookie = jar.header() if jar is not None else request.cookies
        request = attrs.evolve(request, url=ws_url(request.url), cookies=cookie or request.cookies)
        super().open(request, options)
        if jar is not None and self.set_cookies:
            jar.update(self.set_cookies)


def _is_upgrade_refusal(exc: ConnectError) -> bool:
    """The server answered the upgrade with a plain HTTP status (not 101), other than an auth
    refusal or a server error: it does not do websocket at this URL."""
    status = exc.status
    return status is not None and status not in (401, 403) and not 500 <= status < 600


class AutoConnection:
    """Websocket first; long-polling when the server refuses the upgrade (see the factory).

    After :meth:`open` it is the chosen connection: its methods are the inner connection's.
    """

    subprotocol: str | None = None
    #: The long-polling connection to fall back to (a hub puts its thread-less one here).
    long_polling: Callable[..., Any] = LongPollingConnection

    def __init__(
        self, cookies: CookieJar, name: str, on_fallback: Callable[[str], None], csrf: CsrfToken | None = None
    ) -> None:
        self._cookies = cookies
        self._name = name
        self._csrf = csrf
        self._on_fallback = on_fallback
        self._inner: Any = None
        self._trying: Any = None  # the connection being opened, for abort()
        self.kind = "websocket"

    def abort(self) -> None:
        """Interrupt an ``open()`` in progress (the websocket's handshake or the fallback's)."""
        self._aborted = True
        trying = self._trying
        if trying is not None:
            trying.abort()

    _aborted = False

    def open(self, request: ConnectRequest, options: ConnectOptions) -> None:
        ws = CookieWebSocketConnection(self._cookies)
        self._trying = ws
        if self._aborted:  # came before _trying was set: pass it on (the websocket's is sticky)
            ws.abort()
        try:
            ws.open(request, options)
            inner: Any = ws
        except AuthenticationError:
            raise
        except ConnectError as exc:
            if not _is_upgrade_refusal(exc):
                raise
            log.info("websocket refused (%s): falling back to long-polling", exc)
            lp = self.long_polling(self._cookies, self._name, csrf=self._csrf)
            self._trying = lp
            if self._aborted:
                lp.abort()
            lp.open(request, options)
            inner = lp
            self._on_fallback(str(exc))
        self._inner = inner
        self._trying = None
        self.kind = inner.kind
        self.subprotocol = inner.subprotocol
        # Bind the hot methods directly: no indirection per call.
        self.fileno = inner.fileno  # type: ignore[method-assign]
        self.pending = inner.pending  # type: ignore[method-assign]
        self.receive = inner.receive  # type: ignore[method-assign]
        self.send = inner.send  # type: ignore[method-assign]
        self.ping = inner.ping  # type: ignore[method-assign]

    @property
    def closed(self) -> bool:
        return bool(self._inner.closed) if self._inner is not None else False

    @property
    def close_reason(self) -> str:
        return str(self._inner.close_reason) if self._inner is not None else ""

    @property
    def close_code(self) -> int | None:
        return getattr(self._inner, "close_code", None)

    @property
    def last_activity(self) -> float:
        return float(self._inner.last_activity) if self._inner is not None else 0.0

    @last_activity.setter
    def last_activity(self, value: float) -> None:  # the engine moves it on when reading resumes
        if self._inner is not None:
            self._inner.last_activity = value

    @property
    def goodbye_until(self) -> float | None:
        return getattr(self._inner, "goodbye_until", None)

    @goodbye_until.setter
    def goodbye_until(self, value: float | None) -> None:
        if hasattr(self._inner, "goodbye_until"):
            self._inner.goodbye_until = value

    @property
    def established(self) -> bool:
        return bool(getattr(self._inner, "established", True))

    def fileno(self) -> int:
        return -1

    def pending(self) -> bool:
        return False

    def receive(self) -> Received | None:
        return None

    def send(self, text: str) -> None:
        raise ConnectionError("not open")

    def ping(self) -> None:
        pass

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self._inner is not None:
            self._inner.close(code, reason)

    def start_closing(self, code: int = 1000, reason: str = "") -> bool:
        start = getattr(self._inner, "start_closing", None)  # the websocket's (long-polling has none)
        return bool(start(code, reason)) if start is not None else False

    def drain_closing(self) -> bool:
        drain = getattr(self._inner, "drain_closing", None)
        return bool(drain()) if drain is not None else True


def make_connection_factory(
    transport: str,
    cookies: CookieJar,
    name: str,
    hint: Callable[[], str | None] = lambda: None,
    csrf: CsrfToken | None = None,
) -> Callable[[], Any]:
    """The connection factory of the Bayeux clients.

    ``transport``: ``"websocket"`` or ``"long-polling"`` forces one; ``"auto"`` tries the
    websocket and falls back to long-polling when the upgrade is refused with an HTTP status
    (not 401/403, which are credential refusals, nor 5xx, a server in trouble).  The fallback
    sticks for the client's lifetime: a server that refused once will refuse again.  ``hint()``
    (the adapter's ``transport_hint``) switches to long-polling too, when a server upgraded the
    websocket but its handshake offered long-polling only.  ``csrf``: GWS' CSRF token, sent on
    every long-polling request (the websocket's upgrade is a GET, which GWS does not check).
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
    mode = [transport]

    def fallback(reason: str) -> None:
        mode[0] = "long-polling"

    def factory() -> Any:
        if mode[0] == "auto" and hint() == "long-polling":
            mode[0] = "long-polling"
        if mode[0] == "long-polling":
            return LongPollingConnection(cookies, name, csrf=csrf)
        if mode[0] == "websocket":
            return CookieWebSocketConnection(cookies)
        return AutoConnection(cookies, name, fallback, csrf=csrf)

    return factory
