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
The voice topics of the GWS documentation ("CometD notifications", Voice API) are typed too:

* ``/v2/me/calls``: ``CallStateChangeMessage`` -> :class:`CallStateChange` (the whole ``call``),
  named ``"call." + snake_case(notificationType)`` (``call.status_change``...), entity = call id;
* ``/v2/me/devices``: ``DeviceStateChangeMessage`` -> :class:`DeviceStateChange` (the
  ``devices``, each with its ``userState``), named ``device.state_change``, entity = the device
  id when there is one device.

Events are named by **topic and** message type: GWS sends ``MessageLogUpdated`` on
``/v2/me/facebooksession`` too, which is no chat (it passes through as ``notification``, not as a
``chat.new_messages`` without a chat).  Anything else (another topic, another ``messageType``)
passes through as ``"notification"`` with the decoded ``data`` dict, ``entity_id`` = the channel.

Unknown fields never break decoding (the whole message stays in ``event.raw``); values are read
under the one decoding policy (:mod:`realtime_sync.models._converter`: ``"3"`` is index 3,
``null`` is an absent field); a value that still does not fit leaves its field at the default and
the event is delivered with ``event.decode_error`` (and an ``error`` of kind ``"decode"``).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import attrs

from ._converter import camel_renames, decode, make_converter, register

__all__ = [
    "CALL_EVENTS",
    "CHAT_EVENTS",
    "DEVICE_EVENTS",
    "Call",
    "CallStateChange",
    "Chat",
    "ChatMessage",
    "ChatStateChange",
    "Device",
    "DeviceStateChange",
    "MessageLogUpdate",
    "NOTIFICATION_EVENT",
    "Participant",
    "UserState",
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

#: Event names of the call topic (``/v2/me/calls``): ``"call." + snake_case(notificationType)``.
CALL_EVENTS = (
    "call.status_change",
    "call.participants_updated",
    "call.attached_data_changed",
    "call.call_recording_state_change",
)
#: Event name of the device topic (``/v2/me/devices``).
DEVICE_EVENTS = ("device.state_change",)

CHAT_STATE_CHANGE = "ChatStateChangeMessage"
MESSAGE_LOG_UPDATED = "MessageLogUpdated"
CALL_STATE_CHANGE = "CallStateChangeMessage"
DEVICE_STATE_CHANGE = "DeviceStateChangeMessage"


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


# -- voice: calls and devices (GWS "CometD notifications", Voice API) ------------------------


@attrs.frozen
class Call:
    """The call resource of a ``CallStateChangeMessage`` (``/v2/me/calls``).

    ``participants`` are kept as sent: phone numbers (``"5001"``) in GWS 8.5.0's examples,
    objects in later versions.  ``user_data`` is the attached data.

    >>> Call(id="013V08JRL498H1OI04000VTAES00000G", state="Dialing").state
    'Dialing'
    """

    id: str | None = None
    conn_id: str | None = None
    state: str | None = None
    call_uuid: str | None = None
    device_uri: str | None = None
    uri: str | None = None
    participants: tuple[Any, ...] = ()
    dnis: str | None = None
    ani: str | None = None
    call_type: str | None = None
    capabilities: tuple[str, ...] = ()
    duration: int | None = None
    mute: str | None = None
    supervisor_listening_in: str | None = None
    monitored_user_uri: str | None = None
    parent_call_id: str | None = None
    previous_conn_id: str | None = None
    user_data: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class CallStateChange:
    """A ``CallStateChangeMessage``: a call's state, participants or attached data changed.

    >>> CallStateChange(notification_type="StatusChange", call=Call(id="c7")).call_id
    'c7'
    """

    notification_type: str | None = None
    message_type: str | None = None
    call: Call | None = None
    extensions: Mapping[str, Any] = attrs.field(factory=dict)
    reference_id: int | str | None = None

    @property
    def call_id(self) -> str | None:
        """The call's id (``call.id``, else the last segment of ``call.uri``)."""
        if self.call is None:
            return None
        return self.call.id or chat_id_from_uri(self.call.uri)


@attrs.frozen
class UserState:
    """An agent state on a device (``userState``): ``state`` Ready, NotReady...; ``work_mode``
    AuxWork, AfterCallWork...; ``reason`` as configured."""

    id: str | None = None
    display_name: str | None = None
    state: str | None = None
    work_mode: str | None = None
    reason: str | None = None


@attrs.frozen
class Device:
    """One device of a ``DeviceStateChangeMessage`` (a phone: ``phone_number``, DND, forwarding)."""

    id: str | None = None
    device_state: str | None = None
    user_state: UserState | None = None
    phone_number: str | None = None
    e164_number: str | None = None
    telephony_network: str | None = None
    do_not_disturb: str | None = None
    voice_environment_uri: str | None = None
    capabilities: tuple[str, ...] = ()
    call_forwarding: str | None = None


@attrs.frozen
class DeviceStateChange:
    """A ``DeviceStateChangeMessage`` (``/v2/me/devices``): the agent state or a device setting
    changed.

    >>> DeviceStateChange(devices=(Device(id="d1", user_state=UserState(state="NotReady")),)).device_id
    'd1'
    """

    message_type: str | None = None
    devices: tuple[Device, ...] = ()
    reference_id: int | str | None = None

    @property
    def device_id(self) -> str | None:
        """The device's id when the message is about exactly one device."""
        return self.devices[0].id if len(self.devices) == 1 else None


# -- converter --------------------------------------------------------------------------------

# One converter, the shared policy (null lists and objects read as empty, numeric strings as
# numbers...); every model gets the generated fast-path hook.
_converter = make_converter()
register(_converter, Participant, camel_renames(Participant))
register(_converter, Chat, camel_renames(Chat))
register(_converter, ChatMessage, {**camel_renames(ChatMessage), "from_": "from"})
register(_converter, ChatStateChange, camel_renames(ChatStateChange))
register(_converter, MessageLogUpdate, camel_renames(MessageLogUpdate))
register(_converter, Call, camel_renames(Call))
register(_converter, CallStateChange, camel_renames(CallStateChange))
register(_converter, UserState, camel_renames(UserState))
register(_converter, Device, {**camel_renames(Device), "e164_number": "e164Number"})
register(_converter, DeviceStateChange, camel_renames(DeviceStateChange))

_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def event_name_for(notification_type: str, prefix: str = "chat") -> str:
    """``prefix + "." + snake_case(notification_type)``.

    >>> event_name_for("ParticipantsUpdated"), event_name_for("NewMessages")
    ('chat.participants_updated', 'chat.new_messages')
    >>> event_name_for("StatusChange", "call")
    'call.status_change'
    """
    return f"{prefix}." + _SNAKE.sub("_", notification_type).lower()


_EVENT_NAMES = {
    "StatusChange": "chat.status_change",
    "ParticipantsUpdated": "chat.participants_updated",
    "PropertiesUpdated": "chat.properties_updated",
    "Error": "chat.error",
    "NewMessages": "chat.new_messages",
}


def _topic(channel: str) -> str:
    """The last segment of a GWS topic: ``/v2/me/chats`` -> ``chats``."""
    return channel.rstrip("/").rsplit("/", 1)[-1]


def decode_notification(channel: str, data: Any) -> tuple[str, Any, Any, str | None]:
    """One Bayeux data message -> ``(event name, data, entity_id, decode_error)``.

    The name depends on the topic *and* the message type (see the module docstring).  A payload
    that does not fit its model is still returned (typed as far as it fits) with the mismatch
    as ``decode_error``.

    >>> name, model, chat_id, problem = decode_notification("/v2/me/chats", {
    ...     "messageType": "ChatStateChangeMessage", "notificationType": "StatusChange",
    ...     "chat": {"id": "c1", "state": "Chatting"}})
    >>> name, model.chat.state, chat_id, problem
    ('chat.status_change', 'Chatting', 'c1', None)
    >>> decode_notification("/v2/me/calls", {"messageType": "CallStateChangeMessage",
    ...     "notificationType": "StatusChange", "call": {"id": "k1", "state": "Ringing"}})[:3:2]
    ('call.status_change', 'k1')
    >>> decode_notification("/v2/me/facebooksession", {"messageType": "MessageLogUpdated",
    ...     "notificationType": "NewMessages"})[0]
    'notification'
    """
    if isinstance(data, dict):
        topic = _topic(channel)
        message_type = data.get("messageType")
        notification_type = data.get("notificationType")
        has_type = isinstance(notification_type, str) and bool(notification_type)
        if topic == "chats" and has_type and message_type in (CHAT_STATE_CHANGE, MESSAGE_LOG_UPDATED):
            cls: type = ChatStateChange if message_type == CHAT_STATE_CHANGE else MessageLogUpdate
            model, problem = decode(_converter, data, cls)
            name = _EVENT_NAMES.get(notification_type) or event_name_for(notification_type)  # type: ignore[arg-type]
            return name, model, model.chat_id, problem
        if topic == "calls" and has_type and message_type == CALL_STATE_CHANGE:
            call, problem = decode(_converter, data, CallStateChange)
            return event_name_for(notification_type, "call"), call, call.call_id, problem  # type: ignore[arg-type]
        if topic == "devices" and message_type == DEVICE_STATE_CHANGE:
            devices, problem = decode(_converter, data, DeviceStateChange)
            return "device.state_change", devices, devices.device_id, problem
    return NOTIFICATION_EVENT, data, channel, None
