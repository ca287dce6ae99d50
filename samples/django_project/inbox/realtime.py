"""Real-time handlers of the inbox app (autodiscovered: every installed app's realtime.py).

They run in the ``manage.py realtime_listen`` process, on the client's dispatcher thread, one
event at a time and in order; stale database connections are closed around each call.
"""

import realtime_sync as rs
from realtime_sync.contrib.django import realtime
from realtime_sync.models import voxsig

from .models import Message


@realtime.on("message.created")
@realtime.on("message.updated")
def store_message(event: rs.Event[voxsig.Message]) -> None:
    m = event.data
    sender = getattr(m.sender, "name", None) or m.sender_type or ""
    Message.objects.update_or_create(
        id=m.id, defaults={"conversation": event.entity_id, "sender": sender, "text": m.content or ""}
    )
    print(f"stored message {m.id} of conversation {event.entity_id}: {m.content}", flush=True)


@realtime.on("conversation.status_changed")
def status_changed(event: rs.Event[voxsig.Conversation]) -> None:
    print(f"conversation {event.entity_id} is now {event.data.status}", flush=True)
