"""Sans-I/O adapter for Voxsig (Chatwoot-style) real-time events over ActionCable.

One subscription to ``RoomChannel`` carries everything.  Its identifier is the seed's
``{"channel":"RoomChannel","pubsub_token":..,"account_id":..,"user_id":..}``, serialised once;
without ``user_id`` the token is a contact's.  Broadcasts are ``{"event": name, "data": {...}}``
and become events under their wire names (``message.created``, ``notification.created``...),
with typed data (:mod:`realtime_sync.models.voxsig`) and ``entity_id`` per the table below.
Unknown names (forks add their own) pass through with the decoded data.

Presence: ``update_presence`` is performed right after each confirmation (a reconnect means a
new confirmation, so the cadence restarts), then every ``presence_interval`` seconds while the
subscription stays confirmed; the server keeps the user online for 60 s after each one.

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
anything else                               decoded JSON       None
==========================================  =================  =====================================
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

from .._json import dumps
from .._redact import register_secret
from ..events import Subscription
from ..exceptions import ConfigurationError, ProtocolError
from ..models.voxsig import (
    Contact,
    Conversation,
    Message,
    NotificationEvent,
    Presence,
    TypingEvent,
    structure_payload,
)
from .actioncable import KIND, ActionCableAdapter, serialize_identifier
from .base import ConnectRequest, SubState

__all__ = ["EVENT_TYPES", "VoxsigAdapter", "register_pubsub_token", "room_identifier"]

log = logging.getLogger("realtime_sync.voxsig")

_Spec = tuple[type, Callable[[Any], Any]]


def _conversation_id(c: Conversation) -> Any:
    return c.id


def _message_conversation_id(m: Message) -> Any:
    return m.conversation_id


def _typing_conversation_id(t: TypingEvent) -> Any:
    return None if t.conversation is None else t.conversation.id


def _contact_id(c: Contact) -> Any:
    return c.id


def _notification_id(n: NotificationEvent) -> Any:
    return None if n.notification is None else n.notification.id


def _account_id(p: Presence) -> Any:
    return p.account_id


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
}


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


class VoxsigAdapter(ActionCableAdapter):
    """ActionCable adapter for Voxsig's RoomChannel, with typed events and presence.

    >>> from realtime_sync._json import dumps
    >>> a = VoxsigAdapter("tok-123", account_id=1, user_id=7, presence_interval=30)
    >>> a.connection_made(0.0); a.receive_text('{"type":"welcome"}', 0.0)
    >>> a.receive_text(dumps({"type": "confirm_subscription", "identifier": a.identifier}), 0.1)
    >>> [e.name for e in a.events_received()]
    ['subscribed']
    >>> ["update_presence" in f for f in a.data_to_send()]
    [False, True]
    >>> a.receive_text(dumps({"identifier": a.identifier, "message": {"event": "message.created",
    ...                       "data": {"id": 5, "content": "hi", "conversation_id": 42}}}), 0.2)
    >>> e = a.events_received()[0]
    >>> (e.name, e.entity_id, e.data.content)
    ('message.created', 42, 'hi')
    """

    name = "voxsig"

    def __init__(
        self,
        pubsub_token: str,
        account_id: int | str | None = None,
        user_id: int | str | None = None,
        *,
        presence_interval: float | None = 30.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if presence_interval is not None and (
            isinstance(presence_interval, bool)
            or not isinstance(presence_interval, (int, float))
            or presence_interval <= 0
        ):
            raise ConfigurationError(f"presence_interval must be a positive number or None, got {presence_interval!r}")
        # The token is in every identifier, hence in every frame we send: never log it.
        register_pubsub_token(pubsub_token)
        self._pubsub_token = pubsub_token
        self.identifier = room_identifier(pubsub_token, account_id, user_id)
        self.room = Subscription(KIND, self.identifier)
        self.account_id = account_id
        self.user_id = user_id
        self.presence_interval = None if presence_interval is None else float(presence_interval)
        self._presence_due: float | None = None
        self.subscriptions.add(self.room, self.identifier)

    def prepare_connect(self, request: ConnectRequest) -> ConnectRequest:
        # Renew the token's spellings in the (bounded, most-recent-first) secret registry before
        # every connect, like the core does for its own token: a long-lived client must not have
        # them evicted by other clients' rotating tokens.
        register_pubsub_token(self._pubsub_token)
        return super().prepare_connect(request)

    # -- presence --------------------------------------------------------------------------

    def update_presence(self, now: float) -> bool:
        """Perform ``update_presence`` now (and restart the cadence); False when not confirmed."""
        if self.subscription_state(self.room) is not SubState.CONFIRMED:
            return False
        sent = self.perform(self.identifier, "update_presence", now)
        if sent and self.presence_interval is not None:
            self._presence_due = now + self.presence_interval
        return sent

    def _on_confirmed(self, sub: Subscription, now: float) -> None:
        # First presence right after the confirmation, not only after the first interval:
        # otherwise the agent shows offline for up to presence_interval after every reconnect.
        if sub == self.room and self.presence_interval is not None:
            self.update_presence(now)

    def connection_lost(self, now: float, reason: str = "") -> None:
        super().connection_lost(now, reason)
        self._presence_due = None

    def connection_made(self, now: float) -> None:
        super().connection_made(now)
        self._presence_due = None

    def next_deadline(self) -> float | None:
        deadline = super().next_deadline()
        if self._presence_due is not None and (deadline is None or self._presence_due < deadline):
            deadline = self._presence_due
        return deadline

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        if self._close is not None:
            return  # the connection is being replaced (stale): presence goes on the next one
        if self._presence_due is not None and now >= self._presence_due:
            if self.subscription_state(self.room) is SubState.CONFIRMED and self.connected:
                self.update_presence(now)
            else:
                self._presence_due = None

    # -- broadcasts ------------------------------------------------------------------------

    def decode_broadcast(self, sub: Subscription, message: Any, now: float, *, raw: Any, text: str) -> None:
        if not isinstance(message, dict):
            self._bad_frame(f"broadcast message must be an object, got {type(message).__name__}", text, now, raw=raw)
            return
        name = message.get("event")
        if not isinstance(name, str) or not name:
            self._bad_frame('broadcast message has no "event" name', text, now, raw=raw)
            return
        data = message.get("data")
        spec = EVENT_TYPES.get(name)
        if spec is None:
            self._emit(name, now, data, raw=raw, subscription=sub)
            return
        cls, entity = spec
        try:
            model = structure_payload(data, cls)
        except ProtocolError as exc:
            self._bad_frame(f"{name}: {exc}", text, now, raw=raw, exc=exc)
            return
        self._emit(name, now, model, entity_id=entity(model), raw=raw, subscription=sub)
