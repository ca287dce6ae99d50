"""Typed, frozen models of Voxsig's (Chatwoot-style) real-time payloads.

The objects are the ones listed in the vendor document (seed 002): :class:`Conversation`,
:class:`Message`, :class:`Contact`, :class:`User`, :class:`Notification`, plus the event payloads
that wrap them (:class:`TypingEvent`, :class:`Presence`, :class:`NotificationEvent`,
:class:`CacheInvalidated`, :class:`CopilotMessage`).  Fields follow Chatwoot's own
``push_event_data`` methods and ``Conversations::EventDataPresenter`` (the server behind Voxsig):
conversations carry ``performer`` and the SLA fields, messages ``additional_attributes``,
``echo_id`` and ``sentiment``, attachments ``width``/``height``/``meta``.

Decoding rules (one policy for every vendor, see :mod:`realtime_sync.models._converter`): every
field has a default, so a missing field never breaks decoding; unknown fields are ignored (the
whole frame stays in ``event.raw``); the spellings Chatwoot really sends are read into the right
values (``"is_private": "true"`` is True, ``"id": "12"`` is 12, ``null`` items in ``attachments``
are skipped); a value that still does not fit leaves its field at the default, and the event is
delivered with ``event.decode_error`` plus an ``error`` event of kind ``"decode"``.

Timestamps are kept exactly as the server sent them: Voxsig mixes unix seconds
(``"created_at": 1700000000``) and ISO strings (``"updated_at": "2024-01-01T10:00:00.000Z"``), and the
vendor warns the format may change between versions.  :func:`as_datetime` reads either:

>>> m = structure_payload({"id": 1, "created_at": 1700000000, "updated_at": "2023-11-14T22:13:20Z"}, Message)
>>> as_datetime(m.created_at) == as_datetime(m.updated_at)
True
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Callable, Mapping, TypeVar, Union

import attrs

from ._converter import decode, make_converter, register, structure

__all__ = [
    "Attachment",
    "CacheInvalidated",
    "CacheKeys",
    "Contact",
    "ContactInbox",
    "Conversation",
    "ConversationMeta",
    "CopilotMessage",
    "CopilotThread",
    "Message",
    "Notification",
    "NotificationEvent",
    "Presence",
    "Timestamp",
    "TypingEvent",
    "User",
    "as_datetime",
    "decode_payload",
    "structure_hook",
    "structure_payload",
]

T = TypeVar("T")

#: A timestamp as the server sent it: unix seconds (int or float), an ISO 8601 string, or null.
Timestamp = Union[int, float, str, None]

_Obj = Union[Mapping[str, Any], None]


def as_datetime(value: Any) -> _dt.datetime | None:
    """Read a Voxsig timestamp (unix seconds, unix milliseconds, ISO 8601 string) as an aware UTC datetime.

    Never raises: anything unreadable gives ``None``.

    >>> as_datetime(1700000000)
    datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.timezone.utc)
    >>> as_datetime("2023-11-14T22:13:20.000Z")
    datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.timezone.utc)
    >>> as_datetime("not a date") is None
    True
    """
    try:
        if value is None or isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            seconds = float(value)
            # Milliseconds slipped in by some serialisers: 1e11 s is the year 5138.
            if abs(seconds) >= 1e11:
                seconds /= 1000.0
            return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
        if isinstance(value, str):
            s = value.strip()
            if not s:
                return None
            try:
                return as_datetime(float(s)) if s.lstrip("+-").replace(".", "", 1).isdigit() else _parse_iso(s)
            except ValueError:
                return None
    except (OverflowError, OSError, ValueError):
        return None
    return None


def _parse_iso(s: str) -> _dt.datetime:
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    # "2024-01-01 10:00:00 UTC" (Ruby's Time#to_s)
    if s.endswith(" UTC"):
        s = s[:-4] + "+00:00"
    d = _dt.datetime.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return d.astimezone(_dt.timezone.utc)


@attrs.frozen
class User:
    """An agent or admin (also an agent bot: ``type == "agent_bot"``).

    >>> structure_payload({"id": 7, "name": "Ana", "type": "user", "availability_status": "online"}, User).name
    'Ana'
    """

    id: int | None = None
    name: str | None = None
    available_name: str | None = None
    avatar_url: str | None = None
    availability_status: str | None = None
    thumbnail: str | None = None
    email: str | None = None
    type: str | None = None


@attrs.frozen
class Contact:
    """A contact (end customer).

    >>> structure_payload({"id": 101, "name": "Bo", "email": "bo@example.com", "extra": 1}, Contact).id
    101
    """

    id: int | None = None
    name: str | None = None
    email: str | None = None
    phone_number: str | None = None
    identifier: str | None = None
    thumbnail: str | None = None
    additional_attributes: _Obj = None
    custom_attributes: _Obj = None
    availability_status: str | None = None
    type: str | None = None
    created_at: Timestamp = None
    last_activity_at: Timestamp = None
    blocked: bool | None = None


#: Who sent a message / who is typing: a Contact when the payload says ``"type": "contact"``,
#: else a User (agents, admins, agent bots).
Sender = Union[Contact, User]


@attrs.frozen
class Attachment:
    """A file attached to a message (``Attachment#push_event_data``).

    Images carry ``width``/``height``; ``meta`` holds type-specific data; location attachments
    ``coordinates_lat``/``coordinates_long``/``fallback_title``.  An attachment of a type the
    server cannot serialise arrives as ``null`` in the list and is skipped.
    """

    id: int | None = None
    message_id: int | None = None
    file_type: str | None = None
    account_id: int | None = None
    extension: str | None = None
    data_url: str | None = None
    thumb_url: str | None = None
    file_size: int | None = None
    width: int | None = None
    height: int | None = None
    meta: _Obj = None
    coordinates_lat: float | None = None
    coordinates_long: float | None = None
    fallback_title: str | None = None


@attrs.frozen
class Message:
    """A message in a conversation (``message.created``, ``message.updated``, ``first.reply.created``).

    ``message_type``: 0 incoming, 1 outgoing, 2 activity, 3 template.  ``conversation_id`` is the
    conversation's display id, the same as :attr:`Conversation.id`.
    """

    id: int | None = None
    content: str | None = None
    account_id: int | None = None
    inbox_id: int | None = None
    conversation_id: int | None = None
    message_type: int | None = None
    created_at: Timestamp = None
    updated_at: Timestamp = None
    private: bool | None = None
    status: str | None = None
    source_id: str | None = None
    content_type: str | None = None
    content_attributes: _Obj = None
    sender_type: str | None = None
    sender_id: int | None = None
    external_source_ids: _Obj = None
    sender: Sender | None = None
    attachments: tuple[Attachment, ...] = ()
    conversation: _Obj = None
    previous_changes: _Obj = None
    additional_attributes: _Obj = None
    echo_id: str | None = None
    sentiment: _Obj = None
    processed_message_content: str | None = None


@attrs.frozen
class ContactInbox:
    """The link between a contact and an inbox."""

    id: int | None = None
    contact_id: int | None = None
    inbox_id: int | None = None
    source_id: str | None = None
    created_at: Timestamp = None
    updated_at: Timestamp = None
    hmac_verified: bool | None = None


@attrs.frozen
class ConversationMeta:
    """``conversation.meta``: the contact (``sender``), the assigned agent, the team."""

    sender: Contact | None = None
    assignee: User | None = None
    assignee_type: str | None = None
    team: _Obj = None
    hmac_verified: bool | None = None
    channel: str | None = None


@attrs.frozen
class Conversation:
    """A conversation (``conversation.*``, ``assignee.changed``, ``team.changed``).

    >>> c = structure_payload({"id": 42, "status": "open", "meta": {"assignee": {"id": 7}}}, Conversation)
    >>> (c.id, c.status, c.meta.assignee.id)
    (42, 'open', 7)
    """

    id: int | None = None
    account_id: int | None = None
    inbox_id: int | None = None
    status: str | None = None
    can_reply: bool | None = None
    channel: str | None = None
    unread_count: int | None = None
    priority: str | None = None
    labels: tuple[str, ...] = ()
    additional_attributes: _Obj = None
    custom_attributes: _Obj = None
    contact_inbox: ContactInbox | None = None
    messages: tuple[Message, ...] = ()
    meta: ConversationMeta = attrs.field(factory=ConversationMeta)
    agent_last_seen_at: Timestamp = None
    contact_last_seen_at: Timestamp = None
    timestamp: Timestamp = None
    created_at: Timestamp = None
    updated_at: Timestamp = None
    last_activity_at: Timestamp = None
    first_reply_created_at: Timestamp = None
    waiting_since: Timestamp = None
    snoozed_until: Timestamp = None
    #: Who made the change (a user or an agent bot), on newer Chatwoot versions.
    performer: User | None = None
    sla_policy_id: int | None = None
    applied_sla: _Obj = None
    sla_events: tuple[Mapping[str, Any], ...] = ()


@attrs.frozen
class TypingEvent:
    """Payload of ``conversation.typing_on`` / ``conversation.typing_off``.

    ``user`` is a :class:`Contact` when the contact types, else a :class:`User`.
    """

    conversation: Conversation | None = None
    user: Sender | None = None
    is_private: bool | None = None
    account_id: int | None = None


@attrs.frozen
class Presence:
    """Payload of ``presence.update``: who is online in the account.

    Keys are ids *as strings* (as on the wire); values ``"online"``, ``"busy"``, ``"offline"``.

    >>> p = structure_payload({"account_id": 1, "users": {"7": "online"}}, Presence)
    >>> p.users["7"]
    'online'
    """

    account_id: int | None = None
    users: Mapping[str, Any] = attrs.field(factory=dict)
    contacts: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Notification:
    """A notification for an agent (mention, assignment, new message in a conversation...).

    ``primary_actor`` is kept as the decoded object: it is a conversation or a message depending
    on ``primary_actor_type``.
    """

    id: int | None = None
    notification_type: str | None = None
    primary_actor_type: str | None = None
    primary_actor_id: int | None = None
    primary_actor: _Obj = None
    secondary_actor: Any = None
    read_at: Timestamp = None
    created_at: Timestamp = None
    snoozed_until: Timestamp = None
    last_activity_at: Timestamp = None
    account_id: int | None = None
    push_message_title: str | None = None
    push_message_body: str | None = None
    user: User | None = None
    meta: _Obj = None


@attrs.frozen
class NotificationEvent:
    """Payload of ``notification.created`` / ``.updated`` / ``.deleted``."""

    notification: Notification | None = None
    unread_count: int | None = None
    count: int | None = None
    account_id: int | None = None


@attrs.frozen
class CacheKeys:
    """``cache_keys`` of ``account.cache_invalidated``: a new version key per cached list."""

    label: int | str | None = None
    inbox: int | str | None = None
    team: int | str | None = None
    canned_response: int | str | None = None


@attrs.frozen
class CacheInvalidated:
    """Payload of ``account.cache_invalidated``: the account's labels, inboxes, teams or canned
    responses changed; re-fetch the lists whose key changed (Chatwoot's dashboard revalidates them).

    >>> structure_payload({"cache_keys": {"label": 1700000000}, "account_id": 1}, CacheInvalidated).cache_keys.label
    1700000000
    """

    cache_keys: CacheKeys = attrs.field(factory=CacheKeys)
    account_id: int | None = None


@attrs.frozen
class CopilotThread:
    """The copilot thread of a :class:`CopilotMessage`."""

    id: int | None = None
    title: str | None = None
    created_at: Timestamp = None
    user: User | None = None
    assistant: _Obj = None
    account_id: int | None = None


@attrs.frozen
class CopilotMessage:
    """Payload of ``copilot.message.created`` (Chatwoot enterprise, ``CopilotMessage#push_event_data``).

    ``message`` is the stored JSON (``content``, ``reasoning``, ``function_name``...);
    ``message_type`` is ``"user"``, ``"assistant"`` or ``"assistant_thinking"``.
    """

    id: int | None = None
    message: _Obj = None
    message_type: str | None = None
    created_at: Timestamp = None
    copilot_thread: CopilotThread | None = None
    account_id: int | None = None


_converter = make_converter()


def _structure_sender(v: Any, _t: Any) -> Contact | User | None:
    if v is None:
        return None
    if not isinstance(v, dict):
        raise TypeError(f"expected an object, got {type(v).__name__} {v!r:.40}")
    if v.get("type") == "contact":
        return _contact_hook(v, Contact)  # type: ignore[no-any-return]
    return _user_hook(v, User)  # type: ignore[no-any-return]


def _null_as_empty(t: Any, empty: Any) -> None:
    """A null list or object reads as an empty one (``"labels": null``, ``"users": null``): the
    field's default, like a missing field.  Anything else still goes through the strict hook."""
    hook = _converter.get_structure_hook(t)

    def structure_or_empty(v: Any, _t: Any) -> Any:
        return empty() if v is None else hook(v, _t)

    # What the strict hook passes through unchanged, this one does too (the generated model
    # hooks then skip the call: an object field holding a dict costs no call).
    structure_or_empty.exact_types = getattr(hook, "exact_types", frozenset())  # type: ignore[attr-defined]
    _converter.register_structure_hook_func(lambda x: x == t, structure_or_empty)


# Nested classes first: their hooks are looked up when the outer hooks are generated.
_cls: type
for _cls in (User, Contact):
    register(_converter, _cls)
_contact_hook = _converter.get_structure_hook(Contact)
_user_hook = _converter.get_structure_hook(User)
_converter.register_structure_hook(Sender, _structure_sender)
_converter.register_structure_hook(Union[Contact, User, None], _structure_sender)
_null_as_empty(tuple[str, ...], tuple)
_null_as_empty(Mapping[str, Any], dict)
register(_converter, Attachment)
_null_as_empty(tuple[Attachment, ...], tuple)
for _cls in (Message, ContactInbox, ConversationMeta):
    register(_converter, _cls)
_null_as_empty(tuple[Message, ...], tuple)
_meta_hook = _converter.get_structure_hook(ConversationMeta)
# A null ``meta`` reads as an empty one, so ``conversation.meta.assignee`` is always safe to read.
_converter.register_structure_hook(ConversationMeta, lambda v, t: ConversationMeta() if v is None else _meta_hook(v, t))
for _cls in (Conversation, TypingEvent, Presence, Notification, NotificationEvent, CacheKeys):
    register(_converter, _cls)
_keys_hook = _converter.get_structure_hook(CacheKeys)
_converter.register_structure_hook(CacheKeys, lambda v, t: CacheKeys() if v is None else _keys_hook(v, t))
for _cls in (CacheInvalidated, CopilotThread, CopilotMessage):
    register(_converter, _cls)


def structure_payload(data: Any, cls: type[Any]) -> Any:
    """Structure a decoded payload as ``cls``; raises :class:`~realtime_sync.ProtocolError` on a wrong type.

    A null payload reads as an empty one (every field at its default), like missing fields.

    >>> structure_payload(None, Message).attachments
    ()
    """
    return structure(_converter, {} if data is None else data, cls)


def structure_hook(cls: type[T]) -> Callable[[Any, Any], T]:
    """The structure hook of ``cls``, looked up once (the hot path): ``hook(data, cls)`` raises
    on a payload that does not fit (then :func:`decode_payload` says what did not).

    >>> structure_hook(Message)({"id": 5, "content": "hi"}, Message).content
    'hi'
    """
    return _converter.get_structure_hook(cls)  # type: ignore[no-any-return]


def decode_payload(data: Any, cls: type[Any]) -> tuple[Any, str | None]:
    """``data`` as ``cls`` under the decoding policy; never raises.

    ``(model, None)`` when it fits; ``(model with the fields that fit, mismatch)`` when not;
    ``(data, mismatch)`` when ``data`` is not an object.

    >>> m, problem = decode_payload({"id": "5", "private": "false", "attachments": [None, {"id": 1}]}, Message)
    >>> (m.id, m.private, len(m.attachments), problem)
    (5, False, 1, None)
    >>> t, problem = decode_payload({"is_private": "maybe", "account_id": 1}, TypingEvent)
    >>> (t.is_private, t.account_id, problem)
    (None, 1, "TypingEvent.is_private: expected bool or null, got str 'maybe'")
    """
    return decode(_converter, data, cls)
