#!/usr/bin/env python
"""Follow Jifeline partner system events and connector statuses, with OAuth2 and gap recovery.

The partner websocket needs an OAuth2 access token.  This sample gets it with the client
credentials grant (:class:`realtime_sync.ClientCredentialsTokenProvider`: cached, renewed every
30 minutes, fetched again on every reconnect when due) and turns on gap recovery: after a
reconnect, the system events missed while disconnected are fetched from the REST API and
delivered, in order, before the live ones, never twice.

By default everything runs in-process against fakes (``realtime_sync.testing``, needs the
``demo`` extra): a partner websocket server, and an HTTP server with the token endpoint and
``/v2/system/events``.  The fake drops the connection once while tickets keep being created,
and the sample shows the missed ones arriving after the reconnect.  It exits by itself after
``--duration`` seconds:

    python samples/jifeline_partner.py
    python samples/jifeline_partner.py --duration 15 -v

Against the real API (cluster 001 unless JIFELINE_CLUSTER says otherwise):

    export JIFELINE_CLIENT_ID='...'
    export JIFELINE_CLIENT_SECRET='...'
    export JIFELINE_TOKEN_URL='https://partner-api-001.prd.jifeline.cloud/oauth2/token'   # optional
    python samples/jifeline_partner.py --real --event tickets.ticket.created --event tickets.ticket.closed \\
        --connector 9389ba6f-3696-4571-84d4-34d588c4b109 --gap-recovery --duration 0     # 0: until Ctrl-C

(``JIFELINE_TOKEN`` may be given instead of the client credentials, for a quick try.)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import Any, Callable

import realtime_sync as rs
from realtime_sync.jifeline import GapRecovery, JifelinePartnerClient, partner_rest_url, partner_token_url
from realtime_sync.oauth import ClientCredentialsTokenProvider

DEMO_CONNECTOR = "9389ba6f-3696-4571-84d4-34d588c4b109"
DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"
DEFAULT_EVENTS = ("tickets.ticket.created", "tickets.ticket.closed")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--real", action="store_true", help="connect to the real partner API (credentials from the environment)"
    )
    p.add_argument(
        "--event",
        action="append",
        default=[],
        help=f"system event type (repeatable; default {', '.join(DEFAULT_EVENTS)})",
    )
    p.add_argument("--connector", action="append", default=[], help="connector UUID to follow (repeatable)")
    p.add_argument("--gap-recovery", action="store_true", help="with --real: fetch missed events after reconnects")
    p.add_argument(
        "--after-id",
        help="with --real: resume from this event_id (the 'resume from' id a previous run printed); implies --gap-recovery",
    )
    p.add_argument("--duration", type=float, default=6.0, help="seconds to run; 0 = until Ctrl-C (default 6)")
    p.add_argument("-v", "--verbose", action="store_true", help="log the library's INFO messages")
    return p.parse_args(argv)


def real_setup(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]] | None:
    cluster = os.environ.get("JIFELINE_CLUSTER", "001")
    token: str | Callable[[], str] | None = os.environ.get("JIFELINE_TOKEN") or None
    client_id, secret = os.environ.get("JIFELINE_CLIENT_ID"), os.environ.get("JIFELINE_CLIENT_SECRET")
    if client_id and secret:
        token = ClientCredentialsTokenProvider(
            os.environ.get("JIFELINE_TOKEN_URL") or partner_token_url(cluster), client_id, secret
        )
    if token is None:
        print("--real needs JIFELINE_CLIENT_ID and JIFELINE_CLIENT_SECRET (or JIFELINE_TOKEN)", file=sys.stderr)
        return None
    options: dict[str, Any] = {"token": token, "cluster": cluster}
    if args.after_id:
        options["gap_recovery"] = GapRecovery(rest_url=partner_rest_url(cluster), after_id=args.after_id)
    elif args.gap_recovery:
        options["gap_recovery"] = True
    return options, args.connector


def run_fake_script(server: Any, stop: threading.Event) -> None:
    """The fake's side: tickets created and closed, one outage during which events are missed."""
    steps: list[tuple[float, Callable[[], Any]]] = [
        (1.0, lambda: server.emit_event("tickets.ticket.created")),
        (1.5, lambda: server.update_connector(DEMO_CONNECTOR, voltage=11.9)),
        (2.0, lambda: (server.refuse(503), server.drop_all())),  # an outage begins
        (2.2, lambda: server.emit_event("tickets.ticket.created")),  # missed live...
        (2.4, lambda: server.emit_event("tickets.ticket.closed")),  # ...fetched after the reconnect
        (2.6, lambda: server.refuse(None)),
        (3.5, lambda: server.emit_event("tickets.ticket.created")),
        (4.0, lambda: server.emit_event("tickets.ticket.closed")),
    ]
    elapsed = 0.0
    for at, action in steps:
        if stop.wait(at - elapsed):
            return
        elapsed = at
        action()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    events = args.event or list(DEFAULT_EVENTS)
    server = rest = None
    if args.real:
        setup = real_setup(args)
        if setup is None:
            return 2
        options, connectors = setup
    else:
        from realtime_sync.testing.jifeline import FakeJifelinePartnerServer, FakeJifelineRestServer

        server = FakeJifelinePartnerServer(interval=0.5)
        server.start()
        rest = FakeJifelineRestServer(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, partner=server).start()
        provider = ClientCredentialsTokenProvider(rest.token_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        options = {
            "url": server.url,
            "token": provider,
            "gap_recovery": GapRecovery(rest_url=rest.url, http_timeout=2.0),
            # The vendor's cadence, faster for the demo: instant retries, then every 0.3 s.
            "reconnect": rs.ReconnectPolicy(instant_retries=3, interval=0.3, max_interval=0.3),
        }
        connectors = args.connector or [DEMO_CONNECTOR]

    client = JifelinePartnerClient(**options)
    seen: list[str] = []

    def system_event(event: rs.Event) -> None:
        seen.append(event.data.event_id)
        print(f"{event.name:<24} id={event.data.event_id} ticket={event.entity_id}", flush=True)

    def status(event: rs.Event) -> None:
        fields = ", ".join(f"{k}={getattr(event.data, k)!r}" for k in sorted(event.changes or ()))
        print(f"{'connector.status':<24} {event.entity_id} {fields}", flush=True)

    for event_type in events:
        client.on(event_type, system_event)
        client.subscribe_event(event_type)
    client.on("connector.status", status, changes_only=True)
    for uuid in connectors:
        client.subscribe_connector(uuid)
    client.on("connected", lambda e: print(f"connected to {e.data.url}", flush=True))
    client.on("disconnected", lambda e: print(f"disconnected: {e.data.reason}", flush=True))

    def error(event: rs.Event) -> None:
        if event.data.kind != "connect":  # failed attempts are already logged as warnings
            print(f"error ({event.data.kind}): {event.data.message}", file=sys.stderr, flush=True)

    client.on("error", error)

    stop = threading.Event()
    timer = None
    if args.duration > 0:
        timer = threading.Timer(args.duration, client.close)
        timer.daemon = True
        timer.start()
    script = None
    if server is not None:
        script = threading.Thread(target=run_fake_script, args=(server, stop), daemon=True)
        script.start()
    try:
        client.run_forever()
    finally:
        stop.set()
        if timer is not None:
            timer.cancel()
        if script is not None:
            script.join(5)
        if rest is not None:
            rest.stop()
        if server is not None:
            server.stop()
    duplicates = len(seen) - len(set(seen))
    print(f"{len(seen)} system events received, {duplicates} duplicates", flush=True)
    if client.last_event_id:  # what an app persists, to pass back as GapRecovery(after_id=...)
        print(f"resume from {client.last_event_id} (--after-id)", flush=True)
    if server is not None:
        missing = [e["event_id"] for e in server.events if e["event_id"] not in seen]
        print(f"{len(server.events)} emitted by the fake, {len(missing)} missing", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
