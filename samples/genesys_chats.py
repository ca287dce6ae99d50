#!/usr/bin/env python
"""An agent's Genesys chats, live: state changes, participants, new messages (CometD /v2/me/chats).

The client subscribes to ``/v2/me/chats`` on the GWS notification endpoint and prints one line
per notification.  It tries a websocket first and falls back to HTTP long-polling when the
server refuses the upgrade (GWS 8.5 serves CometD without websocket).  The password and the
session cookie never appear in the output or the logs, even with ``-v``.

By default it runs against an in-process fake GWS (``realtime_sync.testing``, needs the ``demo``
extra: ``pip install 'realtime_sync[demo]'``) that, like GWS 8.5, refuses websockets and wants
HTTP Basic.  It plays a short chat and expires the CometD session once, so you can see the
client handshake and subscribe again by itself.  It exits when the chat ends (against the
fake), or after ``--duration`` seconds:

    python samples/genesys_chats.py
    python samples/genesys_chats.py --websocket -v      # a fake that accepts websockets

Against a real GWS:

    export GENESYS_URL='https://gws.example.com/api/v2/notifications'
    export GENESYS_USERNAME='agent1' GENESYS_PASSWORD='...'
    export GENESYS_JSESSIONID='...'      # optional: the session cookie of your REST session
    python samples/genesys_chats.py --real --duration 0          # 0: until Ctrl-C
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from typing import Any

import realtime_sync as rs
from realtime_sync.genesys import GenesysChatClient

DEMO_USER, DEMO_PASSWORD = "agent1", "demo-Passw0rd"
CHAT = "0000Wa9CAM6W00J"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--real", action="store_true", help="connect to $GENESYS_URL instead of a local fake server")
    p.add_argument("--websocket", action="store_true", help="demo: the fake server accepts websockets")
    p.add_argument("--transport", choices=("auto", "websocket", "long-polling"), default="auto", help="default: auto")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds to run; 0 = until Ctrl-C (default: until the fake's chat ends, 5 with --real)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log the library's INFO messages")
    return p.parse_args(argv)


def describe(event: rs.Event) -> str:
    d = event.data
    if event.name == "chat.new_messages":
        lines = []
        for m in d.messages:
            who = m.from_.nickname if m.from_ else "?"
            lines.append(f"[chat {event.entity_id}] #{m.index} {who}: {m.text}")
        return "\n".join(lines) or f"[chat {event.entity_id}] (no messages)"
    if event.name.startswith("chat."):
        chat = d.chat
        people = ", ".join(f"{p.nickname} ({p.type})" for p in chat.participants) if chat else ""
        state = chat.state if chat else "?"
        return f"[chat {event.entity_id}] {event.name}: state={state} participants=[{people}]"
    return f"[{event.name}] {event.entity_id} {d!r:.120}"


def delivered(publish: Any, stop: threading.Event, patience: float = 15.0) -> None:
    """Publish until a session gets it (``publish()`` returns how many did).  A session not yet
    subscribed (at start, or after the expiry below, until the client has handshaken and
    subscribed again) gets nothing, as on a real GWS: the script waits for the client rather
    than for a clock that a loaded machine can outrun."""
    waited = 0.0
    while not publish() and waited < patience and not stop.wait(0.05):
        waited += 0.05


def run_fake_script(server: Any, stop: threading.Event, client: Any = None) -> None:
    """What happens on the fake GWS: a short chat, and the CometD session expiring once; then
    ``client`` is closed (the sample ends with the chat)."""
    steps = [
        (0.6, lambda: server.chat_state_change(CHAT, "StatusChange", state="Chatting")),
        (0.9, lambda: server.chat_state_change(CHAT, "ParticipantsUpdated")),
        (1.2, lambda: server.new_messages(CHAT, ["Hello, my order is late", "Order 1234"], sender="Customer1")),
        (1.8, server.expire_sessions),  # next connect: "unknown client" -> handshake + subscribe again
        (2.8, lambda: server.new_messages(CHAT, ["Sorry! It ships today."], start_index=5, chat_path=True)),
        (3.2, lambda: server.chat_state_change(CHAT, "PropertiesUpdated")),
        (3.6, lambda: server.chat_state_change(CHAT, "StatusChange", state="Finished")),
    ]
    start = time.monotonic()
    for at, action in steps:
        if stop.wait(max(0.0, at - (time.monotonic() - start))):
            return
        if action == server.expire_sessions:
            action()
        else:
            delivered(action, stop)
    if client is not None and not stop.wait(0.5):  # the last notification reaches the handler
        client.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    server = None
    cookies = None
    if args.real:
        url = os.environ.get("GENESYS_URL")
        username = os.environ.get("GENESYS_USERNAME")
        password = os.environ.get("GENESYS_PASSWORD")
        session = os.environ.get("GENESYS_JSESSIONID")
        if not url or not ((username and password) or session):
            print(
                "--real needs GENESYS_URL and GENESYS_USERNAME + GENESYS_PASSWORD (and/or GENESYS_JSESSIONID)",
                file=sys.stderr,
            )
            return 2
        if session:
            cookies = {"JSESSIONID": session}
    else:
        from realtime_sync.testing.bayeux import FakeGenesysServer

        server = FakeGenesysServer(timeout=2.0, websocket=args.websocket, basic_auth=(DEMO_USER, DEMO_PASSWORD)).start()
        url, username, password = server.http_url, DEMO_USER, DEMO_PASSWORD

    client = GenesysChatClient(
        url,
        username=username,
        password=password,
        cookies=cookies,
        transport=args.transport,
        reconnect=rs.ReconnectPolicy(instant_retries=0, interval=1.0, step=1.0, max_interval=60.0, jitter=0.1),
    )
    counts = {"events": 0}

    def show(event: rs.Event) -> None:
        counts["events"] += 1
        print(describe(event), flush=True)

    client.on("chat.*", show)
    client.on("notification", show)
    client.on("handshake", lambda e: print(f"session #{e.data.number} over {e.data.transport}", flush=True))
    client.on("subscribed", lambda e: print(f"subscribed to {e.data.subscription.key}", flush=True))
    client.on(
        "subscription_rejected", lambda e: print(f"subscription refused: {e.data.reason}", file=sys.stderr, flush=True)
    )
    client.on("disconnected", lambda e: print(f"disconnected: {e.data.reason}", flush=True))
    client.on("error", lambda e: print(f"error ({e.data.kind}): {e.data.message}", file=sys.stderr, flush=True))

    stop = threading.Event()
    timer = None
    duration = args.duration if args.duration is not None else (5.0 if server is None else 0.0)
    if duration > 0:
        timer = threading.Timer(duration, client.close)
        timer.daemon = True
        timer.start()
    script = None
    if server is not None:
        script = threading.Thread(
            target=run_fake_script, args=(server, stop, client), name="genesys-demo-script", daemon=True
        )
        script.start()
    try:
        client.run_forever()  # returns on close() (the timer), on Ctrl-C, or if the server says not to reconnect
    finally:
        stop.set()
        if timer is not None:
            timer.cancel()
        if script is not None:
            script.join(5)
        if server is not None:
            print(f"the server saw {server.handshake_count} handshakes", flush=True)
            server.stop()
    print(f"{counts['events']} notifications received", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
