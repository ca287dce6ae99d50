"""Sans-I/O adapter for Rails ActionCable (``actioncable-v1-json``), any channel.

Theory of operation
-------------------
One websocket carries any number of channel subscriptions.  The server speaks first::

    server                                         client (this adapter)
    ------                                         ---------------------
    <handshake: subprotocol actioncable-v1-json,   prepare_connect(): subprotocols + Origin
     Origin checked, else HTTP 404>
    {"type":"welcome"}                             send every wanted subscription
    {"type":"ping","message":<unix s>} every 3 s   any frame counts as life
    {"identifier":I,"type":"confirm_subscription"} -> "subscribed"
    {"identifier":I,"type":"reject_subscription"}  -> "subscription_rejected"; forgotten
    {"identifier":I,"message":{...}}               -> decode_broadcast(): "message" events
    {"type":"disconnect","reason":R,"reconnect":B} -> close; B false: report and stop

Client commands are ``{"command":"subscribe"|"unsubscribe","identifier":I}`` and
``{"command":"message","identifier":I,"data":"<JSON string with action>"}``.  ``I`` is a JSON
*string*, and the server keys subscriptions by that exact string: the same object serialised
with another key order is another subscription (and doubles every delivery).  So an identifier
is serialised exactly once (:func:`serialize_identifier`) and that string is the
subscription's key, re-sent verbatim after every reconnect.

Timers (all driven by ``handle_timer(now)``, none read a clock):

* liveness: no frame at all for ``stale_after`` seconds (default 6 s, two missed pings, like the
  reference JS client's ``ConnectionMonitor.staleThreshold``) -> ``CloseRequest("stale", delay=0)``;
* subscription guarantee: an unconfirmed subscribe is repeated every ``retry_interval`` (0.5 s,
  the JS ``SubscriptionGuarantor`` cadence).  A real server sends *nothing* when the channel
  raises inside ``subscribed`` (and ignores a duplicate subscribe), so past ``confirm_timeout``
  (10 s) the subscription is reported as ``subscription_rejected`` (with the reason) plus an
  ``error`` event of kind ``"subscription"``, and no longer retried on this connection.  It stays
  wanted: the next connection tries again, and a late confirmation still yields ``subscribed``.

A ``reject_subscription`` is authoritative (the server refused the identifier): like the JS
client, the adapter forgets the subscription, so it is not re-sent after reconnects.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import attrs

from .. import _redact
from .._json import MAX_DEPTH, dumps, loads
from .._redact import redact
from ..events import Subscription, deferred_frame, public_subscription, public_text
from ..exceptions import AuthenticationError, ConfigurationError, ProtocolError, RemoteError
from .base import BAD, Adapter, ConnectRequest, SubState, _SubEntry

#: A routed identifier: (the subscription, its public copy), the identifier made public, and
#: ``{"identifier": <that>}`` (what events.deferred_frame() puts back in the frame).
_Route = tuple[tuple[Subscription, Subscription], str, Mapping[str, str]]

__all__ = [
    "PROTOCOLS",
    "ActionCableAdapter",
    "BroadcastDecoder",
    "origin_for",
    "serialize_identifier",
]

log = logging.getLogger("realtime_sync.actioncable")

#: Offered subprotocols, in the reference client's order.  A server that only knows
#: ``actioncable-unsupported`` is too old/new for this protocol version.
PROTOCOLS = ("actioncable-v1-json", "actioncable-unsupported")

#: Subscription kind used for ActionCable subscriptions; the key is the identifier string.
KIND = "channel"

#: ``decoder(message) -> (event_name, data, entity_id)`` for the generic adapter.
BroadcastDecoder = Callable[[Any], "tuple[str, Any, Any]"]


def serialize_identifier(channel_or_identifier: str | Mapping[str, Any], **params: Any) -> str:
    """The identifier string of a subscription (serialise once; reuse the result).

    ``channel_or_identifier`` is a channel name (``"ChatChannel"``, then ``params`` are added),
    an identifier object (``{"channel": "ChatChannel", "room": 1}``; ``params`` are merged after
    it), or an identifier that is already a JSON string (kept byte for byte).

    >>> serialize_identifier("ChatChannel", room="lobby")
    '{"channel":"ChatChannel","room":"lobby"}'
    >>> serialize_identifier({"channel": "ChatChannel", "room": 1})
    '{"channel":"ChatChannel","room":1}'
    >>> serialize_identifier('{"room": 1, "channel": "ChatChannel"}')
    '{"room": 1, "channel": "ChatChannel"}'
    """
    if isinstance(channel_or_identifier, str):
        if channel_or_identifier.lstrip().startswith("{"):
            if params:
                raise ConfigurationError(
                    "pass either an identifier JSON string or a channel name with params, not both"
                )
            try:
                decoded = loads(channel_or_identifier)
            except ValueError as exc:
                raise ConfigurationError(f"identifier is not valid JSON: {exc}") from None
            if not isinstance(decoded, dict) or not isinstance(decoded.get("channel"), str):
                raise ConfigurationError('an identifier must be a JSON object with a "channel" string')
            return channel_or_identifier
        if not channel_or_identifier:
            raise ConfigurationError("the channel name is empty")
        identifier: dict[str, Any] = {"channel": channel_or_identifier, **params}
    elif isinstance(channel_or_identifier, Mapping):
        identifier = {**channel_or_identifier, **params}
        if not isinstance(identifier.get("channel"), str) or not identifier["channel"]:
            raise ConfigurationError('an identifier must have a "channel" string')
    else:
        raise ConfigurationError(
            f"expected a channel name or an identifier dict, got {type(channel_or_identifier).__name__}"
        )
    try:
        return dumps(identifier)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"identifier is not JSON-serialisable: {exc}") from None


def origin_for(url: str) -> str | None:
    """The ``Origin`` a browser would send for a page on the cable URL's host.

    >>> origin_for("wss://app.voxsig.com/cable")
    'https://app.voxsig.com'
    >>> origin_for("ws://127.0.0.1:3000/cable")
    'http://127.0.0.1:3000'
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(parts.scheme.lower())
    host = parts.hostname
    if scheme is None or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    default = 80 if scheme == "http" else 443
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _positive(name: str, value: float | None, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class ActionCableAdapter(Adapter):
    """Sans-I/O ActionCable client for any channel (see the module docstring).

    Broadcasts become ``"message"`` events whose ``data`` is the broadcast message and whose
    ``subscription`` says which channel it came through, unless a ``decoder`` says otherwise
    (``decoder(message) -> (name, data, entity_id)``) or a subclass overrides
    :meth:`decode_broadcast`.

    >>> a = ActionCableAdapter()
    >>> sub = a.subscribe(serialize_identifier("ChatChannel", room=1), now=0.0)
    >>> a.connection_made(0.0); a.receive_text('{"type":"welcome"}', 0.1)
    >>> a.data_to_send()
    ['{"command":"subscribe","identifier":"{\\\\"channel\\\\":\\\\"ChatChannel\\\\",\\\\"room\\\\":1}"}']
    """

    name = "actioncable"
    #: What the ``confirm_timeout`` error adds: why a server may say nothing.
    unconfirmed_hint = (
        "the server may have no such channel class (Rails logs 'Subscription class not found' and "
        "answers nothing), or the channel failed in `subscribed` or refused the identifier silently"
    )
    has_heartbeat = True
    subprotocols = PROTOCOLS

    def __init__(
        self,
        *,
        stale_after: float | None = 6.0,
        confirm_timeout: float = 10.0,
        retry_interval: float = 0.5,
        decoder: BroadcastDecoder | None = None,
    ) -> None:
        super().__init__()
        self.stale_after = _positive("stale_after", stale_after, optional=True)
        self.confirm_timeout = float(_positive("confirm_timeout", confirm_timeout) or 0.0)
        self.retry_interval = float(_positive("retry_interval", retry_interval) or 0.0)
        self.decoder = decoder
        self.transport_kind = "websocket"
        #: True once the server's ``welcome`` arrived on the current connection.
        self.welcomed = False
        self._last_frame: float | None = None
        # Subscribe frames sent on this connection and not answered yet (the guarantee timer).
        self._awaiting: dict[Subscription, _SubEntry] = {}
        # identifier string -> its _Route (see above): every broadcast names its identifier;
        # valid while the subscriptions and the secrets are.
        self._routes: dict[str, _Route] = {}
        self._routes_for: tuple[int, tuple[str, ...]] = (-1, ())

    # -- handshake -------------------------------------------------------------------------

    def prepare_connect(self, request: ConnectRequest) -> ConnectRequest:
        # Offer our subprotocols first: the server picks the first it knows.
        extra = tuple(p for p in request.subprotocols if p not in self.subprotocols)
        request = attrs.evolve(request, subprotocols=self.subprotocols + extra)
        # Rails checks Origin against allowed_request_origins and answers a plain 404 when it
        # does not match; a browser would send the page's origin, i.e. the cable host's.
        # ConnectOptions.origin: None = derive, "" = send none, else as given.
        if request.origin is None:
            request = attrs.evolve(request, origin=origin_for(request.url))
        return request

    # -- connection lifecycle --------------------------------------------------------------

    def connection_made(self, now: float) -> None:
        super().connection_made(now)
        self.welcomed = False
        self._last_frame = now
        self._awaiting.clear()
        if self.subprotocol == "actioncable-unsupported":
            # The server speaks none of our protocol versions (the JS client stops here too).
            self._error("server", "the server selected 'actioncable-unsupported': protocol version mismatch", now)
            self._request_close("unsupported protocol version", reconnect=False)

    def connection_lost(self, now: float, reason: str = "") -> None:
        super().connection_lost(now, reason)
        self.welcomed = False
        self._last_frame = None
        self._awaiting.clear()

    # -- intents (called on the transport thread) ------------------------------------------

    @property
    def ready(self) -> bool:
        """The server welcomed this connection."""
        return self.connected and self.welcomed

    def subscribe(self, identifier: str, now: float) -> Subscription:
        """Want the subscription whose identifier string is ``identifier`` (see :func:`serialize_identifier`).

        Sent now when the connection is welcomed, else after the next ``welcome``.  Subscribing
        again to a wanted identifier re-sends it only when it had failed on this connection.
        """
        sub = Subscription(KIND, identifier)
        if self.subscriptions.add(sub, identifier):
            log.debug("subscribe %s", redact(identifier))
            self._send_subscribe(sub, now)
        else:
            entry = self.subscriptions.entry(sub)
            if entry is not None and entry.state is SubState.REJECTED:
                entry.state = SubState.PENDING
                entry.first_sent_at = None
                self._send_subscribe(sub, now)
        return sub

    def unsubscribe(self, identifier: str | Subscription, now: float) -> bool:
        """Stop wanting a subscription; sends ``unsubscribe`` (no acknowledgement exists)."""
        sub = identifier if isinstance(identifier, Subscription) else Subscription(KIND, identifier)
        self._awaiting.pop(sub, None)
        if not self.subscriptions.discard(sub):
            return False
        log.debug("unsubscribe %s", redact(sub.key))
        if self.connected and self.welcomed:
            self._send({"command": "unsubscribe", "identifier": sub.key})
        return True

    def perform(self, identifier: str | Subscription, action: str, now: float, /, **data: Any) -> bool:
        """Call the channel method ``action`` with ``data``; False (dropped) when not connected.

        Like the reference client, nothing is queued while disconnected: a channel action is
        an instantaneous call, not desired state.
        """
        key = identifier.key if isinstance(identifier, Subscription) else identifier
        if not (self.connected and self.welcomed):
            log.debug("perform %r dropped: not connected", action)
            return False
        payload = dict(data)
        payload["action"] = action
        self._send({"command": "message", "identifier": key, "data": dumps(payload)})
        return True

    def subscription_state(self, sub: Subscription) -> SubState | None:
        """PENDING / CONFIRMED / REJECTED on the current connection, or None if not wanted."""
        entry = self.subscriptions.entry(sub)
        return None if entry is None else entry.state

    def _send_subscribe(self, sub: Subscription, now: float) -> None:
        # Commands sent before welcome are buffered by a real server, but a fake or a proxy
        # may drop them, and the reference client waits too: subscribe after welcome only.
        if not (self.connected and self.welcomed):
            return
        self._send({"command": "subscribe", "identifier": sub.key})
        self.subscriptions.mark_sent(sub, now)
        entry = self.subscriptions.entry(sub)
        if entry is not None:
            self._awaiting[sub] = entry

    # -- frames ----------------------------------------------------------------------------

    def receive_text(self, text: str, now: float) -> None:
        # Any frame, even one we cannot use, proves the connection is alive.
        self._last_frame = now
        # The hot path: most frames are broadcasts, valid and shallow.  Anything else (invalid
        # JSON, a frame that may nest deeper than MAX_DEPTH) takes _decode(), which reports it.
        msg: Any = BAD
        opening = text.count("{")  # not _json.may_nest_deeper(text): the same test, one call less a frame
        if "[" in text:
            opening += text.count("[")
        if opening <= MAX_DEPTH:
            try:
                msg = loads(text)
            except Exception:
                pass
        if msg is BAD:
            msg = self._decode(text, now)
            if msg is BAD:
                return
        if type(msg) is dict and "type" not in msg and "message" in msg:
            self._on_broadcast(msg, text, now)
            return
        if not isinstance(msg, dict):
            self._bad_frame(f"expected a JSON object, got {type(msg).__name__}", text, now, raw=msg)
            return
        kind = msg.get("type")
        if kind is None:
            if "message" in msg:
                self._on_broadcast(msg, text, now)
            else:
                self._bad_frame("frame has neither a type nor a message", text, now, raw=msg)
            return
        if kind == "ping":
            return
        if kind == "welcome":
            self._on_welcome(now)
        elif kind == "confirm_subscription" or kind == "reject_subscription":
            sub = self._sub_for(msg, text, now)
            if sub is None:
                return
            self._awaiting.pop(sub, None)
            if kind == "confirm_subscription":
                was = self.subscription_state(sub)
                self._subscribed(sub, now)
                if was is not SubState.CONFIRMED:
                    self._on_confirmed(sub, now)
            else:
                log.info("subscription rejected by the server: %s", redact(sub.key))
                self._rejected(sub, "rejected by the server", now)
                self.subscriptions.discard(sub)
        elif kind == "disconnect":
            self._on_disconnect(msg, text, now)
        elif isinstance(kind, str):
            # A newer server's message type: not ours to judge.
            log.debug("ignoring ActionCable frame of unknown type %r", kind)
        else:
            self._bad_frame(f"type must be a string, got {type(kind).__name__}", text, now, raw=msg)

    def _sub_for(self, msg: dict[str, Any], text: str, now: float) -> Subscription | None:
        ident = msg.get("identifier")
        if not isinstance(ident, str):
            self._bad_frame("identifier must be a JSON string", text, now, raw=msg)
            return None
        sub = Subscription(KIND, ident)
        if sub not in self.subscriptions:
            # An answer for something we dropped meanwhile (or never asked for): nothing to do.
            log.debug("frame for an identifier not subscribed: %s", redact(ident))
            return None
        return sub

    def _on_welcome(self, now: float) -> None:
        self.welcomed = True
        # Subscriptions are per connection on the server: every wanted one is (re)sent.
        for entry in self.subscriptions.entries():
            if entry.state is not SubState.CONFIRMED:
                entry.state = SubState.PENDING
                entry.first_sent_at = None
                self._send_subscribe(entry.subscription, now)

    def _on_disconnect(self, msg: dict[str, Any], text: str, now: float) -> None:
        reason = msg.get("reason")
        reason = reason if isinstance(reason, str) and reason else "disconnect"
        # A missing "reconnect" (servers before Rails 6.0 did not send it) means come back.
        reconnect = msg.get("reconnect", True) is not False
        auth = reason == "unauthorized"
        if reconnect:
            log.info("server asked to reconnect (%s)", redact(reason))
            # server=True: a restart drops every client at once; the first retry is jittered.
            self._request_close(reason, reconnect=True, auth=auth, server=not auth)
            return
        message = f"the server closed the connection and asked not to reconnect (reason: {reason})"
        exc: RemoteError = AuthenticationError(redact(message)) if auth else RemoteError(redact(message))
        self._error("auth" if auth else "server", message, now, frame=text, exc=exc, raw=msg)
        self._request_close(reason, reconnect=False, auth=auth)

    def _route(self, ident: Any) -> _Route | None:
        """The subscription a frame's identifier names (cached by the identifier string)."""
        version, secrets = self._routes_for
        if version != self.subscriptions.version or secrets is not _redact._by_length:
            self._routes.clear()
            self._routes_for = (self.subscriptions.version, _redact._by_length)
        route = self._routes.get(ident) if type(ident) is str else None
        if route is None and type(ident) is str:
            sub = Subscription(KIND, ident)
            if sub in self.subscriptions:
                public = public_text(ident)
                route = self._routes[ident] = ((sub, public_subscription(sub)), public, {"identifier": public})
        return route

    def _on_broadcast(self, msg: dict[str, Any], text: str, now: float) -> None:
        ident = msg.get("identifier")
        version, secrets = self._routes_for
        if version == self.subscriptions.version and secrets is _redact._by_length and type(ident) is str:
            route = self._routes.get(ident) or self._route(ident)
        else:
            route = self._route(ident)
        if route is None:
            self._sub_for(msg, text, now)  # reports a bad identifier, logs an unknown one
            return
        subs, public_ident, patch = route
        sub = subs[0]
        message = msg["message"]
        if len(msg) == 2 and type(message) is dict:
            # The frame is the event's raw: the identifier (it carries the pubsub token) is
            # replaced by its public copy in place, so no copy of the frame is made for
            # ``event.raw`` (the frame is ours alone, just decoded).  The one-call path keeps
            # the frame's text instead (events.deferred_frame: read again with that public
            # identifier on the first read of ``event.raw``), and the decoded frame dies here.
            # Another user's secret in the payload (Chatwoot's contact_inbox row carries its
            # pubsub_token) is hidden when ``event.raw`` is first read (see events.deferred_raw);
            # the decoder gets the message as sent.
            msg["identifier"] = public_ident
            try:
                if self.live_broadcast(subs, message, deferred_frame(text, patch), now):
                    return
            except Exception as exc:  # a decoder bug must not kill the transport thread
                self._bad_frame(f"broadcast could not be decoded: {exc!r}", text, now, raw=msg, exc=exc)
                return
            self._public_raw = msg
            self._public_sub = subs  # (sub, its public copy): no tuple built per frame
        try:
            self.decode_broadcast(sub, message, now, raw=msg, text=text)
        except Exception as exc:  # a decoder bug must not kill the transport thread
            self._bad_frame(f"broadcast could not be decoded: {exc!r}", text, now, raw=msg, exc=exc)
        finally:
            self._public_raw = None
            self._public_sub = (None, None)

    def live_broadcast(
        self, subs: tuple[Subscription, Subscription], message: dict[str, Any], raw: Any, now: float
    ) -> bool:
        """The hot path of :meth:`decode_broadcast` (override in vendor subclasses): emit the
        events of the usual broadcast in one call and return True, or return False having
        done nothing, and :meth:`decode_broadcast` takes it.

        ``subs`` is the subscription and its public copy, ``message`` the broadcast's
        ``message`` object, ``raw`` the event's ``raw`` as :func:`~realtime_sync.events.build_event`
        takes it (:func:`~realtime_sync.events.deferred_frame`: the frame with its identifier
        public, decoded again when ``event.raw`` is first read).  Default: False.
        """
        return False

    def decode_broadcast(self, sub: Subscription, message: Any, now: float, *, raw: Any, text: str) -> None:
        """Turn one broadcast into events (override in vendor subclasses).

        Default: ``decoder(message) -> (name, data, entity_id)`` when given, else one
        ``"message"`` event with the message as ``data``.
        """
        if self.decoder is None:
            self._emit("message", now, message, raw=raw, subscription=sub)
            return
        name, data, entity_id = self.decoder(message)
        self._emit(name, now, data, entity_id=entity_id, raw=raw, subscription=sub)

    def _on_confirmed(self, sub: Subscription, now: float) -> None:
        """Hook: ``sub`` was just confirmed on this connection (Voxsig starts presence here)."""

    # -- timers ----------------------------------------------------------------------------

    def resume_reading(self, now: float) -> None:
        # Frames were waiting the whole time: the silence clock and the confirmation clocks
        # restart (a confirmation may have been among the unread frames).
        paused = self.paused_for(now)
        super().resume_reading(now)
        if self._last_frame is not None:
            self._last_frame = max(self._last_frame, now)
        for entry in self._awaiting.values():
            if entry.sent_at is not None:
                entry.sent_at += paused
            if entry.first_sent_at is not None:
                entry.first_sent_at += paused

    def next_deadline(self) -> float | None:
        deadline: float | None = None
        if self.paused_at is not None:
            return None  # liveness and confirmation checks wait until reading resumes
        if self.connected and self.stale_after is not None and self._last_frame is not None:
            deadline = self._last_frame + self.stale_after
        for entry in self._awaiting.values():
            d = self._entry_deadline(entry)
            if deadline is None or d < deadline:
                deadline = d
        return deadline

    def _entry_deadline(self, entry: _SubEntry) -> float:
        sent = entry.sent_at or 0.0
        first = entry.first_sent_at if entry.first_sent_at is not None else sent
        return min(sent + self.retry_interval, first + self.confirm_timeout)

    def handle_timer(self, now: float) -> None:
        if not self.connected or self.paused_at is not None:
            return
        if self.stale_after is not None and self._last_frame is not None and now - self._last_frame >= self.stale_after:
            log.warning("no frame for %.1f s: the connection is stale, replacing it", now - self._last_frame)
            self._request_close("stale", reconnect=True, delay=0)
            return
        for sub, entry in list(self._awaiting.items()):
            first = entry.first_sent_at if entry.first_sent_at is not None else now
            if now - first >= self.confirm_timeout:
                del self._awaiting[sub]
                reason = (
                    f"no confirmation within {self.confirm_timeout:g} s after {entry.attempts} subscribe(s); "
                    + self.unconfirmed_hint
                )
                self._rejected(sub, reason, now)
                self._error(
                    "subscription",
                    f"subscription {redact(sub.key)} not confirmed: {reason}",
                    now,
                    exc=ProtocolError(reason),
                    subscription=sub,
                )
            elif entry.sent_at is not None and now - entry.sent_at >= self.retry_interval:
                # The reference client's SubscriptionGuarantor repeats the subscribe until it is
                # confirmed; a real server ignores a duplicate of one it already holds.
                self._send({"command": "subscribe", "identifier": sub.key})
                self.subscriptions.mark_sent(sub, now)
