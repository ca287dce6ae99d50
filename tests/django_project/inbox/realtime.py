"""Handlers of the test app, autodiscovered by realtime_sync.contrib.django."""

from __future__ import annotations

import sys

from realtime_sync.contrib.django import realtime

RECEIVED: list[tuple[str, object, object]] = []
SETUP_CALLS: list[str] = []


@realtime.on("message.created")
def remember_message(event):
    RECEIVED.append((event.name, event.entity_id, event.data.content))
    print(f"handled {event.name} {event.entity_id} {event.data.content}", flush=True)
    sys.stdout.flush()


@realtime.on("conversation.*", entity_id=42)
def remember_conversation(event):
    RECEIVED.append((event.name, event.entity_id, event.data.status))


@realtime.setup
def remember_setup(client):
    SETUP_CALLS.append(client.name)
