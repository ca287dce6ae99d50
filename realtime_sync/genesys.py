"""``GenesysChatClient``: Genesys (GWS) chat notifications over CometD.

GWS publishes chat notifications on the CometD topic ``/v2/me/chats`` of
``https://HOST/api/v2/notifications``.  Authentication is the REST API's: HTTP Basic, and/or
the session cookie (JSESSIONID) of a REST session, which must be shared with the notification
transport.  GWS 8.5 documents CometD *without* websocket support, so the client tries a
websocket and falls back to HTTP long-polling when the upgrade is refused.

Events (``event.entity_id`` is the chat id):

==============================  ========================================  ==========================
event                           wire                                      ``event.data``
==============================  ========================================  ==========================
``chat.status_change``          ChatStateChangeMessage / StatusChange     :class:`ChatStateChange`
``chat.participants_updated``   ChatStateChangeMessage / ParticipantsUpd  :class:`ChatStateChange`
``chat.properties_updated``     ChatStateChangeMessage / PropertiesUpd    :class:`ChatStateChange`
``chat.error``                  ChatStateChangeMessage / Error            :class:`ChatStateChange`
``chat.new_messages``           MessageLogUpdated / NewMessages           :class:`MessageLogUpdate`
``notification``                any other topic or message type           the ``data`` dict;
                                                                          entity_id = the channel
``handshake``                   a new CometD session (2+: one was lost)   ``SessionInfo``
==============================  ========================================  ==========================

(Another notificationType of the two chat message types arrives as ``chat.<snake_case>``.)
"""

from __future__ import annotations

import functools
import urllib.parse
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal, overload

from ._csrf import CsrfSource
from ._validate import websocket_url
from .client import _Timeout, _Where
from .cometd import CometDClient, _HandshakeEvents
from .events import Event
from .models.genesys import (
    _EVENT_NAMES,
    CALL_EVENTS,
    DEVICE_EVENTS,
    NOTIFICATION_EVENT,
    CallStateChange,
    ChatStateChange,
    DeviceStateChange,
    MessageLogUpdate,
    _topic,
    decode_notification,
)
from .protocols.bayeux import SessionInfo

__all__ = ["GENESYS_NOTIFICATIONS_PATH", "GenesysChatClient"]

_TOPIC_EVENTS = {"calls": frozenset(CALL_EVENTS), "devices": frozenset(DEVICE_EVENTS)}


@functools.lru_cache(maxsize=64)
def _with_topic_events(known: frozenset[str], topic: str) -> frozenset[str]:
    """``known`` and the events of ``topic``: one set shared by all clients on the same topics
    (a hub holds thousands of clients)."""
    return known | _TOPIC_EVENTS.get(topic, frozenset())


GENESYS_NOTIFICATIONS_PATH = "/api/v2/notifications"

# The event names whose data is typed, for the typed overloads of wait_for() and events().
_ChatStateEvents = Literal["chat.status_change", "chat.participants_updated", "chat.properties_updated", "chat.error"]
_MessageLogEvents = Literal["chat.new_messages"]
_CallEvents = Literal[
    "call.status_change", "call.participants_updated", "call.attached_data_changed", "call.call_recording_state_change"
]
_DeviceEvents = Literal["device.state_change"]


def _normalise_url(url: str) -> str:
    url = websocket_url(
        url, "GenesysChatClient", schemes=("https", "http", "wss", "ws"), example="https://HOST/api/v2/notifications"
    )
    parts = urllib.parse.urlsplit(url)
    if parts.path in ("", "/"):
        # Only the host was given: GWS serves CometD at /api/v2/notifications.
        parts = parts._replace(path=GENESYS_NOTIFICATIONS_PATH)
    return urllib.parse.urlunsplit(parts)


class GenesysChatClient(CometDClient):
    """Chat notifications from Genesys Web Services (see the module docstring for the events).

    Args:
        url: ``https://HOST/api/v2/notifications`` (GWS form; ``https://HOST`` alone works too)
            or a ``ws(s)://`` URL; each transport derives its own from it.
        topics: CometD topics to subscribe to; ``/v2/me/chats`` by default, siblings such as
            ``/v2/me/calls`` (``call.*`` events) and ``/v2/me/devices`` (``device.state_change``)
            allowed; other topics' messages arrive as ``notification`` events.
        username, password: HTTP Basic credentials (the agent's GWS login); also read from the
            URL (``https://agent1:PASSWORD@HOST/...``, percent-encoded), as curl does.
        cookies: e.g. ``{"JSESSIONID": session.cookies["JSESSIONID"]}`` from a REST session;
            cookies the server sets later are kept and sent by both transports.
        transport: ``"auto"`` (websocket, else long-polling), ``"websocket"``, ``"long-polling"``.
        csrf: for a GWS node with CSRF protection on (``enableCsrfProtection``): ``True`` reads
            the token from ``GET https://HOST/api/v2/me`` with the same credentials and cookies
            (GWS answers with ``X-CSRF-HEADER``, the header name, and ``X-CSRF-TOKEN``, the
            token, and sets the ``JSESSIONID`` the token belongs to); an http(s) URL reads it
            there; a callable returns the token, or a ``(header name, token)`` pair, e.g. from
            your own REST session.  It is fetched before the connection's first request and sent
            on every long-polling ``POST``; after a 403 it is fetched again once, on a new
            connection at once (the CometD session resumes); a 403 with the new one is a
            credential refusal (``error`` kind ``auth``, the auth backoff).  The token is a
            secret: never logged, shown or put in an event.  The websocket transport needs none
            (its upgrade is a ``GET``, which GWS does not check).
        **options: everything :class:`~realtime_sync.CometDClient` takes.

    >>> client = rs.GenesysChatClient("https://gws.example.com/api/v2/notifications",
    ...                               username="agent1", password=PASSWORD)   # doctest: +SKIP
    >>> @client.on("chat.new_messages")                                        # doctest: +SKIP
    ... def show(event):
    ...     for m in event.data.messages:
    ...         print(event.entity_id, m.index, m.from_.nickname, m.text)
    >>> client.run_forever()                                                   # doctest: +SKIP

    With CSRF protection on the GWS side::

        client = rs.GenesysChatClient(GWS_URL, username="agent1", password=PASSWORD, csrf=True)
    """

    url_example = "https://HOST/api/v2/notifications"
    #: The chat notifications, and "notification" for the other topics' messages.
    known_events = frozenset({*_EVENT_NAMES.values(), NOTIFICATION_EVENT})

    if TYPE_CHECKING:
        # For type checkers only (at run time these are Client's methods): wait_for() and
        # events() of a chat, call or device event name give its model, "handshake" a
        # SessionInfo (as on CometDClient); "notification" (the decoded data of another topic),
        # any other name or a pattern give Event[Any].  The ignores: mypy refuses narrower
        # names in front of the parent's catch-all str overload although every return here is
        # an Event[...] where the parent promises Event[Any] for the same name.

        @overload  # type: ignore[override]
        def wait_for(
            self, name: _HandshakeEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[SessionInfo]: ...
        @overload
        def wait_for(
            self, name: _ChatStateEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[ChatStateChange]: ...
        @overload
        def wait_for(
            self, name: _MessageLogEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[MessageLogUpdate]: ...
        @overload
        def wait_for(
            self, name: _CallEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[CallStateChange]: ...
        @overload
        def wait_for(
            self, name: _DeviceEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[DeviceStateChange]: ...
        @overload
        def wait_for(self, name: str, timeout: _Timeout = None, where: _Where = None) -> Event[Any]: ...
        def wait_for(self, name: str, timeout: _Timeout = None, where: _Where = None) -> Event[Any]: ...

        @overload  # type: ignore[override]
        def events(
            self, name: _HandshakeEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[SessionInfo]]: ...
        @overload
        def events(
            self, name: _ChatStateEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[ChatStateChange]]: ...
        @overload
        def events(
            self, name: _MessageLogEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[MessageLogUpdate]]: ...
        @overload
        def events(
            self, name: _CallEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[CallStateChange]]: ...
        @overload
        def events(
            self, name: _DeviceEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[DeviceStateChange]]: ...
        @overload
        def events(
            self, name: str = "*", *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[Any]]: ...
        def events(
            self, name: str = "*", *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[Any]]: ...

    def __init__(
        self,
        url: str,
        topics: Iterable[str] = ("/v2/me/chats",),
        *,
        csrf: CsrfSource | None = None,  # typed here: a callable's return type is checked
        **options: Any,
    ) -> None:
        if isinstance(topics, str):
            topics = (topics,)
        options.setdefault("decoder", decode_notification)
        super().__init__(_normalise_url(url), csrf=csrf, **options)
        self.topics = tuple(topics)
        for topic in self.topics:
            self.subscribe(topic)

    def subscribe(self, channel: str) -> None:
        """Subscribe to another GWS topic (see :meth:`CometDClient.subscribe`), e.g.
        ``/v2/me/calls``: its events (``call.status_change``...) are then known to ``on()``."""
        super().subscribe(channel)
        # on()'s typo warning knows the names of the subscribed topics' events too.
        self.known_events = _with_topic_events(self.known_events, _topic(channel))
