"""``max_queue_bytes`` on the wire, standalone and on a hub: the same burst into a stuck handler
sheds events by the same policy on both, every drop is counted and named in ``overflow`` error
events, and the queue's byte count comes back to 0 (against the Voxsig fake on 127.0.0.1)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.testing import FakeVoxsigServer

from .conftest import FAST, T, poll_until

TOKEN = "tok-bytes"
SENT = 1000
MAX_BYTES = 20_000


@pytest.fixture
def server() -> Iterator[FakeVoxsigServer]:
    with FakeVoxsigServer(users={TOKEN: 77}) as srv:
        # No presence.update at subscribe: broadcast right after the confirmation, it could come
        # behind the first message (under load, 1 run in ~20) and be dropped with the burst,
        # one drop more than the messages sent.
        srv.answer_presence = False
        yield srv


class Burst:
    """A handler stuck on the first message until :meth:`release`, counting what it is given."""

    def __init__(self) -> None:
        self.gate, self.entered = threading.Event(), threading.Event()
        self.ids: list[int] = []
        self.reported: list[int] = []  # the counts named by the overflow error events

    def message(self, event: rs.Event) -> None:
        self.entered.set()
        self.gate.wait(T(30))
        self.ids.append(event.data.id)

    def error(self, event: rs.Event) -> None:
        if event.data.kind == "overflow":
            match = re.search(r"dropped (\d+) event", event.data.message)
            assert match, event.data.message
            self.reported.append(int(match.group(1)))


def run_burst(server: FakeVoxsigServer, hub: rs.Hub | None, **options: Any) -> tuple[Burst, rs.Stats, rs.Stats]:
    """Send ``SENT`` messages while the handler is stuck on the first; returns the handler, the
    stats with everything read (handler still stuck) and the stats once all is delivered."""
    burst = Burst()
    client = rs.VoxsigClient(
        server.url,
        pubsub_token=TOKEN,
        account_id=1,
        user_id=77,
        presence_interval=None,
        reconnect=FAST,
        flow_control=False,
        hub=hub,
        **options,
    )
    client.on("message.created", burst.message)
    client.on("error", burst.error)
    try:
        client.start()
        client.wait_for("subscribed", timeout=T(10))
        server.send_event(TOKEN, "message.created", {"id": 0, "content": "first", "conversation_id": 1})
        assert burst.entered.wait(T(10))
        for i in range(1, SENT):
            server.send_event(TOKEN, "message.created", {"id": i, "content": "x" * 100, "conversation_id": 1})
        # Every message read: each is waiting (the stuck one included) or was dropped.
        poll_until(lambda: client.stats.queue_depth + client.stats.dropped >= SENT, T(30), "the whole burst read")
        stuck = client.stats
        burst.gate.set()
        poll_until(
            lambda: len(burst.ids) + client.stats.dropped == SENT and client.stats.queue_depth == 0,
            T(30),
            "the queue drained",
        )
        poll_until(lambda: sum(burst.reported) == client.stats.dropped, T(10), "every drop reported")
        return burst, stuck, client.stats
    finally:
        burst.gate.set()
        client.close(timeout=T(10))


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest"])
@pytest.mark.parametrize("on_hub", [False, True], ids=["standalone", "hub"])
def test_max_queue_bytes_sheds_the_same_burst_standalone_and_on_a_hub(
    server: FakeVoxsigServer, on_hub: bool, overflow: str
) -> None:
    hub = rs.Hub(workers=1, handshake_workers=1, name="t-bytes") if on_hub else None
    try:
        burst, stuck, done = run_burst(server, hub, max_queue_bytes=MAX_BYTES, overflow=overflow)
    finally:
        if hub is not None:
            assert hub.close(T(10))
    # The byte bound held while the handler was stuck (max_queue, 100,000, never came near).
    assert 0 < stuck.queue_bytes <= MAX_BYTES
    assert stuck.dropped > SENT // 2
    # delivered + dropped == sent; each drop named by an overflow error event; nothing left.
    assert len(burst.ids) + done.dropped == SENT
    assert burst.reported and sum(burst.reported) == done.dropped
    assert done.queue_bytes == 0 and done.queue_depth == 0
    assert burst.ids == sorted(burst.ids) and burst.ids[0] == 0
    if overflow == "drop_oldest":
        assert burst.ids[-1] == SENT - 1  # the newest survive
    else:
        assert burst.ids == list(range(len(burst.ids)))  # the oldest survive


@pytest.mark.parametrize("on_hub", [False, True], ids=["standalone", "hub"])
def test_the_default_byte_bound_delivers_the_whole_burst(server: FakeVoxsigServer, on_hub: bool) -> None:
    hub = rs.Hub(workers=1, handshake_workers=1, name="t-bytes-default") if on_hub else None
    try:
        burst, stuck, done = run_burst(server, hub)
    finally:
        if hub is not None:
            assert hub.close(T(10))
    assert stuck.queue_bytes > MAX_BYTES  # the same burst, well under the default 64 MiB
    assert burst.ids == list(range(SENT)) and done.dropped == 0 and not burst.reported
    assert done.queue_bytes == 0
