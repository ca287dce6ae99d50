"""Fake ActionCable and Voxsig servers: real websocket servers on 127.0.0.1 speaking ActionCable.

:class:`FakeActionCableServer` behaves like a Rails ActionCable server as far as a client can
tell (PROTOCOLS.md section 3): it checks the ``Origin`` header (HTTP 404 when it does not match),
selects the ``actioncable-v1-json`` subprotocol, sends ``welcome`` and a ``ping`` every 3 s,
confirms or rejects subscriptions by a scriptable rule, keys subscriptions by the exact
identifier string, ignores duplicate subscribes, and stays *silent* where Rails is silent
(malformed frames, unknown identifiers, a channel that raises in ``subscribed``).

:class:`FakeVoxsigServer` adds Chatwoot's RoomChannel: a token table, ``update_presence``
recording and the ``presence.update`` answer (at subscribe too), 20 s presence, streams per
pubsub token and per account (one agent stream carries every account of the user), never a
``reject_subscription``.

    >>> from realtime_sync.testing.actioncable import FakeVoxsigServer
    >>> with FakeVoxsigServer() as server:                              # doctest: +SKIP
    ...     client = VoxsigClient(server.url, "user-token-1", account_id=1, user_id=7)
    ...     client.start()
    ...     server.wait_for_subscription("user-token-1")
    ...     server.send_event("user-token-1", "message.created", message_payload(1, conversation_id=42))
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

import attrs

from .server import FakeConnection, FakeServer

if TYPE_CHECKING:
    # typing.Self is 3.11+; type checkers bundle typing_extensions (no run-time dependency).
    from typing_extensions import Self

__all__ = [
    "FakeActionCableServer",
    "FakeVoxsigServer",
    "Performed",
    "contact_payload",
    "conversation_payload",
    "message_payload",
    "notification_payload",
    "typing_payload",
    "user_payload",
]

CONFIRM = "confirm"
REJECT = "reject"
#: Rails' behaviour when the channel raises inside ``subscribed``: no answer at all, and the
#: subscription stays registered on the connection (so a duplicate subscribe is ignored).
SILENT = "silent"


@attrs.frozen
class Performed:
    """A channel action a client performed: ``{"command":"message","data":"{\\"action\\":...}"}``."""

    conn_id: int
    identifier: str
    params: Mapping[str, Any]
    action: str
    data: Mapping[str, Any]
    at: float  # time.monotonic()


@attrs.define
class _ServerSub:
    identifier: str
    params: dict[str, Any]
    status: str  # CONFIRM or SILENT
    streams: tuple[str, ...] = ()


class FakeActionCableServer(FakeServer):
    """A scriptable ActionCable server (see the module docstring).

    Args:
        ping_interval: seconds between ``ping`` frames (``None``: no pings).
        allowed_origins: exact Origin values accepted; default ``http://HOST:PORT`` like a Rails
            app whose ``allowed_request_origins`` lists its own address.  ``check_origin=False``
            accepts any Origin (or none).
        rule: ``rule(params) -> "confirm" | "reject" | "silent"`` for each subscribe; default:
            channels in ``rejected_channels`` are rejected, channels in ``silent_channels`` get no
            answer, the rest are confirmed.

    Scripting: :meth:`broadcast`, :meth:`disconnect`, :meth:`server_restart`,
    ``reject_connections`` (unauthorized), ``pings_enabled``, ``ignore_subscribes`` (drop the next
    N subscribe commands as if lost), plus everything :class:`FakeServer` offers (``drop_all``,
    ``go_silent``, ``restart``, ``refuse``...).
    """

    subprotocols = ("actioncable-v1-json", "actioncable-unsupported")
    path = "/cable"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ping_interval: float | None = 3.0,
        allowed_origins: list[str] | None = None,
        check_origin: bool = True,
        rule: Callable[[dict[str, Any]], str] | None = None,
        max_size: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host, port, max_size=max_size, ssl_context=ssl_context)
        self.ping_interval = ping_interval
        self.allowed_origins = allowed_origins
        self.check_origin = check_origin
        self.rule = rule
        self.rejected_channels: set[str] = set()
        self.silent_channels: set[str] = set()
        self.reject_connections = False
        self.pings_enabled = True
        self.send_welcome = True
        self.ignore_subscribes = 0
        self.performed: list[Performed] = []
        self.subscribe_commands: list[tuple[int, str]] = []  # (conn_id, identifier), every one received
        self._subs_lock = threading.RLock()

    def start(self) -> Self:
        """Start listening (see :meth:`FakeServer.start`); returns the server."""
        super().start()
        return self

    def __enter__(self) -> Self:
        return self.start()

    # -- handshake and connection ----------------------------------------------------------

    @property
    def origin(self) -> str:
        """The Origin this server accepts by default (``http://HOST:PORT``, ``https://`` when it
        serves TLS), as a Rails app whose ``allowed_request_origins`` lists its own address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.ssl_context is not None else 'http'}://{host}:{self.port}"

    def check_request(self, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        if path.split("?", 1)[0] != self.path:
            return (404, "Not Found")
        if self.check_origin:
            origin = next((v for k, v in headers.items() if k.lower() == "origin"), None)
            allowed = self.allowed_origins if self.allowed_origins is not None else [self.origin]
            if origin not in allowed:
                # Rails: "Request origin not allowed" -> a plain HTTP 404, no websocket.
                return (404, "Page not found")
        return None

    def on_start(self) -> None:
        if self.ping_interval and self.scheduler is not None:
            self.scheduler.every(self.ping_interval, self._ping_all)

    def on_connect(self, conn: FakeConnection) -> None:
        conn.state["subs"] = {}
        if self.reject_connections or "reject=1" in conn.path.partition("?")[2].split("&"):
            # reject_unauthorized_connection: the socket opens, one frame, then the close.
            conn.send({"type": "disconnect", "reason": "unauthorized", "reconnect": False})
            conn.close()
            return
        if self.send_welcome:
            conn.state["welcomed"] = True
            conn.send({"type": "welcome"})

    def _ping_all(self) -> None:
        if not self.pings_enabled:
            return
        frame = {"type": "ping", "message": int(time.time())}
        for conn in self.live_connections():
            if conn.state.get("welcomed"):
                conn.send(frame)

    # -- commands --------------------------------------------------------------------------

    def on_message(self, conn: FakeConnection, text: str) -> None:
        # Everything malformed is silently ignored, as Rails does (it only logs).
        try:
            msg = json.loads(text)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        ident = msg.get("identifier")
        if not isinstance(ident, str):
            return
        try:
            params = json.loads(ident)
        except ValueError:
            return
        if not isinstance(params, dict):
            return
        command = msg.get("command")
        if command == "subscribe":
            self._subscribe(conn, ident, params)
        elif command == "unsubscribe":
            with self._subs_lock:
                sub = conn.state["subs"].pop(ident, None)
            if sub is not None:
                self.on_unsubscribed(conn, sub)
        elif command == "message":
            with self._subs_lock:
                sub = conn.state["subs"].get(ident)
            data_text = msg.get("data")
            if sub is None or sub.status != CONFIRM or not isinstance(data_text, str):
                return
            try:
                data = json.loads(data_text)
            except ValueError:
                return
            if not isinstance(data, dict) or not isinstance(data.get("action"), str):
                return
            performed = Performed(conn.id, ident, params, data["action"], data, time.monotonic())
            with self._cond:
                self.performed.append(performed)
                self._cond.notify_all()
            self.on_perform(conn, sub, data["action"], data)

    def _subscribe(self, conn: FakeConnection, ident: str, params: dict[str, Any]) -> None:
        with self._cond:
            self.subscribe_commands.append((conn.id, ident))
            self._cond.notify_all()
        if self.ignore_subscribes > 0:
            self.ignore_subscribes -= 1
            return
        with self._subs_lock:
            if ident in conn.state["subs"]:
                return  # Rails ignores a duplicate subscribe: no second confirmation
            decision = self.decide(params)
            if decision == REJECT:
                conn.send({"identifier": ident, "type": "reject_subscription"})
                return
            sub = _ServerSub(
                ident, params, SILENT if decision == SILENT else CONFIRM, tuple(self.streams_for(ident, params))
            )
            conn.state["subs"][ident] = sub
            if sub.status == CONFIRM:
                conn.send({"identifier": ident, "type": "confirm_subscription"})
        with self._cond:
            self._cond.notify_all()
        if sub.status == CONFIRM:
            self.on_subscribed(conn, sub)

    # -- hooks for subclasses --------------------------------------------------------------

    def decide(self, params: dict[str, Any]) -> str:
        """``"confirm"``, ``"reject"`` or ``"silent"`` for a subscribe with these params."""
        if self.rule is not None:
            return self.rule(params)
        channel = params.get("channel")
        if channel in self.rejected_channels:
            return REJECT
        if channel in self.silent_channels:
            return SILENT
        return CONFIRM

    def streams_for(self, identifier: str, params: dict[str, Any]) -> list[str]:
        """Stream names a confirmed subscription listens to (default: its identifier string)."""
        return [identifier]

    def on_subscribed(self, conn: FakeConnection, sub: _ServerSub) -> None:
        """A subscription was confirmed."""

    def on_unsubscribed(self, conn: FakeConnection, sub: _ServerSub) -> None:
        """A client unsubscribed."""

    def on_perform(self, conn: FakeConnection, sub: _ServerSub, action: str, data: dict[str, Any]) -> None:
        """A channel action arrived (already recorded in ``performed``)."""

    # -- scripting -------------------------------------------------------------------------

    def subscriptions(
        self, conn: FakeConnection | None = None, *, confirmed_only: bool = True
    ) -> list[tuple[FakeConnection, str]]:
        """``(connection, identifier)`` of the live subscriptions (of one connection, if given)."""
        out = []
        with self._subs_lock:
            for c in [conn] if conn is not None else self.live_connections():
                for ident, sub in c.state.get("subs", {}).items():
                    if not confirmed_only or sub.status == CONFIRM:
                        out.append((c, ident))
        return out

    def broadcast(self, stream: str | Mapping[str, Any], message: Any) -> int:
        """Send ``message`` to every confirmed subscription listening to ``stream``.

        ``stream`` is a stream name (for the generic server: the identifier string) or an
        identifier object (matched by equality of the decoded params).  Returns how many
        subscriptions got it.
        """
        targets: list[tuple[FakeConnection, str]] = []
        with self._subs_lock:
            for c in self.live_connections():
                for ident, sub in c.state.get("subs", {}).items():
                    if sub.status != CONFIRM:
                        continue
                    if (sub.params == dict(stream)) if isinstance(stream, Mapping) else (stream in sub.streams):
                        targets.append((c, ident))
        return sum(1 for c, ident in targets if c.send({"identifier": ident, "message": message}))

    def disconnect(self, reason: str = "remote", reconnect: bool = True, conn: FakeConnection | None = None) -> int:
        """Send ``{"type":"disconnect",...}`` and close, like ``connection.close(reason:, reconnect:)``."""
        targets = [conn] if conn is not None else self.live_connections()
        for c in targets:
            c.send({"type": "disconnect", "reason": reason, "reconnect": reconnect})
            c.close()
        return len(targets)

    def server_restart(self) -> int:
        """What ``ActionCable.server.restart`` does: ``disconnect`` with ``server_restart`` to everyone."""
        return self.disconnect("server_restart", True)

    def wait_for_subscription(
        self, match: str | Callable[[str], bool], timeout: float = 5.0, *, count: int = 1
    ) -> None:
        """Wait until ``count`` live confirmed subscriptions match (``match``: a substring of the
        identifier, or a predicate on it)."""

        def pred(ident: str) -> bool:
            return match(ident) if callable(match) else match in ident

        self.wait_until(lambda: sum(1 for _c, i in self.subscriptions() if pred(i)) >= count, timeout)

    def wait_for_performed(self, action: str, count: int = 1, timeout: float = 5.0) -> list[Performed]:
        """Wait until ``count`` actions named ``action`` were performed; returns them all."""
        self.wait_until(lambda: sum(1 for p in self.performed if p.action == action) >= count, timeout)
        return [p for p in self.performed if p.action == action]


# -- Voxsig -----------------------------------------------------------------------------------


class FakeVoxsigServer(FakeActionCableServer):
    """A fake Voxsig (Chatwoot) cable: RoomChannel with a token table, accounts and presence.

    It behaves as Chatwoot's ``RoomChannel`` and ``OnlineStatusTracker`` do (PROTOCOLS.md
    section 3; ``app/channels/room_channel.rb``, ``lib/online_status_tracker.rb``):

    * Tokens: ``users`` maps user pubsub tokens to user ids (the identifier's ``user_id`` must
      match), ``contacts`` maps contact tokens to contact ids (no ``user_id``).  A user is an
      agent of every account in ``user_accounts`` (default: accounts 1 and 2).
    * It **never** sends ``reject_subscription``: an unknown token, a ``user_id`` without
      ``account_id``, an account the user is not in, or a token in ``silent_tokens`` get no
      answer at all (``find_by!`` / ``accounts.find`` raise inside ``subscribed``).
    * ``subscribed`` records presence and broadcasts ``presence.update``; so does every
      ``update_presence`` action.  Presence lasts ``presence_duration`` seconds (20, Chatwoot's
      ``PRESENCE_DURATION``); :meth:`online_users` says who is online now.
    * Streams: the pubsub token, and for a user ``"account_<id>"`` of *every* account the user is
      in: the token is the user's, not the account's, so one agent stream carries every account's
      broadcasts.  :meth:`send_event` to ``"account_2"`` stamps ``account_id`` 2 on the data.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        users: Mapping[str, int] | None = None,
        contacts: Mapping[str, int] | None = None,
        account_id: int = 1,
        user_accounts: tuple[int, ...] = (1, 2),
        presence_duration: float = 20.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(host, port, **kwargs)
        self.users: dict[str, int] = dict(users if users is not None else {"user-token-1": 7, "user-token-2": 8})
        self.contacts: dict[str, int] = dict(contacts if contacts is not None else {"contact-token-1": 101})
        self.account_id = account_id
        self.user_accounts = tuple(user_accounts)
        self.presence_duration = presence_duration
        self.silent_tokens: set[str] = {"explode"}
        self.presence: list[tuple[str, float]] = []  # (token, monotonic time) of every update_presence
        self.answer_presence = True
        self._online: dict[tuple[int, str, int], float] = {}  # (account, kind, id) -> last seen

    def _who(self, params: Mapping[str, Any]) -> tuple[str, int] | None:
        token = params.get("pubsub_token")
        user_id = params.get("user_id")
        if not isinstance(token, str):
            return None
        if user_id is None:
            return ("contact", self.contacts[token]) if token in self.contacts else None
        uid = self.users.get(token)
        return ("user", uid) if uid is not None and str(uid) == str(user_id) else None

    def _account_of(self, params: Mapping[str, Any]) -> int | None:
        who = self._who(params)
        if who is None:
            return None
        if who[0] == "contact":
            return self.account_id  # a contact belongs to its inbox's account
        try:
            account = int(params.get("account_id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        return account if account in self.user_accounts else None

    def decide(self, params: dict[str, Any]) -> str:
        if self.rule is not None:
            return self.rule(params)
        if params.get("channel") != "RoomChannel":
            return SILENT  # Rails logs "Subscription class not found" and answers nothing
        if params.get("pubsub_token") in self.silent_tokens or self._account_of(params) is None:
            return SILENT
        return CONFIRM

    def streams_for(self, identifier: str, params: dict[str, Any]) -> list[str]:
        token = str(params.get("pubsub_token"))
        who = self._who(params)
        streams = [token]
        if who is not None and who[0] == "user":
            streams += [f"account_{a}" for a in self.user_accounts]
        return streams

    def _seen(self, sub: _ServerSub) -> tuple[str, int] | None:
        who = self._who(sub.params)
        account = self._account_of(sub.params)
        if who is not None and account is not None:
            with self._cond:
                self._online[(account, who[0], who[1])] = time.monotonic()
        return who

    def _broadcast_presence(self, sub: _ServerSub, who: tuple[str, int] | None) -> None:
        if not self.answer_presence:
            return
        account = self._account_of(sub.params) or self.account_id
        data = self.presence_payload("contact" if who is None else who[0], account)
        self.broadcast(str(sub.params.get("pubsub_token")), {"event": "presence.update", "data": data})

    def on_subscribed(self, conn: FakeConnection, sub: _ServerSub) -> None:
        # RoomChannel#subscribed: update_subscription + broadcast_presence.
        self._broadcast_presence(sub, self._seen(sub))

    def on_perform(self, conn: FakeConnection, sub: _ServerSub, action: str, data: dict[str, Any]) -> None:
        if action != "update_presence":
            return  # Rails: "Unable to process RoomChannel#...": logged, nothing sent
        token = str(sub.params.get("pubsub_token"))
        with self._cond:
            self.presence.append((token, time.monotonic()))
            self._cond.notify_all()
        self._broadcast_presence(sub, self._seen(sub))

    def online_users(self, account_id: int | None = None) -> dict[str, str]:
        """``{"7": "online"}``: the users with a presence in the last ``presence_duration`` s."""
        return self.presence_payload("user", account_id)["users"]  # type: ignore[no-any-return]

    def presence_payload(self, kind: str = "user", account_id: int | None = None) -> dict[str, Any]:
        """``{"account_id", "users": {"7": "online"}, "contacts": {...}}`` of who was seen in the
        last ``presence_duration`` seconds (``contacts`` only for a user's subscription)."""
        account = self.account_id if account_id is None else account_id
        cutoff = time.monotonic() - self.presence_duration
        with self._cond:
            online = sorted((k, i) for (a, k, i), t in self._online.items() if a == account and t >= cutoff)
        data: dict[str, Any] = {"account_id": account, "users": {str(i): "online" for (k, i) in online if k == "user"}}
        if kind == "user":
            data["contacts"] = {str(i): "online" for (k, i) in online if k == "contact"}
        return data

    def presence_count(self, token: str) -> int:
        """How many ``update_presence`` actions arrived for ``token``."""
        return sum(1 for t, _at in self.presence if t == token)

    def presence_times(self, token: str) -> list[float]:
        """Monotonic times of the ``update_presence`` actions for ``token``."""
        return [at for t, at in self.presence if t == token]

    def wait_for_presence(self, token: str, count: int = 1, timeout: float = 5.0) -> list[float]:
        """Wait until ``count`` presence updates arrived for ``token``; returns their times."""
        self.wait_until(lambda: self.presence_count(token) >= count, timeout)
        return self.presence_times(token)

    def send_event(self, stream: str, event: str, data: Mapping[str, Any] | Any) -> int:
        """Broadcast ``{"event": event, "data": data}`` with ``account_id`` added, as Chatwoot does
        (the stream's account for ``"account_<id>"``, else the server's ``account_id``)."""
        if isinstance(data, Mapping):
            account: int = self.account_id
            if stream.startswith("account_") and stream[8:].isdigit():
                account = int(stream[8:])
            data = {**data, "account_id": data.get("account_id", account)}
        return self.broadcast(stream, {"event": event, "data": data})


# -- payload factories (Chatwoot's push_event_data shapes) -------------------------------------


def user_payload(user_id: int = 7, name: str = "Ana Agent", **extra: Any) -> dict[str, Any]:
    """An agent as in ``user.push_event_data``."""
    return {
        "id": user_id,
        "name": name,
        "available_name": name,
        "avatar_url": "",
        "type": "user",
        "availability_status": "online",
        "thumbnail": "",
        **extra,
    }


def contact_payload(contact_id: int = 101, name: str = "Bo Contact", **extra: Any) -> dict[str, Any]:
    """A contact as in ``contact.push_event_data``."""
    return {
        "additional_attributes": {},
        "custom_attributes": {},
        "email": f"contact{contact_id}@example.com",
        "id": contact_id,
        "identifier": None,
        "name": name,
        "phone_number": None,
        "thumbnail": "",
        "type": "contact",
        **extra,
    }


def conversation_payload(conversation_id: int = 42, status: str = "open", **extra: Any) -> dict[str, Any]:
    """A conversation as in ``conversation.push_event_data`` (unix-second timestamps)."""
    now = int(time.time())
    return {
        "additional_attributes": {},
        "can_reply": True,
        "channel": "Channel::WebWidget",
        # The whole ContactInbox row, as Chatwoot sends it: its pubsub_token (the contact's own
        # secret) included.
        "contact_inbox": {
            "id": 9,
            "contact_id": 101,
            "inbox_id": 1,
            "source_id": "src-1",
            "hmac_verified": False,
            "pubsub_token": f"contact-pubsub-{conversation_id}",
        },
        "id": conversation_id,
        "inbox_id": 1,
        "messages": [],
        "labels": [],
        "meta": {"sender": contact_payload(), "assignee": user_payload(), "hmac_verified": False},
        "status": status,
        "unread_count": 0,
        "agent_last_seen_at": now,
        "contact_last_seen_at": now,
        "timestamp": now,
        "created_at": now,
        **extra,
    }


def message_payload(
    message_id: int = 1, conversation_id: int = 42, content: str = "Hello", *, incoming: bool = True, **extra: Any
) -> dict[str, Any]:
    """A message as in ``message.push_event_data`` (``created_at`` unix seconds, ``updated_at`` ISO)."""
    now = time.time()
    return {
        "id": message_id,
        "content": content,
        "inbox_id": 1,
        "conversation_id": conversation_id,
        "message_type": 0 if incoming else 1,
        "content_type": "text",
        "status": "sent",
        "content_attributes": {},
        "created_at": int(now),
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now)),
        "private": False,
        "source_id": None,
        "sender_type": "Contact" if incoming else "User",
        "sender_id": 101 if incoming else 7,
        "external_source_ids": {},
        "sender": contact_payload() if incoming else user_payload(),
        "attachments": [],
        **extra,
    }


def typing_payload(conversation_id: int = 42, *, by_contact: bool = True, is_private: bool = False) -> dict[str, Any]:
    """``conversation.typing_on/off`` data."""
    return {
        "conversation": conversation_payload(conversation_id),
        "user": contact_payload() if by_contact else user_payload(),
        "is_private": is_private,
    }


def notification_payload(
    notification_id: int = 500, conversation_id: int = 42, unread_count: int = 1
) -> dict[str, Any]:
    """``notification.created`` data: ``{notification, unread_count, count}``."""
    now = int(time.time())
    return {
        "notification": {
            "id": notification_id,
            "notification_type": "conversation_mention",
            "primary_actor_type": "Conversation",
            "primary_actor_id": conversation_id,
            "primary_actor": {"id": conversation_id, "inbox_id": 1, "meta": {}, "timestamp": now},
            "read_at": None,
            "secondary_actor": None,
            "created_at": now,
            "push_message_title": f"You were mentioned in conversation #{conversation_id}",
        },
        "unread_count": unread_count,
        "count": unread_count,
    }
