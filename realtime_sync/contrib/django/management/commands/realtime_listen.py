"""``python manage.py realtime_listen``: run the configured realtime_sync clients in this process.

This is the recommended deployment: one listener process next to the web workers (a systemd
unit, a Procfile ``realtime: python manage.py realtime_listen``, a container), restarted by your
process manager if it ever exits.  It builds the clients from ``settings.REALTIME_SYNC``,
attaches the handlers of every app's ``realtime.py``, and runs until SIGINT/SIGTERM.  Exit status
1 means a client stopped by itself (credentials refused, the server said not to reconnect).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime_sync._redact import redact
from realtime_sync.contrib._common import run_clients
from realtime_sync.demo import Console
from realtime_sync.events import LIFECYCLE_EVENTS, Event


class Command(BaseCommand):
    help = (
        "Run the realtime_sync clients of settings.REALTIME_SYNC in this process, with the handlers of every "
        "app's realtime.py, until Ctrl-C or SIGTERM."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--client", action="append", default=[], metavar="NAME",
            help="run only this client of REALTIME_SYNC['CLIENTS'] (repeatable; default: all)",
        )  # fmt: skip
        parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS (default: never)")
        parser.add_argument(
            "--max-events", type=int, metavar="N", help="stop after N events (lifecycle events not counted)"
        )
        redis = parser.add_argument_group("replicas and hand-off (pip install 'realtime_sync[redis]')")
        redis.add_argument("--redis", metavar="URL", help="share the clients with every listener using this Redis")
        redis.add_argument("--to-stream", metavar="NAME", help="append every event to this Redis stream")
        redis.add_argument("--tenants", metavar="MODULE:FUNC", help="hold the tenants this function returns")
        redis.add_argument("--lease-ttl", type=float, default=10.0, metavar="SECONDS", help="lease expiry (default 10)")
        redis.add_argument("--namespace", default="realtime_sync", help="prefix of the Redis keys")

    def handle(self, *args: Any, **options: Any) -> None:
        from realtime_sync.contrib.django import build_clients

        verbosity = int(options.get("verbosity", 1))
        if options.get("redis") or options.get("to_stream") or options.get("tenants"):
            self._replicated(options, verbosity)
            return
        try:
            clients = build_clients(options.get("client") or None)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        consoles = {}
        for name, client in clients.items():
            console = Console(self.stdout, name, timestamps="wall")
            consoles[name] = console
            if verbosity >= 1:
                for event_name in (*LIFECYCLE_EVENTS, "handshake"):
                    client.on(event_name, console.event)
            if verbosity >= 2:
                client.on("*", _data_printer(console))
            if verbosity >= 1:
                self.stdout.write(redact(f"realtime_listen: client {name!r} -> {client.url}"))
        result = run_clients(
            list(clients.values()), duration=options.get("duration"), max_events=options.get("max_events")
        )
        from django.db import connections

        connections.close_all()
        if verbosity >= 1:
            self.stdout.write(f"realtime_listen: stopped ({result.reason}), {result.events} event(s) handled")
        if result.exit_code:
            raise CommandError("every client stopped by itself; see the errors above")

    def _replicated(self, options: dict[str, Any], verbosity: int) -> None:
        """One replica of a listener group sharing the clients through leases in Redis."""
        from realtime_sync.contrib.django import replica_parts
        from realtime_sync.contrib.redis_replicas import run_replica
        from realtime_sync.exceptions import ConfigurationError

        if not options.get("redis"):
            raise CommandError("--to-stream and --tenants need --redis URL")
        try:
            tenants, factory, setup = replica_parts(options.get("client") or None, options.get("tenants"))
        except (ImproperlyConfigured, ConfigurationError) as exc:
            raise CommandError(str(exc)) from exc

        def setup_client(listener: Any, client: Any, tenant: Any) -> None:
            setup(listener, client, tenant)
            if verbosity >= 1:
                console = Console(self.stdout, tenant.key, timestamps="wall")
                for event_name in (*LIFECYCLE_EVENTS, "handshake"):
                    client.on(event_name, console.event)

        listener = run_replica(
            tenants,
            options["redis"],
            stream=options.get("to_stream"),
            client_factory=factory,
            setup=setup_client,
            namespace=options["namespace"],
            lease_ttl=options["lease_ttl"],
            duration=options.get("duration"),
        )
        from django.db import connections

        connections.close_all()
        if verbosity >= 1:
            self.stdout.write(f"realtime_listen: stopped; {listener.stats}")


def _data_printer(console: Console) -> Any:
    def show(event: Event) -> None:
        if event.name not in LIFECYCLE_EVENTS and event.name != "handshake":
            console.event(event)

    return show
