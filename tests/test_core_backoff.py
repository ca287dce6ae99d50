"""The one backoff: an immutable Backoff carrying its counters, shared by the engine and the
adapter's in-session retries, and the restart jitter after a server-ended session."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import realtime_sync as rs
from realtime_sync.config import Backoff, SharedBackoff

from .test_bayeux_adapter import connected, feed, frames


def test_increment_returns_a_new_backoff_and_leaves_the_old_one_alone():
    b0 = Backoff(rs.ReconnectPolicy(instant_retries=1, interval=2, jitter=0))
    b1 = b0.increment("refused")
    assert (b0.failures, b1.failures) == (0, 1)
    assert b1.delay() == 0.0 and b1.increment("x").delay() == 2.0
    assert b1.increment("x").reset() == Backoff(b0.policy)


def test_auth_refusals_use_the_auth_delay_and_may_stop():
    policy = rs.ReconnectPolicy(auth_failure_delay=60, auth_failure_max_delay=100, stop_on_auth_failure=True)
    b = Backoff(policy).increment("401", auth=True)
    assert b.delay() == 60 and b.stop_on_auth
    assert b.increment("401", auth=True).delay() == 100
    assert not b.increment("eof").stop_on_auth


@given(st.integers(min_value=0, max_value=5), st.integers(min_value=0, max_value=12))
def test_max_attempts_is_exhausted_exactly_after_that_many_failures(limit: int, failures: int) -> None:
    b = Backoff(rs.ReconnectPolicy(max_attempts=limit))
    for _ in range(failures):
        b = b.increment()
    assert b.exhausted == (failures > limit)
    assert len(b.history) == min(failures, 10)


def test_reconnect_false_is_never():
    assert Backoff(rs.ReconnectPolicy.never()).increment().exhausted


def test_the_bayeux_adapter_counts_on_the_clients_backoff():
    # The engine lends its SharedBackoff: the adapter's in-session retries move its counters.
    a, held = connected()
    shared = SharedBackoff(rs.ReconnectPolicy(instant_retries=0, interval=1, step=1, max_interval=60, jitter=0))
    a.backoff = shared
    feed(a, 1.0, {"id": held["id"], "channel": "/meta/connect", "successful": False, "error": "500::oops"})
    assert shared.current.failures == 1 and a.next_deadline() == 2.0
    assert shared.current.history == ("connect failed",)


def test_a_session_the_server_ended_is_handshaken_again_after_a_jittered_delay():
    deadlines = set()
    for _ in range(20):
        a, held = connected()
        a.backoff = SharedBackoff(rs.ReconnectPolicy(restart_jitter=2.0))
        reply = {"id": held["id"], "channel": "/meta/connect", "successful": False, "error": "402::Unknown client"}
        feed(a, 5.0, {**reply, "advice": {"reconnect": "handshake", "interval": 0}})
        frames(a)
        deadline = a.next_deadline()
        assert deadline is not None and 5.0 <= deadline <= 7.0
        deadlines.add(round(deadline, 3))
    assert len(deadlines) > 1, "every client would handshake again at the same instant"
