"""Per-client ordered work on a fixed pool of worker threads (the hub's dispatchers).

Theory of operation
-------------------
A hub runs thousands of clients but only ``workers`` dispatcher threads.  Each client gets a
:class:`Lane`: a bounded FIFO of items and a ``deliver(batch)`` function.  A lane is *serial*:
at most one worker runs it at a time, so one client's callbacks never run concurrently and
always in order.  Different lanes run in parallel on different workers.

::

    loop thread --lane.put_many(events)--> lane queue --(lane not yet scheduled)--> pool ready deque
    worker k: pops a lane, takes up to ``batch`` items, deliver(batch) outside the lock,
              then re-queues the lane at the tail if it has more (round-robin: a busy client
              cannot starve the others), or marks it idle.

A slow handler holds one worker and delays only its own lane; the other lanes keep flowing on
the remaining workers (with ``workers`` slow lanes at once, everyone waits: size the pool for it).

Bounds: each lane holds at most ``max_queue`` items, those of the batch being delivered included
(at least one may always wait), at most ``max_bytes`` of them by the weights given to
:meth:`Lane.put_many` (the client's ``max_queue_bytes``: at least one item is always kept), and the
whole pool at most ``max_total``.  Both per-lane bounds and the overflow policies are the
standalone dispatcher's own code (:func:`bounded_extend`).  Flow control
(:meth:`Lane.flow_control`): a lane with ``high`` items or more tells its feeder to pause
(:meth:`Lane.put_many` then leaves ``lane.drain_wanted`` true) and calls its ``on_drained()``
once a worker has taken it down to ``low``, so a client's reader stops before the bound drops
anything.
When either is full the lane's ``overflow`` policy applies, as for a standalone client:
``"drop_oldest"`` discards the lane's own oldest waiting item (a busy client sheds its own
backlog, never another client's), ``"drop_newest"`` the incoming one.  Drops are counted and
reported to the lane's ``on_drop(n)`` (called on the thread that put, outside the lock).

One lock (a :class:`threading.Condition`) guards every lane and the ready deque: one acquisition
per batch put and per batch taken, never held while user code runs.

>>> pool = WorkerPool(workers=2, name="doc")
>>> seen = []
>>> lane = pool.lane(seen.extend, name="a")
>>> lane.put_many([1, 2, 3])
0
>>> lane.stop(); lane.join(5.0)
True
>>> seen
[1, 2, 3]
>>> pool.close(5.0)
True
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Iterable

import attrs

from .config import OVERFLOW_POLICIES
from .exceptions import ConfigurationError

__all__ = ["Lane", "PoolStats", "WorkerPool", "bounded_extend", "not_ended"]

log = logging.getLogger("realtime_sync.hub.workers")


def not_ended(what: str, timeout: float | None, threads: Iterable[str], handlers: Iterable[str] = ()) -> str:
    """The warning of a ``close()`` whose threads outlived its timeout: which ones, and, when a
    handler holds one, what to do about it.

    >>> not_ended("close()", 1.999947, ["realtime_sync-dispatch-x"], ["realtime_sync-dispatch-x"])  # doctest: +ELLIPSIS
    'close(): still running after 2s: realtime_sync-dispatch-x; a handler is still running on ...'
    """
    names = ", ".join(dict.fromkeys(threads)) or "a thread"
    # As given, rounded: what is left of a deadline (1.999947...) is the timeout the caller chose.
    after = "" if timeout is None else f" after {round(timeout, 2):g}s"
    text = f"{what}: still running{after}: {names}"
    busy = ", ".join(dict.fromkeys(handlers))
    if busy:
        text += (
            f"; a handler is still running on {busy}: handlers should return promptly (hand long work to "
            "a thread or queue of your own), or close with a longer timeout"
        )
    return text


def bounded_extend(
    q: collections.deque[Any],
    wq: collections.deque[int],
    items: list[Any],
    weights: list[int],
    limit: int,
    max_bytes: int,
    queued_bytes: int,
    newest: bool,
) -> tuple[int, int]:
    """Append ``items`` to ``q`` (their ``weights`` to ``wq``) under a count bound (``limit``) and a
    byte bound (``max_bytes``; ``queued_bytes`` already queued), by the overflow policy
    (``newest``: ``"drop_newest"``, else ``"drop_oldest"``).  Returns ``(dropped, queued_bytes)``.

    The byte bound always lets one item wait; a ``limit`` of 0 takes nothing.  When everything
    fits (the usual case) this is one sum and two C-level extends, whatever the batch's length.

    >>> q, wq = collections.deque(), collections.deque()
    >>> bounded_extend(q, wq, ["a", "b", "c"], [10, 10, 10], 5, 25, 0, False)
    (1, 20)
    >>> list(q)
    ['b', 'c']
    """
    total = sum(weights)
    if len(q) + len(items) <= limit and queued_bytes + total <= max_bytes:
        q.extend(items)
        wq.extend(weights)
        return 0, queued_bytes + total
    dropped = 0
    if newest:
        for item, w in zip(items, weights, strict=True):
            if len(q) < limit and (queued_bytes + w <= max_bytes or not q):
                q.append(item)
                wq.append(w)
                queued_bytes += w
            else:
                dropped += 1
    else:
        # drop_oldest: the newest items survive, whether queued or incoming (one read can carry a
        # batch larger than the whole queue).
        if len(items) > limit:
            dropped += len(items) - limit
            items = items[len(items) - limit :]
            weights = weights[len(weights) - limit :]
        q.extend(items)
        wq.extend(weights)
        queued_bytes += sum(weights)
        while len(q) > 1 and (len(q) > limit or queued_bytes > max_bytes):
            q.popleft()
            queued_bytes -= wq.popleft()
            dropped += 1
    return dropped, queued_bytes


@attrs.frozen
class PoolStats:
    """A snapshot of a :class:`WorkerPool`: threads, lanes, items queued, workers busy."""

    workers: int
    lanes: int
    queued: int
    max_queued: int
    busy: int
    dropped: int


class Lane:
    """One client's serial queue on a :class:`WorkerPool` (make it with :meth:`WorkerPool.lane`)."""

    __slots__ = (
        "_in_flight",
        "_on_stopped",
        "_pool",
        "_runner",
        "_running",
        "_scheduled",
        "_stopping",
        "deliver",
        "drain_wanted",
        "dropped",
        "high",
        "items",
        "low",
        "max_bytes",
        "max_queue",
        "name",
        "on_drained",
        "on_drop",
        "overflow",
        "queued_bytes",
        "stopped",
        "weights",
    )

    def __init__(
        self,
        pool: WorkerPool,
        deliver: Callable[[list[Any]], Any],
        name: str,
        max_queue: int,
        overflow: str,
        on_drop: Callable[[int], Any] | None,
        max_bytes: int = 1 << 62,
    ) -> None:
        self._pool = pool
        self.deliver = deliver
        self.name = name
        self.max_queue = max_queue
        self.overflow = overflow
        self.on_drop = on_drop
        #: Waiting items; an empty tuple until the first (a deque is 600 bytes: a hub holds thousands
        #: of lanes, most of them empty) and again once drained.
        self.items: collections.deque[Any] | tuple[()] = ()
        #: The waiting items' weights (same length as ``items``) and their sum.
        self.weights: collections.deque[int] | tuple[()] = ()
        self.queued_bytes = 0
        self.max_bytes = max_bytes
        self.dropped = 0
        self._scheduled = False  # in the ready deque or running
        self._in_flight = 0  # items of the batch being delivered: they count in max_queue
        self._running = False
        self._runner: threading.Thread | None = None
        self._stopping = False
        self.stopped = False
        self._on_stopped: Callable[[], Any] | None = None
        self.high = 0
        self.low = 0
        self.on_drained: Callable[[], Any] | None = None
        self.drain_wanted = False

    def flow_control(self, high: int, low: int, on_drained: Callable[[], Any] | None) -> None:
        """Pause the feeder at ``high`` items (``drain_wanted`` set by :meth:`put_many`) and call
        ``on_drained()`` (on a worker, outside the lock) once ``low`` or fewer wait; 0: off."""
        with self._pool._cond:
            self.high = max(0, high)
            self.low = max(0, min(low, high - 1))
            self.on_drained = on_drained if high > 0 else None
            self.drain_wanted = False

    def put(self, item: Any) -> int:
        """Queue one item; returns how many items were dropped to respect the bounds."""
        return self.put_many((item,))

    def put_many(self, items: Iterable[Any], weights: list[int] | None = None) -> int:
        """Queue items in order (one lock round-trip); returns how many were dropped.

        ``weights``: each item's size for the lane's ``max_bytes`` (None: 0 each)."""
        return self._pool._put(self, items, weights)

    def depth(self) -> int:
        """Items waiting (not counting a batch being delivered)."""
        return len(self.items)

    def busy(self) -> bool:
        """True while a worker runs this lane, or items wait."""
        with self._pool._cond:
            return self._scheduled

    def in_lane(self) -> bool:
        """True when called from inside this lane's ``deliver`` (e.g. a handler)."""
        return self._runner is threading.current_thread()

    @property
    def runner(self) -> threading.Thread | None:
        """The worker delivering this lane's items now, if any (named by close()'s warning)."""
        return self._runner

    def stop(self, then: Callable[[], Any] | None = None) -> None:
        """Deliver what is queued, then stop; ``then()`` runs once the lane is done (on the worker
        that finished it, or here when the lane is idle).  Later puts are ignored.  Idempotent."""
        self._pool._stop_lane(self, then)

    def discard(self) -> int:
        """Drop every waiting item (a batch being delivered finishes); returns how many."""
        return self._pool._discard(self)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the lane has stopped (after :meth:`stop`); True if it did.  From inside the
        lane itself (a handler closing its own client) this returns False at once, since the
        lane cannot finish while its caller runs."""
        if self.in_lane():
            return self.stopped
        deadline = None if timeout is None else time.monotonic() + timeout
        cond = self._pool._cond
        with cond:
            while not self.stopped:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                cond.wait(remaining)
            return True

    def __repr__(self) -> str:
        return f"<Lane {self.name} depth={len(self.items)} stopped={self.stopped}>"


class WorkerPool:
    """``workers`` named threads running :class:`Lane` batches, each lane serially.

    Args:
        workers: the number of threads (fixed; started on the first lane, or by :meth:`start`).
        name: thread names are ``realtime_sync-<name>-worker-<k>``.
        max_total: the bound on items waiting in all lanes together.
        batch: items a worker takes from one lane before moving to the next lane (fairness).

    Example::

        pool = WorkerPool(workers=4, name="hub")
        lane = pool.lane(lambda batch: [handle(x) for x in batch], name="client-1", max_queue=10_000)
        lane.put_many(events)          # from the I/O thread
        ...
        lane.stop(); lane.join(5)      # one client leaves
        pool.close(timeout=5)          # joins every worker
    """

    def __init__(self, workers: int = 4, *, name: str = "hub", max_total: int = 1_000_000, batch: int = 64) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigurationError(f"workers must be a positive integer, got {workers!r}")
        if not isinstance(max_total, int) or max_total < 1:
            raise ConfigurationError(f"max_total must be a positive integer, got {max_total!r}")
        self.workers = workers
        self.name = name
        self.max_total = max_total
        self.batch = max(1, batch)
        self._cond = threading.Condition(threading.Lock())
        self._ready: collections.deque[Lane] = collections.deque()
        self._lanes: set[Lane] = set()
        self._threads: list[threading.Thread] = []
        self._total = 0
        self._busy = 0
        self._dropped = 0
        self._closing = False

    # -- lanes -----------------------------------------------------------------------------

    def lane(
        self,
        deliver: Callable[[list[Any]], Any],
        *,
        name: str = "lane",
        max_queue: int = 100_000,
        overflow: str = "drop_oldest",
        on_drop: Callable[[int], Any] | None = None,
        max_bytes: int | None = None,
    ) -> Lane:
        """A new serial lane delivering batches of items to ``deliver`` (in order, one at a time);
        ``max_bytes`` bounds the waiting items' weights too (None: no byte bound)."""
        if overflow not in OVERFLOW_POLICIES:
            raise ConfigurationError(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}")
        if max_queue < 1:
            raise ConfigurationError(f"max_queue must be >= 1, got {max_queue!r}")
        if max_bytes is not None and max_bytes < 1:
            raise ConfigurationError(f"max_bytes must be >= 1, got {max_bytes!r}")
        lane = Lane(self, deliver, name, max_queue, overflow, on_drop, 1 << 62 if max_bytes is None else max_bytes)
        with self._cond:
            if self._closing:
                raise RuntimeError("this worker pool is closed")
            self._lanes.add(lane)
        self.start()
        return lane

    def start(self) -> None:
        """Start the worker threads (idempotent)."""
        with self._cond:
            if self._threads or self._closing:
                return
            self._threads = [
                threading.Thread(target=self._work, name=f"realtime_sync-{self.name}-worker-{k}", daemon=True)
                for k in range(self.workers)
            ]
            threads = list(self._threads)
        for t in threads:
            t.start()

    def _put(self, lane: Lane, items: Iterable[Any], weights: list[int] | None = None) -> int:
        if type(items) is not list:
            items = list(items)
        if weights is None:
            weights = [0] * len(items)
        with self._cond:
            if lane._stopping or self._closing:
                return 0
            q, wq = lane.items, lane.weights
            if not isinstance(q, collections.deque) or not isinstance(wq, collections.deque):
                q = lane.items = collections.deque()
                wq = lane.weights = collections.deque()
            before = len(q)
            # The batch being delivered counts in the lane's bound (else a lane held max_queue
            # waiting items plus a whole batch); at least one item may always wait, unless the
            # whole pool is full: then the lane may only replace its own items.
            limit = min(max(1, lane.max_queue - lane._in_flight), before + max(0, self.max_total - self._total))
            dropped, lane.queued_bytes = bounded_extend(
                q, wq, items, weights, limit, lane.max_bytes, lane.queued_bytes, lane.overflow == "drop_newest"
            )
            self._total += len(q) - before
            if lane.high and len(q) + lane._in_flight >= lane.high:
                lane.drain_wanted = True
            if q and not lane._scheduled:
                lane._scheduled = True
                self._ready.append(lane)
                self._cond.notify()
            if dropped:
                lane.dropped += dropped
                self._dropped += dropped
        if dropped and lane.on_drop is not None:
            try:
                lane.on_drop(dropped)
            except Exception:  # pragma: no cover - the owner's bug, never the I/O thread's end
                log.exception("on_drop of %s raised", lane.name)
        return dropped

    def _discard(self, lane: Lane) -> int:
        with self._cond:
            n = len(lane.items)
            lane.items = lane.weights = ()
            lane.queued_bytes = 0
            self._total -= n
            return n

    def _stop_lane(self, lane: Lane, then: Callable[[], Any] | None) -> None:
        run_now = False
        with self._cond:
            if lane._stopping:
                return
            lane._stopping = True
            lane._on_stopped = then
            if not lane._scheduled:
                lane.stopped = True
                self._lanes.discard(lane)
                run_now = True
                self._cond.notify_all()
        if run_now and then is not None:
            then()

    # -- workers ---------------------------------------------------------------------------

    def _work(self) -> None:
        cond = self._cond
        me = threading.current_thread()
        while True:
            with cond:
                while not self._ready and not self._closing:
                    cond.wait()
                if not self._ready:
                    return
                lane = self._ready.popleft()
                q, wq = lane.items, lane.weights
                n = min(len(q), self.batch)
                batch: list[Any] = []
                if not isinstance(q, collections.deque) or not isinstance(wq, collections.deque):
                    pass  # () : discarded since it was scheduled
                elif n == len(q):  # the usual case: the lane is taken whole (C-level copies)
                    batch = list(q)
                    q.clear()
                    wq.clear()
                    lane.queued_bytes = 0
                else:
                    batch = [q.popleft() for _ in range(n)]
                    lane.queued_bytes -= sum([wq.popleft() for _ in range(n)])
                self._total -= n
                lane._in_flight = n
                lane._running = True
                lane._runner = me
                self._busy += 1
                drained = None
                if lane.drain_wanted and len(q) <= lane.low:
                    lane.drain_wanted = False
                    drained = lane.on_drained
            if drained is not None:
                try:
                    drained()  # the feeder resumes while this batch is delivered
                except Exception:  # pragma: no cover - the owner's bug
                    log.exception("on_drained of %s raised", lane.name)
            try:
                if batch:
                    lane.deliver(batch)
            except BaseException:  # the owner isolates its callbacks: this is its own bug
                log.exception("delivery on %s raised", lane.name)
            then = None
            with cond:
                self._busy -= 1
                lane._in_flight = 0
                lane._running = False
                lane._runner = None
                if lane.items:
                    self._ready.append(lane)
                    cond.notify()
                else:
                    lane.items = lane.weights = ()  # (drained: the deques go; see Lane.items)
                    lane._scheduled = False
                    if lane._stopping and not lane.stopped:
                        lane.stopped = True
                        self._lanes.discard(lane)
                        then = lane._on_stopped
                        cond.notify_all()
            if then is not None:
                try:
                    then()
                except Exception:  # pragma: no cover
                    log.exception("stop callback of %s raised", lane.name)

    # -- whole pool ------------------------------------------------------------------------

    @property
    def stats(self) -> PoolStats:
        with self._cond:
            return PoolStats(
                len(self._threads), len(self._lanes), self._total, self.max_total, self._busy, self._dropped
            )

    @property
    def threads(self) -> tuple[threading.Thread, ...]:
        return tuple(self._threads)

    def close(self, timeout: float | None = None) -> bool:
        """Deliver what is queued, then end and join every worker; True if all ended in time.

        Lanes still open are stopped (their ``then`` callbacks run).  Safe to call from a
        worker (it is then not joined).  Idempotent."""
        with self._cond:
            lanes = list(self._lanes)
        for lane in lanes:
            lane.stop(lane._on_stopped)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            threads = list(self._threads)
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.current_thread()
        ok = True
        for t in threads:
            if t is me:
                continue
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            ok = ok and not t.is_alive()
        return ok
