#!/usr/bin/env python
"""A contact's side of a Voxsig conversation (what a chat widget or a mobile SDK listens to).

A contact subscribes with its own pubsub token and no ``user_id``; it receives the replies to
its conversations, the agent's typing indicator and the conversation's status changes.  Private
notes and other contacts' activity never reach it.  Presence keeps the contact shown online to
the agents.

By default it runs against an in-process fake Voxsig server (``realtime_sync.testing``, needs the
``demo`` extra) in which an agent answers, and exits by itself after ``--duration`` seconds; the
events are read with the blocking iterator ``client.events()``, handy in scripts and notebooks:

    python samples/voxsig_contact.py

Against the real server (the contact's pubsub token comes from the widget/API contact inbox):

    export VOXSIG_URL='wss://app.voxsig.com/cable'
    export VOXSIG_CONTACT_PUBSUB_TOKEN='...'
    python samples/voxsig_contact.py --real --duration 0                 # 0: until Ctrl-C
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from typing import Any, Callable

from realtime_sync import ClientClosedError
from realtime_sync.voxsig import VoxsigClient

DEMO_TOKEN = "contact-token-1"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--real", action="store_true", help="connect to $VOXSIG_URL instead of a local fake server")
    p.add_argument("--duration", type=float, default=5.0, help="seconds to run; 0 = until Ctrl-C (default 5)")
    p.add_argument("-v", "--verbose", action="store_true", help="log the library's INFO messages")
    return p.parse_args(argv)


def run_fake_script(server: Any, stop: threading.Event) -> None:
    """The agent's side, played by the fake server."""
    from realtime_sync.testing.actioncable import conversation_payload, message_payload, typing_payload

    steps: list[tuple[float, Callable[[], object]]] = [
        (0.6, lambda: server.send_event(DEMO_TOKEN, "conversation.typing_on", typing_payload(42, by_contact=False))),
        (
            1.2,
            lambda: server.send_event(
                DEMO_TOKEN, "message.created", message_payload(7, 42, "Hello! How can I help?", incoming=False)
            ),
        ),
        (1.3, lambda: server.send_event(DEMO_TOKEN, "conversation.typing_off", typing_payload(42, by_contact=False))),
        (
            2.0,
            lambda: server.send_event(DEMO_TOKEN, "conversation.status_changed", conversation_payload(42, "resolved")),
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
        token = os.environ.get("VOXSIG_CONTACT_PUBSUB_TOKEN")
        if not token:
            print("--real needs VOXSIG_CONTACT_PUBSUB_TOKEN (and VOXSIG_URL)", file=sys.stderr)
            return 2
        presence = 30.0
    else:
        from realtime_sync.testing.actioncable import FakeVoxsigServer

        server = FakeVoxsigServer().start()
        url, token, presence = server.url, DEMO_TOKEN, 2.0

    client = VoxsigClient(url, token, presence_interval=presence)  # no user_id: a contact
    client.on("error", lambda e: print(f"error ({e.data.kind}): {e.data.message}", file=sys.stderr, flush=True))
    stop = threading.Event()
    script = None
    count = 0
    deadline = None if args.duration <= 0 else time.monotonic() + args.duration
    try:
        # events() registers its queue at once: called before start(), it misses nothing (called
        # after, the "subscribed" event could come first and be lost on a busy machine).
        events = client.events(
            timeout=None if deadline is None else args.duration
        )  # ends after that long without events
        client.start()
        if server is not None:
            script = threading.Thread(
                target=run_fake_script, args=(server, stop), name="voxsig-demo-script", daemon=True
            )
            script.start()
        for event in events:
            if event.name == "message.created":
                print(f"agent says: {event.data.content}", flush=True)
                count += 1
            elif event.name == "conversation.typing_on":
                print("the agent is typing...", flush=True)
                count += 1
            elif event.name == "conversation.status_changed":
                print(f"conversation {event.entity_id} is now {event.data.status}", flush=True)
                count += 1
            elif event.name == "subscription_rejected":
                # The room is the whole point: nothing will come (a wrong contact token).
                print(f"subscription_rejected: {event.data.reason}", file=sys.stderr, flush=True)
                return 1
            elif event.name in ("subscribed", "disconnected"):
                print(event.name, flush=True)
            if deadline is not None and time.monotonic() >= deadline:
                break
    except KeyboardInterrupt:
        pass
    except ClientClosedError as exc:  # it stopped by itself: e.g. the server refused the token
        print(f"stopped: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stop.set()
        client.close()
        if script is not None:
            script.join(5)
        if server is not None:
            server.stop()
    print(f"{count} events shown", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
