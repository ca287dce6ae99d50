"""The engine: one client's connection lifecycle, driven by an I/O loop.

Theory of operation
-------------------
The library is four layers; each knows only the one below it::

    vendor facades    VoxsigClient, GenesysChatClient, JifelinePartnerClient, rs.Client ...
      (client.py,     build an adapter, hand it to an Engine, queue typed commands
       vendors)       (Call, SendText), read the engine's frozen Snapshot
          │
    dispatcher        dispatch.py: runs user callbacks in order on its own thread
          │
    engine and        Engine (this module): lifecycle state (its only writer), the one
    transports        Backoff, the connection (websocket / long-polling), timers, pings.
                      Loop (this module): a selector, ONE timer heap, a wake-up socketpair
          │
    codec and         protocols/*.py: sans-I/O adapters (frames <-> events, timers as data);
    adapters          the websocket frame codec; neither owns a socket, a thread or a clock

**Loop.**  A :class:`Loop` owns a :mod:`selectors` selector (epoll on Linux: no descriptor
limit, unlike ``select()``), a heap of timers (O(log n) to add, cancellation is lazy) and a
wake-up socketpair.  Everything runs as a callback on the loop thread:

* ``add_reader(fd, callback)``: the descriptor is readable;
* ``call_at(when, callback)`` -> :class:`Timer`: a deadline passed;
* ``call_soon_threadsafe(callback)``: the only entry from other threads (a deque append and one
  byte on the wake-up socket; never blocks);
* ``run_blocking(fn, done)``: work that blocks (websocket-client's opening handshake).  A loop
  without ``handshake_workers`` runs it inline (a standalone client has nothing else to do
  meanwhile, and ``Engine.stop`` aborts it from the closing thread); with
  ``handshake_workers=N`` it runs on a small executor of N threads and ``done`` comes back on
  the loop thread, which bounds the handshakes in flight.

**Engine.**  An :class:`Engine` is a state machine over the loop's callbacks::

    start ─► OPENING ──run_blocking(open)──► SERVING ──ended/close request──► WAITING ─timer─► OPENING
                │ failed                       │ readable: frames -> adapter -> frames/events
                └──────────► WAITING           │ timer: adapter timers, websocket pings
                                               │ commands: Call(method, args) on the adapter
    stop() from any thread ─► goodbye frames, disconnect, CLOSED (also when the server says stop)

Flow control: frames are fed to the adapter in slices, and the events of each slice handed
to the dispatcher; when it holds ``high_water`` events the engine stops reading the connection
(its reader is removed: the data waits in the kernel and TCP makes the server wait) and keeps
the frames already read in a backlog; the dispatcher's drain callback (through
``call_soon_threadsafe``) feeds the backlog and reads again.  Meanwhile no websocket ping is
sent and the adapter's liveness checks wait (``Adapter.pause_reading``); other timers go on.

After every step it flushes the adapter's frames to the connection and its events to the
dispatcher, then republishes the :class:`Snapshot` if something visible changed (state,
subscriptions, last event id, transport).  User threads read only that snapshot and the
counters; they never touch the adapter or the connection.  One :class:`~realtime_sync.config.
SharedBackoff` counts failures for reconnects and for the adapter's in-session retries.

An exception escaping a step (an adapter or connection bug) is caught at the engine's
boundary: it is reported as an ``error`` event of kind ``internal`` and the connection is
replaced as after any drop, never a silent end.

**Standalone and hub.**  :meth:`Engine.start` without a loop creates one on a thread of its
own (``realtime_sync-transport-<name>``), which ends when the engine finishes: a standalone
client is "a loop thread with one engine" plus its dispatcher thread.  A hub
(:class:`realtime_sync.Hub`, ``hub.py``) runs many engines on one loop: ``engine.start(loop)``
for each client; each engine keeps one timer in the shared heap and one reader per
connection; the hub puts its handshake limiter in front of ``run_blocking``, gives each engine a
lane of its worker pool as ``dispatcher=``, and a thread-less long-polling connection (the
standalone one uses two worker threads that signal the loop through a socketpair).
"""

from __future__ import annotations

import collections
import concurrent.futures
import gc
import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from typing import Any, Callable, Generic, Iterable, Sequence, TypeVar, Union

import attrs

from ._lazysync import LazyCondition, LazyEvent
from ._redact import redact
from .config import Backoff, ConnectOptions, ReconnectPolicy, SharedBackoff
from .dispatch import Dispatcher
from .events import ConnectionInfo, DisconnectInfo, ErrorInfo, Event, ReconnectInfo, Subscription, public_subscription
from .exceptions import AuthenticationError, ConnectError, ProtocolError, RemoteError, TokenError
from .protocols.base import Adapter, CloseRequest, ConnectRequest, HttpResult, SubState, truncate
from .transport import Connection, FrameError, State

__all__ = [
    "Call",
    "Engine",
    "EngineOptions",
    "Loop",
    "SendText",
    "Snapshot",
    "Timer",
]

A = TypeVar("A", bound=Adapter)

log = logging.getLogger("realtime_sync.engine")


# -- the loop ------------------------------------------------------------------------------


class Timer:
    """A handle on a callback scheduled with :meth:`Loop.call_at`; ``cancel()`` is O(1)."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], Any]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """A selector, one timer heap and a wake-up socketpair, run by one thread.

    >>> loop = Loop("doc")
    >>> fired = []
    >>> _ = loop.call_at(time.monotonic(), lambda: (fired.append(1), loop.stop()))
    >>> loop.run()
    >>> fired
    [1]
    >>> loop.close()
    """

    def __init__(self, name: str, *, handshake_workers: int = 0) -> None:
        self.name = name
        self._sel = selectors.DefaultSelector()
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._cancelled = 0
        self._ready: collections.deque[Callable[[], Any]] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._workers = handshake_workers
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._error_handlers: list[Callable[[Exception], Any]] = []
        self._lingering: dict[Any, Timer] = {}  # closing connections -> their deadline

    # -- any thread ------------------------------------------------------------------------

    def call_soon_threadsafe(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` on the loop thread soon.  Never blocks."""
        self._ready.append(callback)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full (a wake-up is pending anyway) or closed

    def stop(self) -> None:
        """Make :meth:`run` return after the current iteration."""
        self._stopping = True
        self._wake()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self, thread_name: str | None = None, *, close_when_done: bool = False) -> threading.Thread:
        """Run the loop on a new daemon thread (named ``thread_name``).

        With ``close_when_done`` the thread releases the selector and the wake-up sockets itself
        when :meth:`run` returns: a client that stops for good on its own (the server said not to
        reconnect, credentials refused) frees its descriptors even if ``close()`` never comes."""
        target = self.run
        if close_when_done:

            def target() -> None:
                try:
                    self.run()
                finally:
                    self.close()

        t = threading.Thread(target=target, name=thread_name or f"realtime_sync-loop-{self.name}", daemon=True)
        self._thread = t
        t.start()
        return t

    def close(self) -> None:
        """Release the selector and the wake-up sockets (once the loop thread has ended)."""
        t = self._thread
        if t is not None and t.is_alive() and t is not threading.current_thread():
            return  # a stuck thread must not select() on closed descriptors
        with self._close_lock:  # the loop thread (close_when_done) and release() may race
            if self._closed:
                return
            self._closed = True
        if self._executor is not None:
            # Joins the handshake threads (close() comes after every engine stopped, and a stop
            # aborts a handshake in progress).
            self._executor.shutdown(wait=True, cancel_futures=True)
        try:
            self._sel.close()
        except Exception:  # pragma: no cover
            pass
        for s in (self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:  # pragma: no cover
                pass
        for conn in list(self._lingering):  # the loop ended before their server closed
            self._lingering.pop(conn, None)
            _close_quietly(conn)

    # -- loop thread -----------------------------------------------------------------------

    def call_at(self, when: float, callback: Callable[[], Any]) -> Timer:
        """Run ``callback`` at monotonic time ``when`` (loop thread only)."""
        timer = Timer(when, callback)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def cancel(self, timer: Timer | None) -> None:
        if timer is not None and not timer.cancelled:
            timer.cancel()
            self._cancelled += 1
            if self._cancelled > 64 and self._cancelled > len(self._heap) // 2:
                self._heap[:] = [e for e in self._heap if not e[2].cancelled]  # in place: run() holds the list
                heapq.heapify(self._heap)
                self._cancelled = 0

    def add_reader(self, fileobj: Any, callback: Callable[[], Any]) -> None:
        self._sel.register(fileobj, selectors.EVENT_READ, callback)

    def remove_reader(self, fileobj: Any) -> None:
        try:
            self._sel.unregister(fileobj)
        except (KeyError, ValueError, OSError):
            pass

    def linger(self, conn: Any, until: float) -> None:
        """Keep a closing connection (its close frame sent: ``conn.start_closing()`` returned
        True) until its server closes TCP or ``until``, reading and dropping what still comes
        (``conn.drain_closing()``), then ``conn.close()``.  The loop runs on after :meth:`stop`
        while connections linger: at most until the last one's deadline."""

        def done() -> None:
            timer = self._lingering.pop(conn, None)
            if timer is None:
                return
            self.cancel(timer)
            self.remove_reader(fd)
            _close_quietly(conn)

        def readable() -> None:
            try:
                finished = conn.drain_closing()
            except Exception:  # pragma: no cover - a connection bug: just close it
                finished = True
            if finished:
                done()

        fd = conn.fileno()
        if fd < 0 or conn.drain_closing():  # already closed, or nothing more to wait for
            _close_quietly(conn)
            return
        self._lingering[conn] = self.call_at(until, done)
        self.add_reader(fd, readable)

    def run_blocking(self, fn: Callable[[], Any], done: Callable[[Any, BaseException | None], Any]) -> None:
        """Run ``fn()`` (which may block) and then ``done(result, exception)`` on the loop thread."""
        if not self._workers:
            try:
                result = fn()
            except BaseException as exc:
                done(None, exc)
            else:
                done(result, None)
            return
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self._workers, thread_name_prefix=f"realtime_sync-handshake-{self.name}"
            )

        def finished(fut: concurrent.futures.Future[Any]) -> None:
            exc = fut.exception()
            self.call_soon_threadsafe(lambda: done(None if exc else fut.result(), exc))

        self._executor.submit(fn).add_done_callback(finished)

    def open_connection(
        self,
        conn: Any,
        request: ConnectRequest,
        options: ConnectOptions,
        open_it: Callable[[], Any],
        done: Callable[[Any, BaseException | None], Any],
    ) -> None:
        """Open ``conn`` for ``request`` (``open_it()`` does it, blocking), then ``done``.

        Here: ``run_blocking(open_it, done)``; a hub's loop opens plain websockets without
        blocking instead, on its selector."""
        self.run_blocking(open_it, done)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _invoke(self, callback: Callable[[], Any]) -> None:
        try:
            callback()
        except Exception:  # an engine guards its own callbacks; this is a last resort
            log.exception("loop %s: a callback raised", self.name)

    def add_error_handler(self, handler: Callable[[Exception], Any]) -> None:
        """Call ``handler(exc)`` (on the loop thread) if the loop itself fails (the selector
        raised): engines replace their connections rather than the thread ending silently."""
        self._error_handlers.append(handler)

    def remove_error_handler(self, handler: Callable[[Exception], Any]) -> None:
        try:
            self._error_handlers.remove(handler)
        except ValueError:
            pass

    def run(self) -> None:
        """Run callbacks until :meth:`stop`."""
        self._stopping = False
        while not self._stopping or self._lingering:
            try:
                self._run_until_stopped()
            except Exception as exc:
                log.exception("loop %s failed", self.name)
                for handler in list(self._error_handlers):
                    try:
                        handler(exc)
                    except Exception:  # pragma: no cover - last resort
                        log.exception("loop %s: an error handler raised", self.name)

    def _run_until_stopped(self) -> None:
        heap, ready, sel, lingering = self._heap, self._ready, self._sel, self._lingering
        while not self._stopping or lingering:
            timeout: float | None = None
            if ready:
                timeout = 0.0
            else:
                while heap and heap[0][2].cancelled:
                    heapq.heappop(heap)
                    self._cancelled -= 1
                if heap:
                    timeout = max(0.0, heap[0][0] - time.monotonic())
            for key, _mask in sel.select(timeout):
                self._invoke(key.data)
            now = time.monotonic()
            while heap and (heap[0][2].cancelled or heap[0][0] <= now):
                _when, _seq, timer = heapq.heappop(heap)
                if timer.cancelled:
                    self._cancelled -= 1
                    continue
                timer.cancelled = True  # fired: a later cancel() is a no-op
                self._invoke(timer.callback)
            for _ in range(len(ready)):
                self._invoke(ready.popleft())


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # pragma: no cover - best effort
        log.debug("closing a connection failed", exc_info=True)


# -- commands and snapshot -----------------------------------------------------------------


@attrs.frozen
class Call:
    """A command: run ``method(adapter, *args, now, **kwargs)`` on the I/O thread.

    ``method`` is an adapter method, named through its class (typed, and no closure over a
    client's private state)::

        engine.submit(Call(BayeuxAdapter.subscribe, ("/chat/demo",)))
    """

    method: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Any = attrs.field(factory=dict)

    def apply(self, adapter: Adapter, now: float) -> None:
        self.method(adapter, *self.args, now, **self.kwargs)


@attrs.frozen
class SendText:
    """A command: send a raw text frame (while connected; dropped otherwise)."""

    text: str

    def apply(self, adapter: Adapter, now: float) -> None:
        adapter.send_text(self.text, now)


Command = Union[Call, SendText]


@attrs.frozen
class Snapshot:
    """What other threads may know of an engine, published after each step that changed it.

    ``subscriptions`` are the desired ones in order; ``pending`` those not confirmed on the
    current connection; ``rejected`` those the server refused (or never confirmed), and
    ``rejected_reasons`` why, in the same order.  ``transport`` is the kind of the
    current (or last) connection, ``"websocket"`` or ``"long-polling"``.
    """

    state: State = State.IDLE
    subscriptions: tuple[Subscription, ...] = ()
    pending: tuple[Subscription, ...] = ()
    rejected: tuple[Subscription, ...] = ()
    last_event_id: str | None = None
    transport: str | None = None
    last_error: ErrorInfo | None = None
    ready: bool = False  #: the protocol is ready on the current connection (welcomed, session up)
    rejected_reasons: tuple[str, ...] = ()


@attrs.frozen
class EngineOptions:
    """How an engine connects and reconnects.

    ``request_factory`` builds the :class:`~realtime_sync.protocols.ConnectRequest` of each
    attempt (the client resolves its token there: a token callable is called every time).
    """

    request_factory: Callable[[], ConnectRequest]
    connect: ConnectOptions = attrs.field(factory=ConnectOptions)
    reconnect: ReconnectPolicy = attrs.field(factory=ReconnectPolicy)
    name: str = "client"


class _Stopped(Exception):
    """Internal: the engine was stopped while a connection was opening."""


_IDLE, _OPENING, _SERVING, _WAITING, _DONE = "idle", "opening", "serving", "waiting", "done"

#: Frames fed to the adapter between two hand-overs to the dispatcher (see _feed_some).
#: Between two slices of one read the loop thread releases the GIL (``time.sleep(0)``), so
#: the dispatcher runs the handlers then rather than after the whole read: one 256 KiB read
#: holds ~270 Voxsig frames, each leaving ~6 objects alive until its handlers ran (the event,
#: its models, its deferred raw) and adding ~10 to the young generation's count, and events
#: kept alive across young collections were promoted and traversed again by middle and full
#: collections (the last walk every object of the process).  Each hand-over costs both
#: threads a GIL transfer, though: ~40 µs of wall time a round trip on the 2-core VM of the
#: README's figures (``Lock`` ping-pong between two threads: 43 µs; ``time.sleep(0)`` alone:
#: 71 µs), mostly waking the other thread.  So a slice is as long as it can be without a
#: young collection while its events are alive: the young count each slice added per frame is
#: measured, and the next slice takes the frames that fit in the room left before the young
#: threshold (``gc.get_threshold()[0] - gc.get_count()[0]``; 700 by default: ~65 Voxsig frames
#: right after the delivered events were freed), 85% of them when the read holds more (the rest
#: of a read that fits goes whole), within [_SLICE_MIN, _SLICE_MAX]; with the collector off,
#: _SLICE_MAX.  When fewer than _SLICE_MIN frames fit, the young generation is collected right
#: then (``gc.collect(0)``, at most a few frames before it would have been anyway), with none of
#: the coming events alive, instead of a few frames into the slice, which promoted them: with a
#: million objects in the process, middle collections (which lead to full ones) fell from ~40
#: to ~11 per 300,000 messages.  A slice is also at most the flow-control mark (``high_water``,
#: 16 at least) and the room above it (``max_queue`` minus the mark, which is at most half of
#: ``max_queue``): with flow control the queue goes beyond the mark by at most a slice, within
#: ``max_queue``, so a small ``max_queue`` drops none of a flow-controlled burst.
#: Measured on benchmarks/throughput.py's stream, 200,000 messages (wall time a message;
#: collector time a message; dispatcher batches):
#:
#:   =============  =============  ==========  ==========
#:   slice          wall           collector   hand-overs
#:   32 (before)    8.6-9.1 µs     0.00-0.05   6,450
#:   64             7.7-8.1 µs     0.10-0.23   3,600
#:   96             7.9-8.0 µs     0.76-0.91   (not counted)
#:   whole read     7.8-8.1 µs     0.98-1.14   3,600 (the dispatcher takes 64 at most)
#:   85% of a fixed 7.9-8.2 µs     0.20-0.22   4,280 (full collections with 1M objects: 3-4x)
#:   what fits      8.0-8.3 µs     0.04-0.06   4,285 (young collections 280, not 660)
#:   =============  =============  ==========  ==========
#:
#: With 300,000 more objects in the process (a framework's worth), 64 still beat 32 (7.7-9.1
#: against 8.7-10.4 µs) and ran no full collection; 128 ran one (~90 ms).
#: The delivered events are freed before *every* slice is sized, the first of a read too: the
#: dispatcher hands a batch back while this thread waits in recv(), and sized with that batch
#: alive (a young count of ~680), the first slice found no room and collected it, promoting
#: 64 delivered events, about every fifth slice (benchmarks/big_heap.py, a million live objects,
#: 600,000 messages: young collections ~2,000 -> ~90-160, middle ~37 -> 6-12, collector
#: 60-135 -> 3-34 ms, wall time a message 7.7-8.0 -> 7.4-7.7 µs).
_SLICE = 64  # what fits before anything was measured
_SLICE_MIN, _SLICE_MAX = 16, 256


#: Seconds a clean close waits for the server to close TCP after our close frame (python-
#: websockets' client waits up to 10, websocket-client's up to 3); half of what is left of
#: ``close(timeout=...)`` at most.
CLOSE_LINGER = 2.0

_yield_gil = time.sleep
_gc_count = gc.get_count
_gc_threshold = gc.get_threshold
_gc_enabled = gc.isenabled
_gc_collect = gc.collect


class Engine(Generic[A]):
    """One client's connection lifecycle (see the module docstring).

    Args:
        adapter: the protocol adapter (built first, by the facade).
        connection_factory: returns a new :class:`~realtime_sync.transport.Connection` per attempt.
        options: :class:`EngineOptions`.
        dispatcher: where events go (default: the engine's own :class:`~realtime_sync.dispatch.Dispatcher`,
            which the facade configures).
        on_finished: called on the I/O thread once the engine stopped for good.

    >>> from realtime_sync.protocols.bayeux import BayeuxAdapter
    >>> engine = Engine(BayeuxAdapter(), lambda: None, EngineOptions(lambda: ConnectRequest("ws://x")))
    >>> engine.submit(Call(BayeuxAdapter.subscribe, ("/chat",)))   # before start: applied at once
    >>> engine.snapshot.subscriptions
    (Subscription('channel', '/chat'),)
    """

    # A hub holds thousands of engines: their state in slots, not a dictionary of ~50 entries each
    # ("__dict__" stays for anything set elsewhere).
    __slots__ = (
        "__dict__",
        "_abandoned",
        "_announced",
        "_attempt",
        "_backlog",
        "_changed",
        "_cmds",
        "_conn",
        "_connected_at",
        "_debug",
        "_delivered",
        "_factory",
        "_fed_chars",
        "_finished",
        "_last_error",
        "_lock",
        "_loop",
        "_on_finished",
        "_opening",
        "_own_loop",
        "_paused",
        "_per_frame",
        "_phase",
        "_ping_sent",
        "_reader",
        "_request_url",
        "_seen",
        "_slice_room",
        "_snapshot",
        "_started",
        "_stop_requested",
        "_timer",
        "_timer_at",
        "_tries",
        "adapter",
        "backoff",
        "dispatcher",
        "frames_received",
        "last_frame_at",
        "log",
        "name",
        "options",
        "pauses",
        "reconnects",
        "stopped_by_server",
    )

    def __init__(
        self,
        adapter: A,
        connection_factory: Callable[[], Connection],
        options: EngineOptions,
        *,
        dispatcher: Dispatcher | None = None,
        on_finished: Callable[[], Any] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.adapter = adapter
        self.options = options
        self.name = options.name
        self.log = log or logging.getLogger(f"realtime_sync.transport.{self.name}")
        self._factory = connection_factory
        self.dispatcher = dispatcher if dispatcher is not None else Dispatcher(_default_dispatch(), self.log, self.name)
        self._on_finished = on_finished
        #: Characters of the text frames fed since the last hand-over to the dispatcher, or -1
        #: when something else (an HTTP result) produced events: their queue weight is then
        #: estimated by the dispatcher instead of known from the wire.
        self._fed_chars = 0
        #: The one backoff of this client, lent to the adapter for its in-session retries.
        self.backoff = SharedBackoff(options.reconnect)
        adapter.backoff = self.backoff
        adapter.log = self.log  # its warnings name the client, as the engine's do
        self._lock = threading.Lock()
        self._changed = LazyCondition(self._lock)  # (a hub holds thousands: no waiter queue until one waits)
        self._snapshot = Snapshot()
        self._seen: tuple[Any, ...] = ()
        self._cmds: list[Command] = []  # (a deque is 600 bytes; this rarely holds more than one)
        self._loop: Loop | None = None
        self._own_loop = False
        self._started = False
        self._stop_requested = False
        self._stop_deadline: float | None = None
        self._finished = LazyEvent()
        self._abandoned = False
        self._phase = _IDLE
        self._conn: Connection | None = None
        self._opening: Connection | None = None
        self._timer: Timer | None = None
        self._timer_at: float | None = None
        self._attempt = 0
        self._tries = 0  # connection attempts since the last one that connected (ConnectionInfo.attempt)
        self._connected_at = 0.0
        self._announced = False  # "connected" was reported for the current connection
        self._request_url = ""
        self._ping_sent: float | None = None
        self._last_error: ErrorInfo | None = None
        self._debug = False
        #: Flow control: reading is paused while the handlers are behind (the dispatcher said
        #: so); frames already read and not yet fed wait in _backlog, in order.
        self._paused = False
        self._backlog: list[Any] = []
        #: The young generation's count added per frame fed, last measured (see _SLICE).
        self._per_frame: float | None = None
        #: With flow control: the most frames a slice may feed (max_queue minus the mark).
        self._slice_room = _SLICE_MAX
        #: Batches of events the dispatcher delivered, freed here (see _release).
        self._delivered: collections.deque[list[Event]] = collections.deque()
        self._reader: Callable[[], None] | None = None
        self.pauses = 0
        self.frames_received = 0
        self.reconnects = 0
        self.last_frame_at: float | None = None
        #: True once the engine stopped on its own (server said stop, credentials refused...).
        self.stopped_by_server = False
        with self._lock:
            self._publish_locked()

    # -- any thread --------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        """The last published :class:`Snapshot` (a frozen value: read it from any thread)."""
        return self._snapshot

    @property
    def state(self) -> State:
        return self._snapshot.state

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def thread(self) -> threading.Thread | None:
        """The loop thread of a standalone engine (None on a shared loop or before start)."""
        return self._loop.thread if self._own_loop and self._loop is not None else None

    def submit(self, command: Command) -> None:
        """Queue ``command`` for the I/O thread.  Never blocks.

        Before :meth:`start` the command is applied at once on the calling thread (no I/O
        thread exists yet, so it is still the only one touching the adapter), which lets a
        facade record desired state (subscriptions) before starting.
        """
        with self._lock:
            if not self._started:
                now = time.monotonic()
                try:
                    command.apply(self.adapter, now)
                finally:
                    # Frames queued while not connected are moot; events are kept for later.
                    self.adapter.data_to_send()
                    self._publish_locked()
                return
            self._cmds.append(command)
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._guard_commands)

    def start(self, loop: Loop | None = None) -> None:
        """Start connecting: on ``loop`` (already running), or on a new loop thread of its own."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._state_locked(State.CONNECTING)
        self._debug = self.log.isEnabledFor(logging.DEBUG)
        if loop is None:
            loop = Loop(self.name)
            self._own_loop = True
        self._loop = loop
        loop.add_error_handler(self._loop_failed)
        opts = getattr(self.dispatcher, "options", None)
        if opts is not None and opts.flow_control:
            # Reading pauses at ``high`` waiting events, and a slice fed before the pause is seen
            # holds at most the room left above it (see _fit): a small max_queue (10) then loses
            # nothing to flow-controlled traffic, where slices of up to 256 frames fed into it
            # dropped most of a burst (2,000 small frames: 1,369 dropped).
            high = min(opts.high_water, max(1, opts.max_queue // 2))
            self._slice_room = max(1, opts.max_queue - high)
            resume = self._guarded(self._resume_reading)
            self.dispatcher.flow_control(high, high // 4, lambda: loop.call_soon_threadsafe(resume))
        if hasattr(self.dispatcher, "release"):  # a hub's lanes free their events themselves
            self.dispatcher.release = self._release
            self.dispatcher.idle = self._free_delivered  # deque.popleft: safe on either thread
        self.dispatcher.start()
        # The pending events (e.g. an error recorded before start) go out first.
        events = self.adapter.events_received()
        if events:
            self.dispatcher.put_many(events)
        loop.call_soon_threadsafe(self._guarded(self._begin))
        if self._own_loop:
            loop.start(f"realtime_sync-transport-{self.name}", close_when_done=True)

    def request_stop(self, deadline: float | None = None) -> None:
        """Ask the I/O thread to close and finish; do not wait.  ``deadline`` (monotonic): when
        the caller will stop waiting (the wait for the server to close TCP ends before)."""
        with self._lock:
            self._stop_requested = True
            self._stop_deadline = deadline
            loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._guard_commands)

    def stop(self, timeout: float | None) -> bool:
        """Close the connection (goodbye frames first) and finish; True if done within ``timeout``."""
        with self._lock:
            self._stop_requested = True
            started = self._started
            loop = self._loop
        if not started or loop is None:
            self._finish_unstarted()
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        self._stop_deadline = deadline
        loop.call_soon_threadsafe(self._guard_commands)
        me = threading.current_thread()
        on_loop = loop.thread is me
        if not on_loop:
            # An opening handshake blocks in websocket-client for up to connect_timeout and the
            # loop cannot see the stop: shut its socket down.  The socket only exists once TCP
            # is connected, so keep aborting while we wait.
            while not self._finished.wait(0.05):
                self._abort_opening()
                if deadline is not None and time.monotonic() >= deadline:
                    break
            if not self._finished.is_set():
                conn = self._conn
                if conn is not None:  # unblock a read stuck in the middle of a frame
                    try:
                        conn.close(1001, "client closing")
                    except Exception:  # pragma: no cover - best effort
                        pass
                self._finished.wait(1.0)
        t = self.thread
        if t is not None and t is not me:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                t.join(0.5)
        ok = self._finished.is_set() and (t is None or t is me or not t.is_alive())
        if not ok and not on_loop:
            # Stuck: the loop thread will write nothing more (it checks _abandoned).
            with self._lock:
                self._abandoned = True
                self._state_locked(State.CLOSED, force=True)
        return ok

    def release(self) -> None:
        """Free the standalone loop's descriptors once its thread ended."""
        if self._own_loop and self._loop is not None:
            self._loop.close()

    def wait_for_change(self, predicate: Callable[[Snapshot], bool], timeout: float | None) -> bool:
        """Block until ``predicate(snapshot)`` is true; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self._snapshot), timeout)

    def _abort_opening(self) -> None:
        conn = self._opening
        abort = getattr(conn, "abort", None)  # optional: a connection may have none
        if abort is not None:
            try:
                abort()
            except Exception:  # pragma: no cover - best effort
                pass

    # -- snapshot (the only writer of the lifecycle state) -------------------------------------

    def _state_locked(self, state: State, *, force: bool = False) -> None:
        if (self._abandoned and not force) or self._snapshot.state in (State.CLOSED, State.FORKED):
            return
        self._snapshot = attrs.evolve(self._snapshot, state=state)
        self._changed.notify_all()

    def _set_state(self, state: State) -> None:
        with self._lock:
            self._state_locked(state)

    def _publish_locked(self) -> None:
        a = self.adapter
        reg = a.subscriptions
        last_id = getattr(a, "last_event_id", None)
        seen = (
            reg.version,
            last_id,
            a.transport_kind if self._conn is not None else self._snapshot.transport,
            a.ready,
        )
        if seen == self._seen and self._last_error is self._snapshot.last_error:
            return
        self._seen = seen
        entries = reg.entries()
        # As events show them: a key holding a secret (an ActionCable identifier carries the
        # pubsub token) is a redacted copy.
        self._snapshot = Snapshot(
            self._snapshot.state,
            tuple(public_subscription(e.subscription) for e in entries),
            tuple(public_subscription(e.subscription) for e in entries if e.state is SubState.PENDING),
            tuple(public_subscription(e.subscription) for e in entries if e.state is SubState.REJECTED),
            last_id if isinstance(last_id, str) else None,
            seen[2],
            self._last_error,
            seen[3],
            tuple(e.reason or "rejected" for e in entries if e.state is SubState.REJECTED),
        )
        self._changed.notify_all()

    def _publish(self) -> None:
        with self._lock:
            if not self._abandoned:
                self._publish_locked()

    # -- events --------------------------------------------------------------------------------

    def _emit(self, name: str, data: Any = None) -> None:
        self.dispatcher.put(Event(name, data, received_at=time.time()))

    def _error(self, kind: str, message: str, exc: BaseException | None = None, frame: str | None = None) -> None:
        message = redact(message)
        self.log.warning("%s: %s", kind, message)
        info = ErrorInfo(kind, message, frame, exc)
        self._last_error = info
        self._emit("error", info)

    # -- loop-thread steps ---------------------------------------------------------------------

    def _guarded(self, step: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            if self._phase == _DONE:
                return
            try:
                step()
            except Exception as exc:
                self._crashed(exc)

        return run

    def _loop_failed(self, exc: Exception) -> None:
        if self._phase != _DONE:
            self._crashed(exc)

    def _guard_commands(self) -> None:
        self._guarded(self._on_commands)()

    def _crashed(self, exc: Exception) -> None:
        """An exception escaped a step: report it and replace the connection, never end silently."""
        self.log.error("engine step failed", exc_info=exc)
        try:
            self._error("internal", f"I/O thread failed: {type(exc).__name__}: {exc}", exc)
            if self._phase == _SERVING and self._conn is not None:
                self._end_connection(f"internal error: {type(exc).__name__}", None, failed=True)
            elif self._phase != _DONE:
                self._retry_later(self.backoff.fail(f"internal error: {type(exc).__name__}"))
        except Exception as exc2:  # pragma: no cover - the recovery itself failed: stop loudly
            self.log.critical("engine cannot recover", exc_info=exc2)
            self._finish(f"internal error: {type(exc2).__name__}")

    def _apply_commands(self) -> None:
        cmds = self._cmds
        adapter = self.adapter
        while cmds:
            cmd = cmds.pop(0)
            try:
                cmd.apply(adapter, time.monotonic())
            except Exception as exc:
                self.log.error("command failed", exc_info=True)
                self._error("internal", f"command failed: {type(exc).__name__}: {exc}", exc)

    def _on_commands(self) -> None:
        if self._stop_requested:
            self._do_stop()
            return
        self._apply_commands()
        if self._phase == _SERVING:
            self._after_step()
        else:
            self.adapter.data_to_send()  # not connected: frames are moot (state is kept)
            self._deliver_events()
            self._publish()

    def _begin(self) -> None:
        """Start one connection attempt."""
        if self._stop_requested:
            self._do_stop()
            return
        self._apply_commands()
        self.adapter.data_to_send()
        self._set_state(State.CONNECTING if self._attempt == 0 else State.RECONNECTING)
        self._attempt += 1
        self._tries += 1
        self._phase = _OPENING
        try:
            conn = self._factory()
            request = self.adapter.prepare_connect(self.options.request_factory())
        except Exception as exc:
            self._open_failed(exc)
            return
        self._request_url = redact(request.url)
        if self._debug:
            self.log.debug("connecting to %s (connection attempt %d)", self._request_url, self._tries)
        self._opening = conn

        def open_it() -> Connection:
            if self._stop_requested:
                raise _Stopped
            conn.open(request, self.options.connect)
            return conn

        assert self._loop is not None
        self._loop.open_connection(conn, request, self.options.connect, open_it, self._guarded_opened(conn))

    def _guarded_opened(self, conn: Connection) -> Callable[[Any, BaseException | None], None]:
        def done(_result: Any, exc: BaseException | None) -> None:
            self._opening = None
            if self._phase == _DONE:
                return
            try:
                self._opened(conn, exc)
            except Exception as exc2:
                self._crashed(exc2)

        return done

    def _opened(self, conn: Connection, exc: BaseException | None) -> None:
        if self._stop_requested:
            if exc is None:
                try:
                    conn.close(1000, "")
                except Exception:  # pragma: no cover
                    pass
            self._do_stop()
            return
        if exc is not None:
            if not isinstance(exc, Exception):  # pragma: no cover - KeyboardInterrupt and co.
                raise exc
            self._open_failed(exc)
            return
        if self._attempt > 1:
            self.reconnects += 1
        self._serve(conn)

    def _open_failed(self, exc: Exception) -> None:
        if isinstance(exc, AuthenticationError):
            self._error("auth", str(exc), exc)
            self.backoff.fail(str(exc), auth=True)
            if self.backoff.current.stop_on_auth:
                self._finish("credentials refused")
                return
        elif isinstance(exc, TokenError):
            self._error("token", str(exc), exc)
            self.backoff.fail(str(exc))
        elif isinstance(exc, ConnectError):
            self._error("connect", str(exc), exc)
            self.backoff.fail(str(exc))
        else:  # e.g. the request factory raised
            self._error("connect", f"cannot prepare the connection: {type(exc).__name__}: {exc}", exc)
            self.backoff.fail(type(exc).__name__)
        self._retry_later(self.backoff.pending_delay())

    def _retry_later(self, delay: float, *, announced: bool = False) -> None:
        b = self.backoff.current
        if b.exhausted:
            if self.options.reconnect.max_attempts:
                last = f"; the last: {b.history[-1]}" if b.history and b.history[-1] else ""
                self._error("connect", f"giving up after {_failures(b.failures)} in a row (max_attempts){last}")
            reason = "max_attempts reached" if self.options.reconnect.max_attempts else "reconnect disabled"
            if announced and not self.options.reconnect.max_attempts:
                # A connection that was up ended, and nothing recorded why (a failed open has
                # its own "connect" error): no event of its own ("disconnected" said it), but
                # the snapshot and a later ClientClosedError say why the client stopped.
                last = f": {b.history[-1]}" if b.history and b.history[-1] else ""
                why = redact(f"reconnect disabled (max_attempts=0); the connection ended{last}")
                self._last_error = ErrorInfo("connect", why, None, ConnectionError(why))
            self._finish(reason, announce=not announced)
            return
        self._phase = _WAITING
        self._set_state(State.RECONNECTING)
        self._emit("reconnecting", ReconnectInfo(b.failures, delay))
        # Two counters, each named: the next attempt's number since the last connection (what
        # ``connected`` will report) and the failures in a row (the backoff's; ReconnectInfo).
        self.log.info(
            "reconnecting in %.2fs (connection attempt %d next; %s in a row)",
            delay,
            self._tries + 1,
            _failures(b.failures),
        )
        self._deliver_events()
        self._publish()
        self._schedule(time.monotonic() + delay)

    def _serve(self, conn: Connection) -> None:
        adapter = self.adapter
        adapter.clock_offset = time.time() - time.monotonic()
        adapter.transport_kind = conn.kind
        adapter.subprotocol = conn.subprotocol
        adapter.close_request()  # a request about the previous connection is moot now
        self._conn = conn
        self._phase = _SERVING
        self._connected_at = time.monotonic()
        self._ping_sent = None
        # A websocket is open once the server accepted the upgrade; a long-polling "connection"
        # (``established`` False) once the server answered a request.  Until then nothing is
        # announced: a refused first request reads like a refused upgrade (an error, then
        # reconnecting), never as connected-then-disconnected.
        self._announced = False
        if getattr(conn, "established", True):
            self._announce(conn)
        assert self._loop is not None
        self._paused = False
        self._backlog = []
        self._reader = self._guarded_readable(conn)
        self._loop.add_reader(conn.fileno(), self._reader)
        adapter.connection_made(time.monotonic())
        self._apply_commands()
        if conn.pending():
            # TLS: frames that came with the 101 response may already sit decrypted in the TLS
            # layer, where the selector cannot see them: read them now, not at the next
            # readable event (a server that says welcome and waits would wait for good).
            self._on_readable(conn)
            return
        self._after_step()

    def _announce(self, conn: Connection) -> None:
        self._announced = True
        self._set_state(State.CONNECTED)
        self._emit("connected", ConnectionInfo(self._request_url, conn.subprotocol, self._tries))
        self.log.info("connected to %s (connection attempt %d)", self._request_url, self._tries)
        self._tries = 0

    def _guarded_readable(self, conn: Connection) -> Callable[[], None]:
        def readable() -> None:
            if conn is not self._conn or self._phase == _DONE:
                return
            try:
                self._on_readable(conn)
            except Exception as exc:
                self._crashed(exc)

        return readable

    def _on_readable(self, conn: Connection) -> None:
        adapter = self.adapter
        if self._delivered:
            self._free_delivered()
        while True:
            try:
                items = conn.receive()
            except (OSError, ConnectionError) as exc:
                self._end_connection(f"connection lost: {type(exc).__name__}: {redact(exc)}", None, failed=True)
                return
            if items is None:
                self._ended(conn)
                return
            if items:
                if not self._announced and getattr(conn, "established", True):
                    self._announce(conn)
                now = time.monotonic()
                self.frames_received += len(items)
                self.last_frame_at = now + adapter.clock_offset
                if self._feed_some(items, now) and not conn.closed:
                    self._pause(conn, now)
                    break
            if conn.closed:
                self._ended(conn)
                return
            # A TLS socket can hold decrypted bytes that the selector cannot see.
            if not conn.pending():
                break
        self._after_step()

    # -- flow control ----------------------------------------------------------------------
    #
    # The handlers run on another thread; a feed faster than they are would grow the queue
    # without bound (and every queued event is a few objects that the garbage collector
    # traverses again and again).  So, as python-websockets' sync client does, the I/O side
    # stops reading a connection whose dispatcher holds ``high_water`` events and resumes once
    # they are down to a quarter: the data waits in the kernel and TCP makes the server wait.
    # Frames are fed in slices of _SLICE with a hand-over after each, so one read holding
    # many small frames does not overshoot the mark.  While paused, silence proves nothing:
    # the engine sends no ping and the adapter suspends its liveness checks
    # (Adapter.pause_reading); other timers (presence, keep-alive) go on.

    def _feed_some(self, items: Sequence[Any], now: float) -> bool:
        """Feed ``items`` and hand their events over, slice by slice; True if the dispatcher
        asked to pause (the items not fed yet are then kept in ``_backlog``)."""
        n = len(items)
        i = 0
        while i < n:
            if i:
                # Let the dispatcher have the GIL for the events just handed over, as the
                # next recv() would: delivered sooner, they also die young (see _SLICE).
                _yield_gil(0)
            if self._delivered:
                # Also before the first slice of a read: the dispatcher may have handed a
                # batch back during recv(), and the room left is measured without it.
                self._free_delivered()
            fit = self._fit(_gc_count()[0])
            j = n if n - i <= fit else i + max(min(_SLICE_MIN, fit), fit * 85 // 100)
            before = _gc_count()  # (after _fit: it may have collected)
            self._feed(items[i:j], now)
            self._measure(j - i, before, _gc_count())
            i = j
            if self._hand_over():
                self._backlog = list(items[i:])
                return True
        return False

    def _fit(self, count: int) -> int:
        """Frames that fit before the young generation's next collection, the collector's
        count being ``count`` (at most _SLICE_MAX, and at most the flow-control mark; see
        _SLICE)."""
        high = self.dispatcher.high_water
        most = min(_SLICE_MAX, max(_SLICE_MIN, high), self._slice_room) if high > 0 else _SLICE_MAX
        per = self._per_frame
        if per is None:
            return min(most, _SLICE)  # nothing measured yet
        young = _gc_threshold()[0] if _gc_enabled() else 0
        if young <= 0 or per <= 0.0:
            return most  # no automatic collection, or frames that leave nothing behind
        fit = int((young - count) / per)
        if fit < _SLICE_MIN:
            # The young generation is nearly full: collect it now, while none of the events
            # still to come is alive (the delivered ones were just freed), rather than a few
            # frames into the slice, where it would promote the slice's events (it comes
            # either way: this one only comes a few frames early).
            _gc_collect(0)
            fit = int(young / per)
        return min(most, max(_SLICE_MIN, fit))

    def _measure(self, k: int, before: tuple[int, int, int], after: tuple[int, int, int]) -> None:
        """Learn the young count that ``k`` frames added (from the collector's counts before
        and after them)."""
        if k < _SLICE_MIN:
            return  # too few to say
        added = after[0] - before[0]
        if after[1:] != before[1:] or added < 0:
            # A collection ran meanwhile: the count reached the threshold, restarted, and grew.
            young = _gc_threshold()[0]
            added = max(0, young - before[0]) + after[0]
        self._per_frame = added / k

    # -- freeing delivered events on this thread -------------------------------------------
    #
    # An event is built here (its frame's text, the decoded JSON, the model, the Event) and
    # its handlers run on the dispatcher's thread, usually on the other CPU.  Freed there,
    # every block of its memory went back to the allocator dirty in that CPU's cache, and the
    # next frame's objects, built here in those very blocks, paid a cache miss for each: on
    # throughput.py's Voxsig stream (945-byte frames, ~100 objects each) the I/O thread spent
    # ~21 µs per message in the adapter instead of ~12 when everything ran on one thread, and
    # the dispatcher ~5.4 µs instead of ~0.5.  So the dispatcher hands each delivered batch
    # back (Dispatcher.release) and this thread drops it at its next turn: before each read,
    # between slices, on a timer, when reading resumes, when the connection ends.  A quiet
    # connection has no next turn soon: the dispatcher, caught up and given nothing more for
    # 50 ms (Dispatcher.idle), frees what is left itself (its CPU's cache no longer matters).
    # Measured (alternating runs, 200,000 messages): ~30 -> ~22 µs of CPU per message, the
    # dispatcher's share 5.4 -> 2.1 µs.  An engine that is not serving lets the dispatcher
    # free each batch at once.

    def _release(self, batch: list[Event]) -> None:
        """Dispatcher thread: ``batch`` was delivered; free it on the I/O thread."""
        if self._phase == _SERVING and not self._stop_requested:
            self._delivered.append(batch)  # deque.append/popleft: atomic, no lock needed
            if self._phase != _SERVING or self._stop_requested:
                self._free_delivered()  # it ended meanwhile: the I/O thread may have freed its last

    def _free_delivered(self) -> None:
        pop = self._delivered.popleft
        try:
            while True:
                pop()
        except IndexError:
            pass

    def _hand_over(self) -> bool:
        # A handler reads a snapshot at least as new as the events it gets (see _flush).
        return self._deliver_events(publish=True)

    def _pause(self, conn: Connection, now: float) -> None:
        if self._paused:
            return
        self._paused = True
        self.pauses += 1
        assert self._loop is not None
        self._loop.remove_reader(conn.fileno())
        self.adapter.pause_reading(now)

    def _resume_reading(self) -> None:
        """The handlers caught up (called through the loop): feed the backlog, then read again."""
        self._free_delivered()
        conn = self._conn
        if not self._paused or conn is None or self._phase != _SERVING:
            return
        now = time.monotonic()
        backlog, self._backlog = self._backlog, []
        if backlog and self._feed_some(backlog, now):
            self._after_step()  # still paused: the rest waits for the next drain
            return
        self._paused = False
        self.adapter.resume_reading(now)
        self._ping_sent = None
        conn.last_activity = max(conn.last_activity, now)  # no ping is owed for the paused time
        assert self._loop is not None and self._reader is not None
        self._loop.add_reader(conn.fileno(), self._reader)
        if conn.pending():
            self._on_readable(conn)  # TLS bytes already decrypted: the selector will not say so
            return
        self._after_step()

    def _unpause(self) -> None:
        """The connection ends: the frames already read go to the adapter first, in order
        (as they would have without the pause)."""
        backlog, self._backlog = self._backlog, []
        if backlog:
            self._feed(backlog, time.monotonic())
        if self._paused:
            self._paused = False
            self.adapter.resume_reading(time.monotonic())

    def _feed(self, items: Iterable[Any], now: float) -> None:
        receive = self.adapter.receive_text
        debug = self._debug
        chars = 0
        for item in items:
            if type(item) is str:
                chars += len(item)
                if debug:
                    self.log.debug("< %s", truncate(item))
                try:
                    receive(item, now)
                except Exception as exc:  # an adapter bug must not lose later frames
                    self.log.error("adapter failed on a frame", exc_info=True)
                    self._error(
                        "bad_frame", f"frame could not be processed: {type(exc).__name__}: {exc}", exc, truncate(item)
                    )
            elif isinstance(item, FrameError):
                self._error("bad_frame", item.message, ProtocolError(item.message), item.frame)
            elif isinstance(item, HttpResult):
                self._fed_chars = -1
                self.adapter.http_result(item, now)
            else:  # pragma: no cover - a connection bug
                self._error("internal", f"connection returned {type(item).__name__}")
        if self._fed_chars >= 0:  # -1: an HTTP result was fed, the weights are estimated
            self._fed_chars += chars

    def _deliver_events(self, *, publish: bool = False) -> bool:
        """Hand the adapter's events to the dispatcher; True if it asks the feed to pause."""
        events = self.adapter.events_received()
        fed, self._fed_chars = self._fed_chars, 0
        if events:
            if publish:
                self._publish()
            # The size of the frames the events came from, for ``max_queue_bytes``: known here,
            # so the dispatcher need not re-encode or walk every event.
            return bool(self.dispatcher.put_many(events, wire_size=fed if fed > 0 else None))
        return False

    def _flush(self) -> bool:
        """Write the adapter's frames; False if writing failed (the connection was ended)."""
        conn = self._conn
        frames = self.adapter.data_to_send()
        # Published before anything goes out: a reader sees a snapshot at least as new as the
        # frames on the wire and the events handed over (e.g. last_event_id inside a handler).
        self._publish()
        if frames and conn is not None:
            debug = self._debug
            try:
                for text in frames:
                    if debug:
                        self.log.debug("> %s", truncate(text))
                    conn.send(text)
            except (OSError, ConnectionError) as exc:
                self._end_connection(f"connection lost: {type(exc).__name__}: {redact(exc)}", None, failed=True)
                return False
        self._deliver_events()
        return True

    def _after_step(self) -> None:
        """After any step while serving: flush, honour a close request, publish, re-arm the timer."""
        if not self._flush():
            return
        req = self.adapter.close_request()
        if req is not None:
            self._end_connection(req.reason, req)
            return
        self._schedule(self._next_deadline())

    def _next_deadline(self) -> float | None:
        deadline = self.adapter.next_deadline()
        conn = self._conn
        interval = None if self.adapter.has_heartbeat else self.options.connect.ping_interval
        if interval and conn is not None and not self._paused:
            if self._ping_sent is not None and conn.last_activity > self._ping_sent:
                self._ping_sent = None
            if self._ping_sent is None:
                due = conn.last_activity + interval
            else:
                due = self._ping_sent + self.options.connect.ping_timeout
            deadline = due if deadline is None else min(deadline, due)
        return deadline

    def _schedule(self, when: float | None) -> None:
        timer = self._timer
        if timer is not None and not timer.cancelled and self._timer_at is not None:
            if when == self._timer_at:
                return
            if self._phase == _SERVING and when is not None and self._timer_at < when:
                # The deadline moved later (each frame pushes the stale/ping deadline on): keep
                # the armed timer; it fires early and _on_timer re-arms for the real deadline.
                # One heap operation per deadline instead of one per frame.
                return
        loop = self._loop
        assert loop is not None
        loop.cancel(self._timer)
        self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = loop.call_at(when, self._guarded(self._on_timer))

    def _on_timer(self) -> None:
        self._free_delivered()
        self._timer = None
        self._timer_at = None
        if self._stop_requested:
            self._do_stop()
            return
        if self._phase == _WAITING:
            self._begin()
            return
        if self._phase != _SERVING:
            return
        conn = self._conn
        assert conn is not None
        now = time.monotonic()
        due = self._next_deadline()
        if due is not None and due > now:
            # Fired early: the deadline moved on since the timer was armed (see _schedule).
            # Re-arm and nothing else: an idle connection costs one push per deadline.
            self._schedule(due)
            return
        deadline = self.adapter.next_deadline()
        if deadline is not None and deadline <= now:
            self.adapter.handle_timer(now)
        interval = None if self.adapter.has_heartbeat else self.options.connect.ping_interval
        if interval and not self._paused:
            if self._ping_sent is not None and conn.last_activity > self._ping_sent:
                self._ping_sent = None
            if self._ping_sent is None:
                if conn.last_activity + interval <= now:
                    try:
                        conn.ping()
                    except (OSError, ConnectionError) as exc:
                        self._end_connection(f"connection lost: {type(exc).__name__}: {exc}", None, failed=True)
                        return
                    self._ping_sent = now
            elif self._ping_sent + self.options.connect.ping_timeout <= now:
                self.adapter.connection_lost(now, "no pong")
                self._end_connection(
                    f"no data for {self.options.connect.ping_timeout:.1f}s after a ping: connection is dead",
                    CloseRequest("dead connection", delay=0.0, code=1001),
                    lost_reported=True,
                )
                return
        self._after_step()

    def _ended(self, conn: Connection) -> None:
        """The connection ended under us.  The server often sends its reason (ActionCable
        ``disconnect``) in the same read as the close: the adapter's request names the real
        cause and says whether to come back."""
        self._unpause()
        req = self.adapter.close_request()
        failure = getattr(conn, "failure", None)
        if failure is not None:
            # The server broke the websocket framing rules and the connection failed them
            # (RFC 6455 7.1.7): say so, with the close code (failure.code), before "disconnected".
            self._error("protocol", str(failure), failure)
        reason = req.reason if req is not None else (conn.close_reason or "connection closed")
        self._end_connection(reason, req, server=req is None and failure is None)

    def _refusal(self, reason: str) -> str:
        """A credential refusal's message, naming the URL once (adapters may have named it)."""
        if "credentials refused" in reason:
            return reason
        return f"{self._request_url} refused the credentials: {reason}"

    def _end_connection(
        self,
        reason: str,
        req: CloseRequest | None,
        *,
        failed: bool = False,
        lost_reported: bool = False,
        server: bool = False,
    ) -> None:
        """Close the current connection and decide: reconnect (when) or finish."""
        self._unpause()
        conn = self._conn
        now = time.monotonic()
        if not lost_reported:
            try:
                self.adapter.connection_lost(now, reason)
            except Exception:  # pragma: no cover - keep going: the connection is gone anyway
                self.log.error("adapter failed in connection_lost", exc_info=True)
        self.adapter.data_to_send()  # nothing can be sent any more
        self._conn = None
        self._publish()
        self._deliver_events()
        self._detach(conn, 1000 if req is None else req.code)
        announced, self._announced = self._announced, False
        if announced and now - self._connected_at >= self.options.reconnect.stable_after:
            self.backoff.succeeded()
        self.log.info("disconnected: %s", reason)
        auth = req is not None and req.auth
        if auth:
            # Recorded before any finish: start(wait=True) raises AuthenticationError from it, and
            # after run_forever() returns, snapshot.last_error says why.
            refusal = redact(self._refusal(reason))
            self._last_error = ErrorInfo("auth", refusal, None, AuthenticationError(refusal))
        if req is not None and not req.reconnect:
            if not auth:
                # Why it stopped, for the snapshot and for the ClientClosedError of a later call
                # (the adapter's own "error" event, when it emitted one, already went out).
                stopped = redact(f"stopped for good: {req.reason}")
                self._last_error = ErrorInfo("server", stopped, None, RemoteError(stopped))
            self._finish(req.reason)
            return
        self.backoff.fail(reason, auth=auth)
        b = self.backoff.current
        if auth and b.stop_on_auth:
            if req is None or not req.reported:  # once: as for a refused websocket upgrade
                self._error("auth", self._refusal(req.reason if req else reason))
            self._finish("credentials refused")
            return
        if req is not None and req.delay is not None and not auth:
            delay = req.delay
        else:
            delay = b.delay()
        if (server or (req is not None and req.server)) and b.failures == 1 and not auth:
            # Every client of a fleet sees a server-initiated drop at once: spread the first retry.
            delay = b.restart_delay(delay)
        if not announced:
            # Never reported connected: like a failed open, an error (unless the adapter reported
            # it already, or it is routine) and no "disconnected".
            if not auth and not (req is not None and req.reported):
                self._error("connect", reason)
            self._retry_later(delay)
            return
        self._emit(
            "disconnected",
            DisconnectInfo(reason, not b.exhausted, getattr(conn, "close_code", None) if conn is not None else None),
        )
        self._retry_later(delay, announced=True)

    def _detach(self, conn: Connection | None, code: int, *, linger: bool = False) -> None:
        """Drop ``conn``.  ``linger``: a clean close of ours, whose goodbye frames must reach
        the server: the close frame is sent and the loop reads on until the server closes TCP
        (see :meth:`Loop.linger`), within :data:`CLOSE_LINGER` and the deadline of ``stop()``."""
        self._free_delivered()
        if conn is None:
            return
        loop = self._loop
        if loop is not None:
            try:
                loop.remove_reader(conn.fileno())
            except Exception:  # pragma: no cover
                pass
        try:
            if linger:
                now = time.monotonic()
                until = now + CLOSE_LINGER
                stop_by = self._stop_deadline
                if stop_by is not None:  # leave close(timeout=...) time to join the thread
                    until = min(until, now + (stop_by - now) / 2)
                if hasattr(conn, "goodbye_until"):  # long-polling: its own wait for the goodbye
                    conn.goodbye_until = until
                start = getattr(conn, "start_closing", None)
                if start is not None and loop is not None and until > now and start(code, ""):
                    loop.linger(conn, until)
                    return
            conn.close(code, "")
        except Exception:  # pragma: no cover - best effort
            self.log.debug("closing the connection failed", exc_info=True)

    def _do_stop(self) -> None:
        """close(): goodbye frames, then disconnect and finish."""
        if self._phase == _DONE:
            return
        if self._phase == _OPENING:
            # On a hub the opening blocks a handshake thread, which hub.close() joins.
            self._abort_opening()
        conn = self._conn
        # Frames read but not fed yet (reading was paused) are dropped like unread data.
        self._backlog = []
        self._paused = False
        if self._phase == _SERVING and conn is not None:
            now = time.monotonic()
            self._apply_commands()
            self.adapter.start_closing(now)
            self._set_state(State.CLOSING)
            frames = self.adapter.data_to_send()
            try:
                for text in frames:
                    conn.send(text)
            except (OSError, ConnectionError):
                pass
            self.adapter.connection_lost(now, "closed by the client")
            self.adapter.data_to_send()
            self._deliver_events()
            self._conn = None
            self._detach(conn, 1000, linger=True)
            if self._announced:
                self._emit("disconnected", DisconnectInfo("closed by the client", False))
        else:
            # Not connected: the last commands (a publish just before close()) still reach the
            # adapter, which reports what it can no longer send.
            self._apply_commands()
            self.adapter.start_closing(time.monotonic())
            self.adapter.data_to_send()
        self._phase = _DONE
        self._end(by_server=False)

    def _finish(self, reason: str, *, announce: bool = True) -> None:
        """Stop for good on the engine's own decision (server said stop, credentials refused...)."""
        conn, self._conn = self._conn, None
        self._detach(conn, 1000)
        if announce:
            self._emit("disconnected", DisconnectInfo(reason, False))
        self._phase = _DONE
        self._end(by_server=True)

    def _end(self, *, by_server: bool) -> None:
        self.stopped_by_server = by_server
        loop = self._loop
        if loop is not None:
            loop.cancel(self._timer)
            loop.remove_error_handler(self._loop_failed)
        self._timer = None
        self._free_delivered()
        self._deliver_events()
        with self._lock:
            if not self._abandoned:
                self._publish_locked()
                self._state_locked(State.CLOSED)
        self._finished.set()
        if self._on_finished is not None:
            try:
                self._on_finished()
            except Exception:  # pragma: no cover
                self.log.exception("on_finished failed")
        if self._own_loop and loop is not None:
            loop.stop()

    def _finish_unstarted(self) -> None:
        with self._lock:
            if self._phase == _DONE:
                return
            self._phase = _DONE
            self._state_locked(State.CLOSED)
        self._finished.set()


def _default_dispatch() -> Any:
    from .config import DispatchOptions

    return DispatchOptions()


def backoff_of(engine: Engine[Any]) -> Backoff:
    """The engine's current :class:`~realtime_sync.config.Backoff` (for stats and tests)."""
    return engine.backoff.current


def _failures(n: int) -> str:
    """``"1 failure"``, ``"3 failures"``: the backoff's counter as the logs name it."""
    return f"{n} failure" if n == 1 else f"{n} failures"
