"""The dispatcher's routing: resolved once per event name, whatever the number of handlers."""

from __future__ import annotations

import logging
import threading

import realtime_sync.dispatch as dispatch_mod
from realtime_sync import DispatchOptions, Event
from realtime_sync.dispatch import Dispatcher

from .conftest import T


def _dispatcher() -> Dispatcher:
    d = Dispatcher(DispatchOptions(), logging.getLogger("realtime_sync.test"), "t")
    d.start()
    return d


def test_patterns_are_resolved_once_per_name(monkeypatch):
    calls = []
    real = dispatch_mod.fnmatch.fnmatchcase

    def counting(name, pattern):
        calls.append((name, pattern))
        return real(name, pattern)

    monkeypatch.setattr(dispatch_mod.fnmatch, "fnmatchcase", counting)
    d = _dispatcher()
    try:
        got = []
        done = threading.Event()
        for i in range(10_000):
            d.add(f"other.{i}.*", lambda e: None)
            d.add("message.created", lambda e: None, entity_id=f"x{i}")
        d.add("message.*", got.append)
        d.add("stop", lambda e: done.set())
        d.put_many([Event("message.created", entity_id=i) for i in range(1000)] + [Event("stop")])
        assert done.wait(T(60))  # a deadline for a hang only: this test counts, it does not time
        assert len(got) == 1000
        per_name = {}
        for name, _ in calls:
            per_name[name] = per_name.get(name, 0) + 1
        # One resolution per distinct name: 10,001 patterns tried once for "message.created",
        # never again for the 999 events after the first.
        assert per_name["message.created"] == 10_001
    finally:
        d.stop(5)


def test_registration_after_resolution_is_seen():
    d = _dispatcher()
    try:
        a, b = [], []
        done = threading.Event()
        d.add("x", a.append)
        d.add("done", lambda e: done.set())
        d.put(Event("x"))
        d.put(Event("done"))
        assert done.wait(5)
        done.clear()
        d.add("x*", b.append)
        d.put(Event("x"))
        d.put(Event("done"))
        assert done.wait(5)
        assert len(a) == 2 and len(b) == 1
        assert d.remove("x*") == 1
    finally:
        d.stop(5)


def test_drop_newest_policy():
    d = Dispatcher(DispatchOptions(max_queue=3, overflow="drop_newest"), logging.getLogger("realtime_sync.test"), "t")
    seen = []
    d.add("n", lambda e: seen.append(e.entity_id))
    errors = []
    d.add("error", lambda e: errors.append(e.data.kind))
    d.put_many([Event("n", entity_id=i) for i in range(10)])  # not started: nothing drains
    # the overflow report takes no place in the queue: delivered before the next batch
    assert d.dropped == 7 and d.depth() == 3
    d.start()
    d.stop(5)
    assert seen == [0, 1, 2] and errors == ["overflow"]
