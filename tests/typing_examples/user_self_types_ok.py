"""A user's script, typed: `mypy --strict` must pass on it (tests/test_typing.py).

``with VendorClient(...) as c``, ``VendorClient(...).start()``, ``wait_connected()`` and
``hub.add()`` keep the vendor class (its methods and typed waits); ``wait_for("handshake")`` of
the CometD clients is a SessionInfo; the Django and Flask ``@realtime.on`` / ``@realtime.setup``
keep the decorated function's type; ``event.account_id`` is ``int | str | None``."""

from __future__ import annotations

import sys
from typing import Any

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # the package supports 3.10
    from typing_extensions import assert_type

import realtime_sync as rs
from realtime_sync.contrib.django import realtime as django_realtime
from realtime_sync.contrib.flask import RealtimeSync
from realtime_sync.models.genesys import ChatStateChange
from realtime_sync.models.jifeline import Ticket
from realtime_sync.models.voxsig import Message
from realtime_sync.protocols.bayeux import SessionInfo

URL = "wss://app.voxsig.com/cable"

with rs.JifelineCustomerClient("wss://example.invalid/ws", token="token") as customer:
    assert_type(customer, rs.JifelineCustomerClient)
    customer.subscribe_ticket(1)
    assert_type(customer.wait_for("ticket.updated", timeout=30), rs.Event[Ticket])
    state: int | None = customer.wait_for("ticket.updated", timeout=30).data.state

agent = rs.VoxsigClient(URL, pubsub_token="token", account_id=1, user_id=7).start()
assert_type(agent, rs.VoxsigClient)
assert_type(agent.wait_for("message.created", timeout=30), rs.Event[Message])
content: str | None = agent.wait_for("message.created", timeout=30).data.content
assert_type(agent.wait_connected(timeout=10), rs.VoxsigClient)
assert_type(rs.VoxsigClient(URL, pubsub_token="t").start(wait=True, timeout=10), rs.VoxsigClient)
assert_type(agent.wait_for("message.created").account_id, int | str | None)

with rs.Hub(workers=2) as hub:
    assert_type(hub, rs.Hub)
    assert_type(hub.add(rs.VoxsigClient(URL, pubsub_token="token", account_id=1)), rs.VoxsigClient)

gws = rs.GenesysChatClient("https://gws.example.com/api/v2/notifications", username="agent1", password="pw")
with gws:
    assert_type(gws.wait_for("handshake", timeout=30), rs.Event[SessionInfo])
    sessions: int = gws.wait_for("handshake", timeout=30).data.number
    for session in gws.events("handshake", limit=1):
        assert_type(session, rs.Event[SessionInfo])
    assert_type(gws.wait_for("chat.status_change"), rs.Event[ChatStateChange])  # still typed
    assert_type(gws.wait_for("notification"), rs.Event[Any])
cometd = rs.CometDClient("https://push.example.com/cometd")
assert_type(cometd.wait_for("handshake"), rs.Event[SessionInfo])
assert_type(cometd.wait_for("message"), rs.Event[Any])
for session in cometd.events("handshake", limit=1):
    transport: str = session.data.transport


@django_realtime.on("message.created")
@django_realtime.on("message.updated", entity_id=42, changes_only=False)
def store(event: rs.Event[Message]) -> None:
    text: str | None = event.data.content
    print(text, event.entity_id)


@django_realtime.setup
def subscribe_open_tickets(client: rs.JifelineCustomerClient) -> None:
    client.subscribe_ticket(32423)


@django_realtime.setup(client="jifeline")
def subscribe_more(client: rs.JifelineCustomerClient) -> None:
    client.subscribe_ticket(32424)


store(rs.Event("message.created", Message(id=1)))  # the decorated functions kept their type
django_realtime.on("message.created", store)(rs.Event("message.created", Message(id=1)))

flask_realtime = RealtimeSync()


@flask_realtime.on("message.created", entity_id=7)
def store_from_flask(event: rs.Event[Message]) -> None:
    print(event.data.content)


@flask_realtime.setup
def flask_setup(client: rs.VoxsigClient) -> None:
    client.wait_connected(timeout=10)


store_from_flask(rs.Event("message.created", Message(id=1)))
flask_realtime.on("message.updated", store_from_flask)(rs.Event("message.created", Message(id=1)))
