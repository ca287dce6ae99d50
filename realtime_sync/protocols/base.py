"""The sans-I/O adapter interface every protocol family implements.

Theory of operation
-------------------
An adapter is a pure state machine for one protocol family (Jifeline customer, Jifeline partner,
ActionCable, Bayeux).  It owns no socket, no thread and no clock.  The transport thread drives it:

    transport                             adapter
    ---------                             -------
    request = adapter.prepare_connect(r)  may add subprotocols / Origin / headers
    <socket opens>
    adapter.connection_made(now)          e.g. Jifeline re-sends every subscription
    <text frame arrives>
    adapter.receive_text(text, now)       decodes, validates, emits typed events
    <next_deadline() reached>
    adapter.handle_timer(now)             heartbeats, presence, stale detection, retries
    <user calls client.subscribe(...)>
    adapter.<intent>(..., now)            records desired state, emits frames when connected
    <the handlers fall behind>
    adapter.pause_reading(now)            flow control: frames wait unread; silence proves
    adapter.resume_reading(now)           nothing until reading resumes (liveness suspended)
    <close() requested>
    adapter.start_closing(now)            goodbye frames (e.g. Bayeux /meta/disconnect)
    <socket lost>
    adapter.connection_lost(now, reason)  forget per-connection state, keep desired state

After every call the transport collects the outputs, in this order:

* ``data_to_send()``   -> list of text frames to write, in order;
* ``events_received()`` -> list of :class:`~realtime_sync.Event` for the dispatcher;
* ``close_request()``  -> a :class:`CloseRequest` when the adapter wants the connection closed
  (dead connection detected, server said "disconnect", "do not reconnect", ...), else ``None``.

``now`` is ``time.monotonic()`` in production and anything a test likes.  ``clock_offset`` is set
by the transport so that ``now + clock_offset`` is wall-clock time (used for
``Event.received_at``); adapters never read a clock themselves.

Bad input never raises out of ``receive_text``: a frame that is not JSON, not the expected shape,
or has a field of the wrong type becomes an ``error`` event (:class:`~realtime_sync.ErrorInfo` of
kind ``"bad_frame"`` carrying the reason and the truncated, redacted frame), and the adapter's
state is unchanged, so every later valid frame is processed.
"""

from __future__ import annotations

import enum
import logging
from typing import Any, Hashable, Iterator, Mapping

import attrs

from .._build import Deferred
from .._json import decode, dumps
from .._redact import get_logger, redact
from .._redact import truncate as _truncate
from ..config import ReconnectPolicy, SharedBackoff
from ..events import ErrorInfo, Event, Subscription, SubscriptionInfo, build_event, deferred_raw, public_subscription
from ..exceptions import ProtocolError

log = get_logger("realtime_sync.protocols")

#: The ``error`` events an adapter logs at WARNING: at most _WARN_BURST of a kind in
#: _WARN_WINDOW seconds; the rest are counted and the count is said with the next line logged.
_WARN_WINDOW = 60.0
_WARN_BURST = 10

__all__ = [
    "Adapter",
    "CloseRequest",
    "ConnectRequest",
    "HeldFrame",
    "HttpResult",
    "IdempotentFrame",
    "SubState",
    "SubscriptionRegistry",
    "truncate",
]

FRAME_EXCERPT = 500
_new = object.__new__


def truncate(text: Any, limit: int = FRAME_EXCERPT) -> str:
    """A redacted excerpt of a frame, for error events and logs (redacted before it is cut)."""
    return _truncate(text, limit)


@attrs.frozen(repr=False)
class ConnectRequest:
    """Everything needed to open one websocket; built afresh for every attempt.

    ``origin=None`` sends no Origin header.  ``cookies`` is a ready ``Cookie`` header value.
    """

    url: str
    headers: Mapping[str, str] = attrs.field(factory=dict)
    subprotocols: tuple[str, ...] = ()
    origin: str | None = None
    cookies: str | None = None

    def __repr__(self) -> str:
        return redact(f"ConnectRequest(url={self.url!r}, subprotocols={self.subprotocols!r}, origin={self.origin!r})")


@attrs.frozen
class CloseRequest:
    """The adapter asks the transport to close the connection.

    ``reconnect=False`` means stop for good (the server said not to come back; the client
    closes and ``run_forever()`` returns).  ``delay`` overrides the reconnect policy's delay
    (``0`` = at once, ``None`` = the policy decides).  ``auth=True`` marks a credential refusal:
    the policy's hard auth backoff applies.  ``server=True`` marks a disconnect the server
    initiated for every client at once (ActionCable ``server_restart``): the first retry gets the
    policy's ``restart_jitter``.  ``reported``: nothing more to report (the adapter emitted the
    refusal's ``error`` itself, or the close is routine, such as a renewed CSRF token's), so the
    transport adds no ``error`` of its own.
    """

    reason: str
    reconnect: bool = True
    delay: float | None = None
    auth: bool = False
    code: int = 1000
    server: bool = False
    reported: bool = False


class HeldFrame(str):
    """A text frame the server *holds* until it has something to say (Bayeux ``/meta/connect``).

    It is a ``str`` like any frame; a long-polling connection sends it on its own HTTP request
    so that it cannot delay the others.  The adapter decides, not the transport: the transport
    never parses frames.
    """

    __slots__ = ()
    held = True
    #: A held ``/meta/connect`` is safe to send again (see :class:`IdempotentFrame`).
    idempotent = True


class IdempotentFrame(str):
    """A text frame that may be sent again when its request failed without an answer.

    A long-polling connection sends each frame as an HTTP ``POST``.  When a kept-alive connection
    fails after the request went out and before any byte of the response came back, the server
    may or may not have applied it (RFC 9110 section 9.2.2: a client should not retry a
    non-idempotent request automatically).  The transport sends such a frame again on a fresh
    connection only when the adapter marked it idempotent; any other frame (a plain ``str``,
    say a publish) is not re-sent: its request fails, and the adapter reports what was in it.
    The adapter decides, not the transport: the transport never parses frames.

    >>> IdempotentFrame('[{"channel":"/meta/subscribe"}]').idempotent
    True
    """

    __slots__ = ()
    held = False
    idempotent = True


@attrs.frozen
class HttpResult:
    """The HTTP outcome of a long-polling request that carried no protocol reply.

    Returned by a long-polling connection among its received items, handed to
    :meth:`Adapter.http_result`.  ``auth`` is true for 401/403 (credentials refused) and for
    407: a proxy in the way refused our proxy credentials, either answering the request itself
    (a plain-HTTP proxy) or refusing the tunnel of a connection made anew (an HTTP proxy's 407
    to ``CONNECT``, a SOCKS5 proxy's refusal: 407 stands for both); ``proxy`` then says what
    happened, naming the proxy (credentials hidden) and what to check.
    ``detail`` says more, safe to show (a redirect's target, redacted); ``renewed`` means the
    transport renewed a credential it fetches itself (GWS' CSRF token, see
    :mod:`realtime_sync._csrf`) after this refusal: a new connection carries the renewed one,
    and the refusal is not (yet) a credential refusal.

    >>> str(HttpResult(307, "Temporary Redirect", detail="to https://sso.example.com/login?***"))
    'HTTP 307 Temporary Redirect (to https://sso.example.com/login?***)'
    """

    status: int
    reason: str = ""
    held: bool = False
    detail: str = ""
    renewed: bool = False
    url: str = ""  # the request's URL, redacted
    proxy: str = ""  # a proxy's refusal of our proxy credentials (407), redacted

    @classmethod
    def proxy_refused(cls, message: str, *, held: bool, url: str) -> HttpResult:
        """A proxy refused our proxy credentials on a connection made anew for a request
        (``message`` names the proxy): a 407, ``auth``."""
        return cls(407, "Proxy Authentication Required", held=held, url=url, proxy=message)

    @property
    def auth(self) -> bool:
        return (self.status in (401, 403) and not self.renewed) or self.status == 407

    def __str__(self) -> str:
        if self.proxy:
            return self.proxy
        text = f"HTTP {self.status} {self.reason}".strip()
        return f"{text} ({self.detail})" if self.detail else text


class SubState(enum.Enum):
    PENDING = "pending"  # wanted, not (yet) confirmed on this connection
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


@attrs.define
class _SubEntry:
    subscription: Subscription
    payload: Any = None  # protocol data needed to (re)send it, e.g. the identifier string
    state: SubState = SubState.PENDING
    sent_at: float | None = None  # when the last subscribe frame was sent on this connection
    first_sent_at: float | None = None
    attempts: int = 0
    reason: str | None = None  # why it was rejected (already redacted)


class SubscriptionRegistry:
    """Desired subscriptions, in the order they were made, with per-connection confirmation state.

    Shared by the adapters: ``add``/``discard`` record what the user wants; ``reset()`` on a new
    connection marks everything pending; ``confirm``/``reject`` record the server's answer.

    >>> reg = SubscriptionRegistry()
    >>> reg.add(Subscription("ticket", 1))
    True
    >>> reg.add(Subscription("ticket", 1))
    False
    >>> [s.key for s in reg]
    [1]
    """

    def __init__(self) -> None:
        self._entries: dict[Subscription, _SubEntry] = {}
        #: Bumped on every change of the desired set or of a confirmation state (the engine
        #: republishes its snapshot when it moves).
        self.version = 0

    def add(self, sub: Subscription, payload: Any = None) -> bool:
        """Record ``sub``; False if it was already wanted."""
        if sub in self._entries:
            return False
        self._entries[sub] = _SubEntry(sub, payload)
        self.version += 1
        return True

    def discard(self, sub: Subscription) -> bool:
        """Forget ``sub``; False if it was not wanted."""
        self.version += 1
        return self._entries.pop(sub, None) is not None

    def __contains__(self, sub: object) -> bool:
        return sub in self._entries

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, sub: Subscription) -> _SubEntry | None:
        return self._entries.get(sub)

    def entries(self) -> list[_SubEntry]:
        return list(self._entries.values())

    def payload(self, sub: Subscription) -> Any:
        e = self._entries.get(sub)
        return None if e is None else e.payload

    def find(self, kind: str, key: Hashable) -> _SubEntry | None:
        return self._entries.get(Subscription(kind, key))

    def reset(self) -> None:
        """A new connection: nothing is confirmed on it yet."""
        self.version += 1
        for e in self._entries.values():
            e.state = SubState.PENDING
            e.sent_at = None
            e.first_sent_at = None
            e.attempts = 0

    def mark_sent(self, sub: Subscription, now: float) -> None:
        e = self._entries.get(sub)
        if e is not None:
            e.sent_at = now
            if e.first_sent_at is None:
                e.first_sent_at = now
            e.attempts += 1

    def confirm(self, sub: Subscription) -> bool:
        """True if this confirmation changed the state (so ``subscribed`` should be emitted)."""
        e = self._entries.get(sub)
        if e is None or e.state is SubState.CONFIRMED:
            return False
        e.state = SubState.CONFIRMED
        self.version += 1
        return True

    def reject(self, sub: Subscription, reason: str | None = None) -> bool:
        e = self._entries.get(sub)
        if e is None or e.state is SubState.REJECTED:
            return False
        e.state = SubState.REJECTED
        e.reason = reason
        self.version += 1
        return True

    def pending(self) -> list[_SubEntry]:
        return [e for e in self._entries.values() if e.state is SubState.PENDING]


class Adapter:
    """Base class of the sans-I/O protocol adapters (see the module docstring).

    Subclasses override the hooks they need and use the ``_send``/``_emit``/``_error``/
    ``_request_close`` helpers to produce outputs.
    """

    #: Name used in logs.
    name = "adapter"
    #: True when the protocol has a heartbeat of its own (ActionCable pings, Bayeux connects):
    #: the transport then sends no websocket pings.  False: the transport pings.
    has_heartbeat = False
    #: Subprotocols the adapter offers in the handshake.
    subprotocols: tuple[str, ...] = ()
    #: True when the server confirms subscriptions (``start(wait=True)`` waits for them).
    confirms_subscriptions = True
    #: The id of the newest event delivered, for protocols that have resumable ids.
    last_event_id: str | None = None

    def __init__(self) -> None:
        self._frames: list[str] = []
        self._events: list[Event] = []
        self._close: CloseRequest | None = None
        self.clock_offset = 0.0
        self.connected = False
        #: ``"websocket"`` or ``"long-polling"``: set by the transport before connection_made().
        self.transport_kind = "websocket"
        #: The subprotocol the server selected: set by the transport before connection_made().
        self.subprotocol: str | None = None
        self.subscriptions = SubscriptionRegistry()
        #: When the transport stopped reading (flow control: the handlers are behind), else None.
        self.paused_at: float | None = None
        # Set by a subclass around the decoding of one frame: that frame (as a dict), whose
        # top-level strings are already redacted (the member walk is deferred: see _emit), and
        # the public copy of the last subscription seen.
        self._public_raw: Any = None
        self._public_sub: tuple[Subscription | None, Subscription | None] = (None, None)
        #: The client's one backoff (the engine lends its own; a bare adapter has a default
        #: one): in-session retries count on it, so they and reconnects share their counters.
        self.backoff = SharedBackoff(self.default_backoff_policy())
        #: Where the ``error`` events are logged at WARNING: the client's logger once an engine
        #: holds the adapter (``realtime_sync.transport.<client name>``), else ``realtime_sync.protocols``.
        self.log: logging.Logger = log
        # kind -> [start of its window, lines logged in it, errors not logged in it]
        self._warned: dict[str, list[Any]] = {}

    @classmethod
    def default_backoff_policy(cls) -> ReconnectPolicy:
        """The policy of a bare adapter's backoff (an engine replaces it with the client's)."""
        return ReconnectPolicy()

    # -- hooks driven by the transport -----------------------------------------------------

    def prepare_connect(self, request: ConnectRequest) -> ConnectRequest:
        """Adjust the handshake (add subprotocols, Origin...).  Called before every attempt."""
        if self.subprotocols:
            extra = tuple(p for p in self.subprotocols if p not in request.subprotocols)
            request = attrs.evolve(request, subprotocols=request.subprotocols + extra)
        return request

    def connection_made(self, now: float) -> None:
        """The websocket is open."""
        self.connected = True
        self.subscriptions.reset()

    def connection_lost(self, now: float, reason: str = "") -> None:
        """The websocket is gone (for any reason).  Keep desired state; drop the rest."""
        self.connected = False
        self.paused_at = None
        self.subscriptions.reset()

    def pause_reading(self, now: float) -> None:
        """Flow control: the transport stopped reading (the handlers are behind), so frames
        wait unread in the kernel and a silence proves nothing.  Adapters with liveness checks
        (stale detection, reply deadlines) suspend them until :meth:`resume_reading`; other
        timers (presence, keep-alives) go on."""
        self.paused_at = now

    def resume_reading(self, now: float) -> None:
        """The transport reads again: liveness clocks restart from ``now`` (override to shift
        deadlines by :meth:`paused_for`)."""
        self.paused_at = None

    def paused_for(self, now: float) -> float:
        """How long reading has been paused (0.0 when it is not)."""
        return 0.0 if self.paused_at is None else max(0.0, now - self.paused_at)

    def receive_text(self, text: str, now: float) -> None:
        """Process one text frame."""
        raise NotImplementedError

    def next_deadline(self) -> float | None:
        """The ``now`` value at which ``handle_timer`` must next be called, or None."""
        return None

    def handle_timer(self, now: float) -> None:
        """Fire whatever timers are due at ``now``."""

    def start_closing(self, now: float) -> None:
        """The user closes the client: queue goodbye frames, if the protocol has any.  Called
        when no connection is up too (the frames are then dropped), after the last commands."""

    @property
    def ready(self) -> bool:
        """The protocol is ready for use on this connection (ActionCable: welcomed; Bayeux: a
        session established); ``start(wait=True)`` waits for it.  Default: connected."""
        return self.connected

    def http_result(self, result: HttpResult, now: float) -> None:
        """A long-polling request ended with an HTTP status instead of a reply.

        Default: 401/403 (and a proxy's 407) is a credential refusal (``error`` kind ``auth``,
        then the hard auth backoff), unless the transport renewed the refused credential (``renewed``: a new
        connection at once, carrying the new one); any other status ends the connection (the
        policy's delay applies).
        """
        if result.renewed:
            self._request_close(f"{result}: reconnecting with a renewed token", delay=0.0, reported=True)
        elif result.auth:
            where = f"request to {result.url}" if result.url else "request"
            message = result.proxy or f"{where} refused: {result} (credentials refused)"
            self._error("auth", message, now)
            self._request_close(message, auth=True)
        else:
            self._request_close(str(result))

    def send_text(self, text: str, now: float) -> None:
        """Send a raw text frame given by the user (only while connected; else dropped)."""
        if self.connected:
            self._frames.append(text)

    # -- outputs -------------------------------------------------------------------------

    def data_to_send(self) -> list[str]:
        frames, self._frames = self._frames, []
        return frames

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def close_request(self) -> CloseRequest | None:
        req, self._close = self._close, None
        return req

    # -- helpers for subclasses ----------------------------------------------------------

    def _send(self, obj: Any) -> str:
        """Serialise ``obj`` as JSON and queue it; returns the text."""
        text = obj if isinstance(obj, str) else dumps(obj)
        self._frames.append(text)
        return text

    def _emit(
        self,
        name: str,
        now: float,
        data: Any = None,
        entity_id: Any = None,
        raw: Any = None,
        subscription: Subscription | None = None,
        changes: frozenset[str] | None = None,
        decode_error: str | None = None,
        account_id: int | str | None = None,
        recovered: bool = False,
    ) -> Event:
        # Events leave the library: they carry redacted copies of the frame and the subscription
        # (an ActionCable identifier holds the pubsub token), never the originals.  The frame's
        # walk for members named as secrets runs on the first read of event.raw (deferred_raw).
        if subscription is not None:
            known, public = self._public_sub
            subscription = public if subscription is known else public_subscription(subscription)
        if raw is self._public_raw and raw is not None:  # deferred_raw(raw, True), one call less
            stored: Any = _new(Deferred)
            stored.value = raw
        else:
            stored = deferred_raw(raw)
        event = build_event(
            name,
            data,
            entity_id,
            stored,
            now + self.clock_offset,
            subscription,
            changes,
            decode_error,
            account_id,
            recovered,
        )
        self._events.append(event)
        return event

    def _emit_decoded(
        self,
        name: str,
        now: float,
        data: Any,
        problem: str | None,
        *,
        entity_id: Any = None,
        raw: Any = None,
        subscription: Subscription | None = None,
        changes: frozenset[str] | None = None,
        account_id: int | str | None = None,
        frame: Any = None,
        recovered: bool = False,
    ) -> Event:
        """Emit an event decoded under the decoding policy (:func:`~realtime_sync.models._converter.decode`).

        A mismatch never costs the event: it is delivered with ``decode_error`` set, then an
        ``error`` event of kind ``"decode"`` reports it.
        """
        problem = None if problem is None else redact(problem)
        event = self._emit(
            name,
            now,
            data,
            entity_id=entity_id,
            raw=raw,
            subscription=subscription,
            changes=changes,
            decode_error=problem,
            account_id=account_id,
            recovered=recovered,
        )
        if problem is not None:
            message = f"{name}: payload delivered as decoded; it does not fit the model: {problem}"
            self._error(
                "decode",
                message,
                now,
                frame=frame if frame is not None else raw,
                exc=ProtocolError(message),
                raw=raw,
                subscription=subscription,
            )
        return event

    def _error(
        self,
        kind: str,
        message: str,
        now: float,
        *,
        frame: Any = None,
        exc: BaseException | None = None,
        raw: Any = None,
        subscription: Subscription | None = None,
        level: int = logging.WARNING,
    ) -> None:
        excerpt = None if frame is None else truncate(frame)
        if exc is None and kind == "bad_frame":
            exc = ProtocolError(redact(message))
        info = ErrorInfo(kind, redact(message), excerpt, exc)
        self._emit_error(info, now, raw=raw, subscription=subscription, level=level)

    def _emit_error(
        self,
        info: ErrorInfo,
        now: float,
        *,
        raw: Any = None,
        subscription: Subscription | None = None,
        level: int = logging.WARNING,
    ) -> None:
        """Emit the ``error`` event ``info`` and log it (at WARNING unless ``level`` says less:
        a transient failure the adapter retries), as the engine logs its own: a user whose
        logging shows warnings sees a refused token, a server's error, a bad frame or a payload
        that does not fit its model without an ``error`` handler.  A flood (a server sending a
        bad frame a millisecond) is cut to _WARN_BURST lines a kind a minute."""
        if info.kind != "handler":  # (an extension that raised: its traceback is logged at ERROR)
            self._warn(info.kind, info.message, now, level)
        self._emit("error", now, info, raw=raw, subscription=subscription)

    def _warn(self, kind: str, message: str, now: float, level: int = logging.WARNING) -> None:
        state = self._warned.get(kind)
        if state is None or now - state[0] >= _WARN_WINDOW:
            skipped = 0 if state is None else state[2]
            state = self._warned[kind] = [now, 0, 0]
            if skipped:
                message = f"{message} ({skipped} more {kind!r} errors in the minute before were not logged)"
        if state[1] >= _WARN_BURST:
            if state[2] == 0:
                self.log.log(
                    level,
                    "%s: %d errors of this kind in a minute; the rest of this minute's are not logged",
                    kind,
                    _WARN_BURST,
                )
            state[2] += 1
            return
        state[1] += 1
        self.log.log(level, "%s: %s", kind, redact(message))

    def _bad_frame(
        self, message: str, text: Any, now: float, raw: Any = None, exc: BaseException | None = None
    ) -> None:
        self._error("bad_frame", message, now, frame=text, exc=exc, raw=raw)

    def _decode(self, text: str, now: float) -> Any:
        """``json.loads(text)``, or ``_BAD`` after emitting a ``bad_frame`` error.

        Through :func:`realtime_sync._json.decode`: a frame nested too deeply is a decode error
        too, never a ``RecursionError`` out of the adapter.
        """
        try:
            return decode(text)
        except (ValueError, TypeError) as exc:
            self._bad_frame(f"frame is not valid JSON: {exc}", text, now, exc=ProtocolError(f"invalid JSON: {exc}"))
            return BAD

    def _request_close(
        self,
        reason: str,
        *,
        reconnect: bool = True,
        delay: float | None = None,
        auth: bool = False,
        code: int = 1000,
        server: bool = False,
        reported: bool = False,
    ) -> None:
        # The first request wins: it names the real cause.
        if self._close is None:
            reported = reported or (
                auth and any(e.name == "error" and getattr(e.data, "kind", None) == "auth" for e in self._events)
            )
            self._close = CloseRequest(reason, reconnect, delay, auth, code, server, reported)

    def _subscribed(self, sub: Subscription, now: float) -> None:
        if self.subscriptions.confirm(sub):
            self._emit("subscribed", now, SubscriptionInfo(sub), subscription=sub)

    def _rejected(self, sub: Subscription, reason: str, now: float) -> None:
        reason = redact(reason)
        if self.subscriptions.reject(sub, reason):
            self._emit("subscription_rejected", now, SubscriptionInfo(sub, reason), subscription=sub)


class _Bad:
    __slots__ = ()

    def __repr__(self) -> str:
        return "BAD"


#: Sentinel returned by ``Adapter._decode`` for a frame that could not be decoded.
BAD: Any = _Bad()
