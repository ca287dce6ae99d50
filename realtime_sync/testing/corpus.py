"""Payload corpora built from the vendors' own source and documents, for tests (ours and yours).

Each entry is what the real server sends, shaped after the code or the document that produces
it, so that a test can feed it through a fake server, a real one, or an adapter and check that it
arrives as its event, typed, with no ``decode_error``.

Chatwoot (the server behind Voxsig), from its source (``chatwoot/chatwoot``):

* ``User#push_event_data`` (id, name, available_name, avatar_url, type "user",
  availability_status, thumbnail), ``Contact#push_event_data`` (plus ``blocked``, type
  "contact"), ``AgentBot#push_event_data`` (type "agent_bot"), ``Team#push_event_data``;
* ``Message#push_event_data``: every column (``attributes``: ``status`` and ``content_type`` as
  enum strings, ``updated_at`` an ISO string, ``additional_attributes``, ``sentiment``,
  ``processed_message_content``), ``created_at.to_i``, ``message_type`` as an integer,
  ``conversation_id`` the display id, ``conversation`` {assignee_id, unread_count,
  last_activity_at, contact_inbox {source_id}}, ``echo_id`` when present, ``attachments`` (each
  ``Attachment#push_event_data``, **``nil`` for an attachment of unknown file type**), ``sender``;
* ``Conversations::EventDataPresenter#push_data``: display id, ``contact_inbox`` as a record
  (with its own ``pubsub_token``), ``meta`` {sender, assignee, assignee_type, team,
  hmac_verified}, timestamps as ``to_i`` except ``updated_at.to_f`` (a float),
  ``first_reply_created_at``/``snoozed_until`` as ISO strings or null, ``waiting_since.to_i``;
  enterprise adds ``sla_policy_id``, ``applied_sla``, ``sla_events``; newer versions ``performer``;
* ``ActionCableListener``: typing events ``{conversation, user, is_private}`` where
  ``is_private`` is the request parameter as sent (**the string ``"true"``**); every broadcast
  gets ``account_id`` merged in; ``Notification#push_event_data`` inside
  ``{notification, unread_count, count}``; ``RoomChannel#broadcast_presence``
  ``{account_id, users: {"7": "online"}, contacts: {...}}`` (Redis ids: strings);
  ``account.cache_invalidated`` ``{cache_keys: {label, inbox, team}}`` (values read back from
  Redis: strings); ``CopilotMessage#push_event_data``.

Genesys Web Services, from its documentation ("CometD notifications": Voice API
``CallsMessageType``, the ``Dial``/``AuxWork``/``NotReady`` operation pages; the chat API's
``ChatStateChangeMessage``/``MessageLogUpdated`` examples).

>>> len(CHATWOOT_CORPUS) >= 20 and all(len(e) == 3 for e in CHATWOOT_CORPUS)
True
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHATWOOT_CORPUS", "GWS_EXAMPLES"]

_TS = 1700000000
_ISO = "2023-11-14T22:13:20.123Z"

_USER = {
    "id": 7,
    "name": "Ana Agent",
    "available_name": "Ana",
    "avatar_url": "https://chat.example.com/rails/active_storage/ana.png",
    "type": "user",
    "availability_status": "online",
    "thumbnail": "https://chat.example.com/rails/active_storage/ana.png",
}
_BOT = {"id": 3, "name": "Captain", "avatar_url": "", "type": "agent_bot"}
_CONTACT = {
    "additional_attributes": {"city": "Lisbon", "social_profiles": {}},
    "custom_attributes": {"plan": "pro"},
    "email": "bo@example.com",
    "id": 101,
    "identifier": None,
    "name": "Bo Contact",
    "phone_number": "+351910000000",
    "thumbnail": "",
    "blocked": False,
    "type": "contact",
}
_IMAGE = {
    "id": 55,
    "message_id": 901,
    "file_type": "image",
    "account_id": 1,
    "extension": None,
    "data_url": "https://chat.example.com/rails/active_storage/blobs/photo.jpg",
    "thumb_url": "https://chat.example.com/rails/active_storage/representations/photo.jpg",
    "file_size": 48213,
    "width": 1280,
    "height": 960,
    "meta": {},
}
_LOCATION = {
    "id": 56,
    "message_id": 901,
    "file_type": "location",
    "account_id": 1,
    "extension": None,
    "meta": {},
    "coordinates_lat": 38.7223,
    "coordinates_long": -9.1393,
    "fallback_title": "Lisbon",
    "data_url": "https://maps.example.com/?q=38.7223,-9.1393",
}


def _message(**extra: Any) -> dict[str, Any]:
    return {
        "id": 901,
        "content": "Hi, my order is late",
        "account_id": 1,
        "inbox_id": 2,
        "conversation_id": 42,
        "message_type": 0,
        "created_at": _TS,
        "updated_at": _ISO,
        "private": False,
        "status": "sent",
        "source_id": None,
        "content_type": "text",
        "content_attributes": {},
        "sender_type": "Contact",
        "sender_id": 101,
        "external_source_ids": {},
        "additional_attributes": {},
        "processed_message_content": "Hi, my order is late",
        "sentiment": {},
        "conversation": {
            "assignee_id": 7,
            "unread_count": 1,
            "last_activity_at": _TS,
            "contact_inbox": {"source_id": "c7b1-src"},
        },
        "sender": _CONTACT,
        **extra,
    }


def _conversation(**extra: Any) -> dict[str, Any]:
    return {
        "additional_attributes": {"browser": {"name": "Firefox"}},
        "can_reply": True,
        "channel": "Channel::WebWidget",
        "contact_inbox": {
            "id": 9,
            "contact_id": 101,
            "inbox_id": 2,
            "source_id": "c7b1-src",
            "created_at": _ISO,
            "updated_at": _ISO,
            "hmac_verified": False,
            "pubsub_token": "contact-inbox-token-not-ours",
        },
        "id": 42,
        "inbox_id": 2,
        "messages": [_message()],
        "labels": ["billing"],
        "meta": {
            "sender": _CONTACT,
            "assignee": _USER,
            "assignee_type": "User",
            "team": {"id": 4, "name": "support"},
            "hmac_verified": False,
        },
        "status": "open",
        "custom_attributes": {},
        "snoozed_until": None,
        "unread_count": 1,
        "first_reply_created_at": _ISO,
        "priority": None,
        "waiting_since": 0,
        "agent_last_seen_at": _TS,
        "contact_last_seen_at": 0,
        "last_activity_at": _TS,
        "timestamp": _TS,
        "created_at": _TS,
        "updated_at": _TS + 0.123456,
        **extra,
    }


_NOTIFICATION = {
    "id": 500,
    "notification_type": "conversation_mention",
    "primary_actor_type": "Conversation",
    "primary_actor_id": 42,
    "primary_actor": _conversation(),
    "read_at": None,
    "secondary_actor": _USER,
    "user": _USER,
    "created_at": _TS,
    "last_activity_at": _TS,
    "snoozed_until": None,
    "meta": {},
    "account_id": 1,
    "push_message_title": "Ana mentioned you in conversation #42",
    "push_message_body": "@Bo can you check this?",
}

#: ``(event name, data as Chatwoot broadcasts it (before ``account_id`` is merged), model class
#: name in realtime_sync.models.voxsig)``.
CHATWOOT_CORPUS: list[tuple[str, dict[str, Any], str]] = [
    ("conversation.created", _conversation(), "Conversation"),
    ("conversation.read", _conversation(), "Conversation"),
    ("conversation.updated", _conversation(performer=_USER), "Conversation"),
    ("conversation.status_changed", _conversation(status="resolved", performer=_BOT), "Conversation"),
    (
        "conversation.updated",
        _conversation(
            sla_policy_id=3,
            applied_sla={"id": 8, "sla_id": 3, "sla_status": "active", "created_at": _TS, "updated_at": _TS},
            sla_events=[{"id": 1, "event_type": "frt", "created_at": _TS}],
        ),
        "Conversation",
    ),
    ("conversation.contact_changed", _conversation(), "Conversation"),
    ("conversation.mentioned", _conversation(), "Conversation"),
    ("assignee.changed", _conversation(), "Conversation"),
    ("team.changed", _conversation(), "Conversation"),
    ("conversation.typing_on", {"conversation": _conversation(), "user": _USER, "is_private": "true"}, "TypingEvent"),
    (
        "conversation.typing_off",
        {"conversation": _conversation(), "user": _CONTACT, "is_private": "false"},
        "TypingEvent",
    ),
    ("message.created", _message(), "Message"),
    ("message.created", _message(attachments=[_IMAGE, None, _LOCATION], echo_id="tmp-7f3a"), "Message"),
    (
        "message.created",
        _message(id=902, message_type=1, sender_type="User", sender_id=7, sender=_USER, private=True, content="note"),
        "Message",
    ),
    ("message.created", _message(id=903, message_type=3, sender_type="AgentBot", sender_id=3, sender=_BOT), "Message"),
    ("message.updated", _message(status="read", sentiment={"label": "positive", "score": 0.93}), "Message"),
    ("contact.created", dict(_CONTACT), "Contact"),
    ("contact.updated", {**_CONTACT, "blocked": True}, "Contact"),
    ("contact.deleted", dict(_CONTACT), "Contact"),
    ("contact.merged", dict(_CONTACT), "Contact"),
    ("notification.created", {"notification": _NOTIFICATION, "unread_count": 3, "count": 12}, "NotificationEvent"),
    (
        "notification.updated",
        {"notification": {**_NOTIFICATION, "read_at": _ISO}, "unread_count": 2, "count": 12},
        "NotificationEvent",
    ),
    ("notification.deleted", {"notification": {"id": 500}, "unread_count": 2, "count": 11}, "NotificationEvent"),
    ("presence.update", {"users": {"7": "online", "8": "busy"}, "contacts": {"101": "online"}}, "Presence"),
    (
        "account.cache_invalidated",
        {"cache_keys": {"label": "1700000001", "inbox": "1700000002", "team": 0}},
        "CacheInvalidated",
    ),
    (
        "copilot.message.created",
        {
            "id": 77,
            "message": {"content": "Here is a summary", "reasoning": "..."},
            "message_type": "assistant",
            "created_at": _TS,
            "copilot_thread": {
                "id": 12,
                "title": "Order 42",
                "created_at": _TS,
                "user": _USER,
                "assistant": {"id": 1, "name": "Captain"},
            },
        },
        "CopilotMessage",
    ),
]

#: ``(channel, data, expected event name, model class name in realtime_sync.models.genesys,
#: expected entity id)`` from the GWS documentation's examples.
GWS_EXAMPLES: list[tuple[str, dict[str, Any], str, str | None, Any]] = [
    (
        "/v2/me/devices",
        {
            "messageType": "DeviceStateChangeMessage",
            "devices": [
                {
                    "id": "efe1ab32-53f9-43ce-b65e-5768c61f7d4a",
                    "deviceState": "Active",
                    "userState": {
                        "id": "900D55CC-2BB0-431F-8BF9-D3525B383BE6",
                        "displayName": "Not Ready",
                        "state": "NotReady",
                    },
                    "phoneNumber": "5005",
                    "e164Number": "5005",
                    "telephonyNetwork": "Private",
                    "doNotDisturb": "Off",
                    "voiceEnvironmentUri": "http://127.0.0.1:8080/api/v2/voice-environments/370ef5e6-9e3c-4d91-9588-7f4dfe67e011",
                    "capabilities": ["DoNotDisturbOn", "ForwardCallsOn", "ListenIn", "Coach", "BargeIn"],
                }
            ],
        },
        "device.state_change",
        "DeviceStateChange",
        "efe1ab32-53f9-43ce-b65e-5768c61f7d4a",
    ),
    (
        "/v2/me/devices",
        {
            "messageType": "DeviceStateChangeMessage",
            "devices": [
                {
                    "id": "74152ed8-858f-4a33-9e96-36213a678d30",
                    "deviceState": "Active",
                    "userState": {
                        "id": "2B36138D-C564-4562-A8CB-3C32D564F296",
                        "displayName": "AuxWork",
                        "state": "NotReady",
                        "workMode": "AuxWork",
                    },
                    "phoneNumber": "5000",
                    "e164Number": "5000",
                    "telephonyNetwork": "Private",
                    "doNotDisturb": "Off",
                    "voiceEnvironmentUri": "http://127.0.0.1:8080/api/v2/voice-environments/370ef5e6-9e3c-4d91-9588-7f4dfe67e011",
                    "capabilities": ["ForwardCallsOn"],
                }
            ],
        },
        "device.state_change",
        "DeviceStateChange",
        "74152ed8-858f-4a33-9e96-36213a678d30",
    ),
    (
        "/v2/me/calls",
        {
            "messageType": "CallStateChangeMessage",
            "notificationType": "StatusChange",
            "extensions": {"WrapUpTime": 0, "BusinessCall": 0},
            "call": {
                "id": "013V08JRL498H1OI04000VTAES00000G",
                "connId": "0072026cb98d140f",
                "state": "Dialing",
                "callUuid": "013V08JRL498H1OI04000VTAES00000G",
                "deviceUri": "http://127.0.0.1:8080/api/v2/devices/efe1ab32-53f9-43ce-b65e-5768c61f7d4a",
                "uri": "http://127.0.0.1:8080/api/v2/me/calls/013V08JRL498H1OI04000VTAES00000G",
                "participants": ["5001"],
                "dnis": "5001",
                "callType": "Internal",
                "capabilities": ["HangUp"],
                "duration": 0,
                "mute": "Off",
                "supervisorListeningIn": "Off",
                "userData": {},
            },
        },
        "call.status_change",
        "CallStateChange",
        "013V08JRL498H1OI04000VTAES00000G",
    ),
    (
        "/v2/me/calls",
        {
            "messageType": "CallStateChangeMessage",
            "notificationType": "StatusChange",
            "call": {
                "id": "01NOSKNPB8AT3D4MUTCJ82LAES000111",
                "connId": "0072026cb98d140e",
                "state": "Established",
                "callUuid": "01NOSKNPB8AT3D4MUTCJ82LAES000111",
                "uri": "http://127.0.0.1:8080/api/v2/me/calls/01NOSKNPB8AT3D4MUTCJ82LAES000111",
                "participants": [{"formattedPhoneNumber": "5001", "phoneNumber": "5001", "e164Number": "5001"}],
                "ani": "5001",
                "callType": "Inbound",
                "capabilities": ["HangUp", "Hold", "InitiateTransfer"],
                "duration": "12",
                "userData": {"OrderId": "A-1001"},
            },
        },
        "call.status_change",
        "CallStateChange",
        "01NOSKNPB8AT3D4MUTCJ82LAES000111",
    ),
    (
        "/v2/me/chats",
        {
            "messageType": "ChatStateChangeMessage",
            "notificationType": "StatusChange",
            "chat": {
                "id": "0000Wa9CAM6W00J",
                "state": "Chatting",
                "participants": [{"nickname": "TestName", "type": "Agent", "participantId": "007352CE984F0321"}],
                "capabilities": ["Complete", "SendMessage", "SendStartTypingNotification"],
                "userData": {},
                "uri": "http://localhost:8080/api/v2/chats/0000Wa9CAM6W00J",
            },
        },
        "chat.status_change",
        "ChatStateChange",
        "0000Wa9CAM6W00J",
    ),
    (
        "/v2/me/chats",
        {
            "messageType": "MessageLogUpdated",
            "notificationType": "NewMessages",
            "messages": [
                {
                    "index": 3,
                    "from": {"nickname": "Customer1", "type": "Customer", "participantId": "00F0522BE4BF0007"},
                    "text": "Hello, can you help me?",
                    "visibility": "All",
                    "timestamp": "2014-01-09 11:58:12.035+0200",
                    "type": "Text",
                    "timestampSeconds": 1389261492035,
                }
            ],
            "chatUri": "http://localhost:8080/api/v2/chats/0000Wa9CAM6W00FN",
        },
        "chat.new_messages",
        "MessageLogUpdate",
        "0000Wa9CAM6W00FN",
    ),
    (
        # GWS also sends MessageLogUpdated on the Facebook session topic: not a chat.
        "/v2/me/facebooksession",
        {"messageType": "MessageLogUpdated", "notificationType": "NewMessages", "messages": []},
        "notification",
        None,
        "/v2/me/facebooksession",
    ),
]
