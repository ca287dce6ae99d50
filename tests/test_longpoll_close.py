"""Long-polling connections closed by the client end with a FIN, not a TCP reset.

A client that closes its HTTP sockets while an answer is still on its way (the held
``/meta/connect``, which the server answers on the disconnect, or the disconnect's own reply)
makes the kernel answer that data with a reset; a socket closed with unread data resets at
once.  Measured before the fix through :class:`~tests._relay.ResetRelay`: closing 10 hub
clients (3 times) ended 55 of 60 connections with a reset against faye (56 of 60 against
cometd-nodejs-server), and standalone 14 of 60 against faye (2 of 60 against cometd).  Now a clean ``close()`` sends its
goodbye and reads every answer still out before closing, within ``engine.CLOSE_LINGER`` and
``close(timeout=...)``, as a websocket waits for the server's close.

Each case runs on the fake (always) and on the real servers where installed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.cometd import CometDClient
from realtime_sync.testing.bayeux import FakeBayeuxServer

from ._relay import ResetRelay
from .conftest import Recorder, T, poll_until
from .servers.harness import CometDNodeServer, FayeServer, cometd_available, faye_available

ROOM = "/chat/room"


@pytest.fixture(scope="module", params=["fake", "faye", "cometd"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(long-polling URL, port) of a Bayeux server holding connects for 2 s."""
    kind = request.param
    if kind == "fake":
        with FakeBayeuxServer(websocket=False, timeout=2.0) as fake:
            yield fake.http_url, fake.port
        return
    ok, why = faye_available() if kind == "faye" else cometd_available()
    if not ok:
        pytest.skip(why)
    log_dir = tmp_path_factory.mktemp(kind)
    real: Any = FayeServer(log_dir=log_dir, timeout=2.0) if kind == "faye" else CometDNodeServer(log_dir=log_dir)
    real.start()
    try:
        yield real.url, real.port
    finally:
        real.stop()


@pytest.mark.parametrize("on_hub", [True, False], ids=["hub", "standalone"])
def test_closing_long_polling_clients_reset_no_connection(server: tuple[str, int], on_hub: bool) -> None:
    url, port = server
    relay = ResetRelay(("127.0.0.1", port))
    n = 10 if on_hub else 4
    hub = rs.Hub(workers=1, name="t-lp-close") if on_hub else None
    clients: list[CometDClient] = []
    recorders: list[Recorder] = []
    try:
        for i in range(n):
            extra: dict[str, Any] = {"hub": hub} if hub is not None else {}
            c = CometDClient(relay.url(url), transport="long-polling", name=f"lp-close-{i}", **extra)
            c.subscribe(ROOM)
            clients.append(c)
            recorders.append(Recorder(c, "subscribed", timeout=20))
        for c in clients:
            c.start()
        for r in recorders:
            r.wait("subscribed")

        def connects() -> int:
            with relay.cond:
                return sum(leg.sent.count(b'"/meta/connect"') for leg in relay.legs)

        # Every session has a connect held by the server (the first is answered at once).
        poll_until(lambda: connects() >= 2 * n, 20, "a held /meta/connect per session")
        t0 = time.monotonic()
        if hub is not None:
            assert hub.close(T(10))
        else:
            for c in clients:
                c.close(timeout=T(10))
        took = time.monotonic() - t0
        with relay.cond:
            opened = len(relay.legs)
        legs = relay.wait_ended(opened, T(10))
    finally:
        for c in clients:
            c.close(timeout=T(5))
        if hub is not None:
            hub.close(T(5))
        relay.close()
    assert len(legs) >= 2 * n  # the held and the control connection of each session
    goodbyes = sum(bytes(leg.sent).count(b'"/meta/disconnect"') for leg in legs)
    assert goodbyes == n
    reset = [leg for leg in legs if leg.reset]
    assert not reset, f"{len(reset)} of {len(legs)} connections ended with a reset: {reset}"
    # The servers answer the held connect on the disconnect: no wait for CLOSE_LINGER's deadline.
    assert took < T(1.5) * (1 if on_hub else n)


@pytest.mark.parametrize("on_hub", [True, False], ids=["hub", "standalone"])
def test_close_gives_up_waiting_for_answers_that_never_come(on_hub: bool) -> None:
    """A server that never answers the goodbye (frozen) holds nothing up: close() and
    hub.close() return within their timeout, with every thread ended."""
    before = set(threading.enumerate())
    with FakeBayeuxServer(websocket=False, timeout=2.0) as fake:
        hub = rs.Hub(workers=1, name="t-lp-frozen") if on_hub else None
        extra: dict[str, Any] = {"hub": hub} if hub is not None else {}
        client = CometDClient(fake.http_url, transport="long-polling", name="lp-frozen", **extra)
        client.subscribe(ROOM)
        rec = Recorder(client, "subscribed", timeout=20)
        client.start()
        rec.wait("subscribed")
        fake.fail_post("hang", channel="/meta/disconnect")
        t0 = time.monotonic()
        if hub is not None:
            assert hub.close(T(4))
        else:
            client.close(timeout=T(4))
        assert time.monotonic() - t0 < T(4)
        poll_until(lambda: fake.failed_posts, 5, "the goodbye reached the server")
        alive = [t.name for t in set(threading.enumerate()) - before if t.name.startswith("realtime_sync-")]
        assert [n for n in alive if "fake" not in n] == []


@pytest.mark.parametrize("on_hub", [True, False], ids=["hub", "standalone"])
def test_close_before_any_answer_does_not_wait_for_a_goodbye(on_hub: bool) -> None:
    """A server that took the handshake and never answered: there is no session to say goodbye
    to, so close() and hub.close() do not wait the goodbye's grace (a reviewer measured 1.00 s
    standalone and 2.00 s on a hub, 6 of 6 runs, against ~0.05 s over the websocket)."""
    before = set(threading.enumerate())
    with FakeBayeuxServer(websocket=False, timeout=2.0) as fake:
        fake.fail_post("hang", channel="/meta/handshake")
        hub = rs.Hub(workers=1, name="t-lp-unanswered") if on_hub else None
        extra: dict[str, Any] = {"hub": hub} if hub is not None else {}
        client = CometDClient(fake.http_url, transport="long-polling", name="lp-unanswered", **extra)
        client.subscribe(ROOM)
        client.start()
        poll_until(lambda: fake.failed_posts, 10, "the handshake reached the server")
        t0 = time.monotonic()
        client.close(timeout=T(10))
        if hub is not None:
            assert hub.close(T(10))
        took = time.monotonic() - t0
        alive = [t.name for t in set(threading.enumerate()) - before if t.name.startswith("realtime_sync-")]
        assert [n for n in alive if "fake" not in n] == []
    assert took < T(0.8), f"close() took {took:.2f}s with no session to say goodbye to"
