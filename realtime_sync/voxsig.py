"""The Voxsig (Chatwoot-style) real-time client: RoomChannel over ActionCable, with presence.

See :mod:`realtime_sync.protocols.voxsig` for the event table and the presence cadence.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable, Literal, overload

import attrs

from ._http import HTTPFailure
from ._http import request as http_request
from ._json import decode
from ._redact import redact, register_secret
from ._validate import number, secret_text
from .actioncable import ActionCableClient, _cable_timing
from .client import _seconds, _Timeout, _Where, reject_unknown_options
from .events import Event, Subscription
from .exceptions import ConfigurationError, ProtocolError
from .jifeline import _GapFetcher, _HTTPFailure
from .models.voxsig import (
    CacheInvalidated,
    Contact,
    Conversation,
    CopilotMessage,
    Message,
    NotificationEvent,
    Presence,
    TypingEvent,
)
from .protocols.voxsig import (
    EVENT_TYPES,
    PRESENCE_INTERVAL,
    PubsubToken,
    VoxsigAdapter,
    VoxsigResumePoint,
    check_account,
    register_pubsub_token,
    room_identifier,
)

__all__ = ["EVENT_TYPES", "VoxsigCatchUp", "VoxsigClient", "VoxsigResumePoint"]


def _access_token(_i: Any, _a: Any, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigurationError("VoxsigCatchUp(api_access_token=...) must be a non-empty string")
    register_secret(value)


def _resume_from(_i: Any, _a: Any, value: Any) -> None:
    if value is not None and not isinstance(value, VoxsigResumePoint):
        raise ConfigurationError(
            "VoxsigCatchUp(resume_from=...) must be a VoxsigResumePoint (VoxsigResumePoint.from_json(stored)) or None"
        )


@attrs.frozen
class VoxsigCatchUp:
    """Options of the Voxsig catch-up after a reconnect (``catch_up=VoxsigCatchUp(...)``).

    ActionCable keeps no history: what was broadcast while the client was disconnected is gone
    from the cable.  Like Chatwoot's dashboard, the client then asks the REST API.  After every
    reconnect (not the first connect), once the room subscription is confirmed, it fetches

    * ``GET {api_url}/api/v1/accounts/{account_id}/conversations?status=all&assignee_type=all&updated_within=<s>``
      (Chatwoot's ``ConversationFinder``: with ``updated_within`` the list is every conversation
      whose ``updated_at`` is within the last ``<s>`` seconds, unpaginated; the answer is
      ``{"data": {"meta": {...}, "payload": [conversation...]}}``, conversation ``id`` = the
      display id), delivered as ``conversation.updated``;
    * for each, ``GET .../conversations/{id}/messages?after=<newest message id seen>``
      (``MessageFinder``: up to 100 messages with a larger id, oldest first; without ``after``
      the latest 20, of which those created since the disconnect are kept), answer
      ``{"meta": {...}, "payload": [message...]}``, delivered as ``message.created``,

    with the same typed models as live events and ``event.recovered=True``, before the live
    events received since the reconnect (held meanwhile, at most ``hold_timeout`` seconds); a
    message id is never delivered twice.  A failed fetch is an ``error`` event of kind
    ``"catch_up"`` and the held live events are released.  Needs ``account_id``.

    ``resume_from``: a :class:`VoxsigResumePoint` stored by another process that delivered this
    connection's events before (listener replicas store one per tenant in Redis and pass it on
    takeover): the *first* connect then catches up too, from ``resume_from.at``, fetching in
    every recently updated conversation the messages above the smallest of
    ``resume_from.delivered`` and skipping those ids, so that a takeover delivers what nobody
    delivered, once.

    Attributes:
        api_url: the Chatwoot base URL (``https://app.voxsig.com``).
        api_access_token: a user's API access token (profile settings), sent as the
            ``api_access_token`` header Chatwoot reads; a secret: never logged, never in a repr.
        http_timeout: seconds for one REST request.
        hold_timeout: the longest live events are held back waiting for the fetch.
        overlap: seconds added to the window before the disconnect (clock skew; duplicates are
            dropped by message id).
        max_pages: pages of 100 messages per conversation and catch-up.
        max_conversations: conversations fetched per catch-up (the most recently active).
        max_body: the largest REST answer read, in bytes.
        resume_from: where the first connect's catch-up starts (``None``: the first connect
            fetches nothing).

    >>> c = VoxsigCatchUp(api_url="https://app.voxsig.com", api_access_token="tok-xyz")
    >>> "tok-xyz" in repr(c), c.hold_timeout
    (False, 15.0)
    """

    api_url: str
    api_access_token: str = attrs.field(repr=False, validator=_access_token)
    http_timeout: float = 5.0
    hold_timeout: float = 15.0
    overlap: float = 5.0
    max_pages: int = 10
    max_conversations: int = 100
    max_body: int = 16 * 1024 * 1024
    resume_from: VoxsigResumePoint | None = attrs.field(default=None, validator=_resume_from)


class _CatchUpFetcher(_GapFetcher):
    """The Jifeline gap-recovery thread, fetching from Chatwoot's REST API instead."""

    what = "catch-up"
    thread_tag = "voxsig-catch-up"

    def __init__(self, name: str, options: VoxsigCatchUp, account_id: int | str) -> None:
        super().__init__(name, options, options.api_url)
        self.catch_up = options
        self.base = f"{self.rest_url}/api/v1/accounts/{urllib.parse.quote(str(account_id))}"

    def finish(self) -> Callable[..., Any]:
        return VoxsigAdapter.finish_catch_up

    def fetch(self, after_id: Any) -> list[Any]:
        lost_at, last_ids, floor = after_id
        opts = self.catch_up
        since = lost_at - opts.overlap
        within = max(1, int(time.time() - since) + 1)
        query = urllib.parse.urlencode({"status": "all", "assignee_type": "all", "updated_within": within})
        body = self._json(f"{self.base}/conversations?{query}")
        data = body.get("data") if isinstance(body, dict) else None
        conversations = data.get("payload") if isinstance(data, dict) else None
        if not isinstance(conversations, list):
            raise self._bad("conversations", "no data.payload list")
        # Chatwoot lists the most recently active first: deliver the oldest first.
        conversations = [c for c in conversations[: opts.max_conversations] if isinstance(c, dict)][::-1]
        messages: list[dict[str, Any]] = []
        for conversation in conversations:
            cid = conversation.get("id")
            if not isinstance(cid, int):
                continue
            after = last_ids.get(cid, floor)
            for _ in range(max(1, opts.max_pages)):
                q = "" if after is None else "?" + urllib.parse.urlencode({"after": after})
                page = self._json(f"{self.base}/conversations/{cid}/messages{q}")
                batch = page.get("payload") if isinstance(page, dict) else None
                if not isinstance(batch, list):
                    raise self._bad("messages", "no payload list")
                batch = [m for m in batch if isinstance(m, dict)]
                if after is None:
                    # The latest 20: keep what was created since the disconnect.
                    messages += [m for m in batch if _created(m) >= since]
                    break
                messages += batch
                if len(batch) < 100 or not isinstance(batch[-1].get("id"), int):
                    break
                after = batch[-1]["id"]
        messages.sort(key=lambda m: (_created(m), m.get("id") if isinstance(m.get("id"), int) else 0))
        return [("conversation.updated", c) for c in conversations] + [("message.created", m) for m in messages]

    def _bad(self, what: str, problem: str) -> _HTTPFailure:
        msg = f"GET {what}: {problem} in the answer"
        return _HTTPFailure("bad_frame", msg, ProtocolError(msg))

    def _json(self, url: str) -> Any:
        headers = {"Accept": "application/json", "api_access_token": self.catch_up.api_access_token}
        try:
            # No redirect is followed (the token would go along) and the body read is bounded.
            body = http_request(
                url, headers=headers, timeout=self.catch_up.http_timeout, max_body=self.catch_up.max_body
            )
        except HTTPFailure as exc:
            raise _HTTPFailure("catch_up", str(exc), exc) from None
        try:
            return decode(body)
        except ValueError:
            raise _HTTPFailure("catch_up", redact(f"GET {url}: the answer is not JSON"), None) from None


def _created(message: dict[str, Any]) -> float:
    value = message.get("created_at")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float("inf")  # unknown: keep it (dedupe by id drops it if it was seen)


_ConversationEvents = Literal[
    "conversation.created",
    "conversation.read",
    "conversation.updated",
    "conversation.status_changed",
    "conversation.contact_changed",
    "conversation.mentioned",
    "assignee.changed",
    "team.changed",
]
_MessageEvents = Literal["message.created", "message.updated", "first.reply.created"]
_TypingEvents = Literal["conversation.typing_on", "conversation.typing_off"]
_ContactEvents = Literal["contact.created", "contact.updated", "contact.deleted", "contact.merged"]
_NotificationEvents = Literal["notification.created", "notification.updated", "notification.deleted"]
_PresenceEvents = Literal["presence.update"]
_CacheEvents = Literal["account.cache_invalidated"]
_CopilotEvents = Literal["copilot.message.created"]


class VoxsigClient(ActionCableClient[VoxsigAdapter]):
    """Live Voxsig events for an agent (``user_id`` given) or a contact (no ``user_id``).

    Events arrive under their wire names (``message.created``, ``conversation.status_changed``,
    ``conversation.typing_on``, ``notification.created``, ``presence.update``,
    ``account.cache_invalidated``, ``copilot.message.created``...) with typed frozen data
    (:mod:`realtime_sync.models.voxsig`), ``event.account_id``, and ``entity_id`` = the
    conversation id (conversation, message, typing, assignee and team events), the contact id,
    the notification id, or the account id (presence).  Unknown event names pass through with
    their decoded data.

    Accounts: an agent's pubsub token carries every account the agent belongs to; like
    Chatwoot's dashboard, the client delivers only ``account_id``'s events.  With
    ``all_accounts=True`` it delivers all of them, and ``entity_id`` becomes
    ``(account_id, id)`` (display ids repeat across accounts).

    Presence: Chatwoot records it when the subscription is confirmed and keeps an agent online
    for 20 s after each ``update_presence``; the client sends one every ``presence_interval``
    seconds after the confirmation (15 s by default; ``None`` turns it off), and restarts the
    cadence after every reconnect.

    The pubsub token is a secret: it never appears in logs, reprs or exception messages.

    Args:
        url: ``wss://app.voxsig.com/cable``.
        pubsub_token: the user's or contact's pubsub token, or a callable returning it, called
            before every (re)connect (the token changes with the user's password).
        account_id, user_id: as in the RoomChannel identifier; without ``user_id`` the token is a
            contact's.  ``user_id`` needs ``account_id`` (else :class:`ConfigurationError`).
        presence_interval: seconds between presence updates (at most 20; default 15).
        all_accounts: deliver every account's events to an agent (default: ``account_id``'s only).
        catch_up: a :class:`VoxsigCatchUp` to fetch what was missed while disconnected from the
            REST API after every reconnect, delivered first with ``event.recovered=True`` (off by
            default).
        **options: :class:`~realtime_sync.ActionCableClient` options (``stale_after``,
            ``confirm_timeout``...) and :class:`~realtime_sync.Client` options.

    Example::

        client = VoxsigClient("wss://app.voxsig.com/cable", pubsub_token=TOKEN, account_id=1, user_id=7)

        @client.on("message.created")
        def show(event):
            print(event.entity_id, event.data.content)

        client.run_forever()
    """

    url_example = "wss://app.voxsig.com/cable"
    known_events = frozenset(EVENT_TYPES)

    if TYPE_CHECKING:
        # For type checkers only (at run time these are Client's methods): wait_for() and
        # events() of a known event name (EVENT_TYPES) give that event's model, so
        # ``client.wait_for("message.created").data.content`` is checked; any other name or
        # pattern gives Event[Any].

        @overload
        def wait_for(
            self, name: _ConversationEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[Conversation]: ...
        @overload
        def wait_for(self, name: _MessageEvents, timeout: _Timeout = None, where: _Where = None) -> Event[Message]: ...
        @overload
        def wait_for(
            self, name: _TypingEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[TypingEvent]: ...
        @overload
        def wait_for(self, name: _ContactEvents, timeout: _Timeout = None, where: _Where = None) -> Event[Contact]: ...
        @overload
        def wait_for(
            self, name: _NotificationEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[NotificationEvent]: ...
        @overload
        def wait_for(
            self, name: _PresenceEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[Presence]: ...
        @overload
        def wait_for(
            self, name: _CacheEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[CacheInvalidated]: ...
        @overload
        def wait_for(
            self, name: _CopilotEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[CopilotMessage]: ...
        @overload
        def wait_for(self, name: str, timeout: _Timeout = None, where: _Where = None) -> Event[Any]: ...
        def wait_for(self, name: str, timeout: _Timeout = None, where: _Where = None) -> Event[Any]: ...

        @overload
        def events(
            self, name: _ConversationEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[Conversation]]: ...
        @overload
        def events(
            self, name: _MessageEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[Message]]: ...
        @overload
        def events(
            self, name: _TypingEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[TypingEvent]]: ...
        @overload
        def events(
            self, name: _ContactEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[Contact]]: ...
        @overload
        def events(
            self, name: _NotificationEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[NotificationEvent]]: ...
        @overload
        def events(
            self, name: _PresenceEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[Presence]]: ...
        @overload
        def events(
            self, name: _CacheEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[CacheInvalidated]]: ...
        @overload
        def events(
            self, name: _CopilotEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[CopilotMessage]]: ...
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
        pubsub_token: PubsubToken,
        account_id: int | str | None = None,
        user_id: int | str | None = None,
        presence_interval: float | None = PRESENCE_INTERVAL,
        *,
        all_accounts: bool = False,
        catch_up: VoxsigCatchUp | None = None,
        stale_after: float | None = 6.0,
        confirm_timeout: float = 10.0,
        retry_interval: float = 0.5,
        **options: Any,
    ) -> None:
        reject_unknown_options(type(self), options)  # a typo first: "acount_id" before "needs account_id"
        # Chatwoot's ids are integers; settings give strings: "1" is sent as 1, "one" refused now
        # (the server would never answer a subscription with it).
        account_id = number(account_id, "account_id", integer=True, optional=True)
        user_id = number(user_id, "user_id", integer=True, optional=True)
        check_account(account_id, user_id)
        if callable(pubsub_token):
            room_identifier("-", account_id, user_id)  # validates the ids
        else:
            if isinstance(pubsub_token, str):
                # Stripped (read from a file, it ends with a newline); a line break inside would
                # never be confirmed (the server says nothing about a wrong token): refused now.
                pubsub_token = secret_text(pubsub_token, "pubsub_token")
            # Registered before anything can log an identifier (validation errors included).
            register_pubsub_token(pubsub_token)
        fetcher: _CatchUpFetcher | None = None
        if catch_up is not None:
            if not isinstance(catch_up, VoxsigCatchUp):
                raise ConfigurationError("catch_up must be a VoxsigCatchUp(api_url=..., api_access_token=...) or None")
            if account_id is None:
                raise ConfigurationError("catch_up needs account_id (the REST API is per account)")
            fetcher = _CatchUpFetcher(options.get("name") or type(self).__name__, catch_up, account_id)
        adapter = VoxsigAdapter(
            pubsub_token,
            account_id,
            user_id,
            presence_interval=number(presence_interval, "presence_interval", optional=True, unit="seconds"),
            all_accounts=all_accounts,
            catch_up_hook=None if fetcher is None else fetcher.request,
            catch_up_timeout=15.0 if catch_up is None else catch_up.hold_timeout,
            resume=None if catch_up is None else catch_up.resume_from,
            **_cable_timing(stale_after, confirm_timeout, retry_interval),
        )
        super().__init__(url, adapter=adapter, **options)
        # Read-only: ``identifier`` is one str attribute the transport thread replaces when a
        # callable token changes (an atomic read); nothing else of the adapter is touched here.
        self._room_adapter = adapter
        # The identifier as shown: the token's value hidden, so the same for every token.
        self._room_text = redact(room_identifier("-", account_id, user_id))
        self._pubsub_token = pubsub_token
        self.account_id = account_id
        self.user_id = user_id
        self.catch_up = catch_up
        self._catch_up = fetcher
        if fetcher is not None:
            fetcher.submit = self._submit

    def _identity(self) -> tuple[Any, ...]:
        return (*super()._identity(), self._pubsub_token, self.account_id, self.user_id)

    @property
    def identifier(self) -> str:
        """The RoomChannel identifier string, the pubsub token in it shown as ``***``.

        Always a string: it shows ``***`` in place of any token, so it is known from the start,
        with a callable ``pubsub_token`` too (before it was first called, and after it returned
        a new token).  :meth:`perform` and :meth:`unsubscribe` given it use the room with the
        token of the moment.

        >>> client = VoxsigClient("wss://app.voxsig.com/cable", lambda: "fresh-token", account_id=1, user_id=7)
        >>> client.identifier
        '{"channel":"RoomChannel","pubsub_token":"***","account_id":1,"user_id":7}'
        >>> client.perform(client.identifier, "typing_status", typing_status="on")  # dropped: not connected
        """
        identifier = self._room_adapter.identifier
        return self._room_text if identifier is None else str(self._public(identifier).key)

    @property
    def room(self) -> Subscription | None:
        """The RoomChannel subscription (``event.subscription`` of every Voxsig event; its key
        shows the pubsub token as ``***``).

        ``None`` only with a callable ``pubsub_token``, before it was first called (at the first
        connect): a subscription compares equal only to the same token's, so it is not known
        before then, and it changes when the callable returns a new token.  With a string token
        it is set from the start.  :attr:`identifier` is a ``str`` in every case.
        """
        identifier = self._room_adapter.identifier
        return None if identifier is None else self._public(identifier)

    def _wire(self, subscription: Subscription | str) -> str:
        # The room, given as identifier or as a Subscription (of any token the callable
        # returned): the identifier with the token of the moment (read from the adapter's one
        # str attribute, replaced whole by the transport thread).
        key = subscription.key if isinstance(subscription, Subscription) else subscription
        if key == self._room_text:
            current = self._room_adapter.identifier
            if current is not None:
                return current
        return super()._wire(subscription)

    @property
    def is_contact(self) -> bool:
        """True when subscribed with a contact's token (no ``user_id``)."""
        return self.user_id is None

    def close(self, timeout: float | None = 10.0) -> None:
        timeout = _seconds(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        super().close(timeout)
        if self._catch_up is not None:
            remaining = None if deadline is None else max(0.5, deadline - time.monotonic())
            if not self._catch_up.stop(remaining):
                self.log.warning("close(): the catch-up thread did not end within %ss", timeout)

    def update_presence(self) -> None:
        """Send ``update_presence`` now (when subscribed) and restart the presence cadence."""
        self._call(VoxsigAdapter.update_presence)

    def __repr__(self) -> str:
        who = "contact" if self.is_contact else f"user {self.user_id}"
        return redact(f"<VoxsigClient url={self.url!r} {who} account={self.account_id!r} state={self.state.value}>")
