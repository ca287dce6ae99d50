"""Flask integration: ``RealtimeSync(app)``, config keys, handler decorators, ``flask realtime listen``.

    from flask import Flask
    from realtime_sync.contrib.flask import RealtimeSync

    realtime = RealtimeSync()

    @realtime.on("message.created")
    def store(event):                      # runs inside an application context
        db.session.add(Message(conversation_id=event.entity_id, text=event.data.content))
        db.session.commit()

    def create_app():
        app = Flask(__name__)
        app.config.update(
            REALTIME_SYNC_VENDOR="voxsig",
            REALTIME_SYNC_URL="wss://app.voxsig.com/cable",
            REALTIME_SYNC_TOKEN=os.environ["VOXSIG_PUBSUB_TOKEN"],
            REALTIME_SYNC_OPTIONS={"account_id": 1, "user_id": 7},
        )
        realtime.init_app(app)
        return app

Then run the listener as its own process, next to the web server::

    flask --app myapp realtime listen

Config keys (all prefixed ``REALTIME_SYNC_``): ``VENDOR`` (jifeline-customer, jifeline-partner,
voxsig, genesys), ``URL``, ``TOKEN`` (a string or a callable) or ``TOKEN_PROVIDER`` (dotted path
of a callable), ``OPTIONS`` (keyword arguments of the vendor client), ``SUBSCRIBE`` (e.g.
``{"ticket": [32423]}``), ``APP_CONTEXT`` (default True: each handler runs inside
``app.app_context()``, so ``current_app`` and Flask-SQLAlchemy sessions work and are cleaned up).

Deployment, as for Django: do not start a client in ``create_app()`` or at import time.  Web
workers are forked, recycled and reloaded (the ``flask run`` reloader imports the app twice; a
gunicorn ``--preload`` master forks after import and the workers inherit a dead client, which
raises :class:`~realtime_sync.ClientForkedError`).  The listener process receives the events;
a web worker that must send or wait uses :meth:`RealtimeSync.get_client`, one client per process,
created after the fork, without the handlers (they run in the listener only).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from typing import Any, Callable, Mapping, overload

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from .._redact import redact
from ..client import Client
from ..events import LIFECYCLE_EVENTS, Event
from ..exceptions import ConfigurationError
from ._common import H, HandlerRegistry, ProcessLocalClient, S, make_client, run_clients, token_from_config

__all__ = ["RealtimeSync"]

_PREFIX = "REALTIME_SYNC_"
_KEYS = ("VENDOR", "URL", "TOKEN", "TOKEN_PROVIDER", "OPTIONS", "SUBSCRIBE", "APP_CONTEXT")

realtime_cli = AppGroup("realtime", help="realtime_sync: run the real-time listener of this app.")


@realtime_cli.command("listen")
@click.option("--duration", type=float, default=None, help="Stop after SECONDS (default: until Ctrl-C / SIGTERM).")
@click.option("--max-events", type=int, default=None, help="Stop after N events (lifecycle events not counted).")
@click.option("-q", "--quiet", is_flag=True, help="Do not print lifecycle events (connected, disconnected...).")
@click.option("-v", "--verbose", is_flag=True, help="Print every event too.")
@click.option("--redis", "redis_url", default=None, help="Share the client with every listener using this Redis URL.")
@click.option("--to-stream", default=None, help="Append every event to this Redis stream (needs --redis).")
@click.option("--tenants", default=None, help="Hold the tenants this MODULE:FUNC returns (needs --redis).")
@click.option("--lease-ttl", type=float, default=10.0, help="Lease expiry in seconds (default 10).")
def _listen_command(
    duration: float | None,
    max_events: int | None,
    quiet: bool,
    verbose: bool,
    redis_url: str | None,
    to_stream: str | None,
    tenants: str | None,
    lease_ttl: float,
) -> None:
    """Run this app's realtime_sync client in this process until Ctrl-C or SIGTERM."""
    ext: RealtimeSync | None = current_app.extensions.get("realtime_sync")
    if ext is None:
        raise click.ClickException("RealtimeSync(app) / init_app(app) was not called for this app")
    if (to_stream or tenants) and not redis_url:
        raise click.ClickException("--to-stream and --tenants need --redis URL")
    try:
        if redis_url:
            ext.listen_replicated(
                redis_url, stream=to_stream, tenants=tenants, lease_ttl=lease_ttl, duration=duration, quiet=quiet
            )
            return
        code = ext.listen(duration=duration, max_events=max_events, quiet=quiet, verbose=verbose)
    except ConfigurationError as exc:
        raise click.ClickException(redact(str(exc))) from exc
    if code:
        raise click.ClickException("the client stopped by itself; see the errors above")


class RealtimeSync:
    """The Flask extension: configuration from ``app.config``, handlers, the listener command.

    >>> realtime = RealtimeSync()
    >>> @realtime.on("ticket.updated", changes_only=True)
    ... def changed(event): ...
    >>> app = Flask("demo")
    >>> app.config.update(REALTIME_SYNC_VENDOR="jifeline", REALTIME_SYNC_URL="wss://example.invalid/ws")
    >>> realtime.init_app(app)
    >>> client = realtime.create_client(app)       # built with the handlers, not started
    >>> client.close()
    """

    def __init__(self, app: Flask | None = None) -> None:
        self.handlers = HandlerRegistry()
        self._process: dict[tuple[int, bool], ProcessLocalClient] = {}
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            # Held by another thread at fork time, it would stay held in the child forever.
            os.register_at_fork(after_in_child=self._renew_lock)
        if app is not None:
            self.init_app(app)

    def _renew_lock(self) -> None:
        self._lock = threading.Lock()

    # -- registration ------------------------------------------------------------------------

    @overload
    def on(self, pattern: str, handler: None = None, **kwargs: Any) -> Callable[[H], H]: ...

    @overload
    def on(self, pattern: str, handler: H, **kwargs: Any) -> H: ...

    def on(self, pattern: str, handler: H | None = None, **kwargs: Any) -> Any:
        """Register a handler (decorator too); ``entity_id=``, ``changes_only=`` as on a client.

        The decorated function keeps its type: annotate ``event`` with ``rs.Event[Model]``."""
        return self.handlers.on(pattern, handler, **kwargs)

    @overload
    def setup(self, fn: None = None) -> Callable[[S], S]: ...

    @overload
    def setup(self, fn: S) -> S: ...

    def setup(self, fn: S | None = None) -> Any:
        """Register ``fn(client)``, called (inside an app context) before the client starts."""
        return self.handlers.setup(fn)

    def init_app(self, app: Flask) -> None:
        """Read the config defaults, register the extension and the ``flask realtime`` commands."""
        app.config.setdefault(_PREFIX + "VENDOR", None)
        app.config.setdefault(_PREFIX + "URL", None)
        app.config.setdefault(_PREFIX + "TOKEN", None)
        app.config.setdefault(_PREFIX + "TOKEN_PROVIDER", None)
        app.config.setdefault(_PREFIX + "OPTIONS", {})
        app.config.setdefault(_PREFIX + "SUBSCRIBE", {})
        app.config.setdefault(_PREFIX + "APP_CONTEXT", True)
        app.extensions["realtime_sync"] = self
        if "realtime" not in app.cli.commands:
            app.cli.add_command(realtime_cli)

    # -- clients -----------------------------------------------------------------------------

    def create_client(
        self, app: Flask | None = None, *, resume_point: str | None = None, handlers: bool = True
    ) -> Client:
        """A new, unstarted client from ``app.config`` with every handler attached (unless
        ``handlers=False``); ``resume_point`` serves :meth:`listen_replicated`."""
        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        conf = app.config
        vendor = conf.get(_PREFIX + "VENDOR")
        if not vendor:
            raise ConfigurationError(f"set {_PREFIX}VENDOR (jifeline-customer, jifeline-partner, voxsig, genesys)")
        token = token_from_config(conf.get(_PREFIX + "TOKEN"), conf.get(_PREFIX + "TOKEN_PROVIDER"))
        raw_options = conf.get(_PREFIX + "OPTIONS") or {}
        if not isinstance(raw_options, Mapping):
            raise ConfigurationError(
                f"{_PREFIX}OPTIONS must be a dict of the client's keyword arguments, e.g. "
                f'{_PREFIX}OPTIONS={{"account_id": 1, "user_id": 7}}; got a {type(raw_options).__name__}'
            )
        options = dict(raw_options)
        options.setdefault("name", f"flask-{app.name}" + ("" if handlers else "-sender"))
        if resume_point is not None:
            from .redis_replicas import with_resume_point

            options = with_resume_point(options, resume_point)
        client = make_client(
            vendor, conf.get(_PREFIX + "URL"), token, subscribe=conf.get(_PREFIX + "SUBSCRIBE") or {}, **options
        )
        if handlers:
            self.attach(client, app)
        return client

    def attach(
        self,
        client: Client,
        app: Flask | None = None,
        *,
        guard: Callable[[Callable[[Event], Any]], Callable[[Event], Any]] | None = None,
    ) -> None:
        """Attach every registered handler to ``client`` (in an app context, as configured)."""
        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        in_context = _in_app_context(app) if app.config.get(_PREFIX + "APP_CONTEXT", True) else None
        wrap = in_context
        if guard is not None:
            wrap = (lambda h: guard(in_context(h))) if in_context is not None else guard
        try:
            with app.app_context():
                self.handlers.attach(client, "default", wrap=wrap)
        except BaseException:
            client.close(timeout=1)
            raise

    def get_client(self, app: Flask | None = None, *, handlers: bool = False) -> Client:
        """This process's started client for ``app``, created on first use (after a fork: anew).

        For web code that needs a live client to *send* (or wait for something).  It has none of
        the ``@realtime.on`` handlers and runs no setup function: those belong to the ``flask
        realtime listen`` process, which receives the events (every web worker running them
        would handle each event once per worker).  ``handlers=True`` attaches them anyway.
        """
        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        key = (id(app), bool(handlers))
        with self._lock:
            holder = self._process.get(key)
            if holder is None:
                factory = functools.partial(self.create_client, app, handlers=handlers)
                holder = self._process[key] = ProcessLocalClient(factory)
        return holder.get()

    def close(self, timeout: float = 10.0) -> None:
        """Close the clients :meth:`get_client` started in this process."""
        with self._lock:
            holders = list(self._process.values())
        for holder in holders:
            holder.close(timeout)

    def listen(
        self,
        app: Flask | None = None,
        *,
        duration: float | None = None,
        max_events: int | None = None,
        quiet: bool = False,
        verbose: bool = False,
    ) -> int:
        """Run the client in this process until Ctrl-C/SIGTERM (or ``duration``/``max_events``);
        returns the exit status (1 when the client stopped by itself).  What ``flask realtime
        listen`` runs."""
        from ..demo import Console

        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        client = self.create_client(app)
        console = Console(sys.stdout, "realtime", timestamps="wall")
        if not quiet:
            for name in (*LIFECYCLE_EVENTS, "handshake"):
                client.on(name, console.event)
            click.echo(redact(f"realtime listen: {client.url} (Ctrl-C to stop)"))
        if verbose:
            client.on("*", lambda e: None if e.name in LIFECYCLE_EVENTS or e.name == "handshake" else console.event(e))
        result = run_clients([client], duration=duration, max_events=max_events)
        if not quiet:
            click.echo(f"realtime listen: stopped ({result.reason}), {result.events} event(s) handled")
        return result.exit_code

    def listen_replicated(
        self,
        redis_url: str,
        app: Flask | None = None,
        *,
        stream: str | None = None,
        tenants: Any = None,
        lease_ttl: float = 10.0,
        namespace: str = "realtime_sync",
        duration: float | None = None,
        quiet: bool = False,
    ) -> Any:
        """Run as one replica of a listener group sharing this app's client (or ``tenants``)
        through leases in Redis; ``stream`` hands every event on to a Redis stream.  What
        ``flask realtime listen --redis URL`` runs; returns the closed listener."""
        from ..demo import Console
        from .redis_replicas import Tenant, default_client_factory, run_replica

        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        factory: Callable[[Tenant, str | None], Client] = default_client_factory
        if tenants is None:
            tenants = [Tenant(app.config.get(_PREFIX + "TENANT_KEY") or f"flask-{app.name}")]

            def from_config(tenant: Tenant, resume: str | None) -> Client:
                return self.create_client(app, resume_point=resume, handlers=False)

            factory = from_config

        def setup(listener: Any, client: Client, tenant: Tenant) -> None:
            self.attach(client, app, guard=lambda h: listener.guard(tenant.key, h))
            if not quiet:
                console = Console(sys.stdout, tenant.key, timestamps="wall")
                for name in (*LIFECYCLE_EVENTS, "handshake"):
                    client.on(name, console.event)

        listener = run_replica(
            tenants,
            redis_url,
            stream=stream,
            client_factory=factory,
            setup=setup,
            namespace=namespace,
            lease_ttl=lease_ttl,
            duration=duration,
        )
        if not quiet:
            click.echo(f"realtime listen: stopped; {listener.stats}")
        return listener


def _in_app_context(app: Flask) -> Callable[[Callable[[Event], Any]], Callable[[Event], Any]]:
    def wrap(handler: Callable[[Event], Any]) -> Callable[[Event], Any]:
        @functools.wraps(handler)
        def wrapped(event: Event) -> Any:
            # A fresh context per event: teardown_appcontext handlers (database sessions...)
            # run after each one, as after a request.
            with app.app_context():
                return handler(event)

        return wrapped

    return wrap
