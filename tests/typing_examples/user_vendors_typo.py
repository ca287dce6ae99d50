"""Fields the models lack, read from wait_for()/events() of the Jifeline and Genesys clients:
`mypy --strict` must fail on each (tests/test_typing.py)."""

from __future__ import annotations

import realtime_sync as rs

customer = rs.JifelineCustomerClient("wss://example.invalid/ws")
print(customer.wait_for("ticket.updated", timeout=30).data.ticket_number)
for update in customer.events("connection.updated"):
    print(update.data.uuid)

partner = rs.JifelinePartnerClient(token="token")
print(partner.wait_for("connector.status").data.is_online)  # the push has no online flag
print(partner.wait_for("tickets.ticket.created").data.ticket)  # it is .ticket_id / .payload.ticket

gws = rs.GenesysChatClient("https://gws.example.com/api/v2/notifications")
print(gws.wait_for("chat.new_messages").data.chat)  # only ChatStateChange has the chat
for change in gws.events("chat.status_change"):
    print(change.data.messages)
