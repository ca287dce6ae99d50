"""The Voxsig (Chatwoot-style) real-time client: RoomChannel over ActionCable, with presence.

See :mod:`realtime_sync.protocols.voxsig` for the event table and the presence cadence.
"""

from __future__ import annotations

from typing import Any

from ._redact import redact
from .actioncable import ActionCableClient
from .events import Subscription
from .protocols.voxsig import (
    EVENT_TYPES,
    PRESENCE_INTERVAL,
    PubsubToken,
    VoxsigAdapter,
    check_account,
    register_pubsub_token,
    room_identifier,
)

__all__ = ["EVENT_TYPES", "VoxsigClient"]


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
        **options: :class:`~realtime_sync.ActionCableClient` options (``stale_after``,
            ``confirm_timeout``...) and :class:`~realtime_sync.Client` options.

    Example::

        client = VoxsigClient("wss://app.voxsig.com/cable", pubsub_token=TOKEN, account_id=1, user_id=7)

        @client.on("message.created")
        def show(event):
            print(event.entity_id, event.data.content)

        client.run_forever()
    """

    def __init__(
        self,
        url: str,
        pubsub_token: PubsubToken,
        account_id: int | str | None = None,
        user_id: int | str | None = None,
        presence_interval: float | None = PRESENCE_INTERVAL,
        *,
        all_accounts: bool = False,
        stale_after: float | None = 6.0,
        confirm_timeout: float = 10.0,
        retry_interval: float = 0.5,
        **options: Any,
    ) -> None:
        check_account(account_id, user_id)
        if callable(pubsub_token):
            room_identifier("-", account_id, user_id)  # validates the ids
        else:
            # Registered before anything can log an identifier (validation errors included).
            register_pubsub_token(pubsub_token)
        adapter = VoxsigAdapter(
            pubsub_token,
            account_id,
            user_id,
            presence_interval=presence_interval,
            all_accounts=all_accounts,
            stale_after=stale_after,
            confirm_timeout=confirm_timeout,
            retry_interval=retry_interval,
        )
        super().__init__(url, adapter=adapter, **options)
        # Read-only: ``identifier`` is one str attribute the transport thread replaces when a
        # callable token changes (an atomic read); nothing else of the adapter is touched here.
        self._room_adapter = adapter
        self.account_id = account_id
        self.user_id = user_id

    @property
    def identifier(self) -> str | None:
        """The RoomChannel identifier string in use (with a callable token: ``None`` until the
        first connect, and it changes when the token does).  It holds the token: keep it private."""
        return self._room_adapter.identifier

    @property
    def room(self) -> Subscription | None:
        """The RoomChannel subscription (``event.subscription`` of every Voxsig event; its key
        shows the pubsub token as ``***``); ``None`` before a callable token was first read."""
        identifier = self._room_adapter.identifier
        return None if identifier is None else self._public(identifier)

    @property
    def is_contact(self) -> bool:
        """True when subscribed with a contact's token (no ``user_id``)."""
        return self.user_id is None

    def update_presence(self) -> None:
        """Send ``update_presence`` now (when subscribed) and restart the presence cadence."""
        self._call(VoxsigAdapter.update_presence)

    def __repr__(self) -> str:
        who = "contact" if self.is_contact else f"user {self.user_id}"
        return redact(f"<VoxsigClient url={self.url!r} {who} account={self.account_id!r} state={self.state.value}>")
