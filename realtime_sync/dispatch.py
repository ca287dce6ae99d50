"""The dispatcher: routes events to callbacks on its own thread.

Theory of operation
-------------------
The transport thread hands over the events decoded from one read as a *batch*
(:meth:`Dispatcher.put_many`: one lock round-trip per batch, not per event).  The dispatcher
thread (``realtime_sync-dispatch-<client>``) swaps the whole queue out under the lock and
delivers the events in order, outside the lock, so a slow callback delays other callbacks but
never the transport thread, its heartbeats or its timers.

Routing cost does not grow with the number of registered handlers: the handlers for an event
name (exact registrations plus every glob pattern that matches the name) are resolved once and
cached in a dict keyed by the name; entity filters sit in a per-name dict keyed by the entity
id.  Registering or removing a handler replaces the cache (a new dict, swapped atomically), so
the hot path takes no lock.

Every callback is isolated: an exception is counted, logged with its traceback, and reported as
an ``error`` event (``ErrorInfo(kind="handler")``); delivery goes on.  An exception in an
``error`` handler is only logged (no loop).  When nobody would see it (no logging handler on the
``realtime_sync`` logger tree or the root logger, and no ``error`` handler of the user's), the
traceback is printed to stderr, as ``threading.excepthook`` does for a thread of the user's own.

Flow control: :meth:`Dispatcher.put_many` returns True once ``high_water`` events wait (see
:meth:`Dispatcher.flow_control`); the engine then stops reading the connection, and the
dispatcher thread calls it back when the queue is down to a quarter of that.

The queue is bounded (``DispatchOptions.max_queue``); when full, ``overflow="drop_oldest"``
(default) discards the oldest waiting events, ``"drop_newest"`` the incoming ones.  Drops are
counted in ``stats.dropped`` and reported as an ``error`` event of kind ``"overflow"``
(:class:`OverflowReports`): the report is not queued under the bound it reports on (the next
overflow would discard it); the dispatcher delivers it before its next batch, at most once a
second while the queue stays full and always once it has caught up, so every drop is named in a
report that arrives.  The queue never holds more than ``max_queue`` events, those being
delivered included (the thread takes batches of at most 64), nor more than ``max_queue_bytes``
of them by an estimate of their decoded size (at least one event is always kept).
"""

from __future__ import annotations

import collections
import fnmatch
import logging
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterable

import attrs

from . import _json
from ._build import Deferred
from ._redact import redact
from ._workers import bounded_extend
from .config import DispatchOptions
from .events import ErrorInfo, Event, stored_raw

__all__ = ["Dispatcher", "Handler", "OverflowReports", "same_handler"]

Handler = Callable[[Event], Any]

_PATTERN_CHARS = frozenset("*?[")


def is_pattern(name: str) -> bool:
    return not _PATTERN_CHARS.isdisjoint(name)


@attrs.define
class _Registration:
    pattern: str
    handler: Handler
    entity: str | None
    glob: bool
    internal: bool = False


@attrs.frozen
class _Plan:
    handlers: tuple[Handler, ...]
    # Keyed by the entity id as a string and, for ids that are canonical integers ("42"), also
    # by the int: the hot path then looks up an int or str entity id without calling str().
    by_entity: dict[Any, tuple[Handler, ...]]


def _entity_keys(by_entity: dict[str, list[Handler]]) -> dict[Any, tuple[Handler, ...]]:
    out: dict[Any, tuple[Handler, ...]] = {}
    for key, handlers in by_entity.items():
        out[key] = tuple(handlers)
        try:
            as_int = int(key)
        except ValueError:
            continue
        if str(as_int) == key:  # "42" and 42 are the same entity; "042" stays a string only
            out[as_int] = out[key]
    return out


_FAST_JSON = _json.CODEC == "orjson"

#: Events taken off the queue at a time by the dispatcher thread.
_BATCH = 64

#: Seconds the dispatcher, caught up, waits for more before it calls ``idle`` (see
#: Dispatcher.idle): a busy feed notifies it long before; a quiet one gets its last events freed.
_IDLE_AFTER = 0.05


def _size(value: Any, depth: int) -> int:
    t = type(value)
    if t is str or t is bytes:
        return len(value)
    if t is dict:
        if depth == 0:
            return 32 * len(value)
        n = 16
        for i, (k, v) in enumerate(value.items()):
            if i >= 64:  # bounded work per event: the rest estimated from the count
                return n + 32 * (len(value) - i)
            n += (len(k) if type(k) is str else 8) + _size(v, depth - 1)
        return n
    if t is list or t is tuple:
        if depth == 0:
            return 16 * len(value)
        n = 16
        for i, v in enumerate(value):
            if i >= 64:
                return n + 16 * (len(value) - i)
            n += _size(v, depth - 1)
        return n
    return 8


def _weight(event: Event) -> int:
    """An estimate of an event's size (its decoded frame), for ``max_queue_bytes``.

    With orjson, the length of the frame encoded again (about 1 us, in C); else a walk of the
    first levels (a few us): the bound is a safety net, not an exact count.
    """
    raw = stored_raw(event)  # not event.raw: that would run the deferred secret walk here
    if raw is None:
        return 64
    if type(raw) is Deferred:
        raw = raw.value
        if type(raw) is tuple:  # events.deferred_frame(): the frame's text
            return 64 + len(raw[0])
    if _FAST_JSON:
        try:
            return 64 + len(_json.dumps(raw))
        except Exception:  # not JSON-encodable (a custom adapter's raw): estimate it
            pass
    return 64 + _size(raw, 4)


def _weights(events: list[Event], wire_size: int | None) -> list[int]:
    """The weights of a batch: ``wire_size`` shared among its events when the transport knows
    it (a look at each event's raw cost ~0.13 µs an event, for a finer split of an estimate),
    else estimated event by event."""
    if wire_size:
        return [64 + max(1, wire_size // len(events))] * len(events)
    return [_weight(e) for e in events]


class OverflowReports:
    """Counts the events a bounded queue dropped and names them in ``error`` events of kind
    ``"overflow"``.

    The report is not queued under the bound it reports on: the next overflow (``drop_oldest``)
    or the report itself (``drop_newest``) would be discarded, and the user would never learn
    that events were lost.  The consumer :meth:`take` s it before its next batch instead: at most
    once a second while the queue stays full, and always once it has caught up, so every drop is
    named in a report that arrives.  The warning is logged on the feeding thread when the drops
    happen (at most once a second), so a handler stuck for good still leaves a trace.

    >>> reports = OverflowReports("max_queue=3", "drop_oldest", logging.getLogger("realtime_sync.doc"))
    >>> reports.count(2); reports.count(5)
    >>> reports.take(caught_up=True).data.message
    'event queue full (max_queue=3): dropped 7 event(s) (drop_oldest); handlers are slower than the feed'
    >>> reports.take(caught_up=True) is None
    True
    """

    def __init__(self, bound: str, overflow: str, log: logging.Logger) -> None:
        self._bound = bound
        self._overflow = overflow
        self._log = log
        self._lock = threading.Lock()
        self._pending = 0  # drops not yet named in a delivered report
        self._unlogged = 0  # drops not yet named in a log line
        self._last_report = -1e9  # monotonic; the first report is never held back
        self._last_log = -1e9

    def message(self, n: int) -> str:
        return (
            f"event queue full ({self._bound}): dropped {n} event(s) ({self._overflow}); "
            "handlers are slower than the feed"
        )

    def count(self, n: int) -> None:
        """``n`` events were dropped (the feeding thread, outside the queue's lock)."""
        now = time.monotonic()
        with self._lock:
            self._pending += n
            self._unlogged += n
            if now - self._last_log < 1.0:
                return
            self._last_log = now
            n, self._unlogged = self._unlogged, 0
        self._log.warning(self.message(n))

    def take(self, *, caught_up: bool) -> Event | None:
        """The report to deliver before the next batch, if one is due (the consumer thread)."""
        if not self._pending:  # the hot path: no drop, no lock
            return None
        now = time.monotonic()
        with self._lock:
            if not self._pending or (not caught_up and now - self._last_report < 1.0):
                return None
            self._last_report = now
            n, self._pending = self._pending, 0
        return Event("error", ErrorInfo("overflow", self.message(n)), received_at=time.time())


class Dispatcher:
    """Delivers events to registered handlers on one background thread."""

    def __init__(self, options: DispatchOptions, log: logging.Logger, name: str) -> None:
        self.options = options
        self.log = log
        self.name = name
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[Event] = collections.deque()
        self._weights: collections.deque[int] = collections.deque()  # the queued events' weights
        self._queued_bytes = 0
        self._regs: list[_Registration] = []
        self._by_key: dict[tuple[str, str | None, bool], list[_Registration]] = {}
        self._reg_lock = threading.Lock()
        self._cache: dict[str, _Plan] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._on_exit: Callable[[], None] | None = None
        self._in_flight = 0
        #: Where each delivered batch goes to be freed, when set (the engine sets it: see
        #: Engine._release): the events were built on another thread, and freeing them there
        #: keeps their memory on the CPU that reuses it.  None: freed here.
        self.release: Callable[[list[Event]], Any] | None = None
        #: Called on this thread (no lock held) when batches were released and nothing more
        #: came for ``_IDLE_AFTER`` seconds: the engine frees them then, rather than at its next
        #: read or timer (a quiet connection would keep the last events, however large).
        self.idle: Callable[[], Any] | None = None
        self.dispatched = 0
        self.handler_errors = 0
        self.dropped = 0
        self._reports = OverflowReports(
            f"max_queue={options.max_queue}, max_queue_bytes={options.max_queue_bytes}", options.overflow, log
        )
        # Flow control (see flow_control()): the feeder is told to pause at _high events, and
        # _on_drained() is called once they are down to _low.
        self._high = 0
        self._low = 0
        self._on_drained: Callable[[], Any] | None = None
        self._drain_wanted = False
        # An ``error`` nobody would see (no handler of the user's, no logging configured) is
        # printed to stderr, as Python's last-resort handler would print a warning.
        self._printed: dict[tuple[str, str], float] = {}
        self.add("error", self._last_resort, internal=True)

    # -- registration (any thread) ---------------------------------------------------------

    def add(self, pattern: str, handler: Handler, entity_id: Any = None, *, internal: bool = False) -> None:
        """Register ``handler``; ``internal`` ones (the library's own) survive ``remove()``.

        Registering the same handler again for the same pattern and entity replaces the earlier
        registration (in its place) rather than adding one: "the same" is the same object, or a
        function of the same module and qualified name (a notebook cell or a module run again
        defines a new function object).
        """
        entity = None if entity_id is None else str(entity_id)
        reg = _Registration(pattern, handler, entity, is_pattern(pattern), internal)
        key = (pattern, entity, internal)
        with self._reg_lock:
            # Only registrations with the same pattern and entity are compared: registering
            # many handlers stays linear.
            siblings = self._by_key.setdefault(key, [])
            for i, r in enumerate(siblings):
                if same_handler(r.handler, handler):
                    siblings[i] = reg
                    self._regs[self._regs.index(r)] = reg  # in the earlier one's place
                    break
            else:
                siblings.append(reg)
                self._regs.append(reg)
            self._cache = {}

    def remove(self, pattern: str | None = None, handler: Handler | None = None, entity_id: Any = None) -> int:
        """Remove matching registrations (None matches anything); returns how many."""
        entity = None if entity_id is None else str(entity_id)
        with self._reg_lock:
            keep = [
                r
                for r in self._regs
                if r.internal
                or not (
                    (pattern is None or r.pattern == pattern)
                    and (handler is None or r.handler == handler)
                    and (entity_id is None or r.entity == entity)
                )
            ]
            removed = len(self._regs) - len(keep)
            self._regs = keep
            self._by_key = {}
            for r in keep:
                self._by_key.setdefault((r.pattern, r.entity, r.internal), []).append(r)
            self._cache = {}
        return removed

    def _resolve(self, name: str) -> _Plan:
        with self._reg_lock:
            regs = list(self._regs)
            cache = self._cache
        handlers: list[Handler] = []
        by_entity: dict[str, list[Handler]] = {}
        for r in regs:
            if r.pattern == name or (r.glob and fnmatch.fnmatchcase(name, r.pattern)):
                if r.entity is None:
                    handlers.append(r.handler)
                else:
                    by_entity.setdefault(r.entity, []).append(r.handler)
        plan = _Plan(tuple(handlers), _entity_keys(by_entity))
        # Only cache into the dict we resolved against: a registration in between replaced it.
        cache[name] = plan
        return plan

    # -- feeding (transport thread) ----------------------------------------------------------

    def flow_control(self, high: int, low: int, on_drained: Callable[[], Any]) -> None:
        """Ask for back-pressure: :meth:`put_many` returns True once ``high`` events wait (those
        being delivered included), and then ``on_drained()`` is called (once, on the dispatching
        thread, outside any lock) when no more than ``low`` wait.  ``high=0`` turns it off."""
        with self._cond:
            self._high = max(0, high)
            self._low = max(0, min(low, high - 1))
            self._on_drained = on_drained if high > 0 else None
            self._drain_wanted = False

    @property
    def high_water(self) -> int:
        """The back-pressure mark set by :meth:`flow_control` (0: none)."""
        return self._high

    def put_many(self, events: Iterable[Event], wire_size: int | None = None) -> bool:
        """Queue ``events`` (from the transport thread).  ``wire_size``: the length of the
        frames they were decoded from, when known; their ``max_queue_bytes`` weight is then
        taken from it (shared among the batch) rather than estimated.

        Returns True when the feeder should pause (see :meth:`flow_control`)."""
        events = list(events)
        if not events:
            return False
        weights = _weights(events, wire_size)
        with self._cond:
            if self._stopping:
                return False
            dropped = self._enqueue(events, weights)
            self._cond.notify()
            over = self._high > 0 and len(self._queue) + self._in_flight >= self._high
            if over:
                self._drain_wanted = True
        if dropped:
            self._reports.count(dropped)  # outside the lock: a logging handler may be slow
        return over

    def _enqueue(self, events: list[Event], weights: list[int]) -> int:
        """Append ``events`` under both bounds (count, with the events being delivered, and
        estimated bytes) and the overflow policy; returns how many were dropped.  Called with
        the lock held."""
        dropped, self._queued_bytes = bounded_extend(
            self._queue,
            self._weights,
            events,
            weights,
            max(1, self.options.max_queue - self._in_flight),
            self.options.max_queue_bytes,
            self._queued_bytes,
            self.options.overflow == "drop_newest",
        )
        self.dropped += dropped
        return dropped

    def put(self, event: Event) -> None:
        self.put_many((event,))

    # -- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"realtime_sync-dispatch-{self.name}", daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def depth(self) -> int:
        return len(self._queue) + self._in_flight

    def queued_bytes(self) -> int:
        """The estimated size of the waiting events (the ``max_queue_bytes`` count)."""
        return self._queued_bytes

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            on_exit = self._on_exit
            if on_exit is not None:
                on_exit()

    def _loop(self) -> None:
        cond = self._cond
        released = False  # batches went to self.release since idle() was last called
        while True:
            with cond:
                quiet = False
                while not self._queue and not self._stopping:
                    if not released:
                        cond.wait()
                    elif not cond.wait(_IDLE_AFTER):
                        quiet = True  # nothing came: idle() below, outside the lock
                        break
                if not quiet:
                    if not self._queue:
                        return
                    # A bounded batch, counted in the bound while delivered: taking the whole
                    # queue let another max_queue events wait behind it (twice the bound).
                    q, wq = self._queue, self._weights
                    k = min(len(q), _BATCH)
                    if k == len(q):  # the usual case: the handlers keep up
                        batch = list(q)
                        q.clear()
                        self._queued_bytes -= sum(wq)
                        wq.clear()
                    else:
                        batch = [q.popleft() for _ in range(k)]
                        self._queued_bytes -= sum([wq.popleft() for _ in range(k)])
                    self._in_flight = k
                    caught_up = not q
                    drained = None
                    if self._drain_wanted and len(q) <= self._low:
                        self._drain_wanted = False
                        drained = self._on_drained
            if quiet:
                released = False
                idle = self.idle
                if idle is not None:
                    idle()
                continue
            if drained is not None:
                drained()  # the feeder resumes while this batch is delivered
            report = self._reports.take(caught_up=caught_up)
            if report is not None:
                self._deliver(report)
            self._deliver_all(batch, in_flight=True)
            release = self.release
            if release is not None:
                release(batch)
                released = True
            batch = report = None  # type: ignore[assignment]  # no reference left here

    def _deliver(self, event: Event) -> None:
        self._deliver_all((event,), in_flight=False)

    def _deliver_all(self, events: Iterable[Event], *, in_flight: bool) -> None:
        """Run each event's handlers, in order; ``in_flight``: they are counted in ``_in_flight``
        (a batch off the queue), which drops as each is done.  (One loop over the batch, not a
        call per event: the dispatcher's share of a message's CPU.)"""
        for event in events:
            plan = self._cache.get(event.name)  # read per event: a handler may register more
            if plan is None:
                plan = self._resolve(event.name)
            # The try blocks are inline (free in CPython 3.11+), not in a helper: one call per
            # handler instead of two.
            for handler in plan.handlers:
                try:
                    handler(event)
                except Exception as exc:
                    self._failed(handler, event, exc)
            by_entity = plan.by_entity
            if by_entity:
                eid = event.entity_id
                if eid is not None:
                    kind = type(eid)
                    for handler in by_entity.get(eid if kind is int or kind is str else str(eid), ()):
                        try:
                            handler(event)
                        except Exception as exc:
                            self._failed(handler, event, exc)
            self.dispatched += 1
            if in_flight:
                self._in_flight -= 1

    def _failed(self, handler: Handler, event: Event, exc: Exception) -> None:
        self.handler_errors += 1
        name = getattr(handler, "__qualname__", repr(handler))
        self.log.error("handler %s raised on %r event", name, event.name, exc_info=exc)
        if not _logging_configured(self.log) and (event.name == "error" or not self._has_user_handler("error")):
            # Nobody would see it (the package's NullHandler swallows the log record): do what
            # Python does for an uncaught exception in a thread.
            header = f"Exception in realtime_sync handler {name} on {event.name!r} event (thread {threading.current_thread().name}):\n"
            try:
                sys.stderr.write(redact(header + "".join(traceback.format_exception(exc))))
                sys.stderr.flush()
            except (OSError, ValueError, AttributeError):  # no usable stderr (pythonw, closed)
                pass
        if event.name != "error":
            info = ErrorInfo("handler", f"handler {name} raised {type(exc).__name__}: {exc}", None, exc)
            self._deliver(Event("error", info, event.entity_id, event, time.time(), event.subscription))

    def _last_resort(self, event: Event) -> None:
        """Print an ``error`` event to stderr when nothing else shows it: no ``error`` handler
        of the user's and no logging configured (the package's NullHandler swallows the log
        lines).  A wrong token, a refused subscription or a refused proxy password would
        otherwise leave a script silent while it retries.  Handler errors are left out (their
        traceback is printed, see _failed); the same kind and message at most once a minute."""
        info = event.data
        kind = getattr(info, "kind", "")
        if kind == "handler" or _logging_configured(self.log) or self._has_user_handler("error"):
            return
        message = str(getattr(info, "message", info))
        key = (str(kind), message)
        now = time.monotonic()
        if now - self._printed.get(key, -1e9) < _REPEAT_AFTER:
            return
        if len(self._printed) >= 64:
            self._printed.clear()
        self._printed[key] = now
        line = f"realtime_sync {self.name}: error ({kind}): {message}\n"
        try:
            sys.stderr.write(redact(line))
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):  # no usable stderr (pythonw, closed)
            pass

    def _has_user_handler(self, name: str) -> bool:
        """True if a handler of the user's (not the library's own) would receive ``name``."""
        with self._reg_lock:
            regs = list(self._regs)
        return any(
            not r.internal and (r.pattern == name or (r.glob and fnmatch.fnmatchcase(name, r.pattern))) for r in regs
        )

    def stop_soon(self, then: Callable[[], None] | None = None) -> None:
        """Ask the thread to end once the queue is drained, and to call ``then`` when it does
        (on the dispatcher thread); do not wait for it."""
        with self._cond:
            self._on_exit = then
            self._stopping = True
            self._cond.notify_all()

    def stop(self, timeout: float | None, *, drain: bool = True) -> bool:
        """Stop after delivering what is queued (``drain``); True if the thread ended in time."""
        with self._cond:
            self._stopping = True
            if not drain:
                self._queue.clear()
                self._weights.clear()
                self._queued_bytes = 0
            self._cond.notify_all()
        t = self._thread
        if t is None or t is threading.current_thread():
            return True
        t.join(timeout)
        if t.is_alive():
            with self._cond:
                self._queue.clear()
                self._weights.clear()
                self._queued_bytes = 0
            return False
        return True

    def is_dispatch_thread(self) -> bool:
        return self._thread is threading.current_thread()


def same_handler(a: Any, b: Any) -> bool:
    """True if ``b`` is ``a`` again: the same object, the same method of the same object, or a
    function with the same module and qualified name (redefined by a re-run notebook cell, a
    module imported twice).  Lambdas and nested functions are only ever the same object.
    """
    if a is b or a == b:
        return True
    self_a, self_b = getattr(a, "__self__", None), getattr(b, "__self__", None)
    if self_a is not None or self_b is not None:
        func_a, func_b = getattr(a, "__func__", None), getattr(b, "__func__", None)
        # A builtin method (``list.append`` of one list, ``print`` of the builtins module) has no
        # ``__func__``: ``a == b`` above was the whole comparison.
        return self_a is self_b and func_a is not None and func_b is not None and same_handler(func_a, func_b)
    qualname = getattr(a, "__qualname__", None)
    return (
        isinstance(qualname, str)
        and "<lambda>" not in qualname
        and "<locals>" not in qualname
        and qualname == getattr(b, "__qualname__", None)
        and getattr(a, "__module__", None) == getattr(b, "__module__", None)
    )


#: Seconds before the same unseen error (kind and message) is printed again (see _last_resort).
_REPEAT_AFTER = 60.0


def _logging_configured(logger: logging.Logger) -> bool:
    """True if a record of ``logger`` reaches a handler that shows it (a NullHandler does not).

    Mirrors ``Logger.callHandlers``: the logger and its ancestors up to the first one with
    ``propagate`` false; an enabled ``ERROR`` level is assumed (the caller logs at ERROR).
    """
    current: logging.Logger | None = logger
    while current is not None:
        if any(not isinstance(h, logging.NullHandler) for h in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False
