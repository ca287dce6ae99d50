"""Sans-I/O adapters for the Jifeline customer and partner websockets.

Theory of operation
-------------------
Both dialects are plain JSON objects with an ``action`` member (PROTOCOLS.md sections 1 and 2).
The client sends subscribe / unsubscribe requests; the server pushes, under the *subscribe*
action's name, a snapshot of the subscribed entity about every 5 seconds (customer tickets,
connections, connectors; partner connector statuses) or, for the partner, ``event-received``
system events.  There is no confirmation and no application heartbeat.

* **Desired state.**  ``subscribe()``/``unsubscribe()`` edit the :class:`SubscriptionRegistry`;
  frames go out only while connected.  ``connection_made`` re-sends every wanted subscription, in
  the order they were made, so a reconnect restores all of them and nothing the user dropped.
  The first push received for a subscription on a connection emits ``subscribed`` (the only
  confirmation the protocol has).
* **Wire names.**  The customer actions are sent verbatim, including the odd
  ``unsubscribeToTicket`` / ``unsubscribeToConnection``.  The partner actions are kebab-case
  (``subscribe-to-connector``); received actions are normalised, so camelCase (the AsyncAPI
  message ids) is accepted too.
* **Change detection.**  Pushes are snapshots, not deltas.  Each snapshot event carries
  ``event.changes``: the top-level fields of the pushed object that differ from the previous
  snapshot of the same entity.  "Previous" means the last snapshot this adapter (hence this
  client) received for that entity, *whatever connection it came on*: the store survives
  reconnects, so the first snapshot after a reconnect is compared with the last one before the
  drop and yields empty changes when nothing moved (no spurious change), and the real changes
  when something did move while we were away.  The first snapshot after ``subscribe`` has every
  field it carries as changed (a ``changes_only`` handler learns the initial state);
  ``unsubscribe`` forgets the entity.  The store is an LRU bounded by ``max_snapshots``.
* **Errors.**  Frames that are not JSON objects, lack an ``action`` or do not fit the models
  become ``error`` events; gateway error frames without an action
  (``{"message":"Forbidden","connectionId":..,"requestId":..}``) become ``error`` events of kind
  ``"server"``.  Frames with an action this module does not know are delivered under that action
  name, data = the decoded frame, so nothing the server adds is lost.
* **Keepalive.**  The transport sends websocket pings (``has_heartbeat`` is False).  The managed
  gateway in front of the servers is believed to close connections idle for ~10 minutes judging
  by client traffic only (unconfirmed), so after ``keepalive_interval`` seconds without a client
  frame the adapter re-sends one existing subscription (idempotent), round-robin.
* **Gap recovery (partner, opt-in).**  On every connection after the first, when a system event
  has been seen, the adapter calls ``request_gap(generation, after_id)`` (the facade fetches
  ``/v2/system/events?after_id=...`` on its own thread) and holds back live system events until
  :meth:`JifelinePartnerAdapter.finish_gap_recovery` hands the fetched events back, or
  ``gap_timeout`` passes.  Recovered events for subscribed types are emitted first, then the held
  live ones; every event id is delivered at most once (a bounded window of ``dedupe_window``
  recent ids).
"""

from __future__ import annotations

import logging
import re
import uuid as _uuid
from collections import OrderedDict
from typing import Any, Callable, Hashable, Mapping

import attrs

from .._redact import redact
from ..events import LIFECYCLE_EVENTS, ErrorInfo, Subscription
from ..exceptions import ConfigurationError, ProtocolError
from ..models import jifeline as models
from .base import BAD, Adapter, truncate

__all__ = [
    "CUSTOMER_KINDS",
    "PARTNER_KINDS",
    "JifelineCustomerAdapter",
    "JifelinePartnerAdapter",
    "SnapshotStore",
    "normalize_action",
    "validate_key",
]

log = logging.getLogger("realtime_sync.jifeline")

_MISSING = object()
_NO_CHANGES: frozenset[str] = frozenset()


@attrs.frozen
class _Kind:
    """One subscribable family: its wire actions, the id field, the event it produces."""

    subscribe: str
    unsubscribe: str
    id_field: str
    event: str | None  # name of the push event (None: pushes are handled specially)
    id_type: type


CUSTOMER_KINDS: Mapping[str, _Kind] = {
    "ticket": _Kind("subscribeToTicket", "unsubscribeToTicket", "ticket_id", "ticket.updated", int),
    "connector": _Kind("subscribeToConnector", "unsubscribeFromConnector", "connector_id", "connector.updated", int),
    "connection": _Kind(
        "subscribeToConnection", "unsubscribeToConnection", "connection_uuid", "connection.updated", str
    ),
}

PARTNER_KINDS: Mapping[str, _Kind] = {
    "connector": _Kind("subscribe-to-connector", "unsubscribe-from-connector", "connector_id", "connector.status", str),
    "event": _Kind("subscribe-to-event", "unsubscribe-from-event", "event_type", None, str),
}

#: Names a system event type may not take: they belong to the client itself.
RESERVED_NAMES = frozenset(LIFECYCLE_EVENTS) | {
    "ticket.updated",
    "connection.updated",
    "connector.updated",
    "connector.status",
}


def validate_key(kinds: Mapping[str, _Kind], kind: str, key: Any) -> Hashable:
    """Check a subscription key given by the user; returns it normalised.

    Integer ids accept ``int`` or a string of digits; UUIDs accept ``str`` or :class:`uuid.UUID`.

    >>> validate_key(CUSTOMER_KINDS, "ticket", "32423")
    32423
    """
    spec = kinds.get(kind)
    if spec is None:
        raise ConfigurationError(f"unknown subscription kind {kind!r}; expected one of {sorted(kinds)}")
    if spec.id_type is int:
        if isinstance(key, bool):
            raise ConfigurationError(f"{spec.id_field} must be an integer, got {key!r}")
        if isinstance(key, int):
            return key
        if isinstance(key, str) and key.strip().isdigit():
            return int(key.strip())
        raise ConfigurationError(f"{spec.id_field} must be an integer, got {type(key).__name__} {key!r:.40}")
    if isinstance(key, _uuid.UUID):
        return str(key)
    if not isinstance(key, str) or not key.strip():
        raise ConfigurationError(f"{spec.id_field} must be a non-empty string, got {type(key).__name__} {key!r:.40}")
    key = key.strip()
    if kind == "event" and key in RESERVED_NAMES:
        raise ConfigurationError(f"{key!r} is not a Jifeline event type (it is a realtime_sync event name)")
    return key


_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def normalize_action(action: str) -> str:
    """``subscribeToConnector`` / ``subscribe_to_connector`` -> ``subscribe-to-connector``.

    >>> normalize_action("eventReceived")
    'event-received'
    """
    return _CAMEL.sub(r"-\1", action).replace("_", "-").lower()


class SnapshotStore:
    """Last snapshot per entity, LRU-bounded; computes which top-level fields changed.

    >>> s = SnapshotStore()
    >>> sorted(s.diff(("ticket", 1), {"state": 1, "vin": "X"}))
    ['state', 'vin']
    >>> s.diff(("ticket", 1), {"state": 1, "vin": "X"})
    frozenset()
    >>> s.diff(("ticket", 1), {"state": 2, "vin": "X"})
    frozenset({'state'})
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max(1, max_entries)
        self._last: OrderedDict[Hashable, Mapping[str, Any]] = OrderedDict()

    def diff(self, key: Hashable, snapshot: Mapping[str, Any]) -> frozenset[str]:
        old = self._last.pop(key, None)
        self._last[key] = snapshot
        if len(self._last) > self.max_entries:
            self._last.popitem(last=False)
        if old is None:
            return frozenset(snapshot)
        if old == snapshot:  # the usual case for 5-second snapshots: one C-level comparison
            return _NO_CHANGES
        keys = set(old) | set(snapshot)
        return frozenset(k for k in keys if old.get(k, _MISSING) != snapshot.get(k, _MISSING))

    def forget(self, key: Hashable) -> None:
        self._last.pop(key, None)

    def get(self, key: Hashable) -> Mapping[str, Any] | None:
        return self._last.get(key)

    def __len__(self) -> int:
        return len(self._last)


class _JifelineAdapter(Adapter):
    """What the two dialects share: desired-state subscriptions, snapshots, error frames."""

    kinds: Mapping[str, _Kind] = {}
    #: The gateway acknowledges no subscription: the first push of an entity counts as one, and
    #: a system event type may stay quiet for hours, so ``start(wait=True)`` does not wait for it.
    confirms_subscriptions = False

    def __init__(self, *, keepalive_interval: float | None = 300.0, max_snapshots: int = 10_000) -> None:
        super().__init__()
        self.keepalive_interval = keepalive_interval or None
        self.snapshots = SnapshotStore(max_snapshots)
        self._last_sent = 0.0
        self._keepalive_next = 0
        # Entities unsubscribed on the current connection: their pushes still in flight are dropped.
        self._dropped: set[tuple[str, Hashable]] = set()
        # action as received (normalised) -> kind, for pushes
        self._push_kinds = {self._norm(spec.subscribe): kind for kind, spec in self.kinds.items()}
        self._echo_actions = {self._norm(spec.unsubscribe) for spec in self.kinds.values()}

    @staticmethod
    def _norm(action: str) -> str:
        return action

    # -- intents ---------------------------------------------------------------------------

    def subscribe(self, kind: str, key: Hashable, now: float) -> bool:
        """Want ``kind``/``key`` (sent now if connected); False if it was already wanted."""
        spec = self.kinds[kind]
        sub = Subscription(kind, key)
        frame = {"action": spec.subscribe, spec.id_field: key}
        if not self.subscriptions.add(sub, frame):
            return False
        self._dropped.discard((kind, key))
        if self.connected:
            self._send_sub(sub, frame, now)
        return True

    def unsubscribe(self, kind: str, key: Hashable, now: float) -> bool:
        """Stop wanting ``kind``/``key``; False if it was not wanted (then nothing is sent)."""
        spec = self.kinds[kind]
        sub = Subscription(kind, key)
        if not self.subscriptions.discard(sub):
            return False
        self.snapshots.forget((kind, key))
        if self.connected:
            # A snapshot may already be on its way: it must neither reach the handlers nor be
            # remembered (a later re-subscribe would then report no change for its first push).
            self._dropped.add((kind, key))
            self._send({"action": spec.unsubscribe, spec.id_field: key})
            self._last_sent = now
        return True

    def _send_sub(self, sub: Subscription, frame: Mapping[str, Any], now: float) -> None:
        self._send(dict(frame))
        self.subscriptions.mark_sent(sub, now)
        self._last_sent = now

    # -- transport hooks -------------------------------------------------------------------

    def connection_made(self, now: float) -> None:
        super().connection_made(now)
        self._last_sent = now
        self._dropped.clear()
        for entry in self.subscriptions.entries():
            self._send_sub(entry.subscription, entry.payload, now)

    def connection_lost(self, now: float, reason: str = "") -> None:
        super().connection_lost(now, reason)
        self._dropped.clear()

    def send_text(self, text: str, now: float) -> None:
        if self.connected:
            self._frames.append(text)
            self._last_sent = now

    def next_deadline(self) -> float | None:
        if self.connected and self.keepalive_interval:
            return self._last_sent + self.keepalive_interval
        return None

    def handle_timer(self, now: float) -> None:
        if self.connected and self.keepalive_interval and now >= self._last_sent + self.keepalive_interval:
            entries = self.subscriptions.entries()
            if entries:
                entry = entries[self._keepalive_next % len(entries)]
                self._keepalive_next += 1
                self._send(dict(entry.payload))
            self._last_sent = now  # nothing wanted: nothing to keep alive until the next period

    # -- receiving -------------------------------------------------------------------------

    def receive_text(self, text: str, now: float) -> None:
        frame = self._decode(text, now)
        if frame is BAD:
            return
        if not isinstance(frame, dict):
            self._bad_frame(f"expected a JSON object, got {type(frame).__name__}", text, now, raw=frame)
            return
        action = frame.get("action", _MISSING)
        if action is _MISSING or action is None:
            self._actionless(frame, text, now)
            return
        if not isinstance(action, str) or not action:
            self._bad_frame(f"'action' must be a non-empty string, got {action!r:.40}", text, now, raw=frame)
            return
        try:
            self._dispatch(self._norm(action), action, frame, text, now)
        except ProtocolError as exc:
            self._bad_frame(str(exc), text, now, raw=frame, exc=exc)

    def _actionless(self, frame: dict[str, Any], text: str, now: float) -> None:
        message = frame.get("message")
        if isinstance(message, str):
            # The managed gateway's own error answers (unknown route, rights, internal errors).
            ids = ", ".join(f"{k}={frame[k]}" for k in ("connectionId", "requestId") if isinstance(frame.get(k), str))
            detail = f"server error: {message}" + (f" ({ids})" if ids else "")
            self._error("server", detail, now, frame=text, raw=frame)
            return
        self._bad_frame("frame has no 'action'", text, now, raw=frame)

    def _dispatch(self, action: str, original: str, frame: dict[str, Any], text: str, now: float) -> None:
        kind = self._push_kinds.get(action)
        if kind is not None:
            self._push(kind, frame, text, now)
        elif action in self._echo_actions:
            log.debug("ignoring echo of %s", original)
        else:
            self._unknown(original, frame, text, now)

    def _unknown(self, action: str, frame: dict[str, Any], text: str, now: float) -> None:
        if action in RESERVED_NAMES:
            self._bad_frame(f"unexpected action {action!r}", text, now, raw=frame)
        else:
            self._emit(action, now, frame, raw=frame)

    def _push(self, kind: str, frame: dict[str, Any], text: str, now: float) -> None:
        spec = self.kinds[kind]
        message = frame.get("message", _MISSING)
        if isinstance(message, str):
            self._error("server", f"server error for {spec.subscribe}: {message}", now, frame=text, raw=frame)
            return
        if not isinstance(message, dict):
            what = "missing" if message is _MISSING else f"a {type(message).__name__}"
            self._bad_frame(f"{spec.subscribe}: 'message' must be an object, got {what}", text, now, raw=frame)
            return
        key = self._entity(kind, message)
        if key is not None and (kind, key) in self._dropped:
            log.debug("dropping a %s push for %r received after unsubscribing", spec.subscribe, key)
            return
        data, problem = self._structure(kind, message)
        sub = Subscription(kind, key) if key is not None else None
        if sub is not None and sub not in self.subscriptions:
            sub = None
        changes = self.snapshots.diff((kind, key), message) if key is not None else None
        if sub is not None:
            self._subscribed(sub, now)
        assert spec.event is not None
        self._emit_decoded(
            spec.event, now, data, problem, entity_id=key, raw=frame, subscription=sub, changes=changes, frame=text
        )

    def _structure(self, kind: str, message: dict[str, Any]) -> tuple[Any, str | None]:
        """(model, None), or (the best the decoding policy can do, the mismatch) to deliver and report."""
        raise NotImplementedError

    def _entity(self, kind: str, message: Mapping[str, Any]) -> Hashable | None:
        """The entity id of a push, or the only wanted key of its kind when the push has none."""
        spec = self.kinds[kind]
        for field in (spec.id_field, *self._id_aliases(kind)):
            value = message.get(field)
            if isinstance(value, spec.id_type) and not isinstance(value, bool):
                return value  # type: ignore[no-any-return]
        wanted = [s.key for s in self.subscriptions if s.kind == kind]
        return wanted[0] if len(wanted) == 1 else None

    def _id_aliases(self, kind: str) -> tuple[str, ...]:
        return ()


class JifelineCustomerAdapter(_JifelineAdapter):
    """The customer websocket (seed 000): tickets, connections, connectors by id.

    >>> a = JifelineCustomerAdapter()
    >>> a.subscribe("ticket", 32423, now=0.0)
    True
    >>> a.connection_made(now=1.0)
    >>> a.data_to_send()
    ['{"action":"subscribeToTicket","ticket_id":32423}']
    >>> a.receive_text('{"action":"subscribeToTicket","message":{"ticket_id":32423,"state":1}}', now=2.0)
    >>> [(e.name, e.entity_id, sorted(e.changes or ())) for e in a.events_received()]
    [('subscribed', None, []), ('ticket.updated', 32423, ['state', 'ticket_id'])]
    """

    name = "jifeline-customer"
    kinds = CUSTOMER_KINDS

    def _id_aliases(self, kind: str) -> tuple[str, ...]:
        return ("id",) if kind in ("ticket", "connector") else ()

    def _structure(self, kind: str, message: dict[str, Any]) -> tuple[Any, str | None]:
        cls = {"ticket": models.Ticket, "connection": models.Connection}.get(kind, models.Connector)
        return models.decode_payload(message, cls)


class JifelinePartnerAdapter(_JifelineAdapter):
    """The partner websocket (seed 001): connector statuses by UUID, system events by type.

    >>> a = JifelinePartnerAdapter()
    >>> a.subscribe("event", "tickets.ticket.created", now=0.0)
    True
    >>> a.connection_made(now=1.0)
    >>> a.data_to_send()
    ['{"action":"subscribe-to-event","event_type":"tickets.ticket.created"}']
    >>> a.receive_text('{"action":"event-received","event_id":"01J","event_type":"tickets.ticket.created",'
    ...                '"message":{"ticket":{"id":7}}}', now=2.0)
    >>> [(e.name, e.entity_id) for e in a.events_received()]
    [('subscribed', None), ('tickets.ticket.created', 7)]
    """

    name = "jifeline-partner"
    kinds = PARTNER_KINDS

    def __init__(
        self,
        *,
        keepalive_interval: float | None = 300.0,
        max_snapshots: int = 10_000,
        gap_recovery: bool = False,
        request_gap: Callable[[int, str], None] | None = None,
        gap_timeout: float = 15.0,
        dedupe_window: int = 10_000,
        max_held: int = 10_000,
        after_id: str | None = None,
    ) -> None:
        super().__init__(keepalive_interval=keepalive_interval, max_snapshots=max_snapshots)
        self.gap_recovery = gap_recovery
        #: Called (on the transport thread; must not block) with (generation, after_id) when
        #: a reconnect needs the missed events fetched.
        self.request_gap = request_gap
        self.gap_timeout = gap_timeout
        self.dedupe_window = max(1, dedupe_window)
        self.max_held = max(1, max_held)
        #: The id of the newest system event delivered (or skipped by a recovery because its type
        #: is not subscribed): the resume point.  Starts as ``after_id``.
        self.last_event_id: str | None = after_id or None
        #: A resume point was given and no recovery has started from it yet.
        self._resume_pending = bool(after_id) and gap_recovery
        self.duplicates = 0
        self.recovering = False
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._held: list[tuple[dict[str, Any], str, Any]] = []
        self._gap_gen = 0
        self._gap_deadline: float | None = None
        self._connections = 0

    @staticmethod
    def _norm(action: str) -> str:
        return normalize_action(action)

    def _dispatch(self, action: str, original: str, frame: dict[str, Any], text: str, now: float) -> None:
        if action == "event-received":
            self._system_event(frame, text, now, live=True)
        elif action == "subscribe-to-event":
            # Not documented as a server message; if the server ever acknowledges, count it.
            event_type = frame.get("event_type")
            if isinstance(event_type, str):
                self._subscribed(Subscription("event", event_type), now)
        else:
            super()._dispatch(action, original, frame, text, now)

    def _structure(self, kind: str, message: dict[str, Any]) -> tuple[Any, str | None]:
        return models.decode_payload(message, models.ConnectorStatus)

    # -- system events ---------------------------------------------------------------------

    def _system_event(self, frame: dict[str, Any], text: str, now: float, *, live: bool, raw: Any = None) -> None:
        raw = frame if raw is None else raw
        event_type = frame.get("event_type")
        if not isinstance(event_type, str) or not event_type:
            self._bad_frame(f"system event without a valid 'event_type' ({event_type!r:.40})", text, now, raw=raw)
            return
        if event_type in RESERVED_NAMES:
            self._bad_frame(f"system event type {event_type!r} clashes with a client event name", text, now, raw=raw)
            return
        event_id = frame.get("event_id")
        if isinstance(event_id, int) and not isinstance(event_id, bool):
            event_id = str(event_id)
        if not isinstance(event_id, str):
            # Still delivered: an event without an id cannot be deduplicated, but losing it is worse.
            log.warning("system event %s without a valid event_id", redact(event_type))
            event_id = ""
        if event_id and event_id in self._seen:
            self.duplicates += 1
            log.debug("dropping duplicate system event %s", event_id)
            return
        if live and self.recovering:
            if len(self._held) >= self.max_held:
                self._end_recovery(now, "gap recovery held too many live events; releasing them")
            else:
                self._held.append((frame, text, raw))
                return
        payload: models.SystemEventPayload | None = None
        problem: str | None = None
        message = frame.get("message")
        if isinstance(message, dict):
            payload, problem = models.decode_payload(message, models.SystemEventPayload)
        elif message is not None:
            problem = f"system event {event_id}: 'message' must be an object, got {type(message).__name__}"
        occurred_at = frame.get("occurred_at")
        if not isinstance(occurred_at, str):
            occurred_at = None
        data = models.SystemEvent(event_id, event_type, payload, occurred_at)
        if event_id:
            self._seen[event_id] = None
            if len(self._seen) > self.dedupe_window:
                self._seen.popitem(last=False)
            self._advance(event_id)
        sub: Subscription | None = Subscription("event", event_type)
        if sub in self.subscriptions:
            self._subscribed(sub, now)  # type: ignore[arg-type]
        else:
            sub = None
        self._emit_decoded(
            event_type, now, data, problem, entity_id=data.ticket_id, raw=raw, subscription=sub, frame=text
        )

    def _advance(self, event_id: str) -> None:
        """Move the resume point to ``event_id``, never backwards.

        Event ids are ULIDs (lexicographically ordered by time): an older one (e.g. recovered
        events arriving after ``gap_timeout`` released newer live ones) leaves the point where it
        is, so a persisted ``last_event_id`` never skips an event.  Ids of another shape
        (different lengths) cannot be compared: the latest one wins.
        """
        last = self.last_event_id
        if last and len(last) == len(event_id) and event_id < last:
            return
        self.last_event_id = event_id

    # -- gap recovery ----------------------------------------------------------------------

    def subscribe(self, kind: str, key: Hashable, now: float) -> bool:
        added = super().subscribe(kind, key, now)
        if added and kind == "event" and self._resume_pending and self.connected and not self.recovering:
            # Resuming from a persisted point, and the first event subscription came after the
            # connection opened: fetch what was missed now.
            self._start_recovery(now)
        return added

    def connection_made(self, now: float) -> None:
        super().connection_made(now)
        self._connections += 1
        # After a reconnect, or on the first connection when a resume point (after_id) was given.
        start = (
            self.gap_recovery
            and bool(self.last_event_id)
            and self.request_gap is not None
            and any(s.kind == "event" for s in self.subscriptions)
        )
        if not start:
            if self.recovering:
                # A recovery begun on an earlier connection and nothing to supersede it: drop
                # its results when they come, release what it held.
                self._gap_gen += 1
                self._end_recovery(now, None)
            return
        # Also supersedes a recovery still running from the previous connection: live events it
        # held stay held and the new fetch (same after_id) covers the same gap.
        self._start_recovery(now)

    def _start_recovery(self, now: float) -> None:
        self._resume_pending = False
        self._gap_gen += 1
        self.recovering = True
        self._gap_deadline = now + self.gap_timeout
        assert self.request_gap is not None and self.last_event_id is not None
        try:
            self.request_gap(self._gap_gen, self.last_event_id)
        except Exception as exc:  # the hook must not break the connection
            self._end_recovery(now, f"gap recovery could not start: {exc}")

    def finish_gap_recovery(
        self, generation: int, items: list[Any] | None, now: float, error: ErrorInfo | None = None
    ) -> None:
        """The events fetched for recovery ``generation`` (or the error that prevented it).

        ``items`` are REST event objects (``{"id"|"event_id", "type"|"event_type",
        "message"|"payload"|"data"}``) or websocket ``event-received`` frames, oldest first.
        Results of an older generation (a newer reconnect superseded them) are dropped.
        """
        if generation != self._gap_gen:
            log.debug("dropping results of superseded gap recovery %d", generation)
            return
        if error is not None:
            self._emit_error(error, now)
        if not self.recovering and items:
            log.warning("gap recovery results arrived after gap_timeout; delivering them late")
        wanted = {s.key for s in self.subscriptions if s.kind == "event"}
        for item in items or ():
            frame = rest_item_to_frame(item)
            if frame is None:
                self._bad_frame("gap recovery: not an event object", truncate(item), now, raw=item)
                continue
            event_type = frame.get("event_type")
            if isinstance(event_type, str) and event_type not in wanted:
                # Not wanted, but seen: the resume point may move past it (a persisted point then
                # does not make the next recovery fetch it again).
                skipped = frame.get("event_id")
                if isinstance(skipped, str) and skipped and skipped not in self._seen:
                    self._advance(skipped)
                continue
            self._system_event(frame, truncate(item), now, live=False, raw=item)
        self._end_recovery(now, None)

    def _end_recovery(self, now: float, problem: str | None) -> None:
        if problem is not None:
            self._error("server", problem, now)
        self.recovering = False
        self._gap_deadline = None
        held, self._held = self._held, []
        for frame, text, raw in held:
            self._system_event(frame, text, now, live=True, raw=raw)

    def next_deadline(self) -> float | None:
        base = super().next_deadline()
        if self._gap_deadline is None:
            return base
        return self._gap_deadline if base is None else min(base, self._gap_deadline)

    def handle_timer(self, now: float) -> None:
        if self._gap_deadline is not None and now >= self._gap_deadline:
            self._end_recovery(now, f"gap recovery timed out after {self.gap_timeout:g}s; live events released")
        super().handle_timer(now)


def rest_item_to_frame(item: Any) -> dict[str, Any] | None:
    """A REST system event (or a websocket ``event-received`` frame) as an ``event-received`` frame.

    The REST shape is not documented next to the websocket; accepted: ``event_id`` or ``id``,
    ``event_type`` or ``type``, and ``message``, ``payload`` or ``data`` for the payload.

    >>> rest_item_to_frame({"id": "01J", "type": "tickets.ticket.closed", "payload": {}})
    {'action': 'event-received', 'event_id': '01J', 'event_type': 'tickets.ticket.closed', 'message': {}}
    >>> rest_item_to_frame({"id": "01J", "type": "t", "payload": {}, "occurred_at": "2024-05-01T10:00:00Z"})["occurred_at"]
    '2024-05-01T10:00:00Z'
    """
    if not isinstance(item, dict):
        return None
    event_id = item.get("event_id", item.get("id"))
    event_type = item.get("event_type", item.get("type"))
    message = None
    for k in ("message", "payload", "data"):
        if k in item:
            message = item[k]
            break
    frame = {"action": "event-received", "event_id": event_id, "event_type": event_type, "message": message}
    if "occurred_at" in item:
        frame["occurred_at"] = item["occurred_at"]  # REST events say when they happened
    return frame


def events_from_rest_body(body: Any) -> list[Any] | None:
    """The list of events in a ``/v2/system/events`` answer: a list, or ``{"result"|"results"|
    "data"|"items"|"events": [...]}``; ``None`` when the body has no recognisable list."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for k in ("result", "results", "data", "items", "events"):
            if isinstance(body.get(k), list):
                return body[k]  # type: ignore[no-any-return]
    return None
