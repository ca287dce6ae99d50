"""Jifeline clients: the customer websocket and the partner websocket.

    import realtime_sync as rs

    client = rs.JifelineCustomerClient("wss://<customer websocket of your cluster>", token=TOKEN)
    client.subscribe_ticket(32423)

    @client.on("ticket.updated", changes_only=True)     # snapshots arrive every ~5 s
    def changed(event):
        print(event.entity_id, sorted(event.changes), event.data.state)

    client.run_forever()

    partner = rs.JifelinePartnerClient.from_client_credentials(CLIENT_ID, CLIENT_SECRET)
    partner.subscribe_event("tickets.ticket.created")
    partner.subscribe_connector("9389ba6f-3696-4571-84d4-34d588c4b109")
    partner.on("tickets.*", lambda e: print(e.name, e.data.ticket_id))
    partner.on("connector.status", lambda e: print(e.entity_id, e.data.voltage))
    partner.run_forever()

Both clients keep subscriptions as desired state (restored after every reconnect), reconnect as
the vendor advises (instantly a few times, then no faster than every 5 s), and send websocket
pings plus a periodic re-subscribe as keepalive (see :mod:`realtime_sync.protocols.jifeline`).
"""

from __future__ import annotations

import queue
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator, Literal, Mapping, TypeVar, overload

import attrs

from ._http import HTTPFailure
from ._http import request as http_request
from ._json import decode
from ._redact import get_logger, redact, register_secret
from ._validate import flag, number
from .client import _REGISTER_ON_NEW, Client, _seconds, _Timeout, _Where
from .config import ReconnectPolicy
from .dispatch import Handler
from .engine import Call, Command
from .events import ErrorInfo, Event, Subscription
from .exceptions import ClientClosedError, ConfigurationError, ProtocolError, TokenError
from .models.jifeline import Connection, Connector, ConnectorStatus, SystemEvent, Ticket
from .oauth import ClientCredentialsTokenProvider
from .protocols.base import ConnectRequest
from .protocols.jifeline import (
    CUSTOMER_KINDS,
    PARTNER_KINDS,
    JifelineCustomerAdapter,
    JifelinePartnerAdapter,
    _JifelineAdapter,
    _Kind,
    events_from_rest_body,
    rest_item_to_frame,
    validate_key,
)

__all__ = [
    "PARTNER_URL",
    "GapRecovery",
    "JifelineCustomerClient",
    "JifelinePartnerClient",
    "partner_rest_url",
    "partner_token_url",
    "partner_url",
]

log = get_logger("realtime_sync.jifeline")

#: The partner websocket of cluster 001 (production Europe).
PARTNER_URL = "wss://partner-api-ws-001.prd.jifeline.cloud/wssprd"


def _cluster(cluster: str | int) -> str:
    text = f"{cluster:03d}" if isinstance(cluster, int) and not isinstance(cluster, bool) else str(cluster).strip()
    if not text.isdigit():
        raise ConfigurationError(f"cluster must be a number such as '001' or '002', got {cluster!r}")
    return text.zfill(3)


def partner_url(cluster: str | int = "001") -> str:
    """The partner websocket URL of a cluster (001 is documented; others follow its pattern).

    >>> partner_url(2)
    'wss://partner-api-ws-002.prd.jifeline.cloud/wssprd'
    """
    return f"wss://partner-api-ws-{_cluster(cluster)}.prd.jifeline.cloud/wssprd"


def partner_rest_url(cluster: str | int = "001") -> str:
    """The partner REST API base of a cluster (``https://partner-api-001.prd.jifeline.cloud``)."""
    return f"https://partner-api-{_cluster(cluster)}.prd.jifeline.cloud"


def partner_token_url(cluster: str | int = "001") -> str:
    """The partner API's OAuth2 token endpoint of a cluster."""
    return partner_rest_url(cluster) + "/oauth2/token"


H = TypeVar("H", bound=Handler)


class _ChangesOnly:
    """Wraps a handler so it only sees snapshots that changed (``event.changes`` non-empty).

    Events without change detection (``changes is None``: lifecycle events, system events)
    pass through.  It compares equal to the handler it wraps, so ``off(handler=h)`` removes the
    wrapped registration too.  It carries the handler's module, qualified name and (for a bound
    method) ``__self__``/``__func__``, as ``functools.wraps`` would: registering a redefined
    function again (a notebook cell run again) replaces the earlier registration, exactly as for
    a plain handler (``dispatch.same_handler``).
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.__module__ = getattr(handler, "__module__", None)  # type: ignore[assignment]
        self.__qualname__ = getattr(handler, "__qualname__", None)  # type: ignore[assignment]
        if getattr(handler, "__self__", None) is not None:  # a bound method
            self.__self__ = handler.__self__  # type: ignore[attr-defined]
            self.__func__ = getattr(handler, "__func__", None)

    def __call__(self, event: Event) -> Any:
        if event.changes is not None and not event.changes:
            return None
        return self.handler(event)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _ChangesOnly):
            return self.handler == other.handler
        return self.handler == other

    def __hash__(self) -> int:
        return hash(self.handler)

    def __repr__(self) -> str:
        return f"changes_only({self.handler!r})"


J = TypeVar("J", bound=_JifelineAdapter)
#: ``JifelinePartnerClient.from_client_credentials()`` on a subclass returns that subclass.
_P = TypeVar("_P", bound="JifelinePartnerClient")

# The event names whose data is typed, for the typed overloads of wait_for() and events().
_TicketEvents = Literal["ticket.updated"]
_ConnectionEvents = Literal["connection.updated"]
_ConnectorEvents = Literal["connector.updated"]
_ConnectorStatusEvents = Literal["connector.status"]
#: The system event types the vendor names (PROTOCOLS.md); any other event_type is a
#: SystemEvent too at run time, typed Event[Any] (event_type is an open set).
_SystemEvents = Literal["tickets.ticket.created", "tickets.ticket.closed"]


class _JifelineClient(Client[J]):
    """What both Jifeline clients share: token placement, desired-state subscriptions, changes_only."""

    #: ``on(..., changes_only=True)`` is available (the integrations check this).
    supports_changes_only = True
    _kinds: Mapping[str, _Kind] = {}

    def __init__(
        self,
        url: str,
        *,
        adapter: J,
        token: str | Callable[[], str] | None = None,
        token_in_query: bool = False,
        **options: Any,
    ) -> None:
        read = flag(token_in_query, "token_in_query")  # "true"/"false" from a settings file too
        if read is None:
            raise ConfigurationError(f"token_in_query takes True or False, got a {type(token_in_query).__name__}")
        token_in_query = read
        if token_in_query and token is None:
            raise ConfigurationError(
                "token_in_query=True says where the token goes (?access_token=), but no token= was given: "
                "pass token=, or drop token_in_query"
            )
        super().__init__(url, adapter=adapter, token=token, **options)
        self.token_in_query = token_in_query
        if token is not None and hasattr(token, "invalidate"):
            # A refused handshake may mean the cached token was revoked: fetch a new one next time.
            self._dispatcher.add("error", self._on_error_invalidate_token, internal=True)

    def _on_error_invalidate_token(self, event: Event) -> None:
        info = event.data
        if isinstance(info, ErrorInfo) and info.kind == "auth":
            invalidate = getattr(self._token, "invalidate", None)
            if callable(invalidate):
                invalidate()

    # -- token placement -----------------------------------------------------------------------

    def _connect_request(self, token: str | None) -> ConnectRequest:
        if not (token and self.token_in_query):
            return super()._connect_request(token)
        register_secret(token)
        register_secret(urllib.parse.quote_plus(token))  # as it appears in the URL
        request = super()._connect_request(None)
        parts = urllib.parse.urlsplit(request.url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        query = [(k, v) for k, v in query if k != "access_token"] + [("access_token", token)]
        url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        return attrs.evolve(request, url=url)

    # -- subscriptions -------------------------------------------------------------------------

    def _subscribe(self, kind: str, key: Any) -> Hashable:
        key = validate_key(self._kinds, kind, key)
        self._call(_JifelineAdapter.subscribe, kind, key)
        return key

    def _unsubscribe(self, kind: str, key: Any) -> Hashable:
        key = validate_key(self._kinds, kind, key)
        self._call(_JifelineAdapter.unsubscribe, kind, key)
        return key

    @property
    def subscriptions(self) -> list[Subscription]:
        """What this client wants to be subscribed to, in order (restored after every reconnect).

        Read from the engine's snapshot: a subscription made while the client runs shows once
        the I/O thread has applied it (at once before ``start()``).
        """
        return list(self.snapshot.subscriptions)

    # -- handlers ------------------------------------------------------------------------------

    @overload  # type: ignore[override]
    def on(
        self, name: str, handler: None = None, *, entity_id: Any = None, changes_only: bool = False
    ) -> Callable[[H], H]: ...

    @overload
    def on(self, name: str, handler: H, *, entity_id: Any = None, changes_only: bool = False) -> H: ...

    def on(self, name: str, handler: Any = None, *, entity_id: Any = None, changes_only: bool = False) -> Any:
        """Register ``handler`` for ``name`` (see :meth:`Client.on`).

        ``changes_only=True`` delivers a snapshot event only when it differs from the previous
        snapshot of the same entity (``event.changes`` names the fields that changed; the first
        snapshot after subscribing counts as a change).  Events that are not snapshots pass.
        ``off(handler=h)`` removes such a registration too.

        >>> client.on("ticket.updated", lambda e: print(e.changes), changes_only=True)  # doctest: +SKIP
        """
        if not changes_only:
            return super().on(name, handler, entity_id=entity_id)
        self._check_usable("on()", _REGISTER_ON_NEW)
        if handler is None:

            def decorator(fn: Handler) -> Handler:
                self.on(name, fn, entity_id=entity_id, changes_only=True)
                return fn

            return decorator
        if not callable(handler):
            raise ConfigurationError(f"handler must be callable, got {type(handler).__name__}")
        super().on(name, _ChangesOnly(handler), entity_id=entity_id)
        return handler


class JifelineCustomerClient(_JifelineClient[JifelineCustomerAdapter]):
    """The Jifeline customer websocket: ticket, connection and connector snapshots.

    Args:
        url: the customer websocket URL of your cluster.
        token: optional; a string or a callable returning one (called on every connect), sent
            as ``Authorization: Bearer <token>``, or as ``?access_token=`` with
            ``token_in_query=True`` (redacted everywhere).
        keepalive_interval: seconds without a client frame after which one subscription is
            re-sent (the gateway's idle timeout); ``None`` disables.
        max_snapshots: how many entities' last snapshots change detection remembers.
        **options: any :class:`~realtime_sync.ConnectOptions` / :class:`~realtime_sync.DispatchOptions`
            field, ``reconnect=``, ``name=``.

    Events: ``ticket.updated`` (:class:`~realtime_sync.models.jifeline.Ticket`, entity = ticket
    id), ``connection.updated`` (``Connection``, entity = connection UUID),
    ``connector.updated`` (``Connector``, entity = connector id), each with ``event.changes``.

    >>> client = JifelineCustomerClient("wss://example.invalid/ws")
    >>> client.subscribe_ticket(32423)
    >>> client.subscriptions
    [Subscription('ticket', 32423)]
    >>> client.close()
    """

    _kinds = CUSTOMER_KINDS

    url_example = "wss://<cluster host>/<customer websocket path>"
    known_events = frozenset({"ticket.updated", "connection.updated", "connector.updated"})

    if TYPE_CHECKING:
        # For type checkers only (at run time these are Client's methods): wait_for() and
        # events() of an event name above give its model; any other name or pattern Event[Any].

        @overload
        def wait_for(self, name: _TicketEvents, timeout: _Timeout = None, where: _Where = None) -> Event[Ticket]: ...
        @overload
        def wait_for(
            self, name: _ConnectionEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[Connection]: ...
        @overload
        def wait_for(
            self, name: _ConnectorEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[Connector]: ...
        @overload
        def wait_for(self, name: str, timeout: _Timeout = None, where: _Where = None) -> Event[Any]: ...
        def wait_for(self, name: str, timeout: _Timeout = None, where: _Where = None) -> Event[Any]: ...

        @overload
        def events(
            self, name: _TicketEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[Ticket]]: ...
        @overload
        def events(
            self, name: _ConnectionEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[Connection]]: ...
        @overload
        def events(
            self, name: _ConnectorEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[Connector]]: ...
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
        token: str | Callable[[], str] | None = None,
        *,
        keepalive_interval: float | None = 300.0,
        max_snapshots: int = 10_000,
        **options: Any,
    ) -> None:
        adapter = JifelineCustomerAdapter(
            keepalive_interval=number(keepalive_interval, "keepalive_interval", optional=True, unit="seconds"),
            max_snapshots=number(max_snapshots, "max_snapshots", integer=True, minimum=1),
        )
        super().__init__(url, adapter=adapter, token=token, **options)

    def subscribe_ticket(self, ticket_id: int) -> None:
        """Receive ``ticket.updated`` for this ticket (an integer id)."""
        self._subscribe("ticket", ticket_id)

    def subscribe_connector(self, connector_id: int) -> None:
        """Receive ``connector.updated`` for this connector (an integer id)."""
        self._subscribe("connector", connector_id)

    def subscribe_connection(self, connection_uuid: str) -> None:
        """Receive ``connection.updated`` for this connection (a UUID string)."""
        self._subscribe("connection", connection_uuid)

    def unsubscribe_ticket(self, ticket_id: int) -> None:
        """Stop ``ticket.updated`` for this ticket (sends ``unsubscribeToTicket``, sic)."""
        self._unsubscribe("ticket", ticket_id)

    def unsubscribe_connector(self, connector_id: int) -> None:
        self._unsubscribe("connector", connector_id)

    def unsubscribe_connection(self, connection_uuid: str) -> None:
        """Stop ``connection.updated`` (sends ``unsubscribeToConnection``, sic)."""
        self._unsubscribe("connection", connection_uuid)


def _after_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ConfigurationError(f"after_id must be an event id (a non-empty string) or None, got {value!r:.40}")


@attrs.frozen
class GapRecovery:
    """Options of the partner client's gap recovery (``gap_recovery=GapRecovery(...)``).

    After every reconnect, the system events missed while disconnected are fetched from
    ``{rest_url}/v2/system/events?after_id=<last event id>&limit=<limit>`` (Bearer token: the
    client's own token), pages of ``limit`` up to ``max_pages``, and delivered before the live
    ones; no event id is delivered twice.

    To resume after a process restart, persist the client's
    :attr:`JifelinePartnerClient.last_event_id` (e.g. from your handler, after processing an
    event) and pass it back as ``after_id``: the first connection then fetches the events after
    it too (once there is an event subscription), before the live ones.

    Attributes:
        after_id: the resume point for the first connection (an ``event_id``); ``None``: the
            first connection fetches nothing.
        rest_url: the partner REST base (default: the cluster's, e.g.
            ``https://partner-api-001.prd.jifeline.cloud``).
        http_timeout: seconds for one REST request.
        hold_timeout: the longest live system events are held back waiting for the fetch;
            after it they are released (and the fetched ones delivered late, if they come).
        settle: seconds to wait after connecting before the fetch.  The partner protocol does
            not acknowledge a subscribe: an event published after the REST answer but before the
            server applied the subscribe frame would be in neither; waiting closes that window
            (live events are held meanwhile and duplicates dropped by id).
        retries: further attempts (1 s, 2 s... apart) when the fetch fails to connect, times out
            or gets an HTTP error other than 401/403, before the failure is reported as an ``error`` event.
        limit, max_pages: page size and page count per recovery.
        dedupe_window: how many recent event ids are remembered to drop duplicates.
        max_body: the largest REST answer read, in bytes (default 16 MiB); a larger one is an
            ``error`` event (a hostile or broken server cannot make the client read without end).
        api_key: sent as ``x-api-key`` on the REST events call when given (the API reference's
            beta revision lists it beside OAuth2 for ``/v2/system/events``); a secret: never
            logged, never in a repr.  A string or a callable returning one, read per request.

    >>> GapRecovery(rest_url="http://127.0.0.1:8080", http_timeout=2).limit
    100
    >>> "k-123" in repr(GapRecovery(api_key="k-123"))
    False
    """

    rest_url: str | None = None
    http_timeout: float = 5.0
    hold_timeout: float = 15.0
    settle: float = 0.5
    retries: int = 2
    limit: int = 100
    max_pages: int = 10
    dedupe_window: int = 10_000
    after_id: str | None = attrs.field(default=None, converter=lambda v: _after_id(v))
    max_body: int = 16 * 1024 * 1024
    api_key: str | Callable[[], str] | None = attrs.field(
        default=None, repr=False, validator=lambda _i, _a, v: _api_key(v)
    )


def _api_key(value: Any) -> None:
    if value is None or callable(value):
        return
    if not isinstance(value, str) or not value:
        raise ConfigurationError("api_key must be a non-empty string, a callable returning one, or None")
    register_secret(value)


class _GapFetcher:
    """The thread that fetches missed system events (``realtime_sync-jifeline-gap-<client>``).

    Why a thread of its own: the REST call may take seconds; on the transport thread it would
    stall reading frames and answering pings.  The adapter holds live system events meanwhile
    (bounded by ``hold_timeout``), so ordering is kept without blocking anything.  Owned by the
    partner client; started on the first recovery; joined by ``close()``.  On a hub there is no
    such thread: the fetch runs on the hub's blocking workers (``run_blocking``), so the thread
    count does not grow with the number of clients.
    """

    #: What the fetch is called in log lines and error messages (the Voxsig catch-up reuses
    #: this thread: :class:`realtime_sync.voxsig.VoxsigClient`).
    what = "gap recovery"
    thread_tag = "jifeline-gap"

    def __init__(self, name: str, options: Any, rest_url: str) -> None:
        # options: a GapRecovery here; the Voxsig catch-up passes its VoxsigCatchUp (http_timeout,
        # max_pages, max_body are what the base reads).
        self.name = name
        self.options = options
        self.rest_url = rest_url.rstrip("/")
        # Bound by the client once it exists (the adapter, built first, needs request()).
        self.submit: Callable[[Command], None] | None = None
        self.token: Callable[[], str | None] = lambda: None
        #: The hub's ``run_blocking`` when the client runs on one (else None: a thread of our own).
        self.run_blocking: Callable[[], Any] = lambda: None
        self._queue: queue.SimpleQueue[tuple[int, Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._stop_wait = threading.Event()  # set by stop(): ends a settle or retry wait

    def request(self, generation: int, after_id: Any) -> None:
        """Called on the transport thread: queue the fetch, never block."""
        run_blocking = self.run_blocking()
        if run_blocking is not None:  # on a hub: its workers, no thread of ours
            run_blocking(lambda: self._fetch_and_finish(generation, after_id), lambda _result, _exc: None)
            return
        with self._lock:
            if self._stopped:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"realtime_sync-{self.thread_tag}-{self.name}", daemon=True
                )
                self._thread.start()
        self._queue.put((generation, after_id))

    def stop(self, timeout: float | None) -> bool:
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._stop_wait.set()
        self._queue.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if not self._fetch_and_finish(*job):
                return

    def _fetch_and_finish(self, generation: int, after_id: Any) -> bool:
        """Fetch, then hand the result to the adapter; False once the client is closed."""
        if self._stopped:
            return False
        items: list[Any] | None = None
        error: ErrorInfo | None = None
        settle = float(getattr(self.options, "settle", 0.0))
        retries = max(0, int(getattr(self.options, "retries", 0)))
        if settle > 0 and self._stop_wait.wait(settle):
            return False  # stopped while settling
        for attempt in range(retries + 1):
            try:
                items = self.fetch(after_id)
                error = None
                break
            except TokenError as exc:
                error = ErrorInfo("token", f"{self.what}: {exc}", None, exc)
                break
            except _HTTPFailure as exc:
                error = ErrorInfo(exc.kind, f"{self.what}: {exc}", None, exc.cause)
                if exc.kind not in ("connect", "server"):
                    break
            except Exception as exc:  # never let the thread die
                log.exception("%s failed", self.what)
                error = ErrorInfo("server", redact(f"{self.what} failed: {type(exc).__name__}: {exc}"), None, exc)
                break
            if attempt < retries:
                log.info("%s; retrying", error.message)
                if self._stop_wait.wait(float(2**attempt)):
                    return False
        if error is not None:
            log.warning("%s", error.message)
        else:
            log.info("%s: %d event(s)", self.what, len(items or ()))
        try:
            assert self.submit is not None
            self.submit(Call(self.finish(), (generation, items), {"error": error}))
        except ClientClosedError:
            return False
        return True

    def finish(self) -> Callable[..., Any]:
        """The adapter method the results are handed to (on the I/O thread)."""
        return JifelinePartnerAdapter.finish_gap_recovery

    def fetch(self, after_id: Any) -> list[Any]:
        """GET the events after ``after_id``, page by page (oldest first)."""
        token = self.token()
        out: list[Any] = []
        after = after_id
        for _ in range(max(1, self.options.max_pages)):
            query = urllib.parse.urlencode({"after_id": after, "limit": self.options.limit})
            url = f"{self.rest_url}/v2/system/events?{query}"
            batch = self._get(url, token)
            out.extend(batch)
            if len(batch) < self.options.limit or not batch:
                break
            last = rest_item_to_frame(batch[-1])
            next_after = None if last is None else last.get("event_id")
            if not isinstance(next_after, (str, int)) or str(next_after) == after:
                break
            after = str(next_after)
        return out

    def _get(self, url: str, token: str | None) -> list[Any]:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        api_key = self.options.api_key
        if callable(api_key):
            try:
                api_key = api_key()
            except Exception as exc:
                raise _HTTPFailure("token", redact(f"the api_key provider failed: {exc!r}"), None) from None
        if isinstance(api_key, str) and api_key:
            register_secret(api_key)
            headers["x-api-key"] = api_key
        try:
            # No redirect is followed (it would carry the bearer token elsewhere) and the body
            # read is bounded by GapRecovery.max_body (_http).
            body = http_request(url, headers=headers, timeout=self.options.http_timeout, max_body=self.options.max_body)
        except HTTPFailure as exc:
            if exc.kind == "status":
                kind = "auth" if exc.status in (401, 403) else "server"
            else:
                kind = {"connect": "connect", "too_large": "bad_frame"}.get(exc.kind, "server")
            raise _HTTPFailure(kind, str(exc), None) from None
        try:
            data = decode(body)
        except ValueError:
            raise _HTTPFailure("bad_frame", redact(f"GET {url}: the answer is not JSON"), None) from None
        events = events_from_rest_body(data)
        if events is None:
            msg = redact(f"GET {url}: no list of events in the answer")
            raise _HTTPFailure("bad_frame", msg, ProtocolError(msg))
        return events


def _needs_token(url: str, headers: Any) -> bool:
    """True for a URL of the vendor's partner gateway (``*.jifeline.cloud``) without an
    ``access_token`` in its query, when no ``Authorization`` header is given either."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if not (host == "jifeline.cloud" or host.endswith(".jifeline.cloud")):
        return False
    if "access_token" in urllib.parse.parse_qs(parts.query):
        return False
    names = [str(k).lower() for k in headers] if isinstance(headers, Mapping) else []
    return "authorization" not in names


class _HTTPFailure(Exception):
    def __init__(self, kind: str, message: str, cause: BaseException | None) -> None:
        super().__init__(message)
        self.kind = kind
        self.cause = cause


class JifelinePartnerClient(_JifelineClient[JifelinePartnerAdapter]):
    """The Jifeline partner websocket: connector statuses and system events.

    Args:
        url: the websocket URL; default: cluster 001 (``wss://partner-api-ws-001.prd.jifeline.cloud/wssprd``).
        token: the OAuth2 access token: a string, or a callable called before every (re)connect;
            use :class:`~realtime_sync.ClientCredentialsTokenProvider` (or
            :meth:`from_client_credentials`) to have it fetched and renewed for you.  Sent as
            ``Authorization: Bearer <token>``; ``token_in_query=True`` sends
            ``?access_token=<token>`` instead (redacted in every log line and repr).
        cluster: another cluster (``"002"`` = production USA); mutually exclusive with ``url``.
        gap_recovery: ``True`` or a :class:`GapRecovery` to fetch the system events missed while
            disconnected from the REST API after each reconnect (off by default);
            ``GapRecovery(after_id=...)`` resumes from a persisted :attr:`last_event_id`.
        keepalive_interval, max_snapshots, **options: as for :class:`JifelineCustomerClient`.

    Events: ``connector.status`` (:class:`~realtime_sync.models.jifeline.ConnectorStatus`, entity =
    connector UUID, with ``event.changes``) and each system event under its own
    ``event_type`` (``tickets.ticket.created``...; :class:`~realtime_sync.models.jifeline.SystemEvent`,
    entity = the ticket id when the payload has one).  Gateway error frames are ``error`` events.

    >>> client = JifelinePartnerClient(token="eyJ...")
    >>> client.url
    'wss://partner-api-ws-001.prd.jifeline.cloud/wssprd'
    >>> client.subscribe_event("tickets.ticket.created")
    >>> client.close()
    """

    _kinds = PARTNER_KINDS
    #: The vendor's advice: instantly a handful of times, then no more often than every 5 s.
    default_reconnect = ReconnectPolicy(instant_retries=3, interval=5.0, max_interval=5.0, jitter=0.25)

    if TYPE_CHECKING:
        # For type checkers only (at run time these are Client's methods): connector.status and
        # the system event types the vendor names give their model; any other name Event[Any].

        @overload
        def wait_for(
            self, name: _ConnectorStatusEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[ConnectorStatus]: ...
        @overload
        def wait_for(
            self, name: _SystemEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[SystemEvent]: ...
        @overload
        def wait_for(self, name: str, timeout: _Timeout = None, where: _Where = None) -> Event[Any]: ...
        def wait_for(self, name: str, timeout: _Timeout = None, where: _Where = None) -> Event[Any]: ...

        @overload
        def events(
            self, name: _ConnectorStatusEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[ConnectorStatus]]: ...
        @overload
        def events(
            self, name: _SystemEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[SystemEvent]]: ...
        @overload
        def events(
            self, name: str = "*", *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[Any]]: ...
        def events(
            self, name: str = "*", *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[Any]]: ...

    def __init__(
        self,
        url: str | None = None,
        token: str | Callable[[], str] | None = None,
        *,
        cluster: str | int | None = None,
        token_in_query: bool = False,
        gap_recovery: bool | GapRecovery = False,
        keepalive_interval: float | None = 300.0,
        max_snapshots: int = 10_000,
        **options: Any,
    ) -> None:
        if url is not None and cluster is not None:
            raise ConfigurationError("give either url= or cluster=, not both")
        cluster_id = _cluster(cluster) if cluster is not None else ("001" if url is None else None)
        if url is None:
            url = partner_url(cluster_id or "001")
        if token is None and _needs_token(url, options.get("headers")):
            # The vendor's gateway refuses every handshake without one (HTTP 401), forever.  A
            # URL of your own (a gateway adding the token, realtime_sync.testing's fake) may not.
            raise ConfigurationError(
                "the Jifeline partner API needs token= (the OAuth2 access token: a string, or a callable such as "
                "rs.ClientCredentialsTokenProvider), or use JifelinePartnerClient.from_client_credentials(id, secret)"
            )
        gap: GapRecovery | None
        if isinstance(gap_recovery, GapRecovery):
            gap = gap_recovery
        else:
            read = flag(gap_recovery, "gap_recovery")  # "true"/"false" from a settings file too
            if read is None:
                raise ConfigurationError(
                    f"gap_recovery takes True, False or a GapRecovery(...), got a {type(gap_recovery).__name__}"
                )
            gap = GapRecovery() if read else None
        fetcher: _GapFetcher | None = None
        if gap is not None:
            rest = gap.rest_url
            if rest is None:
                if cluster_id is None:
                    raise ConfigurationError(
                        "gap_recovery needs GapRecovery(rest_url=...) when url= is not a cluster URL"
                    )
                rest = partner_rest_url(cluster_id)
            fetcher = _GapFetcher(options.get("name") or type(self).__name__, gap, rest)
        adapter = JifelinePartnerAdapter(
            keepalive_interval=keepalive_interval,
            max_snapshots=max_snapshots,
            gap_recovery=gap is not None,
            request_gap=fetcher.request if fetcher is not None else None,
            gap_timeout=gap.hold_timeout if gap is not None else 15.0,
            dedupe_window=gap.dedupe_window if gap is not None else 10_000,
            after_id=gap.after_id if gap is not None else None,
        )
        super().__init__(url, adapter=adapter, token=token, token_in_query=token_in_query, **options)
        self.cluster = cluster_id
        self.gap_recovery: GapRecovery | None = gap
        self._gap = fetcher
        if fetcher is not None:
            fetcher.submit = self._submit
            fetcher.token = self._resolve_token
            fetcher.run_blocking = lambda: self._hub.loop.run_blocking if self._hub is not None else None

    @classmethod
    def from_client_credentials(
        cls: type[_P],
        client_id: str,
        client_secret: str,
        *,
        token_url: str | None = None,
        cluster: str | int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> _P:
        """A client whose token comes from a :class:`ClientCredentialsTokenProvider`.

        ``token_url`` defaults to the cluster's ``/oauth2/token``.

        >>> client = JifelinePartnerClient.from_client_credentials("id", "secret")  # doctest: +SKIP
        """
        provider = ClientCredentialsTokenProvider(
            token_url or partner_token_url(cluster if cluster is not None else "001"),
            client_id,
            client_secret,
            extra_headers=extra_headers,
        )
        return cls(token=provider, cluster=cluster, **kwargs)

    @property
    def last_event_id(self) -> str | None:
        """The ``event_id`` of the newest system event delivered so far (read-only).

        Persist it and pass it back as ``GapRecovery(after_id=...)`` to resume after a restart.
        It starts as that ``after_id`` (else ``None``), never moves backwards, and is updated on
        the transport thread before the event is handed to the dispatcher: read inside a handler,
        it may already name a later event queued behind the one being handled (persist
        ``event.data.event_id`` after processing when you need exactly-processed semantics).
        """
        return self.snapshot.last_event_id

    def subscribe_connector(self, connector_id: str) -> None:
        """Receive ``connector.status`` for this connector (a UUID string)."""
        self._subscribe("connector", connector_id)

    def unsubscribe_connector(self, connector_id: str) -> None:
        self._unsubscribe("connector", connector_id)

    def subscribe_event(self, event_type: str) -> None:
        """Receive system events of this type (``"tickets.ticket.created"``...), under that name."""
        self._subscribe("event", event_type)

    def unsubscribe_event(self, event_type: str) -> None:
        self._unsubscribe("event", event_type)

    def close(self, timeout: float | None = 10.0) -> None:
        timeout = _seconds(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        super().close(timeout)
        if self._gap is not None:
            remaining = None if deadline is None else max(0.5, deadline - time.monotonic())
            if not self._gap.stop(remaining):
                self.log.warning("close(): the gap recovery thread did not end within %ss", timeout)
