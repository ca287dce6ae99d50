"""The handshake limiter: the bound on concurrent handshakes, FIFO order, jitter only under load."""

from __future__ import annotations

import random

import pytest

from realtime_sync._limiter import HandshakeLimiter
from realtime_sync.exceptions import ConfigurationError


def test_a_lone_handshake_goes_at_once() -> None:
    lim = HandshakeLimiter(max_concurrent=4, jitter=5.0, rand=lambda: 0.99)
    assert lim.want("a", now=10.0)
    assert lim.in_flight == 1 and lim.next_deadline() is None


def test_never_more_than_max_concurrent_and_everyone_served() -> None:
    rng = random.Random(7)
    lim = HandshakeLimiter(max_concurrent=50, jitter=2.0, rand=rng.random)
    now = 0.0
    started = [k for k in range(10_000) if lim.want(k, now)]
    assert started == [0]  # the others are spread over the jitter window
    in_flight = list(started)
    served = set(started)
    # Each tick: the oldest handshakes finish, the limiter grants what is due.
    while len(served) < 10_000:
        now += 0.01
        assert lim.in_flight <= 50
        for k in in_flight[:20]:
            lim.done(k)
        in_flight = in_flight[20:]
        granted = lim.poll(now)
        assert not served.intersection(granted)
        served.update(granted)
        in_flight.extend(granted)
        assert lim.in_flight <= 50
        assert now < 60, "the limiter stalled"
    assert lim.peak == 50 and lim.granted == 10_000


def test_a_burst_is_spread_over_the_jitter_window() -> None:
    rng = random.Random(1)
    lim = HandshakeLimiter(max_concurrent=1000, jitter=2.0, rand=rng.random)
    assert lim.want("first", now=0.0)
    for k in range(999):
        lim.want(k, now=0.0)  # busy (someone waits): every newcomer gets a not-before in [0, 2)
    granted_at = {}
    t = 0.0
    while lim.waiting:
        deadline = lim.next_deadline()
        assert deadline is not None and deadline >= t
        t = deadline
        for k in lim.poll(t):
            granted_at[k] = t
    times = sorted(granted_at.values())
    assert len(times) == 999
    assert 0.0 <= times[0] < 0.1 and 1.9 < times[-1] < 2.0
    early = sum(1 for x in times if x < 1.0)
    assert 400 < early < 600  # uniform over the window, not a wall at t=0


def test_cancel_frees_a_waiting_or_flying_key() -> None:
    lim = HandshakeLimiter(max_concurrent=1, jitter=0.0)
    assert lim.want("a", 0.0)
    assert not lim.want("b", 0.0)
    assert not lim.want("c", 0.0)
    lim.cancel("b")
    assert lim.waiting == 1
    assert lim.poll(0.0) == []  # a still flies
    lim.cancel("a")
    assert lim.poll(0.0) == ["c"]
    assert lim.want("c", 0.0) is True  # asking again while in flight: still granted


def test_misuse() -> None:
    with pytest.raises(ConfigurationError, match="max_concurrent"):
        HandshakeLimiter(max_concurrent=0)
    with pytest.raises(ConfigurationError, match="jitter"):
        HandshakeLimiter(jitter=-1)
