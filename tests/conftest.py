from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from realtime_sync import ReconnectPolicy
from realtime_sync.config import timing_scale

from ._echo import EchoClient, EchoServer

#: Fast reconnects for tests (the default waits 5 s after three instant retries).
FAST = ReconnectPolicy(instant_retries=3, interval=0.2, max_interval=0.2, jitter=0.0, stable_after=5.0)


def T(seconds: float) -> float:
    """A deadline scaled by REALTIME_SYNC_TIMING_SCALE for slow machines."""
    return seconds * timing_scale()


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture
def make_client() -> Iterator:
    clients: list[EchoClient] = []

    def make(url: str, **kw) -> EchoClient:
        kw.setdefault("reconnect", FAST)
        c = EchoClient(url, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close(timeout=5)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [
        t.name
        for t in threading.enumerate()
        if t.ident not in before and t.name.startswith("realtime_sync-") and "fake" not in t.name and t.is_alive()
    ]
    assert not leaked, f"threads still alive after the test: {leaked}"
