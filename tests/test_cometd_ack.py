"""CometD's acknowledged-messages extension (``ack=True``) against the CometD project's own
Node.js server (npm cometd-nodejs-server, long-polling only, which ships the extension) and
against faye (which has no ack extension: the field is ignored, delivery goes on).

Without the extension, cometd-nodejs-server puts queued messages into the reply of *any*
request, so with a held connect plus the client's own publishes in flight on two HTTP
connections, replies may be processed out of order ("Message Ordering" in CometD's
extensions_acknowledge.adoc).  With it, data comes only in /meta/connect replies, in batches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import realtime_sync as rs
from realtime_sync.cometd import CometDClient

from .conftest import FAST, T
from .conftest import poll_until as eventually
from .servers.harness import CometDNodeServer, FayeServer, cometd_available, faye_available

COMETD_OK, COMETD_WHY = cometd_available()
FAYE_OK, FAYE_WHY = faye_available()
FEED = "/v2/me/feed"
N = 300


@pytest.fixture(scope="module")
def cometd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CometDNodeServer]:
    if not COMETD_OK:
        pytest.skip(f"cometd-nodejs-server not installed: {COMETD_WHY}")
    server = CometDNodeServer(log_dir=tmp_path_factory.mktemp("cometd"), timeout_ms=2000)
    server.start()
    yield server
    server.stop()


def _run_burst(url: str, burst: object, *, ack: bool) -> tuple[list[int], list[rs.Event]]:
    client = CometDClient(url, transport="long-polling", ack=ack, reconnect=FAST)
    seqs: list[int] = []
    errors: list[rs.Event] = []
    lock = threading.Lock()

    def on_message(event: rs.Event) -> None:
        if isinstance(event.data, dict) and "seq" in event.data:
            with lock:
                seqs.append(event.data["seq"])

    client.on("message", on_message)
    client.on("error", errors.append)
    stop = threading.Event()

    def publisher() -> None:
        # The client publishes while the burst arrives: its publish requests travel on the
        # second HTTP connection, and their replies may carry queued messages too.
        n = 0
        while not stop.is_set():
            client.publish("/v2/me/chatter", {"n": n})
            n += 1
            stop.wait(0.005)

    try:
        client.subscribe(FEED)
        client.wait_for("subscribed", timeout=T(10))  # starts it: a start() first could miss the event
        pub = threading.Thread(target=publisher, name="test-publisher")
        pub.start()
        try:
            burst(FEED, N)  # type: ignore[operator]
            eventually(lambda: len(seqs) >= N, T(20), f"{N} messages")
        finally:
            stop.set()
            pub.join(T(5))
        return list(seqs), errors
    finally:
        client.close(timeout=5)


@pytest.mark.skipif(not COMETD_OK, reason=f"cometd-nodejs-server not installed: {COMETD_WHY}")
def test_ack_delivers_a_burst_in_order_against_cometd_nodejs_server(cometd_server: CometDNodeServer) -> None:
    seqs, errors = _run_burst(cometd_server.url, cometd_server.burst, ack=True)
    # At least once: a batch is re-sent only if its connect reply was lost; order always holds.
    deduped = list(dict.fromkeys(seqs))
    assert deduped == list(range(1, N + 1))
    assert seqs == sorted(seqs)
    assert [e.data.kind for e in errors] == []


@pytest.mark.skipif(not FAYE_OK, reason=f"faye not available: {FAYE_WHY}")
def test_ack_is_harmless_against_a_server_without_it(tmp_path_factory: pytest.TempPathFactory) -> None:
    with FayeServer(log_dir=tmp_path_factory.mktemp("faye-ack"), timeout=1.0) as faye:
        client = CometDClient(faye.url, transport="long-polling", ack=True, reconnect=FAST)
        got: list[rs.Event] = []
        client.on("message", got.append)
        try:
            client.subscribe("/v2/me/chats")
            client.wait_for("subscribed", timeout=T(10))  # starts it: a start() first could miss the event
            faye.burst("/v2/me/chats", 20)
            eventually(lambda: len(got) >= 20, T(10), "20 messages")
            assert [e.data["messages"][0]["index"] for e in got] == list(range(1, 21))
        finally:
            client.close(timeout=5)
