"""Bayeux long-polling on the hub's loop thread: no thread per session.

The standalone long-polling connection spends two blocking worker threads per session (the
held ``/meta/connect`` and the control requests).  On a hub that would be 2,000 threads for
1,000 sessions.  This connection does the same over two non-blocking
:class:`~realtime_sync._http11.HttpConnection` (h11) sockets, driven by the loop:

* the two sockets live in a poller of the connection's own (an epoll object on Linux, used
  directly: the ``selectors`` module's keys and maps cost about a kilobyte and a few µs per
  call per session; kqueue through ``selectors`` elsewhere), whose descriptor is what
  :meth:`fileno` returns: the engine watches one descriptor per connection, as for a
  websocket, and the kernel reports it readable when either socket is ready for what its
  request waits for (connect, TLS, send, response), or an idle kept-alive socket was closed;
* :meth:`receive` advances both requests and returns the bodies of the finished ones (a
  non-200 status is an :class:`~realtime_sync.protocols.base.HttpResult` for the adapter);
* a held frame (``/meta/connect``) goes on the held socket, anything else on the control
  socket; each socket carries one request at a time, the others wait in order; a request that
  fails on a kept-alive socket after it went out is sent again only when the adapter marked its
  frame idempotent (see :class:`~realtime_sync.protocols.base.IdempotentFrame`), else the
  session ends and the adapter reports what was in it (a publish: an ``error`` of kind
  ``publish``);
* what finishes outside :meth:`receive` (a response already there when :meth:`send` wrote its
  request, a connect refused at once) is reported by waking our own selector through an
  eventfd, so the engine reads it at once instead of never;
* :meth:`open` connects the control socket with a blocking connect on the hub's handshake
  thread, so an unreachable server fails there, like a websocket handshake;
* a request's own deadline (``connect_timeout`` for a proxy that accepted the connection and
  never answers; a control request's read timeout) is a timer on the hub's loop (``loop``), which
  wakes the session through the same eventfd: the engine's timers know only the adapter's;
* a clean close of the client's lingers (:meth:`start_closing`, :meth:`drain_closing`, run by
  :meth:`~realtime_sync.engine.Loop.linger`): the goodbye goes out and the answers still out
  are read before the sockets close, or a socket would end with a TCP reset.

Cookies (GWS' JSESSIONID, CometD's BAYEUX_BROWSER) come from and go to the client's shared jar.
"""

from __future__ import annotations

import os
import select
import selectors
import time
from typing import Any, Union

from ._cookies import CookieJar
from ._csrf import CsrfToken
from ._http11 import HttpConnection, HttpFailure, HttpResponse
from ._http11 import HttpResult as _HttpOutcome
from ._wsconn import FrameError
from .config import ConnectOptions
from .exceptions import ConnectError
from .protocols.base import ConnectRequest, HttpResult
from .transport_longpoll import LongPollingBase

__all__ = ["HubLongPollingConnection"]

_CONTROL_READ_TIMEOUT = 60.0

Received = list[Union[str, FrameError, HttpResult]]

_EPOLL = hasattr(select, "epoll")
_EPOLL_EVENTS = {
    selectors.EVENT_READ: select.EPOLLIN if _EPOLL else 0,
    selectors.EVENT_WRITE: select.EPOLLOUT if _EPOLL else 0,
}


class _Poller:
    """The session's readiness set: ``register``/``modify``/``unregister`` a descriptor with
    ``selectors`` event bits and a value, ``ready()`` the values of the ready ones."""

    __slots__ = ("_data", "_poll")

    def __init__(self) -> None:
        self._data: dict[int, Any] = {}
        if _EPOLL:
            self._poll: Any = select.epoll()
            return
        sel = selectors.DefaultSelector()  # pragma: no cover - not Linux
        if not hasattr(sel, "fileno"):  # pragma: no cover - poll/select have no descriptor
            sel.close()
            raise ConnectError("long-polling on a hub needs epoll or kqueue")
        self._poll = sel  # pragma: no cover

    def fileno(self) -> int:
        return int(self._poll.fileno())

    def register(self, fd: int, events: int, data: Any) -> None:
        if _EPOLL:
            self._poll.register(fd, _EPOLL_EVENTS[events])
        else:  # pragma: no cover
            self._poll.register(fd, events, data)
        self._data[fd] = data

    def modify(self, fd: int, events: int, data: Any) -> None:
        if _EPOLL:
            self._poll.modify(fd, _EPOLL_EVENTS[events])
        else:  # pragma: no cover
            self._poll.modify(fd, events, data)
        self._data[fd] = data

    def unregister(self, fd: int) -> None:
        self._data.pop(fd, None)
        try:
            self._poll.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass  # closed already (the kernel forgot it)

    def ready(self) -> list[Any]:
        if _EPOLL:
            data = self._data
            return [data[fd] for fd, _ in self._poll.poll(0) if fd in data]
        return [key.data for key, _ in self._poll.select(0)]  # pragma: no cover

    def close(self) -> None:
        self._poll.close()


class _Role:
    """One of the session's two HTTP connections (``held`` for the ``/meta/connect`` the server
    holds, ``control`` for the rest), its waiting requests, and how its socket is registered."""

    __slots__ = ("conn", "held", "queue", "watched")

    def __init__(self, conn: HttpConnection, held: bool) -> None:
        self.conn = conn
        self.held = held
        # (body, idempotent): a role rarely holds more than one request
        self.queue: list[tuple[bytes, bool]] = []
        self.watched: tuple[int, int, int] | None = None  # (fd, events, socket serial) registered


class HubLongPollingConnection(LongPollingBase):
    """One Bayeux long-polling session on the hub's loop (see the module docstring)."""

    __slots__ = (
        "_control",
        "_ended",
        "_held",
        "_in_receive",
        "_inbox",
        "_loop",
        "_poller",
        "_roles",
        "_timer",
        "_timer_at",
        "_wake_fd",
        "_wake_w",
    )

    def __init__(
        self, cookies: CookieJar | None = None, name: str = "client", csrf: CsrfToken | None = None, loop: Any = None
    ) -> None:
        super().__init__(cookies, name, csrf)
        #: The hub's loop (``call_at``, ``cancel``; loop thread only), for the requests' deadlines.
        self._loop = loop
        self._timer: Any = None
        self._timer_at: float | None = None
        self._poller: _Poller | None = None
        self._roles: tuple[_Role, ...] = ()
        self._control: _Role | None = None
        self._held: _Role | None = None
        self._inbox: Received = []
        self._ended = False
        self._wake_fd = self._wake_w = -1
        self._in_receive = False

    # -- opening (a handshake thread) -------------------------------------------------------

    def open(self, request: ConnectRequest, options: ConnectOptions) -> None:
        url = self._open_session(request, options)  # the CSRF token, if any, is fetched here
        headers = self._headers
        limit = options.max_frame_size or 0
        control = HttpConnection(
            url, options, self.cookies, max_body=limit, headers=headers, read_timeout=_CONTROL_READ_TIMEOUT
        )
        # The held request has no read timeout of its own: the server holds it up to
        # advice.timeout, and the adapter's deadline (timeout + network allowance) closes us.
        held = HttpConnection(url, options, self.cookies, max_body=limit, headers=headers, read_timeout=None)
        self._watch(control)  # close() (abort()) ends a connect stuck in a silent proxy at once
        try:
            control.connect_blocking()  # raises ConnectError: the engine's backoff applies
        finally:
            self._opening = None
        try:
            poller = _Poller()
        except ConnectError:  # pragma: no cover - not Linux, no kqueue
            control.close()
            raise
        if hasattr(os, "eventfd"):
            self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - not Linux: a pipe does the same with two descriptors
            self._wake_fd, self._wake_w = os.pipe()
            os.set_blocking(self._wake_fd, False)
            os.set_blocking(self._wake_w, False)
        poller.register(self._wake_fd, selectors.EVENT_READ, None)
        self._poller = poller
        self._control, self._held = _Role(control, False), _Role(held, True)
        self._roles = (self._control, self._held)
        self._sync(self._control)  # the idle kept-alive socket is watched for a close
        self.last_activity = time.monotonic()

    # -- the loop thread ---------------------------------------------------------------------

    def fileno(self) -> int:
        poller = self._poller
        return poller.fileno() if poller is not None else -1

    def send(self, text: str) -> None:
        if self._ended or self.closed:
            return  # the end is reported by receive(); nothing to send it on
        role = self._held if getattr(text, "held", False) else self._control  # the adapter marks held frames
        assert role is not None
        # Whether it may be sent twice is the adapter's call too (IdempotentFrame, HeldFrame).
        role.queue.append((text.encode("utf-8"), getattr(text, "idempotent", False)))
        self._pump(role, time.monotonic())

    def receive(self) -> Received | None:
        poller = self._poller
        if poller is None:
            return None
        now = time.monotonic()
        self._in_receive = True
        try:
            for role in poller.ready():
                if role is None:  # our own wake-up
                    try:
                        os.read(self._wake_fd, 8)
                    except BlockingIOError:
                        pass
                    continue
                self._outcome(role, role.conn.on_ready(0, now), now)
            for role in self._roles:
                deadline = role.conn.deadline
                if deadline is not None and deadline <= now:
                    self._outcome(role, role.conn.check(now), now)
        finally:
            self._in_receive = False
        self._arm()
        items = self._inbox
        if items:
            self._inbox = []
            return items
        if self._ended:
            self.closed = True
            return None
        return items  # (empty)

    def start_closing(self, code: int = 1000, reason: str = "") -> bool:
        """A clean close of ours (the goodbye, ``/meta/disconnect``, just queued): True while a
        request is still out or waiting, and the caller reads on (:meth:`drain_closing` each
        time :meth:`fileno` is readable, as :meth:`~realtime_sync.engine.Loop.linger` does)
        until every answer is in, then calls :meth:`close`; False: nothing is out, close now.

        Closing a socket whose answer is unread (the held ``/meta/connect``, which the server
        answers on the disconnect, or the disconnect's own reply) makes the kernel send a TCP
        reset instead of a FIN, and the answer that comes after the close is refused with one:
        measured: 55 (faye) and 56 (cometd-nodejs-server) of 60 hub connections ended so."""
        if self._poller is None or self._ended or code != 1000 or not self.established:
            return False  # (not established: no answer yet, no session to say goodbye to)
        return self._busy()

    def drain_closing(self) -> bool:
        """Advance the requests still out and drop their answers (the adapter has let go);
        True once none is out (or the session failed): then :meth:`close`."""
        if self._poller is None:
            return True
        self.receive()
        return self._ended or not self._busy()

    def _busy(self) -> bool:
        return any(role.queue or role.conn.busy for role in self._roles)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close both sockets.  A goodbye (``/meta/disconnect``) queued just before went out
        already when its socket was free: its bytes are in the kernel.  Idempotent."""
        if self.closed and self._poller is None:
            return
        poller, self._poller = self._poller, None
        if self._timer is not None and self._loop is not None:
            self._loop.cancel(self._timer)
        self._timer = self._timer_at = None
        for role in self._roles:
            role.conn.close()
            role.watched = None
        if poller is not None:
            poller.close()
        for fd in (self._wake_fd, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_fd = self._wake_w = -1
        self.closed = True
        if not self.close_reason:
            self.close_reason = reason or "closed by the client"

    # -- internals ---------------------------------------------------------------------------

    def _pump(self, role: _Role, now: float) -> None:
        conn, q = role.conn, role.queue
        while q and not conn.busy and not self._ended:
            body, idempotent = q.pop(0)
            outcome = conn.request(body, now, idempotent=idempotent)
            if outcome is not None:
                self._outcome(role, outcome, now, pump=False)
        self._sync(role)

    def _outcome(self, role: _Role, outcome: _HttpOutcome | None, now: float, *, pump: bool = True) -> None:
        if outcome is None:
            self._sync(role)
            return
        if type(outcome) is HttpResponse:
            self.last_activity = now
            status = outcome.status
            location = outcome.header("location") if 300 <= status < 400 else None
            proxy = role.conn.proxy_refusal(status)
            self._inbox.append(self._response(status, outcome.reason, outcome.body, location, role.held, proxy))
        elif isinstance(outcome, HttpFailure):
            if outcome.kind == "too_big":
                self._inbox.append(FrameError(outcome.message))
            elif outcome.kind == "auth":  # a proxy refused our proxy credentials: the adapter's auth refusal
                self._inbox.append(HttpResult.proxy_refused(outcome.message, held=role.held, url=self._url))
            self._end(f"long-polling request to {self._url} failed: {outcome.message}")
        if not self._in_receive:
            self._wake()
        if pump:
            self._pump(role, now)
        else:
            self._sync(role)

    def _end(self, reason: str) -> None:
        self._ended = True
        if not self.close_reason:
            self.close_reason = reason
        # Always: inside receive() too, where the other role's response may be returned in the
        # same call; the end is then reported by the next receive(), which only this wake-up
        # brings (nothing else may become readable: found as a held session hanging until its
        # reply deadline, 1 run in ~30 under load).
        self._wake()

    def _wake(self) -> None:
        fd = self._wake_w if self._wake_w >= 0 else self._wake_fd
        if fd >= 0:
            try:
                os.write(fd, (1).to_bytes(8, "little"))  # an eventfd takes an 8-byte counter
            except (BlockingIOError, OSError):
                pass  # full: a wake-up is pending anyway

    def _arm(self) -> None:
        """A timer on the loop for the earliest request deadline (not already armed earlier):
        it wakes us, and :meth:`receive` fails the request that is due."""
        loop = self._loop
        if loop is None or self._poller is None:
            return
        due = [d for d in (role.conn.deadline for role in self._roles) if d is not None]
        if not due:
            return
        when = min(due)
        at = self._timer_at
        if at is not None and at <= when and self._timer is not None and not self._timer.cancelled:
            return
        if self._timer is not None:
            loop.cancel(self._timer)
        self._timer_at = when
        self._timer = loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self._wake()

    def _sync(self, role: _Role) -> None:
        """(Re)register the role's socket in our poller for what its request waits for."""
        poller = self._poller
        if poller is None:
            return
        if role.conn.deadline is not None:
            self._arm()
        conn = role.conn
        interest = conn.interest
        fd = conn.fileno() if interest else -1
        want = (fd, interest, conn.sockets_opened) if fd >= 0 else None
        have = role.watched
        if have == want:
            return
        if have is not None and want is not None and have[0] == want[0] and have[2] == want[2]:
            poller.modify(fd, interest, role)  # the same socket, now waiting for the other way
            role.watched = want
            return
        if have is not None:
            poller.unregister(have[0])
            role.watched = None
        if want is not None:
            poller.register(fd, interest, role)
            role.watched = want

    def __repr__(self) -> str:
        return f"<HubLongPollingConnection {self._url} closed={self.closed}>"
