"""Sans-I/O adapter for Voxsig (Chatwoot-style) real-time events over ActionCable.

One subscription to ``RoomChannel`` carries everything.  Its identifier is the seed's
``{"channel":"RoomChannel","pubsub_token":..,"account_id":..,"user_id":..}``, serialised once;
without ``user_id`` the token is a contact's.  Broadcasts are ``{"event": name, "data": {...}}``
and become events under their wire names (``message.created``, ``notification.created``...),
with typed data (:mod:`realtime_sync.models.voxsig`) and ``entity_id`` per the table below.
Unknown names (forks add their own) pass through with the decoded data.

Presence: Chatwoot's ``RoomChannel#subscribed`` records the user's presence itself (and
broadcasts ``presence.update``), so the confirmation *is* the first presence: the adapter sends
``update_presence`` one ``presence_interval`` after each confirmation (a reconnect means a new
confirmation, so the cadence restarts), then every ``presence_interval`` seconds while the
subscription stays confirmed.  Chatwoot keeps an agent online for only 20 s after each
(``OnlineStatusTracker::PRESENCE_DURATION``; older versions 60 s) and its dashboard repeats every
20 s, so the default is 15 s: at most 20 s, with room for latency.

Accounts: a user's pubsub token is the user's, not an account's, so an agent in several accounts
receives every account's broadcasts on one stream, with conversation "ids" (display ids) that
repeat across accounts.  Like Chatwoot's dashboard (``isAValidEvent``), an agent's adapter drops
broadcasts whose ``data.account_id`` is not its ``account_id``; ``all_accounts=True`` keeps them,
and then ``entity_id`` is ``(account_id, id)`` so that ids of different accounts never collide.
Every Voxsig event carries ``event.account_id``.

==========================================  =================  =====================================
event names                                 data               entity_id
==========================================  =================  =====================================
conversation.created/read/updated/          Conversation       conversation id
status_changed/contact_changed/mentioned,
assignee.changed, team.changed
conversation.typing_on/typing_off           TypingEvent        conversation id
message.created/updated, first.reply.created Message           ``data.conversation_id``
contact.created/updated/deleted/merged      Contact            contact id
notification.created/updated/deleted        NotificationEvent  notification id
presence.update                             Presence           account id
account.cache_invalidated                   CacheInvalidated   account id
copilot.message.created                     CopilotMessage     copilot thread id
anything else                               decoded JSON       None
==========================================  =================  =====================================

With ``all_accounts=True`` every non-None ``entity_id`` above is ``(account_id, id)`` instead
(presence and cache events: ``(account_id, account_id)``).

Catch-up (opt-in, ``catch_up_hook``): ActionCable keeps no history, so after every *re*-connect,
once the room subscription is confirmed, the adapter calls ``catch_up_hook(generation,
(disconnected_at, last_message_ids))`` (the facade fetches Chatwoot's REST API on its own thread,
the thread of the Jifeline gap recovery) and holds live broadcasts back until
:meth:`VoxsigAdapter.finish_catch_up` hands the fetched ``(name, data)`` pairs over, or
``catch_up_timeout`` passes.  The fetched ones are emitted first with ``event.recovered=True``,
then the held live ones; a ``message.created`` id is delivered at most once (a bounded window of
``dedupe_window`` ids).  A failed fetch is an ``error`` event of kind ``"catch_up"``; held live
events are released either way.

Catch-up from a stored point (``resume``, a :class:`VoxsigResumePoint`): a process that takes a
connection over from another (listener replicas, ``realtime_sync.contrib.redis_replicas``) knows
nothing of what was delivered before, so the *first* confirmation starts a catch-up too, from the
point the previous owner stored: the wall time ``at`` up to which it delivered, and the ids of
the newest ``message.created`` it delivered.  Messages with a larger id than the smallest of
those are fetched (Chatwoot's message ids grow with creation), those ids are skipped (never
delivered twice), and the rest goes first, as after a reconnect.
"""

from __future__ import annotations

import json
import logging
import operator
from collections import OrderedDict
from typing import Any, Callable, Union

import attrs

from .._json import dumps
from .._redact import redact, register_secret
from .._validate import secret_text
from ..events import ErrorInfo, Subscription, build_event
from ..exceptions import ConfigurationError, TokenError
from ..models._converter import read_int
from ..models.voxsig import (
    CacheInvalidated,
    Contact,
    Conversation,
    CopilotMessage,
    Message,
    NotificationEvent,
    Presence,
    TypingEvent,
    decode_payload,
    structure_hook,
)
from .actioncable import KIND, ActionCableAdapter, serialize_identifier
from .base import ConnectRequest, SubState

__all__ = [
    "EVENT_TYPES",
    "PRESENCE_INTERVAL",
    "VoxsigAdapter",
    "VoxsigResumePoint",
    "register_pubsub_token",
    "room_identifier",
]

log = logging.getLogger("realtime_sync.voxsig")

_Spec = tuple[type, Callable[[Any], Any]]


_conversation_id: Callable[[Conversation], Any] = operator.attrgetter("id")


_message_conversation_id: Callable[[Message], Any] = operator.attrgetter("conversation_id")


def _typing_conversation_id(t: TypingEvent) -> Any:
    return None if t.conversation is None else t.conversation.id


_contact_id: Callable[[Contact], Any] = operator.attrgetter("id")


def _notification_id(n: NotificationEvent) -> Any:
    return None if n.notification is None else n.notification.id


def _account_id(p: Presence | CacheInvalidated) -> Any:
    return p.account_id


def _copilot_thread_id(m: CopilotMessage) -> Any:
    return None if m.copilot_thread is None else m.copilot_thread.id


_CONVERSATION: _Spec = (Conversation, _conversation_id)
_MESSAGE: _Spec = (Message, _message_conversation_id)
_TYPING: _Spec = (TypingEvent, _typing_conversation_id)
_CONTACT: _Spec = (Contact, _contact_id)
_NOTIFICATION: _Spec = (NotificationEvent, _notification_id)

#: Known wire event names -> (model class, entity id getter).
EVENT_TYPES: dict[str, _Spec] = {
    "conversation.created": _CONVERSATION,
    "conversation.read": _CONVERSATION,
    "conversation.updated": _CONVERSATION,
    "conversation.status_changed": _CONVERSATION,
    "conversation.contact_changed": _CONVERSATION,
    "conversation.mentioned": _CONVERSATION,
    "assignee.changed": _CONVERSATION,
    "team.changed": _CONVERSATION,
    "conversation.typing_on": _TYPING,
    "conversation.typing_off": _TYPING,
    "message.created": _MESSAGE,
    "message.updated": _MESSAGE,
    "first.reply.created": _MESSAGE,
    "contact.created": _CONTACT,
    "contact.updated": _CONTACT,
    "contact.deleted": _CONTACT,
    "contact.merged": _CONTACT,
    "notification.created": _NOTIFICATION,
    "notification.updated": _NOTIFICATION,
    "notification.deleted": _NOTIFICATION,
    "presence.update": (Presence, _account_id),
    "account.cache_invalidated": (CacheInvalidated, _account_id),
    "copilot.message.created": (CopilotMessage, _copilot_thread_id),
}

#: Event name -> (model class, entity id getter, payload decoder): EVENT_TYPES with each
#: class's hooks looked up once, filled as names are seen.
_specs: dict[str, tuple[type, Callable[[Any], Any], Callable[[Any, Any], Any]]] = {}

#: The default seconds between ``update_presence`` calls: Chatwoot keeps an agent online 20 s.
PRESENCE_INTERVAL = 15.0

PubsubToken = Union[str, Callable[[], str]]


@attrs.frozen
class VoxsigResumePoint:
    """Where a Voxsig catch-up starts in a process that did not deliver the earlier events.

    ``at``: wall time (Unix seconds) up to which events were delivered (the receipt time of the
    last live event handed on); conversations updated since ``at - overlap`` are fetched.
    ``delivered``: ids of the newest ``message.created`` delivered (a bounded set, the largest
    ids): messages above the smallest of them are fetched, these ones are skipped.  Stored as
    JSON (:meth:`to_json`, :meth:`from_json`) by :mod:`realtime_sync.contrib.redis_replicas`.

    >>> p = VoxsigResumePoint(1764000000.5, (7, 9))
    >>> p.to_json(), VoxsigResumePoint.from_json(p.to_json()) == p
    ('{"voxsig":1,"at":1764000000.5,"delivered":[7,9]}', True)
    >>> VoxsigResumePoint.from_json("01J8XYZ") is None    # not a Voxsig point (a Jifeline event id)
    True
    """

    at: float
    delivered: tuple[int, ...] = attrs.field(default=(), converter=lambda ids: tuple(sorted(set(ids))))

    def to_json(self) -> str:
        return json.dumps({"voxsig": 1, "at": self.at, "delivered": list(self.delivered)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes | None) -> VoxsigResumePoint | None:
        """The point stored in ``text``; None when ``text`` is not one."""
        if not text:
            return None
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        if not isinstance(doc, dict) or doc.get("voxsig") != 1:
            return None
        at = doc.get("at")
        ids = doc.get("delivered") or []
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not isinstance(ids, list):
            return None
        return cls(float(at), tuple(i for i in ids if isinstance(i, int) and not isinstance(i, bool)))


def _rails_json(value: str) -> str:
    # ActiveSupport::JSON escapes these too (so frames echoed by a Rails server carry them so).
    out = json.dumps(value)[1:-1]
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        out = out.replace(ch, esc)
    return out


_ENCODINGS: tuple[Callable[[str], str], ...] = (
    lambda v: dumps(v)[1:-1],  # our JSON (non-ASCII kept)
    lambda v: json.dumps(v)[1:-1],  # ASCII-only JSON
    _rails_json,
    lambda v: repr(v)[1:-1],  # a Python repr of a string holding it
    lambda v: repr(v + "'\"")[1:-4],  # ... of a string holding both quote kinds (a frame)
)


def secret_forms(token: str, depth: int = 3) -> set[str]:
    """Every way ``token`` can be spelled in a log line or a repr: as is, JSON-escaped once (in an
    identifier), twice (an identifier inside a frame), three times, and Python-repr'd at each level.

    >>> sorted(secret_forms('ab"cdefgh', depth=1))
    ['ab"cdefgh', 'ab\\\\"cdefgh']
    """
    forms = {token}
    frontier = {token}
    for _ in range(depth):
        nxt = {encode(f) for f in frontier for encode in _ENCODINGS} - forms
        forms |= nxt
        frontier = nxt
    return forms


def register_pubsub_token(token: str) -> None:
    """Register the pubsub token and every escaped spelling of it as secrets.

    The token sits in the identifier, which is JSON inside a JSON string: a token holding a
    quote, a backslash or a control character is spelled differently in frames than as given,
    and the shape-based ``"pubsub_token": "..."`` rule stops at the first escaped quote.
    """
    if not isinstance(token, str):
        return
    for form in secret_forms(token):
        register_secret(form)


def room_identifier(pubsub_token: str, account_id: int | str | None = None, user_id: int | str | None = None) -> str:
    """The RoomChannel identifier string, in the seed's key order; ``None`` members are left out.

    >>> room_identifier("tok-123", 1, 7)
    '{"channel":"RoomChannel","pubsub_token":"tok-123","account_id":1,"user_id":7}'
    >>> room_identifier("tok-123")
    '{"channel":"RoomChannel","pubsub_token":"tok-123"}'
    """
    if not isinstance(pubsub_token, str) or not pubsub_token:
        raise ConfigurationError("pubsub_token must be a non-empty string")
    for name, value in (("account_id", account_id), ("user_id", user_id)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, str))):
            raise ConfigurationError(f"{name} must be an integer, got {type(value).__name__}")
    ident: dict[str, Any] = {"channel": "RoomChannel", "pubsub_token": pubsub_token}
    if account_id is not None:
        ident["account_id"] = account_id
    if user_id is not None:
        ident["user_id"] = user_id
    return serialize_identifier(ident)


def check_account(account_id: Any, user_id: Any) -> None:
    """``user_id`` needs ``account_id``: Chatwoot's RoomChannel then raises inside ``subscribed``
    (``@current_user.accounts.find(nil)``) and never answers, so the client would wait forever.

    >>> check_account(None, 7)
    Traceback (most recent call last):
    ...
    realtime_sync.exceptions.ConfigurationError: user_id=7 needs account_id=...: ...
    """
    if user_id is not None and account_id is None:
        raise ConfigurationError(
            f"user_id={user_id!r} needs account_id=...: an agent subscribes for one account "
            "(Chatwoot's RoomChannel never confirms an agent subscription without account_id); "
            "leave user_id out for a contact's token"
        )


def _read_account(value: Any) -> int | str | None:
    """``data.account_id`` as an int when it is one (``1`` or ``"1"``), else as sent."""
    if value is None:
        return None
    try:
        return read_int(value)
    except TypeError:
        return value if isinstance(value, str) else None


class VoxsigAdapter(ActionCableAdapter):
    """ActionCable adapter for Voxsig's RoomChannel, with typed events, presence and account filtering.

    >>> from realtime_sync._json import dumps
    >>> a = VoxsigAdapter("tok-123", account_id=1, user_id=7, presence_interval=15)
    >>> a.connection_made(0.0); a.receive_text('{"type":"welcome"}', 0.0)
    >>> a.receive_text(dumps({"type": "confirm_subscription", "identifier": a.identifier}), 0.1)
    >>> [e.name for e in a.events_received()]
    ['subscribed']
    >>> ["update_presence" in f for f in a.data_to_send()]  # the server's `subscribed` recorded presence
    [False]
    >>> a.receive_text(dumps({"identifier": a.identifier, "message": {"event": "message.created",
    ...                       "data": {"id": 5, "content": "hi", "conversation_id": 42, "account_id": 1}}}), 0.2)
    >>> e = a.events_received()[0]
    >>> (e.name, e.entity_id, e.account_id, e.data.content)
    ('message.created', 42, 1, 'hi')
    >>> a.receive_text(dumps({"identifier": a.identifier, "message": {"event": "message.created",
    ...                       "data": {"id": 6, "conversation_id": 42, "account_id": 2}}}), 0.3)
    >>> a.events_received(), a.dropped_other_accounts  # another account's: dropped, as the dashboard does
    ([], 1)
    """

    name = "voxsig"
    # Chatwoot's RoomChannel looks the user up with find_by! in `subscribed`: a wrong token or id
    # raises there, and ActionCable then sends neither a confirmation nor a rejection.
    unconfirmed_hint = (
        "a Chatwoot server says nothing when the pubsub_token, account_id or user_id is wrong "
        "(RoomChannel fails in `subscribed`): check them"
    )

    def __init__(
        self,
        pubsub_token: PubsubToken,
        account_id: int | str | None = None,
        user_id: int | str | None = None,
        *,
        presence_interval: float | None = PRESENCE_INTERVAL,
        all_accounts: bool = False,
        catch_up_hook: Callable[[int, tuple[float, dict[Any, int], int | None]], None] | None = None,
        catch_up_timeout: float = 15.0,
        resume: VoxsigResumePoint | None = None,
        dedupe_window: int = 10_000,
        max_held: int = 10_000,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        #: Called on the I/O thread (must not block) with (generation, (wall time of the
        #: disconnect, {conversation id: newest message id seen}, floor)) after a reconnect, and
        #: after the first connect when started from ``resume``.  ``floor``: fetch the messages
        #: above this id in conversations without a newest id (``None``: those created since).
        self.catch_up_hook = catch_up_hook
        self.catch_up_timeout = catch_up_timeout
        self.dedupe_window = max(1, dedupe_window)
        self.max_held = max(1, max_held)
        self.recovering = False
        # A subclass that changes how broadcasts are decoded or emitted gets every one of them
        # through its own methods: the one-call path (live_broadcast) is this class's own.
        self._live = all(
            getattr(type(self), name) is getattr(VoxsigAdapter, name)
            for name in ("decode_broadcast", "_deliver", "_emit")
        )
        #: Live message.created dropped because the catch-up had delivered them (or vice versa).
        self.duplicates = 0
        self._held: list[tuple[Subscription, Any, Any, str]] = []
        self._cu_gen = 0
        self._cu_deadline: float | None = None
        self._confirmed_once = False
        self._lost_at: float | None = None  # wall time of the disconnect not yet caught up
        self._delivered: OrderedDict[Any, None] = OrderedDict()  # message ids
        self._last_message: OrderedDict[Any, int] = OrderedDict()  # conversation id -> message id
        self._floor: int | None = None
        if resume is not None and catch_up_hook is not None:
            # A takeover: catch up on the first confirmation from what the previous owner stored.
            self._lost_at = resume.at
            for mid in resume.delivered[-self.dedupe_window :]:
                self._delivered[mid] = None
            self._floor = resume.delivered[0] if resume.delivered else None
        if presence_interval is not None and (
            isinstance(presence_interval, bool)
            or not isinstance(presence_interval, (int, float))
            or presence_interval <= 0
        ):
            raise ConfigurationError(f"presence_interval must be a positive number or None, got {presence_interval!r}")
        if not isinstance(all_accounts, bool):
            raise ConfigurationError(f"all_accounts must be True or False, got {all_accounts!r}")
        check_account(account_id, user_id)
        self.account_id = account_id
        self.user_id = user_id
        self.all_accounts = all_accounts
        #: Drop broadcasts of other accounts (an agent's subscription, unless all_accounts).
        self.filter_accounts = user_id is not None and not all_accounts
        self._account = _read_account(account_id)
        #: Broadcasts dropped because they belonged to another account.
        self.dropped_other_accounts = 0
        self.presence_interval = None if presence_interval is None else float(presence_interval)
        self._presence_due: float | None = None
        self._token_provider: Callable[[], str] | None = None
        self.identifier: str | None = None
        self.room: Subscription | None = None
        if callable(pubsub_token):
            # Read on every (re)connect (prepare_connect): the token changes with the user's password.
            self._token_provider = pubsub_token
            self._pubsub_token: str | None = None
            room_identifier("-", account_id, user_id)  # validate the ids now
        else:
            # The token is in every identifier, hence in every frame we send: never log it.
            register_pubsub_token(pubsub_token)
            if isinstance(pubsub_token, str):
                pubsub_token = secret_text(pubsub_token, "pubsub_token")
            self._set_token(pubsub_token)

    def _set_token(self, token: str) -> None:
        identifier = room_identifier(token, self.account_id, self.user_id)
        if identifier == self.identifier:
            return
        if self.room is not None:
            self.subscriptions.discard(self.room)
        self._pubsub_token = token
        self.identifier = identifier
        self.room = Subscription(KIND, identifier)
        self.subscriptions.add(self.room, identifier)

    def prepare_connect(self, request: ConnectRequest) -> ConnectRequest:
        if self._token_provider is not None:
            try:
                token = self._token_provider()
            except TokenError:
                raise
            except Exception as exc:
                raise TokenError(f"the pubsub_token callable raised {type(exc).__name__}: {redact(exc)}") from exc
            if not isinstance(token, str) or not token:
                raise TokenError(
                    f"the pubsub_token callable must return a non-empty string, got {type(token).__name__}"
                )
            register_pubsub_token(token)
            # Stripped as a pubsub_token string is; a control character inside is an error event
            # (kind "token"), never a subscription the server would silently leave unanswered.
            token = secret_text(token, "the token the pubsub_token callable returned", error=TokenError)
            register_pubsub_token(token)
            if token != self._pubsub_token and self._pubsub_token is not None:
                log.info("the pubsub token changed: subscribing with the new one")
            self._set_token(token)
        else:
            # Renew the token's spellings in the (bounded, most-recent-first) secret registry before
            # every connect, like the core does for its own token: a long-lived client must not have
            # them evicted by other clients' rotating tokens.
            if self._pubsub_token is not None:
                register_pubsub_token(self._pubsub_token)
        return super().prepare_connect(request)

    # -- presence --------------------------------------------------------------------------

    def update_presence(self, now: float) -> bool:
        """Perform ``update_presence`` now (and restart the cadence); False when not confirmed."""
        if self.room is None or self.identifier is None:
            return False
        if self.subscription_state(self.room) is not SubState.CONFIRMED:
            return False
        sent = self.perform(self.identifier, "update_presence", now)
        if sent and self.presence_interval is not None:
            self._presence_due = now + self.presence_interval
        return sent

    def _on_confirmed(self, sub: Subscription, now: float) -> None:
        # RoomChannel#subscribed has just recorded presence (and broadcast presence.update):
        # sending update_presence now would only double it.  The cadence starts here.
        if sub == self.room and self.presence_interval is not None:
            self._presence_due = now + self.presence_interval
        if sub == self.room:
            if self.catch_up_hook is not None and self._lost_at is not None:
                self._start_catch_up(now)
            self._confirmed_once = True

    def connection_lost(self, now: float, reason: str = "") -> None:
        super().connection_lost(now, reason)
        self._presence_due = None
        if self._confirmed_once and self._lost_at is None:
            self._lost_at = now + self.clock_offset  # kept until a catch-up covers it

    # -- catch-up --------------------------------------------------------------------------

    def _start_catch_up(self, now: float) -> None:
        # Also supersedes a catch-up still running from the previous connection (its results
        # are dropped); live events it held stay held, the new fetch covers the same gap.
        assert self.catch_up_hook is not None and self._lost_at is not None
        self._cu_gen += 1
        self.recovering = True
        self._cu_deadline = now + self.catch_up_timeout
        try:
            self.catch_up_hook(self._cu_gen, (self._lost_at, dict(self._last_message), self._floor))
        except Exception as exc:  # the hook must not break the connection
            self._end_catch_up(now, f"catch-up could not start: {exc}")

    def finish_catch_up(
        self, generation: int, items: list[tuple[str, Any]] | None, now: float, error: ErrorInfo | None = None
    ) -> None:
        """The ``(event name, data)`` pairs fetched by catch-up ``generation``, oldest first (or
        the error that prevented it); results of a superseded generation are dropped."""
        if generation != self._cu_gen:
            log.debug("dropping results of superseded catch-up %d", generation)
            return
        if error is not None:
            self._emit_error(ErrorInfo("catch_up", error.message, error.frame, error.exception), now)
        else:
            self._lost_at = None
            self._floor = None  # caught up: later reconnects start from what this process saw
        for name, data in items or ():
            assert self.room is not None
            self._deliver(self.room, name, data, now, raw={"event": name, "data": data}, text="", recovered=True)
        self._end_catch_up(now, None)

    def _end_catch_up(self, now: float, problem: str | None) -> None:
        if problem is not None:
            self._error("catch_up", problem, now)
        self.recovering = False
        self._cu_deadline = None
        held, self._held = self._held, []
        for sub, message, raw, text in held:
            self.decode_broadcast(sub, message, now, raw=raw, text=text)

    def connection_made(self, now: float) -> None:
        super().connection_made(now)
        self._presence_due = None

    def next_deadline(self) -> float | None:
        deadline = super().next_deadline()
        for due in (self._presence_due, self._cu_deadline):
            if due is not None and (deadline is None or due < deadline):
                deadline = due
        return deadline

    def handle_timer(self, now: float) -> None:
        if self._cu_deadline is not None and now >= self._cu_deadline:
            self._end_catch_up(now, f"catch-up timed out after {self.catch_up_timeout:g}s; live events released")
        super().handle_timer(now)
        if self._close is not None:
            return  # the connection is being replaced (stale): presence goes on the next one
        if self._presence_due is not None and now >= self._presence_due:
            if self.room is not None and self.subscription_state(self.room) is SubState.CONFIRMED and self.connected:
                self.update_presence(now)
            else:
                self._presence_due = None

    # -- broadcasts ------------------------------------------------------------------------

    def live_broadcast(
        self, subs: tuple[Subscription, Subscription], message: dict[str, Any], raw: Any, now: float
    ) -> bool:
        # The stream that matters, in one call: a live event of a known name, of this account,
        # whose payload fits its model.  Anything else (catch-up, a name seen for the first
        # time, another account, a payload that does not fit) returns False before any effect,
        # and decode_broadcast() -> _deliver() -> _emit() take it and say what was unusual.
        # Measured on throughput.py's stream: the adapter step 8.2 -> 7.7 µs (stages.py), the
        # client 16.8 -> 15.5 µs of CPU a message (median of 12 alternating runs).
        if self.recovering or self.catch_up_hook is not None or not self._live:
            return False
        name = message.get("event")
        data = message.get("data")
        spec = _specs.get(name) if type(name) is str else None
        if spec is None or type(data) is not dict:
            return False
        account = data.get("account_id")
        if type(account) is not int or (account != self._account and self.filter_accounts):
            return False
        cls, entity, hook = spec
        try:
            model = hook(data, cls)
        except Exception:  # decode_payload() in _deliver() says what did not fit
            return False
        entity_id = entity(model)
        if entity_id is not None and self.all_accounts:
            entity_id = (account, entity_id)
        self._events.append(
            build_event(name, model, entity_id, raw, now + self.clock_offset, subs[1], None, None, account, False)
        )
        return True

    def decode_broadcast(self, sub: Subscription, message: Any, now: float, *, raw: Any, text: str) -> None:
        if type(message) is dict and not self.recovering:  # the usual case, when live_broadcast() declined
            name = message.get("event")
            if type(name) is str and name:
                self._deliver(sub, name, message.get("data"), now, raw, text, False)
                return
        if not isinstance(message, dict):
            self._bad_frame(f"broadcast message must be an object, got {type(message).__name__}", text, now, raw=raw)
            return
        name = message.get("event")
        if not isinstance(name, str) or not name:
            self._bad_frame('broadcast message has no "event" name', text, now, raw=raw)
            return
        if self.recovering:
            if len(self._held) < self.max_held:
                self._held.append((sub, message, raw, text))
                return
            self._end_catch_up(now, "catch-up held too many live events; releasing them")
        self._deliver(sub, name, message.get("data"), now, raw=raw, text=text, recovered=False)

    def _deliver(
        self, sub: Subscription, name: str, data: Any, now: float, raw: Any, text: Any, recovered: bool
    ) -> None:
        if type(data) is dict:
            account = data.get("account_id")
            if type(account) is not int:
                account = _read_account(account)
        else:
            account = None
        if self.filter_accounts and account is not None and account != self._account:
            # Chatwoot's dashboard drops these too (isAValidEvent): the stream is the user's.
            self.dropped_other_accounts += 1
            log.debug("dropping %s of another account", name)
            return
        if account is None:
            account = self._account
        spec = _specs.get(name)
        if spec is None:
            known = EVENT_TYPES.get(name)
            if known is None:
                self._emit_decoded(name, now, data, None, raw=raw, subscription=sub, account_id=account)
                return
            spec = _specs[name] = (*known, structure_hook(known[0]))
        cls, entity, hook = spec
        problem = None
        if type(data) is dict:
            try:
                model = hook(data, cls)
            except Exception:  # decode_payload() says what did not fit
                model, problem = decode_payload(data, cls)
        else:
            model, problem = decode_payload(data, cls)
        if (
            self.catch_up_hook is not None  # without catch-up, nothing is delivered twice
            and name == "message.created"
            and isinstance(model, Message)
            and not self._first_time(model)
        ):
            self.duplicates += 1
            log.debug("dropping message %s: already delivered", model.id)
            return
        entity_id = entity(model) if isinstance(model, cls) else None
        if self.all_accounts and entity_id is not None:
            entity_id = (account, entity_id)
        if problem is None:  # the usual case, without _emit_decoded's detour
            self._emit(name, now, model, entity_id, raw, sub, None, None, account, recovered)
            return
        self._emit_decoded(
            name,
            now,
            model,
            problem,
            entity_id=entity_id,
            raw=raw,
            subscription=sub,
            account_id=account,
            frame=text or raw,
            recovered=recovered,
        )

    def _first_time(self, message: Message) -> bool:
        """Record a ``message.created`` id (and its conversation's newest id); False if seen."""
        if not isinstance(message.id, int):
            return True  # no id: cannot be deduplicated, and losing it is worse
        if message.id in self._delivered:
            return False
        self._delivered[message.id] = None
        if len(self._delivered) > self.dedupe_window:
            self._delivered.popitem(last=False)
        conversation = message.conversation_id
        if conversation is not None and message.id > self._last_message.get(conversation, -1):
            self._last_message[conversation] = message.id
            self._last_message.move_to_end(conversation)
            if len(self._last_message) > self.dedupe_window:
                self._last_message.popitem(last=False)
        return True
