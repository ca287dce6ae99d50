"""The Voxsig adapter's one-call path for a live broadcast (``live_broadcast``) emits exactly the
events the general path (``decode_broadcast`` -> ``_deliver`` -> ``_emit``) emits, or declines
and leaves the frame to it: checked on random RoomChannel broadcasts, every adapter option that
changes what is delivered (account filtering, all accounts), and the frames that must decline
(another account, a name not seen yet, a payload that does not fit, catch-up)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_sync._build import Deferred
from realtime_sync.events import ErrorInfo, Event, stored_raw
from realtime_sync.protocols.voxsig import EVENT_TYPES, VoxsigAdapter

TOKEN = "pubsub-token-live-1"


class _GeneralOnly(VoxsigAdapter):
    """The same adapter with the one-call path switched off."""

    def live_broadcast(self, subs: Any, message: Any, raw: Any, now: float) -> bool:
        return False


class _Counting(VoxsigAdapter):
    taken = 0

    def live_broadcast(self, subs: Any, message: Any, raw: Any, now: float) -> bool:
        taken = super().live_broadcast(subs, message, raw, now)
        self.taken += taken
        return taken


def _adapter(cls: type[VoxsigAdapter], user_id: int | None = 7, **options: Any) -> VoxsigAdapter:
    adapter = cls(TOKEN, 1, user_id, presence_interval=None, **options)
    adapter.connection_made(0.0)
    adapter.receive_text('{"type":"welcome"}', 0.0)
    adapter.receive_text(json.dumps({"type": "confirm_subscription", "identifier": adapter.identifier}), 0.0)
    adapter.data_to_send()
    adapter.events_received()
    return adapter


def _view(event: Event[Any]) -> tuple[Any, ...]:
    data = event.data
    if isinstance(data, ErrorInfo):  # two exceptions are never equal: compare what they say
        data = (data.kind, data.message, data.frame, type(data.exception), str(data.exception))
    return (
        event.name,
        data,
        event.entity_id,
        event.raw,
        event.subscription,
        event.account_id,
        event.decode_error,
        event.recovered,
        event.received_at,
        event.changes,
    )


def _frame(adapter: VoxsigAdapter, message: Any) -> str:
    return json.dumps({"identifier": adapter.identifier, "message": message})


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.text(max_size=6), st.just("1"))
_values = st.recursive(
    _scalars, lambda c: st.lists(c, max_size=2) | st.dictionaries(st.text(max_size=4), c, max_size=2), max_leaves=4
)
_names = st.sampled_from([*sorted(EVENT_TYPES), "message.created", "no.such.event", ""])
_fields = st.sampled_from(
    ["id", "content", "conversation_id", "inbox_id", "status", "sender", "meta", "user", "is_typing"]
)
_payloads = st.fixed_dictionaries(
    {},
    optional={
        "account_id": st.one_of(st.sampled_from([1, 2, "1", None, 1.0, True]), _values),
        "id": st.one_of(st.integers(0, 10**6), _values),
        "sender": st.one_of(
            st.fixed_dictionaries({"id": st.integers(0, 99), "type": st.sampled_from(["contact", "user"])}), _values
        ),
    },
).flatmap(lambda base: st.dictionaries(_fields, _values, max_size=3).map(lambda extra: {**extra, **base}))
_messages = st.one_of(
    st.fixed_dictionaries({"event": _names, "data": _payloads}),
    st.fixed_dictionaries({"event": _names}, optional={"data": _values}),
    _values,
)
# Account filtering is on with a user id, off for all_accounts or without a user id.
_options = st.sampled_from([{}, {"all_accounts": True}, {"user_id": None}])


@settings(max_examples=400, deadline=None)
@given(messages=st.lists(_messages, min_size=1, max_size=5), options=_options)
def test_the_live_path_emits_what_the_general_path_emits(messages: list[Any], options: dict[str, Any]) -> None:
    fast, general = _adapter(VoxsigAdapter, **options), _adapter(_GeneralOnly, **options)
    now = 5.0
    for message in messages:
        fast.receive_text(_frame(fast, message), now)
        general.receive_text(_frame(general, message), now)
        now += 0.25
    got, want = fast.events_received(), general.events_received()
    assert [_view(e) for e in got] == [_view(e) for e in want]
    assert fast.dropped_other_accounts == general.dropped_other_accounts


def test_the_usual_broadcast_takes_the_live_path_and_the_unusual_ones_do_not() -> None:
    adapter = _adapter(_Counting)
    message = {"event": "message.created", "data": {"id": 5, "account_id": 1, "conversation_id": 9, "content": "hi"}}
    adapter.receive_text(_frame(adapter, message), 1.0)  # the name's first sight in this process may be general
    adapter.taken = 0
    adapter.receive_text(_frame(adapter, message), 1.0)
    assert adapter.taken == 1
    for unusual in (
        {"event": "message.created", "data": {**message["data"], "account_id": 2}},  # another account: dropped
        {"event": "message.created", "data": {**message["data"], "id": "x"}},  # does not fit: decode error
        {"event": "message.created", "data": {**message["data"], "account_id": "1"}},  # a string id
        {"event": "no.such.event", "data": {"account_id": 1}},  # no model
    ):
        adapter.receive_text(_frame(adapter, unusual), 1.0)
    assert adapter.taken == 1
    events = adapter.events_received()
    assert [(e.name, e.decode_error is not None) for e in events] == [
        ("message.created", False),
        ("message.created", False),
        ("message.created", True),
        ("error", False),
        ("message.created", False),
        ("no.such.event", False),
    ]
    assert adapter.dropped_other_accounts == 1
    # The frame's identifier (it holds the pubsub token) never reaches event.raw.
    assert TOKEN not in repr([e.raw for e in events])
    assert events[1].raw["message"] == message


def test_catch_up_takes_the_general_path() -> None:
    # With a catch-up hook every message.created is deduplicated by id: the live path declines.
    adapter = _adapter(_Counting, catch_up_hook=lambda generation, point: None)
    message = {"event": "message.created", "data": {"id": 5, "account_id": 1, "conversation_id": 9}}
    for _ in range(3):
        adapter.receive_text(_frame(adapter, message), 1.0)
    assert adapter.taken == 0
    assert [e.name for e in adapter.events_received()] == ["message.created"]
    assert adapter.duplicates == 2


def test_a_subclass_that_decodes_broadcasts_itself_gets_every_one() -> None:
    seen: list[Any] = []

    class Mine(VoxsigAdapter):
        def decode_broadcast(self, sub: Any, message: Any, now: float, *, raw: Any, text: str) -> None:
            seen.append(message)
            super().decode_broadcast(sub, message, now, raw=raw, text=text)

    adapter = _adapter(Mine)
    message = {"event": "message.created", "data": {"id": 5, "account_id": 1, "conversation_id": 9}}
    for _ in range(3):
        adapter.receive_text(_frame(adapter, message), 1.0)
    assert seen == [message] * 3
    assert [e.name for e in adapter.events_received()] == ["message.created"] * 3


def test_a_live_event_keeps_its_frame_as_text_and_reads_it_back_public() -> None:
    # The live path keeps the frame's text, not its decoded tree: event.raw is decoded again on
    # its first read, with the identifier's public copy and every secret member hidden, then kept.
    adapter = _adapter(_Counting)
    inbox = {"source_id": "s1", "pubsub_token": "ANOTHER-USERS-TOKEN"}
    message = {
        "event": "message.created",
        "data": {"id": 5, "account_id": 1, "conversation_id": 9, "conversation": {"contact_inbox": inbox}},
    }
    adapter.receive_text(_frame(adapter, message), 1.0)
    adapter.events_received()
    adapter.taken = 0
    text = _frame(adapter, message)
    adapter.receive_text(text, 1.0)
    assert adapter.taken == 1
    (event,) = adapter.events_received()
    stored = stored_raw(event)
    assert type(stored) is Deferred and stored.value[0] is text  # the frame itself, not a copy
    assert "ANOTHER-USERS-TOKEN" not in repr(event) and TOKEN not in repr(event)
    raw = event.raw
    assert raw is event.raw  # decoded once
    assert raw["identifier"] == adapter.identifier.replace(TOKEN, "***")
    assert raw["message"]["data"]["conversation"]["contact_inbox"] == {"source_id": "s1", "pubsub_token": "***"}
    assert event.data.conversation == {"contact_inbox": inbox}  # the model gets the payload as sent
    want = json.loads(json.dumps(message))
    want["data"]["conversation"]["contact_inbox"]["pubsub_token"] = "***"
    assert raw == {"identifier": raw["identifier"], "message": want}
