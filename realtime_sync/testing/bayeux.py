"""A fake Bayeux (CometD) server speaking websocket AND HTTP long-polling on one port.

:class:`FakeBayeuxServer` is a real server on 127.0.0.1: websocket upgrades are served by
:class:`~realtime_sync.testing.FakeServer` (python-websockets), and HTTP ``POST`` requests to the
same port are the Bayeux long-polling transport (the same message arrays, the ``/meta/connect``
held by the server).  Both transports share the session state, as on a real CometD server, so
a client may handshake on one and carry on with the other.

Scriptable faults:

* :meth:`~FakeBayeuxServer.expire_sessions` - every session is forgotten: the next connect gets
  ``402::Unknown client`` with ``advice: {"reconnect": "handshake"}`` (a server restart, an expiry);
* :meth:`~FakeBayeuxServer.advise_none` - the next handshake/connect replies say ``reconnect: none``;
* ``websocket=False`` or :meth:`~FakeServer.refuse` - websocket upgrades are refused (HTTP 400), so
  a client must fall back to long-polling (GWS 8.5 has no websocket);
* :meth:`~FakeBayeuxServer.hold_connects` - connects are never answered (a dead server with the
  TCP connection still up);
* :meth:`~FakeBayeuxServer.publish` - a message to every session subscribed to a matching channel;
* :meth:`~FakeBayeuxServer.fail_post` - the next long-polling POST(s) carrying a message on a
  channel are not processed: answered with an HTTP error status (500, 403...) or dropped (the TCP
  connection closed without an answer);
* ``forbidden`` - channel patterns whose subscription is refused with ``403::Forbidden``;
* ``check_request`` (override, or ``basic_auth=``/``required_cookie=``) - HTTP 401 on both the
  upgrade and the POSTs.

    >>> from realtime_sync.testing.bayeux import FakeBayeuxServer
    >>> with FakeBayeuxServer(timeout=1.0) as server:           # doctest: +SKIP
    ...     client = CometDClient(server.http_url)
    ...     client.subscribe("/chat/demo")
    ...     client.start()
    ...     server.wait_for_subscription("/chat/demo")
    ...     server.publish("/chat/demo", {"text": "hi"})

:class:`FakeGenesysServer` mounts the same at ``/api/v2/notifications`` and publishes Genesys
chat notifications (:meth:`~FakeGenesysServer.chat_state_change`,
:meth:`~FakeGenesysServer.new_messages`).
"""

from __future__ import annotations

import base64
import http.server
import itertools
import json
import logging
import secrets
import select
import socket
import ssl
import threading
import time
import uuid
from typing import Any, Callable, Iterable, TypeVar

import attrs

from ..config import timing_scale
from .server import FakeConnection, FakeServer, Received

__all__ = ["FakeBayeuxServer", "FakeGenesysServer", "HttpRequest", "Session"]

log = logging.getLogger("realtime_sync.testing.bayeux")

_PEEK = 512  # enough of a request to see its request line

_S = TypeVar("_S", bound="FakeBayeuxServer")


def _matches(pattern: str, channel: str) -> bool:
    if pattern == channel:
        return True
    if pattern.endswith("/**"):
        return channel.startswith(pattern[:-2])
    if pattern.endswith("/*"):
        prefix = pattern[:-1]
        return channel.startswith(prefix) and "/" not in channel[len(prefix) :]
    return False


@attrs.frozen
class HttpRequest:
    """One long-polling POST the server received."""

    path: str
    headers: dict[str, str]
    body: str
    at: float
    method: str = "POST"


@attrs.define(eq=False)
class Session:
    """A Bayeux session (one clientId) as the fake server keeps it."""

    client_id: str
    transport: str = ""
    subscriptions: set[str] = attrs.field(factory=set)
    queue: list[dict[str, Any]] = attrs.field(factory=list)  # for a long-polling or disconnected client
    ws: FakeConnection | None = None
    held: tuple[FakeConnection, dict[str, Any], float] | None = None  # websocket: (conn, reply, deadline)
    polling: bool = False  # long-polling: a connect is being held by an HTTP request
    generation: int = 0  # long-polling: bumped by every connect; an older held one returns at once
    last_seen: float = 0.0
    connects: int = 0


def _forget_handler_thread(server: Any) -> None:
    """A connection served without python-websockets' own handler: take its thread off the list
    that python-websockets 17+ ``Server.shutdown()`` waits for (earlier versions keep none; the
    last for Python 3.10 is 16.1.1)."""
    threads = getattr(server, "handler_threads", None)
    if threads is not None:
        with server.lock:
            threads.discard(threading.current_thread())


class FakeBayeuxServer(FakeServer):
    """A Bayeux 1.0 server on 127.0.0.1 (see the module docstring).

    Args:
        timeout: seconds a ``/meta/connect`` is held (``advice.timeout``).
        interval: ``advice.interval`` in seconds.
        max_interval: a session with no connect for ``timeout + max_interval`` expires.
        websocket: False refuses upgrades (HTTP 400) and advertises long-polling only.
        forbidden: channel patterns whose subscriptions are refused.
        basic_auth: ``(user, password)`` required as HTTP Basic on every request (or the cookie).
        required_cookie: ``"NAME=value"`` accepted instead of Basic (e.g. GWS' JSESSIONID).
        set_cookie: a cookie the server sets on long-polling responses (CometD's BAYEUX_BROWSER).
        ssl_context: a server-side context: serve TLS (``https://`` and ``wss://``) on the port.
    """

    path = "/cometd"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        timeout: float = 2.0,
        interval: float = 0.0,
        max_interval: float = 10.0,
        websocket: bool = True,
        forbidden: Iterable[str] = (),
        basic_auth: tuple[str, str] | None = None,
        required_cookie: str | None = None,
        set_cookie: str | None = "BAYEUX_BROWSER=fake-browser-1",
        path: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host, port, ssl_context=ssl_context)
        if path is not None:
            self.path = path
        self.timeout = timeout
        self.interval = interval
        self.max_interval = max_interval
        self.websocket = websocket
        self.forbidden = tuple(forbidden)
        self.basic_auth = basic_auth
        self.required_cookie = required_cookie
        self.set_cookie = set_cookie
        self.sessions: dict[str, Session] = {}
        self.http_requests: list[HttpRequest] = []
        self.handshake_count = 0
        self._lock = threading.RLock()
        self._lp_cond = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._advice_none = False
        self._hold_forever = False
        self._stopping = False
        self._http_socks: set[socket.socket] = set()
        self._http_ids = itertools.count(1)
        self._fail_plan: tuple[int | str, str | None, int] | None = None
        #: Bodies of the POSTs failed by :meth:`fail_post` (not processed by the server).
        self.failed_posts: list[str] = []
        #: TLS mode: connections whose TLS handshake failed (or that sent nothing).
        self.tls_failures = 0

    # -- URLs -------------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT/path`` (``https://`` with TLS): the long-polling endpoint (and
        the GWS-style URL)."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{self.path}"

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self: _S) -> _S:
        return self.start()

    def start(self: _S) -> _S:
        with self._lock:
            self._stopping = False
            self.sessions.clear()  # a restarted server knows no session
        # TLS is terminated here, not by python-websockets: a POST must be told from an upgrade
        # by its first bytes, and TLS has no MSG_PEEK (see _tls_peek / _tls_bridge).
        tls, self.ssl_context = self.ssl_context, None
        try:
            super().start()
        finally:
            self.ssl_context = tls
        server = self._server
        assert server is not None
        inner = server.handler

        # Every accepted socket passes through here: a POST is long-polling, anything else goes
        # to python-websockets (which serves the upgrade or refuses a plain GET).
        def dispatch(sock: socket.socket, addr: Any) -> None:
            tls = self.ssl_context
            if tls is not None:
                try:
                    sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except OSError:
                    pass
            if isinstance(sock, ssl.SSLSocket):
                head = _tls_peek(sock)
                if not head:  # the TLS handshake failed (e.g. the client refused the certificate)
                    with self._cond:
                        self.tls_failures += 1
                        self._cond.notify_all()
                    try:
                        sock.close()
                    finally:
                        _forget_handler_thread(server)
                    return
            else:
                head = b""
                try:
                    sock.settimeout(10)
                    deadline = time.monotonic() + 10
                    while b"\r\n" not in head and len(head) < _PEEK and time.monotonic() < deadline:
                        head = sock.recv(_PEEK, socket.MSG_PEEK)
                        if not head:
                            break
                        if b"\r\n" not in head:
                            time.sleep(0.005)  # part of a request line: wait for the rest of it
                except OSError:
                    pass
            if head.startswith((b"POST ", b"OPTIONS ")) or self._serves_get(head):
                try:
                    self._serve_http(sock, addr)
                finally:
                    _forget_handler_thread(server)
            elif isinstance(sock, ssl.SSLSocket):
                # python-websockets select()s on its socket before reading, which misses bytes
                # already decrypted: give it a plain socket, bridged to the TLS one.
                inner(_tls_bridge(sock, head), addr)
            else:
                sock.settimeout(None)
                inner(sock, addr)

        server.handler = dispatch  # type: ignore[method-assign]
        return self

    def on_start(self) -> None:
        assert self.scheduler is not None
        self.scheduler.every(0.02, self._tick)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            socks = list(self._http_socks)
            self._lp_cond.notify_all()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        super().stop()

    # -- scripting --------------------------------------------------------------------------

    def publish(self, channel: str, data: Any) -> int:
        """Deliver ``{"channel", "data"}`` to every session subscribed to a matching pattern;
        returns how many sessions got it."""
        with self._lock:
            targets = [s for s in self.sessions.values() if any(_matches(p, channel) for p in s.subscriptions)]
            for s in targets:
                self._deliver(s, {"channel": channel, "data": data, "id": str(next(self._ids))})
        return len(targets)

    def fail_post(self, outcome: int | str | None, *, channel: str | None = None, count: int = 1) -> None:
        """Fail the next ``count`` long-polling POSTs carrying a message on ``channel`` (any POST
        when None) without processing them: ``outcome`` is an HTTP status to answer (``500``,
        ``403``...), ``"drop"`` (the TCP connection is closed with no answer, as a server or a
        proxy that dies mid-request) or ``"hang"`` (read, never answered until the server stops,
        as a server that froze); ``None`` cancels what is left of the plan.  Their bodies are
        kept in :attr:`failed_posts`.

        >>> server.fail_post(500, channel="/chat/room")            # doctest: +SKIP
        >>> client.publish("/chat/room", {"n": 1})                  # doctest: +SKIP   -> HTTP 500
        """
        if outcome not in (None, "drop", "hang") and not (isinstance(outcome, int) and 100 <= outcome <= 599):
            raise ValueError(f"outcome must be an HTTP status, 'drop', 'hang' or None, got {outcome!r}")
        with self._lock:
            self._fail_plan = None if outcome is None or count <= 0 else (outcome, channel, count)

    def _planned_failure(self, body: str) -> int | str | None:
        """The outcome :meth:`fail_post` planned for this POST body, if any (and count it)."""
        with self._lock:
            plan = self._fail_plan
            if plan is None:
                return None
            outcome, channel, count = plan
            if channel is not None:
                try:
                    decoded = json.loads(body)
                except ValueError:
                    return None
                messages = decoded if isinstance(decoded, list) else [decoded]
                if not any(isinstance(m, dict) and m.get("channel") == channel for m in messages):
                    return None
            self._fail_plan = (outcome, channel, count - 1) if count > 1 else None
            self.failed_posts.append(body)
            return outcome

    def expire_sessions(self) -> int:
        """Forget every session (the next connect gets ``402::Unknown client``)."""
        with self._lock:
            n = len(self.sessions)
            for s in self.sessions.values():
                # A held connect returns (as faye's does); the next one meets "unknown client".
                self._flush_held(s, force=True)
            self.sessions.clear()
            self._lp_cond.notify_all()
        return n

    def advise_none(self, enabled: bool = True) -> None:
        """Handshake and connect replies say ``reconnect: none`` (unsuccessful)."""
        with self._lock:
            self._advice_none = enabled
            self._lp_cond.notify_all()
            for s in self.sessions.values():
                self._flush_held(s, force=True)

    def hold_connects(self, enabled: bool = True) -> None:
        """Never answer ``/meta/connect`` (until disabled): the client must detect it."""
        with self._lock:
            self._hold_forever = enabled
            if not enabled:
                # Connects held so far were given up by the client: release them, and deliver
                # nothing through them (it would be written to a connection nobody reads).
                for s in self.sessions.values():
                    s.generation += 1
                    s.held = None
                self._lp_cond.notify_all()

    def subscribed(self, channel: str) -> bool:
        with self._lock:
            return any(channel in s.subscriptions for s in self.sessions.values())

    def wait_for_subscription(self, channel: str, timeout: float = 5.0, *, count: int = 1) -> None:
        """Wait until ``count`` live sessions are subscribed to ``channel``."""
        deadline = time.monotonic() + timeout * timing_scale()
        while True:
            with self._lock:
                n = sum(1 for s in self.sessions.values() if channel in s.subscriptions)
            if n >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no subscription to {channel!r} within {timeout}s")
            with self._cond:
                self._cond.wait(0.05)

    def bayeux_messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Every Bayeux message received (both transports), optionally of one channel."""
        out: list[dict[str, Any]] = []
        with self._cond:
            frames = [m.json for m in self.received]
        for f in frames:
            for m in f if isinstance(f, list) else [f]:
                if isinstance(m, dict) and (channel is None or m.get("channel") == channel):
                    out.append(m)
        return out

    def wait_for_meta(
        self,
        channel: str,
        timeout: float = 5.0,
        *,
        since: int = 0,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Wait for a received Bayeux message on ``channel`` (searching frames from ``since``)."""

        def pick(m: Received) -> dict[str, Any] | None:
            f = m.json
            for x in f if isinstance(f, list) else [f]:
                if isinstance(x, dict) and x.get("channel") == channel and (where is None or where(x)):
                    return x
            return None

        found = self.wait_for_message(lambda m: pick(m) is not None, timeout, since=since)
        result = pick(found)
        assert result is not None
        return result

    # -- the protocol (shared by both transports) ------------------------------------------

    def _advice(self) -> dict[str, Any]:
        if self._advice_none:
            return {"reconnect": "none", "interval": 0}
        return {"reconnect": "retry", "interval": int(self.interval * 1000), "timeout": int(self.timeout * 1000)}

    def _process(
        self, messages: list[Any], transport: str, conn: FakeConnection | None
    ) -> tuple[list[dict[str, Any]], tuple[Session, dict[str, Any], float] | None]:
        """Answer ``messages``; returns the replies and, for a held connect, (session, reply, hold)."""
        replies: list[dict[str, Any]] = []
        held = None
        with self._lock:
            for m in messages:
                if not isinstance(m, dict) or not isinstance(m.get("channel"), str):
                    replies.append({"channel": "/meta/unsuccessful", "successful": False, "error": "400::bad message"})
                    continue
                ch = m["channel"]
                rid = m.get("id")
                reply: dict[str, Any] = {"channel": ch, "successful": True}
                if rid is not None:
                    reply["id"] = rid
                session = self.sessions.get(m.get("clientId") or "")
                if ch == "/meta/handshake":
                    self.handshake_count += 1
                    if self._advice_none:
                        reply.update(successful=False, error="403::handshake denied", advice=self._advice())
                    else:
                        cid = secrets.token_hex(8)
                        self.sessions[cid] = Session(cid, transport, last_seen=time.monotonic())
                        types = ["websocket", "long-polling"] if self.websocket else ["long-polling"]
                        reply.update(version="1.0", supportedConnectionTypes=types, clientId=cid, advice=self._advice())
                    replies.append(reply)
                    continue
                if session is None:
                    reply.update(
                        successful=False, error="402::Unknown client", advice={"reconnect": "handshake", "interval": 0}
                    )
                    replies.append(reply)
                    continue
                session.last_seen = time.monotonic()
                if ch == "/meta/connect":
                    session.connects += 1
                    session.transport = transport
                    if transport == "websocket":
                        session.ws = conn
                    if self._advice_none:
                        reply.update(successful=False, error="403::go away", advice=self._advice())
                        replies.append(reply)
                        continue
                    advice = m.get("advice")
                    hold = self.timeout
                    if isinstance(advice, dict) and isinstance(advice.get("timeout"), (int, float)):
                        hold = min(hold, advice["timeout"] / 1000.0)
                    session.generation += 1
                    self._lp_cond.notify_all()  # a connect held for an older request returns now
                    if session.connects == 1 or (isinstance(advice, dict) and "timeout" in advice):
                        reply["advice"] = self._advice()
                    if self._hold_forever:
                        hold = 1e9
                    if hold <= 0 and not self._hold_forever:
                        replies.append(reply)
                        if transport == "websocket":
                            replies.extend(self._drain(session))
                    else:
                        held = (session, reply, hold)
                elif ch == "/meta/subscribe":
                    sub = m.get("subscription")
                    reply["subscription"] = sub
                    if not isinstance(sub, str):
                        reply.update(successful=False, error="400::subscription missing")
                    elif any(_matches(p, sub) for p in self.forbidden):
                        reply.update(successful=False, error=f"403:{sub}:Forbidden")
                    else:
                        session.subscriptions.add(sub)
                        self._cond_notify()
                    replies.append(reply)
                elif ch == "/meta/unsubscribe":
                    sub = m.get("subscription")
                    reply["subscription"] = sub
                    session.subscriptions.discard(sub)  # type: ignore[arg-type]
                    replies.append(reply)
                elif ch == "/meta/disconnect":
                    self.sessions.pop(session.client_id, None)
                    if session.held is not None:
                        self._flush_held(session, force=True)
                    self._lp_cond.notify_all()
                    replies.append(reply)
                elif ch.startswith("/meta/"):
                    reply.update(successful=False, error=f"400:{ch}:unknown meta channel")
                    replies.append(reply)
                else:
                    replies.append(reply)
                    data = m.get("data")
                    targets = [s for s in self.sessions.values() if any(_matches(p, ch) for p in s.subscriptions)]
                    for s in targets:
                        self._deliver(s, {"channel": ch, "data": data, "id": str(next(self._ids))})
        return replies, held

    def _cond_notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _deliver(self, session: Session, message: dict[str, Any]) -> None:
        ws = session.ws
        if session.transport == "websocket" and ws is not None and not ws.closed.is_set():
            if ws.send([message]):
                return
        session.queue.append(message)
        self._lp_cond.notify_all()

    def _drain(self, session: Session) -> list[dict[str, Any]]:
        out, session.queue = session.queue, []
        return out

    def _flush_held(self, session: Session, *, force: bool = False) -> None:
        held = session.held
        if held is None:
            return
        conn, reply, deadline = held
        if force or time.monotonic() >= deadline:
            session.held = None
            if self._advice_none:
                reply = {**reply, "successful": False, "error": "403::go away", "advice": self._advice()}
            conn.send([reply, *self._drain(session)])

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            for s in list(self.sessions.values()):
                if s.held is not None:
                    if s.held[0].closed.is_set():
                        s.held = None
                    elif not self._hold_forever:
                        self._flush_held(s)
                    continue
                if s.polling:
                    continue
                if now - s.last_seen > self.timeout + self.max_interval:
                    log.debug("session %s expired", s.client_id)
                    del self.sessions[s.client_id]

    # -- websocket side ---------------------------------------------------------------------

    def check_request(self, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        if not self._authorized(headers):
            return (401, "Unauthorized")
        if not self.websocket:
            return (400, "websocket not supported")
        return None

    def on_message(self, conn: FakeConnection, text: str) -> None:
        try:
            decoded = json.loads(text)
        except ValueError:
            conn.send([{"channel": "/meta/unsuccessful", "successful": False, "error": "400::not JSON"}])
            return
        messages = decoded if isinstance(decoded, list) else [decoded]
        replies, held = self._process(messages, "websocket", conn)
        if replies:
            conn.send(replies)
        if held is not None:
            session, reply, hold = held
            with self._lock:
                session.held = (conn, reply, time.monotonic() + hold)
        if any(isinstance(m, dict) and m.get("channel") == "/meta/disconnect" for m in messages):
            conn.close(1000, "disconnected")  # as faye does

    def on_disconnect(self, conn: FakeConnection) -> None:
        with self._lock:
            for s in self.sessions.values():
                if s.ws is conn:
                    s.ws = None
                    s.held = None

    # -- long-polling side -----------------------------------------------------------------

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.basic_auth is None and self.required_cookie is None:
            return True
        lower = {k.lower(): v for k, v in headers.items()}
        if self.basic_auth is not None:
            token = base64.b64encode(f"{self.basic_auth[0]}:{self.basic_auth[1]}".encode()).decode()
            if lower.get("authorization") == f"Basic {token}":
                return True
        if self.required_cookie is not None:
            cookies = [c.strip() for c in lower.get("cookie", "").split(";")]
            if self.required_cookie in cookies:
                return True
        return False

    def _serves_get(self, head: bytes) -> bool:
        """A plain ``GET`` of this path is an HTTP request of ours, not a websocket upgrade."""
        if not head.startswith(b"GET "):
            return False
        path = head[4:].split(b" ", 1)[0].split(b"?", 1)[0].decode("latin-1")
        return path in self.rest_paths

    #: Paths served to plain HTTP ``GET`` requests by :meth:`handle_get` (a REST side).
    rest_paths: frozenset[str] = frozenset()

    def handle_get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
        """Answer a ``GET`` of one of :attr:`rest_paths`: (status, headers, body)."""
        return 404, {}, "not found\n"

    def _serve_http(self, sock: socket.socket, addr: Any) -> None:
        with self._lock:
            if self._stopping:
                sock.close()
                return
            self._http_socks.add(sock)
        try:
            sock.settimeout(None)
            _LongPollHandler(sock, addr, self)  # type: ignore[arg-type]
        except Exception:  # pragma: no cover - the client went away
            pass
        finally:
            with self._lock:
                self._http_socks.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _handle_post(self, path: str, headers: dict[str, str], body: str) -> tuple[int, dict[str, str], str]:
        conn_id = -next(self._http_ids)
        with self._cond:
            self.http_requests.append(HttpRequest(path, headers, body, time.monotonic()))
            self.received.append(Received(conn_id, body, time.monotonic()))
            self._cond.notify_all()
        extra: dict[str, str] = {}
        if self.set_cookie and self.set_cookie.split("=", 1)[0] not in headers.get("Cookie", headers.get("cookie", "")):
            extra["Set-Cookie"] = self.set_cookie + "; Path=/; HttpOnly"
        if path.split("?", 1)[0].rstrip("/") != self.path.rstrip("/"):
            return 404, extra, "not found\n"
        failure = self._planned_failure(body)
        if failure == "hang":
            with self._lock:
                while not self._stopping:
                    self._lp_cond.wait(0.5)
            failure = "drop"
        if failure == "drop":
            return 0, {}, ""  # the handler closes the connection without an answer
        if isinstance(failure, int):
            return failure, extra, f"failed on purpose (HTTP {failure})\n"
        refusal = self._refuse_http or self.check_request_http(path, headers)
        if refusal is not None:
            if self._refuse_http is not None:
                extra.update(self._refuse_headers)
            return refusal[0], extra, refusal[1] + "\n"
        try:
            decoded = json.loads(body)
        except ValueError:
            return 400, extra, "not JSON\n"
        messages = decoded if isinstance(decoded, list) else [decoded]
        replies, held = self._process(messages, "long-polling", None)
        if held is not None:
            session, reply, hold = held
            deadline = time.monotonic() + hold
            with self._lock:
                session.polling = True
                generation = session.generation
                try:
                    # Hold the connect until it times out or a message is waiting (then answer
                    # at once with the messages, as CometD and faye do).
                    while not self._stopping and session.client_id in self.sessions and not self._advice_none:
                        if session.queue or session.generation != generation:
                            break
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 and not self._hold_forever:
                            break
                        self._lp_cond.wait(0.5 if self._hold_forever else remaining)
                finally:
                    session.polling = False
                    session.last_seen = time.monotonic()
                if self._stopping:
                    return 503, extra, "stopping\n"
                if self._advice_none:
                    reply = {**reply, "successful": False, "error": "403::go away", "advice": self._advice()}
                elif session.client_id not in self.sessions:
                    reply = {
                        **reply,
                        "successful": False,
                        "error": "402::Unknown client",
                        "advice": {"reconnect": "handshake", "interval": 0},
                    }
                replies.append(reply)
                if session.generation == generation:  # a superseded request delivers nothing
                    replies.extend(self._drain(session))
        else:
            with self._lock:
                for m in messages:
                    if isinstance(m, dict) and m.get("channel") == "/meta/connect":
                        s = self.sessions.get(m.get("clientId") or "")
                        if s is not None:
                            replies.extend(self._drain(s))
        return 200, extra, json.dumps(replies, separators=(",", ":"))

    #: ``(status, body)`` to refuse every long-polling POST (None: serve them).
    _refuse_http: tuple[int, str] | None = None
    _refuse_headers: dict[str, str] = {}

    def refuse_http(self, status: int | None, body: str = "refused", headers: dict[str, str] | None = None) -> None:
        """Refuse the next long-polling POSTs with HTTP ``status`` (``None`` serves them again),
        with ``headers`` (e.g. a redirect's ``Location``)."""
        self._refuse_headers = dict(headers or {})
        self._refuse_http = None if status is None else (status, body)

    def check_request_http(self, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        """Like :meth:`check_request`, for long-polling POSTs (default: the same auth rules)."""
        if not self._authorized(headers):
            return (401, "Unauthorized")
        return None


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two connected TCP sockets on 127.0.0.1, not an AF_UNIX socketpair(): python-websockets
    before 17 (the last for Python 3.10 is 16.1.1) sets TCP_NODELAY on the socket it serves and
    silently drops the connection when that fails."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        outer = socket.create_connection(listener.getsockname())
        while True:
            inner, addr = listener.accept()
            if addr == outer.getsockname():
                break
            inner.close()  # another local process found the port first
    for s in (inner, outer):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    return inner, outer


def _tls_bridge(tls: ssl.SSLSocket, head: bytes) -> socket.socket:
    """A plain socket whose peer end is pumped to and from ``tls`` (``head`` first) by a thread."""
    inner, outer = _tcp_pair()
    tls.settimeout(None)
    for name in ("recv", "recv_into"):
        tls.__dict__.pop(name, None)  # _tls_peek's replay of ``head``: sent below instead

    def pump() -> None:
        try:
            data = head
            while tls.pending():  # decrypted already: select() would not see it
                data += tls.recv(tls.pending())
            outer.sendall(data)
            while True:
                ready, _, _ = select.select([tls, outer], [], [])
                if tls in ready:
                    data = tls.recv(65536)
                    while data and tls.pending():
                        data += tls.recv(tls.pending())
                    if not data:
                        return
                    outer.sendall(data)
                if outer in ready:
                    data = outer.recv(65536)
                    if not data:
                        return
                    tls.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in (outer, tls):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    threading.Thread(target=pump, name="realtime_sync-fake-tls-bridge", daemon=True).start()
    return inner


def _tls_peek(sock: ssl.SSLSocket) -> bytes:
    """Complete the TLS handshake and read the first bytes of the request; they are given back
    by the socket's next ``recv``/``recv_into`` (TLS has no ``MSG_PEEK``).  A failed handshake
    (a client refusing the certificate) returns b"" and leaves the socket closed."""
    head = b""
    try:
        sock.settimeout(10)
        sock.do_handshake()
        while b"\r\n" not in head and len(head) < _PEEK:
            chunk = sock.recv(_PEEK - len(head))
            if not chunk:
                break
            head += chunk
    except (OSError, ValueError):
        pass
    if not head:
        return head
    pending = [head]
    real_recv, real_recv_into = sock.recv, sock.recv_into

    def recv(bufsize: int = 1024, flags: int = 0) -> bytes:
        if pending:
            data = pending.pop()
            if len(data) > bufsize:
                pending.append(data[bufsize:])
                data = data[:bufsize]
            return data
        return real_recv(bufsize, flags)

    def recv_into(buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if pending:
            data = pending.pop()
            n = min(len(data), nbytes or len(buffer), len(buffer))
            buffer[:n] = data[:n]
            if n < len(data):
                pending.append(data[n:])
            return n
        return real_recv_into(buffer, nbytes, flags)

    sock.recv = recv  # type: ignore[method-assign,assignment]
    sock.recv_into = recv_into  # type: ignore[method-assign,assignment]
    return head


class _LongPollHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler for the long-polling POSTs (one socket, many requests)."""

    protocol_version = "HTTP/1.1"
    server: Any
    # One write per response (headers + body) and no Nagle: else delayed ACKs add ~40 ms.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def __init__(self, sock: socket.socket, addr: Any, fake: FakeBayeuxServer) -> None:
        self.fake = fake
        super().__init__(sock, addr, fake)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        headers = dict(self.headers.items())
        with self.fake._cond:
            self.fake.http_requests.append(HttpRequest(self.path, headers, "", time.monotonic(), "GET"))
            self.fake._cond.notify_all()
        status, extra, text = self.fake.handle_get(self.path, headers)
        self._answer(status, extra, text)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        headers = dict(self.headers.items())
        status, extra, text = self.fake._handle_post(self.path, headers, body)
        if status == 0:  # fail_post("drop"): no answer at all
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._answer(status, extra, text)

    def _answer(self, status: int, extra: dict[str, str], text: str) -> None:
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8" if status == 200 else "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in extra.items():
            self.send_header(k, v)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="fake"')
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()


class FakeGenesysServer(FakeBayeuxServer):
    """A fake GWS notification endpoint (``/api/v2/notifications``) with chat helpers.

    >>> with FakeGenesysServer() as gws:                          # doctest: +SKIP
    ...     client = GenesysChatClient(gws.http_url)
    ...     client.start()
    ...     gws.wait_for_subscription("/v2/me/chats")
    ...     gws.chat_state_change("0000Wa9CAM6W00J", "StatusChange", state="Chatting")
    """

    path = "/api/v2/notifications"
    CHATS = "/v2/me/chats"
    rest_paths = frozenset({"/api/v2/me"})

    def __init__(self, *args: Any, csrf: bool = False, **kwargs: Any) -> None:
        """``csrf=True``: CSRF protection on, as a GWS node with ``enableCsrfProtection: true``
        (see :meth:`handle_get`); every other argument is :class:`FakeBayeuxServer`'s."""
        super().__init__(*args, **kwargs)
        self.csrf = csrf
        #: HTTP sessions: JSESSIONID -> its CSRF token (the token shares the session's life).
        self.http_sessions: dict[str, str] = {}
        self._expired: set[str] = set()
        self._refuse_csrf = False
        #: Tokens handed out by ``GET /api/v2/me``.
        self.csrf_issued: list[str] = []

    # -- the REST side: GET /api/v2/me, and CSRF protection ----------------------------------

    def handle_get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
        """``GET /api/v2/me`` as GWS answers it: the user (Basic or session cookie required);
        the HTTP session's cookie (``JSESSIONID``, a new session when the request has no live
        one) and, with ``csrf``, the ``X-CSRF-HEADER`` / ``X-CSRF-TOKEN`` response headers."""
        if not self._authorized(headers):
            return 401, {}, "Unauthorized\n"
        extra: dict[str, str] = {}
        with self._lock:
            jsid = self._jsessionid(headers)
            if jsid is None or jsid in self._expired:
                jsid = secrets.token_hex(12)
                extra["Set-Cookie"] = f"JSESSIONID={jsid}; Path=/; HttpOnly"
            token = self.http_sessions.get(jsid)
            if token is None:
                token = self.http_sessions[jsid] = str(uuid.uuid4())
            if self.csrf:
                extra["X-CSRF-HEADER"] = "X-CSRF-TOKEN"
                extra["X-CSRF-TOKEN"] = token
                self.csrf_issued.append(token)
        user = {
            "id": "agent1-id",
            "userName": "agent1",
            "firstName": "Agent",
            "lastName": "One",
            "roles": ["ROLE_AGENT"],
        }
        return 200, extra, json.dumps({"statusCode": 0, "user": user})

    def _authorized(self, headers: dict[str, str]) -> bool:
        # The session cookie of a REST session (opened by an authenticated GET) authenticates.
        if super()._authorized(headers):
            return True
        with self._lock:
            return self._jsessionid(headers) in self.http_sessions

    def check_request_http(self, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        refusal = super().check_request_http(path, headers)
        if refusal is not None or not self.csrf:
            return refusal
        # A POST must carry its HTTP session's token: a missing cookie, an expired session or
        # a stale token is 403 (the websocket upgrade is a GET: GWS does not check it).
        lower = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            jsid = self._jsessionid(headers)
            token = self.http_sessions.get(jsid or "")
            if self._refuse_csrf or token is None or lower.get("x-csrf-token") != token:
                return (403, "Missing or invalid Csrf token")
        return None

    def rotate_csrf(self) -> None:
        """Every HTTP session expires (a session timeout, a node restart): the tokens handed
        out are refused from now on; a ``GET /api/v2/me`` opens a new session with a new one."""
        with self._lock:
            self._expired.update(self.http_sessions)
            self.http_sessions.clear()

    def refuse_csrf(self, enabled: bool = True) -> None:
        """Refuse every token (as a cluster whose sessions do not follow the client from node to
        node): a client cannot recover by fetching a new one."""
        with self._lock:
            self._refuse_csrf = enabled

    @staticmethod
    def _jsessionid(headers: dict[str, str]) -> str | None:
        cookie = next((v for k, v in headers.items() if k.lower() == "cookie"), "")
        for part in cookie.split(";"):
            name, _, value = part.strip().partition("=")
            if name == "JSESSIONID" and value:
                return value
        return None

    def chat(self, chat_id: str, state: str = "Chatting", **extra: Any) -> dict[str, Any]:
        """A chat resource as GWS sends it."""
        return {
            "id": chat_id,
            "state": state,
            "capabilities": ["SendMessage", "Complete", "Leave"],
            "uri": f"http://{self.host}:{self.port}/api/v2/chats/{chat_id}",
            "participants": [
                {"nickname": "Customer1", "type": "Customer", "participantId": "007352CE982D031B"},
                {"nickname": "Agent1", "type": "Agent", "participantId": "007352CE984F0321"},
            ],
            "userData": {"key1": "value1"},
            **extra,
        }

    def chat_state_change(
        self,
        chat_id: str,
        notification_type: str = "StatusChange",
        *,
        state: str = "Chatting",
        reference_id: int | None = None,
        **chat: Any,
    ) -> int:
        """Publish a ``ChatStateChangeMessage`` on /v2/me/chats."""
        data: dict[str, Any] = {
            "messageType": "ChatStateChangeMessage",
            "notificationType": notification_type,
            "chat": self.chat(chat_id, state, **chat),
        }
        if reference_id is not None:
            data["referenceId"] = reference_id
        return self.publish(self.CHATS, data)

    def new_messages(
        self,
        chat_id: str,
        texts: Iterable[str],
        *,
        start_index: int = 1,
        chat_path: bool = False,
        sender: str = "Agent1",
    ) -> int:
        """Publish a ``MessageLogUpdated`` (NewMessages) with one entry per text."""
        msgs = []
        for i, text in enumerate(texts):
            index = start_index + i
            msgs.append(
                {
                    "index": index,
                    "from": {"nickname": sender, "type": "Agent", "participantId": "007352CE72D50290"},
                    "text": text,
                    "visibility": "All",
                    "timestamp": "2014-01-09 11:58:12.035+0200",
                    "type": "Text",
                    "timestampSeconds": 1389261492035 + index,
                }
            )
        data: dict[str, Any] = {"messageType": "MessageLogUpdated", "notificationType": "NewMessages", "messages": msgs}
        if chat_path:
            data["chatPath"] = f"/chats/{chat_id}"
        else:
            data["chatUri"] = f"http://{self.host}:{self.port}/api/v2/chats/{chat_id}"
        return self.publish(self.CHATS, data)
