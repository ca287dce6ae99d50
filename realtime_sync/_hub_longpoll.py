"""Bayeux long-polling on the hub's loop thread: no thread per session.

The standalone long-polling connection spends two blocking worker threads per session (the
held ``/meta/connect`` and the control requests).  On a hub that would be 2,000 threads for
1,000 sessions.  This connection does the same over two non-blocking
:class:`~realtime_sync._http11.HttpConnection` (h11) sockets, driven by the loop:

* the two sockets live in a selector of the connection's own (epoll on Linux, kqueue on BSD),
  whose descriptor is what :meth:`fileno` returns: the engine watches one descriptor per
  connection, as for a websocket, and the kernel reports it readable when either socket is
  ready for what its request waits for (connect, TLS, send, response);
* :meth:`receive` advances both requests and returns the bodies of the finished ones (a
  non-200 status is an :class:`~realtime_sync.protocols.base.HttpResult` for the adapter);
* a held frame (``/meta/connect``) goes on the held socket, anything else on the control
  socket; each socket carries one request at a time, the others wait in order;
* what finishes outside :meth:`receive` (a response already there when :meth:`send` wrote its
  request, a connect refused at once) is reported by waking our own selector through an
  eventfd, so the engine reads it at once instead of never;
* :meth:`open` connects the control socket with a blocking connect on the hub's handshake
  thread, so an unreachable server fails there, like a websocket handshake.

Cookies (GWS' JSESSIONID, CometD's BAYEUX_BROWSER) come from and go to the client's shared jar.
"""

from __future__ import annotations

import os
import selectors
import time
from typing import Union

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
_CONTROL, _HELD = "control", "held"

Received = list[Union[str, FrameError, HttpResult]]


class HubLongPollingConnection(LongPollingBase):
    """One Bayeux long-polling session on the hub's loop (see the module docstring)."""

    def __init__(self, cookies: CookieJar | None = None, name: str = "client", csrf: CsrfToken | None = None) -> None:
        super().__init__(cookies, name, csrf)
        self._sel: selectors.BaseSelector | None = None
        self._conns: dict[str, HttpConnection] = {}
        # Lists, not deques: a role rarely holds more than one request (a deque is 600 bytes).
        self._queues: dict[str, list[bytes]] = {_CONTROL: [], _HELD: []}
        self._registered: dict[str, tuple[int, int, int]] = {}
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
        control.connect_blocking()  # raises ConnectError: the engine's backoff applies
        sel = selectors.DefaultSelector()
        if not hasattr(sel, "fileno"):  # pragma: no cover - poll/select have no descriptor
            sel.close()
            control.close()
            raise ConnectError("long-polling on a hub needs epoll or kqueue")
        if hasattr(os, "eventfd"):
            self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - not Linux: a pipe does the same with two descriptors
            self._wake_fd, self._wake_w = os.pipe()
            os.set_blocking(self._wake_fd, False)
            os.set_blocking(self._wake_w, False)
        sel.register(self._wake_fd, selectors.EVENT_READ, None)
        self._sel = sel
        self._conns = {_CONTROL: control, _HELD: held}
        self.last_activity = time.monotonic()

    # -- the loop thread ---------------------------------------------------------------------

    def fileno(self) -> int:
        sel = self._sel
        return sel.fileno() if sel is not None else -1  # type: ignore[attr-defined]

    def send(self, text: str) -> None:
        if self._ended or self.closed:
            return  # the end is reported by receive(); nothing to send it on
        role = _HELD if getattr(text, "held", False) else _CONTROL  # the adapter marks held frames
        self._queues[role].append(text.encode("utf-8"))
        self._pump(role, time.monotonic())

    def receive(self) -> Received | None:
        sel = self._sel
        if sel is None:
            return None
        now = time.monotonic()
        self._in_receive = True
        try:
            for key, events in sel.select(0):
                role = key.data
                if role is None:  # our own wake-up
                    try:
                        os.read(self._wake_fd, 8)
                    except BlockingIOError:
                        pass
                    continue
                self._outcome(role, self._conns[role].on_ready(events, now), now)
            for role, conn in self._conns.items():
                if conn.deadline is not None and conn.deadline <= now:
                    self._outcome(role, conn.check(now), now)
        finally:
            self._in_receive = False
        items, self._inbox = self._inbox, []
        if items:
            return items
        if self._ended:
            self.closed = True
            return None
        return []

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close both sockets.  A goodbye (``/meta/disconnect``) queued just before went out
        already when its socket was free: its bytes are in the kernel.  Idempotent."""
        if self.closed and self._sel is None:
            return
        sel, self._sel = self._sel, None
        for conn in self._conns.values():
            conn.close()
        if sel is not None:
            sel.close()
        for fd in (self._wake_fd, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_fd = self._wake_w = -1
        self._registered.clear()
        self.closed = True
        if not self.close_reason:
            self.close_reason = reason or "closed by the client"

    # -- internals ---------------------------------------------------------------------------

    def _pump(self, role: str, now: float) -> None:
        conn = self._conns.get(role)
        q = self._queues[role]
        while conn is not None and q and not conn.busy and not self._ended:
            outcome = conn.request(q.pop(0), now)
            if outcome is not None:
                self._outcome(role, outcome, now, pump=False)
        self._sync(role)

    def _outcome(self, role: str, outcome: _HttpOutcome | None, now: float, *, pump: bool = True) -> None:
        if outcome is None:
            self._sync(role)
            return
        if isinstance(outcome, HttpResponse):
            self.last_activity = now
            self._inbox.append(
                self._response(outcome.status, outcome.reason, outcome.body, outcome.header("location"), role == _HELD)
            )
        elif isinstance(outcome, HttpFailure):
            if outcome.kind == "too_big":
                self._inbox.append(FrameError(outcome.message))
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
        if not self._in_receive:
            self._wake()

    def _wake(self) -> None:
        fd = self._wake_w if self._wake_w >= 0 else self._wake_fd
        if fd >= 0:
            try:
                os.write(fd, (1).to_bytes(8, "little"))  # an eventfd takes an 8-byte counter
            except (BlockingIOError, OSError):
                pass  # full: a wake-up is pending anyway

    def _sync(self, role: str) -> None:
        """(Re)register the role's socket in our selector for what its request waits for."""
        sel = self._sel
        if sel is None:
            return
        conn = self._conns[role]
        want = (conn.fileno(), conn.interest, conn.sockets_opened) if conn.interest and conn.fileno() >= 0 else None
        have = self._registered.get(role)
        if have == want:
            return
        if have is not None and want is not None and have[0] == want[0] and have[2] == want[2]:
            sel.modify(want[0], want[1], role)  # the same socket, now waiting for the other way
            self._registered[role] = want
            return
        if have is not None:
            try:
                sel.unregister(have[0])
            except (KeyError, ValueError, OSError):
                pass
            del self._registered[role]
        if want is not None:
            sel.register(want[0], want[1], role)
            self._registered[role] = want

    def __repr__(self) -> str:
        return f"<HubLongPollingConnection {self._url} closed={self.closed}>"
