"""The Jifeline adapters without any network: frame by frame, with an explicit clock."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_sync import ConfigurationError, ErrorInfo, Event, Subscription
from realtime_sync.models.jifeline import (
    Connection,
    Connector,
    ConnectorStatus,
    Schedule,
    SystemEvent,
    SystemEventPayload,
    Ticket,
    TicketRef,
)
from realtime_sync.protocols.jifeline import (
    CUSTOMER_KINDS,
    PARTNER_KINDS,
    JifelineCustomerAdapter,
    JifelinePartnerAdapter,
    events_from_rest_body,
    normalize_action,
    rest_item_to_frame,
    validate_key,
)

UUID = "97a0e81d-d0ac-42ae-9195-a11732ad322a"
CONNECTOR_UUID = "9389ba6f-3696-4571-84d4-34d588c4b109"

TICKET = {
    "id": 4723423,
    "ticket_id": 4723423,
    "ticket_uuid": UUID,
    "state": 1,
    "connection_id": 1631171716525,
    "connection_uuid": UUID,
    "cancelled_reason": 0,
    "chat_state": 0,
    "vehicle_model_id": 243021,
    "is_script_composition_running": False,
    "vehicle_model_variant_id": 243031,
    "vin": "JFL94020109394020",
    "schedule": {"message": "I'll be right back", "until": "string"},
}


def frames(adapter) -> list[dict]:
    return [json.loads(f) for f in adapter.data_to_send()]


def names(events: list[Event]) -> list[str]:
    return [e.name for e in events]


def push(adapter, action: str, message: Any, now: float = 10.0) -> list[Event]:
    adapter.receive_text(json.dumps({"action": action, "message": message}), now)
    return adapter.events_received()


def errors(events: list[Event]) -> list[ErrorInfo]:
    return [e.data for e in events if e.name == "error"]


# -- customer: wire -------------------------------------------------------------------------


def test_customer_sends_exact_actions_including_the_odd_unsubscribe_names():
    a = JifelineCustomerAdapter()
    a.connection_made(0.0)
    a.subscribe("ticket", 32423, 1.0)
    a.subscribe("connector", 940201043, 1.0)
    a.subscribe("connection", UUID, 1.0)
    a.unsubscribe("ticket", 32423, 2.0)
    a.unsubscribe("connector", 940201043, 2.0)
    a.unsubscribe("connection", UUID, 2.0)
    assert frames(a) == [
        {"action": "subscribeToTicket", "ticket_id": 32423},
        {"action": "subscribeToConnector", "connector_id": 940201043},
        {"action": "subscribeToConnection", "connection_uuid": UUID},
        {"action": "unsubscribeToTicket", "ticket_id": 32423},
        {"action": "unsubscribeFromConnector", "connector_id": 940201043},
        {"action": "unsubscribeToConnection", "connection_uuid": UUID},
    ]


def test_subscriptions_are_desired_state_restored_on_every_connection():
    a = JifelineCustomerAdapter()
    assert a.subscribe("ticket", 1, 0.0)
    assert a.subscribe("connection", UUID, 0.0)
    assert not a.subscribe("ticket", 1, 0.0)  # already wanted: nothing more to send
    assert a.data_to_send() == []  # not connected yet
    a.connection_made(1.0)
    assert [f.get("ticket_id", f.get("connection_uuid")) for f in frames(a)] == [1, UUID]
    a.subscribe("connector", 7, 2.0)
    a.unsubscribe("connection", UUID, 2.0)
    a.data_to_send()
    a.connection_lost(3.0, "dropped")
    a.unsubscribe("ticket", 1, 3.5)  # while disconnected: nothing sent, nothing restored
    assert not a.unsubscribe("ticket", 1, 3.6)
    assert a.data_to_send() == []
    a.connection_made(4.0)
    assert frames(a) == [{"action": "subscribeToConnector", "connector_id": 7}]


def test_ticket_push_is_typed_and_confirms_the_subscription_once_per_connection():
    a = JifelineCustomerAdapter()
    a.subscribe("ticket", 4723423, 0.0)
    a.connection_made(0.0)
    a.clock_offset = 1000.0
    events = push(a, "subscribeToTicket", TICKET, now=5.0)
    assert names(events) == ["subscribed", "ticket.updated"]
    ev = events[1]
    assert ev.entity_id == 4723423
    assert ev.subscription == Subscription("ticket", 4723423)
    assert ev.received_at == 1005.0
    assert isinstance(ev.data, Ticket)
    assert ev.data.schedule == Schedule("I'll be right back", "string")
    assert ev.data.is_script_composition_running is False
    assert ev.raw == {"action": "subscribeToTicket", "message": TICKET}
    assert names(push(a, "subscribeToTicket", TICKET)) == ["ticket.updated"]
    a.connection_lost(6.0)
    a.connection_made(7.0)
    assert names(push(a, "subscribeToTicket", TICKET)) == ["subscribed", "ticket.updated"]


def test_connection_and_connector_pushes():
    a = JifelineCustomerAdapter()
    a.subscribe("connection", UUID, 0.0)
    a.subscribe("connector", 940201043, 0.0)
    a.connection_made(0.0)
    conn = {"connection_uuid": UUID, "script_ui_wss_url": None, "script_ui_available": 1300, "is_autonomous": True}
    ev = push(a, "subscribeToConnection", conn)[-1]
    assert (ev.name, ev.entity_id, ev.data) == ("connection.updated", UUID, Connection(UUID, None, 1300, True))
    ev = push(a, "subscribeToConnector", {"id": 940201043, "is_online": True, "firmware": "x"})[-1]
    assert (ev.name, ev.entity_id) == ("connector.updated", 940201043)
    assert isinstance(ev.data, Connector) and ev.data.is_online is True
    assert ev.raw["message"]["firmware"] == "x"  # unknown fields stay reachable


def test_connector_push_of_unexpected_shape_is_still_delivered_with_an_error():
    a = JifelineCustomerAdapter()
    a.subscribe("connector", 5, 0.0)
    a.connection_made(0.0)
    events = push(a, "subscribeToConnector", {"connector_id": 5, "is_online": 1, "has_wifi": "maybe"})
    # The event first (typed as far as it fits), then the decode error naming the bad field.
    assert names(events) == ["subscribed", "connector.updated", "error"]
    ev = events[1]
    assert ev.data.is_online is True and ev.data.has_wifi is None  # 1 reads as true; "maybe" is no bool
    assert "has_wifi" in ev.decode_error
    assert events[-1].data.kind == "decode" and "has_wifi" in events[-1].data.message


@pytest.mark.parametrize(
    ("message", "field", "value"),
    [
        ({"ticket_id": "1"}, "ticket_id", 1),  # a numeric string is the number
        ({"ticket_id": 1, "state": "2"}, "state", 2),
        ({"ticket_id": 1, "is_script_composition_running": "false"}, "is_script_composition_running", False),
        ({"ticket_id": 1, "state": 3.0}, "state", 3),
    ],
)
def test_real_spellings_read_into_the_right_values_without_errors(message, field, value):
    a = JifelineCustomerAdapter()
    a.subscribe("ticket", 1, 0.0)
    a.connection_made(0.0)
    events = push(a, "subscribeToTicket", message)
    assert names(events) == ["subscribed", "ticket.updated"]
    assert getattr(events[-1].data, field) == value and events[-1].decode_error is None


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"ticket_id": 1, "state": True}, "state"),
        ({"ticket_id": 1, "state": 1.5}, "state"),
        ({"ticket_id": 1, "vin": {}}, "vin"),
    ],
)
def test_a_value_that_does_not_fit_is_never_guessed_and_the_event_still_arrives(message, field):
    a = JifelineCustomerAdapter()
    a.subscribe("ticket", 1, 0.0)
    a.connection_made(0.0)
    events = push(a, "subscribeToTicket", message)
    assert names(events) == ["subscribed", "ticket.updated", "error"]
    assert getattr(events[1].data, field) is None and events[1].data.ticket_id == 1
    assert f"Ticket.{field}" in events[1].decode_error and events[2].data.kind == "decode"
    assert events[1].raw["message"] == message  # the value as sent stays reachable


def test_push_without_id_belongs_to_the_only_subscription_of_its_kind():
    a = JifelineCustomerAdapter()
    a.subscribe("connector", 5, 0.0)
    a.connection_made(0.0)
    assert push(a, "subscribeToConnector", {"is_online": True})[-1].entity_id == 5
    a.subscribe("connector", 6, 0.0)
    ev = push(a, "subscribeToConnector", {"is_online": True})[-1]
    assert ev.entity_id is None and ev.changes is None  # ambiguous: no change detection


# -- change detection -----------------------------------------------------------------------


def test_changes_first_snapshot_then_only_real_differences_and_no_spurious_change_after_reconnect():
    a = JifelineCustomerAdapter()
    a.subscribe("ticket", 4723423, 0.0)
    a.connection_made(0.0)
    first = push(a, "subscribeToTicket", TICKET)[-1]
    assert first.changes == frozenset(TICKET)
    assert push(a, "subscribeToTicket", TICKET)[-1].changes == frozenset()
    changed = push(a, "subscribeToTicket", {**TICKET, "state": 2, "schedule": None})[-1]
    assert changed.changes == {"state", "schedule"}
    # A reconnect: the first snapshot on the new connection equals the last one before the drop.
    a.connection_lost(20.0, "dropped")
    a.connection_made(21.0)
    a.data_to_send()
    after = push(a, "subscribeToTicket", {**TICKET, "state": 2, "schedule": None})
    assert names(after) == ["subscribed", "ticket.updated"] and after[-1].changes == frozenset()
    # A change that happened while disconnected is a real change and is reported.
    a.connection_lost(30.0, "dropped")
    a.connection_made(31.0)
    assert push(a, "subscribeToTicket", {**TICKET, "state": 3, "schedule": None})[-1].changes == {"state"}


def test_removed_and_added_fields_count_as_changes_and_unsubscribe_forgets():
    a = JifelineCustomerAdapter()
    a.subscribe("connection", UUID, 0.0)
    a.connection_made(0.0)
    push(a, "subscribeToConnection", {"connection_uuid": UUID, "is_autonomous": True})
    ev = push(a, "subscribeToConnection", {"connection_uuid": UUID, "script_ui_available": 1})[-1]
    assert ev.changes == {"is_autonomous", "script_ui_available"}
    a.unsubscribe("connection", UUID, 1.0)
    a.subscribe("connection", UUID, 2.0)
    ev = push(a, "subscribeToConnection", {"connection_uuid": UUID, "script_ui_available": 1})[-1]
    assert ev.changes == {"connection_uuid", "script_ui_available"}  # a fresh subscription


def test_push_in_flight_after_unsubscribe_is_dropped_and_resubscribe_starts_afresh():
    a = JifelineCustomerAdapter()
    a.subscribe("ticket", 4723423, 0.0)
    a.connection_made(0.0)
    push(a, "subscribeToTicket", TICKET)
    a.unsubscribe("ticket", 4723423, 1.0)
    assert frames(a)[-1] == {"action": "unsubscribeToTicket", "ticket_id": 4723423}
    assert push(a, "subscribeToTicket", TICKET) == []  # crossed the unsubscribe on the wire
    assert len(a.snapshots) == 0
    a.subscribe("ticket", 4723423, 2.0)
    assert frames(a) == [{"action": "subscribeToTicket", "ticket_id": 4723423}]
    ev = push(a, "subscribeToTicket", TICKET)[-1]
    assert ev.changes == frozenset(TICKET)  # a changes_only handler learns the state again
    # Unsubscribed while disconnected: nothing sent, not restored, its snapshot forgotten.
    a.connection_lost(3.0)
    a.unsubscribe("ticket", 4723423, 4.0)
    assert frames(a) == []
    a.connection_made(5.0)
    assert frames(a) == [] and len(a.snapshots) == 0


def test_snapshot_store_is_bounded():
    a = JifelineCustomerAdapter(max_snapshots=3)
    a.connection_made(0.0)
    for i in range(10):
        push(a, "subscribeToTicket", {"ticket_id": i, "state": 1})
    assert len(a.snapshots) == 3


# -- customer: errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "needle"),
    [
        ('{"message":"Forbidden","connectionId":"abc=","requestId":"r-1"}', "server", "Forbidden"),
        ('{"message":"Internal server error","connectionId":"abc=","requestId":"r-2"}', "server", "Internal"),
        ('{"hello":1}', "bad_frame", "no 'action'"),
        ("not json", "bad_frame", "JSON"),
        ("[1,2]", "bad_frame", "object"),
        ('{"action":5}', "bad_frame", "action"),
        ('{"action":"subscribeToTicket"}', "bad_frame", "message"),
        ('{"action":"subscribeToTicket","message":[1]}', "bad_frame", "message"),
        ('{"action":"subscribeToTicket","message":"Ticket not found"}', "server", "Ticket not found"),
        ('{"action":"connected","message":{}}', "bad_frame", "unexpected action"),
    ],
)
def test_bad_and_error_frames_become_error_events_and_later_frames_still_work(text, kind, needle):
    a = JifelineCustomerAdapter()
    a.subscribe("ticket", 1, 0.0)
    a.connection_made(0.0)
    a.receive_text(text, 1.0)
    events = a.events_received()
    assert names(events) == ["error"]
    assert events[0].data.kind == kind and needle in events[0].data.message
    assert names(push(a, "subscribeToTicket", {"ticket_id": 1})) == ["subscribed", "ticket.updated"]


def test_gateway_error_names_the_ids():
    a = JifelineCustomerAdapter()
    a.receive_text('{"message":"Forbidden","connectionId":"Kx1=","requestId":"req-9"}', 1.0)
    (ev,) = a.events_received()
    assert ev.data.message == "server error: Forbidden (connectionId=Kx1=, requestId=req-9)"
    assert ev.raw["requestId"] == "req-9"


def test_unknown_actions_are_passed_through_and_echoes_ignored():
    a = JifelineCustomerAdapter()
    a.receive_text('{"action":"somethingNew","x":1}', 1.0)
    a.receive_text('{"action":"unsubscribeToTicket","ticket_id":1}', 1.0)
    (ev,) = a.events_received()
    assert (ev.name, ev.data) == ("somethingNew", {"action": "somethingNew", "x": 1})


def test_keepalive_resends_one_subscription_round_robin_after_silence():
    a = JifelineCustomerAdapter(keepalive_interval=100.0)
    assert a.next_deadline() is None  # not connected
    a.subscribe("ticket", 1, 0.0)
    a.subscribe("ticket", 2, 0.0)
    a.connection_made(10.0)
    a.data_to_send()
    assert a.next_deadline() == 110.0
    a.handle_timer(50.0)
    assert a.data_to_send() == []
    a.handle_timer(110.0)
    assert frames(a) == [{"action": "subscribeToTicket", "ticket_id": 1}]
    assert a.next_deadline() == 210.0
    a.send_text("{}", 150.0)  # any client frame resets the idle clock
    a.data_to_send()
    a.handle_timer(250.0)
    assert frames(a) == [{"action": "subscribeToTicket", "ticket_id": 2}]
    assert JifelineCustomerAdapter(keepalive_interval=None).next_deadline() is None


def test_keepalive_without_subscriptions_sends_nothing():
    a = JifelineCustomerAdapter(keepalive_interval=10.0)
    a.connection_made(0.0)
    a.handle_timer(10.0)
    assert a.data_to_send() == [] and a.next_deadline() == 20.0


# -- partner --------------------------------------------------------------------------------


def event_frame(event_id: str, event_type: str = "tickets.ticket.created", **message: Any) -> str:
    msg = message or {"customer": {"id": 1, "name": "Garage"}, "ticket": {"id": f"t-{event_id}", "number": 1}}
    return json.dumps({"action": "event-received", "event_id": event_id, "event_type": event_type, "message": msg})


def test_partner_sends_kebab_case():
    a = JifelinePartnerAdapter()
    a.subscribe("connector", CONNECTOR_UUID, 0.0)
    a.subscribe("event", "tickets.ticket.created", 0.0)
    a.connection_made(1.0)
    a.unsubscribe("connector", CONNECTOR_UUID, 2.0)
    a.unsubscribe("event", "tickets.ticket.created", 2.0)
    assert frames(a) == [
        {"action": "subscribe-to-connector", "connector_id": CONNECTOR_UUID},
        {"action": "subscribe-to-event", "event_type": "tickets.ticket.created"},
        {"action": "unsubscribe-from-connector", "connector_id": CONNECTOR_UUID},
        {"action": "unsubscribe-from-event", "event_type": "tickets.ticket.created"},
    ]


@pytest.mark.parametrize("action", ["subscribe-to-connector", "subscribeToConnector", "SubscribeToConnector"])
def test_partner_connector_status_accepts_kebab_and_camel_case(action):
    a = JifelinePartnerAdapter()
    a.subscribe("connector", CONNECTOR_UUID, 0.0)
    a.connection_made(0.0)
    msg = {"connector_id": CONNECTOR_UUID, "voltage": 11.2, "vin_number": "JFL91010104491010", "round_trip_time": 23}
    events = push(a, action, msg)
    assert names(events) == ["subscribed", "connector.status"]
    ev = events[-1]
    assert ev.entity_id == CONNECTOR_UUID
    assert ev.data == ConnectorStatus(CONNECTOR_UUID, 11.2, "JFL91010104491010", 23)
    assert ev.changes == frozenset(msg)
    assert push(a, action, {**msg, "voltage": 12})[-1].changes == {"voltage"}


@pytest.mark.parametrize("action", ["event-received", "eventReceived"])
def test_partner_system_event_is_dispatched_under_its_type(action):
    a = JifelinePartnerAdapter()
    a.subscribe("event", "tickets.ticket.created", 0.0)
    a.connection_made(0.0)
    a.receive_text(event_frame("01A").replace("event-received", action), 1.0)
    events = a.events_received()
    assert names(events) == ["subscribed", "tickets.ticket.created"]
    ev = events[-1]
    assert isinstance(ev.data, SystemEvent)
    assert ev.data.event_id == "01A" and ev.entity_id == "t-01A" and ev.changes is None
    assert ev.data.payload is not None and ev.data.payload.customer is not None
    assert ev.data.payload.customer.name == "Garage"
    assert ev.subscription == Subscription("event", "tickets.ticket.created")
    assert a.last_event_id == "01A"


@pytest.mark.parametrize(
    "message",
    [None, {}, {"customer": None}, {"ticket": None, "parent_ticket": None}, {"ticket": {}}, {"other": 1}],
)
def test_system_event_payload_parts_may_be_missing(message):
    a = JifelinePartnerAdapter()
    a.receive_text(
        json.dumps({"action": "event-received", "event_id": "1", "event_type": "x.y", "message": message}), 1.0
    )
    (ev,) = a.events_received()
    assert ev.name == "x.y" and ev.entity_id is None


def test_system_event_with_mistyped_payload_is_delivered_and_reported():
    a = JifelinePartnerAdapter()
    a.receive_text(
        json.dumps(
            {"action": "event-received", "event_id": "1", "event_type": "x.y", "message": {"ticket": {"id": [1]}}}
        ),
        1.0,
    )
    events = a.events_received()
    assert names(events) == ["x.y", "error"]
    # The parts that fit stay typed; the ticket whose id is a list keeps its defaults.
    assert events[0].data == SystemEvent("1", "x.y", SystemEventPayload(ticket=TicketRef()))
    assert "ticket.id" in events[0].decode_error and events[1].data.kind == "decode"


@pytest.mark.parametrize(
    "frame",
    [
        {"action": "event-received", "event_id": "1"},
        {"action": "event-received", "event_id": "1", "event_type": ""},
        {"action": "event-received", "event_id": "1", "event_type": "error"},
    ],
)
def test_system_event_without_usable_type_is_a_bad_frame(frame):
    a = JifelinePartnerAdapter()
    a.receive_text(json.dumps(frame), 1.0)
    assert [e.data.kind for e in a.events_received()] == ["bad_frame"]


def test_duplicate_event_ids_are_delivered_once():
    a = JifelinePartnerAdapter(dedupe_window=2)
    for eid in ["1", "2", "1", "3", "1"]:
        a.receive_text(event_frame(eid), 1.0)
    assert [e.data.event_id for e in a.events_received()] == ["1", "2", "3", "1"]  # "1" left the window
    assert a.duplicates == 1


# -- gap recovery ---------------------------------------------------------------------------


class GapHarness:
    def __init__(self, **kw: Any) -> None:
        self.requests: list[tuple[int, str]] = []
        self.a = JifelinePartnerAdapter(
            gap_recovery=True, request_gap=lambda g, after: self.requests.append((g, after)), gap_timeout=5.0, **kw
        )
        self.a.subscribe("event", "tickets.ticket.created", 0.0)
        self.a.connection_made(0.0)
        self.a.receive_text(event_frame("01"), 1.0)
        self.a.events_received()
        self.a.data_to_send()

    def reconnect(self, now: float) -> None:
        self.a.connection_lost(now, "dropped")
        self.a.connection_made(now + 0.1)
        self.a.data_to_send()

    def delivered(self) -> list[str]:
        return [e.data.event_id for e in self.a.events_received() if isinstance(e.data, SystemEvent)]


def rest(eid: str, event_type: str = "tickets.ticket.created") -> dict:
    return {"id": eid, "type": event_type, "payload": {"ticket": {"id": eid}}}


def test_gap_recovery_delivers_missed_events_before_held_live_ones_without_duplicates():
    h = GapHarness()
    assert h.requests == []  # the first connection needs no recovery
    h.reconnect(10.0)
    assert h.requests == [(1, "01")] and h.a.recovering
    h.a.receive_text(event_frame("04"), 11.0)
    h.a.receive_text(event_frame("05"), 11.5)
    assert h.delivered() == []  # held until the missed ones are in
    h.a.finish_gap_recovery(1, [rest("02"), rest("03", "tickets.ticket.closed"), rest("04"), rest("03b")], 12.0)
    assert h.delivered() == ["02", "04", "03b", "05"]  # 03 is of a type not subscribed; 04 once
    assert not h.a.recovering and h.a.last_event_id == "05"
    h.a.receive_text(event_frame("06"), 13.0)
    assert h.delivered() == ["06"]


def test_gap_recovery_timeout_releases_held_events_and_late_results_are_deduplicated():
    h = GapHarness()
    h.reconnect(10.0)
    h.a.receive_text(event_frame("03"), 11.0)
    assert h.a.next_deadline() == pytest.approx(15.1)
    h.a.handle_timer(15.1)
    events = h.a.events_received()
    assert names(events) == ["error", "subscribed", "tickets.ticket.created"]
    assert "timed out" in events[0].data.message
    h.a.finish_gap_recovery(1, [rest("02"), rest("03")], 16.0)
    assert h.delivered() == ["02"]


def test_gap_recovery_error_is_reported_and_releases_held_events():
    h = GapHarness()
    h.reconnect(10.0)
    h.a.receive_text(event_frame("03"), 11.0)
    h.a.finish_gap_recovery(1, None, 12.0, ErrorInfo("server", "gap recovery: HTTP 500"))
    events = h.a.events_received()
    assert names(events) == ["error", "subscribed", "tickets.ticket.created"]


def test_gap_recovery_superseded_by_a_newer_reconnect():
    h = GapHarness()
    h.reconnect(10.0)
    h.a.receive_text(event_frame("03"), 11.0)
    h.reconnect(12.0)  # the connection dropped again before the fetch finished
    assert h.requests == [(1, "01"), (2, "01")]
    h.a.finish_gap_recovery(1, [rest("02")], 13.0)  # stale: dropped
    assert h.delivered() == [] and h.a.recovering
    h.a.finish_gap_recovery(2, [rest("02"), rest("03")], 14.0)
    assert h.delivered() == ["02", "03"]


def test_no_gap_recovery_without_a_known_event_or_event_subscriptions():
    requests: list = []
    a = JifelinePartnerAdapter(gap_recovery=True, request_gap=lambda g, x: requests.append(x))
    a.subscribe("event", "x.y", 0.0)
    a.connection_made(0.0)
    a.connection_lost(1.0)
    a.connection_made(2.0)
    assert requests == []  # no event seen yet: nothing to resume from
    h = GapHarness()
    h.a.unsubscribe("event", "tickets.ticket.created", 5.0)
    h.reconnect(10.0)
    assert h.requests == [] and not h.a.recovering


def test_gap_hook_failure_does_not_break_the_connection():
    def boom(g: int, after: str) -> None:
        raise RuntimeError("no thread")

    h = GapHarness()
    h.a.request_gap = boom
    h.reconnect(10.0)
    assert not h.a.recovering
    assert [e.data.kind for e in h.a.events_received()] == ["server"]


def test_held_events_are_bounded():
    h = GapHarness(max_held=2)
    h.reconnect(10.0)
    for eid in ["10", "11", "12"]:
        h.a.receive_text(event_frame(eid), 11.0)
    assert h.delivered() == ["10", "11", "12"] and not h.a.recovering


def test_resume_point_fetches_on_the_first_connection_in_order_and_deduplicated():
    requests: list[tuple[int, str]] = []
    a = JifelinePartnerAdapter(gap_recovery=True, request_gap=lambda g, x: requests.append((g, x)), after_id="01")
    assert a.last_event_id == "01"
    a.subscribe("event", "tickets.ticket.created", 0.0)
    a.connection_made(0.0)
    assert requests == [(1, "01")] and a.recovering
    a.receive_text(event_frame("04"), 1.0)  # live, also in the REST answer
    assert [e for e in a.events_received() if e.name != "subscribed"] == []
    a.finish_gap_recovery(1, [rest("02"), rest("03", "tickets.ticket.closed"), rest("04")], 2.0)
    got = [e.data.event_id for e in a.events_received() if isinstance(e.data, SystemEvent)]
    assert got == ["02", "04"] and a.last_event_id == "04"
    a.connection_lost(3.0)
    a.connection_made(4.0)  # an ordinary reconnect resumes from the newest event
    assert requests[-1] == (2, "04")


def test_resume_point_without_event_subscription_at_connect_starts_at_the_first_one():
    requests: list[tuple[int, str]] = []
    a = JifelinePartnerAdapter(gap_recovery=True, request_gap=lambda g, x: requests.append((g, x)), after_id="01")
    a.subscribe("connector", CONNECTOR_UUID, 0.0)
    a.connection_made(0.0)
    assert requests == []
    a.subscribe("event", "tickets.ticket.closed", 1.0)
    assert requests == [(1, "01")] and a.recovering
    a.finish_gap_recovery(1, [], 2.0)
    a.subscribe("event", "tickets.ticket.created", 3.0)
    assert requests == [(1, "01")]  # once only
    # Without gap recovery a resume point starts nothing.
    b = JifelinePartnerAdapter(request_gap=lambda g, x: requests.append((g, x)), after_id="01")
    b.subscribe("event", "tickets.ticket.created", 0.0)
    b.connection_made(0.0)
    assert requests == [(1, "01")] and not b.recovering


def test_resume_point_never_moves_backwards_and_passes_skipped_types():
    h = GapHarness()
    h.reconnect(10.0)
    h.a.receive_text(event_frame("05"), 11.0)
    h.a.handle_timer(20.0)  # hold timeout: "05" released
    assert h.delivered() == ["05"] and h.a.last_event_id == "05"
    h.a.finish_gap_recovery(1, [rest("02"), rest("03")], 21.0)  # late
    assert h.delivered() == ["02", "03"] and h.a.last_event_id == "05"
    h.reconnect(30.0)
    assert h.requests[-1] == (2, "05")
    h.a.finish_gap_recovery(2, [rest("06", "tickets.ticket.closed"), rest("07", "tickets.ticket.closed")], 31.0)
    assert h.delivered() == [] and h.a.last_event_id == "07"  # not wanted, but no need to fetch them again


def test_recovered_items_with_an_unhashable_type_are_bad_frames_not_crashes():
    h = GapHarness()
    h.reconnect(10.0)
    h.a.finish_gap_recovery(1, [{"id": "02", "type": []}, rest("03")], 11.0)
    events = h.a.events_received()
    assert [e.data.kind for e in events if e.name == "error"] == ["bad_frame"]
    assert [e.data.event_id for e in events if isinstance(e.data, SystemEvent)] == ["03"]


def test_rest_helpers():
    assert rest_item_to_frame({"event_id": "1", "event_type": "a.b", "message": {"x": 1}}) == {
        "action": "event-received",
        "event_id": "1",
        "event_type": "a.b",
        "message": {"x": 1},
    }
    assert rest_item_to_frame("x") is None
    assert events_from_rest_body([1]) == [1]
    assert events_from_rest_body({"result": [2], "total": 1}) == [2]
    assert events_from_rest_body({"data": [3]}) == [3]
    assert events_from_rest_body({"nothing": 1}) is None


# -- helpers --------------------------------------------------------------------------------


def test_validate_key():
    assert validate_key(CUSTOMER_KINDS, "ticket", 5) == 5
    assert validate_key(CUSTOMER_KINDS, "ticket", " 5 ") == 5
    assert validate_key(CUSTOMER_KINDS, "connection", UUID) == UUID
    assert validate_key(PARTNER_KINDS, "event", "tickets.ticket.created") == "tickets.ticket.created"
    for kinds, kind, bad in [
        (CUSTOMER_KINDS, "ticket", True),
        (CUSTOMER_KINDS, "ticket", "abc"),
        (CUSTOMER_KINDS, "ticket", 1.5),
        (CUSTOMER_KINDS, "connection", ""),
        (CUSTOMER_KINDS, "connection", 5),
        (PARTNER_KINDS, "event", "error"),
        (PARTNER_KINDS, "nope", "x"),
    ]:
        with pytest.raises(ConfigurationError):
            validate_key(kinds, kind, bad)


def test_normalize_action():
    assert normalize_action("subscribeToConnector") == "subscribe-to-connector"
    assert normalize_action("subscribe-to-connector") == "subscribe-to-connector"
    assert normalize_action("event_received") == "event-received"


# -- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
actions = st.sampled_from(
    [
        "subscribeToTicket",
        "subscribeToConnection",
        "subscribeToConnector",
        "unsubscribeToTicket",
        "subscribe-to-connector",
        "event-received",
        "eventReceived",
        "subscribe-to-event",
        "error",
        "x",
    ]
)
field_names = st.sampled_from(
    [
        "ticket_id",
        "id",
        "state",
        "schedule",
        "connection_uuid",
        "connector_id",
        "voltage",
        "event_id",
        "event_type",
        "customer",
        "ticket",
        "parent_ticket",
        "is_online",
        "message",
    ]
)
messages = st.dictionaries(field_names, json_values, max_size=6)
shaped = st.fixed_dictionaries(
    {"action": actions, "message": messages | json_values},
    optional={"event_id": json_values | st.text(max_size=5), "event_type": st.text(max_size=12) | json_values},
).map(json.dumps)
any_text = st.text(max_size=200) | json_values.map(json.dumps) | shaped


def check_outputs(adapter) -> None:
    for event in adapter.events_received():
        assert isinstance(event, Event) and isinstance(event.name, str) and event.name
        if event.name == "error":
            assert isinstance(event.data, ErrorInfo)


@settings(max_examples=120, deadline=None)
@given(st.lists(any_text, max_size=8))
def test_customer_decoder_never_raises(texts):
    a = JifelineCustomerAdapter()
    a.subscribe("ticket", 1, 0.0)
    a.subscribe("connector", 2, 0.0)
    a.connection_made(0.0)
    for i, text in enumerate(texts):
        a.receive_text(text, float(i))
        check_outputs(a)


@settings(max_examples=120, deadline=None)
@given(st.lists(any_text, max_size=8), st.lists(json_values, max_size=4))
def test_partner_decoder_and_gap_recovery_never_raise(texts, rest_items):
    a = JifelinePartnerAdapter(gap_recovery=True, request_gap=lambda g, x: None)
    a.subscribe("event", "x", 0.0)
    a.subscribe("connector", CONNECTOR_UUID, 0.0)
    a.connection_made(0.0)
    a.receive_text(json.dumps({"action": "event-received", "event_id": "0", "event_type": "x"}), 0.0)
    a.connection_lost(0.5)
    a.connection_made(1.0)
    for i, text in enumerate(texts):
        a.receive_text(text, float(i) + 1)
        check_outputs(a)
    a.finish_gap_recovery(1, rest_items, 20.0)
    check_outputs(a)
    assert not a.recovering
