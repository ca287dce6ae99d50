"""What the CLI, the Django app and the Flask extension share.

* :func:`make_client` builds a vendor client from plain configuration (a vendor name, a URL, a
  token, keyword options, and a ``subscribe`` mapping), as settings files express it.
* :class:`HandlerRegistry` collects handlers (``@registry.on("message.created")``) and setup
  functions before any client exists, and attaches them to the clients built later, each
  handler wrapped by the framework (Django closes stale database connections around it, Flask
  pushes an application context).
* :class:`ProcessLocalClient` is a lazily started client per process: after a ``fork()``
  (gunicorn ``--preload``, Celery prefork) the child gets a client of its own.
* :func:`run_clients` starts clients and blocks until Ctrl-C, SIGTERM, a duration, a number of
  events, or until every client stopped by itself; it is the body of ``realtime-sync listen``,
  ``manage.py realtime_listen`` and ``flask realtime listen``.
"""

from __future__ import annotations

import atexit
import importlib
import os
import signal
import sys
import threading
import time
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar, overload

import attrs

from .._redact import get_logger, redact, register_secret
from ..client import Client
from ..dispatch import same_handler
from ..events import LIFECYCLE_EVENTS, DisconnectInfo, Event
from ..exceptions import ConfigurationError

__all__ = [
    "VENDORS",
    "HandlerRegistry",
    "ProcessLocalClient",
    "RunResult",
    "Runner",
    "make_client",
    "normalise_vendor",
    "run_clients",
]

log = get_logger("realtime_sync.contrib")

#: Vendor names accepted in configuration, and the client class each builds.
VENDORS: dict[str, str] = {
    "jifeline-customer": "realtime_sync.jifeline:JifelineCustomerClient",
    "jifeline-partner": "realtime_sync.jifeline:JifelinePartnerClient",
    "voxsig": "realtime_sync.voxsig:VoxsigClient",
    "genesys": "realtime_sync.genesys:GenesysChatClient",
    "actioncable": "realtime_sync.actioncable:ActionCableClient",
    "cometd": "realtime_sync.cometd:CometDClient",
}
_ALIASES = {
    "jifeline": "jifeline-customer",
    "jifeline_customer": "jifeline-customer",
    "jifeline_partner": "jifeline-partner",
    "partner": "jifeline-partner",
    "bayeux": "cometd",
}

#: For each vendor, the ``subscribe`` keys it accepts and the client method each calls.
SUBSCRIBE_METHODS: dict[str, dict[str, str]] = {
    "jifeline-customer": {"ticket": "subscribe_ticket", "connector": "subscribe_connector",
                          "connection": "subscribe_connection"},
    "jifeline-partner": {"connector": "subscribe_connector", "event": "subscribe_event"},
    "voxsig": {},
    "genesys": {"topic": "subscribe"},
    "actioncable": {"channel": "subscribe"},
    "cometd": {"topic": "subscribe", "channel": "subscribe"},
}  # fmt: skip


def normalise_vendor(vendor: str) -> str:
    """The canonical vendor name (``"jifeline"`` -> ``"jifeline-customer"``...).

    >>> normalise_vendor("Voxsig")
    'voxsig'
    """
    if not isinstance(vendor, str):
        raise ConfigurationError(f"vendor must be a string, one of {sorted(VENDORS)}")
    name = vendor.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in VENDORS:
        raise ConfigurationError(f"unknown vendor {vendor!r}; choose one of {sorted(VENDORS)}")
    return name


def client_class(vendor: str) -> type[Client]:
    module, _, attr = VENDORS[normalise_vendor(vendor)].partition(":")
    cls: type[Client] = getattr(importlib.import_module(module), attr)
    return cls


def import_string(path: str) -> Any:
    """``"package.module:attr"`` or ``"package.module.attr"`` -> the object.

    A module that is not importable from ``sys.path`` is looked for in the working directory
    too, as gunicorn and celery do: the ``realtime-sync`` console script, unlike ``python -m``,
    does not put the working directory on ``sys.path``, so ``realtime-sync listen ... --tenants
    myapp.tenants:all_agents`` run from the project's directory would not find ``myapp``.  The
    directory is appended (it never shadows an installed module) and only when needed.
    """
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ConfigurationError(f"{path!r} is not an importable 'module:attribute' path")
    try:
        try:
            imported = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not _from_working_directory(exc, module):
                raise
            imported = importlib.import_module(module)
        return getattr(imported, attr)
    except (ImportError, AttributeError) as exc:
        hint = ""
        if isinstance(exc, ModuleNotFoundError) and exc.name == module.partition(".")[0]:
            hint = f" (looked in sys.path and in the working directory {os.getcwd()!r}: run from the directory that holds it, or set PYTHONPATH)"
        raise ConfigurationError(f"cannot import {path!r}: {exc}{hint}") from exc


def _from_working_directory(exc: ModuleNotFoundError, module: str) -> bool:
    """True if ``module``'s top-level package was missing and the working directory, not yet on
    ``sys.path``, was appended to it (so importing again may find it there)."""
    if exc.name != module.partition(".")[0]:
        return False  # something the module itself imports is missing: not ours to fix
    try:
        cwd = os.getcwd()
    except OSError:
        return False
    if any(os.path.abspath(p or os.curdir) == cwd for p in sys.path):
        return False  # it was looked in already
    sys.path.append(cwd)
    importlib.invalidate_caches()
    return True


def token_from_config(token: Any, provider: Any = None) -> Any:
    """The token a configuration gives: ``token`` itself, or ``provider`` (a callable, or the
    dotted path of one: ``"myproject.tokens.get_token"``), which the client calls on every connect."""
    if provider is None:
        return token
    if token is not None:
        raise ConfigurationError("give either a token or a token provider, not both")
    fn = import_string(provider) if isinstance(provider, str) else provider
    if not callable(fn):
        raise ConfigurationError(f"the token provider must be callable, got {type(fn).__name__}")
    return fn


def make_client(
    vendor: str,
    url: str | None = None,
    token: str | Callable[[], str] | None = None,
    *,
    subscribe: Mapping[str, Iterable[Any]] | None = None,
    **options: Any,
) -> Client:
    """Build (not start) a client from plain configuration.

    ``token`` is the vendor's secret: the Voxsig pubsub token, the Jifeline bearer token (a
    callable is called on every connect), an optional bearer token for Genesys/CometD.  For the
    Jifeline partner, ``client_id`` + ``client_secret`` options (and optionally ``token_url``)
    build an OAuth2 token provider instead.  ``subscribe`` maps a kind to the ids to subscribe to
    (``{"ticket": [32423]}``, ``{"event": ["tickets.ticket.created"]}``, ``{"topic": [...]}``).
    Any other option goes to the client's constructor (``account_id``, ``user_id``,
    ``username``, ``connect_timeout``, ``reconnect``...).

    >>> client = make_client("jifeline", "wss://example.invalid/ws", subscribe={"ticket": [32423]})
    >>> client.subscriptions
    [Subscription('ticket', 32423)]
    >>> client.close()
    """
    name = normalise_vendor(vendor)
    cls = client_class(name)
    options = dict(options)
    if name == "voxsig":
        if callable(token):
            token = token()
        if not token:
            raise ConfigurationError("the Voxsig client needs its pubsub token (TOKEN / pubsub_token)")
        options.setdefault("pubsub_token", token)
        token = None
    if name == "jifeline-partner":
        client_id, client_secret = options.pop("client_id", None), options.pop("client_secret", None)
        token_url = options.pop("token_url", None)
        if client_id or client_secret:
            if token is not None:
                raise ConfigurationError("give either a token or client_id + client_secret, not both")
            if not (client_id and client_secret):
                raise ConfigurationError("client_id and client_secret go together")
            from ..jifeline import partner_token_url
            from ..oauth import ClientCredentialsTokenProvider

            token = ClientCredentialsTokenProvider(
                token_url or partner_token_url(options.get("cluster") or "001"), client_id, client_secret
            )
    if name == "jifeline-partner" and url is None:
        client = cls(token=token, **options)  # the cluster's URL
    else:
        if not url:
            raise ConfigurationError(f"the {name} client needs a URL")
        if token is not None:
            options["token"] = token
        client = cls(url, **options)
    try:
        apply_subscriptions(client, name, subscribe or {})
    except BaseException:
        client.close(timeout=1)
        raise
    return client


def apply_subscriptions(client: Client, vendor: str, subscribe: Mapping[str, Iterable[Any]]) -> None:
    """Call the client's ``subscribe_*`` methods for each ``kind: [ids]`` of ``subscribe``."""
    methods = SUBSCRIBE_METHODS[normalise_vendor(vendor)]
    for kind, keys in subscribe.items():
        method = methods.get(kind) or methods.get(kind[:-1] if kind.endswith("s") else kind)
        if method is None:
            valid = sorted(methods) or "nothing (this client subscribes by itself)"
            raise ConfigurationError(f"cannot subscribe a {vendor} client to {kind!r}; valid kinds: {valid}")
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
            keys = [keys]
        for key in keys:
            getattr(client, method)(key)


# -- handlers ---------------------------------------------------------------------------------

Handler = Callable[[Event], Any]
#: The decorators return the function they were given, with its type: a handler annotated
#: ``rs.Event[Message]`` stays typed under ``mypy --strict`` (as with ``Client.on``).
H = TypeVar("H", bound=Handler)
#: A setup function is called with the configured client, whose vendor is known at run time
#: only: its parameter may be annotated with the vendor's client class.
S = TypeVar("S", bound=Callable[[Any], object])


@attrs.frozen
class Registration:
    """One ``on()`` registration: pattern, handler, filters."""

    pattern: str
    handler: Handler
    entity_id: Any = None
    client: str | None = None
    changes_only: bool = False


class HandlerRegistry:
    """Handlers and setup functions registered before any client exists.

    ``on()`` works as a decorator; ``client=`` restricts a registration to one named client
    (None: every client).  ``setup`` functions are called with each client before it starts
    (subscribe to what your database says, register handlers dynamically...).

    >>> registry = HandlerRegistry()
    >>> @registry.on("message.created")
    ... def show(event): ...
    >>> [r.pattern for r in registry.registrations]
    ['message.created']
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.registrations: list[Registration] = []
        self.setups: list[tuple[Callable[[Client], Any], str | None]] = []

    @overload
    def on(
        self,
        pattern: str,
        handler: None = None,
        *,
        entity_id: Any = None,
        client: str | None = None,
        changes_only: bool = False,
    ) -> Callable[[H], H]: ...

    @overload
    def on(
        self,
        pattern: str,
        handler: H,
        *,
        entity_id: Any = None,
        client: str | None = None,
        changes_only: bool = False,
    ) -> H: ...

    def on(
        self,
        pattern: str,
        handler: H | None = None,
        *,
        entity_id: Any = None,
        client: str | None = None,
        changes_only: bool = False,
    ) -> Any:
        """Register ``handler`` for events named ``pattern`` (``"conversation.*"``, ``"*"``...).

        ``changes_only=True`` (Jifeline snapshots) calls it only when the snapshot changed.
        Registering the same function again (same module and name, same pattern and filters)
        replaces the earlier registration instead of adding one, so a module imported twice
        (autodiscovery, a reload) or a notebook cell run again does not double its handlers.
        """
        if not isinstance(pattern, str) or not pattern:
            raise ConfigurationError("on() needs an event name or pattern such as 'message.created' or '*'")
        if handler is None:

            def decorator(fn: H) -> H:
                self.on(pattern, fn, entity_id=entity_id, client=client, changes_only=changes_only)
                return fn

            return decorator
        if not callable(handler):
            raise ConfigurationError(f"handler must be callable, got {type(handler).__name__}")
        reg = Registration(pattern, handler, entity_id, client, changes_only)
        with self._lock:
            for i, existing in enumerate(self.registrations):
                if _same(existing, reg):
                    self.registrations[i] = reg  # the newest definition wins, in the same place
                    break
            else:
                self.registrations.append(reg)
        return handler

    @overload
    def setup(self, fn: None = None, *, client: str | None = None) -> Callable[[S], S]: ...

    @overload
    def setup(self, fn: S, *, client: str | None = None) -> S: ...

    def setup(self, fn: S | None = None, *, client: str | None = None) -> Any:
        """Register ``fn(client)``, called before the client starts; usable as a decorator."""
        if fn is None:

            def decorator(f: S) -> S:
                return self.setup(f, client=client)

            return decorator
        with self._lock:
            for i, (f, c) in enumerate(self.setups):
                if same_handler(f, fn) and c == client:
                    self.setups[i] = (fn, client)
                    break
            else:
                self.setups.append((fn, client))
        return fn

    def clear(self) -> None:
        with self._lock:
            self.registrations.clear()
            self.setups.clear()

    def attach(self, client: Client, name: str = "default", wrap: Callable[[Handler], Handler] | None = None) -> None:
        """Register every matching handler on ``client`` (wrapped by ``wrap``), then run the setups."""
        with self._lock:
            registrations = list(self.registrations)
            setups = list(self.setups)
        for reg in registrations:
            if reg.client is not None and reg.client != name:
                continue
            with warnings.catch_warnings():
                if reg.client is None:
                    # Registered for every client: a name only some vendors send is no typo here
                    # (``manage.py check`` reports the names that no configured client sends).
                    warnings.simplefilter("ignore", UserWarning)
                self._attach_one(client, reg, wrap)
        for fn, only in setups:
            if only is None or only == name:
                fn(client)

    def _attach_one(self, client: Client, reg: Registration, wrap: Callable[[Handler], Handler] | None) -> None:
        handler = wrap(reg.handler) if wrap is not None else reg.handler
        if not reg.changes_only:
            client.on(reg.pattern, handler, entity_id=reg.entity_id)
            return
        if not getattr(client, "supports_changes_only", False):
            raise ConfigurationError(
                f"handler {getattr(reg.handler, '__qualname__', reg.handler)!r} asks for changes_only=True, "
                f"but {type(client).__name__} has no change detection (only the Jifeline clients do): "
                "drop changes_only for this client"
            )
        client.on(reg.pattern, handler, entity_id=reg.entity_id, changes_only=True)  # type: ignore[call-arg, call-overload]


def _same(a: Registration, b: Registration) -> bool:
    return (
        a.pattern == b.pattern
        and a.client == b.client
        and a.entity_id == b.entity_id
        and a.changes_only == b.changes_only
        and same_handler(a.handler, b.handler)
    )


# -- one client per process ---------------------------------------------------------------------


class ProcessLocalClient:
    """A client created and started on first use, once per process.

    For code in a web worker that needs a live client (to ``send``/``perform``, or to
    ``wait_for`` something): ``get()`` returns the process's client, creating it with
    ``factory()`` and starting it the first time.  After a ``fork()`` the inherited client is
    unusable (its threads stayed in the parent: :class:`~realtime_sync.ClientForkedError`), so
    the child's first ``get()`` builds a new one.  Prefer a dedicated listener process
    (``manage.py realtime_listen``, ``flask realtime listen``) to receive events.

    >>> shared = ProcessLocalClient(lambda: make_client("voxsig", URL, TOKEN))   # doctest: +SKIP
    >>> shared.get().update_presence()                                          # doctest: +SKIP
    """

    def __init__(self, factory: Callable[[], Client]) -> None:
        self._factory = factory
        self._client: Client | None = None
        self._pid = 0
        self._lock = threading.Lock()
        # A lock held by another thread at fork time stays held in the child: renew it there.
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def get(self) -> Client:
        """The started client of this process.  It is closed when the process exits (a web
        worker stopped or recycled): the server sees a clean close, not a dropped connection."""
        with self._lock:
            client = self._client
            if client is None or self._pid != os.getpid() or client.closed:
                client = self._factory()
                client.start()
                if self._pid != os.getpid():  # once per process (a fork inherits the parent's)
                    atexit.register(self.close, 5.0)
                self._client, self._pid = client, os.getpid()
            return client

    def peek(self) -> Client | None:
        """This process's client if one was started here, else None (nothing is created)."""
        with self._lock:
            return self._client if self._pid == os.getpid() else None

    def close(self, timeout: float = 10.0) -> None:
        """Close this process's client (a client inherited through a fork is left alone)."""
        with self._lock:
            client, mine = self._client, self._pid == os.getpid()
            self._client = None
        if client is not None and mine:
            client.close(timeout)


# -- the listening loop -----------------------------------------------------------------------


@attrs.frozen
class RunResult:
    """How a run ended: ``reason`` is ``"interrupted"`` (Ctrl-C / SIGTERM), ``"duration"``,
    ``"count"``, ``"stopped"`` (every client stopped by itself: refused credentials, the server
    said not to come back...) or whatever was given to :meth:`Runner.stop`.  ``exit_code`` is 0,
    or 1 for ``"stopped"``."""

    reason: str
    events: int

    @property
    def exit_code(self) -> int:
        return 1 if self.reason == "stopped" else 0


class Runner:
    """Starts clients and blocks until told to stop; see :func:`run_clients`.

    :meth:`stop` may be called from any thread (a handler, a signal handler, a test).
    """

    def __init__(self, clients: Sequence[Client]) -> None:
        self.clients = list(clients)
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._reason: str | None = None
        self.events = 0

    def stop(self, reason: str = "stopped by the caller") -> None:
        with self._lock:
            if self._reason is None:
                self._reason = reason
        self._done.set()

    def count(self, n: int = 1) -> int:
        with self._lock:
            self.events += n
            return self.events

    def _wake(self, event: Event) -> None:
        if isinstance(event.data, DisconnectInfo) and not event.data.will_reconnect:
            # Runs on the dispatcher thread before the client records its final state: only
            # wake the loop, which checks ``client.closed``.
            self._done.set()

    def run(
        self,
        *,
        duration: float | None = None,
        on_started: Callable[[], Any] | None = None,
        close_timeout: float = 10.0,
    ) -> RunResult:
        """Start the clients; block until :meth:`stop`, Ctrl-C/SIGTERM, ``duration`` seconds, or
        until every client stopped by itself; close them all; return how it ended."""
        for client in self.clients:
            client.on("disconnected", self._wake)
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, _frame: Any) -> None:
                self.stop("interrupted")

            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    previous[sig] = signal.signal(sig, on_signal)
                except (ValueError, OSError):  # pragma: no cover - exotic platforms
                    pass
        deadline = None if duration is None else time.monotonic() + duration
        try:
            for client in self.clients:
                client.start()
            if on_started is not None:
                on_started()
            while self._reason is None:
                timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
                # Wakes at once on stop() and on a final disconnect; the timeout only bounds
                # how late a deadline or a silently stopped client is noticed.
                self._done.wait(timeout)
                self._done.clear()
                if self._reason is not None:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    self.stop("duration")
                elif all(c.closed for c in self.clients):
                    self.stop("stopped")
        except KeyboardInterrupt:  # our handler was not installed (not the main thread)
            self.stop("interrupted")
        finally:
            for sig, handler in previous.items():
                try:
                    signal.signal(sig, handler)
                except (ValueError, OSError):  # pragma: no cover
                    pass
            for client in self.clients:
                try:
                    client.close(timeout=close_timeout)
                except Exception:  # pragma: no cover - closing must go on for the others
                    log.exception("closing %s failed", redact(repr(client)))
        return RunResult(self._reason or "stopped", self.events)


def run_clients(
    clients: Sequence[Client],
    *,
    duration: float | None = None,
    max_events: int | None = None,
    on_started: Callable[[Runner], Any] | None = None,
    close_timeout: float = 10.0,
) -> RunResult:
    """Start ``clients`` and block until Ctrl-C or SIGTERM, ``duration`` seconds, ``max_events``
    events (non-lifecycle events, summed over the clients), or until every client stopped by
    itself.  Every client is closed on the way out.

    SIGINT and SIGTERM are handled only when called from the main thread (elsewhere Python does
    not allow it); the previous handlers are restored afterwards.  ``on_started(runner)`` is
    called once the clients are started.
    """
    runner = Runner(clients)

    def count(event: Event) -> None:
        if event.name in LIFECYCLE_EVENTS or event.name == "handshake":
            return
        if runner.count() >= (max_events or 0) and max_events is not None:
            runner.stop("count")

    for client in clients:
        client.on("*", count)
    return runner.run(
        duration=duration,
        on_started=(lambda: on_started(runner)) if on_started is not None else None,
        close_timeout=close_timeout,
    )


def secret_from_env(*names: str) -> str | None:
    """The first non-empty environment variable among ``names`` (registered as a secret)."""
    for name in names:
        value = os.environ.get(name)
        if value:
            register_secret(value)
            return value
    return None
