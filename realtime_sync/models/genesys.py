"""Genesys chat notifications (CometD topic ``/v2/me/chats``): frozen models and their decoder.

Two message types arrive on the topic (seed 003, PROTOCOLS.md section 4), both as the ``data`` of
a Bayeux message, with camelCase keys on the wire:

* ``ChatStateChangeMessage`` with ``notificationType`` StatusChange, ParticipantsUpdated,
  PropertiesUpdated or Error, and the whole ``chat`` -> :class:`ChatStateChange`;
* ``MessageLogUpdated`` with ``notificationType`` NewMessages and the new transcript entries in
  ``messages`` -> :class:`MessageLogUpdate`.

:func:`decode_notification` turns one Bayeux data message into ``(event name, model, chat id)``.
The event name is ``"chat." + snake_case(notificationType)`` (``chat.status_change``,
``chat.participants_updated``, ``chat.properties_updated``, ``chat.error``, ``chat.new_messages``),
so a notification type this module does not know yet still arrives under a predictable name.
Anything else (another topic such as ``/v2/me/calls``, another ``messageType``) passes through as
``"notification"`` with the decoded ``data`` dict, ``entity_id`` = the channel.

Unknown fields never break decoding (the whole message stays in ``event.raw``); a known field
of the wrong type does (the strict converter refuses ``"3"`` for an index); ``null`` is accepted
wherever a field may be absent.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import attrs
from cattrs.gen import make_dict_structure_fn, override

from ._converter import camel_renames, make_converter, note_model, structure

__all__ = [
    "CHAT_EVENTS",
    "Chat",
    "ChatMessage",
    "ChatStateChange",
    "MessageLogUpdate",
    "NOTIFICATION_EVENT",
    "Participant",
    "chat_id_from_uri",
    "decode_notification",
    "event_name_for",
]

#: Event names of the chat topic (the wire's notificationType in snake case, prefixed ``chat.``).
CHAT_EVENTS = (
    "chat.status_change",
    "chat.participants_updated",
    "chat.properties_updated",
    "chat.error",
    "chat.new_messages",
)
#: Name under which messages of other topics / unknown message types pass through.
NOTIFICATION_EVENT = "notification"

CHAT_STATE_CHANGE = "ChatStateChangeMessage"
MESSAGE_LOG_UPDATED = "MessageLogUpdated"


@attrs.frozen
class Participant:
    """A chat participant (``{nickname, type, participantId}``); ``type`` is Agent, Customer, ...

    >>> Participant(nickname="TestName", type="Agent", participant_id="007352CE984F0321").type
    'Agent'
    """

    nickname: str | None = None
    type: str | None = None
    participant_id: str | None = None


@attrs.frozen
class Chat:
    """The chat resource carried by a ``ChatStateChangeMessage``.

    ``user_data`` is the attached data (string keys, values as decoded); ``uri`` the REST URL of
    the chat, whose last segment is its id.

    >>> Chat(id="0000Wa9CAM6W00J", state="Chatting").state
    'Chatting'
    """

    id: str | None = None
    state: str | None = None
    participants: tuple[Participant, ...] = ()
    capabilities: tuple[str, ...] = ()
    user_data: Mapping[str, Any] = attrs.field(factory=dict)
    uri: str | None = None


@attrs.frozen
class ChatMessage:
    """One transcript entry of a ``MessageLogUpdated`` notification.

    ``from_`` is the wire's ``from`` (a :class:`Participant`).  ``index`` grows along the
    transcript but may have gaps (and repeats, as in the vendor's own example); do not treat a
    gap as a lost message.  ``timestamp`` is the server's string (``"2014-01-09
    11:58:12.035+0200"``); ``timestamp_seconds`` is kept as sent: despite its name, the vendor's
    example holds milliseconds.

    >>> ChatMessage(index=3, text="How may I help you?").text
    'How may I help you?'
    """

    index: int | None = None
    from_: Participant | None = None
    text: str | None = None
    visibility: str | None = None
    timestamp: str | None = None
    type: str | None = None
    timestamp_seconds: int | float | None = None
    event_type: str | None = None
    user_data: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ChatStateChange:
    """A ``ChatStateChangeMessage``: the chat's state, participants or properties changed, or an
    operation on it failed (``notification_type`` "Error").

    >>> ChatStateChange(notification_type="StatusChange", chat=Chat(id="c1")).chat_id
    'c1'
    """

    notification_type: str | None = None
    message_type: str | None = None
    chat: Chat | None = None
    reference_id: int | str | None = None

    @property
    def chat_id(self) -> str | None:
        """The chat's id (``chat.id``, else the last segment of ``chat.uri``)."""
        if self.chat is None:
            return None
        return self.chat.id or chat_id_from_uri(self.chat.uri)


@attrs.frozen
class MessageLogUpdate:
    """A ``MessageLogUpdated`` notification: new entries in a chat's transcript.

    The chat is named by ``chat_uri`` (``http://HOST/api/v2/chats/<id>``) or, on some servers,
    ``chat_path`` (``/chats/<id>``); :attr:`chat_id` reads either.

    >>> MessageLogUpdate(chat_uri="http://h/api/v2/chats/0000Wa9CAM6W00FN").chat_id
    '0000Wa9CAM6W00FN'
    """

    notification_type: str | None = None
    message_type: str | None = None
    messages: tuple[ChatMessage, ...] = ()
    chat_uri: str | None = None
    chat_path: str | None = None
    reference_id: int | str | None = None

    @property
    def chat_id(self) -> str | None:
        return chat_id_from_uri(self.chat_uri) or chat_id_from_uri(self.chat_path)


def chat_id_from_uri(uri: str | None) -> str | None:
    """The last path segment of a chat URI or path (query and trailing slash ignored).

    >>> chat_id_from_uri("http://localhost:8080/api/v2/chats/0000Wa9CAM6W00J?x=1")
    '0000Wa9CAM6W00J'
    >>> chat_id_from_uri("/chats/abc/") is None, chat_id_from_uri("/chats/abc/")
    (False, 'abc')
    """
    if not uri:
        return None
    path = uri.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    last = path.rsplit("/", 1)[-1]
    return last or None


# -- converter --------------------------------------------------------------------------------

_converter = make_converter()


def _register(cls: type, renames: Mapping[str, str]) -> None:
    """Like ``_converter.register`` but ``null`` counts as absent for fields with a non-None
    default: GWS versions differ in sending ``null`` or omitting a field, and a ``null`` list of
    participants must not turn a whole notification into an error."""
    note_model(_converter, cls, renames)
    overrides = {name: override(rename=key) for name, key in renames.items()}
    fn: Any = make_dict_structure_fn(cls, _converter, _cattrs_forbid_extra_keys=False, **overrides)  # type: ignore[arg-type]
    wire = {a.name: renames.get(a.name, a.name) for a in attrs.fields(cls)}
    nullable_off = {wire[a.name] for a in attrs.fields(cls) if a.default is not None}

    def hook(v: Any, t: Any) -> Any:
        if not isinstance(v, dict):
            raise TypeError(f"expected an object, got {'null' if v is None else type(v).__name__}")
        if any(v.get(k, 0) is None for k in nullable_off):
            v = {k: x for k, x in v.items() if not (x is None and k in nullable_off)}
        return fn(v, t)

    _converter.register_structure_hook(cls, hook)


_register(Participant, camel_renames(Participant))
_register(Chat, camel_renames(Chat))
_register(ChatMessage, {**camel_renames(ChatMessage), "from_": "from"})
_register(ChatStateChange, camel_renames(ChatStateChange))
_register(MessageLogUpdate, camel_renames(MessageLogUpdate))

_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def event_name_for(notification_type: str) -> str:
    """``"chat." + snake_case(notification_type)``.

    >>> event_name_for("ParticipantsUpdated"), event_name_for("NewMessages")
    ('chat.participants_updated', 'chat.new_messages')
    """
    return "chat." + _SNAKE.sub("_", notification_type).lower()


_EVENT_NAMES = {
    "StatusChange": "chat.status_change",
    "ParticipantsUpdated": "chat.participants_updated",
    "PropertiesUpdated": "chat.properties_updated",
    "Error": "chat.error",
    "NewMessages": "chat.new_messages",
}


def decode_notification(channel: str, data: Any) -> tuple[str, Any, Any]:
    """One Bayeux data message -> ``(event name, data, entity_id)``.

    Raises :class:`~realtime_sync.exceptions.ProtocolError` when a chat notification has a
    field of the wrong type.

    >>> name, model, chat_id = decode_notification("/v2/me/chats", {
    ...     "messageType": "ChatStateChangeMessage", "notificationType": "StatusChange",
    ...     "chat": {"id": "c1", "state": "Chatting"}})
    >>> name, model.chat.state, chat_id
    ('chat.status_change', 'Chatting', 'c1')
    >>> decode_notification("/v2/me/calls", {"messageType": "CallStateChangeMessage"})[0]
    'notification'
    """
    if isinstance(data, dict):
        message_type = data.get("messageType")
        notification_type = data.get("notificationType")
        if isinstance(notification_type, str) and notification_type:
            if message_type == CHAT_STATE_CHANGE:
                change = structure(_converter, data, ChatStateChange)
                name = _EVENT_NAMES.get(notification_type) or event_name_for(notification_type)
                return name, change, change.chat_id
            if message_type == MESSAGE_LOG_UPDATED:
                update = structure(_converter, data, MessageLogUpdate)
                name = _EVENT_NAMES.get(notification_type) or event_name_for(notification_type)
                return name, update, update.chat_id
    return NOTIFICATION_EVENT, data, channel
