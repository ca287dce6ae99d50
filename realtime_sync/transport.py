"""The transport thread: owns the connection, every timer, and the reconnect policy.

Theory of operation
-------------------
One thread per client (``realtime_sync-transport-<client>``) runs :meth:`Transport._run`:

1. build a :class:`~realtime_sync.protocols.ConnectRequest` (the client resolves the token
   again: a token callable is called on every attempt), let the adapter adjust it, open a
   :class:`Connection`;
2. serve it: ``select()`` on the socket and on a wake-up socketpair, with a timeout equal to the
   nearest deadline (adapter timers, websocket ping, pong deadline).  Received frames go to the
   adapter; its outgoing frames are written; its events go to the dispatcher as one batch per
   read; its close requests end the connection;
3. when the connection ends, wait as the :class:`~realtime_sync.ReconnectPolicy` says (the wait
   is interruptible by ``close()`` and still applies user commands) and start again.

Other threads never touch the socket or the adapter: they queue a command (a callable taking
``(adapter, now)``) with :meth:`Transport.call`, which appends to a deque and writes one byte to
the wake-up socket.  That never blocks.

Liveness: protocols with their own heartbeat (ActionCable pings, Bayeux connects) detect dead
connections in their adapter.  For the others (Jifeline) the transport sends a websocket ping
after ``ping_interval`` seconds without any incoming byte and gives up on the connection when
nothing at all arrives within ``ping_timeout`` after it.
"""

from __future__ import annotations

import collections
import enum
import logging
import select
import socket
import threading
import time
from typing import Any, Callable, Protocol, Union

from ._redact import redact
from ._wsconn import FrameError, WebSocketConnection
from .config import ConnectOptions, ReconnectPolicy
from .dispatch import Dispatcher
from .events import ConnectionInfo, DisconnectInfo, ErrorInfo, Event, ReconnectInfo
from .exceptions import AuthenticationError, ConnectError, ProtocolError, TokenError
from .protocols.base import Adapter, CloseRequest, ConnectRequest, truncate

__all__ = ["Connection", "FrameError", "State", "Transport", "WebSocketConnection"]


class State(str, enum.Enum):
    """Where a client is in its life."""

    IDLE = "idle"  #: created, not started
    CONNECTING = "connecting"  #: first connection attempt under way
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  #: waiting or trying again after a failure or a drop
    CLOSING = "closing"
    CLOSED = "closed"  #: closed by close(), or stopped for good (auth refused, "do not reconnect")
    FORKED = "forked"  #: this process is a fork of the one that started the client: unusable

    def __str__(self) -> str:
        return self.value


class Connection(Protocol):
    """What the transport needs from one physical connection (websocket or long-polling)."""

    kind: str
    subprotocol: str | None
    closed: bool
    close_reason: str
    last_activity: float

    def open(self, request: ConnectRequest, options: ConnectOptions) -> None: ...
    def fileno(self) -> int: ...
    def pending(self) -> bool: ...
    def receive(self) -> list[Union[str, FrameError]] | None: ...
    def send(self, text: str) -> None: ...
    def ping(self) -> None: ...
    def close(self, code: int = 1000, reason: str = "") -> None: ...


Command = Callable[[Adapter, float], Any]


class _Stop(Exception):
    """Internal: leave the run loop."""


class Transport:
    """Runs the connection loop of one client on a named background thread."""

    def __init__(
        self,
        *,
        adapter: Adapter,
        request_factory: Callable[[], ConnectRequest],
        connection_factory: Callable[[], Connection],
        options: ConnectOptions,
        policy: ReconnectPolicy,
        dispatcher: Dispatcher,
        log: logging.Logger,
        name: str,
        on_state: Callable[[State], None],
    ) -> None:
        self.adapter = adapter
        self._request_factory = request_factory
        self._connection_factory = connection_factory
        self.options = options
        self.policy = policy
        self._dispatcher = dispatcher
        self.log = log
        self.name = name
        self._on_state = on_state
        self._cmds: collections.deque[Command] = collections.deque()
        # Created by start(), not here: a client created before a fork and started in several
        # children (gunicorn --preload) would otherwise share one kernel socketpair, and each
        # child's transport would swallow the others' wake-ups.
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None
        self._opening: Connection | None = None  # the connection being opened, for stop() to abort
        self.frames_received = 0
        self.reconnects = 0
        self.last_frame_at: float | None = None
        self.stopped_by_server = False

    # -- any thread --------------------------------------------------------------------------

    def start(self) -> None:
        r, w = socket.socketpair()
        r.setblocking(False)
        w.setblocking(False)
        self._wake_r, self._wake_w = r, w
        self._thread = threading.Thread(target=self._run, name=f"realtime_sync-transport-{self.name}", daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def call(self, fn: Command) -> None:
        """Run ``fn(adapter, now)`` on the transport thread, soon.  Never blocks."""
        self._cmds.append(fn)
        self._wake()

    def _wake(self) -> None:
        w = self._wake_w
        if w is None:
            return  # not started: the loop applies queued commands before its first connect
        try:
            w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the buffer is full (a wake-up is pending anyway) or we are closed

    def stop(self, timeout: float | None) -> bool:
        """Ask the thread to close the connection and end; True if it ended within ``timeout``."""
        self._stop.set()
        self._wake()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            # An opening handshake blocks in websocket-client for up to connect_timeout and
            # select() cannot see the stop: shut its socket down.  The socket only exists once
            # TCP is connected, so keep aborting while we wait.
            deadline = None if timeout is None else time.monotonic() + timeout
            while t.is_alive():
                self._abort_opening()
                remaining = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
                if remaining <= 0:
                    break
                t.join(remaining)
            if t.is_alive():
                conn = self._conn
                if conn is not None:  # unblock a read stuck in the middle of a frame
                    try:
                        conn.close(1001, "client closing")
                    except Exception:  # pragma: no cover - best effort
                        pass
                t.join(1.0)
            return not t.is_alive()
        return True

    def _abort_opening(self) -> None:
        conn = self._opening
        abort = getattr(conn, "abort", None)  # optional: the long-polling connection has none
        if abort is not None:
            try:
                abort()
            except Exception:  # pragma: no cover - best effort
                pass

    def release(self) -> None:
        """Close the wake-up socketpair once the thread has ended (it selects on it)."""
        t = self._thread
        if t is not None and t.is_alive():
            return  # a stuck thread (close() timed out) must not select() on a closed fd
        for s in (self._wake_r, self._wake_w):
            if s is None:
                continue
            try:
                s.close()
            except OSError:  # pragma: no cover
                pass

    # -- the thread ---------------------------------------------------------------------------

    def _emit(self, name: str, data: Any = None) -> None:
        self._dispatcher.put(Event(name, data, received_at=time.time()))

    def _error(self, kind: str, message: str, exc: BaseException | None = None, frame: str | None = None) -> None:
        message = redact(message)
        self.log.warning("%s: %s", kind, message)
        self._emit("error", ErrorInfo(kind, message, frame, exc))

    def _run(self) -> None:
        try:
            self._loop()
        except _Stop:
            pass
        except Exception as exc:  # pragma: no cover - a bug; never die silently
            self.log.exception("transport thread crashed")
            self._error("internal", f"transport thread crashed: {type(exc).__name__}: {exc}", exc)
        finally:
            self._on_state(State.CLOSED)

    def _loop(self) -> None:
        failures = 0  # consecutive failed attempts or short-lived connections
        auth_failures = 0
        attempt = 0
        policy = self.policy
        while not self._stop.is_set():
            self._apply_commands()
            self._on_state(State.CONNECTING if attempt == 0 else State.RECONNECTING)
            attempt += 1
            conn = self._connection_factory()
            delay: float
            try:
                request = self.adapter.prepare_connect(self._request_factory())
                self.log.debug("connecting to %s", redact(request.url))
                self._open(conn, request)
            except _Stop:
                raise
            except AuthenticationError as exc:
                auth_failures += 1
                self._error("auth", str(exc), exc)
                if policy.stop_on_auth_failure:
                    self._finish("credentials refused", server=True)
                    return
                delay = policy.auth_delay(auth_failures)
            except TokenError as exc:
                failures += 1
                self._error("token", str(exc), exc)
                delay = policy.delay(failures - 1)
            except ConnectError as exc:
                failures += 1
                self._error("connect", str(exc), exc)
                delay = policy.delay(failures - 1)
            except Exception as exc:  # e.g. the request factory raised
                failures += 1
                self._error("connect", f"cannot prepare the connection: {type(exc).__name__}: {exc}", exc)
                delay = policy.delay(failures - 1)
            else:
                if attempt > 1:
                    self.reconnects += 1
                connected_at = time.monotonic()
                self._conn = conn
                self._on_state(State.CONNECTED)
                self._emit("connected", ConnectionInfo(redact(request.url), conn.subprotocol, attempt))
                self.log.info("connected to %s", redact(request.url))
                reason, req = self._serve(conn)
                self._conn = None
                conn.close(1000 if req is None else req.code, "")
                if time.monotonic() - connected_at >= policy.stable_after:
                    failures = 0
                    auth_failures = 0
                if self._stop.is_set():
                    self._emit("disconnected", DisconnectInfo("closed by the client", False))
                    return
                if req is not None and not req.reconnect:
                    self._finish(req.reason, server=True)
                    return
                self.log.info("disconnected: %s", reason)
                failures += 1
                if req is not None and req.auth:
                    auth_failures += 1
                    if policy.stop_on_auth_failure:
                        self._error("auth", f"credentials refused: {req.reason}")
                        self._finish("credentials refused", server=True)
                        return
                    delay = policy.auth_delay(auth_failures)
                elif req is not None and req.delay is not None:
                    delay = req.delay
                else:
                    delay = policy.delay(failures - 1)
                self._emit("disconnected", DisconnectInfo(reason, True, getattr(conn, "close_code", None)))
            if policy.max_attempts is not None and failures > policy.max_attempts:
                self._error("connect", f"giving up after {failures} consecutive failed attempts (max_attempts)")
                self._finish("max_attempts reached", server=True)
                return
            self._on_state(State.RECONNECTING)
            self._emit("reconnecting", ReconnectInfo(failures, delay))
            self.log.info("reconnecting in %.2fs (attempt %d)", delay, failures)
            self._sleep(delay)

    def _open(self, conn: Connection, request: ConnectRequest) -> None:
        """Open ``conn``; stop() may abort it from another thread (see stop())."""
        self._opening = conn
        try:
            if self._stop.is_set():  # stop() ran before it could see self._opening
                raise _Stop
            conn.open(request, self.options)
        except Exception:
            if self._stop.is_set():  # aborted by close(): not a connection failure to report
                raise _Stop from None
            raise
        finally:
            self._opening = None

    def _finish(self, reason: str, *, server: bool) -> None:
        self.stopped_by_server = server
        self._emit("disconnected", DisconnectInfo(reason, False))

    def _sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds, applying commands as they come; return early on stop."""
        end = time.monotonic() + delay
        wake = self._wake_r
        assert wake is not None  # start() made it before the thread ran
        while not self._stop.is_set():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            r, _, _ = select.select([wake], [], [], remaining)
            if r:
                self._drain_wake()
                self._apply_commands()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):  # type: ignore[union-attr]
                pass
        except (BlockingIOError, OSError):
            pass

    def _apply_commands(self, now: float | None = None) -> None:
        cmds = self._cmds
        adapter = self.adapter
        while cmds:
            fn = cmds.popleft()
            t = time.monotonic() if now is None else now
            try:
                fn(adapter, t)
            except Exception as exc:
                self.log.error("command failed", exc_info=True)
                self._error("internal", f"command failed: {type(exc).__name__}: {exc}", exc)

    def _flush(self, conn: Connection) -> None:
        adapter = self.adapter
        frames = adapter.data_to_send()
        if frames:
            debug = self.log.isEnabledFor(logging.DEBUG)
            for text in frames:
                if debug:
                    self.log.debug("> %s", truncate(text))
                conn.send(text)
        events = adapter.events_received()
        if events:
            self._dispatcher.put_many(events)

    def _ended(self, conn: Connection) -> tuple[str, CloseRequest | None]:
        """The connection ended under us.  The server often sends its reason (ActionCable
        ``disconnect``) in the same read as the close: the adapter's request names the real cause
        and says whether to come back."""
        failure = getattr(conn, "failure", None)
        if failure is not None:
            # The server broke the websocket framing rules and the connection failed them
            # (RFC 6455 7.1.7): say so, with the close code, before "disconnected".
            self._error("protocol", str(failure), failure)
        req = self.adapter.close_request()
        reason = req.reason if req is not None else (conn.close_reason or "connection closed")
        self.adapter.connection_lost(time.monotonic(), reason)
        self._flush(conn)
        return reason, req

    def _serve(self, conn: Connection) -> tuple[str, CloseRequest | None]:
        adapter = self.adapter
        opts = self.options
        adapter.clock_offset = time.time() - time.monotonic()
        adapter.transport_kind = conn.kind
        adapter.subprotocol = conn.subprotocol
        adapter.close_request()  # a request about the previous connection is moot now
        now = time.monotonic()
        adapter.connection_made(now)
        ping_interval = None if adapter.has_heartbeat else opts.ping_interval
        ping_sent: float | None = None
        debug = self.log.isEnabledFor(logging.DEBUG)
        fd = conn.fileno()
        wake = self._wake_r
        rlist: list[Any] = [fd, wake]
        try:
            self._apply_commands(now)
            self._flush(conn)
            while True:
                if self._stop.is_set():
                    now = time.monotonic()
                    adapter.start_closing(now)
                    self._flush(conn)
                    self._on_state(State.CLOSING)
                    adapter.connection_lost(now, "closed by the client")
                    return "closed by the client", None
                req = adapter.close_request()
                if req is not None:
                    adapter.connection_lost(time.monotonic(), req.reason)
                    self._flush(conn)
                    return req.reason, req
                now = time.monotonic()
                deadline = adapter.next_deadline()
                if deadline is not None and deadline <= now:
                    adapter.handle_timer(now)
                    self._flush(conn)
                    continue
                if ping_interval:
                    if ping_sent is not None and conn.last_activity > ping_sent:
                        ping_sent = None
                    if ping_sent is None:
                        due = conn.last_activity + ping_interval
                        if due <= now:
                            conn.ping()
                            ping_sent = now
                            continue
                    else:
                        due = ping_sent + opts.ping_timeout
                        if due <= now:
                            adapter.connection_lost(now, "no pong")
                            self._flush(conn)
                            return (
                                f"no data for {opts.ping_timeout:.1f}s after a ping: connection is dead",
                                CloseRequest("dead connection", delay=0.0, code=1001),
                            )
                    deadline = due if deadline is None else min(deadline, due)
                timeout = None if deadline is None else max(0.0, deadline - now)
                if conn.pending():
                    ready: list[Any] = [fd]
                else:
                    ready, _, _ = select.select(rlist, [], [], timeout)
                if wake in ready:
                    self._drain_wake()
                    self._apply_commands()
                    self._flush(conn)
                if fd in ready:
                    items = conn.receive()
                    if items is None:
                        return self._ended(conn)
                    if items:
                        now = time.monotonic()
                        self.frames_received += len(items)
                        self.last_frame_at = now + adapter.clock_offset
                        receive = adapter.receive_text
                        for item in items:
                            if type(item) is str:
                                if debug:
                                    self.log.debug("< %s", truncate(item))
                                try:
                                    receive(item, now)
                                except Exception as exc:  # an adapter bug must not lose later frames
                                    self.log.error("adapter failed on a frame", exc_info=True)
                                    self._error(
                                        "bad_frame",
                                        f"frame could not be processed: {type(exc).__name__}: {exc}",
                                        exc,
                                        truncate(item),
                                    )
                            else:
                                assert isinstance(item, FrameError)
                                self._error("bad_frame", item.message, ProtocolError(item.message), item.frame)
                        self._flush(conn)
                    if conn.closed:
                        return self._ended(conn)
        except (OSError, ConnectionError) as exc:
            reason = f"connection lost: {type(exc).__name__}: {redact(exc)}"
            adapter.connection_lost(time.monotonic(), reason)
            try:
                adapter.data_to_send()
                events = adapter.events_received()
                if events:
                    self._dispatcher.put_many(events)
            except Exception:  # pragma: no cover
                pass
            return reason, None
