#!/usr/bin/env python
"""Watch Jifeline tickets, connections and connectors, and print only what changed.

The customer websocket pushes a snapshot of every subscribed entity about every 5 seconds, changed
or not.  This sample registers its handlers with ``changes_only=True``, so it prints a line only
when a snapshot differs from the previous one, naming the fields that changed.

By default it runs against an in-process fake server (``realtime_sync.testing``, needs the
``demo`` extra: ``pip install 'realtime_sync[demo]'``) that changes a ticket now and then and
drops the connection once, so you can see that a reconnect produces no spurious "change".  It
exits by itself after ``--duration`` seconds:

    python samples/jifeline_customer.py
    python samples/jifeline_customer.py --duration 15 -v

Against the real server, with the customer websocket URL of your cluster (and a token if your
deployment needs one; it is sent as ``Authorization: Bearer``):

    export JIFELINE_CUSTOMER_URL='wss://...'
    export JIFELINE_TOKEN='...'            # optional
    python samples/jifeline_customer.py --real --ticket 32423 \\
        --connection 97a0e81d-d0ac-42ae-9195-a11732ad322a --duration 0     # 0: until Ctrl-C
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import Any

import realtime_sync as rs
from realtime_sync.jifeline import JifelineCustomerClient

DEMO_TICKET = 32423
DEMO_CONNECTION = "97a0e81d-d0ac-42ae-9195-a11732ad322a"
DEMO_CONNECTOR = 940201043


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--real", action="store_true", help="connect to $JIFELINE_CUSTOMER_URL instead of a local fake server"
    )
    p.add_argument("--ticket", type=int, action="append", default=[], help="ticket id to watch (repeatable)")
    p.add_argument("--connection", action="append", default=[], help="connection UUID to watch (repeatable)")
    p.add_argument("--connector", type=int, action="append", default=[], help="connector id to watch (repeatable)")
    p.add_argument("--duration", type=float, default=6.0, help="seconds to run; 0 = until Ctrl-C (default 6)")
    p.add_argument("-v", "--verbose", action="store_true", help="log the library's INFO messages")
    return p.parse_args(argv)


def describe(event: rs.Event) -> str:
    changed = sorted(event.changes or ())
    message = event.raw.get("message", {}) if isinstance(event.raw, dict) else {}
    if len(changed) > 3 and set(changed) == set(message):
        return f"{event.name:<19} {event.entity_id!s:<38} first snapshot ({len(changed)} fields)"
    fields = ", ".join(f"{name}={getattr(event.data, name, None)!r}" for name in changed)
    return f"{event.name:<19} {event.entity_id!s:<38} changed: {fields}"


def run_fake_script(server: Any, client: JifelineCustomerClient, stop: threading.Event) -> None:
    """What happens on the fake server's side: changes, a dropped connection."""
    steps = [
        (1.5, lambda: server.update_ticket(DEMO_TICKET, state=2)),
        (2.5, server.drop_all),  # a reconnect: the next snapshots are equal, so nothing is printed
        (3.5, lambda: server.update_ticket(DEMO_TICKET, schedule={"message": "I'll be right back", "until": "12:00"})),
        (4.5, lambda: server.update_connection(DEMO_CONNECTION, is_autonomous=False)),
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
    server = None
    if args.real:
        url = os.environ.get("JIFELINE_CUSTOMER_URL")
        if not url:
            print(
                "--real needs JIFELINE_CUSTOMER_URL (and JIFELINE_TOKEN if your deployment requires one)",
                file=sys.stderr,
            )
            return 2
        token = os.environ.get("JIFELINE_TOKEN") or None
        tickets, connections, connectors = args.ticket, args.connection, args.connector
        if not (tickets or connections or connectors):
            print("--real needs at least one --ticket, --connection or --connector", file=sys.stderr)
            return 2
    else:
        from realtime_sync.testing.jifeline import FakeJifelineCustomerServer

        server = FakeJifelineCustomerServer(interval=0.3)
        server.start()
        url, token = server.url, None
        tickets = args.ticket or [DEMO_TICKET]
        connections = args.connection or [DEMO_CONNECTION]
        connectors = args.connector or [DEMO_CONNECTOR]

    client = JifelineCustomerClient(url, token=token)
    counts = {"snapshots": 0, "changes": 0}

    def count(event: rs.Event) -> None:
        counts["snapshots"] += 1

    def changed(event: rs.Event) -> None:
        counts["changes"] += 1
        print(describe(event), flush=True)

    for name in ("ticket.updated", "connection.updated", "connector.updated"):
        client.on(name, count)
        client.on(name, changed, changes_only=True)
    client.on("connected", lambda e: print(f"connected to {e.data.url}", flush=True))
    client.on("disconnected", lambda e: print(f"disconnected: {e.data.reason}", flush=True))
    client.on("error", lambda e: print(f"error ({e.data.kind}): {e.data.message}", file=sys.stderr, flush=True))

    for ticket_id in tickets:
        client.subscribe_ticket(ticket_id)
    for uuid in connections:
        client.subscribe_connection(uuid)
    for connector_id in connectors:
        client.subscribe_connector(connector_id)

    stop = threading.Event()
    timer = None
    if args.duration > 0:
        timer = threading.Timer(args.duration, client.close)
        timer.daemon = True
        timer.start()
    script = None
    if server is not None:
        script = threading.Thread(target=run_fake_script, args=(server, client, stop), daemon=True)
        script.start()
    try:
        client.run_forever()  # returns when close() is called (the timer) or on Ctrl-C
    finally:
        stop.set()
        if timer is not None:
            timer.cancel()
        if script is not None:
            script.join(5)
        if server is not None:
            server.stop()
    print(f"{counts['snapshots']} snapshots received, {counts['changes']} of them with changes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
