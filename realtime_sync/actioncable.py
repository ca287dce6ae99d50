"""A client for any Rails ActionCable server (``actioncable-v1-json``).

See :mod:`realtime_sync.protocols.actioncable` for the protocol and the timers; this module is
the thread-safe facade.
"""

from __future__ import annotations

from typing import Any, Mapping, TypeVar, cast, overload

from ._json import dumps
from ._validate import number
from .client import Client
from .events import Subscription, public_subscription
from .exceptions import ConfigurationError
from .protocols.actioncable import KIND, ActionCableAdapter, BroadcastDecoder, serialize_identifier

__all__ = ["ActionCableClient"]

AC = TypeVar("AC", bound=ActionCableAdapter)


class ActionCableClient(Client[AC]):
    """A client for any ActionCable channel.

    Subscriptions are desired state: they are sent after the server's ``welcome`` and re-sent
    after every reconnect; an unconfirmed one is retried every ``retry_interval`` seconds and
    reported (``subscription_rejected`` with the reason, plus an ``error`` event) after
    ``confirm_timeout`` seconds.  A connection with no frame for ``stale_after`` seconds (two
    missed server pings) is replaced.  A ``disconnect`` frame with ``reconnect: false`` stops the
    client (``run_forever()`` returns).

    Broadcasts arrive as ``"message"`` events: ``event.data`` is the broadcast message,
    ``event.subscription`` the subscription it came through.  Pass ``decoder=`` (a function
    ``message -> (event_name, data, entity_id)``) to name and type them yourself.

    Args:
        url: ``wss://host/cable``.  The ``Origin`` header is derived from it
            (``https://host``); pass ``origin=`` to send another, ``origin=""`` to send none.
        stale_after: seconds without any frame before the connection is replaced (None: never).
        confirm_timeout: seconds to wait for a subscription's confirmation.
        retry_interval: seconds between repeated subscribes while unconfirmed.
        decoder: see above.
        adapter: a ready :class:`~realtime_sync.protocols.actioncable.ActionCableAdapter` (or
            subclass: what vendor clients such as VoxsigClient pass); the three timing
            arguments and ``decoder`` are then the adapter's business.
        **options: :class:`~realtime_sync.Client` options (``token``, ``reconnect``, any
            ConnectOptions/DispatchOptions field).

    Example::

        client = ActionCableClient("wss://example.com/cable", cookies={"_session": SESSION})
        chat = client.subscribe("ChatChannel", room="lobby")

        @client.on("message")
        def show(event):
            if event.subscription == chat:
                print(event.data)

        with client:
            client.wait_connected(timeout=10)       # connected, subscriptions confirmed
            client.perform(chat, "speak", text="hello")
            client.run_forever()
    """

    # A cable URL is often given as the web app's (https://app.example.com/cable).
    http_to_ws = True
    url_example = "wss://host/cable"
    known_events: frozenset[str] | None = None  # "message", or whatever a decoder names

    # Without adapter= the client is an ActionCableClient[ActionCableAdapter]: an unannotated
    # ``client = ActionCableClient(url)`` type-checks under ``mypy --strict``.
    @overload
    def __init__(
        self: ActionCableClient[ActionCableAdapter],
        url: str,
        *,
        stale_after: float | None = 6.0,
        confirm_timeout: float = 10.0,
        retry_interval: float = 0.5,
        decoder: BroadcastDecoder | None = None,
        adapter: None = None,
        **options: Any,
    ) -> None: ...

    @overload
    def __init__(
        self,
        url: str,
        *,
        stale_after: float | None = 6.0,
        confirm_timeout: float = 10.0,
        retry_interval: float = 0.5,
        decoder: BroadcastDecoder | None = None,
        adapter: AC,
        **options: Any,
    ) -> None: ...

    def __init__(
        self,
        url: str,
        *,
        stale_after: float | None = 6.0,
        confirm_timeout: float = 10.0,
        retry_interval: float = 0.5,
        decoder: BroadcastDecoder | None = None,
        adapter: AC | None = None,
        **options: Any,
    ) -> None:
        if adapter is None:  # (then the client is an ActionCableClient[ActionCableAdapter])
            adapter = cast(
                AC, ActionCableAdapter(decoder=decoder, **_cable_timing(stale_after, confirm_timeout, retry_interval))
            )
        super().__init__(url, adapter=adapter, **options)
        # Public subscriptions (secrets redacted, as events show them) -> identifiers.
        self._identifiers: dict[Subscription, str] = {}
        self._identifier_texts: dict[str, str] = {}  # the redacted identifier string -> the real one
        self._unsubscribed: set[str] = set()  # identifiers given to unsubscribe(), not subscribed since

    # -- public API -------------------------------------------------------------------------

    def subscribe(self, channel_or_identifier: str | Mapping[str, Any], **params: Any) -> Subscription:
        """Subscribe to a channel; returns the :class:`~realtime_sync.Subscription` (its ``key`` is
        the identifier string, serialised once and reused on every reconnect; secrets in it
        are shown as ``***``, as in ``event.subscription``).

        ``subscribe("ChatChannel", room="lobby")``, ``subscribe({"channel": "ChatChannel", "room":
        "lobby"})`` and an identifier JSON string all work.  Subscribing twice to the same
        identifier is one subscription.  Watch ``subscribed`` / ``subscription_rejected``.
        """
        identifier = serialize_identifier(channel_or_identifier, **params)
        self._unsubscribed.discard(identifier)
        self._call(ActionCableAdapter.subscribe, identifier)
        return self._public(identifier)

    def _public(self, identifier: str) -> Subscription:
        """The subscription as events show it (secrets in the identifier redacted); remembered,
        so that ``unsubscribe()``/``perform()`` given it find the identifier again."""
        sub = public_subscription(Subscription(KIND, identifier))
        self._identifiers[sub] = identifier
        if isinstance(sub.key, str) and sub.key != identifier:
            self._identifier_texts[sub.key] = identifier
        return sub

    def _wire(self, subscription: Subscription | str) -> str:
        key = _key(subscription)
        if isinstance(subscription, Subscription):
            return self._identifiers.get(subscription, key)
        return self._identifier_texts.get(key, key)

    def unsubscribe(self, subscription: Subscription | str) -> None:
        """Stop a subscription (sends ``unsubscribe`` when connected; never re-sent)."""
        identifier = self._wire(subscription)
        self._unsubscribed.add(identifier)
        self._call(ActionCableAdapter.unsubscribe, identifier)

    def perform(self, subscription: Subscription | str, action: str, /, **data: Any) -> None:
        """Call the channel's ``action`` method with ``data`` (``{"action": action, **data}``).

        Sent when connected; dropped otherwise (a channel action is an instantaneous call, not
        state to restore), like the reference client.  ``subscription`` is what
        :meth:`subscribe` returned (or its identifier JSON string): a bare channel name, or a
        subscription given to :meth:`unsubscribe` since, raises :class:`ConfigurationError`.
        """
        if isinstance(subscription, str) and not subscription.lstrip().startswith("{"):
            raise ConfigurationError(
                f"perform() takes the Subscription that subscribe() returned (or its identifier JSON "
                f"string), not a channel name: sub = client.subscribe({subscription!r}, ...); "
                f"client.perform(sub, {action!r}, ...)"
            )
        key = self._wire(subscription)
        if key in self._unsubscribed:
            raise ConfigurationError(
                f"perform({action!r}) on a subscription that was unsubscribed: the server would ignore it; "
                "subscribe() again first"
            )
        if not isinstance(action, str) or not action:
            raise ConfigurationError("action must be a non-empty string naming the channel method")
        try:
            dumps(data)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"perform() data is not JSON-serialisable: {exc}") from None
        self._call(ActionCableAdapter.perform, key, action, **data)


def _cable_timing(stale_after: Any, confirm_timeout: Any, retry_interval: Any) -> dict[str, Any]:
    """The adapter's timing arguments, numbers read from numeric strings (settings, environment)."""
    return {
        "stale_after": number(stale_after, "stale_after", optional=True, unit="seconds"),
        "confirm_timeout": number(confirm_timeout, "confirm_timeout", unit="seconds"),
        "retry_interval": number(retry_interval, "retry_interval", unit="seconds"),
    }


def _key(subscription: Subscription | str) -> str:
    if isinstance(subscription, Subscription):
        if subscription.kind != KIND or not isinstance(subscription.key, str):
            raise ConfigurationError(f"not an ActionCable subscription: {subscription!r}")
        return subscription.key
    if isinstance(subscription, str):
        return subscription
    raise ConfigurationError(f"expected a Subscription or an identifier string, got {type(subscription).__name__}")
