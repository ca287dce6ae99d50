"""The hub's worker pool: per-lane order, no concurrency within a lane, slow-lane isolation,
bounds with the overflow policies, stop/join/close leaving no thread behind."""

from __future__ import annotations

import threading

import pytest

from realtime_sync._workers import WorkerPool
from realtime_sync.exceptions import ConfigurationError

from .conftest import T, poll_until


@pytest.fixture
def pool():
    p = WorkerPool(workers=4, name="test")
    yield p
    assert p.close(T(10))
    assert not any(t.is_alive() for t in p.threads)


def test_each_lane_in_order_and_never_concurrent(pool: WorkerPool) -> None:
    lanes, seen, active, overlap = [], {}, {}, []
    lock = threading.Lock()
    for k in range(200):
        seen[k], active[k] = [], 0

        def deliver(batch, k=k):
            with lock:
                active[k] += 1
                if active[k] > 1:
                    overlap.append(k)
            seen[k].extend(batch)
            with lock:
                active[k] -= 1

        lanes.append(pool.lane(deliver, name=f"c{k}", max_queue=10_000))
    for i in range(50):  # interleaved, as a loop thread would put them
        for k, lane in enumerate(lanes):
            lane.put_many([(k, i, j) for j in range(3)])
    for lane in lanes:
        lane.stop()
    for lane in lanes:
        assert lane.join(T(10))
    assert not overlap
    for k in range(200):
        assert seen[k] == [(k, i, j) for i in range(50) for j in range(3)]


def test_a_slow_lane_delays_only_itself(pool: WorkerPool) -> None:
    release = threading.Event()
    started = threading.Event()
    slow_seen, fast_seen = [], []

    def slow(batch):
        started.set()
        release.wait(T(20))
        slow_seen.extend(batch)

    slow_lane = pool.lane(slow, name="slow")
    fast_lane = pool.lane(fast_seen.extend, name="fast")
    slow_lane.put_many(range(10))
    assert started.wait(T(5))
    fast_lane.put_many(range(1000))
    poll_until(lambda: len(fast_seen) == 1000, 5, "the fast lane delivered while the slow one blocks")
    assert slow_seen == []
    release.set()
    poll_until(lambda: slow_seen == list(range(10)), 5, "the slow lane caught up")


def test_drop_oldest_per_lane_bound() -> None:
    gate, seen, drops = threading.Event(), [], []
    p = WorkerPool(workers=1, name="t-oldest", batch=1)

    def deliver(batch):
        gate.wait(T(10))
        seen.extend(batch)

    lane = p.lane(deliver, name="l", max_queue=5, on_drop=drops.append)
    lane.put(0)
    poll_until(lambda: lane.depth() == 0, 5, "the first item taken by the worker")
    # 10 more into a bound of 5 that counts the item being delivered: the 6 oldest go
    dropped = lane.put_many(range(1, 11))
    assert dropped == 6 and drops == [6]
    gate.set()
    lane.stop()
    assert lane.join(T(5))
    assert seen == [0, 7, 8, 9, 10]
    assert p.stats.dropped == 6
    assert p.close(T(5))


def test_drop_newest_and_the_pool_wide_bound() -> None:
    gate = threading.Event()
    p = WorkerPool(workers=1, name="t-total", max_total=8, batch=1)
    seen: list[int] = []
    blocker = p.lane(lambda b: gate.wait(T(10)), name="blocker")
    blocker.put("x")
    poll_until(lambda: p.stats.busy == 1, 5, "the only worker busy")
    a = p.lane(seen.extend, name="a", max_queue=100, overflow="drop_newest")
    b = p.lane(seen.extend, name="b", max_queue=100, overflow="drop_oldest")
    assert a.put_many(range(6)) == 0
    assert a.put_many(range(6, 10)) == 2  # the pool holds 8 at most: 6, 7 fit, 8, 9 are dropped
    assert p.stats.queued == 8
    # b has nothing of its own to shed: the pool is full, the newcomer is dropped.
    assert b.put(100) == 1
    gate.set()
    for lane in (blocker, a, b):
        lane.stop()
        assert lane.join(T(5))
    assert seen == list(range(8))
    assert p.close(T(5))


def test_stop_from_inside_the_lane_and_then_callback(pool: WorkerPool) -> None:
    done = threading.Event()
    result = {}

    def deliver(batch):
        lane.stop(then=done.set)
        result["join"] = lane.join(0.1)  # from inside: cannot finish while we run

    lane = pool.lane(deliver, name="self")
    lane.put(1)
    assert done.wait(T(5))
    assert result["join"] is False
    assert lane.join(T(5))
    assert lane.put(2) == 0 and lane.depth() == 0  # ignored after stop


def test_an_exception_in_deliver_does_not_kill_a_worker() -> None:
    p = WorkerPool(workers=1, name="t-exc")
    seen: list[int] = []

    def deliver(batch):
        if batch[0] == 0:
            raise RuntimeError("boom")
        seen.extend(batch)

    lane = p.lane(deliver, name="e", max_queue=10)
    lane.put(0)
    poll_until(lambda: not lane.busy(), 5, "the failing batch done")
    lane.put(1)
    lane.stop()
    assert lane.join(T(5))
    assert seen == [1]
    assert p.close(T(5))


def test_close_delivers_what_is_queued_and_joins_every_worker() -> None:
    p = WorkerPool(workers=3, name="t-close")
    seen: list[int] = []
    lane = p.lane(seen.extend, name="c")
    lane.put_many(range(500))
    assert p.close(T(10))
    assert seen == list(range(500))
    assert lane.stopped
    assert len(p.threads) == 3 and not any(t.is_alive() for t in p.threads)
    with pytest.raises(RuntimeError):
        p.lane(seen.extend)


def test_thread_count_fixed_whatever_the_number_of_lanes() -> None:
    p = WorkerPool(workers=2, name="t-count")
    lanes = [p.lane(lambda b: None, name=f"l{k}") for k in range(1000)]
    names = [t.name for t in threading.enumerate() if t.name.startswith("realtime_sync-t-count-")]
    assert sorted(names) == ["realtime_sync-t-count-worker-0", "realtime_sync-t-count-worker-1"]
    assert p.stats.lanes == 1000
    for lane in lanes:
        lane.put(1)
    assert p.close(T(10))


def test_misuse_is_refused_with_a_message() -> None:
    with pytest.raises(ConfigurationError, match="workers"):
        WorkerPool(workers=0)
    p = WorkerPool(workers=1, name="t-misuse")
    with pytest.raises(ConfigurationError, match="overflow"):
        p.lane(print, overflow="block")
    assert p.close(T(5))
