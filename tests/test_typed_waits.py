"""``wait_for()`` and ``events()`` of the vendor clients, typed by the event name (the static side
is tests/test_typing.py): at run time they return the model instance of that name, against the
fake servers of realtime_sync.testing, and the names typed for a type checker are the names the
clients emit."""

from __future__ import annotations

import contextlib
import threading
import typing
from collections.abc import Callable, Iterator
from typing import Any

from realtime_sync import genesys, jifeline, voxsig
from realtime_sync.genesys import GenesysChatClient
from realtime_sync.jifeline import JifelineCustomerClient, JifelinePartnerClient
from realtime_sync.models import voxsig as vm
from realtime_sync.models.genesys import _EVENT_NAMES, CALL_EVENTS, DEVICE_EVENTS, ChatStateChange, MessageLogUpdate
from realtime_sync.models.jifeline import Connection, Connector, ConnectorStatus, SystemEvent, Ticket
from realtime_sync.protocols.voxsig import EVENT_TYPES
from realtime_sync.testing.bayeux import FakeGenesysServer
from realtime_sync.testing.jifeline import FakeJifelineCustomerServer, FakeJifelinePartnerServer

from .conftest import T

UUID = "97a0e81d-d0ac-42ae-9195-a11732ad322a"
CONNECTOR = "9389ba6f-3696-4571-84d4-34d588c4b109"


@contextlib.contextmanager
def publishing(publish: Callable[[], Any]) -> Iterator[None]:
    """Publish again every 50 ms while the block runs: ``wait_for`` counts only events that
    arrive after the call, so one of them comes after it whenever the call starts."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.05):
            publish()

    thread = threading.Thread(target=run, name="test-publisher", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(T(5))


def test_jifeline_customer_wait_for_and_events_give_the_model_of_the_name(clients: Any) -> None:
    with FakeJifelineCustomerServer(interval=0.1) as server:
        client: JifelineCustomerClient = clients(JifelineCustomerClient, server.url)
        client.subscribe_ticket(32423)
        client.subscribe_connection(UUID)
        client.subscribe_connector(940201043)
        ticket = client.wait_for("ticket.updated", timeout=T(5))  # starts the client
        assert type(ticket.data) is Ticket and ticket.data.ticket_id == 32423 == ticket.entity_id
        (connection,) = client.events("connection.updated", timeout=T(5), limit=1)
        assert type(connection.data) is Connection and connection.data.connection_uuid == UUID
        connector = client.wait_for("connector.updated", timeout=T(5))
        assert type(connector.data) is Connector and connector.entity_id == 940201043


def test_jifeline_partner_wait_for_and_events_give_the_model_of_the_name(clients: Any) -> None:
    with FakeJifelinePartnerServer(interval=0.1) as server:
        client: JifelinePartnerClient = clients(JifelinePartnerClient, server.url, token="token")
        client.subscribe_connector(CONNECTOR)
        client.subscribe_event("tickets.ticket.created")
        status = client.wait_for("connector.status", timeout=T(5))  # starts the client
        assert type(status.data) is ConnectorStatus and status.data.connector_id == CONNECTOR
        with publishing(lambda: server.emit_event("tickets.ticket.created")):
            created = client.wait_for("tickets.ticket.created", timeout=T(5))
            (again,) = client.events("tickets.ticket.created", timeout=T(5), limit=1)
        assert type(created.data) is SystemEvent and created.data.event_type == "tickets.ticket.created"
        assert created.data.ticket_id is not None and created.data.ticket_id == created.entity_id
        assert type(again.data) is SystemEvent and again.data.event_id != created.data.event_id


def test_genesys_wait_for_and_events_give_the_model_of_the_name(clients: Any) -> None:
    with FakeGenesysServer(timeout=1.0) as gws:
        client: GenesysChatClient = clients(GenesysChatClient, gws.http_url)
        client.start()
        gws.wait_for_subscription("/v2/me/chats", timeout=T(5))
        with publishing(lambda: gws.chat_state_change("0000Wa9CAM6W00J", "StatusChange", state="Chatting")):
            change = client.wait_for("chat.status_change", timeout=T(5))
        assert type(change.data) is ChatStateChange and change.entity_id == "0000Wa9CAM6W00J"
        assert change.data.chat is not None and change.data.chat.state == "Chatting"
        with publishing(lambda: gws.new_messages("0000Wa9CAM6W00FN", ["How may I help you?"])):
            (update,) = client.events("chat.new_messages", timeout=T(5), limit=1)
        assert type(update.data) is MessageLogUpdate and update.data.chat_id == "0000Wa9CAM6W00FN"
        assert [m.text for m in update.data.messages] == ["How may I help you?"]


def _names(*aliases: Any) -> set[str]:
    return {name for alias in aliases for name in typing.get_args(alias)}


def test_the_typed_names_are_the_names_the_clients_emit() -> None:
    """A name the adapters start to emit (or stop emitting) must be typed (or untyped) too."""
    vox = [
        (voxsig._ConversationEvents, vm.Conversation),
        (voxsig._MessageEvents, vm.Message),
        (voxsig._TypingEvents, vm.TypingEvent),
        (voxsig._ContactEvents, vm.Contact),
        (voxsig._NotificationEvents, vm.NotificationEvent),
        (voxsig._PresenceEvents, vm.Presence),
        (voxsig._CacheEvents, vm.CacheInvalidated),
        (voxsig._CopilotEvents, vm.CopilotMessage),
    ]
    assert _names(*(alias for alias, _ in vox)) == set(EVENT_TYPES)
    for alias, model in vox:
        assert {EVENT_TYPES[name][0] for name in typing.get_args(alias)} == {model}, alias
    customer = (jifeline._TicketEvents, jifeline._ConnectionEvents, jifeline._ConnectorEvents)
    assert _names(*customer) == JifelineCustomerClient.known_events
    assert _names(jifeline._ConnectorStatusEvents) == {"connector.status"}
    assert _names(jifeline._SystemEvents) == {"tickets.ticket.created", "tickets.ticket.closed"}  # PROTOCOLS.md
    assert _names(genesys._ChatStateEvents, genesys._MessageLogEvents) == set(_EVENT_NAMES.values())
    assert _names(genesys._MessageLogEvents) == {_EVENT_NAMES["NewMessages"]}
    assert _names(genesys._CallEvents) == set(CALL_EVENTS)
    assert _names(genesys._DeviceEvents) == set(DEVICE_EVENTS)
