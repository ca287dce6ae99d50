"""A user's script for the Jifeline and Genesys clients, typed: `mypy --strict` must pass on it
(tests/test_typing.py).  wait_for() and events() of every documented event name give its model;
a pattern or another name gives Event[Any]; on() keeps the decorated function's type."""

from __future__ import annotations

import sys
from typing import Any

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # the package supports 3.10
    from typing_extensions import assert_type

import realtime_sync as rs
from realtime_sync.models.genesys import CallStateChange, ChatStateChange, DeviceStateChange, MessageLogUpdate
from realtime_sync.models.jifeline import Connection, Connector, ConnectorStatus, SystemEvent, Ticket
from realtime_sync.models.voxsig import Presence

customer = rs.JifelineCustomerClient("wss://example.invalid/ws", token="token")
assert_type(customer.wait_for("ticket.updated", timeout=30), rs.Event[Ticket])
assert_type(customer.wait_for("connection.updated"), rs.Event[Connection])
assert_type(customer.wait_for("connector.updated"), rs.Event[Connector])
assert_type(customer.wait_for("ticket.*"), rs.Event[Any])
assert_type(customer.wait_for("error"), rs.Event[Any])
ticket = customer.wait_for("ticket.updated", timeout=30, where=lambda e: e.entity_id == 32423)
state: int | None = ticket.data.state
for update in customer.events("connection.updated", timeout=60, limit=3):
    url: str | None = update.data.script_ui_wss_url
for event in customer.events():
    assert_type(event, rs.Event[Any])


@customer.on("ticket.updated", changes_only=True)
def changed(event: rs.Event[Ticket]) -> None:
    print(event.entity_id, event.changes, event.data.vin)


partner = rs.JifelinePartnerClient(token="token")
assert_type(partner.wait_for("connector.status"), rs.Event[ConnectorStatus])
assert_type(partner.wait_for("tickets.ticket.created"), rs.Event[SystemEvent])
assert_type(partner.wait_for("tickets.ticket.closed"), rs.Event[SystemEvent])
assert_type(partner.wait_for("tickets.*"), rs.Event[Any])
voltage: float | None = partner.wait_for("connector.status", timeout=30).data.voltage
for created in partner.events("tickets.ticket.created", limit=1):
    ticket_id: int | str | None = created.data.ticket_id


@partner.on("connector.status")
def status(event: rs.Event[ConnectorStatus]) -> None:
    print(event.data.round_trip_time)


gws = rs.GenesysChatClient("https://gws.example.com/api/v2/notifications", username="agent1", password="pw")
some_name: str = "chat.status_change"  # a name known only at run time: Event[Any]
assert_type(gws.wait_for(some_name), rs.Event[Any])
assert_type(gws.wait_for("chat.status_change"), rs.Event[ChatStateChange])
assert_type(gws.wait_for("chat.participants_updated"), rs.Event[ChatStateChange])
assert_type(gws.wait_for("chat.properties_updated"), rs.Event[ChatStateChange])
assert_type(gws.wait_for("chat.error"), rs.Event[ChatStateChange])
assert_type(gws.wait_for("chat.new_messages"), rs.Event[MessageLogUpdate])
assert_type(gws.wait_for("call.status_change"), rs.Event[CallStateChange])
assert_type(gws.wait_for("call.participants_updated"), rs.Event[CallStateChange])
assert_type(gws.wait_for("call.attached_data_changed"), rs.Event[CallStateChange])
assert_type(gws.wait_for("call.call_recording_state_change"), rs.Event[CallStateChange])
assert_type(gws.wait_for("device.state_change"), rs.Event[DeviceStateChange])
assert_type(gws.wait_for("notification"), rs.Event[Any])
assert_type(gws.wait_for("chat.*"), rs.Event[Any])
for new in gws.events("chat.new_messages", timeout=60):
    texts: list[str | None] = [m.text for m in new.data.messages]
for chat_event in gws.events("chat.*"):
    assert_type(chat_event, rs.Event[Any])


@gws.on("chat.status_change")
def chat_state(event: rs.Event[ChatStateChange]) -> None:
    print(event.data.chat_id)


chat_state(rs.Event("chat.status_change", ChatStateChange()))  # the decorated function kept its type

voxsig = rs.VoxsigClient("wss://app.voxsig.com/cable", pubsub_token="token", account_id=1, user_id=7)
for presence in voxsig.events("presence.update", limit=1):  # events() is typed like wait_for()
    assert_type(presence, rs.Event[Presence])
