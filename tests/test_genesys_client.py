"""GenesysChatClient / CometDClient against the fake Bayeux server, on both transports."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync._cookies import CookieJar
from realtime_sync.cometd import CometDClient
from realtime_sync.genesys import GenesysChatClient, _normalise_url
from realtime_sync.models.genesys import ChatMessage, ChatStateChange, MessageLogUpdate, Participant
from realtime_sync.protocols.base import ConnectRequest
from realtime_sync.protocols.bayeux import SessionInfo
from realtime_sync.testing.bayeux import FakeBayeuxServer, FakeGenesysServer
from realtime_sync.transport_longpoll import CookieWebSocketConnection, LongPollingConnection

from .conftest import Recorder, T, poll_until

CHATS = "/v2/me/chats"
QUICK = rs.ReconnectPolicy(instant_retries=0, interval=0.2, max_interval=0.2, jitter=0.0, stable_after=5.0)
TRANSPORTS = ["websocket", "long-polling"]


@pytest.fixture
def gws() -> Iterator[FakeGenesysServer]:
    with FakeGenesysServer(timeout=1.0) as server:
        yield server


@pytest.fixture
def make() -> Iterator[Any]:
    clients: list[CometDClient] = []

    def make(cls: type[CometDClient], url: str, **kw: Any) -> Any:
        kw.setdefault("reconnect", QUICK)
        c = cls(url, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close(timeout=5)


def collect(client: CometDClient, pattern: str = "*") -> list[rs.Event]:
    got: list[rs.Event] = []
    client.on(pattern, got.append)
    return got


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_handshake_subscribe_and_typed_chat_events(gws: FakeGenesysServer, make: Any, transport: str) -> None:
    client = make(GenesysChatClient, gws.http_url, transport=transport)
    rec = Recorder(client)
    client.start()
    assert rec.wait("handshake").data == SessionInfo(1, transport)
    rec.wait("subscribed")
    hs = gws.wait_for_meta("/meta/handshake")
    assert hs["supportedConnectionTypes"] == [transport]
    assert gws.wait_for_meta("/meta/subscribe")["subscription"] == CHATS
    assert client.transport == transport

    got = collect(client, "chat.*")
    for kind in ("StatusChange", "ParticipantsUpdated", "PropertiesUpdated", "Error"):
        gws.chat_state_change("0000Wa9CAM6W00J", kind, state="Chatting", reference_id=83)
    gws.new_messages("0000Wa9CAM6W00FN", ["How may I help you?", "Are you still there?"], start_index=3)
    gws.new_messages("0000CHATPATH", ["via chatPath"], chat_path=True)
    rec.wait("chat.new_messages", where=lambda e: e.entity_id == "0000CHATPATH")

    assert [e.name for e in got] == [
        "chat.status_change",
        "chat.participants_updated",
        "chat.properties_updated",
        "chat.error",
        "chat.new_messages",
        "chat.new_messages",
    ]
    change = got[0].data
    assert isinstance(change, ChatStateChange) and got[0].entity_id == "0000Wa9CAM6W00J"
    assert change.chat is not None and change.chat.state == "Chatting" and change.reference_id == 83
    assert change.chat.participants[1] == Participant("Agent1", "Agent", "007352CE984F0321")
    assert change.chat.user_data == {"key1": "value1"} and "SendMessage" in change.chat.capabilities
    log_update = got[4].data
    assert isinstance(log_update, MessageLogUpdate) and got[4].entity_id == "0000Wa9CAM6W00FN"
    first = log_update.messages[0]
    assert isinstance(first, ChatMessage) and first.index == 3 and first.text == "How may I help you?"
    assert first.from_ is not None and first.from_.nickname == "Agent1" and first.visibility == "All"
    assert first.timestamp_seconds == 1389261492038 and first.type == "Text"
    assert got[0].raw["channel"] == CHATS and got[0].subscription == rs.Subscription("channel", CHATS)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_advice_handshake_starts_a_new_session_and_subscribes_again(
    gws: FakeGenesysServer, make: Any, transport: str
) -> None:
    client = make(GenesysChatClient, gws.http_url, transport=transport)
    rec = Recorder(client)
    client.start()
    rec.wait("subscribed")
    assert gws.expire_sessions() == 1  # the next connect: 402::Unknown client + advice handshake
    assert rec.wait("handshake", count=2, timeout=10).data.number == 2
    rec.wait("subscribed", count=2)
    gws.wait_for_subscription(CHATS)
    gws.chat_state_change("c2", "StatusChange")
    assert rec.wait("chat.status_change").entity_id == "c2"
    assert [e.name for e in rec.events].count("connected") == 1
    assert client.state is rs.State.CONNECTED  # the connection itself was never replaced


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_advice_none_reports_and_stops(gws: FakeGenesysServer, make: Any, transport: str) -> None:
    client = make(GenesysChatClient, gws.http_url, transport=transport)
    errors = collect(client, "error")
    gone = collect(client, "disconnected")
    rec = Recorder(client)
    client.start()
    rec.wait("subscribed")
    gws.advise_none()
    done = threading.Thread(target=client.run_forever, name="test-run-forever")
    done.start()
    done.join(T(10))
    assert not done.is_alive(), "run_forever() did not return after advice none"
    assert client.closed
    assert any(e.data.kind == "server" for e in errors)
    assert gone and gone[-1].data.will_reconnect is False


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_unanswered_connect_means_a_dead_connection_which_is_replaced(make: Any, transport: str) -> None:
    with FakeGenesysServer(timeout=0.5) as gws:
        client = make(GenesysChatClient, gws.http_url, transport=transport, max_network_delay=0.5)
        rec = Recorder(client)
        client.start()
        rec.wait("subscribed")
        gws.hold_connects()
        assert "no reply to /meta/connect" in rec.wait("disconnected", timeout=10).data.reason
        gws.hold_connects(False)
        rec.wait("connected", count=2, timeout=10)
        gws.wait_for_subscription(CHATS)
        gws.chat_state_change("after", "StatusChange")
        assert rec.wait("chat.status_change", timeout=10).entity_id == "after"
        assert [e.name for e in rec.events].count("handshake") == 1  # the session was resumed


def test_falls_back_to_long_polling_when_the_websocket_upgrade_is_refused(make: Any) -> None:
    with FakeGenesysServer(timeout=1.0, websocket=False) as gws:
        client = make(GenesysChatClient, gws.http_url)  # transport="auto"
        rec = Recorder(client)
        client.start()
        rec.wait("subscribed")
        assert client.transport == "long-polling"
        assert [h.status for h in gws.handshakes] == [400]  # one websocket attempt, refused
        gws.new_messages("c1", ["hello"])
        assert rec.wait("chat.new_messages").data.messages[0].text == "hello"
        # The fallback sticks: a restarted server is reached by long-polling straight away.
        gws.restart()
        rec.wait("subscribed", count=2, timeout=10)
        # Whether the long-polling "connection" itself was replaced depends on whether a request
        # was in flight at the restart; either way no websocket was tried again.
        assert [h.status for h in gws.handshakes] == [400]
        assert client.transport == "long-polling"


def test_a_ws_url_is_turned_into_the_long_polling_url(make: Any) -> None:
    with FakeGenesysServer(timeout=1.0, websocket=False) as gws:
        client = make(GenesysChatClient, gws.url, transport="long-polling")  # ws://...
        client.wait_for("subscribed", timeout=T(5))  # starts the client
        assert gws.http_requests[0].path == "/api/v2/notifications"


def test_url_forms() -> None:
    assert _normalise_url("https://gws.example.com") == "https://gws.example.com/api/v2/notifications"
    assert _normalise_url("wss://gws.example.com/api/v2/notifications") == "wss://gws.example.com/api/v2/notifications"
    with pytest.raises(rs.ConfigurationError):
        _normalise_url("ftp://x/y")
    with pytest.raises(rs.ConfigurationError):
        GenesysChatClient("https://h/api/v2/notifications", transport="carrier-pigeon")
    with pytest.raises(rs.ConfigurationError):
        GenesysChatClient("https://h/api/v2/notifications", username="only-user")


BASIC = "Basic " + base64.b64encode(b"agent:agent-pass-1").decode()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_basic_auth_and_cookies_on_every_request(make: Any, transport: str) -> None:
    with FakeGenesysServer(timeout=1.0, basic_auth=("agent", "agent-pass-1")) as gws:
        client = make(
            GenesysChatClient,
            gws.http_url,
            transport=transport,
            username="agent",
            password="agent-pass-1",
            cookies={"JSESSIONID": "sess-42"},
        )
        client.wait_for("subscribed", timeout=T(5))  # starts the client
        if transport == "websocket":
            headers = {k.lower(): v for k, v in gws.handshakes[-1].headers.items()}
            assert headers["authorization"] == BASIC and "JSESSIONID=sess-42" in headers["cookie"]
        else:
            gws.wait_until(lambda: len(gws.http_requests) >= 3)
            for req in gws.http_requests:
                h = {k.lower(): v for k, v in req.headers.items()}
                assert h["authorization"] == BASIC and "JSESSIONID=sess-42" in h["cookie"]
            # The cookie the server set on its first answer comes back on the later requests.
            later = {k.lower(): v for k, v in gws.http_requests[-1].headers.items()}
            assert "BAYEUX_BROWSER=fake-browser-1" in later["cookie"]
            assert client.cookies.get("BAYEUX_BROWSER") == "fake-browser-1"


def test_cookies_set_over_long_polling_are_sent_on_the_websocket_upgrade() -> None:
    with FakeGenesysServer(timeout=1.0) as gws:
        jar = CookieJar({"JSESSIONID": "sess-42"})
        lp = LongPollingConnection(jar, name="test")
        lp.open(ConnectRequest(gws.http_url, headers={"Authorization": BASIC}), rs.ConnectOptions())
        try:
            lp.send(
                '[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}]'
            )
            gws.wait_until(lambda: len(gws.http_requests) >= 1)
            deadline = threading.Event()
            while jar.get("BAYEUX_BROWSER") is None and not deadline.wait(0.01):
                pass
        finally:
            lp.close()
        assert [t for t in threading.enumerate() if t.name.startswith("realtime_sync-longpoll-test")] == []
        ws = CookieWebSocketConnection(jar)
        ws.open(ConnectRequest(gws.http_url, headers={"Authorization": BASIC}), rs.ConnectOptions())
        ws.close()
        headers = {k.lower(): v for k, v in gws.handshakes[-1].headers.items()}
        assert headers["authorization"] == BASIC
        assert headers["cookie"] == "JSESSIONID=sess-42; BAYEUX_BROWSER=fake-browser-1"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_refused_credentials_are_auth_errors(make: Any, transport: str) -> None:
    with FakeGenesysServer(timeout=1.0, basic_auth=("agent", "agent-pass-1")) as gws:
        client = make(GenesysChatClient, gws.http_url, transport=transport, username="agent", password="wrong-password")
        error = client.wait_for("error", timeout=T(5), where=lambda e: e.data.kind == "auth")
        assert "wrong-password" not in error.data.message


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_close_sends_disconnect_and_joins_every_thread(gws: FakeGenesysServer, make: Any, transport: str) -> None:
    before = set(threading.enumerate())
    client = make(GenesysChatClient, gws.http_url, transport=transport)
    # Deadlines for a hang (5 s failed once on a loaded machine); the waits end on the event.
    client.wait_for("subscribed", timeout=T(30))  # starts the client
    if transport == "long-polling":
        assert any(t.name.startswith("realtime_sync-longpoll-GenesysChatClient-") for t in threading.enumerate())
    client.close(timeout=T(30))
    disconnect = gws.wait_for_meta("/meta/disconnect", timeout=T(30))
    assert disconnect["clientId"]
    alive = [
        t.name
        for t in set(threading.enumerate()) - before
        if t.name.startswith("realtime_sync-") and "fake" not in t.name
    ]
    assert not alive, alive


@pytest.mark.parametrize("on_hub", [False, True], ids=["standalone", "hub"])
def test_the_goodbye_reaches_the_server_with_its_notifications_unread(
    gws: FakeGenesysServer, make: Any, on_hub: bool
) -> None:
    """close() while the server is still sending: /meta/disconnect must arrive.  It was lost
    (about 1 close in 5, and once in CI right after ``subscribed``) when the client closed its
    socket with the server's frames unread: the kernel sent a reset, python-websockets' close
    reply then failed, and it dropped the frames read with the reset, the goodbye among them."""
    hub = rs.Hub(workers=1, handshake_workers=1, name="t-goodbye") if on_hub else None
    gate, entered = threading.Event(), threading.Event()

    def stuck(event: rs.Event) -> None:
        entered.set()
        gate.wait(T(30))

    client = make(GenesysChatClient, gws.http_url, transport="websocket", high_water=4, hub=hub)
    client.on("chat.status_change", stuck)
    stop = threading.Event()

    def pump() -> None:  # the server keeps sending, more than the paused client reads
        while not stop.is_set() and gws.chat_state_change("c1", text="x" * 2000):
            pass

    pumper = threading.Thread(target=pump, name="realtime_sync-fake-pump", daemon=True)
    try:
        client.wait_for("subscribed", timeout=T(30))
        pumper.start()
        assert entered.wait(T(30))
        poll_until(lambda: client.stats.reads_paused >= 1, 20, "the client stopped reading")
        closer = threading.Thread(target=client.close, kwargs={"timeout": T(20)}, name="realtime_sync-test-closer")
        closer.start()
        disconnect = gws.wait_for_meta("/meta/disconnect", timeout=T(20))
        assert disconnect["clientId"]
        gate.set()
        closer.join(T(20))
        assert not closer.is_alive()
    finally:
        stop.set()
        gate.set()
        client.close(timeout=T(10))
        pumper.join(T(10))
        if hub is not None:
            assert hub.close(T(10))


@pytest.mark.parametrize("transport", ["auto", *TRANSPORTS])
def test_a_stuck_handler_pauses_reading_then_every_notification_arrives_in_order(
    gws: FakeGenesysServer, make: Any, transport: str
) -> None:
    """Flow control on every transport, "auto" included (its connection stands for the one it
    chose: resuming the reading once failed there with an AttributeError on the I/O thread, and
    the connection was replaced, losing the notifications already read)."""
    gate = threading.Event()
    chats: list[str] = []

    def stuck(event: rs.Event) -> None:
        chats.append(event.data.chat_id)
        gate.wait(T(30))

    client = make(GenesysChatClient, gws.http_url, transport=transport, high_water=4)
    client.on("chat.status_change", stuck)
    errors = collect(client, "error")
    disconnects = collect(client, "disconnected")
    try:
        client.wait_for("subscribed", timeout=T(30))
        sent = [f"chat-{i}" for i in range(60)]
        for chat in sent:
            gws.chat_state_change(chat)
        poll_until(lambda: client.stats.reads_paused >= 1, 20, "the client stopped reading")
        gate.set()
        poll_until(lambda: len(chats) >= len(sent), 30, "every notification delivered")
        assert chats == sent
        assert [e.data.kind for e in errors] == [] and disconnects == []
    finally:
        gate.set()


def test_long_polling_close_keeps_to_its_timeout_when_the_goodbye_gets_no_answer(
    gws: FakeGenesysServer, make: Any
) -> None:
    """The server reads /meta/disconnect and never answers (it froze): close(timeout=0.3) waits
    for the goodbye only within its own timeout (it used to wait a fixed 1 s), and every thread
    ends."""
    before = set(threading.enumerate())
    client = make(GenesysChatClient, gws.http_url, transport="long-polling")
    client.wait_for("subscribed", timeout=T(30))
    gws.fail_post("hang", channel="/meta/disconnect")
    started = time.monotonic()
    client.close(timeout=0.3)
    took = time.monotonic() - started
    assert gws.failed_posts and "/meta/disconnect" in gws.failed_posts[0]  # it was sent
    assert took < 0.95, f"close(timeout=0.3) took {took:.2f} s"
    alive = [t.name for t in set(threading.enumerate()) - before if t.name.startswith("realtime_sync-")]
    assert [n for n in alive if "fake" not in n] == []


def test_secrets_never_reach_the_logs(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    with FakeGenesysServer(timeout=1.0, basic_auth=("agent", "s3cret-pass"), websocket=False) as gws:
        client = make(
            GenesysChatClient,
            gws.http_url,
            username="agent",
            password="s3cret-pass",
            cookies={"JSESSIONID": "sess-secret-42"},
        )
        rec = Recorder(client)
        client.start()
        rec.wait("subscribed")
        gws.chat_state_change("c1")
        rec.wait("chat.status_change")
        client.close()
    # The fake server's own loggers (realtime_sync.testing.*) print raw headers: not the client's.
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("realtime_sync.testing"))
    assert "/meta/handshake" in logged  # frames were logged at DEBUG
    text = logged + repr(client.cookies) + repr(client.connect_options)
    for secret in ("s3cret-pass", "sess-secret-42", base64.b64encode(b"agent:s3cret-pass").decode(), "fake-browser-1"):
        assert secret not in text


def test_other_topics_pass_through_as_notification(gws: FakeGenesysServer, make: Any) -> None:
    client = make(GenesysChatClient, gws.http_url, topics=(CHATS, "/v2/me/calls"))
    rec = Recorder(client)
    client.start()
    gws.wait_for_subscription("/v2/me/calls")
    gws.wait_for_subscription(CHATS)
    gws.publish("/v2/me/calls", {"messageType": "CallStateChangeMessage", "call": {"id": "k1"}})
    gws.publish(CHATS, {"messageType": "SomethingNew", "x": 1})
    first = rec.wait("notification")
    second = rec.wait("notification", count=2)
    assert first.entity_id == "/v2/me/calls" and first.data["call"] == {"id": "k1"}
    assert second.entity_id == CHATS and second.data == {"messageType": "SomethingNew", "x": 1}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_generic_cometd_client_subscribe_publish_reject(make: Any, transport: str) -> None:
    with FakeBayeuxServer(timeout=1.0, forbidden=("/private/**",)) as server:
        client = make(CometDClient, server.http_url, transport=transport)
        client.subscribe("/chat/*")
        client.subscribe("/private/room")
        client.publish("/chat/room1", {"text": "queued before start"})
        rec = Recorder(client)
        client.start()
        rejected = rec.wait("subscription_rejected")
        assert rejected.data.reason == "403:/private/room:Forbidden"
        message = rec.wait("message")
        assert message.entity_id == "/chat/room1" and message.data == {"text": "queued before start"}
        assert message.subscription == rs.Subscription("channel", "/chat/*")
        client.unsubscribe("/chat/*")
        server.wait_for_meta("/meta/unsubscribe", timeout=T(5))
        assert not server.subscribed("/chat/*")
        with pytest.raises(rs.ConfigurationError):
            client.publish("/chat/*", 1)


def test_long_polling_a_publish_mentioning_meta_connect_does_not_wait_behind_the_held_connect(make: Any) -> None:
    # The long-polling transport puts a frame holding a /meta/connect on the connect worker,
    # where it waits for the held connect to return: a publish whose *data* contains the string
    # "/meta/connect" must still go on the other worker, at once.
    with FakeBayeuxServer(timeout=20.0, websocket=False) as server:
        client = make(CometDClient, server.http_url, transport="long-polling")
        client.subscribe("/chat/room")
        rec = Recorder(client)
        client.start()
        rec.wait("subscribed")
        # The held connect: the second one (the first returns at once).
        server.wait_until(lambda: len(server.bayeux_messages("/meta/connect")) >= 2, timeout=5)
        client.publish("/chat/room", {"text": "see the /meta/connect", "channel": "/meta/connect"})
        message = rec.wait("message", timeout=2.5)
        assert message.data["text"] == "see the /meta/connect"
        assert not [e for e in rec.events if e.name == "error"]
