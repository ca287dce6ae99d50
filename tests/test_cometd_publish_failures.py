"""A publish is never lost in silence: when the request carrying it fails (HTTP 500 or 403, or
the connection drops), it is reported as an ``error`` event of kind ``"publish"`` naming the
channel and the publish, as CometD's own clients fail it (cometd.js ``_handleFailure`` ->
``_failMessage``: the publish callback gets ``successful: false``; they do not re-send it).

Against the fake Bayeux server (which fails chosen POSTs on purpose), standalone and on a hub,
and against the real faye and cometd-nodejs-server (the happy path, and faye dropping every
connection mid-stream).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.cometd import CometDClient

from .conftest import FAST, Recorder, T, on
from .conftest import poll_until as eventually
from .servers.harness import CometDNodeServer, FayeServer, cometd_available, faye_available
from .test_longpoll_http import subscribed_client

ROOM = "/chat/room"
N = 5


def publish_errors(rec: Recorder) -> list[rs.Event]:
    return [e for e in list(rec.events) if e.name == "error" and e.data.kind == "publish"]


def delivered(rec: Recorder) -> set[int]:
    return {e.data["n"] for e in list(rec.events) if e.name == "message" and isinstance(e.data, dict)}


class Confirmations:
    """A Bayeux extension recording the publishes the server confirmed (``successful: true``):
    a confirmed publish whose message never came back was lost on the way back (faye delivers
    at most once without the ack extension), which is not this test's subject."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.confirmed: set[int] = set()

    def outgoing(self, m: dict[str, Any]) -> dict[str, Any]:
        if m.get("channel") == ROOM and isinstance(m.get("data"), dict):
            self.ids[m["id"]] = m["data"]["n"]
        return m

    def incoming(self, m: dict[str, Any]) -> dict[str, Any]:
        if m.get("channel") == ROOM and m.get("successful") is True and m.get("id") in self.ids:
            self.confirmed.add(self.ids[m["id"]])
        return m


def unaccounted(rec: Recorder, sent: range, spy: Confirmations | None = None) -> set[int]:
    """The publishes neither confirmed, nor delivered back to us (we are subscribed), nor
    reported as failed: lost in silence."""
    reported = {e.raw["data"]["n"] for e in publish_errors(rec)}
    confirmed = set(spy.confirmed) if spy is not None else set()
    return set(sent) - delivered(rec) - reported - confirmed


def all_accounted(rec: Recorder, sent: range, timeout: float, spy: Confirmations | None = None) -> None:
    try:
        eventually(lambda: not unaccounted(rec, sent, spy), timeout, "every publish delivered or reported")
    except AssertionError:
        lost = sorted(unaccounted(rec, sent, spy))
        raise AssertionError(f"lost in silence: {lost}; events: {rec.names()[-30:]}") from None


@pytest.mark.parametrize("outcome", [500, 403, "drop"])
def test_a_publish_whose_request_fails_is_reported_not_lost(outcome: int | str, hub: rs.Hub | None) -> None:
    spy = Confirmations()
    options = {"password": "pw-not-in-events", "username": "agent", "extensions": [spy], **on(hub)}
    with subscribed_client(2.0, **options) as (
        server,
        client,
        rec,
    ):
        # A publish dropped on a reused keep-alive connection is not sent again (the server may
        # have applied it): one dropped request is enough to fail it.
        server.fail_post(outcome, channel=ROOM, count=1)
        for n in range(N):
            client.publish(ROOM, {"n": n})
        eventually(lambda: publish_errors(rec), 10, "a publish error")
        if outcome == 403:
            # A credential refusal: the client backs off for auth_failure_delay (60 s), and the
            # publishes not in the refused request (on a hub they can go in a later one) are held
            # for the next session, as cometd.js holds its queue; close() reports them.
            client.close(timeout=T(10))
        all_accounted(rec, range(N), 10, spy)
        first = publish_errors(rec)[0]
        assert first.entity_id == ROOM
        assert f"'{ROOM}'" in first.data.message and f"id {first.raw['id']}" in first.data.message
        assert set(first.raw) == {"id", "channel", "data"}
        assert "pw-not-in-events" not in repr(first.raw) + first.data.message
        for error in (e for e in list(rec.events) if e.name == "error"):  # plain words, no h11 internals
            assert "can't handle event" not in error.data.message and "ConnectionClosed" not in error.data.message
        failed = [n for n in range(N) if n not in delivered(rec)]
        assert failed, "the failed POST was not processed: its publish cannot have been delivered"
        if outcome != 403:  # 403 is a credential refusal: the auth backoff applies
            server.fail_post(None)
            seen_before = len(server.bayeux_messages(ROOM))
            rec.wait("connected", count=2, timeout=10)
            client.publish(ROOM, {"n": 99})
            rec.wait("message", where=lambda e: e.data == {"n": 99}, timeout=10)
            # Reported, not re-sent behind the user's back: the server saw only the new one.
            assert [m["data"] for m in server.bayeux_messages(ROOM)[seen_before:]] == [{"n": 99}]


def test_publishes_queued_without_a_session_are_reported_when_the_client_closes(hub: rs.Hub | None) -> None:
    with subscribed_client(2.0, **on(hub)) as (server, client, rec):
        server.refuse_http(500)  # from now on no session can be had
        rec.wait("disconnected", timeout=10)
        client.publish(ROOM, {"n": 7})  # held until a session exists: it never will
        client.close(timeout=T(5))
        (err,) = publish_errors(rec)
        assert err.raw["data"] == {"n": 7} and "not sent" in err.data.message


def test_no_publish_error_on_the_happy_path_with_a_normal_close(hub: rs.Hub | None) -> None:
    with subscribed_client(2.0, **on(hub)) as (_server, client, rec):
        for n in range(N):
            client.publish(ROOM, {"n": n})
        eventually(lambda: delivered(rec) >= set(range(N)), 10, "all delivered")
        client.close(timeout=T(5))
        assert [e.data for e in rec.events if e.name == "error"] == []


# -- real servers ---------------------------------------------------------------------------------

FAYE_OK, FAYE_WHY = faye_available()
COMETD_OK, COMETD_WHY = cometd_available()


def _happy_path(url: str, transport: str, hub: rs.Hub | None = None) -> None:
    client = CometDClient(url, transport=transport, reconnect=FAST, **on(hub))
    rec = Recorder(client)
    try:
        client.subscribe(ROOM)
        client.start()
        rec.wait("subscribed", timeout=10)
        for n in range(20):
            client.publish(ROOM, {"n": n})
        eventually(lambda: delivered(rec) >= set(range(20)), 10, "20 publishes delivered")
    finally:
        client.close(timeout=T(5))
    assert [e.data for e in rec.events if e.name == "error"] == []


@pytest.fixture
def faye(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FayeServer]:
    """A real faye server of this test's own (one test drops its connections)."""
    if not FAYE_OK:
        pytest.skip(f"faye not available: {FAYE_WHY}")
    with FayeServer(log_dir=tmp_path_factory.mktemp("faye-pub"), timeout=1.0) as server:
        yield server


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
def test_real_faye_happy_path_reports_no_publish_error(faye: FayeServer, transport: str) -> None:
    _happy_path(faye.url, transport)


def test_real_faye_happy_path_on_a_hub(faye: FayeServer, hub: rs.Hub | None) -> None:
    if hub is not None:  # (standalone long-polling: the test above)
        _happy_path(faye.url, "long-polling", hub)


@pytest.mark.skipif(not COMETD_OK, reason=f"cometd-nodejs-server not installed: {COMETD_WHY}")
def test_real_cometd_nodejs_server_happy_path_reports_no_publish_error(
    tmp_path_factory: pytest.TempPathFactory, hub: rs.Hub | None
) -> None:
    server = CometDNodeServer(log_dir=tmp_path_factory.mktemp("cometd-pub"), timeout_ms=2000)
    with server:
        _happy_path(server.url, "long-polling", hub)


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
def test_real_faye_dropping_every_connection_loses_no_publish_in_silence(faye: FayeServer, transport: str) -> None:
    spy = Confirmations()
    client = CometDClient(faye.url, transport=transport, reconnect=FAST, extensions=[spy])
    rec = Recorder(client)
    stop = threading.Event()
    sent: list[int] = []

    def publisher() -> None:
        n = 0
        while not stop.is_set() and n < 200:
            client.publish(ROOM, {"n": n})
            sent.append(n)
            n += 1
            stop.wait(0.01)

    try:
        client.subscribe(ROOM)
        client.start()
        rec.wait("subscribed", timeout=10)
        pub = threading.Thread(target=publisher, name="test-publisher")
        pub.start()
        try:
            eventually(lambda: len(sent) >= 20, 10, "20 publishes made")
            faye.drop_connections()
            # (A long-polling publish on a dropped keep-alive connection is failed, not re-sent;
            # keep publishing a while: each is delivered or reported.)
            after = len(sent)
            eventually(lambda: len(sent) >= after + 20 or stop.is_set(), 10, "20 more publishes")
        finally:
            stop.set()
            pub.join(T(5))
        all_accounted(rec, range(len(sent)), 15, spy)
    finally:
        client.close(timeout=T(5))
