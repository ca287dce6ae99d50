"""Typos behind start(), `with`, wait_for("handshake") and the Django/Flask decorators:
`mypy --strict` must report each (tests/test_typing.py checks the lines)."""

from __future__ import annotations

import realtime_sync as rs
from realtime_sync.contrib.django import realtime as django_realtime
from realtime_sync.contrib.flask import RealtimeSync
from realtime_sync.models.voxsig import Message

agent = rs.VoxsigClient("wss://app.voxsig.com/cable", pubsub_token="token", account_id=1, user_id=7).start()
print(agent.wait_for("message.created", timeout=30).data.contnet)
with rs.JifelineCustomerClient("wss://example.invalid/ws", token="token") as customer:
    customer.subscribe_tickets(1)
    print(customer.wait_for("ticket.updated").data.ticket_number)
gws = rs.GenesysChatClient("https://gws.example.com/api/v2/notifications", username="agent1", password="pw")
print(gws.wait_for("handshake", timeout=30).data.numbr)
account: int = agent.wait_for("message.created").account_id


@django_realtime.on("message.created")
def store(event: rs.Event[Message]) -> None: ...


flask_realtime = RealtimeSync()


@flask_realtime.on("message.created")
def store_from_flask(event: rs.Event[Message]) -> None: ...


store("not an event")
store_from_flask("not an event")
