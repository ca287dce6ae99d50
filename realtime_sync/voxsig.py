"""The Voxsig (Chatwoot-style) real-time client: RoomChannel over ActionCable, with presence.

See :mod:`realtime_sync.protocols.voxsig` for the event table and the presence cadence.
"""

from __future__ import annotations

from typing import Any

from ._redact import redact
from .actioncable import ActionCableClient
from .events import Subscription, public_subscription
from .protocols.actioncable import KIND
from .protocols.voxsig import EVENT_TYPES, VoxsigAdapter, register_pubsub_token

__all__ = ["EVENT_TYPES", "VoxsigClient"]


class VoxsigClient(ActionCableClient[VoxsigAdapter]):
    """Live Voxsig events for an agent (``user_id`` given) or a contact (no ``user_id``).

    Events arrive under their wire names (``message.created``, ``conversation.status_changed``,
    ``conversation.typing_on``, ``notification.created``, ``presence.update``...) with typed
    frozen data (:mod:`realtime_sync.models.voxsig`) and ``entity_id`` = the conversation id
    (conversation, message, typing, assignee and team events), the contact id, the notification
    id, or the account id (presence).  Unknown event names pass through with their decoded data.

    Presence (``update_presence``) is sent right after the subscription is confirmed, then every
    ``presence_interval`` seconds (``None`` turns it off), and restarts after every reconnect.

    The pubsub token is a secret: it never appears in logs, reprs or exception messages.

    Args:
        url: ``wss://app.voxsig.com/cable``.
        pubsub_token: the user's or contact's pubsub token.
        account_id, user_id: as in the RoomChannel identifier; without ``user_id`` the token is a
            contact's.
        presence_interval: seconds between presence updates (the vendor says 30).
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
        pubsub_token: str,
        account_id: int | str | None = None,
        user_id: int | str | None = None,
        presence_interval: float | None = 30.0,
        *,
        stale_after: float | None = 6.0,
        confirm_timeout: float = 10.0,
        retry_interval: float = 0.5,
        **options: Any,
    ) -> None:
        # Registered before anything can log an identifier (validation errors included).
        register_pubsub_token(pubsub_token)
        adapter = VoxsigAdapter(
            pubsub_token,
            account_id,
            user_id,
            presence_interval=presence_interval,
            stale_after=stale_after,
            confirm_timeout=confirm_timeout,
            retry_interval=retry_interval,
        )
        super().__init__(url, adapter=adapter, **options)
        self.identifier = adapter.identifier
        #: The RoomChannel subscription (``event.subscription`` of every Voxsig event).
        #: Its key shows the pubsub token as ``***``.
        self.room = public_subscription(Subscription(KIND, self.identifier))
        self.account_id = account_id
        self.user_id = user_id
        self._identifiers[self.room] = self.identifier

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
