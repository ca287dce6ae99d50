"""GenesysChatClient against a REAL Bayeux server: faye (npm) mounted at /api/v2/notifications.

The server comes from tests/servers (``bash .ci/install-servers.sh`` installs it); these tests
are skipped, with the reason, only when node or faye is not installed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.genesys import GenesysChatClient
from realtime_sync.models.genesys import ChatStateChange, MessageLogUpdate

from .conftest import Recorder, T
from .servers.harness import (
    FAYE_BASIC_PASSWORD,
    FAYE_BASIC_USER,
    FAYE_COOKIE,
    FAYE_EXT_TOKEN,
    FayeServer,
    faye_available,
)

_ok, _why = faye_available()
pytestmark = pytest.mark.skipif(not _ok, reason=f"faye not available: {_why}")

CHATS = "/v2/me/chats"
# "hub-long-polling": long-polling on an rs.Hub (the hub's own HTTP/1.1 codec on its loop thread).
TRANSPORTS = ["websocket", "long-polling", "hub-long-polling"]
HOLD = 1.0  # faye's connect hold time (advice.timeout); a silent client is expired after ~2x
QUICK = rs.ReconnectPolicy(instant_retries=0, interval=0.2, step=0.2, max_interval=1.0, jitter=0.0, stable_after=5.0)


@pytest.fixture(scope="module")
def faye(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FayeServer]:
    server = FayeServer(log_dir=tmp_path_factory.mktemp("faye"), timeout=HOLD)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _forget_harness_secrets() -> Iterator[None]:
    """The harness' Basic password is the word "secret": once registered as a secret (as every
    password is), the process-wide redactor would blank the word in other tests' messages."""
    from realtime_sync import _redact

    before = dict(_redact._secrets)
    yield
    with _redact._lock:
        _redact._secrets.clear()
        _redact._secrets.update(before)
        _redact._rebuild()


@pytest.fixture
def make() -> Iterator[Any]:
    clients: list[GenesysChatClient] = []
    hubs: list[rs.Hub] = []

    def make(url: str, **kw: Any) -> tuple[GenesysChatClient, Recorder]:
        kw.setdefault("reconnect", QUICK)
        if kw.get("transport") == "hub-long-polling":
            if not hubs:
                hubs.append(rs.Hub(workers=1, name="t-faye"))
            kw.update(transport="long-polling", hub=hubs[0])
        client = GenesysChatClient(url, **kw)
        clients.append(client)
        return client, Recorder(client, timeout=10.0)

    yield make
    for c in clients:
        c.close(timeout=5)
    for h in hubs:
        assert h.close(T(10))


def _status(chat_id: str, kind: str = "StatusChange") -> dict[str, Any]:
    return {
        "messageType": "ChatStateChangeMessage",
        "notificationType": kind,
        "chat": {
            "id": chat_id,
            "state": "Chatting",
            "participants": [{"nickname": "Agent1", "type": "Agent", "participantId": "p1"}],
            "capabilities": ["SendMessage"],
            "userData": {"k": "v"},
            "uri": f"http://gws/api/v2/chats/{chat_id}",
        },
        "referenceId": 83,
    }


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_handshake_subscribe_and_typed_events(faye: FayeServer, make: Any, transport: str) -> None:
    client, rec = make(faye.url, transport=transport)
    client.start()
    assert rec.wait("handshake").data.transport == transport.replace("hub-", "")
    rec.wait("subscribed")
    faye.publish(CHATS, _status("chat-1"))
    faye.publish(CHATS, _status("chat-1", "ParticipantsUpdated"))
    faye.burst(CHATS, 1, start=7, chat_uri="http://gws/api/v2/chats/chat-2")
    change = rec.wait("chat.status_change")
    assert change.entity_id == "chat-1" and isinstance(change.data, ChatStateChange)
    assert change.data.chat is not None and change.data.chat.participants[0].nickname == "Agent1"
    assert rec.wait("chat.participants_updated").entity_id == "chat-1"
    log_update = rec.wait("chat.new_messages")
    assert isinstance(log_update.data, MessageLogUpdate) and log_update.entity_id == "chat-2"
    assert log_update.data.messages[0].index == 7 and log_update.data.messages[0].text == "m7"
    assert client.transport == transport.replace("hub-", "")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_quiet_period_longer_than_the_connect_timeout_keeps_the_session(
    faye: FayeServer, make: Any, transport: str
) -> None:
    client, rec = make(faye.url, transport=transport)
    client.start()
    rec.wait("subscribed")
    # Nothing published for 3 hold periods (faye expires a silent client after ~2): the connect
    # heartbeat must keep the session, on the same connection.
    quiet = threading.Event()
    quiet.wait(3 * HOLD + 0.5)
    faye.publish(CHATS, _status("after-quiet"))
    assert rec.wait("chat.status_change").entity_id == "after-quiet"
    assert len(rec.named("handshake")) == 1 and len(rec.named("connected")) == 1
    assert not rec.named("error")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_burst_arrives_complete_and_in_order(faye: FayeServer, make: Any, transport: str) -> None:
    client, rec = make(faye.url, transport=transport)
    client.start()
    rec.wait("subscribed")
    # The harness publishes through faye's in-process client, whose very first publish (made
    # while that client handshakes) is sent after the ones that follow it: warm it up first.
    faye.publish("/warm-up", {})
    n = 300
    faye.burst(CHATS, n, start=1)
    rec.wait("chat.new_messages", count=n, timeout=20)
    indexes = [e.data.messages[0].index for e in rec.named("chat.new_messages")]
    assert indexes == list(range(1, n + 1))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_expired_session_handshakes_and_subscribes_again(faye: FayeServer, make: Any, transport: str) -> None:
    client, rec = make(faye.url, transport=transport)
    client.start()
    rec.wait("subscribed")
    faye.expire_clients()  # the next connect: 401::Unknown client, advice handshake
    assert rec.wait("handshake", count=2).data.number == 2
    rec.wait("subscribed", count=2)
    faye.publish(CHATS, _status("after-expiry"))
    assert rec.wait("chat.status_change").entity_id == "after-expiry"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_server_restart_is_survived(make: Any, tmp_path: Any, transport: str) -> None:
    with FayeServer(log_dir=tmp_path, timeout=HOLD) as faye:
        client, rec = make(faye.url, transport=transport)
        client.start()
        rec.wait("subscribed")
        faye.restart()  # same port; every session is gone
        # Reconnect, resume with the old clientId, get "unknown client" + advice handshake,
        # handshake and subscribe again.
        rec.wait("handshake", count=2, timeout=20)
        rec.wait("subscribed", count=2)
        faye.publish(CHATS, _status("after-restart"))
        assert rec.wait("chat.status_change").entity_id == "after-restart"
        assert faye.stats()["subscribes"] >= 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_close_sends_disconnect(make: Any, tmp_path: Any, transport: str) -> None:
    with FayeServer(log_dir=tmp_path, timeout=HOLD) as faye:
        client, rec = make(faye.url, transport=transport)
        client.start()
        rec.wait("subscribed")
        assert faye.stats()["clients"] == 1
        client.close(timeout=T(30))  # returns once the goodbye is answered; a loaded machine is slow
        stats = faye.stats()
        assert stats["disconnects"] == 1 and stats["clients"] == 0
        assert stats["transports"].get(transport.replace("hub-", ""), 0) >= 1


def test_falls_back_to_long_polling_when_websocket_is_refused(make: Any, tmp_path: Any) -> None:
    with FayeServer(log_dir=tmp_path, timeout=HOLD, websocket=False) as faye:
        client, rec = make(faye.url)  # transport="auto"
        client.start()
        rec.wait("subscribed")
        assert client.transport == "long-polling"
        faye.publish(CHATS, _status("lp"))
        assert rec.wait("chat.status_change").entity_id == "lp"
        stats = faye.stats()
        assert stats["ws_refused"] == 1 and stats["transports"].get("websocket", 0) == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_http_auth_basic_or_session_cookie(make: Any, tmp_path: Any, transport: str) -> None:
    with FayeServer(log_dir=tmp_path, timeout=HOLD, auth="http") as faye:
        basic, rec1 = make(faye.url, transport=transport, username=FAYE_BASIC_USER, password=FAYE_BASIC_PASSWORD)
        cookie, rec2 = make(faye.url, transport=transport, cookies={FAYE_COOKIE[0]: FAYE_COOKIE[1]})
        wrong, rec3 = make(faye.url, transport=transport, username=FAYE_BASIC_USER, password="not-the-password")
        for c in (basic, cookie, wrong):
            c.start()
        rec1.wait("subscribed")
        rec2.wait("subscribed")
        refused = rec3.wait("error", where=lambda e: e.data.kind == "auth")
        assert "not-the-password" not in refused.data.message
        assert not rec3.named("subscribed")


def test_handshake_denied_makes_start_wait_raise_authentication_error(make: Any, tmp_path: Any) -> None:
    # faye answers a refused handshake with "403::Handshake denied" and advice "none": as for an
    # HTTP 401, start(wait=True) raises AuthenticationError with the server's reason, and the
    # snapshot keeps it.
    with FayeServer(log_dir=tmp_path, timeout=HOLD, auth="handshake") as faye:
        refused, _rec = make(faye.url, ext={"auth": "wrong-token"})
        with pytest.raises(rs.AuthenticationError, match="Handshake denied") as raised:
            refused.start(wait=True, timeout=T(30))
        assert "wrong-token" not in str(raised.value)
        last = refused.snapshot.last_error
        assert last is not None and last.kind == "auth" and "Handshake denied" in last.message


def test_handshake_ext_auth(make: Any, tmp_path: Any) -> None:
    with FayeServer(log_dir=tmp_path, timeout=HOLD, auth="handshake") as faye:
        client, rec = make(faye.url, ext={"auth": FAYE_EXT_TOKEN})
        refused, rec2 = make(faye.url, ext={"auth": "wrong-token"})
        client.start()
        refused.start()
        rec.wait("subscribed")
        # (The harness' /publish goes through faye's in-process client, which cannot pass this
        # handshake check: publish through our client instead, which also tests publish().)
        client.publish(CHATS, _status("ext"))
        assert rec.wait("chat.status_change").entity_id == "ext"
        # faye answers "403::Handshake denied" with advice "none": reported, and the client stops.
        error = rec2.wait("error", where=lambda e: e.data.kind == "auth")
        assert "denied" in error.data.message and "wrong-token" not in error.data.message
        assert rec2.wait("disconnected").data.will_reconnect is False
