"""Typed models of the Jifeline customer and partner websocket payloads.

Customer websocket (cluster 001, seed 000), pushed every ~5 s as snapshots:

* :class:`Ticket` (with its :class:`Schedule`) on ``ticket.updated``;
* :class:`Connection` on ``connection.updated``;
* :class:`Connector` on ``connector.updated`` (the push shape is undocumented: the fields are those
  of the customer REST model; whatever else the server sends stays in ``event.raw``).

Partner websocket (seed 001):

* :class:`ConnectorStatus` on ``connector.status``;
* :class:`SystemEvent` (``event_id``, ``event_type`` and a :class:`SystemEventPayload` with
  :class:`Customer`, ``ticket`` and ``parent_ticket`` :class:`TicketRef`) on its own
  ``event_type`` (``tickets.ticket.created``...).  Every part of the payload may be missing.

Every field has a default, so a field the server stops sending decodes as ``None``; unknown fields
are ignored.  Values are read under the one decoding policy of :mod:`realtime_sync.models._converter`
(``"1"`` reads as 1 for an integer field, ``"true"`` as True for a boolean; ``"open"`` for an
integer is a mismatch): a payload that does not fit is still delivered, with ``event.decode_error``
set and an ``error`` event of kind ``"decode"``, never turned into a silently wrong value.

    >>> from realtime_sync.models.jifeline import structure_ticket
    >>> t = structure_ticket({"ticket_id": 32423, "state": 1, "schedule": None})
    >>> t.ticket_id, t.state, t.schedule
    (32423, 1, None)
"""

from __future__ import annotations

from typing import Any

import attrs

from ._converter import decode, make_converter, register, structure

__all__ = [
    "Connection",
    "Connector",
    "ConnectorStatus",
    "Customer",
    "Schedule",
    "SystemEvent",
    "SystemEventPayload",
    "Ticket",
    "TicketRef",
    "decode_payload",
    "structure_connection",
    "structure_connector",
    "structure_connector_status",
    "structure_payload",
    "structure_ticket",
]


# -- customer websocket ---------------------------------------------------------------------


@attrs.frozen
class Schedule:
    """When a ticket is parked: the message shown and until when (a string, as sent).

    >>> Schedule(message="I'll be right back", until="2024-05-01T10:00:00Z").message
    "I'll be right back"
    """

    message: str | None = None
    until: str | None = None


@attrs.frozen
class Ticket:
    """A ticket snapshot pushed after ``subscribeToTicket`` (every field of seed 000, snake case).

    >>> Ticket(ticket_id=32423, state=1).ticket_id
    32423
    """

    id: int | None = None
    ticket_id: int | None = None
    ticket_uuid: str | None = None
    state: int | None = None
    connection_id: int | None = None
    connection_uuid: str | None = None
    cancelled_reason: int | None = None
    chat_state: int | None = None
    vehicle_model_id: int | None = None
    vehicle_model_variant_id: int | None = None
    is_script_composition_running: bool | None = None
    vin: str | None = None
    schedule: Schedule | None = None


@attrs.frozen
class Connection:
    """A connection snapshot pushed after ``subscribeToConnection``.

    >>> Connection(connection_uuid="97a0e81d-d0ac-42ae-9195-a11732ad322a", is_autonomous=True).is_autonomous
    True
    """

    connection_uuid: str | None = None
    script_ui_wss_url: str | None = None
    script_ui_available: int | None = None
    is_autonomous: bool | None = None


@attrs.frozen
class Connector:
    """A connector snapshot pushed after ``subscribeToConnector``.

    The push shape is not documented; these are the fields of the customer REST model of a
    connector (plus ``connector_id``, the name the subscribe message uses).  Versions and the
    hardware type are accepted as strings or numbers.  Anything else is in ``event.raw``.

    >>> Connector(id=940201043, is_online=True).is_online
    True
    """

    id: int | None = None
    connector_id: int | None = None
    uuid: str | None = None
    is_online: bool | None = None
    has_wifi: bool | None = None
    software_version: str | int | float | None = None
    hardware_version: str | int | float | None = None
    supports_doip: bool | None = None
    vin_number: str | None = None
    product_description: str | None = None
    hardware_type: str | int | None = None


# -- partner websocket ----------------------------------------------------------------------


@attrs.frozen
class ConnectorStatus:
    """A partner ``connector.status`` update (no online flag: updates stopping is the signal).

    >>> ConnectorStatus(connector_id="9389ba6f-3696-4571-84d4-34d588c4b109", voltage=11.2).voltage
    11.2
    """

    connector_id: str | None = None
    voltage: float | None = None
    vin_number: str | None = None
    round_trip_time: int | float | None = None


@attrs.frozen
class Customer:
    """The customer a system event is about (``id`` may be a number or a UUID string)."""

    id: int | str | None = None
    name: str | None = None


@attrs.frozen
class TicketRef:
    """A ticket as referenced by a system event."""

    id: int | str | None = None
    number: int | str | None = None
    ticket_number: int | str | None = None


@attrs.frozen
class SystemEventPayload:
    """The ``message`` of a system event; every part may be missing (``None``)."""

    customer: Customer | None = None
    ticket: TicketRef | None = None
    parent_ticket: TicketRef | None = None


@attrs.frozen
class SystemEvent:
    """A partner system event, dispatched under its own ``event_type``.

    ``payload`` is ``None`` when the server sent no ``message`` object, or one whose parts did not
    match the expected shape (then an ``error`` event says why; the event itself is still
    delivered, with the full frame in ``event.raw``).

    >>> ev = SystemEvent("01HZX3", "tickets.ticket.created", SystemEventPayload(ticket=TicketRef(id=5)))
    >>> ev.ticket_id
    5
    """

    event_id: str
    event_type: str
    payload: SystemEventPayload | None = None
    #: When the event happened, as the server wrote it (ISO 8601).  Set on events recovered
    #: through the REST API (``occurred_at`` of ``GET /v2/system/events``); the live websocket
    #: push carries none, so it is ``None`` there.
    occurred_at: str | None = None

    @property
    def ticket_id(self) -> int | str | None:
        """The id of the ticket the event is about, when the payload names one."""
        if self.payload is None or self.payload.ticket is None:
            return None
        return self.payload.ticket.id


# -- the private converter ------------------------------------------------------------------

_converter = make_converter()
# Nested models first: their hooks are looked up when the containing class is registered.
for _cls in (Schedule, Ticket, Connection, Connector, ConnectorStatus, Customer, TicketRef, SystemEventPayload):
    register(_converter, _cls)


def structure_ticket(data: Any) -> Ticket:
    """``data`` (the ``message`` object) as a :class:`Ticket`; ``ProtocolError`` if it does not fit."""
    return structure(_converter, data, Ticket)


def structure_connection(data: Any) -> Connection:
    return structure(_converter, data, Connection)


def structure_connector(data: Any) -> Connector:
    return structure(_converter, data, Connector)


def structure_connector_status(data: Any) -> ConnectorStatus:
    return structure(_converter, data, ConnectorStatus)


def structure_payload(data: Any) -> SystemEventPayload:
    return structure(_converter, data, SystemEventPayload)


def decode_payload(data: Any, cls: type[Any]) -> tuple[Any, str | None]:
    """``data`` as ``cls`` under the decoding policy: ``(model, None)`` or ``(best effort, mismatch)``.

    >>> decode_payload({"ticket_id": "32423", "state": "open"}, Ticket)[1]
    "Ticket.state: expected int or null, got str 'open'"
    """
    return decode(_converter, data, cls)
