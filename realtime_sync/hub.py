"""The hub: any number of clients, of any vendor, on a fixed handful of threads.

Integrations hold one connection per person (an agent's GWS notifications, a Chatwoot user's
stream, a Jifeline customer's socket): hundreds to thousands of clients in one process.  A
standalone client costs two threads (a loop and a dispatcher); on a hub it costs none::

    hub = rs.Hub(workers=4)
    clients = [rs.VoxsigClient(url, pubsub_token=t, account_id=1, user_id=u, hub=hub) for t, u in agents]
    for c in clients:
        c.on("message.created", handle)
        c.start()
    ...
    hub.close(timeout=10)       # closes every client, joins every thread

Theory of operation
-------------------
::

    user threads ──on()/subscribe()/close()──► Engine ──commands──► hub loop thread (one)
                                                 │                   selector (epoll) + ONE timer heap
                                                 │                   every client's sockets and timers
                                                 │                   handshakes ─► HandshakeLimiter ─► on the selector (ws:), or handshake threads (few)
                                                 ▼
                                 per-client Lane (bounded, ordered) ─► worker pool (``workers`` threads)

* **One loop.**  Every client's :class:`~realtime_sync.engine.Engine` runs on the hub's
  :class:`~realtime_sync.engine.Loop`: one selector for all the sockets, one heap for all the
  timers (ActionCable stale detection, presence, Bayeux connects, websocket pings, reconnect
  backoff: each engine keeps one entry, O(log n) to add).  The client API is unchanged.
* **Ordered dispatch on a pool.**  Each client's events go to its own :class:`~realtime_sync.
  _workers.Lane` on a :class:`~realtime_sync._workers.WorkerPool`: one client's callbacks never
  run concurrently and arrive in order; different clients run in parallel on the workers; a slow
  handler holds one worker and delays only its own client.  Each lane keeps the client's
  ``max_queue``, ``max_queue_bytes`` and ``overflow`` policy (the standalone dispatcher's code,
  weights from the frames' wire size); the hub bounds all lanes together (``max_queued``).
* **Connect storms.**  A :class:`~realtime_sync._limiter.HandshakeLimiter` in front of every
  opening handshake lets at most ``max_handshakes`` be in flight and spreads a burst (a server
  restart drops every client at once) over ``handshake_jitter`` seconds, so neither the server nor
  the process is flooded.  The engines' own restart jitter adds to it.  A plain ``ws://``
  handshake without a proxy runs on the loop itself (non-blocking connect, upgrade request and
  response head on the selector: :class:`~realtime_sync._wsconn.Handshake`); the ones that block
  (TLS through websocket-client, a proxy's CONNECT, a host name's DNS lookup, long-polling's
  first requests) run on ``handshake_workers`` threads.
* **Long-polling without threads.**  A Bayeux client on a hub (``transport="long-polling"``, or
  ``"auto"`` falling back) uses :class:`~realtime_sync._hub_longpoll.HubLongPollingConnection`:
  non-blocking HTTP/1.1 (:mod:`~realtime_sync._h1`, a strict codec of our own) on the same loop,
  not two threads per session.
* **Threads**: 1 loop + ``handshake_workers`` + ``workers``, whatever the number of clients
  (the defaults make 7).  ``hub.close()`` joins all of them.
"""

from __future__ import annotations

import collections
import functools
import logging
import selectors
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

import attrs

from ._hub_longpoll import HubLongPollingConnection
from ._limiter import HandshakeLimiter
from ._validate import number
from ._workers import Lane, WorkerPool, not_ended
from ._wsconn import Handshake, WebSocketConnection
from .config import ConnectOptions, DispatchOptions
from .dispatch import Dispatcher, OverflowReports, _weights
from .engine import Loop, Timer
from .events import Event
from .exceptions import ConfigurationError, ConnectError
from .protocols.base import ConnectRequest
from .transport_longpoll import AutoConnection, LongPollingConnection

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Hub", "HubStats"]

log = logging.getLogger("realtime_sync.hub")

#: ``hub.add(client)`` returns the client with its own (vendor) type; ``with Hub() as hub`` too.
_C = TypeVar("_C", bound="Client[Any]")
_H = TypeVar("_H", bound="Hub")

#: The most threads a hub may run (loop + handshake workers + dispatch workers).
MAX_THREADS = 8


@attrs.frozen
class HubStats:
    """A snapshot of a hub (``hub.stats``).

    ``states`` counts the clients by state (``{"connected": 9998, "reconnecting": 2}``);
    ``queued`` the events waiting in all clients' queues (``max_queued`` the hub-wide bound),
    ``busy_workers`` the workers running a handler now; ``timers`` the entries in the loop's timer
    heap; ``handshakes_in_flight`` / ``handshakes_waiting`` the limiter's view (``handshakes_total``
    granted so far, ``handshakes_peak`` the most in flight at once); ``threads`` the hub's threads
    alive.
    """

    clients: int
    states: dict[str, int]
    queued: int
    max_queued: int
    busy_workers: int
    dropped: int
    timers: int
    handshakes_in_flight: int
    handshakes_waiting: int
    handshakes_total: int
    handshakes_peak: int
    threads: int


_Done = Callable[[Any, BaseException | None], Any]
_Start = Callable[[_Done], None]


class _HubLoop(Loop):
    """The engines' loop: every opening handshake waits for a slot of the handshake limiter;
    plain websocket handshakes then run on the selector (non-blocking), the others (TLS, a
    proxy, long-polling, blocking work) on the handshake threads."""

    def __init__(self, name: str, *, handshake_workers: int, max_handshakes: int, jitter: float) -> None:
        super().__init__(name, handshake_workers=handshake_workers)
        self.limiter = HandshakeLimiter(max_concurrent=max_handshakes, jitter=jitter)
        self._waiting: dict[int, tuple[_Start, _Done]] = {}
        self._keys = iter(range(1 << 62))
        self._poll_timer: Any = None

    def run_blocking(self, fn: Callable[[], Any], done: _Done) -> None:
        self._when_granted(lambda finished: Loop.run_blocking(self, fn, finished), done)

    def open_connection(
        self,
        conn: Any,
        request: ConnectRequest,
        options: ConnectOptions,
        open_it: Callable[[], Any],
        done: _Done,
    ) -> None:
        begin = getattr(conn, "begin_open", None) if type(conn) is WebSocketConnection else None
        handshake = begin(request, options) if begin is not None else None
        if handshake is None:
            self.run_blocking(open_it, done)
        else:
            self._when_granted(lambda finished: self._handshake(handshake, finished), done)

    # -- the limiter in front of every handshake ------------------------------------------------

    def _when_granted(self, start: _Start, done: _Done) -> None:
        key = next(self._keys)
        if self.limiter.want(key, time.monotonic()):
            self._go(key, start, done)
        else:
            self._waiting[key] = (start, done)
            self._arm()

    def _go(self, key: int, start: _Start, done: _Done) -> None:
        def finished(result: Any, exc: BaseException | None) -> None:
            self.limiter.done(key)
            self._grant()
            done(result, exc)

        start(finished)

    def _grant(self) -> None:
        for key in self.limiter.poll(time.monotonic()):
            start, done = self._waiting.pop(key)  # type: ignore[call-overload]
            self._go(key, start, done)  # type: ignore[arg-type]
        self._arm()

    def _arm(self) -> None:
        when = self.limiter.next_deadline()
        self.cancel(self._poll_timer)
        self._poll_timer = None if when is None else self.call_at(when, self._grant)

    # -- a non-blocking websocket handshake on the selector ---------------------------------------

    def _handshake(self, hs: Handshake, finished: _Done) -> None:
        if hs.needs_resolve:  # DNS blocks: on a handshake thread, the rest here
            Loop.run_blocking(
                self, hs.resolve, lambda _r, exc: finished(None, exc) if exc else self._handshake(hs, finished)
            )
            return
        try:
            hs.start()
        except ConnectError as exc:
            hs.close()
            finished(None, exc)
            return
        fd = hs.fileno()
        sel = self._sel
        timer: Timer | None = None
        writing = True

        def end(exc: ConnectError | None) -> None:
            self.cancel(timer)
            self.remove_reader(fd)  # unregisters, whatever the events
            if exc is not None:
                hs.close()
            finished(None if exc else hs.conn, exc)

        def ready() -> None:
            nonlocal writing
            try:
                if hs.step():
                    end(None)
                    return
            except ConnectError as exc:
                end(exc)
                return
            if hs.want_write != writing:
                writing = hs.want_write
                sel.modify(fd, selectors.EVENT_WRITE if writing else selectors.EVENT_READ, ready)

        sel.register(fd, selectors.EVENT_WRITE, ready)
        if hs.deadline is not None:
            timer = self.call_at(hs.deadline, lambda: end(hs.timed_out()))

    def timers(self) -> int:
        return max(0, len(self._heap) - self._cancelled)

    def join_handshakes(self, timeout: float | None) -> bool:
        ex = self._executor
        if ex is None:
            return True
        ex.shutdown(wait=False, cancel_futures=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for t in list(getattr(ex, "_threads", ())):
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            ok = ok and not t.is_alive()
        return ok

    def handshake_threads(self) -> list[threading.Thread]:
        ex = self._executor
        return list(getattr(ex, "_threads", ())) if ex is not None else []


class LaneDispatcher(Dispatcher):
    """A client's dispatcher on the hub: the :class:`~realtime_sync.dispatch.Dispatcher`'s
    routing and callback isolation, delivered by a :class:`~realtime_sync._workers.Lane` of the
    hub's worker pool instead of a thread of its own."""

    def __init__(self, pool: WorkerPool, options: DispatchOptions, log: logging.Logger, name: str) -> None:
        super().__init__(options, log, name)
        # The lane queues and wakes here: the base's own queue and condition are not kept per
        # client (a few KiB per session at 10,000 clients).
        del self._queue, self._weights, self._cond
        self._pool = pool
        self._lane: Lane = pool.lane(
            self._deliver_batch,
            name=name,
            max_queue=options.max_queue,
            overflow=options.overflow,
            on_drop=self._on_drop,
            max_bytes=options.max_queue_bytes,
        )
        self._reports = OverflowReports(
            f"max_queue={options.max_queue}, max_queue_bytes={options.max_queue_bytes}, or the hub's max_queued",
            options.overflow,
            log,
        )

    def adopt(self, other: Dispatcher) -> None:
        """Take over ``other``'s registrations (a client moved onto the hub before start)."""
        with other._reg_lock:
            regs = list(other._regs)
        with self._reg_lock:
            self._regs = regs + self._regs
            self._cache = {}

    # -- feeding (loop thread) -------------------------------------------------------------

    def flow_control(self, high: int, low: int, on_drained: Callable[[], Any]) -> None:
        self._lane.flow_control(high, low, on_drained)

    def put_many(self, events: Iterable[Event], wire_size: int | None = None) -> bool:
        lane = self._lane
        if type(events) is not list:
            events = list(events)
        if events:
            # Weighed as the standalone dispatcher does (from the frames' wire size when the
            # engine knows it: one list of one repeated int), for the lane's max_queue_bytes.
            lane.put_many(events, _weights(events, wire_size))
        # Set under the pool's lock by that put; cleared (with on_drained called) by a worker.
        return lane.drain_wanted

    def _on_drop(self, n: int) -> None:
        self.dropped += n
        self._reports.count(n)

    def _deliver_batch(self, batch: list[Event]) -> None:
        deliver = self._deliver
        self._in_flight = len(batch)
        # Drops are named before the events that follow them (never queued under the bound).
        report = self._reports.take(caught_up=self._lane.depth() == 0)
        if report is not None:
            deliver(report)
        for event in batch:
            deliver(event)
            self._in_flight -= 1

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Nothing to start: the hub's workers run the lane."""

    @property
    def thread(self) -> threading.Thread | None:
        return None

    @property
    def runner(self) -> threading.Thread | None:
        """The hub worker running this client's handlers now, if any (named by close()'s warning)."""
        return self._lane.runner

    def depth(self) -> int:
        return self._lane.depth() + self._in_flight

    def queued_bytes(self) -> int:
        return self._lane.queued_bytes

    def stop_soon(self, then: Callable[[], None] | None = None) -> None:
        self._lane.stop(then)

    def stop(self, timeout: float | None, *, drain: bool = True) -> bool:
        if not drain:
            self._lane.discard()
        self._lane.stop()
        if self._lane.in_lane():
            return True
        if self._lane.join(timeout):
            return True
        self._lane.discard()
        return False

    def is_dispatch_thread(self) -> bool:
        return self._lane.in_lane()


def _stop_unreachable(clients: dict[int, Any], pool: WorkerPool, loop: Loop) -> None:
    """Stop the threads of a hub that was collected without ``close()`` (see Hub.__init__);
    never blocks (it runs wherever the collector ran, a hub thread included)."""
    if clients:  # pragma: no cover - clients hold their hub: it cannot be collected with them
        return
    loop.stop()
    pool.close(0.0)


class Hub:
    """Runs many clients on one I/O thread and a small pool of dispatcher workers.

    Args:
        workers: dispatcher threads running the clients' callbacks (one client's callbacks
            never run concurrently; different clients' do).
        handshake_workers: threads for the handshakes that block (``wss://``, through a proxy,
            long-polling) and other blocking work; plain ``ws://`` handshakes run on the loop.
        max_handshakes: the most opening handshakes in flight at once (the others wait their
            turn), so a connect storm never floods the server.
        handshake_jitter: seconds over which a burst of handshakes (startup, a server restart) is
            spread; a lone reconnect is not delayed.
        max_queued: the bound on events waiting in all the clients' queues together (each client
            keeps its own ``max_queue``, ``max_queue_bytes`` and ``overflow`` policy too).
        name: for thread names (``realtime_sync-<name>-loop``, ``-worker-<k>``, ``-handshake``).

    Example::

        hub = rs.Hub(workers=4)
        client = rs.JifelineCustomerClient(url, token=token, hub=hub)   # or hub.add(client)
        client.subscribe_ticket(42)
        client.start()
        print(hub.stats)
        hub.close(timeout=10)

    Clients on a hub behave as standalone ones (``on``, ``subscribe_*``, ``wait_for``,
    ``events``, ``close``, ``stats``); ``close()`` of one client leaves the others running.
    """

    def __init__(
        self,
        workers: int = 4,
        *,
        handshake_workers: int = 2,
        max_handshakes: int = 64,
        handshake_jitter: float = 1.0,
        max_queued: int = 1_000_000,
        name: str = "hub",
    ) -> None:
        # Numbers from settings may be strings ("4"), as everywhere in the configuration.
        workers, handshake_workers, max_handshakes, max_queued = (
            number(value, label, integer=True, minimum=1)
            for label, value in (
                ("workers", workers),
                ("handshake_workers", handshake_workers),
                ("max_handshakes", max_handshakes),
                ("max_queued", max_queued),
            )
        )
        handshake_jitter = number(handshake_jitter, "handshake_jitter", minimum=0, unit="seconds")
        if 1 + workers + handshake_workers > MAX_THREADS:
            raise ConfigurationError(
                f"a hub runs at most {MAX_THREADS} threads: 1 loop + workers ({workers}) + handshake_workers "
                f"({handshake_workers}) is {1 + workers + handshake_workers}; lower one of them"
            )
        self.name = name
        self.workers = workers
        self._lock = threading.Lock()
        self._clients: dict[int, Client[Any]] = {}
        self._closed = False
        self._pool = WorkerPool(workers, name=name, max_total=max_queued)
        self._loop = _HubLoop(
            name, handshake_workers=handshake_workers, max_handshakes=max_handshakes, jitter=float(handshake_jitter)
        )
        self._pool.start()
        self._loop.start(f"realtime_sync-{name}-loop")
        # A hub nobody can reach any more (a notebook cell run again: ``hub = rs.Hub()``) with no
        # client attached stops its threads when it is collected, instead of keeping them until
        # the process ends.  The finalizer holds the clients' table, whose clients hold the hub:
        # a hub with clients is never collected, so it never stops under running clients.
        self._finalizer = weakref.finalize(self, _stop_unreachable, self._clients, self._pool, self._loop)
        self._finalizer.atexit = False

    # -- clients ---------------------------------------------------------------------------

    @property
    def loop(self) -> Loop:
        """The loop every client of the hub runs on."""
        return self._loop

    def _dispatcher(self, options: DispatchOptions, log: logging.Logger, name: str) -> LaneDispatcher:
        self._check_open()
        return LaneDispatcher(self._pool, options, log, name)

    def _attach(self, client: Client[Any]) -> None:
        with self._lock:
            self._check_open()
            self._clients[id(client)] = client
        engine = client._engine
        factory = engine._factory

        def on_the_loop() -> Any:
            # Long-polling without threads: the hub's connection replaces the standalone one
            # (two blocking threads per session), forced or as the websocket's fallback.
            # The loop's timers wake a session whose request's own deadline (a proxy that never
            # answers) comes before any of the engine's.
            conn = factory()
            if type(conn) is LongPollingConnection:
                return HubLongPollingConnection(conn.cookies, conn.name, csrf=conn.csrf, loop=loop)
            if isinstance(conn, AutoConnection):
                conn.long_polling = functools.partial(HubLongPollingConnection, loop=loop)
            return conn

        loop = self._loop

        engine._factory = on_the_loop

    def _detach(self, client: Client[Any]) -> None:
        with self._lock:
            self._clients.pop(id(client), None)

    def add(self, client: _C) -> _C:
        """Move a client that was made without ``hub=`` onto this hub (before its ``start()``);
        returns it.

        >>> client = hub.add(rs.VoxsigClient(url, pubsub_token=token, account_id=1))   # doctest: +SKIP
        """
        client._join_hub(self)
        return client

    @property
    def clients(self) -> list[Client[Any]]:
        with self._lock:
            return list(self._clients.values())

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("this hub is closed; create a new Hub")

    # -- whole hub -------------------------------------------------------------------------

    @property
    def threads(self) -> list[threading.Thread]:
        """The hub's threads (loop, handshake workers once started, dispatch workers)."""
        loop_thread = self._loop.thread
        out = [loop_thread] if loop_thread is not None else []
        return out + self._loop.handshake_threads() + list(self._pool.threads)

    @property
    def stats(self) -> HubStats:
        """Clients by state, queue depths, timers, handshakes in flight, threads."""
        clients = self.clients
        states: collections.Counter[str] = collections.Counter(c.state.value for c in clients)
        p = self._pool.stats
        lim = self._loop.limiter
        return HubStats(
            len(clients),
            dict(states),
            p.queued,
            p.max_queued,
            p.busy,
            p.dropped,
            self._loop.timers(),
            lim.in_flight,
            lim.waiting,
            lim.granted,
            lim.peak,
            sum(1 for t in self.threads if t.is_alive()),
        )

    def close(self, timeout: float | None = 10.0) -> bool:
        """Close every client (goodbye frames first), then stop and join every hub thread.

        Returns True when everything ended within ``timeout``.  Idempotent."""
        timeout = number(timeout, "timeout", optional=True, unit="seconds")
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.1, deadline - time.monotonic())

        self._finalizer.detach()  # closed here: nothing left for the collector to stop
        with self._lock:
            self._closed = True
            clients = list(self._clients.values())
        # Ask every engine to stop at once (the loop processes them in one pass), then wait.
        for c in clients:
            c._engine.request_stop(deadline)
        ok = True
        for c in clients:
            try:
                c.close(timeout=left())
            except Exception:  # pragma: no cover - one client's failure must not stop the rest
                log.exception("closing %r failed", c)
                ok = False
        if self._loop.thread is not None and self._loop.thread is not threading.current_thread():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop.thread.join(left())
            ok = ok and not self._loop.thread.is_alive()
        ok = self._loop.join_handshakes(left()) and ok
        ok = self._pool.close(left()) and ok
        self._loop.close()
        with self._lock:
            self._clients.clear()
        if not ok:
            me = threading.current_thread()
            alive = [t for t in self.threads if t is not me and t.is_alive()]
            # A dispatch worker that outlives the pool's close is inside a handler.
            handlers = [t.name for t in alive if t in self._pool.threads]
            log.warning("%s", not_ended("hub.close()", timeout, [t.name for t in alive], handlers))
        return ok

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Hub {self.name} clients={len(self._clients)} workers={self.workers}>"
