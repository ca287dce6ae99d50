"""``realtime-sync listen ... --redis URL [--to-stream NAME] [--tenants SOURCE]``: the command as
one replica of a listener group (see :mod:`realtime_sync.contrib.redis_replicas`).

Without ``--tenants``, the command's own connection is the group's one tenant: start the same
command on several hosts and exactly one of them holds the connection, the others take over
within about ``--lease-ttl`` seconds when it dies.  With ``--tenants``, the group shares every
tenant of the list.  ``--to-stream`` hands every event on to a Redis stream.
"""

from __future__ import annotations

import argparse
import hashlib
from typing import Any, Callable, TextIO

import attrs

from .._redact import redact
from ..client import Client
from ..exceptions import ConfigurationError

__all__ = ["listen_replicated", "tenant_key_for"]


def tenant_key_for(vendor: str, client: Client) -> str:
    """A stable lease name for one client: the vendor and a digest of its URL and subscriptions,
    so that the same command on several hosts names the same tenant (no secret in clear).

    >>> from realtime_sync.contrib._common import make_client
    >>> c = make_client("jifeline", "wss://example.invalid/ws", subscribe={"ticket": [1]})
    >>> tenant_key_for("jifeline-customer", c)
    'jifeline-customer-d5b728acb368'
    >>> c.close()
    """
    basis = repr((client.url, [(s.kind, s.key) for s in getattr(client, "subscriptions", [])]))
    basis += repr(getattr(client, "room", ""))  # Voxsig: the room identifier (user, account)
    return f"{vendor}-{hashlib.sha256(basis.encode()).hexdigest()[:12]}"


class _Stopper:
    """What the CLI's printer calls to stop the command (``--count``, a broken pipe)."""

    def __init__(self, listener: Any) -> None:
        self.listener = listener

    def stop(self, reason: str) -> None:
        self.listener.stop()


def listen_replicated(
    args: argparse.Namespace,
    make_client: Callable[[argparse.Namespace, str | None], Client],
    printer: Any,
    err: TextIO,
) -> int:
    """Run ``listen`` as a replica; returns the exit status (2 on usage errors)."""
    from ..cli import _UsageError

    prefix = f"realtime-sync listen {args.vendor}"
    if not args.redis:
        err.write(f"{prefix}: --to-stream and --tenants need --redis URL (or REALTIME_SYNC_REDIS_URL)\n")
        return 2
    try:
        from .redis_replicas import Tenant, default_client_factory, load_tenants, run_replica
    except ImportError as exc:
        err.write(f"{prefix}: {exc}\n")
        return 2
    factory: Callable[[Tenant, str | None], Client]
    try:
        if args.tenants:
            tenants: Any = args.tenants
            load_tenants(tenants, args.vendor)  # usage errors now, not in the coordinator

            def factory(tenant: Tenant, resume: str | None) -> Client:
                return default_client_factory(attrs.evolve(tenant, url=tenant.url or args.url), resume)

        else:
            probe = make_client(args, None)  # validates the arguments; never started
            key = args.tenant_key or tenant_key_for(args.vendor, probe)
            probe.close(timeout=1)
            tenants = [Tenant(key, vendor=args.vendor)]

            def factory(tenant: Tenant, resume: str | None) -> Client:
                return make_client(args, resume)

    except (_UsageError, ConfigurationError) as exc:
        err.write(f"{prefix}: {redact(exc)}\n")
        return 2

    def started(listener: Any) -> None:
        printer.runner = _Stopper(listener)
        if not args.quiet:
            where = f", events to stream {args.to_stream!r}" if args.to_stream else ""
            err.write(redact(f"realtime-sync: replica {listener.replica_id} of group {args.namespace!r}{where}") + "\n")
            err.flush()

    listener = run_replica(
        tenants,
        args.redis,
        stream=args.to_stream,
        maxlen=args.stream_maxlen,
        client_factory=factory,
        setup=lambda listener, client, tenant: printer.attach(client),
        namespace=args.namespace,
        lease_ttl=args.lease_ttl,
        vendor=args.vendor,
        duration=args.duration,
        on_started=started,
        hub_workers=getattr(args, "hub_workers", None),
    )
    if not args.quiet and not printer.broken_pipe:
        sink = listener.sink.stats if listener.sink is not None else None
        err.write(f"realtime-sync: stopped; {listener.stats}" + (f"; {sink}" if sink else "") + "\n")
    return 0
