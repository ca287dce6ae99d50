"""Hand events on to Redis Streams or Celery, at least once, with bounded buffering.

A *sink* is a handler (``client.on("*", sink)``) that hands each event on to a broker: an
event counts as handed on only once the broker accepted it.  While the broker is down, events
wait in a bounded in-memory buffer and are retried in order; past the bound they are dropped,
counted (``sink.stats.dropped``), logged, and reported to ``on_drop``, never lost in silence.

    import realtime_sync as rs
    from realtime_sync.contrib.sinks import RedisStreamSink

    sink = RedisStreamSink("redis://localhost:6379/0", stream="realtime-events", maxlen=100_000)
    client = rs.VoxsigClient(URL, pubsub_token=TOKEN, account_id=1, user_id=7)
    client.on("*", sink)                   # lifecycle events are left out unless asked
    with sink, client:
        client.run_forever()

Consumers scale out with a consumer group; :class:`StreamConsumer` reads, deduplicates by
``event.key`` (an event may be handed on twice around a reconnect or a takeover) and acknowledges:

    from realtime_sync.contrib.sinks import StreamConsumer

    consumer = StreamConsumer("redis://localhost:6379/0", "realtime-events", group="billing")
    consumer.run(lambda event: print(event.name, event.entity_id))     # one per worker process

:class:`CelerySink` sends each event as a task (``task.delay(event_dict)`` done right: JSON-ready,
secrets left out, broker failures retried):

    sink = CelerySink(celery_app, "myapp.tasks.handle_event")

    @celery_app.task(name="myapp.tasks.handle_event")
    def handle_event(event_dict):
        event = rs.Event.from_dict(event_dict)

Needs the ``redis`` extra (``pip install 'realtime_sync[redis]'``) for the stream sink and the
consumer, the ``celery`` extra for the Celery sink.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import threading
import time
from typing import Any, Callable, Iterator, Sequence, TypeVar

import attrs

from .._redact import redact
from .._validate import seconds
from ..events import LIFECYCLE_EVENTS, Event
from ..exceptions import ConfigurationError
from ._redis import STORE_POINT, describe_error, hash_tag, is_cluster, same_slot
from ._redis import redis_client as redis_client

__all__ = [
    "BufferedSink",
    "CelerySink",
    "RedisStreamSink",
    "SinkStats",
    "StreamConsumer",
    "StreamEntry",
]

log = logging.getLogger("realtime_sync.sinks")

#: ``start()`` and ``with ... as x`` return the instance with its own type (a subclass keeps it).
_S = TypeVar("_S", bound="BufferedSink")


def _redis_module() -> Any:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the Redis sink and consumer need redis-py: pip install 'realtime_sync[redis]'") from exc
    return redis


def _redis_client(redis: Any, timeout: float = 2.0) -> Any:
    _redis_module()
    return redis_client(redis, socket_timeout=timeout, socket_connect_timeout=timeout)


@attrs.frozen
class SinkStats:
    """A snapshot of a sink's counters (``sink.stats``).

    ``accepted``: events the broker accepted.  ``buffered``: waiting now.  ``dropped``: refused
    because the buffer was full (or still buffered at ``close()``).  ``fenced``: refused because
    their tenant's lease had moved to another replica (that replica fetches them itself).
    ``retries``: failed attempts to reach the broker.  ``last_error``: the latest broker error.
    """

    accepted: int
    buffered: int
    dropped: int
    fenced: int
    retries: int
    last_error: str | None


@attrs.frozen
class _Item:
    event: Event
    tenant: str | None
    fence: Any  # redis_replicas.Fence | None


class BufferedSink:
    """Base of the sinks: a bounded FIFO buffer and one sender thread that retries.

    Subclasses implement :meth:`send_batch`; it hands ``items`` on and returns one result per
    item (``True`` accepted, ``False`` fenced), or raises when the broker is unreachable (then
    the same items are retried after ``retry_interval``, doubling up to ``max_retry_interval``).

    Args:
        max_buffer: events held while the broker is down; past it, new events are dropped and
            counted.
        batch_size: events handed on per round trip.
        include_lifecycle: also hand on ``connected``, ``disconnected``... (default: no).
        on_drop: ``fn(event, reason)`` for every dropped event (``"buffer full"``, ``"closed"``).
        name: for the thread name (``realtime_sync-sink-<name>``) and logs.
    """

    def __init__(
        self,
        *,
        max_buffer: int = 10_000,
        batch_size: int = 100,
        retry_interval: float = 0.2,
        max_retry_interval: float = 5.0,
        include_lifecycle: bool = False,
        on_drop: Callable[[Event, str], Any] | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(max_buffer, int) or isinstance(max_buffer, bool) or max_buffer < 1:
            raise ConfigurationError(f"max_buffer must be a positive number of events, got {max_buffer!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.retry_interval = float(retry_interval)
        self.max_retry_interval = float(max_retry_interval)
        self.include_lifecycle = include_lifecycle
        self.on_drop = on_drop
        self.name = name or type(self).__name__
        self._buffer: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._inflight = 0
        self._accepted = 0
        self._dropped = 0
        self._fenced = 0
        self._retries = 0
        self._last_error: str | None = None
        self._stopping = False
        self._wake = threading.Event()  # set by close(): ends a retry wait
        self._pause = threading.Event()  # never set: the retry pauses while closing
        self._thread: threading.Thread | None = None
        self._replicas: Any = None
        self._pid = os.getpid()

    # -- the handler side ----------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        """Hand ``event`` on (as a handler: ``client.on("*", sink)``)."""
        self.put(event)

    def put(self, event: Event, *, tenant: str | None = None, fence: Any = None) -> bool:
        """Buffer ``event`` for sending; False when it was dropped (buffer full, or closed).

        ``tenant``/``fence`` come from a :class:`~realtime_sync.contrib.redis_replicas.ReplicaListener`.
        Starts the sender thread on first use.
        """
        if not self.include_lifecycle and (event.name in LIFECYCLE_EVENTS or event.name == "handshake"):
            return True
        with self._cond:
            if self._thread is None or self._pid != os.getpid():
                self._start_locked()
            if self._stopping:
                reason = "closed"
            elif len(self._buffer) >= self.max_buffer:
                reason = "buffer full"
            else:
                self._buffer.append(_Item(event, tenant, fence))
                self._cond.notify_all()
                return True
            self._dropped += 1
            dropped = self._dropped
        self._report_drop(event, reason, dropped)
        return False

    def _report_drop(self, event: Event, reason: str, dropped: int) -> None:
        # Every drop is counted; the log says so at the first and then every 1000th.
        if dropped == 1 or dropped % 1000 == 0:
            log.error(
                "%s: dropped event %s (%s): %d dropped so far; the broker is unreachable: %s",
                self.name,
                event.name,
                reason,
                dropped,
                self._last_error,
            )
        if self.on_drop is not None:
            try:
                self.on_drop(event, reason)
            except Exception:
                log.exception("%s: on_drop failed", self.name)

    def bind(self, replicas: Any) -> None:
        """Called by a :class:`~realtime_sync.contrib.redis_replicas.ReplicaListener` that sends
        its events here: resume points are then stored once the broker accepted an event."""
        self._replicas = replicas

    # -- the sender ----------------------------------------------------------------------------

    def start(self: _S) -> _S:
        """Start the sender thread (``put()`` does it on first use); idempotent."""
        with self._cond:
            if self._thread is None or self._pid != os.getpid():
                self._start_locked()
        return self

    def _start_locked(self) -> None:
        # After a fork the parent's thread is gone: the child starts its own (its buffer is a
        # copy of the parent's: drop it, the parent sends those).
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._buffer.clear()
            self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"realtime_sync-sink-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = self.retry_interval
        while True:
            with self._cond:
                while not self._buffer and not self._stopping:
                    self._cond.wait()
                if not self._buffer:
                    return
                batch = [self._buffer[i] for i in range(min(self.batch_size, len(self._buffer)))]
                self._inflight = len(batch)
            try:
                results = self.send_batch(batch)
            except Exception as exc:
                with self._cond:
                    self._retries += 1
                    self._inflight = 0
                    self._last_error = redact(describe_error(exc))
                    if self._retries == 1 or self._retries % 50 == 0:
                        log.warning(
                            "%s: broker unreachable (%s); %d event(s) buffered, retrying",
                            self.name,
                            self._last_error,
                            len(self._buffer),
                        )
                    deadline = self._closing_deadline if self._stopping else None
                if deadline is not None and time.monotonic() >= deadline:
                    return  # close() counts what is left as dropped
                # Not on the condition: new events must not make the retries faster.
                if deadline is None:
                    self._wake.wait(delay)  # close() ends the wait: one more attempt, then its deadline
                else:
                    self._pause.wait(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(self.max_retry_interval, delay * 2)
                continue
            delay = self.retry_interval
            accepted = sum(1 for r in results if r)
            with self._cond:
                for _ in batch:
                    self._buffer.popleft()
                self._inflight = 0
                self._accepted += accepted
                self._fenced += len(batch) - accepted
                self._cond.notify_all()
            if self._replicas is not None and not self.commits_checkpoints:
                for item, ok in zip(batch, results, strict=True):
                    if ok and item.fence is not None and item.fence.stores_point:
                        self._replicas.commit(item.fence)

    #: True when :meth:`send_batch` stores the resume points itself (atomically).
    commits_checkpoints = False
    _closing_deadline: float | None = None

    def send_batch(self, items: Sequence[_Item]) -> Sequence[bool]:
        raise NotImplementedError

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every buffered event was handed on; True if it was within ``timeout``."""
        timeout = seconds(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._buffer:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 1.0)
        return True

    def close(self, timeout: float | None = 10.0) -> None:
        """Hand on what is buffered (for up to ``timeout`` s), then stop the thread.  What could
        not be sent by then is counted as dropped (reason ``"closed"``).  Idempotent."""
        timeout = seconds(timeout)
        with self._cond:
            self._stopping = True
            self._closing_deadline = None if timeout is None else time.monotonic() + timeout
            self._cond.notify_all()
        self._wake.set()
        with self._cond:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # The deadline is checked between attempts: allow the one in progress to end.
            thread.join(None if timeout is None else timeout + 5.0)
        with self._cond:
            left = list(self._buffer)
            self._buffer.clear()
            self._dropped += len(left)
            dropped = self._dropped
        for item in left:
            self._report_drop(item.event, "closed", dropped)

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> SinkStats:
        with self._cond:
            return SinkStats(
                self._accepted, len(self._buffer), self._dropped, self._fenced, self._retries, self._last_error
            )


# A batch of XADDs, each only while its tenant's lease is ours (or free), storing the tenant's
# resume point with it.  One script per batch: one round trip, and it runs on a Redis Cluster
# (redis-py does not pipeline scripts there; the keys share the replica group's hash tag).
# KEYS[1] = stream; item i: KEYS[3i-1..3i+1] = lease, checkpoint, delivered ids (the stream
# again for an unfenced event).  ARGV[1] = maxlen; then per item: token ('' = unfenced),
# checkpoint ('' = none), delivered id ('' = none), ids kept, field count n, n field/value pairs.
# Returns 1 (appended) or 0 (fenced) per item.
# A free lease (expired, nobody took it yet) does not refuse: whoever takes it next reads the
# resume point after this script ran, so the event is neither lost nor fetched again.
_FENCED_XADD = (
    STORE_POINT
    + """
local out = {}
local pos = 2
local item = 0
while pos <= #ARGV do
  item = item + 1
  local lease, ck, dk = KEYS[3 * item - 1], KEYS[3 * item], KEYS[3 * item + 1]
  local token, nf = ARGV[pos], tonumber(ARGV[pos + 4])
  local first, last = pos + 5, pos + 4 + 2 * nf
  local holder = false
  if token ~= '' then holder = redis.call('GET', lease) end
  if holder and holder ~= token then
    out[item] = 0
  else
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, first, last))
    if token ~= '' then store_point(ck, dk, ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3], '') end
    out[item] = 1
  end
  pos = last + 1
end
return out
"""
)


class RedisStreamSink(BufferedSink):
    """Append each event to a Redis stream (``XADD ... MAXLEN ~ maxlen``).

    Each entry has the fields ``key`` (:attr:`Event.key`, for deduplication), ``name``,
    ``entity_id``, ``tenant``, ``replica`` and ``lease`` (with replicas), ``event`` (``json.dumps(event.to_dict())``: rebuild
    with ``Event.from_dict(json.loads(...))``, or use :class:`StreamConsumer`).  ``maxlen`` bounds
    the stream (approximately, as Redis trims whole nodes): size it to hold what your slowest
    consumer group may lag behind.  With a :class:`~realtime_sync.contrib.redis_replicas.ReplicaListener`
    the append is fenced by the tenant's lease and stores its resume point in the same script.

    >>> sink = RedisStreamSink("redis://127.0.0.1:6379/0", stream="realtime-events")   # doctest: +SKIP
    >>> client.on("*", sink)                                                            # doctest: +SKIP
    """

    commits_checkpoints = True

    def __init__(
        self, redis: Any, stream: str = "realtime_sync:events", *, maxlen: int = 100_000, **kwargs: Any
    ) -> None:
        if not isinstance(stream, str) or not stream:
            raise ConfigurationError("stream must be the name of a Redis stream, e.g. 'realtime-events'")
        if not isinstance(maxlen, int) or isinstance(maxlen, bool) or maxlen < 1:
            raise ConfigurationError(f"maxlen must be a positive integer (entries kept in the stream), got {maxlen!r}")
        kwargs.setdefault("name", f"stream-{stream}")
        super().__init__(**kwargs)
        self.redis = _redis_client(redis)
        self.stream = stream
        self.maxlen = maxlen
        self._script = self.redis.register_script(_FENCED_XADD)

    def bind(self, replicas: Any) -> None:
        # On a Redis Cluster the fenced XADD names the stream and the tenant's keys in one
        # script: they must hash to one slot (the replica group's hash tag).
        if is_cluster(self.redis) and not same_slot(self.stream, replicas.lease_key("-")):
            tag = replicas.lease_key("-").split(":lease:")[0]
            raise ConfigurationError(
                f"on a Redis Cluster the stream must carry the replicas' hash tag {tag} (their scripts "
                f"write the stream and the tenant's lease together): name it {tag}:{self.stream}"
            )
        super().bind(replicas)

    def fields(self, item: _Item) -> dict[str, str]:
        """The stream entry's fields for one event."""
        event = item.event
        doc = event.to_dict()
        entity = doc.get("entity_id")
        return {
            "key": str(doc.get("key") or event.key),
            "name": event.name,
            "entity_id": "" if entity is None else str(entity),
            "tenant": item.tenant or "",
            "replica": item.fence.replica if item.fence is not None else "",
            # The lease (replica|nonce) it was appended under: audits "one owner at a time".
            "lease": item.fence.token if item.fence is not None else "",
            "event": json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str),
        }

    def send_batch(self, items: Sequence[_Item]) -> Sequence[bool]:
        if all(item.fence is None for item in items):
            pipe = self.redis.pipeline(transaction=False)
            for item in items:
                pipe.xadd(self.stream, self.fields(item), maxlen=self.maxlen, approximate=True)
            return [r is not None for r in pipe.execute()]
        keys: list[str] = [self.stream]
        args: list[Any] = [self.maxlen]
        for item in items:
            fields = self.fields(item)
            fence = item.fence
            if fence is None:
                keys += [self.stream] * 3
                args += ["", "", "", 0]
            else:
                keys += [fence.lease_key, fence.checkpoint_key, fence.delivered_key or fence.checkpoint_key]
                args += [fence.token, *fence.point_args()]
            args.append(len(fields))
            args += [v for pair in fields.items() for v in pair]
        return [bool(int(r)) for r in self._script(keys=keys, args=args)]


class CelerySink(BufferedSink):
    """Send each event as a Celery task: ``app.send_task(task, args=[event.to_dict()])``.

    The event dict is JSON-ready (Celery's default serializer) and carries no secret; the task
    rebuilds it with :meth:`Event.from_dict`.  An event counts as handed on once ``send_task``
    returned (the broker accepted the message); Celery's own publish retry is turned off, so a
    broker outage fills this sink's bounded buffer, retried in order, instead of blocking the
    client's dispatcher.  Task options (``queue=``, ``routing_key=``, ``priority=``...) go in
    ``options``.  Deduplicate in the task by ``event_dict["key"]`` (at-least-once).

    >>> sink = CelerySink(app, "myapp.tasks.handle_event", options={"queue": "realtime"})   # doctest: +SKIP
    """

    def __init__(self, app: Any, task: Any, *, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        name = task if isinstance(task, str) else getattr(task, "name", None)
        if not isinstance(name, str) or not name:
            raise ConfigurationError("task must be a Celery task or its registered name ('myapp.tasks.handle_event')")
        if not hasattr(app, "send_task"):
            raise ConfigurationError(f"app must be a Celery application, got {type(app).__name__}")
        kwargs.setdefault("name", f"celery-{name.rsplit('.', 1)[-1]}")
        kwargs.setdefault("batch_size", 50)
        super().__init__(**kwargs)
        self.app = app
        self.task = name
        self.options = dict(options or {})

    def send_batch(self, items: Sequence[_Item]) -> Sequence[bool]:
        results: list[bool] = []
        with self.app.producer_or_acquire() as producer:
            for item in items:
                if (
                    item.fence is not None
                    and self._replicas is not None
                    and not self._replicas.holds(item.fence.tenant)
                ):
                    results.append(False)  # the lease moved on: the new owner hands it on
                    continue
                doc = item.event.to_dict()
                kwargs = {"tenant": item.tenant} if item.tenant is not None else {}
                self.app.send_task(self.task, args=[doc], kwargs=kwargs, producer=producer, retry=False, **self.options)
                results.append(True)
        return results


# -- consumers ----------------------------------------------------------------------------------


@attrs.frozen
class StreamEntry:
    """One entry read from the stream: its id, the dedupe key, the tenant and the event."""

    id: str
    key: str
    tenant: str | None
    event: Event


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class StreamConsumer:
    """Read a stream as one consumer of a consumer group: rebuild events, deduplicate, acknowledge.

    Run one per worker process (the group spreads the entries over them).  Entries a consumer
    read but never acknowledged (it crashed) are claimed by the others after ``claim_idle``
    seconds.  Deduplication: an event whose ``key`` was processed by any consumer of the group in
    the last ``dedupe_ttl`` seconds is acknowledged and skipped (``duplicates`` counts them).

    >>> consumer = StreamConsumer("redis://127.0.0.1:6379/0", "realtime-events", group="billing")   # doctest: +SKIP
    >>> consumer.run(handle, stop=threading.Event())                                                  # doctest: +SKIP
    """

    def __init__(
        self,
        redis: Any,
        stream: str,
        group: str,
        consumer: str | None = None,
        *,
        start_id: str = "0",
        dedupe_ttl: float = 24 * 3600,
        claim_idle: float = 60.0,
    ) -> None:
        self.redis = _redis_client(redis, timeout=30.0)
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.dedupe_ttl = dedupe_ttl
        self.claim_idle = claim_idle
        self.processed = 0
        self.duplicates = 0
        try:
            self.redis.xgroup_create(stream, group, id=start_id, mkstream=True)
        except _redis_module().ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _dedupe_key(self, key: str) -> str:
        # In the stream's hash slot (Redis Cluster): it is written with the XACK in one transaction.
        prefix = self.stream if hash_tag(self.stream) is not None else f"{{{self.stream}}}"
        return f"{prefix}:{self.group}:seen:{key}"

    def _entries(self, raw: Any) -> list[StreamEntry]:
        out = []
        for entry_id, fields in raw:
            f = {_text(k): _text(v) for k, v in (fields or {}).items()}
            try:
                event = Event.from_dict(json.loads(f["event"]))
            except (KeyError, ValueError) as exc:
                log.error(
                    "stream %s: entry %s is not an event (%s): acknowledged and skipped",
                    self.stream,
                    _text(entry_id),
                    exc,
                )
                self.redis.xack(self.stream, self.group, entry_id)
                continue
            out.append(StreamEntry(_text(entry_id), f.get("key") or event.key, f.get("tenant") or None, event))
        return out

    def read(self, count: int = 100, block: float | None = 1.0) -> list[StreamEntry]:
        """Up to ``count`` entries: first those idle too long in a dead consumer, then new ones."""
        claimed = self.redis.xautoclaim(
            self.stream, self.group, self.consumer, int(self.claim_idle * 1000), "0-0", count=count
        )
        entries = self._entries(claimed[1]) if claimed and claimed[1] else []
        if entries:
            return entries
        block_ms = None if block is None else max(1, int(block * 1000))
        answer = self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms)
        for _stream, items in answer or ():
            entries.extend(self._entries(items))
        return entries

    def seen(self, entry: StreamEntry) -> bool:
        """True if an event with this key was already processed by the group."""
        return bool(self.redis.exists(self._dedupe_key(entry.key)))

    def ack(self, entry: StreamEntry) -> None:
        """Mark the entry processed: remember its key for deduplication, then ``XACK``."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._dedupe_key(entry.key), entry.id, ex=max(1, int(self.dedupe_ttl)))
        pipe.xack(self.stream, self.group, entry.id)
        pipe.execute()

    def entries(
        self, *, count: int = 100, block: float = 1.0, stop: threading.Event | None = None
    ) -> Iterator[StreamEntry]:
        """Entries not seen before, one by one; acknowledge each with :meth:`ack` after processing."""
        while stop is None or not stop.is_set():
            for entry in self.read(count, block):
                if self.seen(entry):
                    self.duplicates += 1
                    self.redis.xack(self.stream, self.group, entry.id)
                    continue
                yield entry

    def run(self, handler: Callable[[Event], Any], *, stop: threading.Event | None = None, block: float = 1.0) -> None:
        """Call ``handler(event)`` for each new event and acknowledge it when it returns.

        An exception leaves the entry unacknowledged: another consumer (or this one, after
        ``claim_idle``) gets it again.  Runs until ``stop`` is set.
        """
        for entry in self.entries(block=block, stop=stop):
            try:
                handler(entry.event)
            except Exception:
                log.exception("stream %s: handler failed on %s; left for a retry", self.stream, entry.key)
                continue
            self.ack(entry)
            self.processed += 1
