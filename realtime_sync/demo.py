"""``realtime-sync demo``: the built-in fake servers, a real client, and a short scripted scenario.

Each vendor's scenario starts its fake server on 127.0.0.1 (no network), connects the real
client to it, and then plays, step by step: subscriptions, live events, a dropped connection and
the recovery, and a bad frame.  Every step waits (with a deadline) for the client to see its
consequence before the next one starts, so the demo is quick, its output is in a stable order,
and a broken client makes it fail (exit status 1) instead of printing nonsense.

The output has one line per thing that happened, in aligned columns::

       +0.02s  voxsig    * connected                   ws://127.0.0.1:40421/cable (actioncable-v1-json)
       +0.32s  voxsig      message.created             conversation 42   Bo Contact: Hi, my order is late
       +0.47s  voxsig    > server                      drops the connection (no close frame)
       +0.77s  voxsig    ! error                       bad_frame: frame is not valid JSON: ...

``*`` marks lifecycle events, ``>`` what the fake server does, ``!`` error events (reported to
the ``error`` hook; the client carries on).  :func:`describe` and :class:`Console` are also what
``realtime-sync listen`` prints with.

    >>> from realtime_sync.demo import run_demo
    >>> run_demo(["voxsig"])                    # doctest: +SKIP
    0
"""

from __future__ import annotations

import contextlib
import datetime
import json
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterator, Sequence, TextIO

import attrs

from ._redact import redact
from .client import Client
from .config import ReconnectPolicy, timing_scale
from .events import (
    LIFECYCLE_EVENTS,
    ConnectionInfo,
    DisconnectInfo,
    ErrorInfo,
    Event,
    ReconnectInfo,
    Subscription,
    SubscriptionInfo,
)

__all__ = ["DEMO_VENDORS", "Console", "DemoFailed", "describe", "run_demo", "to_jsonable"]

#: The scenarios ``realtime-sync demo`` knows, in the order ``all`` plays them.
DEMO_VENDORS = ("jifeline", "voxsig", "genesys")

#: Reconnect at once, then every 0.3 s: the demo shows a recovery, not a wait.
DEMO_RECONNECT = ReconnectPolicy(instant_retries=1, interval=0.3, max_interval=0.3, jitter=0.0, stable_after=2.0)

#: Event names shown with the lifecycle mark (the Bayeux ``handshake`` is one in all but name).
_LIFECYCLE = frozenset(LIFECYCLE_EVENTS) | {"handshake"}


class DemoFailed(Exception):
    """A scenario step did not see what it expected within its deadline."""


# -- formatting ------------------------------------------------------------------------------


def _short(value: Any, width: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(to_jsonable(value), separators=(",", ":"), default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: attrs models become dicts (field names as in Python),
    tuples and sets lists, datetimes ISO strings, exceptions and anything else their ``str``.

    >>> from realtime_sync import Event
    >>> to_jsonable(Event("ticket.updated", {"state": 2}, entity_id=7))["entity_id"]
    7
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Event):
        return {
            "name": value.name,
            "entity_id": to_jsonable(value.entity_id),
            "received_at": value.received_at,
            "data": to_jsonable(value.data),
            "changes": sorted(value.changes) if value.changes is not None else None,
            "subscription": to_jsonable(value.subscription),
        }
    if isinstance(value, Subscription):
        return {"kind": value.kind, "key": redact(value.key) if isinstance(value.key, str) else to_jsonable(value.key)}
    if isinstance(value, ErrorInfo):
        return {"kind": value.kind, "message": redact(value.message), "frame": value.frame}
    if attrs.has(type(value)):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_jsonable(v) for v in value), key=str)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if hasattr(value, "value") and isinstance(getattr(value, "value", None), (str, int)):
        return value.value  # enums
    return str(value)


def _subscription_text(sub: Subscription) -> str:
    if sub.kind == "channel" and isinstance(sub.key, str) and sub.key.startswith("{"):
        # An ActionCable identifier: show the channel and its public parameters, never the token.
        try:
            params = json.loads(sub.key)
        except ValueError:
            return redact(sub.key)
        if isinstance(params, dict):
            rest = ", ".join(f"{k} {v}" for k, v in params.items() if k not in ("channel", "pubsub_token"))
            return f"{params.get('channel', '?')} ({rest})" if rest else str(params.get("channel", "?"))
    if sub.kind == "channel":
        return f"topic {sub.key}"
    return f"{sub.kind} {_short_id(sub.key)}"


def _get(obj: Any, *names: str) -> Any:
    """The first present attribute (or key, for undecoded dicts) among ``names``."""
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _who(person: Any) -> str:
    return str(_get(person, "name", "available_name", "nickname") or "someone")


def describe(event: Event) -> str:
    """One readable line about ``event`` (without its name): what a human wants to see first.

    >>> from realtime_sync import Event
    >>> describe(Event("ticket.updated", {"state": 2}, entity_id=7, changes=frozenset({"state"})))
    'ticket 7   state=2   changed: state'
    """
    name, d = event.name, event.data
    if isinstance(d, ConnectionInfo):
        proto = f" ({d.subprotocol})" if d.subprotocol else ""
        return redact(f"{d.url}{proto}" + (f"  (connection attempt {d.attempt})" if d.attempt > 1 else ""))
    if isinstance(d, DisconnectInfo):
        return redact(d.reason) + ("" if d.will_reconnect else "  (for good)")
    if isinstance(d, ReconnectInfo):
        return f"in {d.delay:.2f}s ({d.attempt} failure{'' if d.attempt == 1 else 's'} in a row)"
    if isinstance(d, SubscriptionInfo):
        text = _subscription_text(d.subscription)
        return f"{text}: {redact(d.reason)}" if d.reason else text
    if isinstance(d, ErrorInfo):
        return redact(f"{d.kind}: {d.message}")
    if name == "handshake":
        return f"CometD session #{_get(d, 'number')} over {_get(d, 'transport')}" + (
            " (the previous one was lost: subscribing again)" if (_get(d, "number") or 0) > 1 else ""
        )
    entity = event.entity_id
    body = _describe_data(name, d)
    changes = ""
    if event.changes and _is_first_snapshot(event):
        changes = "   (first snapshot)"
    elif event.changes:
        changes = "   changed: " + ", ".join(sorted(event.changes)[:6]) + ("..." if len(event.changes) > 6 else "")
    return redact(f"{_entity_label(name, entity)}   {body}{changes}".strip())


def _is_first_snapshot(event: Event) -> bool:
    # The first snapshot of an entity has every field it carries "changed".
    raw = event.raw
    message = raw.get("message") if isinstance(raw, dict) else None
    return isinstance(message, dict) and event.changes is not None and set(event.changes) >= set(message)


def _short_id(value: Any) -> str:
    text = str(value)
    if len(text) > 13 and text.count("-") == 4:
        return text[:8]  # a UUID: the first group is enough to tell them apart at a glance
    return text


def _entity_label(name: str, entity: Any) -> str:
    if entity is None:
        return ""
    head = name.split(".", 1)[0]
    if name.startswith(("message.", "conversation.", "assignee.", "team.")):
        head = "conversation"
    elif name.startswith("presence."):
        head = "account"
    elif name.startswith("tickets."):
        head = "ticket"
    return f"{head} {_short_id(entity)}"


def _describe_data(name: str, d: Any) -> str:
    if d is None:
        return ""
    if name == "ticket.updated":
        return f"state={_get(d, 'state')}" + (f" chat_state={_get(d, 'chat_state')}" if _get(d, "chat_state") else "")
    if name == "connection.updated":
        return f"script_ui_available={_get(d, 'script_ui_available')} autonomous={_get(d, 'is_autonomous')}"
    if name == "connector.updated":
        return f"online={_get(d, 'is_online')} software={_get(d, 'software_version')}"
    if name == "connector.status":
        return f"voltage={_get(d, 'voltage')}V rtt={_get(d, 'round_trip_time')}ms vin={_get(d, 'vin_number')}"
    if _get(d, "event_type") is not None and _get(d, "event_id") is not None:  # Jifeline system event
        payload = _get(d, "payload")
        ticket = _get(payload, "ticket") if payload is not None else None
        customer = _get(payload, "customer") if payload is not None else None
        parts = [f"event {str(_get(d, 'event_id'))[:12]}..."]
        if ticket is not None:
            parts.append(f"ticket number {_get(ticket, 'ticket_number', 'number')}")
        if customer is not None:
            parts.append(f"customer {_get(customer, 'name')!s}")
        return "  ".join(parts)
    if name.startswith("message."):
        return f"{_who(_get(d, 'sender'))}: {_get(d, 'content')}"
    if name.startswith("conversation.typing"):
        return f"{_who(_get(d, 'user'))} {'is typing' if name.endswith('_on') else 'stopped typing'}"
    if name.startswith(("conversation.", "assignee.", "team.")):
        meta = _get(d, "meta")
        assignee = _get(meta, "assignee") if meta is not None else None
        return f"status={_get(d, 'status')} assignee={_who(assignee) if assignee else 'nobody'}"
    if name.startswith("notification."):
        n = _get(d, "notification")
        title = _get(n, "push_message_title") if n is not None else None
        return f"{title or ''} ({_get(d, 'unread_count')} unread)"
    if name == "presence.update":
        users = _get(d, "users") or {}
        online = ", ".join(f"{uid} {status}" for uid, status in sorted(dict(users).items()))
        return f"users: {online or 'nobody online'}"
    if name.startswith("contact."):
        return f"{_who(d)} {_get(d, 'email') or ''}".strip()
    if name == "chat.new_messages":
        messages = _get(d, "messages") or ()
        return "  ".join(f"[{_get(m, 'index')}] {_who(_get(m, 'from_', 'from'))}: {_get(m, 'text')}" for m in messages)
    if name.startswith("chat."):
        chat = _get(d, "chat")
        people = ", ".join(_who(p) for p in (_get(chat, "participants") or ())) if chat is not None else ""
        return f"state={_get(chat, 'state') if chat is not None else '?'}  participants: {people or '-'}"
    return _short(d)


@attrs.define
class Console:
    """Prints events, lifecycle lines and scenario steps in aligned columns (thread-safe).

    ``label`` is the vendor column; times are relative to ``start`` (``reset()`` restarts them).

    >>> import io
    >>> out = io.StringIO()
    >>> Console(out, "voxsig", clock=lambda: 0.0).step("drops the connection")
    >>> out.getvalue()
    '   +0.00s  voxsig    > server                      drops the connection\\n'
    """

    stream: TextIO = attrs.field(factory=lambda: sys.stdout)
    label: str = ""
    clock: Callable[[], float] = time.monotonic
    #: Seconds to pause before each scenario step, so that a reader sees it happen live.
    pace: float = 0.0
    #: ``"relative"`` (seconds since ``start``, for the demo) or ``"wall"`` (local HH:MM:SS.mmm).
    timestamps: str = "relative"
    start: float = attrs.field(init=False, default=0.0)
    printed: int = attrs.field(init=False, default=0)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        self.start = self.clock()

    def reset(self, label: str | None = None) -> None:
        with self._lock:
            self.start = self.clock()
            if label is not None:
                self.label = label

    def line(self, mark: str, name: str, text: str = "") -> None:
        if self.timestamps == "wall":
            now = time.time()
            stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        else:
            stamp = f"{self.clock() - self.start:+8.2f}s"
        row = f"{stamp}  {self.label:<9} {mark} {name:<27} {text}".rstrip()
        with self._lock:
            self.stream.write(redact(row) + "\n")
            self.stream.flush()
            self.printed += 1

    def event(self, event: Event) -> None:
        """Print an event: ``*`` for lifecycle, ``!`` for errors, blank for data events."""
        mark = "!" if event.name in ("error", "subscription_rejected") else "*" if event.name in _LIFECYCLE else " "
        self.line(mark, event.name, describe(event))
        info = event.data
        if isinstance(info, ErrorInfo) and info.kind == "handler" and info.exception is not None:
            # A handler's bug: the listener commands show where it is, not just its message.
            self.plain("".join(traceback.format_exception(info.exception)).rstrip())

    def step(self, text: str) -> None:
        """Print what the (fake) server is about to do (after a pause of ``pace`` seconds)."""
        if self.pace > 0:
            time.sleep(self.pace)  # for the human reader only; steps synchronise on events
        self.line(">", "server", text)

    def note(self, text: str) -> None:
        """Print a remark that is not an event (a summary, a hint)."""
        self.line("=", "", text)

    def plain(self, text: str = "") -> None:
        with self._lock:
            self.stream.write(redact(text) + "\n")
            self.stream.flush()


# -- scenario machinery ---------------------------------------------------------------------


class _Watch:
    """Records every event of a client so a step can wait for the consequence of its action."""

    def __init__(self, client: Client) -> None:
        self.events: list[Event] = []
        self._cond = threading.Condition()
        client.on("*", self._record)

    def _record(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def expect(
        self, name: str, where: Callable[[Event], bool] | None = None, *, since: int = 0, timeout: float = 5.0
    ) -> Event:
        def find() -> Event | None:
            for e in self.events[since:]:
                if e.name == name and (where is None or where(e)):
                    return e
            return None

        with self._cond:
            found: list[Event | None] = [None]

            def ready() -> bool:
                found[0] = find()
                return found[0] is not None

            if not self._cond.wait_for(ready, timeout * timing_scale()):
                seen = [e.name for e in self.events[since:]][-8:]
                raise DemoFailed(f"expected a {name!r} event within {timeout}s; saw {seen}")
        assert found[0] is not None
        return found[0]


@contextlib.contextmanager
def _running(server: Any, client: Client) -> Iterator[None]:
    try:
        yield
    finally:
        client.close(timeout=5)
        server.stop()


def _summary(console: Console, client: Client, extra: str = "") -> None:
    s = client.stats
    console.note(
        f"{s.frames_received} frames received, {s.events_dispatched} events dispatched, "
        f"{s.reconnects} reconnect(s), {s.handler_errors} handler errors{extra}"
    )


# -- the scenarios --------------------------------------------------------------------------

_DEMO_TICKET = 32423
_DEMO_CONNECTION = "97a0e81d-d0ac-42ae-9195-a11732ad322a"
_DEMO_CONNECTOR = "9389ba6f-3696-4571-84d4-34d588c4b109"


def _jifeline(console: Console) -> None:
    from .jifeline import JifelineCustomerClient, JifelinePartnerClient
    from .testing.jifeline import FakeJifelineCustomerServer, FakeJifelinePartnerServer

    interval = 0.25
    console.plain(f"== jifeline: customer websocket (ticket/connection snapshots every {interval}s), then partner ==")
    server = FakeJifelineCustomerServer(interval=interval)
    server.start()
    client = JifelineCustomerClient(server.url, reconnect=DEMO_RECONNECT, name="demo-jifeline")
    snapshots = [0]

    def count(_event: Event) -> None:
        snapshots[0] += 1

    watch = _Watch(client)
    for name in LIFECYCLE_EVENTS:
        client.on(name, console.event)
    # Snapshots repeat every interval whether or not anything changed: print only the changes.
    client.on("ticket.updated", console.event, changes_only=True)
    client.on("connection.updated", console.event, changes_only=True)
    client.on("ticket.updated", count)
    with _running(server, client):
        console.step(f"listening on {server.url}; the client subscribes to ticket {_DEMO_TICKET} and a connection")
        client.subscribe_ticket(_DEMO_TICKET)
        client.subscribe_connection(_DEMO_CONNECTION)
        client.start()
        watch.expect("ticket.updated")
        watch.expect("connection.updated")

        mark = watch.mark()
        console.step(f"ticket {_DEMO_TICKET}: state 1 -> 2 (the next snapshot differs)")
        server.update_ticket(_DEMO_TICKET, state=2)
        watch.expect("ticket.updated", lambda e: bool(e.changes) and "state" in (e.changes or ()), since=mark)

        mark = watch.mark()
        console.step("drops the connection (no close frame)")
        server.drop_all()
        watch.expect("disconnected", since=mark)
        watch.expect("connected", since=mark)
        watch.expect("subscribed", since=mark)
        mark = watch.mark()
        console.step(f"ticket {_DEMO_TICKET}: state 2 -> 3, chat opened (subscriptions were restored)")
        server.update_ticket(_DEMO_TICKET, state=3, chat_state=1)
        watch.expect("ticket.updated", lambda e: bool(e.changes), since=mark)

        mark = watch.mark()
        console.step("sends a frame that is not JSON, then a gateway error frame")
        server.send_malformed()
        server.send_gateway_error()
        watch.expect("error", lambda e: e.data.kind == "bad_frame", since=mark)
        watch.expect("error", lambda e: e.data.kind == "server", since=mark)
        mark = watch.mark()
        watch.expect("ticket.updated", since=mark)  # and the snapshots keep coming
    _summary(console, client, f"; {snapshots[0]} ticket snapshots, printed only when they changed")

    # The partner websocket: a bearer token (a callable: called again on every connect),
    # connector statuses and system events.
    console.plain("-- jifeline: partner websocket (bearer token, connector statuses, system events) --")
    console.reset()
    partner_server = FakeJifelinePartnerServer(token="demo-partner-token", interval=interval)
    partner_server.start()
    calls = [0]

    def token() -> str:
        calls[0] += 1
        return "demo-partner-token"

    partner = JifelinePartnerClient(partner_server.url, token=token, reconnect=DEMO_RECONNECT, name="demo-partner")
    pwatch = _Watch(partner)
    for name in LIFECYCLE_EVENTS:
        partner.on(name, console.event)
    partner.on("connector.status", console.event, changes_only=True)
    partner.on("tickets.*", console.event)
    with _running(partner_server, partner):
        console.step(f"partner websocket on {partner_server.url} (wants a bearer token)")
        partner.subscribe_connector(_DEMO_CONNECTOR)
        partner.subscribe_event("tickets.ticket.created")
        partner.start()
        pwatch.expect("connector.status")
        # No confirmation exists for event subscriptions: ask the server whether it has it.
        partner_server.wait_until(lambda: ("event", "tickets.ticket.created") in partner_server.subscriptions())
        mark = pwatch.mark()
        console.step("a ticket is created (system event tickets.ticket.created)")
        partner_server.emit_event("tickets.ticket.created")
        pwatch.expect("tickets.ticket.created", since=mark)
        mark = pwatch.mark()
        console.step("connector voltage drops to 11.8 V")
        partner_server.update_connector(_DEMO_CONNECTOR, voltage=11.8)
        pwatch.expect("connector.status", lambda e: bool(e.changes), since=mark)
    _summary(console, partner, f"; the token callable was called {calls[0]} time(s)")


def _voxsig(console: Console) -> None:
    from .testing.actioncable import (
        FakeVoxsigServer,
        conversation_payload,
        message_payload,
        notification_payload,
        typing_payload,
    )
    from .voxsig import VoxsigClient

    console.plain("== voxsig: Chatwoot-style ActionCable, an agent's RoomChannel with presence ==")
    server = FakeVoxsigServer(ping_interval=1.0).start()
    client = VoxsigClient(
        server.url, "user-token-1", account_id=1, user_id=7, presence_interval=1.0,
        reconnect=DEMO_RECONNECT, name="demo-voxsig",
    )  # fmt: skip
    watch = _Watch(client)
    client.on("*", console.event)
    with _running(server, client):
        console.step(f"listening on {server.url}; the client subscribes with its pubsub token")
        client.start()
        watch.expect("subscribed")
        watch.expect("presence.update")

        mark = watch.mark()
        console.step("a contact opens a conversation, types, and writes")
        server.send_event("account_1", "conversation.created", conversation_payload(42))
        server.send_event("account_1", "conversation.typing_on", typing_payload(42))
        server.send_event("account_1", "message.created", message_payload(1, 42, "Hi, my order is late"))
        server.send_event("user-token-1", "notification.created", notification_payload(500, 42))
        watch.expect("notification.created", since=mark)

        mark = watch.mark()
        console.step("drops the connection (no close frame)")
        server.drop_all()
        watch.expect("disconnected", since=mark)
        watch.expect("subscribed", since=mark)  # resubscribed after the new welcome
        watch.expect("presence.update", since=mark)  # the server records presence at the new confirmation

        mark = watch.mark()
        console.step("the agent answers; the conversation is resolved")
        server.send_event(
            "account_1", "message.created", message_payload(2, 42, "Sorry! It ships today.", incoming=False)
        )
        server.send_event("account_1", "conversation.status_changed", conversation_payload(42, "resolved"))
        watch.expect("conversation.status_changed", since=mark)

        # The confirmation recorded presence; the client keeps the agent online from then on.
        mark = watch.mark()
        console.step("waits for the client's update_presence (sent every presence_interval = 1 s)")
        server.wait_for_presence("user-token-1", count=1, timeout=10.0)
        watch.expect("presence.update", since=mark)

        mark = watch.mark()
        console.step("sends a frame that is not JSON")
        server.push("{not json")
        watch.expect("error", lambda e: e.data.kind == "bad_frame", since=mark)
        presence = server.presence_count("user-token-1")
    _summary(console, client, f"; the server saw {presence} update_presence call(s)")


def _genesys(console: Console) -> None:
    from .genesys import GenesysChatClient
    from .testing.bayeux import FakeGenesysServer

    console.plain("== genesys: CometD/Bayeux chat notifications on /v2/me/chats ==")
    server = FakeGenesysServer(timeout=1.0, basic_auth=("agent1", "demo-Passw0rd")).start()
    client = GenesysChatClient(
        server.http_url,
        username="agent1",
        password="demo-Passw0rd",
        reconnect=DEMO_RECONNECT,
        name="demo-genesys",
    )
    watch = _Watch(client)
    client.on("*", console.event)
    chat = "0000Wa9CAM6W00J"
    with _running(server, client):
        console.step(f"GWS notifications at {server.http_url} (HTTP Basic); the client subscribes to /v2/me/chats")
        client.start()
        watch.expect("subscribed")

        mark = watch.mark()
        console.step(f"chat {chat}: a customer joins and writes")
        server.chat_state_change(chat, "StatusChange", state="Chatting")
        server.new_messages(chat, ["Hello, can you help me?"], sender="Customer1")
        watch.expect("chat.new_messages", since=mark)

        mark = watch.mark()
        console.step("drops the connection (no close frame)")
        server.drop_all()
        watch.expect("disconnected", since=mark)
        watch.expect("connected", since=mark)
        server.wait_until(lambda: any(s.ws is not None and s.ws.id >= 2 for s in server.sessions.values()))
        resumed = not any(e.name == "handshake" for e in watch.events[mark:])
        mark = watch.mark()
        console.step("the agent answers" + (" (the CometD session survived the drop)" if resumed else ""))
        server.new_messages(chat, ["Of course, what is the order number?"], start_index=2)
        watch.expect("chat.new_messages", since=mark)

        mark = watch.mark()
        console.step("forgets every CometD session (a server restart): 402::Unknown client")
        server.expire_sessions()
        watch.expect("handshake", lambda e: getattr(e.data, "number", 0) >= 2, since=mark)
        watch.expect("subscribed", since=mark)

        mark = watch.mark()
        console.step("sends a frame that is not JSON")
        server.push("{not json")
        watch.expect("error", lambda e: e.data.kind == "bad_frame", since=mark)
        mark = watch.mark()
        console.step(f"chat {chat} ends")
        server.chat_state_change(chat, "StatusChange", state="Disconnected")
        watch.expect("chat.status_change", since=mark)
    _summary(console, client)


_SCENARIOS: dict[str, Callable[[Console], None]] = {"jifeline": _jifeline, "voxsig": _voxsig, "genesys": _genesys}


def run_demo(vendors: Sequence[str] = DEMO_VENDORS, stream: TextIO | None = None, pace: float = 0.15) -> int:
    """Play the scenarios of ``vendors`` (see :data:`DEMO_VENDORS`); returns an exit status.

    ``pace`` is a pause before each step, for a human watching; 0 plays as fast as it can.
    """
    out = stream if stream is not None else sys.stdout
    try:
        import websockets  # noqa: F401
    except ImportError:
        out.write("the demo needs python-websockets for its fake servers: pip install 'realtime_sync[demo]'\n")
        return 2
    console = Console(out, pace=pace)
    began = time.monotonic()
    console.plain("realtime-sync demo: fake servers on 127.0.0.1 and a real client; no network needed.")
    console.plain("  legend:  * lifecycle event   > what the fake server does   ! error event (the client carries on)")
    for vendor in vendors:
        console.plain()
        console.reset(vendor)
        try:
            _SCENARIOS[vendor](console)
        except DemoFailed as exc:
            console.line("!", "demo failed", str(exc))
            return 1
    console.plain()
    console.plain(
        f"demo finished in {time.monotonic() - began:.1f}s. Next: realtime-sync listen --help, "
        "realtime-sync fake-server --help, and samples/."
    )
    return 0
