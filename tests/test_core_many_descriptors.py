"""A process that already holds more than 1,024 descriptors (a busy web or worker process, or
one running a few hundred clients) must still run clients: readiness goes through ``selectors``
(epoll), never ``select.select()``, whose FD_SETSIZE limit is 1,024.  Each transport is run with
every descriptor it opens numbered above 1,100, and no thread may outlive ``close()``."""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.cometd import CometDClient
from realtime_sync.testing.bayeux import FakeBayeuxServer

from ._echo import EchoClient, EchoServer
from .conftest import FAST, Recorder, T

HELD = 1100


@pytest.fixture
def many_descriptors() -> Iterator[list[int]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = HELD + 512
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    fds: list[int] = []
    try:
        for _ in range(HELD):
            fds.append(os.open(os.devnull, os.O_RDONLY))
        yield fds
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _own_threads(before: set[int | None]) -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t.ident not in before and t.name.startswith("realtime_sync-") and "fake" not in t.name and t.is_alive()
    ]


def _errors(rec: Recorder) -> list[Any]:
    return [e.data for e in rec.events if e.name == "error"]


def test_websocket_client_with_more_than_1024_descriptors(many_descriptors: list[int]) -> None:
    assert max(many_descriptors) > 1024
    with EchoServer() as server:
        before = {t.ident for t in threading.enumerate()}
        client = EchoClient(server.url, reconnect=FAST)
        rec = Recorder(client)
        client.subscribe("news")
        client.start()
        conn = server.wait_for_connection(timeout=T(5))
        server.wait_until(lambda: "news" in conn.state.get("subs", ()), timeout=5)
        conn.send({"event": "news.posted", "id": 7, "data": {"n": 1}})
        event = rec.wait("news.posted")
        assert event.entity_id == 7 and client.state is rs.State.CONNECTED
        conn.drop()  # the reconnect path too
        server.wait_for_connection(2, timeout=T(5))
        rec.wait("connected", count=2)
        client.close(timeout=T(5))
        assert not _errors(rec), _errors(rec)
        assert not _own_threads(before)


def test_long_polling_client_with_more_than_1024_descriptors(many_descriptors: list[int]) -> None:
    assert max(many_descriptors) > 1024
    with FakeBayeuxServer(timeout=1.0, websocket=False) as server:
        before = {t.ident for t in threading.enumerate()}
        client = CometDClient(server.http_url, transport="long-polling", reconnect=FAST)
        rec = Recorder(client)
        client.subscribe("/chat/room")
        client.start()
        rec.wait("subscribed")
        server.publish("/chat/room", {"text": "hello"})
        assert rec.wait("message").data == {"text": "hello"}
        assert client.transport == "long-polling" and client.state is rs.State.CONNECTED
        client.close(timeout=T(5))
        assert not _errors(rec), _errors(rec)
        assert not _own_threads(before), "a long-polling worker outlived close()"


def test_a_stopped_fake_server_leaves_no_descriptor_open() -> None:
    # python-websockets before 17 (the only ones for Python 3.10) never closed a server's shutdown
    # pipe: two descriptors a server, past 1,024 by the end of the suite on 3.10.
    import gc

    def open_fds() -> int:
        gc.collect()  # a finished serve_forever()'s selector is freed by the collector
        return len(os.listdir("/proc/self/fd"))

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    before = open_fds()
    for _ in range(20):
        with EchoServer():
            pass
    assert open_fds() - before < 5
