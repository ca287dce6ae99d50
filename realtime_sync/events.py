"""The events handed to callbacks, and the payloads of the lifecycle events."""

from __future__ import annotations

from typing import Any, Hashable

import attrs

from ._redact import redact

__all__ = [
    "LIFECYCLE_EVENTS",
    "ConnectionInfo",
    "DisconnectInfo",
    "ErrorInfo",
    "Event",
    "ReconnectInfo",
    "Subscription",
    "SubscriptionInfo",
]

#: Lifecycle event names every client emits through ``on()``.
LIFECYCLE_EVENTS = (
    "connected",
    "disconnected",
    "reconnecting",
    "subscribed",
    "subscription_rejected",
    "error",
)


@attrs.frozen(repr=False)
class Subscription:
    """One thing a client is subscribed to: a ticket, a channel identifier, a Bayeux topic...

    ``kind`` names the family (``"ticket"``, ``"connector"``, ``"channel"``, ``"topic"``...),
    ``key`` identifies it within the family.  Equal subscriptions are the same subscription.
    Its repr is redacted (an ActionCable identifier carries the pubsub token).

    >>> Subscription("ticket", 32423)
    Subscription('ticket', 32423)
    """

    kind: str
    key: Hashable

    def __repr__(self) -> str:
        return redact(f"Subscription({self.kind!r}, {self.key!r})")


@attrs.frozen(slots=True, repr=False)
class Event:
    """One thing that happened, as delivered to a callback.

    Attributes:
        name: the event name (``"message.created"``, ``"ticket.updated"``, ``"connected"``...).
        data: a typed frozen model where the payload is known, else the decoded JSON value;
            for lifecycle events one of :class:`ConnectionInfo`, :class:`DisconnectInfo`,
            :class:`ReconnectInfo`, :class:`SubscriptionInfo`, :class:`ErrorInfo`.
        entity_id: the id of the entity the event is about (ticket id, conversation id, chat id
            ...), or ``None``.
        raw: the decoded message the event came from (``None`` for lifecycle events).
        received_at: wall-clock time (``time.time()``) when the frame was received.
        subscription: the :class:`Subscription` the event arrived through, when known.
        changes: for change detection (``on(..., changes_only=True)``), the names of the fields
            that differ from the previous snapshot of the same entity; else ``None``.

    >>> Event("ticket.updated", {"state": 1}, entity_id=7).entity_id
    7
    """

    name: str
    data: Any = None
    entity_id: Any = None
    raw: Any = None
    received_at: float = 0.0
    subscription: Subscription | None = None
    changes: frozenset[str] | None = None

    def __repr__(self) -> str:
        # Redact before truncating: a cut could leave the start of a secret that no longer
        # matches the registered value.
        data = redact(repr(self.data))
        if len(data) > 200:
            data = data[:200] + "..."
        return f"Event(name={self.name!r}, entity_id={redact(repr(self.entity_id))}, data={data})"


@attrs.frozen(repr=False)
class ErrorInfo:
    """Payload of an ``error`` event.

    ``kind`` is one of ``"bad_frame"`` (not JSON, wrong shape, wrong type, too big),
    ``"handler"`` (a callback raised), ``"connect"`` (the connection failed), ``"auth"``
    (credentials refused), ``"server"`` (the server reported an error or told us not to come
    back), ``"subscription"`` (a subscription failed or was never confirmed), ``"overflow"``
    (the event queue was full), ``"token"`` (a token provider failed).  ``frame`` is the
    offending frame, redacted and truncated to 500 characters.
    """

    kind: str
    message: str
    frame: str | None = None
    exception: BaseException | None = None

    def __repr__(self) -> str:
        return redact(f"ErrorInfo(kind={self.kind!r}, message={self.message!r}, frame={self.frame!r})")

    def __str__(self) -> str:
        return redact(self.message)


@attrs.frozen
class ConnectionInfo:
    """Payload of ``connected``: the (redacted) URL, the subprotocol chosen, the attempt number."""

    url: str
    subprotocol: str | None = None
    attempt: int = 0


@attrs.frozen
class DisconnectInfo:
    """Payload of ``disconnected``: why, and whether the client will reconnect."""

    reason: str
    will_reconnect: bool = True
    code: int | None = None


@attrs.frozen
class ReconnectInfo:
    """Payload of ``reconnecting``: the consecutive attempt number and the delay before it."""

    attempt: int
    delay: float


@attrs.frozen
class SubscriptionInfo:
    """Payload of ``subscribed`` / ``subscription_rejected``; ``reason`` says why it failed."""

    subscription: Subscription
    reason: str | None = None
