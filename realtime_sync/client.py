"""The client facade every vendor client builds on.

A :class:`Client` holds an :class:`~realtime_sync.engine.Engine` built from a sans-I/O protocol
adapter (the engine owns the I/O thread, the timers, the backoff and the lifecycle state) and a
:class:`~realtime_sync.dispatch.Dispatcher` (one thread that runs your callbacks).  It never
touches the adapter itself: it queues typed commands and reads the engine's frozen snapshot.
Everything public here is safe to call from any thread, before or after :meth:`Client.start`.

A custom protocol needs no subclass: build its adapter and hand it over::

    client = rs.Client("wss://example.com/feed", adapter=MyAdapter())
"""

from __future__ import annotations

import difflib
import os
import queue
import signal
import threading
import time
import warnings
import weakref
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, Mapping, TypeVar, overload

import attrs

from ._lazysync import LazyEvent
from ._redact import get_logger, is_secret_header, redact, register_secret
from ._validate import check_event_name, number, seconds, secret_text, websocket_url
from ._workers import not_ended
from ._wsconn import WebSocketConnection
from .config import ConnectOptions, DispatchOptions, ReconnectPolicy
from .dispatch import Dispatcher, Handler
from .engine import Call, Command, Engine, EngineOptions, SendText, Snapshot
from .events import ErrorInfo, Event
from .exceptions import (
    AuthenticationError,
    ClientClosedError,
    ClientForkedError,
    ConfigurationError,
    ConnectError,
    RemoteError,
    TokenError,
    WaitTimeout,
)
from .protocols.base import Adapter, ConnectRequest
from .transport import Connection, State

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Client", "Stats"]

H = TypeVar("H", bound=Handler)
A = TypeVar("A", bound=Adapter)
#: The instance's own type for the methods that return it (``start()``, ``with ... as c``), so a
#: vendor client keeps its vendor methods and typed waits (``typing.Self`` is Python 3.11+).
_C = TypeVar("_C", bound="Client[Any]")

#: ``wait_for(where=...)``.  The vendor clients' typed overloads take it as a function of an
#: ``Event[Any]``: mypy types a lambda from the first overload, so a model-typed ``where``
#: would send every lambda to the last (untyped) overload.
_Where = Callable[[Event[Any]], bool] | None
_Timeout = float | None

_CONNECT_FIELDS = frozenset(a.name for a in attrs.fields(ConnectOptions))
_DISPATCH_FIELDS = frozenset(a.name for a in attrs.fields(DispatchOptions))

_clients: weakref.WeakSet[Client] = weakref.WeakSet()


_seconds = seconds


@attrs.frozen
class Stats:
    """A snapshot of a client's counters (``client.stats``).

    ``frames_received`` counts websocket text frames, or with Bayeux long-polling the HTTP
    responses (each may carry many messages).
    ``last_frame_at`` is the wall-clock time of the last frame received, or None.
    ``reads_paused`` counts the times flow control stopped reading because the handlers were
    ``high_water`` events behind (see :class:`~realtime_sync.DispatchOptions`).
    ``queue_bytes`` is the estimated size of the events waiting for the handlers (what
    ``max_queue_bytes`` bounds; the batch being delivered no longer counts).
    """

    frames_received: int
    events_dispatched: int
    handler_errors: int
    reconnects: int
    queue_depth: int
    dropped: int
    last_frame_at: float | None
    reads_paused: int = 0
    queue_bytes: int = 0


_CLOSED = object()
#: The end of on()'s "closed" message.
_REGISTER_ON_NEW = " and register the handler on it (before or after its start())"


@attrs.frozen
class _WhereFailed:
    """What a waiter's queue gets when its ``where`` function raised on an event."""

    exc: Exception
    event: Event


def _websocket() -> Connection:
    return WebSocketConnection()


def _reconnect_policy(value: Any, default: ReconnectPolicy) -> ReconnectPolicy:
    if value is None:
        return default
    if value is False:
        return ReconnectPolicy.never()
    if isinstance(value, ReconnectPolicy):
        return value
    raise ConfigurationError(
        f"reconnect must be a ReconnectPolicy, None (the default policy) or False (never reconnect), "
        f"got {value!r:.60}; e.g. reconnect=ReconnectPolicy(max_attempts=3)"
    )


#: What an unknown keyword argument often means, beyond a typo (difflib finds those).
_INTENTS = {
    "timeout": "connect_timeout=SECONDS (the opening handshake's bound; the wait of start() is "
    "start(wait=True, timeout=SECONDS))",
    "max_retries": "reconnect=rs.ReconnectPolicy(max_attempts=N)",
    "retries": "reconnect=rs.ReconnectPolicy(max_attempts=N)",
    "max_attempts": "reconnect=rs.ReconnectPolicy(max_attempts=N)",
    "retry": "reconnect=rs.ReconnectPolicy(...)",
    "verify_ssl": "verify=True/False (or ca_bundle='/path/ca.pem')",
}


def _accepted_keywords(cls: type) -> set[str]:
    """Every keyword a client class takes: its constructors' parameters along the MRO (a vendor
    client's own, ``Client``'s) and the ConnectOptions / DispatchOptions fields."""
    import inspect

    names = set(_CONNECT_FIELDS | _DISPATCH_FIELDS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):  # pragma: no cover - a C or odd __init__
            continue
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names.update(p.name for p in params if p.kind in kinds and p.name != "self" and not p.name.startswith("_"))
    return names


def reject_unknown_options(cls: type, options: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigurationError` naming the keywords of ``options`` that ``cls`` does not
    take (the nearest valid ones too).  Vendor clients call it first, before checking their own
    arguments: ``acount_id=1, user_id=7`` must say "did you mean account_id=", not that user_id
    needs an account_id."""
    unknown = set(options) - _accepted_keywords(cls)
    if unknown:
        raise ConfigurationError(_unknown_options(cls, unknown))


def _unknown_options(cls: type, unknown: set[str]) -> str:
    """The message for unknown keyword arguments: the nearest valid names, what the common
    mistakes mean, and every keyword the class takes."""
    valid = _accepted_keywords(cls) - {"url"}
    below = cls.__mro__[: cls.__mro__.index(Client)] if Client in cls.__mro__ else ()
    if any("__init__" in k.__dict__ for k in below):  # a vendor client builds these itself
        valid -= {"adapter", "connection_factory"}
    named = []
    for name in sorted(unknown):
        near = difflib.get_close_matches(name, sorted(valid), n=3, cutoff=0.6)
        if name in _INTENTS:
            named.append(f"{name}= (did you mean {_INTENTS[name]}?)")
        elif near:
            named.append(f"{name}= (did you mean {' or '.join(f'{n}=' for n in near)}?)")
        else:
            named.append(f"{name}=")
    return f"{cls.__name__}: unknown option {', '.join(named)}. It takes: {', '.join(sorted(valid))}"


class Client(Generic[A]):
    """Base of every realtime_sync client.  Use a vendor client, or give an adapter for a new
    protocol (``Client(url, adapter=MyAdapter())``).

    Args:
        url: the websocket URL (secrets in it are redacted in logs).
        adapter: the sans-I/O :class:`~realtime_sync.protocols.Adapter` of the protocol (vendor
            clients build their own).
        connection_factory: a callable returning a new connection per attempt (default: a
            websocket connection).
        token: a string, or a callable returning one, called again before every connection
            attempt (so an expiring OAuth token keeps working).  Vendor clients decide how it is
            sent; by default as ``Authorization: Bearer <token>``.
        connect: :class:`~realtime_sync.ConnectOptions` (headers, TLS, proxy, timeouts, limits).
        reconnect: a :class:`~realtime_sync.ReconnectPolicy`, ``None`` (the client's default
            policy) or ``False`` (never reconnect: the first drop or failure ends the client).
        dispatch: :class:`~realtime_sync.DispatchOptions` (queue bound and overflow policy).
        name: a short name for thread names and logs (default: the class name).
        hub: an :class:`~realtime_sync.Hub` to run on (its loop thread and worker pool) instead
            of threads of the client's own.
        **options: any field of ConnectOptions or DispatchOptions, by name.

    Example::

        client = SomeClient(url, token=get_token, connect_timeout=5)

        @client.on("ticket.updated")
        def show(event):
            print(event.entity_id, event.data)

        with client:                       # start(), and close() on the way out
            client.wait_connected(timeout=10)
            client.run_forever()           # until close() or Ctrl-C
    """

    #: The reconnect policy used when none is given.
    default_reconnect = ReconnectPolicy()
    #: URL schemes the client accepts; with ``http_to_ws``, ``http(s)://`` becomes ``ws(s)://``.
    url_schemes: tuple[str, ...] = ("ws", "wss")
    http_to_ws = False
    url_example = "wss://host/path"
    #: The event names the client sends (lifecycle events aside), for the typo warning of
    #: ``on()``; None when the set is open (channel names, system event types...).
    known_events: frozenset[str] | None = None

    _engine: Engine[A]

    # An unannotated ``client = Client(url, ...)`` type-checks under ``mypy --strict``: the
    # adapter's type is the client's; without one (a ConfigurationError at run time) Client[Adapter].
    @overload
    def __init__(
        self,
        url: str,
        *,
        adapter: A,
        connection_factory: Callable[[], Connection] | None = None,
        token: str | Callable[[], str] | None = None,
        connect: ConnectOptions | None = None,
        reconnect: ReconnectPolicy | bool | None = None,
        dispatch: DispatchOptions | None = None,
        name: str | None = None,
        hub: Hub | None = None,
        **options: Any,
    ) -> None: ...

    @overload
    def __init__(
        self: Client[Adapter],
        url: str,
        *,
        adapter: None = None,
        connection_factory: Callable[[], Connection] | None = None,
        token: str | Callable[[], str] | None = None,
        connect: ConnectOptions | None = None,
        reconnect: ReconnectPolicy | bool | None = None,
        dispatch: DispatchOptions | None = None,
        name: str | None = None,
        hub: Hub | None = None,
        **options: Any,
    ) -> None: ...

    def __init__(
        self,
        url: str,
        *,
        adapter: A | None = None,
        connection_factory: Callable[[], Connection] | None = None,
        token: str | Callable[[], str] | None = None,
        connect: ConnectOptions | None = None,
        reconnect: ReconnectPolicy | bool | None = None,
        dispatch: DispatchOptions | None = None,
        name: str | None = None,
        hub: Hub | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(adapter, Adapter):
            raise ConfigurationError(
                "Client needs adapter=<a protocol adapter instance>, e.g. Client(url, adapter=MyAdapter()); "
                "or use a vendor client (VoxsigClient, GenesysChatClient, JifelineCustomerClient...)"
            )
        url = websocket_url(
            url, type(self).__name__, schemes=self.url_schemes, http_to_ws=self.http_to_ws, example=self.url_example
        )
        if connect is not None and not isinstance(connect, ConnectOptions):
            raise ConfigurationError(f"connect= takes a ConnectOptions, got {type(connect).__name__}")
        if dispatch is not None and not isinstance(dispatch, DispatchOptions):
            raise ConfigurationError(f"dispatch= takes a DispatchOptions, got {type(dispatch).__name__}")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigurationError(f"name= must be a non-empty string, got {name!r}")
        unknown = set(options) - _CONNECT_FIELDS - _DISPATCH_FIELDS
        if unknown:
            raise ConfigurationError(_unknown_options(type(self), unknown))
        c_opts = {k: v for k, v in options.items() if k in _CONNECT_FIELDS}
        d_opts = {k: v for k, v in options.items() if k in _DISPATCH_FIELDS}
        self.connect_options = attrs.evolve(connect or ConnectOptions(), **c_opts)
        self.dispatch_options = attrs.evolve(dispatch or DispatchOptions(), **d_opts)
        self.reconnect_policy = _reconnect_policy(reconnect, self.default_reconnect)
        self.url = url
        if token is not None and not (isinstance(token, str) or callable(token)):
            raise ConfigurationError("token must be a string or a callable returning a string")
        if isinstance(token, str):
            # Surrounding whitespace stripped (a token read from a file ends with a newline); a
            # line break inside would be written into the Authorization header: refused now.
            token = secret_text(token, "token")
        self._token = token
        # The secrets this client was configured with; registered again before every connect
        # (the registry keeps only the most recent ones, see _redact.MAX_SECRETS).
        secrets = [token] if isinstance(token, str) else []
        for header, value in self.connect_options.headers.items():
            if isinstance(value, str) and " " in value:
                secrets.append(value.split(" ", 1)[1])
            if isinstance(value, str) and is_secret_header(str(header)):
                secrets.append(value)  # X-Auth-Token: <value>, with no scheme word before it
        cookie = self.connect_options.cookie_header()
        if cookie:
            secrets.extend(part.partition("=")[2].strip() for part in cookie.split(";"))
        self._secrets = tuple(secrets)
        for secret in self._secrets:
            register_secret(secret)
        self.name = name or type(self).__name__
        self._explicit_name = name is not None
        self.log = get_logger(f"realtime_sync.{self.name}")
        self._lock = threading.RLock()
        self._started = False
        self._closed = False
        self._released = False  # close() has run its one-time release (descriptors, hub)
        self._ended_by_itself = False  # the engine stopped before close() (see _why_closed)
        self._closed_event = LazyEvent()  # (no condition per client until one waits: a hub holds thousands)
        self._owner_pid = os.getpid()
        self._waiters: set[queue.SimpleQueue[Any]] = set()
        self._waiters_woken = False  # _CLOSED was sent to the waiters: later ones get it at once
        if hub is not None and not hasattr(hub, "_dispatcher"):
            raise ConfigurationError(f"hub must be an rs.Hub, got {type(hub).__name__}")
        self._hub = hub
        self._dispatcher: Dispatcher = (
            hub._dispatcher(self.dispatch_options, self.log, self.name)
            if hub is not None
            else Dispatcher(self.dispatch_options, self.log, self.name)
        )
        self._engine = Engine(
            adapter,
            connection_factory or _websocket,
            EngineOptions(self._build_request, self.connect_options, self.reconnect_policy, self.name),
            dispatcher=self._dispatcher,
            on_finished=self._engine_finished,
            log=get_logger(f"realtime_sync.transport.{self.name}"),
        )
        _clients.add(self)
        if hub is not None:
            hub._attach(self)

    # -- for subclasses ---------------------------------------------------------------------

    def _identity(self) -> tuple[Any, ...]:
        """What tells this client's connection from another's (for the same-name warning): the
        class, URL and credentials; vendor clients add theirs (ids, tokens sent in frames)."""
        return (type(self), self.url, self._secrets, None if isinstance(self._token, str) else self._token)

    def _resolve_token(self) -> str | None:
        token = self._token
        if token is None or isinstance(token, str):
            return token
        try:
            value = token()
        except TokenError:
            raise
        except Exception as exc:
            raise TokenError(f"the token callable raised {type(exc).__name__}: {redact(exc)}") from exc
        if not isinstance(value, str) or not value:
            raise TokenError(f"the token callable must return a non-empty string, got {type(value).__name__}")
        # As for a token string: stripped, and never sent with a control character inside (an
        # ``error`` event of kind "token"; the attempt is not made).
        register_secret(value)
        value = secret_text(value, "the token the token callable returned", error=TokenError)
        register_secret(value)
        return value

    def _connect_request(self, token: str | None) -> ConnectRequest:
        headers = dict(self.connect_options.headers)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return ConnectRequest(
            url=self.url,
            headers=headers,
            subprotocols=tuple(self.connect_options.subprotocols),
            origin=self.connect_options.origin,
            cookies=self.connect_options.cookie_header(),
        )

    def _build_request(self) -> ConnectRequest:
        for secret in self._secrets:
            register_secret(secret)
        return self._connect_request(self._resolve_token())

    def _submit(self, command: Command) -> None:
        """Queue a typed command for the I/O thread (applied at once before start())."""
        self._check_usable()
        self._engine.submit(command)

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue ``method(adapter, *args, now, **kwargs)`` (an adapter method named through its
        class) for the I/O thread."""
        self._submit(Call(method, args, kwargs))

    def _join_hub(self, hub: Hub) -> None:
        """``hub.add(self)``: run on ``hub`` from start() on (handlers registered so far move too)."""
        with self._lock:
            if self._hub is hub and not self._closed:
                return
            if self._started or self._closed or self._hub is not None:
                raise ConfigurationError(
                    "hub.add(client) needs a client that is not started and not on another hub; "
                    "or create it with hub=hub"
                )
            dispatcher = hub._dispatcher(self.dispatch_options, self.log, self.name)
            dispatcher.adopt(self._dispatcher)
            self._dispatcher = dispatcher
            self._engine.dispatcher = dispatcher
            self._hub = hub
        hub._attach(self)

    # -- state ------------------------------------------------------------------------------

    def _engine_finished(self) -> None:
        # On the I/O thread, when the engine stopped (close(), or by itself: the server said
        # "do not reconnect", credentials refused with stop_on_auth_failure, max_attempts).
        # The dispatcher delivers what is queued (the final "error"/"disconnected") and ends;
        # run_forever() wakes up now.  Waiters (wait_for, events()) are woken by the dispatcher
        # thread once it has delivered those final events, so that an events() loop sees them.
        with self._lock:
            self._closed = True
            # By itself: a refusal, "do not reconnect", max_attempts, reconnect disabled.  Not
            # when asked to stop: close(), or a hub's close() (which stops every engine before
            # it closes each client, so _released alone would be set too late for some).
            if not self._released and self._engine.stopped_by_server:
                self._ended_by_itself = True
        self._dispatcher.stop_soon(then=self._wake_waiters)
        self._closed_event.set()

    @property
    def snapshot(self) -> Snapshot:
        """The engine's last published :class:`~realtime_sync.engine.Snapshot` (state,
        subscriptions, last event id, transport), a frozen value safe to read from any thread."""
        return self._engine.snapshot

    @property
    def state(self) -> State:
        """The client's :class:`~realtime_sync.State` (``"connected"``, ``"reconnecting"``...)."""
        if self._forked():
            return State.FORKED
        return self._engine.snapshot.state

    @property
    def stats(self) -> Stats:
        """Counters: frames received, events dispatched, handler errors, reconnects, queue depth..."""
        e, d = self._engine, self._dispatcher
        return Stats(
            e.frames_received,
            d.dispatched,
            d.handler_errors,
            e.reconnects,
            d.depth(),
            d.dropped,
            e.last_frame_at,
            e.pauses,
            d.queued_bytes(),
        )

    @property
    def closed(self) -> bool:
        """True once the client was closed or stopped for good."""
        return self._closed or self._closed_event.is_set()

    def _forked(self) -> bool:
        return self._started and os.getpid() != self._owner_pid

    def _check_usable(self, call: str | None = None, then: str = "") -> None:
        """Raise when the client can no longer run: closed (:class:`ClientClosedError`) or
        inherited through a fork (:class:`ClientForkedError`).  ``call`` names the method for the
        message, ``then`` completes its "create a new client" advice."""
        if self._forked():
            raise ClientForkedError(
                f"this {type(self).__name__} was started in process {self._owner_pid}; this process "
                f"({os.getpid()}) is a fork of it and the client's threads did not survive the fork. "
                "Create and start a new client in this process (after the fork: e.g. in gunicorn's "
                "post_fork hook or Celery's worker_process_init signal)."
            )
        if self._closed:
            on = f"{call} on a closed client: " if call else ""
            why = self._why_closed()
            fix = "fix that, then create a new client" if why else "create a new client"
            raise ClientClosedError(
                f"{on}this {type(self).__name__} is closed{why} and cannot be started again; {fix}{then}"
            )

    def _why_closed(self) -> str:
        """`` (it stopped by itself: <kind>: <message>)`` for a client whose engine stopped
        before :meth:`close` (credentials refused, the server said not to come back, the
        reconnect policy gave up), else ``""``: for the messages of :class:`ClientClosedError`."""
        if not self._ended_by_itself:
            return ""
        last = self._engine.snapshot.last_error
        if last is None:  # pragma: no cover - the engine records why it stopped
            return " (it stopped by itself)"
        return f" (it stopped by itself: {last.kind}: {redact(last.message)})"

    # -- handlers ---------------------------------------------------------------------------

    @overload
    def on(self, name: str, handler: None = None, *, entity_id: Any = None) -> Callable[[H], H]: ...

    @overload
    def on(self, name: str, handler: H, *, entity_id: Any = None) -> H: ...

    def on(self, name: str, handler: H | None = None, *, entity_id: Any = None) -> Any:
        """Register ``handler`` for events named ``name`` (a glob pattern such as
        ``"conversation.*"`` or ``"*"`` works too); usable as a decorator.

        ``entity_id`` restricts the handler to one entity's events (compared as strings, so
        ``7`` and ``"7"`` are the same).  Several handlers per name are called in the order they
        were registered.  Lifecycle events (``connected``, ``disconnected``, ``reconnecting``,
        ``subscribed``, ``subscription_rejected``, ``error``) are registered the same way.

        >>> client.on("message.created", print)            # doctest: +SKIP
        >>> @client.on("conversation.*", entity_id=42)      # doctest: +SKIP
        ... def conversation_42(event: rs.Event[Conversation]) -> None: ...

        The decorated function keeps its type; annotate ``event`` with ``rs.Event[Model]`` and a
        type checker checks what you read from ``event.data``.

        Before :meth:`start` and while the client runs, handlers can be added at any time.  On a
        closed client (after :meth:`close`, or once it stopped for good by itself) it raises
        :class:`~realtime_sync.ClientClosedError`: a closed client cannot be started again, so the
        handler would never run; create a new client and register it there.  (:meth:`off` still
        works on a closed client.)
        """
        self._check_usable("on()", _REGISTER_ON_NEW)
        if not isinstance(name, str) or not name:
            raise ConfigurationError("on() needs an event name or pattern such as 'message.created' or '*'")
        if isinstance(entity_id, (list, set, frozenset, dict)):
            raise ConfigurationError(
                f"entity_id is one id (a str or int; VoxsigClient(all_accounts=True): an (account_id, id) "
                f"tuple), got a {type(entity_id).__name__}: register the handler once per id"
            )
        if handler is not None:  # (the decorator form comes back here with its function)
            check_event_name(name, self.known_events, type(self).__name__)
        if handler is None:

            def decorator(fn: H) -> H:
                self.on(name, fn, entity_id=entity_id)
                return fn

            return decorator
        if not callable(handler):
            raise ConfigurationError(f"handler must be callable, got {type(handler).__name__}")
        self._dispatcher.add(name, handler, entity_id)
        return handler

    def off(self, name: str | None = None, handler: Handler | None = None, *, entity_id: Any = None) -> int:
        """Remove registrations matching all the given arguments; returns how many were removed.

        ``off("message.created")`` removes every handler of that name, ``off(handler=h)`` every
        registration of ``h``, ``off()`` everything.  Allowed on a closed client too.
        """
        return self._dispatcher.remove(name, handler, entity_id)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self: _C, wait: bool = False, timeout: float | None = None) -> _C:
        """Start the background threads and connect.  Idempotent; returns the client.

        The state is ``connecting`` as soon as it returns.  With ``wait=True`` it blocks until
        the client is connected and its subscriptions are confirmed (see
        :meth:`wait_connected`), and raises if that fails (the client is then closed).  It waits
        for the state, not for the handlers: ``connected`` and ``subscribed`` events may still be
        on their way to the dispatcher thread when it returns.

        >>> client.start(wait=True, timeout=10)     # doctest: +SKIP
        """
        timeout = _seconds(timeout)  # checked before anything starts
        if timeout is not None and not wait:
            raise ConfigurationError(
                "start(timeout=...) is the time start() waits for the connection, and it waits only with "
                "wait=True: pass wait=True (start(wait=True, timeout=10)), or drop timeout= to return at once"
            )
        if wait and self._dispatcher.is_dispatch_thread():
            self._check_waitable()  # raises: not from a handler, before anything starts
        # Taken before the engine starts: a refusal that comes back at once is this start's.
        before = self._engine.snapshot.last_error
        with self._lock:
            if self._forked():
                self._check_usable()
            if self._closed:
                self._check_usable("start()")
            if not self._started:
                if self._hub is None:  # hub clients own no threads: one name for thousands is fine
                    _warn_same_name(self)
                self._started = True
                self._owner_pid = os.getpid()
                self._engine.start(self._hub.loop if self._hub is not None else None)
        if wait:  # usable: start() raised otherwise; not a handler: checked above
            self._wait_connected(timeout, before)
        return self

    def wait_connected(self: _C, timeout: float | None = None) -> _C:
        """Start if needed, and block until connected with every subscription confirmed.

        Raises (and closes the client): :class:`~realtime_sync.WaitTimeout` after ``timeout``
        seconds (its message names the last error, e.g. the connection refused);
        :class:`~realtime_sync.AuthenticationError` when the server refuses the credentials;
        :class:`~realtime_sync.RemoteError` when it rejects a subscription;
        :class:`~realtime_sync.ConnectError` when connecting failed and the reconnect policy
        gave up (``reconnect=False``, ``max_attempts``): the last failure in the message, its
        exception as ``__cause__``; :class:`~realtime_sync.ClientClosedError` when the client
        stops for good meanwhile for another reason.

        >>> client.subscribe_ticket(42)                      # doctest: +SKIP
        >>> client.wait_connected(timeout=10)                # doctest: +SKIP
        """
        timeout = _seconds(timeout)
        self._check_waitable()
        before = self._engine.snapshot.last_error
        self.start()
        return self._wait_connected(timeout, before)

    def _check_waitable(self) -> None:
        self._check_usable()
        if self._dispatcher.is_dispatch_thread():
            raise ConfigurationError("wait_connected() cannot be called from inside a handler")

    def _wait_connected(self: _C, timeout: float | None, before: ErrorInfo | None) -> _C:
        """:meth:`wait_connected`, counting only errors other than ``before`` (the last error
        recorded before this start or wait began)."""
        engine = self._engine
        confirms = engine.adapter.confirms_subscriptions

        def settled(s: Snapshot) -> bool:
            if s.state is State.CLOSED or s.rejected:
                return True
            if s.last_error is not before and s.last_error is not None and s.last_error.kind == "auth":
                return True
            return s.state is State.CONNECTED and s.ready and not (confirms and s.pending)

        ok = engine.wait_for_change(settled, timeout)
        s = engine.snapshot
        error: Exception | None = None
        if not ok:
            last = s.last_error if s.last_error is not before else None
            detail = f" (last error: {last.kind}: {last.message})" if last is not None else ""
            what = "not connected" if not (s.state is State.CONNECTED and s.ready) else "subscriptions not confirmed"
            error = WaitTimeout(f"{what} within {timeout:g}s{detail}")
        elif s.state is State.CONNECTED and s.ready and not (confirms and s.pending) and not s.rejected:
            return self
        elif s.rejected:
            why = "; ".join(f"{sub!r}: {reason}" for sub, reason in zip(s.rejected, s.rejected_reasons, strict=True))
            error = RemoteError(f"subscription rejected: {why}")
        elif s.last_error is not None and s.last_error.kind == "auth" and s.last_error is not before:
            cause = s.last_error.exception
            # The refusal's own class (TokenRefusedError when the token endpoint refused).
            kind = type(cause) if isinstance(cause, AuthenticationError) else AuthenticationError
            error = kind(s.last_error.message)
        elif s.last_error is not None and s.last_error.kind == "connect" and s.last_error is not before:
            # Reconnecting gave up (reconnect=False, max_attempts): the network's failure, as
            # ConnectError, whatever the last attempt's own exception was.
            cause = s.last_error.exception
            error = ConnectError(
                f"could not connect; the client stopped for good (its reconnect policy gave up): {s.last_error.message}"
            )
            error.__cause__ = cause
        else:
            last = s.last_error
            detail = f": {last.kind}: {last.message}" if last is not None else ""
            error = ClientClosedError(
                f"the client stopped for good before it was ready (connected, subscriptions confirmed){detail}"
            )
        self.close()
        raise error

    def close(self, timeout: float | None = 10.0) -> None:
        """Close the connection and stop every thread the client started.  Idempotent.

        Waits up to ``timeout`` seconds for the goodbye frames, the last events to be delivered,
        and the threads to end.  Safe to call from inside a handler: the other threads are
        joined, and the dispatcher thread ends as soon as the handler returns.  In a forked child
        it does nothing (the threads live in the parent).
        """
        timeout = _seconds(timeout)
        if self._forked():
            return
        with self._lock:
            # Not `_closed`: the engine sets that when it stops by itself (reconnect:false, a
            # refusal), and such a client must still leave its hub when closed.
            already, self._released = self._released, True
            self._closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        engine_ended = self._engine.stop(timeout)
        remaining = None if deadline is None else max(0.1, deadline - time.monotonic())
        if not (self._dispatcher.stop(remaining) and engine_ended):
            self.log.warning("%s", self._not_ended(timeout, engine_ended))
        self._closed_event.set()
        self._wake_waiters()
        if not already:
            self._engine.release()
            if self._hub is not None:
                self._hub._detach(self)

    def _not_ended(self, timeout: float | None, engine_ended: bool) -> str:
        """close()'s warning: the threads still running, and whether a handler holds one."""
        me = threading.current_thread()
        names: list[str] = []
        handlers: list[str] = []
        if not engine_ended:
            t = self._engine.thread
            names.append(t.name if t is not None else "the hub's loop")
        # Standalone: the client's dispatch thread; on a hub: the worker running its lane now.
        d = self._dispatcher.thread or getattr(self._dispatcher, "runner", None)
        if d is not None and d is not me and d.is_alive():
            names.append(d.name)
            handlers.append(d.name)
        return not_ended("close()", timeout, names, handlers)

    def __enter__(self: _C) -> _C:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_forever(self) -> None:
        """Start (if needed) and block until the client is closed; Ctrl-C and SIGTERM (what docker
        and systemd send) close it cleanly, then it returns.

        Returns when ``close()`` is called (from a handler or another thread) or when the client
        stops for good (the server said not to reconnect, credentials refused and
        ``stop_on_auth_failure``...).  SIGTERM is handled only in the main thread and only while
        no handler of your own is installed for it; the previous handler is restored.

        It returns nothing: to learn why it returned, read ``client.snapshot.last_error`` (an
        :class:`~realtime_sync.ErrorInfo`; ``kind == "auth"`` with the server's reason when the
        credentials were refused; ``None`` when no error was recorded) or listen to the ``error``
        and ``disconnected`` events (``will_reconnect`` is False on the last one).

        >>> client.run_forever()                             # doctest: +SKIP
        >>> if client.snapshot.last_error is not None:       # doctest: +SKIP
        ...     print("stopped:", client.snapshot.last_error.message)
        """
        if self._dispatcher.is_dispatch_thread():
            raise ConfigurationError(
                "run_forever() cannot be called from inside a handler: it would block the thread that "
                "delivers events until close(). Call it once from the main thread (the client keeps "
                "running after a handler returns)."
            )
        # The handlers are in place before start(): a signal may come as soon as the client runs.
        # They never raise inside start() (an exception there, between two steps, would leave
        # threads nobody stops): a signal that comes early is held until the wait below.
        signals = _StopSignals()
        try:
            if not (self._started and self.closed):  # already over (e.g. the server said stop): just return
                self.start()
            signals.armed()
            while not self._closed_event.wait(3600):
                pass
        except KeyboardInterrupt:
            self.log.info("interrupted: closing")
        except _Terminated:
            self.log.info("SIGTERM: closing")
        finally:
            signals.restore()
            self.close()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every thread of the client has ended; True if they have."""
        timeout = _seconds(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in (self._engine.thread, self._dispatcher.thread):
            if t is not None and t is not threading.current_thread():
                t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
                if t.is_alive():
                    return False
        return True

    # -- waiting ------------------------------------------------------------------------------

    def _wake_waiters(self) -> None:
        with self._lock:
            self._waiters_woken = True
            waiters = list(self._waiters)
        for q in waiters:
            q.put(_CLOSED)

    def _subscribe_queue(
        self, name: str, where: Callable[[Event], bool] | None
    ) -> tuple[queue.SimpleQueue[Any], Handler]:
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def collect(event: Event) -> None:
            if where is None:
                q.put(event)
                return
            try:
                wanted = where(event)
            except Exception as exc:  # the caller's bug: raised in the caller's thread
                q.put(_WhereFailed(exc, event))
                return
            if wanted:
                q.put(event)

        with self._lock:
            self._waiters.add(q)
            if self._waiters_woken:  # closed since the caller's _check_usable(): end at once
                q.put(_CLOSED)
        self._dispatcher.add(name, collect)
        return q, collect

    def _unsubscribe_queue(self, name: str, q: queue.SimpleQueue[Any], handler: Handler) -> None:
        self._dispatcher.remove(name, handler)
        with self._lock:
            self._waiters.discard(q)

    def wait_for(self, name: str, timeout: float | None = None, where: _Where = None) -> Event:
        """Block until an event named ``name`` (pattern allowed) arrives, and return it.

        ``where`` filters events (``where=lambda e: e.entity_id == 42``).  Raises
        :class:`~realtime_sync.WaitTimeout` after ``timeout`` seconds and
        :class:`~realtime_sync.ClientClosedError` if the client closes first, or at once when it
        is already closed (a closed client cannot be started again: create a new one).  Starts
        the client if it is not started.  Only events arriving after the call count.

        The vendor clients type the result by the event name: ``VoxsigClient.wait_for
        ("message.created")`` is an ``Event[Message]``, ``JifelineCustomerClient.wait_for
        ("ticket.updated")`` an ``Event[Ticket]``, ``GenesysChatClient.wait_for
        ("chat.new_messages")`` an ``Event[MessageLogUpdate]``; a pattern or another name gives
        ``Event[Any]``.

        >>> event = client.wait_for("message.created", timeout=30)     # doctest: +SKIP
        >>> event.data.content                                          # doctest: +SKIP
        """
        timeout = _seconds(timeout)
        self._check_usable("wait_for()")
        if self._dispatcher.is_dispatch_thread():
            raise ConfigurationError(
                "wait_for() cannot be called from inside a handler: it would wait for the very thread "
                "that runs it. Register another handler with on() instead."
            )
        q, handler = self._subscribe_queue(name, where)
        try:
            self.start()
            try:
                # SimpleQueue refuses a negative timeout; a deadline already past means "now".
                item = q.get(timeout=None if timeout is None else max(0.0, timeout))
            except queue.Empty:
                raise WaitTimeout(f"no {name!r} event within {timeout:g}s") from None
            if item is _CLOSED:
                raise ClientClosedError(f"the client closed while waiting for {name!r}{self._why_closed()}")
            if type(item) is _WhereFailed:
                raise ConfigurationError(
                    f"wait_for({name!r}, where=...): the where function raised "
                    f"{type(item.exc).__name__}: {redact(str(item.exc))} on a {item.event.name!r} event; "
                    "make it return False for events it cannot judge"
                ) from item.exc
            return item  # type: ignore[no-any-return]
        finally:
            self._unsubscribe_queue(name, q, handler)

    def events(self, name: str = "*", *, timeout: float | None = None, limit: int | None = None) -> Iterator[Event]:
        """Iterate over events as they arrive, for scripts and notebooks.

        The iteration ends when no event arrives within ``timeout`` seconds (None: never), after
        ``limit`` events, or when :meth:`close` closes the client (the events received until then
        are delivered first).  A client that stops by itself (credentials refused, the server
        said not to come back, the reconnect policy gave up) delivers its events, then raises
        :class:`~realtime_sync.ClientClosedError` saying why: a script's loop does not end as if
        all were well.  Starts the client if needed.  On a client that is already closed the
        call raises :class:`~realtime_sync.ClientClosedError` (a closed client cannot be started
        again: create a new one).  Typed by the event name like :meth:`wait_for`.

        >>> for event in client.events("message.*", timeout=60):      # doctest: +SKIP
        ...     print(event.data.content)
        """
        timeout = _seconds(timeout)
        limit = number(limit, "limit", integer=True, optional=True)
        self._check_usable("events()")
        if self._dispatcher.is_dispatch_thread():
            raise ConfigurationError("events() cannot be iterated inside a handler; use on() there")
        # Register now, not at the first next(): events arriving in between are kept.
        q, handler = self._subscribe_queue(name, None)
        return self._iterate(name, q, handler, timeout, limit)

    def _iterate(
        self, name: str, q: queue.SimpleQueue[Any], handler: Handler, timeout: float | None, limit: int | None
    ) -> Iterator[Event]:
        if timeout is not None:
            timeout = max(0.0, timeout)  # SimpleQueue refuses a negative timeout
        try:
            try:
                self.start()
            except ClientClosedError:
                # Closed between events() and the first next(): q was registered by then, so
                # it gets _CLOSED after the events collected meanwhile; deliver them, then end.
                pass
            count = 0
            while limit is None or count < limit:
                try:
                    item = q.get(timeout=timeout)
                except queue.Empty:
                    return
                if item is _CLOSED:
                    if self._ended_by_itself:
                        raise ClientClosedError(
                            f"the client stopped while iterating events({name!r}){self._why_closed()}"
                        )
                    return
                count += 1
                yield item
        finally:
            self._unsubscribe_queue(name, q, handler)

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    # -- sending ------------------------------------------------------------------------------

    def send(self, message: Any) -> None:
        """Send a raw frame (a str as is, anything else as JSON) when connected; dropped otherwise.

        Prefer the vendor client's methods (``subscribe_ticket``, ``perform``...), which keep
        subscriptions as desired state across reconnects.
        """
        from ._json import dumps

        text = message if isinstance(message, str) else dumps(message)
        self._submit(SendText(text))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} url={redact(self.url)!r} state={self.state.value}>"

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter teardown
        try:
            if self._started and not self._closed and not self._forked():
                self._engine.request_stop()
        except Exception:
            pass


class _Terminated(Exception):
    """Raised in the main thread by run_forever()'s SIGTERM handler."""


class _StopSignals:
    """run_forever()'s Ctrl-C and SIGTERM handling, in the main thread only.

    SIGINT raises :class:`KeyboardInterrupt` and SIGTERM :class:`_Terminated`, but only once
    :meth:`armed` says the caller is waiting; a signal that comes before (while ``start()`` runs)
    is held and raised by :meth:`armed`.  Only the default handlers are replaced (an application
    that handles a signal itself keeps it); :meth:`restore` puts them back.
    """

    def __init__(self) -> None:
        self._waiting = False
        self._held: int | None = None
        self._installed: list[tuple[int, Any]] = []
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
            try:
                if signal.getsignal(signum) is default:
                    signal.signal(signum, self._handle)
                    self._installed.append((signum, default))
            except (ValueError, OSError, AttributeError):  # pragma: no cover - platforms without it
                pass

    @staticmethod
    def _raise(signum: int) -> None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise _Terminated()

    def _handle(self, signum: int, frame: Any) -> None:
        if self._waiting:
            self._raise(signum)
        if self._held is None:
            self._held = signum

    def armed(self) -> None:
        """From now on a signal raises; one that came earlier raises now."""
        self._waiting = True
        if self._held is not None:
            self._raise(self._held)

    def restore(self) -> None:
        self._waiting = False
        for signum, default in self._installed:
            try:
                if signal.getsignal(signum) == self._handle:
                    signal.signal(signum, default)
            except (ValueError, OSError):  # pragma: no cover
                pass
        self._installed = []


def _warn_same_name(client: Client) -> None:
    """Warn when another live client of this process has ``client``'s name and either both were
    given that ``name=`` or they are configured alike (:meth:`Client._identity`): a notebook cell
    run twice (the first client is still connected).  Two clients of the default name for two
    agents (other credentials or ids) are legitimate and do not warn."""
    for other in list(_clients):
        if other is not client and other.name == client.name and other._started and not other.closed:
            if other._forked() or other._hub is not None:
                continue
            explicit = client._explicit_name and other._explicit_name
            if not explicit and client._identity() != other._identity():
                continue
            message = (
                f"another client named {client.name!r} is already running in this process "
                f"({redact(repr(other))}); if it is a previous run of the same cell or script, close it "
                "first (client.close()); otherwise give each client its own name= "
                "(thread names and logs use it)"
            )
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            return
