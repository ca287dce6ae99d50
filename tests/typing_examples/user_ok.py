"""A user's script, typed: `mypy --strict` must pass on it (tests/test_typing.py)."""

from __future__ import annotations

import realtime_sync as rs
from realtime_sync.models.genesys import MessageLogUpdate
from realtime_sync.models.jifeline import Ticket
from realtime_sync.models.voxsig import Message

client = rs.VoxsigClient("wss://app.voxsig.com/cable", pubsub_token="token", account_id=1, user_id=7)


@client.on("message.created")
def show(event: rs.Event[Message]) -> None:
    content: str | None = event.data.content
    print(event.entity_id, content, event.key)


@client.on("error")
def report(event: rs.Event[rs.ErrorInfo]) -> None:
    print(event.data.kind, event.data.message)


@client.on("*")
def anything(event: rs.Event) -> None:  # a bare Event is Event[Any]
    print(event.name)


def on_ticket(event: rs.Event[Ticket]) -> None:
    print(event.data.state)


jifeline = rs.JifelineCustomerClient("wss://example.invalid/ws")
same: object = jifeline.on("ticket.updated", on_ticket, changes_only=True)
show(rs.Event("message.created", Message(content="hi")))  # the decorated function kept its type
update: rs.Event[MessageLogUpdate] = rs.Event("chat.new_messages", MessageLogUpdate())
print(update.data.chat_id)
received = rs.Event.from_dict({"name": "x"})
print(received.to_dict()["key"])


def gws_csrf_token() -> tuple[str, str]:  # from the application's own REST session
    return "X-CSRF-TOKEN", "token"


gws = rs.GenesysChatClient(
    "https://gws.example.com/api/v2/notifications", cookies={"JSESSIONID": "s"}, csrf=gws_csrf_token
)

# The README's generic ActionCable example, unannotated (was: Need type annotation for "cable").
cable = rs.ActionCableClient("wss://example.com/cable", cookies={"_session": "s"})
chat = cable.subscribe("ChatChannel", room="lobby")
cable.perform(chat, "speak", text="hello")
cable.on("message", lambda event: print(event.data))


def wait_for_urgent() -> str | None:
    # wait_for() and events() of a known event name are typed by its model (Event[Message]).
    event = client.wait_for("message.created", where=lambda e: "urgent" in (e.data.content or ""), timeout=30)
    for later in client.events("conversation.status_changed", timeout=5, limit=1):
        print(later.data.status)
    anything_at_all = client.wait_for("custom.*", timeout=1)  # a pattern: Event[Any]
    print(anything_at_all.data)
    return event.data.content


# VoxsigClient.identifier is a str (the token shown as ***), with a callable token too: no
# `assert client.identifier is not None` before perform() (it was typed str | None).
client.perform(client.identifier, "typing_status", typing_status="on")
rotating = rs.VoxsigClient("wss://app.voxsig.com/cable", pubsub_token=lambda: "token", account_id=1, user_id=7)
shown: str = rotating.identifier

# ConnectOptions' own docstring example type-checks (its converters were dict and tuple, whose
# overloads the attrs plugin could not match a dict literal or a list against).
options = rs.ConnectOptions(headers={"X-Trace": "1"}, subprotocols=["a"], connect_timeout=5)
traced = rs.VoxsigClient("wss://app.voxsig.com/cable", "token", account_id=1, user_id=7, connect=options)
