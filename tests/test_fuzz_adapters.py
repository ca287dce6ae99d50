"""Fuzz targets, one per adapter (issue 10): any text yields events or the documented ``error``
event, never an exception out of ``receive_text``, in bounded time.

A few seconds each in CI.  Longer runs: ``REALTIME_SYNC_FUZZ_EXAMPLES=20000 python -m pytest
tests/test_fuzz_adapters.py`` (see SECURITY.md).
"""

from __future__ import annotations

import json
import os
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime_sync.events import ErrorInfo
from realtime_sync.protocols.actioncable import ActionCableAdapter
from realtime_sync.protocols.base import Adapter
from realtime_sync.protocols.bayeux import BayeuxAdapter
from realtime_sync.protocols.jifeline import JifelineCustomerAdapter, JifelinePartnerAdapter
from realtime_sync.protocols.voxsig import VoxsigAdapter

EXAMPLES = int(os.environ.get("REALTIME_SYNC_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

# JSON values in the shapes the adapters read, mixed with anything.
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20)
)
_keys = st.sampled_from(
    [
        "type",
        "action",
        "event",
        "channel",
        "identifier",
        "message",
        "data",
        "advice",
        "successful",
        "id",
        "clientId",
        "subscription",
        "error",
        "reconnect",
        "timeout",
        "interval",
        "ticket_id",
        "connector_id",
        "event_type",
        "event_id",
        "payload",
        "reason",
        "ext",
    ]
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=5)),
    max_leaves=25,
)
_frames = st.one_of(
    _values.map(lambda v: json.dumps(v, allow_nan=True)),
    st.lists(st.dictionaries(_keys, _values, max_size=5), max_size=5).map(json.dumps),
    st.text(max_size=200),
    st.sampled_from(["[" * 2000 + "]" * 2000, '{"a":' * 1500 + "1" + "}" * 1500, "1e999", "[1e999]", "-0", "\x00"]),
)


def _connected(adapter: Adapter, hello: list[str]) -> Adapter:
    adapter.connection_made(0.0)
    for text in hello:
        adapter.receive_text(text, 0.0)
    adapter.data_to_send()
    adapter.events_received()
    return adapter


ADAPTERS: dict[str, Callable[[], Adapter]] = {
    "jifeline_customer": lambda: _connected(JifelineCustomerAdapter(), []),
    "jifeline_partner": lambda: _connected(JifelinePartnerAdapter(), []),
    "actioncable": lambda: _connected(ActionCableAdapter(), ['{"type":"welcome"}']),
    "voxsig": lambda: _connected(VoxsigAdapter("pubsub-token-1", 1, 7), ['{"type":"welcome"}']),
    "bayeux": lambda: _connected(BayeuxAdapter(), []),
}


def _check(adapter: Adapter, frames: list[str]) -> None:
    now = 1.0
    for text in frames:
        adapter.receive_text(text, now)  # must not raise
        adapter.handle_timer(now)
        deadline = adapter.next_deadline()
        assert deadline is None or deadline == deadline  # a number a timer can take (not NaN)
        if deadline is not None:
            assert deadline < 1e12, deadline
        now += 0.5
    for event in adapter.events_received():
        if event.name == "error":
            assert isinstance(event.data, ErrorInfo)
    adapter.data_to_send()


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@FUZZ
@given(frames=st.lists(_frames, min_size=1, max_size=6))
def test_any_input_yields_events_or_errors(name: str, frames: list[str]) -> None:
    _check(ADAPTERS[name](), frames)
