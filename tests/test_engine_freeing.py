"""Where delivered events are freed: on the I/O thread that built them (see Engine._release).

An event's objects are built on the transport thread and its handlers run on the dispatcher's
thread; freed there, the memory went back to the allocator dirty in the other CPU's cache and the
next frames paid a miss for every block.  These tests watch, through a finalizer in the payload,
which thread frees a delivered event, and that nothing is kept once the client is closed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from realtime_sync import Client, dispatch

from ._echo import EchoAdapter
from .conftest import FAST, T


class _Payload:
    """Records the name of the thread that frees it."""

    def __init__(self, freed: list[str], done: threading.Event, expected: int) -> None:
        self.freed = freed
        self.done = done
        self.expected = expected

    def __del__(self) -> None:
        self.freed.append(threading.current_thread().name)
        if len(self.freed) >= self.expected:
            self.done.set()


class _TracingAdapter(EchoAdapter):
    """The echo protocol, each event's ``data`` wrapped in a :class:`_Payload`."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.freed: list[str] = []
        self.all_freed = threading.Event()
        self.expected = expected

    def _emit(self, name: str, now: float, data: Any = None, *args: Any, **kw: Any) -> None:
        if name.startswith("tick"):
            data = _Payload(self.freed, self.all_freed, self.expected)
        super()._emit(name, now, data, *args, **kw)


def _client(url: str, adapter: _TracingAdapter) -> Client[Any]:
    return Client(url, adapter=adapter, reconnect=FAST)


def _burst(echo_server: Any, client: Client[Any], n: int) -> tuple[Any, list[int]]:
    """Start ``client``, have the server send ``n`` "tick" events, wait until the handler has seen
    the last; returns the server side of the connection and the ids the handler saw."""
    seen: list[int] = []
    last = threading.Event()

    def handler(event: Any) -> None:
        seen.append(event.entity_id)
        if event.entity_id == n - 1:
            last.set()

    client.on("tick", handler)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    for i in range(n):
        conn.send({"event": "tick", "id": i})
    assert last.wait(T(10)), f"{len(seen)} of {n} delivered"
    return conn, seen


def test_delivered_events_are_freed_on_the_transport_thread(echo_server, monkeypatch):
    # A dispatcher left without events for _IDLE_AFTER frees what is left itself (next test);
    # a loaded machine can pause the server that long, so here it never does.
    monkeypatch.setattr(dispatch, "_IDLE_AFTER", 3600.0)
    n = 200
    adapter = _TracingAdapter(n)
    client = _client(echo_server.url, adapter)
    try:
        conn, seen = _burst(echo_server, client, n)
        # More frames: each read frees what was delivered before it (the last batch may be
        # handed back just after a read).
        deadline = time.monotonic() + T(10)
        while not adapter.all_freed.wait(0.02):
            assert time.monotonic() < deadline, f"{len(adapter.freed)} of {n} freed"
            conn.send({"event": "other", "id": 0})
        assert seen == list(range(n))
        assert set(adapter.freed) == {"realtime_sync-transport-Client"}, sorted(set(adapter.freed))
    finally:
        client.close(timeout=T(5))


def test_close_keeps_no_delivered_event(echo_server):
    n = 50
    adapter = _TracingAdapter(n)
    client = _client(echo_server.url, adapter)
    _burst(echo_server, client, n)
    # No frame follows: the last batches wait for the I/O thread's next turn, and close()
    # must not leave them behind.
    client.close(timeout=T(5))
    assert adapter.all_freed.wait(T(5)), f"{len(adapter.freed)} of {n} freed after close()"


def test_a_quiet_connection_keeps_no_delivered_event(echo_server):
    # The last events of a burst, then silence: no read or timer comes to free them, so the
    # dispatcher, caught up and given nothing more for a moment, frees them (they may be large).
    n = 40
    adapter = _TracingAdapter(n)
    client = _client(echo_server.url, adapter)
    try:
        _burst(echo_server, client, n)
        assert adapter.all_freed.wait(T(10)), f"{len(adapter.freed)} of {n} freed with the connection quiet"
    finally:
        client.close(timeout=T(5))
