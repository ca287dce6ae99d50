#!/usr/bin/env python
"""An agent's live Voxsig feed: new messages, typing, status changes, notifications, presence.

The client subscribes to the RoomChannel with the agent's pubsub token, keeps the agent online
with ``update_presence`` (the server records presence when it confirms the subscription; the
client then repeats it every ``--presence`` seconds, 15 by default since Chatwoot keeps an agent
online only 20 s, restarted after every reconnect) and prints one line per event.  The pubsub token never appears in the
output or the logs, even with ``-v``.

By default it runs against an in-process fake Voxsig server (``realtime_sync.testing``, needs the
``demo`` extra: ``pip install 'realtime_sync[demo]'``) that plays a short conversation and
restarts once (``{"type":"disconnect","reason":"server_restart"}``), so you can see the client
come back, resubscribe and keep the agent online.  It exits by itself after ``--duration``
seconds (against the fake, not before its conversation has played to the end):

    python samples/voxsig_agent.py
    python samples/voxsig_agent.py --duration 12 -v

Against the real server:

    export VOXSIG_URL='wss://app.voxsig.com/cable'
    export VOXSIG_PUBSUB_TOKEN='...'          # the agent's pubsub token (profile settings)
    export VOXSIG_ACCOUNT_ID=1
    export VOXSIG_USER_ID=7
    python samples/voxsig_agent.py --real --duration 0                  # 0: until Ctrl-C
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import Any

import realtime_sync as rs
from realtime_sync.models.voxsig import as_datetime
from realtime_sync.voxsig import VoxsigClient

DEMO_TOKEN = "user-token-1"
DEMO_ACCOUNT = 1
DEMO_USER = 7


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--real", action="store_true", help="connect to $VOXSIG_URL instead of a local fake server")
    p.add_argument(
        "--presence", type=float, default=None, help="seconds between presence updates (default 15; 1 in the demo)"
    )
    p.add_argument("--duration", type=float, default=6.0, help="seconds to run; 0 = until Ctrl-C (default 6)")
    p.add_argument("-v", "--verbose", action="store_true", help="log the library's INFO messages")
    return p.parse_args(argv)


def describe(event: rs.Event) -> str:
    d = event.data
    if event.name.startswith("message."):
        when = as_datetime(d.created_at)
        who = getattr(d.sender, "name", None) or d.sender_type or "?"
        stamp = when.strftime("%H:%M:%S") if when else "--:--:--"
        return f"[conversation {event.entity_id}] {stamp} {who}: {d.content}"
    if event.name.startswith("conversation.typing"):
        who = getattr(d.user, "name", None) or "someone"
        action = "is typing" if event.name.endswith("_on") else "stopped typing"
        return f"[conversation {event.entity_id}] {who} {action}{' (private note)' if d.is_private else ''}"
    if event.name.startswith("notification."):
        title = d.notification.push_message_title if d.notification else ""
        return f"[notification {event.entity_id}] {title} ({d.unread_count} unread)"
    if event.name == "presence.update":
        online = ", ".join(f"user {uid}: {status}" for uid, status in sorted(d.users.items()))
        return f"[presence] {online or 'nobody online'}"
    if event.name.startswith(("conversation.", "assignee.", "team.")):
        assignee = d.meta.assignee.name if d.meta.assignee else "nobody"
        return f"[conversation {event.entity_id}] {event.name}: status={d.status}, assignee={assignee}"
    return f"[{event.name}] {event.entity_id} {d!r:.120}"


def run_fake_script(server: Any, stop: threading.Event) -> None:
    """What happens on the fake server's side: a short conversation and a server restart."""
    from realtime_sync.testing.actioncable import (
        conversation_payload,
        message_payload,
        notification_payload,
        typing_payload,
    )

    steps = [
        (0.8, lambda: server.send_event("account_1", "conversation.created", conversation_payload(42))),
        (1.2, lambda: server.send_event("account_1", "conversation.typing_on", typing_payload(42))),
        (
            1.8,
            lambda: server.send_event("account_1", "message.created", message_payload(1, 42, "Hi, my order is late")),
        ),
        (2.0, lambda: server.send_event("account_1", "conversation.typing_off", typing_payload(42))),
        (2.4, lambda: server.send_event(DEMO_TOKEN, "notification.created", notification_payload(500, 42))),
        (3.0, server.server_restart),  # the client reconnects and resubscribes: presence again
        (
            4.0,
            lambda: server.send_event(
                "account_1", "message.created", message_payload(2, 42, "Sorry! It ships today.", incoming=False)
            ),
        ),
        (
            4.6,
            lambda: server.send_event("account_1", "conversation.status_changed", conversation_payload(42, "resolved")),
        ),
    ]
    elapsed = 0.0
    for at, action in steps:
        if stop.wait(at - elapsed):
            return
        elapsed = at
        # Broadcasts reach only a confirmed subscription (ActionCable keeps no history): on a slow
        # machine the client may still be (re)subscribing, after the start or the restart.
        while not server.subscriptions():
            if stop.wait(0.05):
                return
        action()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    server = None
    if args.real:
        url = os.environ.get("VOXSIG_URL", "wss://app.voxsig.com/cable")
        token = os.environ.get("VOXSIG_PUBSUB_TOKEN")
        account = os.environ.get("VOXSIG_ACCOUNT_ID")
        user = os.environ.get("VOXSIG_USER_ID")
        if not (token and account and user):
            print(
                "--real needs VOXSIG_PUBSUB_TOKEN, VOXSIG_ACCOUNT_ID and VOXSIG_USER_ID (and VOXSIG_URL)",
                file=sys.stderr,
            )
            return 2
        account_id, user_id = int(account), int(user)
        presence = 15.0 if args.presence is None else args.presence
    else:
        from realtime_sync.testing.actioncable import FakeVoxsigServer

        server = FakeVoxsigServer().start()
        url, token, account_id, user_id = server.url, DEMO_TOKEN, DEMO_ACCOUNT, DEMO_USER
        presence = 1.0 if args.presence is None else args.presence

    client = VoxsigClient(url, token, account_id=account_id, user_id=user_id, presence_interval=presence)
    counts = {"events": 0}

    def show(event: rs.Event) -> None:
        counts["events"] += 1
        print(describe(event), flush=True)

    for pattern in (
        "message.*",
        "conversation.*",
        "assignee.*",
        "team.*",
        "notification.*",
        "contact.*",
        "presence.update",
    ):
        client.on(pattern, show)
    client.on("subscribed", lambda e: print("subscribed to the agent's room", flush=True))
    client.on(
        "subscription_rejected", lambda e: print(f"subscription refused: {e.data.reason}", file=sys.stderr, flush=True)
    )
    client.on("disconnected", lambda e: print(f"disconnected: {e.data.reason}", flush=True))
    client.on("error", lambda e: print(f"error ({e.data.kind}): {e.data.message}", file=sys.stderr, flush=True))

    stop = threading.Event()
    script = None
    if server is not None:
        script = threading.Thread(target=run_fake_script, args=(server, stop), name="voxsig-demo-script", daemon=True)
        script.start()
    timer = None
    if args.duration > 0:

        def close_later() -> None:
            if stop.wait(args.duration):
                return
            if script is not None and script.is_alive():
                # The demo's conversation plays to its end, however slow the machine (its steps
                # wait for a confirmed subscription, after the start and after the restart).
                script.join(30)
                if stop.wait(1.0):
                    return
            client.close()

        timer = threading.Thread(target=close_later, name="voxsig-demo-timer", daemon=True)
        timer.start()
    try:
        client.run_forever()  # returns on close() (the timer), on Ctrl-C, or if the server says not to reconnect
    finally:
        stop.set()
        if timer is not None:
            timer.join(5)
        if script is not None:
            script.join(5)
        if server is not None:
            print(f"the server saw {server.presence_count(DEMO_TOKEN)} presence updates", flush=True)
            server.stop()
    print(f"{counts['events']} events received", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
