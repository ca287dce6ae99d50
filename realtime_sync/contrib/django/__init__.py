"""Django integration: settings, handlers in each app's ``realtime.py``, a listener command.

Setup::

    # settings.py
    INSTALLED_APPS = [..., "realtime_sync.contrib.django"]

    REALTIME_SYNC = {
        "VENDOR": "voxsig",                         # jifeline-customer | jifeline-partner | voxsig | genesys
        "URL": "wss://app.voxsig.com/cable",
        "TOKEN": os.environ["VOXSIG_PUBSUB_TOKEN"],  # or "TOKEN_PROVIDER": "myproject.tokens.voxsig_token"
        "OPTIONS": {"account_id": 1, "user_id": 7},  # keyword arguments of the vendor client
        "SUBSCRIBE": {},                             # e.g. {"ticket": [32423]} for Jifeline
    }
    # several clients: REALTIME_SYNC = {"CLIENTS": {"voxsig": {...}, "jifeline": {...}}}

    # inbox/realtime.py  (found in every installed app, like admin.py)
    from realtime_sync.contrib.django import realtime

    @realtime.on("message.created")
    def store_message(event):
        Message.objects.create(conversation_id=event.entity_id, text=event.data.content)

    @realtime.setup
    def subscribe_open_tickets(client):            # called before the client starts
        for ticket_id in Ticket.objects.filter(open=True).values_list("id", flat=True):
            client.subscribe_ticket(ticket_id)

Run the listener as its own process, next to the web server (systemd unit, a Procfile line, a
container)::

    python manage.py realtime_listen

Why its own process, and what happens elsewhere:

* **Web workers** are started, recycled and killed by the web server.  A client inside them
  connects once per worker (N copies of every event), and dies with the worker.
* **runserver's autoreloader** imports your project twice (the watcher and the server child) and
  restarts the child on every code change.  Nothing here starts a client at import time or in
  ``AppConfig.ready()``, so the autoreloader never connects anything; ``realtime_listen`` is not
  reloaded (restart it after editing handlers, or run it under a file watcher).
* **gunicorn --preload** imports the app in the master and then forks the workers.  Threads do not
  survive ``fork()``: a client started in the master is dead in every worker, and any use of it
  there raises :class:`~realtime_sync.ClientForkedError` (it never fails silently).  If a web worker
  really needs a live client (to send, or to ``wait_for`` something), call :func:`get_client`:
  it creates and starts one client per process, after the fork, *without* the handlers of the
  apps' ``realtime.py`` (they run in ``realtime_listen`` only, once per event).

Handlers run on the client's dispatcher thread, one at a time, in order.  Each handler call is
wrapped in ``close_old_connections()`` (as Django does around a request), so a long-running
listener never uses a database connection the server has dropped.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any, Callable, Iterable, Mapping

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..._redact import redact_url
from ...client import Client
from ...exceptions import ConfigurationError
from .._common import HandlerRegistry, ProcessLocalClient, make_client, normalise_vendor, token_from_config

__all__ = [
    "ClientConfig",
    "autodiscover",
    "build_clients",
    "client_configs",
    "get_client",
    "realtime",
    "replica_parts",
]

#: The handler registry: ``@realtime.on("message.created")``, ``@realtime.setup``.
realtime = HandlerRegistry()

_CLIENT_KEYS = frozenset({"VENDOR", "URL", "TOKEN", "TOKEN_PROVIDER", "OPTIONS", "SUBSCRIBE"})
_TOP_KEYS = frozenset({"CLIENTS", "HANDLERS_MODULE", "CLOSE_DB_CONNECTIONS"})


class ClientConfig:
    """One client's settings, validated (``VENDOR``, ``URL``, ``TOKEN`` | ``TOKEN_PROVIDER``,
    ``OPTIONS``, ``SUBSCRIBE``)."""

    def __init__(self, name: str, raw: Mapping[str, Any]) -> None:
        where = "REALTIME_SYNC" if name == "default" else f"REALTIME_SYNC['CLIENTS'][{name!r}]"
        if not isinstance(raw, Mapping):
            raise ImproperlyConfigured(f"{where} must be a dict")
        unknown = set(raw) - _CLIENT_KEYS - (_TOP_KEYS if name == "default" else set())
        if unknown:
            raise ImproperlyConfigured(f"{where} has unknown key(s) {sorted(unknown)}; valid: {sorted(_CLIENT_KEYS)}")
        if "VENDOR" not in raw:
            raise ImproperlyConfigured(
                f"{where} needs a 'VENDOR' (jifeline-customer, jifeline-partner, voxsig, genesys)"
            )
        try:
            self.vendor = normalise_vendor(raw["VENDOR"])
        except ConfigurationError as exc:
            raise ImproperlyConfigured(f"{where}['VENDOR']: {exc}") from None
        self.name = name
        self.url: str | None = raw.get("URL")
        self.token = raw.get("TOKEN")
        self.token_provider = raw.get("TOKEN_PROVIDER")
        if self.token is not None and self.token_provider is not None:
            raise ImproperlyConfigured(f"{where}: give TOKEN or TOKEN_PROVIDER, not both")
        self.options: dict[str, Any] = dict(raw.get("OPTIONS") or {})
        self.subscribe: dict[str, Iterable[Any]] = dict(raw.get("SUBSCRIBE") or {})
        if self.url is None and self.vendor != "jifeline-partner":
            raise ImproperlyConfigured(f"{where} needs a 'URL'")

    def build(self, resume_point: str | None = None, *, name: str | None = None) -> Client:
        """A new, unstarted client (handlers not attached), named ``name`` (default: its own);
        ``resume_point``: see ``realtime_listen --redis``."""
        try:
            token = token_from_config(self.token, self.token_provider)
            options = self.options
            if resume_point is not None:
                from ..redis_replicas import with_resume_point

                options = with_resume_point(options, resume_point)
            return make_client(
                self.vendor, self.url, token, subscribe=self.subscribe, name=name or self.name, **options
            )
        except (ConfigurationError, TypeError) as exc:
            raise ImproperlyConfigured(f"REALTIME_SYNC client {self.name!r}: {exc}") from exc

    def validate(self) -> frozenset[str] | None:
        """Build the client once (never started, nothing connects) to check ``OPTIONS`` and
        ``SUBSCRIBE``; a ``TOKEN_PROVIDER`` is imported but not called.  Returns the names of
        the events that client sends (``None``: an open set), its subscribed topics' included."""
        try:
            token = token_from_config(self.token, self.token_provider)
            if callable(token):
                token = "placeholder-token-for-check"  # never call the provider from a check
            client = make_client(self.vendor, self.url, token, subscribe=self.subscribe, name=self.name, **self.options)
        except (ConfigurationError, TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"REALTIME_SYNC client {self.name!r}: {exc}") from exc
        known = client.known_events
        client.close(timeout=1)
        return known

    def __repr__(self) -> str:
        return f"<ClientConfig {self.name!r} {self.vendor} {redact_url(self.url)!r}>"


def _settings() -> Mapping[str, Any]:
    value = getattr(settings, "REALTIME_SYNC", None)
    if value is None:
        raise ImproperlyConfigured("settings.REALTIME_SYNC is not set (see the realtime_sync README, 'Django')")
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured("settings.REALTIME_SYNC must be a dict")
    return value


def client_configs() -> dict[str, ClientConfig]:
    """The validated client settings by name (``"default"`` for the single-client form)."""
    conf = _settings()
    if "CLIENTS" in conf:
        extra = set(conf) - _TOP_KEYS
        if extra:
            raise ImproperlyConfigured(f"REALTIME_SYNC with 'CLIENTS' cannot also have {sorted(extra)}")
        clients = conf["CLIENTS"]
        if not isinstance(clients, Mapping) or not clients:
            raise ImproperlyConfigured("REALTIME_SYNC['CLIENTS'] must be a non-empty dict of name -> settings")
        return {str(name): ClientConfig(str(name), raw) for name, raw in clients.items()}
    return {"default": ClientConfig("default", conf)}


_discovered = threading.Lock()
_done = False


def autodiscover() -> None:
    """Import ``<app>.realtime`` (``REALTIME_SYNC['HANDLERS_MODULE']``) of every installed app, once."""
    global _done
    from django.utils.module_loading import autodiscover_modules

    with _discovered:
        if _done:
            return
        module = getattr(settings, "REALTIME_SYNC", {}).get("HANDLERS_MODULE", "realtime")
        autodiscover_modules(module)
        _done = True


def _db_safe(handler: Any) -> Any:
    """Wrap a handler like a request: stale database connections are closed before and after."""
    from django.db import close_old_connections

    @functools.wraps(handler)
    def wrapped(event: Any) -> Any:
        close_old_connections()
        try:
            return handler(event)
        finally:
            close_old_connections()

    return wrapped


def build_clients(names: Iterable[str] | None = None, *, handlers: bool = True) -> dict[str, Client]:
    """New, unstarted clients from the settings, with every registered handler attached.

    Autodiscovers the apps' ``realtime`` modules first.  ``names`` picks some clients only.
    ``handlers=False`` builds bare clients: no handler, no setup function (senders).
    """
    configs = client_configs()
    if names:
        missing = set(names) - set(configs)
        if missing:
            raise ImproperlyConfigured(f"no REALTIME_SYNC client named {sorted(missing)}; have {sorted(configs)}")
        configs = {n: c for n, c in configs.items() if n in set(names)}
    autodiscover()
    close_db = _settings().get("CLOSE_DB_CONNECTIONS", True)
    clients: dict[str, Client] = {}
    try:
        for name, config in configs.items():
            # A sender has a name of its own: its threads and logs are told from the listener's.
            client = config.build(name=None if handlers else f"{name}-sender")
            clients[name] = client
            if handlers:
                realtime.attach(client, name, wrap=_db_safe if close_db else None)
    except BaseException:
        for c in clients.values():
            c.close(timeout=1)
        raise
    return clients


def replica_parts(names: Iterable[str] | None = None, tenants: Any = None) -> tuple[Any, Any, Any]:
    """``(tenants, client_factory, setup)`` for :func:`~realtime_sync.contrib.redis_replicas.run_replica`
    (``manage.py realtime_listen --redis``): each configured client is a tenant named after it, or,
    with ``tenants`` (a callable reading your database, its dotted path, or a JSON file), each of
    those; the handlers of every app's ``realtime.py`` are attached, fenced by the tenant's lease."""
    from ..redis_replicas import Tenant, default_client_factory, load_tenants

    autodiscover()
    close_db = _settings().get("CLOSE_DB_CONNECTIONS", True)
    configs = client_configs() if tenants is None or names else {}
    if names:
        configs = {n: c for n, c in configs.items() if n in set(names)}
    factory: Callable[[Tenant, str | None], Client] = default_client_factory
    if tenants is None:
        tenant_list: Any = [Tenant(name, vendor=config.vendor) for name, config in configs.items()]

        def from_settings(tenant: Tenant, resume: str | None) -> Client:
            return configs[tenant.key].build(resume)

        factory = from_settings
    else:
        tenant_list = tenants
        load_tenants(tenants)  # errors now, not in the coordinator

    def setup(listener: Any, client: Client, tenant: Tenant) -> None:
        name = tenant.key if tenant.key in configs and tenants is None else "default"

        def wrap(handler: Any) -> Any:
            return listener.guard(tenant.key, _db_safe(handler) if close_db else handler)

        realtime.attach(client, name, wrap=wrap)

    return tenant_list, factory, setup


_process_clients: dict[tuple[str, bool], ProcessLocalClient] = {}
_process_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _process_lock
    _process_lock = threading.Lock()  # it may have been held by another thread at fork time


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_client(name: str = "default", *, handlers: bool = False) -> Client:
    """This process's started client ``name``, created on first use (after a fork: anew).

    For web workers that need a live client to *send* (``perform``, ``update_presence``...) or
    to wait for something.  It has none of the handlers of the apps' ``realtime.py`` and runs
    none of their setup functions: those belong to the ``realtime_listen`` process, which
    receives the events (a web worker running them too would handle every event once per
    worker).  ``handlers=True`` attaches them anyway, for a process that is its own listener.

    >>> get_client().update_presence()          # doctest: +SKIP
    """
    key = (name, bool(handlers))
    with _process_lock:
        holder = _process_clients.get(key)
        if holder is None:

            def factory() -> Client:
                return build_clients([name], handlers=handlers)[name]

            holder = _process_clients[key] = ProcessLocalClient(factory)
    return holder.get()


def close_clients(timeout: float = 10.0) -> None:
    """Close the clients :func:`get_client` started in this process (e.g. at worker exit)."""
    with _process_lock:
        holders = list(_process_clients.values())
    for holder in holders:
        holder.close(timeout)
