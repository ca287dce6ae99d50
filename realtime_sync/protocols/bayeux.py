"""Sans-I/O Bayeux 1.0 (CometD) client adapter, for websocket and HTTP long-polling transports.

Theory of operation
-------------------
A Bayeux *session* (a ``clientId``) is distinct from the physical connection that carries it.
The server keeps a session alive as long as a ``/meta/connect`` arrives at least every
``advice.timeout + advice.interval + maxInterval``; its subscriptions live and die with it.
So this adapter tracks two things:

    connection   (transport)   connection_made -> ... -> connection_lost
    session      (server)      handshake reply -> ... -> "unknown client" / advice handshake

The states of the session, as seen on one connection::

    connection_made --(known clientId, recent contact)--> RESUMING --connect ok--> CONNECTED
          |                                                  | connect fails, advice handshake
          +--(no session)--> HANDSHAKING <-------------------+
                                 | handshake ok: subscribe everything, first connect (timeout 0)
                                 v
                             CONNECTED: one /meta/connect outstanding at all times; the server
                                 holds it up to advice.timeout (the heartbeat); the next one
                                 goes after advice.interval
    start_closing -> DISCONNECTING (/meta/disconnect; the reply asks the transport to close)
    advice "none" -> STOPPED (error event + CloseRequest(reconnect=False))

Rules taken from the reference client (cometd-javascript ``CometD.js``) and checked against faye:

* Advice (``reconnect``, ``interval``, ``timeout``, ``maxInterval``) is sent only when it changes;
  the last one received supersedes the earlier ones and is obeyed: ``retry`` -> the next connect
  after ``interval``; ``handshake`` -> the session is gone: handshake again and subscribe again
  (subscriptions die with the session); ``none`` -> stop.  The error strings differ between
  servers (``402::Unknown client``, ``401:<id>:Unknown client``, ``403::Unknown client``...), so
  the adapter acts on the advice, never on the error code.
* Replies to ``/meta/*`` and publishes carry the id of the request; data messages carry the
  publisher's id, so they are never matched to a request by id (a reply is recognised by its
  ``successful`` field *and* its channel *and* its id).
* A request unanswered within its allowance means a dead connection: ``advice.timeout +
  max_network_delay`` for a connect (the server holds it), ``max_network_delay`` for the rest.
  The adapter then asks the transport to replace the connection; the session is resumed on the
  new one when it may still be alive (a connect with the old clientId), else a new handshake.
* Failures back off linearly: 1 s more per consecutive failure, at most 60 s, reset by a
  successful connect or handshake; the delay before a retry is ``advice.interval + backoff``.
  The counters are the client's one backoff (``self.backoff``, lent by the engine, so in-session
  retries and reconnects count together; its policy is the client's ``reconnect=``, by default
  the reference client's numbers above).  A session the server ends (advice ``handshake``) is
  handshaken again after ``advice.interval`` plus the policy's ``restart_jitter``: a fleet of
  clients does not come back in one instant after a server restart.
* faye answers a ``/meta/subscribe`` batched into the same frame as a held connect only when the
  connect returns: a connect always travels alone in its frame (which also lets the long-polling
  transport put it on its own HTTP request).

Publishes that fail are reported, never re-sent, as CometD's own clients do: cometd.js fails
every message of a failed request (``_handleFailure`` -> ``_failMessage``, which calls the
publish callback with ``successful: false`` and notifies ``/meta/unsuccessful``), the Java
``BayeuxClient`` likewise (``messagesFailure`` -> ``failMessage``), and a queued message is failed
when the client disconnects (cometd.js ``_disconnect``).  Re-sending is not safe: a request that
failed may have reached the server (a reply lost with its connection), and Bayeux publishes
carry no de-duplication.  So a publish that may not have arrived is one ``error`` event of kind
``"publish"``, whose ``entity_id`` is the channel and whose ``raw`` is the publish
(``{"id", "channel", "data"}``) for the caller to send again:

* refused by the server (``successful: false``, with its error);
* in flight when its connection was lost (an HTTP error status on a long-polling request, the
  connection dropped, a kept-alive HTTP connection closed after the request went out, a reply
  overdue);
* held for a session that never came: the client closed first, or the server said stop (advice
  ``none``).

Which requests may be sent twice.  Over long-polling, a request on a kept-alive HTTP connection
that fails before any byte of its answer came back may or may not have been applied.  The
transport sends it again on a fresh connection only when this adapter marked its frame
(:class:`~realtime_sync.protocols.base.IdempotentFrame`, or the held connect's
:class:`~realtime_sync.protocols.base.HeldFrame`), that is when every message in it is on a
``/meta/`` channel, whose repetition changes nothing the client relies on:

* ``/meta/connect``: the poll itself; a second one supersedes the first (the server answers the
  older one), and the ``ack`` extension's value is the same batch id again;
* ``/meta/subscribe`` and ``/meta/unsubscribe``: set operations on the session's subscriptions;
* ``/meta/handshake``: at worst an extra session that never connects, dropped by the server after
  ``maxInterval`` (no subscription, no message);
* ``/meta/disconnect``: the session ends either way (a repeat is answered "unknown client", and
  any disconnect reply closes).

A frame with anything else (a publish on a broadcast channel, a ``/service/`` request, a raw
frame from ``send_text``) is never re-sent: its request fails, the connection ends, and each
publish in it is reported as below.

A publish in flight at a normal ``close()`` is not failed (cometd.js waits for its reply, and it
most likely arrived); it is logged at INFO as unconfirmed.

Outputs: ``message`` events (or what the ``decoder`` makes of a data message), ``subscribed`` /
``subscription_rejected`` with the server's error, ``handshake`` when a new session starts
(``SessionInfo``; number 2 and up means a previous session was lost and its messages with it),
``error`` events (``server``: the server refused something; ``auth``: a handshake refused with
401/403; ``publish``: a publish failed, see above; ``bad_frame``).
"""

from __future__ import annotations

import enum
import logging
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import attrs

from .._json import dumps
from .._redact import redact, register_secrets_in
from ..config import ReconnectPolicy
from ..events import ErrorInfo, Subscription
from ..exceptions import ConfigurationError, ProtocolError
from .base import BAD, Adapter, HeldFrame, IdempotentFrame, truncate

__all__ = [
    "AckExtension",
    "AuthExtension",
    "BayeuxAdapter",
    "BayeuxState",
    "CONNECTION_TYPES",
    "Decoder",
    "Extension",
    "SessionInfo",
    "channel_matches",
    "default_decoder",
    "validate_channel",
]

log = logging.getLogger("realtime_sync.bayeux")

CONNECTION_TYPES = ("websocket", "long-polling")

#: ``decoder(channel, data) -> (event name, event data, entity_id)`` for data messages; a decoder
#: may also return ``(name, data, entity_id, decode_error)``: the event is delivered with
#: ``event.decode_error`` and an ``error`` of kind ``"decode"`` follows (the decoding policy).
Decoder = Callable[[str, Any], "tuple[str, Any, Any] | tuple[str, Any, Any, str | None]"]

_META = "/meta/"
_MAX_QUEUED_PUBLISHES = 1000


def _safe_to_repeat(message: dict[str, Any]) -> bool:
    """A message whose second delivery changes nothing (see the module docstring)."""
    channel = message.get("channel")
    return isinstance(channel, str) and channel.startswith(_META)


def default_decoder(channel: str, data: Any) -> tuple[str, Any, Any]:
    """The generic mapping: every data message is a ``message`` event, entity_id = its channel."""
    return "message", data, channel


def validate_channel(channel: Any, *, subscribe: bool) -> str:
    """Check a channel name (raise :class:`ConfigurationError`); returns it.

    Wildcards (``*`` one segment, ``**`` any depth) are allowed as the last segment of a
    subscription, never in a publish; ``/meta/`` channels are the protocol's own.

    >>> validate_channel("/v2/me/chats", subscribe=True)
    '/v2/me/chats'
    >>> validate_channel("/chat/*", subscribe=False)
    Traceback (most recent call last):
    ...
    realtime_sync.exceptions.ConfigurationError: cannot publish to a wildcard channel: '/chat/*'
    """
    if not isinstance(channel, str) or not channel.startswith("/") or channel == "/":
        raise ConfigurationError(f"a Bayeux channel is a string like '/v2/me/chats', got {channel!r}")
    segments = channel[1:].split("/")
    if any(not s for s in segments):
        raise ConfigurationError(f"empty segment in channel {channel!r}")
    if channel.startswith(_META):
        raise ConfigurationError(f"{channel!r} is a protocol channel; the client handles /meta/ itself")
    wild = [i for i, s in enumerate(segments) if s in ("*", "**")]
    if wild:
        if not subscribe:
            raise ConfigurationError(f"cannot publish to a wildcard channel: {channel!r}")
        if wild != [len(segments) - 1]:
            raise ConfigurationError(f"a wildcard may only be the last segment: {channel!r}")
    if any("*" in s and s not in ("*", "**") for s in segments):
        raise ConfigurationError(f"'*' must be a whole segment: {channel!r}")
    return channel


def channel_matches(pattern: str, channel: str) -> bool:
    """Bayeux channel globbing: ``/a/*`` matches ``/a/b``; ``/a/**`` matches ``/a/b/c`` too.

    >>> channel_matches("/chat/*", "/chat/room"), channel_matches("/chat/*", "/chat/a/b")
    (True, False)
    >>> channel_matches("/chat/**", "/chat/a/b")
    True
    """
    if pattern == channel:
        return True
    if pattern.endswith("/**"):
        prefix = pattern[:-2]
        return channel.startswith(prefix) and len(channel) > len(prefix)
    if pattern.endswith("/*"):
        prefix = pattern[:-1]
        return channel.startswith(prefix) and "/" not in channel[len(prefix) :] and len(channel) > len(prefix)
    return False


class Extension(Protocol):
    """A Bayeux extension: sees (and may change or drop) every message in each direction.

    Both methods are optional: implement ``outgoing`` and/or ``incoming``.  Each gets one
    message (a dict) and returns it (changed or not), or ``None`` to drop it.  They run on the
    transport thread: keep them fast, and never call the client from them.  An exception is
    reported as an ``error`` event and the message goes on unchanged.

        class Stamp:
            def outgoing(self, message):
                message.setdefault("ext", {})["sentBy"] = "worker-1"
                return message

        client = CometDClient(url, extensions=[Stamp()])
    """


@attrs.define(repr=False)
class AuthExtension:
    """Adds ``ext`` fields to every ``/meta/handshake`` (e.g. an auth token the server checks).

    ``fields`` may be a mapping or a callable returning one (called at every handshake, so an
    expiring token is fetched afresh).  Values are registered as secrets (never logged).

    >>> ext = AuthExtension({"auth": "s3cret-token"})
    >>> ext.outgoing({"channel": "/meta/handshake"})["ext"]
    {'auth': 's3cret-token'}
    """

    fields: Mapping[str, Any] | Callable[[], Mapping[str, Any]]
    channels: tuple[str, ...] = ("/meta/handshake",)

    def outgoing(self, message: dict[str, Any]) -> dict[str, Any]:
        if message.get("channel") in self.channels:
            fields = self.fields() if callable(self.fields) else self.fields
            register_secrets_in(fields)  # nested too: {"authentication": {"credentials": ...}}
            ext = message.get("ext")
            message["ext"] = {**(ext if isinstance(ext, dict) else {}), **fields}
        return message

    def __repr__(self) -> str:
        return "AuthExtension(***)"


@attrs.define
class AckExtension:
    """CometD's acknowledged-messages extension, as cometd.js' ``AckExtension`` speaks it.

    The handshake asks for it (``ext: {"ack": true}``); a server that has it answers
    ``ext: {"ack": true}``, then delivers data messages **only** in ``/meta/connect`` replies,
    numbered by batch, and keeps each batch until the next connect acknowledges it
    (``ext: {"ack": <last batch>}``).  So messages arrive in order even when several HTTP requests
    are in flight (CometD's ``extensions_acknowledge.adoc``, "Message Ordering"), and a batch lost
    with its connect reply is sent again (at least once).  A server without it ignores the field.

    >>> ack = AckExtension()
    >>> ack.outgoing({"channel": "/meta/handshake"})["ext"]
    {'ack': True}
    >>> _ = ack.incoming({"channel": "/meta/handshake", "successful": True, "ext": {"ack": True}})
    >>> ack.outgoing({"channel": "/meta/connect"})["ext"]
    {'ack': -1}
    >>> _ = ack.incoming({"channel": "/meta/connect", "successful": True, "ext": {"ack": 4}})
    >>> ack.outgoing({"channel": "/meta/connect"})["ext"], ack.server_supports_acks
    ({'ack': 4}, True)
    """

    #: The server answered the handshake with ack support (reset by every handshake).
    server_supports_acks: bool = False
    #: The last batch received, acknowledged by the next ``/meta/connect`` (-1: none yet).
    batch: int = -1

    def outgoing(self, message: dict[str, Any]) -> dict[str, Any]:
        channel = message.get("channel")
        if channel == "/meta/handshake":
            self.server_supports_acks = False
            self.batch = -1
            message["ext"] = {**_ext(message), "ack": True}
        elif channel == "/meta/connect" and self.server_supports_acks:
            message["ext"] = {**_ext(message), "ack": self.batch}
        return message

    def incoming(self, message: dict[str, Any]) -> dict[str, Any]:
        channel = message.get("channel")
        ext = message.get("ext")
        if channel == "/meta/handshake" and isinstance(ext, dict):
            field = ext.get("ack")
            if isinstance(field, dict):  # newer servers: {"enabled": true, "batch": n}
                self.server_supports_acks = field.get("enabled") is True
                if isinstance(field.get("batch"), int):
                    self.batch = field["batch"]
            else:
                self.server_supports_acks = field is True
        elif channel == "/meta/connect" and message.get("successful") is True and self.server_supports_acks:
            if isinstance(ext, dict) and isinstance(ext.get("ack"), int) and not isinstance(ext.get("ack"), bool):
                self.batch = ext["ack"]
        return message


def _ext(message: dict[str, Any]) -> dict[str, Any]:
    ext = message.get("ext")
    return ext if isinstance(ext, dict) else {}


@attrs.frozen
class SessionInfo:
    """Payload of the ``handshake`` event: a new Bayeux session began.

    ``number`` counts sessions since the client started: from 2 on, the previous session was
    lost (server restart, expiry) and messages published meanwhile were not delivered.
    ``transport`` is ``"websocket"`` or ``"long-polling"``.
    """

    number: int
    transport: str


class BayeuxState(str, enum.Enum):
    IDLE = "idle"  #: no connection
    HANDSHAKING = "handshaking"  #: a handshake is in flight, or waiting to be retried
    RESUMING = "resuming"  #: a connect with the old clientId is in flight on a new connection
    CONNECTED = "connected"  #: a session is established on this connection
    DISCONNECTING = "disconnecting"
    STOPPED = "stopped"  #: advice "none": never again


@attrs.define
class Advice:
    """The server's last advice (milliseconds, as on the wire)."""

    reconnect: str | None = None
    interval: float = 0.0
    timeout: float = 60_000.0  # the reference client's default
    max_interval: float = 0.0


@attrs.define
class _Request:
    channel: str
    sent_at: float
    deadline: float | None
    subscription: Subscription | None = None
    data: Any = None  # a publish's data, to report it if it fails


#: The largest advice value (ms) acted on; a larger one is reported and ignored.  Valid JSON
#: can say ``1e999`` (infinity), which neither ``int()`` nor a timer can take: a server number
#: is range-checked before use.
MAX_ADVICE_MS = 3_600_000.0
#: Error events reported one by one per received frame (the rest are counted in one more).
MAX_ERRORS_PER_FRAME = 3


def _out_of_range(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not 0 <= value <= MAX_ADVICE_MS


def _num(value: Any, default: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= MAX_ADVICE_MS:
        return float(value)
    return default


class BayeuxAdapter(Adapter):
    """The Bayeux 1.0 client protocol (see the module docstring).

    Intents (call on the transport thread through ``client._call``): :meth:`subscribe`,
    :meth:`unsubscribe`, :meth:`publish`, :meth:`add_extension`.

    >>> a = BayeuxAdapter()
    >>> a.transport_kind = "websocket"
    >>> a.connection_made(0.0)
    >>> a.data_to_send()[0][:60]
    '[{"channel":"/meta/handshake","version":"1.0","minimumVersio'
    """

    name = "bayeux"
    has_heartbeat = True
    # A hub holds thousands of sessions: this class's own state in slots (the base's stays in
    # the instance dictionary, now small enough for Python to share its keys between instances).
    __slots__ = (
        "_advice_seen",
        "_connect_echo",
        "_connect_id",
        "_ids",
        "_last_contact",
        "_next_connect_at",
        "_next_handshake_at",
        "_publishes",
        "_requests",
        "_route_cache",
        "_session_ready",
        "_unconnected_since",
        "advice",
        "client_id",
        "decoder",
        "extensions",
        "handshake_fields",
        "max_network_delay",
        "sessions",
        "state",
        "transport_hint",
    )

    @classmethod
    def default_backoff_policy(cls) -> ReconnectPolicy:
        """The reference client's: +1 s per consecutive failure, at most 60 s, no jitter."""
        return ReconnectPolicy(
            instant_retries=0, interval=1.0, step=1.0, max_interval=60.0, jitter=0.0, restart_jitter=0.0
        )

    def __init__(
        self,
        *,
        decoder: Decoder | None = None,
        extensions: Iterable[Any] = (),
        max_network_delay: float = 10.0,
        handshake_fields: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.decoder: Decoder = decoder or default_decoder
        self.extensions: list[Any] = list(extensions)
        self.max_network_delay = max_network_delay
        self.handshake_fields = dict(handshake_fields or {})
        #: Set by the transport before connection_made: "websocket" or "long-polling".
        self.transport_kind = "websocket"
        #: A transport the server prefers over the current one (read by the connection factory).
        self.transport_hint: str | None = None
        self.state = BayeuxState.IDLE
        self.client_id: str | None = None
        self.advice = Advice()
        self.sessions = 0
        self._ids = 0
        self._requests: dict[str, _Request] = {}
        self._connect_id: str | None = None
        self._next_connect_at: float | None = None
        self._next_handshake_at: float | None = None
        self._last_contact: float | None = None  # last message of any kind from the server
        self._unconnected_since: float | None = None
        self._session_ready = False  # subscribes/publishes may be sent
        self._publishes: list[tuple[str, Any]] = []
        self._route_cache: dict[str, Subscription | None] = {}
        self._advice_seen: dict[str, Any] | None = None  # the last advice taken (each connect repeats it)
        self._connect_echo: tuple[str, str] | None = None  # see _remember_echo

    @property
    def ready(self) -> bool:
        """A session is established on this connection."""
        return self.connected and self._session_ready

    # -- intents --------------------------------------------------------------------------

    def subscribe(self, channel: str, now: float) -> None:
        sub = Subscription("channel", channel)
        if self.subscriptions.add(sub, channel):
            self._route_cache.clear()
            if self._session_ready:
                self._send_subscribes([sub], now)

    def unsubscribe(self, channel: str, now: float) -> None:
        sub = Subscription("channel", channel)
        entry = self.subscriptions.entry(sub)
        if entry is None:
            return
        self.subscriptions.discard(sub)
        self._route_cache.clear()
        for req in self._requests.values():
            if req.subscription == sub and req.channel == "/meta/subscribe":
                req.subscription = None  # a late reply must not resurrect it
        if self._session_ready:
            self._send_messages([self._message("/meta/unsubscribe", now, subscription=channel)], now)

    def publish(self, channel: str, data: Any, now: float) -> None:
        if self.state is BayeuxState.STOPPED:
            self._fail_publish(None, channel, data, "not sent: the server told the client to stop", now)
            return
        if self._session_ready:
            self._send_messages([self._publish_message(channel, data, now)], now)
            return
        # Held until a session exists, like the reference client's internal batch.
        self._publishes.append((channel, data))
        if len(self._publishes) > _MAX_QUEUED_PUBLISHES:
            dropped = self._publishes.pop(0)
            self._error("overflow", f"publish queue full: dropped the oldest publish to {dropped[0]!r}", now)

    def add_extension(self, extension: Any, now: float = 0.0) -> None:
        self.extensions.append(extension)

    def remove_extension(self, extension: Any, now: float = 0.0) -> None:
        if extension in self.extensions:
            self.extensions.remove(extension)

    # -- transport hooks ------------------------------------------------------------------

    def connection_made(self, now: float) -> None:
        # Deliberately not super(): subscriptions survive a connection when the session does.
        self.connected = True
        self._close = None  # a request left over from the previous connection is moot
        self._connect_echo = None
        self._requests.clear()
        self._connect_id = None
        self._next_connect_at = None
        self._next_handshake_at = None
        self._session_ready = False
        if self.state is BayeuxState.STOPPED:
            self._request_close("the server advised not to reconnect", reconnect=False)
            return
        if self.client_id is not None and self._session_may_live(now):
            self.state = BayeuxState.RESUMING
            self._send_connect(now, first=True)
        else:
            self._handshake(now)

    def connection_lost(self, now: float, reason: str = "") -> None:
        self.connected = False
        if self.state is BayeuxState.DISCONNECTING:
            unconfirmed = [r.channel for r in self._requests.values() if not r.channel.startswith(_META)]
            if unconfirmed:
                # cometd.js' disconnect() waits for these replies; ours are most likely sent.
                log.info("closed with %d publish(es) unconfirmed: %s", len(unconfirmed), unconfirmed[:5])
        else:
            self._fail_publishes(f"its request failed ({reason or 'connection lost'})", now)
        self._requests.clear()
        self._connect_id = None
        self._next_connect_at = None
        self._next_handshake_at = None
        self._session_ready = False
        if self.state is not BayeuxState.STOPPED:
            self.state = BayeuxState.IDLE
        if self._unconnected_since is None:
            self._unconnected_since = now

    def start_closing(self, now: float) -> None:
        if self.connected and self.client_id is not None and self.state is BayeuxState.CONNECTED:
            self._send_messages([self._message("/meta/disconnect", now)], now)
        self._fail_queued_publishes("not sent: the client closed before a session existed", now)
        self.state = BayeuxState.DISCONNECTING
        self._next_connect_at = None
        self._next_handshake_at = None

    def resume_reading(self, now: float) -> None:
        # A reply may have been among the unread frames: the reply deadlines move on by the
        # time reading was paused.
        paused = self.paused_for(now)
        super().resume_reading(now)
        for req in self._requests.values():
            if req.deadline is not None:
                req.deadline += paused

    def next_deadline(self) -> float | None:
        best: float | None = None
        for t in (self._next_connect_at, self._next_handshake_at):
            if t is not None and (best is None or t < best):
                best = t
        if self.paused_at is None:  # reply deadlines wait while reading is paused
            for req in self._requests.values():
                if req.deadline is not None and (best is None or req.deadline < best):
                    best = req.deadline
        return best

    def handle_timer(self, now: float) -> None:
        for rid, req in list(self._requests.items()) if self.paused_at is None else ():
            if req.deadline is not None and req.deadline <= now:
                waited = now - req.sent_at
                self._requests.pop(rid, None)
                if req.channel == "/meta/disconnect":
                    self._request_close("no reply to /meta/disconnect", reconnect=False)
                    continue
                if not req.channel.startswith(_META):
                    self._fail_publish(rid, req.channel, req.data, f"no reply within {waited:.1f}s", now)
                log.warning("no reply to %s within %.1fs: the connection is presumed dead", req.channel, waited)
                self._request_close(
                    f"no reply to {req.channel} within {waited:.1f}s: connection presumed dead", delay=None, code=1001
                )
                return
        if self._next_handshake_at is not None and self._next_handshake_at <= now:
            self._next_handshake_at = None
            self._handshake(now)
        if self._next_connect_at is not None and self._next_connect_at <= now:
            self._next_connect_at = None
            if self.state is BayeuxState.CONNECTED and self._connect_id is None:
                self._send_connect(now)

    # -- receiving ------------------------------------------------------------------------

    def receive_text(self, text: str, now: float) -> None:
        echo = self._connect_echo
        rid = self._connect_id
        if (
            echo is not None
            and rid is not None
            and self.state is BayeuxState.CONNECTED
            and not self.extensions
            and self._echoes(echo, rid, text)
        ):
            self._connect_confirmed_again(rid, now)
            return
        decoded = self._decode(text, now)
        if decoded is BAD:
            return
        self._connect_echo = None
        if isinstance(decoded, dict):
            messages: Sequence[Any] = (decoded,)
        elif isinstance(decoded, list):
            messages = decoded
        else:
            self._bad_frame(f"expected a JSON array of messages, got {type(decoded).__name__}", text, now, raw=decoded)
            return
        # A frame of thousands of bad elements must cost linear work and a bounded number of
        # error events: the first MAX_ERRORS_PER_FRAME are reported, the rest summed up in one.
        reported = suppressed = 0
        for message in messages:
            mark = len(self._events)
            if not isinstance(message, dict):
                self._bad_frame(
                    f"a Bayeux message must be an object, got {type(message).__name__}", message, now, raw=message
                )
            else:
                try:
                    self._receive_message(message, now)
                except ProtocolError as exc:
                    self._bad_frame(str(exc), message, now, raw=message, exc=exc)
            if len(self._events) > mark:
                new = self._events[mark:]
                errors = sum(1 for e in new if e.name == "error")
                if errors and reported + errors > MAX_ERRORS_PER_FRAME:
                    del self._events[mark:]
                    self._events.extend(e for e in new if e.name != "error")
                    suppressed += errors
                else:
                    reported += errors
        if suppressed:
            self._bad_frame(
                f"{suppressed} more bad message(s) in this frame of {len(messages)} not reported one by one",
                None,
                now,
            )
        if (
            rid is not None
            and len(messages) == 1
            and self._connect_id is None
            and not self._events
            and self._close is None
            and self.state is BayeuxState.CONNECTED
            and not self.extensions
        ):
            self._remember_echo(messages[0], rid, text)
        self._send_due_connect(now)

    # An idle session's whole traffic is one held /meta/connect per advice.timeout, answered by
    # the same reply each time ({"id":<ours>,"channel":"/meta/connect","successful":true,
    # "advice":{...}}): the text of the last such reply is kept with its id cut out, and a reply
    # that is that text again around the id of the connect in flight is taken without decoding
    # it (measured: a third of the adapter's time per held connect on a hub of idle sessions).
    # Only when nothing could differ: no extensions (they may change any message), a connected
    # session, a reply that was alone in its frame, successful, and produced no event.

    def _remember_echo(self, message: Any, rid: str, text: str) -> None:
        if (
            isinstance(message, dict)
            and message.get("channel") == "/meta/connect"
            and message.get("id") == rid
            and message.get("successful") is True
            and (message.get("advice") is None or message.get("advice") == self._advice_seen)
        ):
            needle = f'"{rid}"'
            at = text.find(needle)
            if at >= 0 and text.find(needle, at + 1) < 0:  # the id, and nowhere else
                self._connect_echo = (text[: at + 1], text[at + 1 + len(rid) :])

    @staticmethod
    def _echoes(echo: tuple[str, str], rid: str, text: str) -> bool:
        head, tail = echo
        return (
            len(text) == len(head) + len(rid) + len(tail)
            and text.startswith(head)
            and text.endswith(tail)
            and text.startswith(rid, len(head))
        )

    def _connect_confirmed_again(self, rid: str, now: float) -> None:
        """What :meth:`_receive_message` and :meth:`_on_connect_reply` do with that reply."""
        self._last_contact = now
        self._requests.pop(rid, None)
        self._connect_id = None
        self.backoff.succeeded()
        self._unconnected_since = None
        self._next_connect_at = now + self.advice.interval / 1000.0
        self._send_due_connect(now)

    def _send_due_connect(self, now: float) -> None:
        due = self._next_connect_at
        if due is not None and due <= now and self.state is BayeuxState.CONNECTED and self._connect_id is None:
            # Due already (advice interval 0, the usual): the next connect goes now, once the
            # whole frame is read, as handle_timer would send it, without the engine's timer
            # trip (one more loop step per held connect: a hub of idle sessions does little else).
            self._next_connect_at = None
            self._send_connect(now)

    def _receive_message(self, message: dict[str, Any], now: float) -> None:
        message = self._run_extensions("incoming", message, now)  # type: ignore[assignment]
        if message is None:
            return
        channel = message.get("channel")
        if not isinstance(channel, str):
            raise ProtocolError(f"message without a string 'channel': {truncate(message, 200)}")
        self._last_contact = now
        advice = message.get("advice")
        if advice is not None:
            self._update_advice(advice, now, message)
        successful = message.get("successful")
        if successful is not None and not isinstance(successful, bool):
            raise ProtocolError(f"'successful' must be a boolean, got {type(successful).__name__}")
        rid = message.get("id")
        if isinstance(rid, int) and not isinstance(rid, bool):
            rid = str(rid)  # ids are strings; tolerate a server that echoes numbers
        if channel.startswith(_META):
            req = self._requests.get(rid) if isinstance(rid, str) else None
            if channel == "/meta/disconnect" and req is None and successful is not False and self.client_id:
                # The server ended the session itself ({"channel":"/meta/disconnect","successful":
                # true}, no id): cometd.js then stops (_disconnect), it does not handshake again.
                self.client_id = None
                self._stop("the server ended the CometD session (/meta/disconnect)", message, now)
                return
            if req is None or req.channel != channel or successful is None:
                log.debug("ignoring an unmatched %s reply (id %r)", channel, rid)
                return
            del self._requests[rid]  # type: ignore[arg-type]
            if channel == "/meta/connect":
                self._on_connect_reply(rid, message, successful, now)  # type: ignore[arg-type]
            elif channel == "/meta/handshake":
                self._on_handshake_reply(message, successful, now)
            elif channel == "/meta/subscribe":
                self._on_subscribe_reply(req, message, successful, now)
            elif channel == "/meta/unsubscribe":
                if not successful:
                    self._server_error(f"unsubscribe from {message.get('subscription')!r} failed", message, now)
            elif channel == "/meta/disconnect":
                self.client_id = None
                self._request_close("disconnected", reconnect=False)
            return
        if successful is not None:
            req = self._requests.get(rid) if isinstance(rid, str) else None
            if req is not None and req.channel == channel:
                del self._requests[rid]  # type: ignore[arg-type]
                if not successful:
                    error = message.get("error")
                    refusal = f"refused by the server: {error}" if error is not None else "refused by the server"
                    self._fail_publish(rid, channel, req.data, refusal, now)  # type: ignore[arg-type]
                if "data" not in message:
                    return
        if "data" in message:
            self._on_data(channel, message, now)

    # -- replies --------------------------------------------------------------------------

    def _on_handshake_reply(self, message: dict[str, Any], successful: bool, now: float) -> None:
        if successful:
            client_id = message.get("clientId")
            if not isinstance(client_id, str) or not client_id:
                raise ProtocolError("successful handshake without a clientId")
            if "advice" not in message:
                self.advice.reconnect = None  # an old "handshake" advice is obeyed now
                self._advice_seen = None  # (and the next advice is taken, even if the same again)
            if self.advice.reconnect == "none":
                self._stop("the server advised not to reconnect (handshake reply)", message, now)
                return
            types = message.get("supportedConnectionTypes")
            if isinstance(types, list) and types and self.transport_kind not in types:
                other = next((t for t in CONNECTION_TYPES if t in types), None)
                if other is not None:
                    # The server does not do this transport (e.g. GWS 8.5: no websocket).
                    self.transport_hint = other
                    self._request_close(f"the server supports {types}, not {self.transport_kind}: switching", delay=0.0)
                    return
            self.client_id = client_id
            self.sessions += 1
            self.backoff.succeeded()
            self._unconnected_since = None
            self.state = BayeuxState.CONNECTED
            self.subscriptions.reset()
            self._route_cache.clear()
            self._emit("handshake", now, SessionInfo(self.sessions, self.transport_kind))
            self._session_established(now)
            self._send_connect(now, first=True)
            return
        error = message.get("error")
        code = str(error).split(":", 1)[0] if error is not None else ""
        # A handshake is the one place a 401/403 means credentials (faye also uses 401 for an
        # unknown client, but only on the other meta channels).
        auth = code in ("401", "403")
        if self.advice.reconnect == "none":
            self._stop(f"handshake refused: {error}", message, now, kind="auth" if auth else "server")
            return
        if auth:
            self._error("auth", f"handshake refused: {error}", now, raw=message)
            self._request_close(f"handshake refused: {error}", auth=True)
            return
        self._server_error("handshake refused", message, now)
        delay = self.advice.interval / 1000.0 + self.backoff.pending_delay()
        self.backoff.fail("handshake refused")
        self.state = BayeuxState.HANDSHAKING
        self._next_handshake_at = now + delay

    def _on_connect_reply(self, rid: str, message: dict[str, Any], successful: bool, now: float) -> None:
        if rid != self._connect_id:
            return
        self._connect_id = None
        if self.state is BayeuxState.DISCONNECTING:
            return
        action = self.advice.reconnect or "retry"
        if action == "none":
            self._stop(f"the server advised not to reconnect: {message.get('error') or 'advice none'}", message, now)
            return
        if successful:
            self.backoff.succeeded()
            self._unconnected_since = None
            if action == "handshake":
                self._session_lost(now, message)
                return
            if self.state is BayeuxState.RESUMING:
                self.state = BayeuxState.CONNECTED
                self._session_established(now)
            self._next_connect_at = now + self.advice.interval / 1000.0
            return
        if self._unconnected_since is None:
            self._unconnected_since = now
        if action == "handshake":
            self._session_lost(now, message)
            return
        # retry: back off, and give up the session when it has certainly expired server-side
        delay = self.backoff.fail("connect failed")
        adv = self.advice
        if adv.max_interval > 0:
            expiration = (adv.timeout + adv.interval + adv.max_interval) / 1000.0
            if now - self._unconnected_since + delay > expiration:
                self._session_lost(now, message)
                return
        self._server_error("connect failed", message, now, level=logging.INFO)
        self._next_connect_at = now + adv.interval / 1000.0 + delay

    def _on_subscribe_reply(self, req: _Request, message: dict[str, Any], successful: bool, now: float) -> None:
        sub = req.subscription
        if sub is None or sub not in self.subscriptions:
            return
        if successful:
            self._subscribed(sub, now)
            return
        advice = message.get("advice")
        if isinstance(advice, dict) and advice.get("reconnect") == "handshake":
            return  # the session is gone; _update_advice scheduled a handshake that resubscribes
        error = message.get("error")
        self._rejected(sub, str(error) if error is not None else "subscription refused", now)

    def _on_data(self, channel: str, message: dict[str, Any], now: float) -> None:
        sub = self._route(channel)
        problem: str | None = None
        try:
            decoded = self.decoder(channel, message["data"])
            if len(decoded) == 4:
                # (name, data, entity_id, decode_error): delivered, and the mismatch reported.
                name, data, entity_id, problem = decoded  # type: ignore[misc]
            else:
                name, data, entity_id = decoded
        except ProtocolError as exc:
            self._bad_frame(str(exc), message, now, raw=message, exc=exc)
            return
        except Exception as exc:  # a decoder bug must not lose the next messages
            self._bad_frame(
                f"cannot decode message on {channel!r}: {type(exc).__name__}: {exc}", message, now, raw=message
            )
            return
        self._emit_decoded(name, now, data, problem, entity_id=entity_id, raw=message, subscription=sub)

    def _route(self, channel: str) -> Subscription | None:
        try:
            return self._route_cache[channel]
        except KeyError:
            pass
        found = None
        for sub in self.subscriptions:
            if channel_matches(str(sub.key), channel):
                found = sub
                break
        if len(self._route_cache) > 4096:
            self._route_cache.clear()
        self._route_cache[channel] = found
        return found

    # -- advice ---------------------------------------------------------------------------

    def _update_advice(self, advice: Any, now: float, message: dict[str, Any]) -> None:
        if not isinstance(advice, dict):
            # Reported, but the message itself is still processed (a lost connect reply would
            # otherwise look like a dead connection).
            self._bad_frame(f"'advice' must be an object, got {type(advice).__name__}", message, now, raw=message)
            return
        if advice != self._advice_seen:  # else: the same advice again (every connect reply)
            reconnect = advice.get("reconnect")
            bad = [k for k in ("interval", "timeout", "maxInterval") if _out_of_range(advice.get(k))]
            if bad:
                self._bad_frame(
                    f"advice {', '.join(bad)} out of range (0..{MAX_ADVICE_MS:.0f} ms): ignored",
                    message,
                    now,
                    raw=message,
                )
            defaults = Advice()
            self.advice = Advice(
                reconnect if reconnect in ("retry", "handshake", "none") else None,
                _num(advice.get("interval"), defaults.interval),
                _num(advice.get("timeout"), defaults.timeout),
                _num(advice.get("maxInterval"), defaults.max_interval),
            )
            self._advice_seen = None if bad else advice
        channel = message.get("channel")
        # Advice on a reply other than connect/handshake (e.g. a subscribe refused because the
        # session expired) is acted on at once: no connect reply may come to act on it.
        if channel not in ("/meta/connect", "/meta/handshake") and self.state is BayeuxState.CONNECTED:
            if self.advice.reconnect == "handshake":
                self._session_lost(now, message)
            elif self.advice.reconnect == "none":
                self._stop("the server advised not to reconnect", message, now)

    # -- actions --------------------------------------------------------------------------

    def _handshake(self, now: float) -> None:
        self._connect_echo = None
        self.client_id = None
        self._session_ready = False
        self._connect_id = None
        self._next_connect_at = None
        self.state = BayeuxState.HANDSHAKING
        msg: dict[str, Any] = {
            "channel": "/meta/handshake",
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": [self.transport_kind],
            "advice": {"timeout": int(self.advice.timeout), "interval": int(self.advice.interval)},
        }
        msg.update(self.handshake_fields)
        self._send_messages([self._with_id(msg, now, self.max_network_delay)], now)

    def _send_connect(self, now: float, *, first: bool = False) -> None:
        msg: dict[str, Any] = {
            "channel": "/meta/connect",
            "clientId": self.client_id,
            "connectionType": self.transport_kind,
        }
        if first:
            # Returns at once: confirms the session without waiting a whole hold period.
            msg["advice"] = {"timeout": 0}
            hold = 0.0
        else:
            hold = self.advice.timeout / 1000.0
        msg = self._with_id(msg, now, hold + self.max_network_delay)
        self._connect_id = msg["id"]
        self._send_messages([msg], now, held=True)

    def _session_established(self, now: float) -> None:
        self._session_ready = True
        pending = [e.subscription for e in self.subscriptions.pending() if not self._in_flight(e.subscription)]
        if pending:
            self._send_subscribes(pending, now)
        if self._publishes:
            queued, self._publishes = self._publishes, []
            self._send_messages([self._publish_message(ch, data, now) for ch, data in queued], now)

    def _in_flight(self, sub: Subscription) -> bool:
        return any(r.subscription == sub for r in self._requests.values())

    def _send_subscribes(self, subs: list[Subscription], now: float) -> None:
        msgs = []
        for sub in subs:
            msgs.append(self._message("/meta/subscribe", now, subscription=str(sub.key), _sub=sub))
            self.subscriptions.mark_sent(sub, now)
        self._send_messages(msgs, now)

    def _session_lost(self, now: float, message: dict[str, Any]) -> None:
        error = message.get("error")
        log.info("Bayeux session gone (%s): handshaking again", redact(str(error or "advice: handshake")))
        self.client_id = None
        self._session_ready = False
        self._connect_id = None
        for rid, req in list(self._requests.items()):
            # A publish in flight keeps its request: its reply (often the refusal that ended the
            # session) is still to come, and is reported.
            if req.channel.startswith(_META) and req.channel != "/meta/handshake":
                del self._requests[rid]
        self.subscriptions.reset()
        self.backoff.succeeded()
        self.state = BayeuxState.HANDSHAKING
        self._next_connect_at = None
        # The server ended the session of every client at once: spread the handshakes.
        self._next_handshake_at = now + self.backoff.current.restart_delay(self.advice.interval / 1000.0)

    def _stop(self, reason: str, message: dict[str, Any], now: float, kind: str = "server") -> None:
        self._error(kind, reason, now, raw=message)
        self._fail_publishes(f"not confirmed: {reason}", now)
        self._fail_queued_publishes(f"not sent: {reason}", now)
        self.state = BayeuxState.STOPPED
        self._session_ready = False
        self._next_connect_at = None
        self._next_handshake_at = None
        self._requests.clear()
        self._request_close(reason, reconnect=False, auth=kind == "auth")

    def _server_error(self, what: str, message: dict[str, Any], now: float, level: int = logging.WARNING) -> None:
        error = message.get("error")
        text = f"{what}: {error}" if error is not None else what
        self._error("server", text, now, raw=message, level=level)  # logged there

    def _session_may_live(self, now: float) -> bool:
        if self._last_contact is None:
            return False
        adv = self.advice
        # The server keeps a silent session for timeout + interval + maxInterval (CometD's
        # default maxInterval is 10 s when the server does not advise one).
        ttl = (adv.timeout + adv.interval + (adv.max_interval or 10_000.0)) / 1000.0
        return now - self._last_contact <= ttl

    # -- failed publishes ---------------------------------------------------------------

    def _fail_publish(self, rid: str | None, channel: str, data: Any, why: str, now: float) -> None:
        """One ``error`` event of kind ``publish`` (see the module docstring); the data is in
        ``raw`` only (events are redacted), never in a log line."""
        what = f"publish to {channel!r}" + (f" (id {rid})" if rid is not None else "")
        text = f"{what} failed: {why}; not re-sent (as CometD's clients do): publish it again if it must arrive"
        log.warning("%s", redact(f"{what} failed: {why}"))
        info = ErrorInfo("publish", redact(text))
        self._emit("error", now, info, entity_id=channel, raw={"id": rid, "channel": channel, "data": data})

    def _fail_publishes(self, why: str, now: float) -> None:
        """Report every publish still waiting for its reply, and forget it."""
        for rid, req in list(self._requests.items()):
            if not req.channel.startswith(_META):
                del self._requests[rid]
                self._fail_publish(rid, req.channel, req.data, why, now)

    def _fail_queued_publishes(self, why: str, now: float) -> None:
        queued, self._publishes = self._publishes, []
        for channel, data in queued:
            self._fail_publish(None, channel, data, why, now)

    # -- sending --------------------------------------------------------------------------

    def _publish_message(self, channel: str, data: Any, now: float) -> dict[str, Any]:
        msg = self._message(channel, now, data=data)
        self._requests[msg["id"]].data = data
        return msg

    def _message(self, channel: str, now: float, _sub: Subscription | None = None, **fields: Any) -> dict[str, Any]:
        msg: dict[str, Any] = {"channel": channel, **fields, "clientId": self.client_id}
        return self._with_id(msg, now, self.max_network_delay, _sub)

    def _with_id(
        self, msg: dict[str, Any], now: float, allowance: float, sub: Subscription | None = None
    ) -> dict[str, Any]:
        self._ids += 1
        rid = str(self._ids)
        msg["id"] = rid
        self._requests[rid] = _Request(msg["channel"], now, now + allowance, sub)
        return msg

    def _send_messages(self, messages: list[dict[str, Any]], now: float, *, held: bool = False) -> None:
        """Queue ``messages`` as one frame; ``held``: the server holds it (a ``/meta/connect``),
        so a long-polling connection gives it an HTTP request of its own."""
        out = []
        for m in messages:
            m2 = self._run_extensions("outgoing", m, now)
            if m2 is None:
                self._requests.pop(m.get("id"), None)  # type: ignore[arg-type]
                if m.get("id") == self._connect_id:
                    self._connect_id = None
                continue
            out.append(m2)
        if out:
            if held:
                self._frames.append(HeldFrame(dumps(out)))
            elif all(_safe_to_repeat(m) for m in out):
                self._frames.append(IdempotentFrame(dumps(out)))
            else:
                self._send(out)

    def _run_extensions(self, direction: str, message: dict[str, Any], now: float) -> dict[str, Any] | None:
        for ext in self.extensions:
            fn = getattr(ext, direction, None)
            if fn is None:
                continue
            try:
                result = fn(message)
            except Exception as exc:
                log.error("Bayeux extension %r failed on an %s message", ext, direction, exc_info=True)
                self._error(
                    "handler",
                    f"extension {type(ext).__name__}.{direction} raised {type(exc).__name__}: {exc}",
                    now,
                    exc=exc,
                )
                continue
            if result is None:
                return None
            if isinstance(result, dict):
                message = result
        return message
