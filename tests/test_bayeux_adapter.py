"""The Bayeux adapter, sans-I/O: frame by frame with an explicit clock."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_sync.events import ErrorInfo, Subscription
from realtime_sync.exceptions import ConfigurationError
from realtime_sync.models.genesys import ChatStateChange, MessageLogUpdate, decode_notification
from realtime_sync.protocols.base import CloseRequest, HeldFrame, IdempotentFrame
from realtime_sync.protocols.bayeux import (
    AuthExtension,
    BayeuxAdapter,
    BayeuxState,
    SessionInfo,
    channel_matches,
    validate_channel,
)

CHATS = "/v2/me/chats"


# -- helpers -----------------------------------------------------------------------------------


def frames(a: BayeuxAdapter) -> list[list[dict[str, Any]]]:
    return [json.loads(f) for f in a.data_to_send()]


def names(a: BayeuxAdapter) -> list[str]:
    return [e.name for e in a.events_received()]


def hs_reply(rid: str, client_id: str = "c1", advice: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    m = {
        "id": rid,
        "channel": "/meta/handshake",
        "successful": True,
        "version": "1.0",
        "supportedConnectionTypes": ["websocket", "long-polling"],
        "clientId": client_id,
        "advice": advice if advice is not None else {"reconnect": "retry", "interval": 0, "timeout": 10000},
    }
    m.update(kw)
    return m


def feed(a: BayeuxAdapter, now: float, *messages: Any) -> None:
    a.receive_text(json.dumps(list(messages)), now)


def connected(
    kind: str = "websocket", subs: tuple[str, ...] = (CHATS,), **kw: Any
) -> tuple[BayeuxAdapter, dict[str, Any]]:
    """An adapter with a session: handshake answered, subscriptions confirmed, first connect
    answered; returns it and the outstanding (second) connect message."""
    a = BayeuxAdapter(**kw)
    for s in subs:
        a.subscribe(s, 0.0)
    a.transport_kind = kind
    a.connection_made(0.0)
    (hs,) = frames(a)[0]
    feed(a, 0.1, hs_reply(hs["id"]))
    out = frames(a)
    connect = out[-1][0]
    for sub_msg in out[0] if subs else []:
        feed(
            a,
            0.2,
            {
                "id": sub_msg["id"],
                "channel": "/meta/subscribe",
                "successful": True,
                "subscription": sub_msg["subscription"],
            },
        )
    feed(a, 0.2, {"id": connect["id"], "channel": "/meta/connect", "successful": True})
    a.handle_timer(0.2)
    (nxt,) = frames(a)[0]
    a.events_received()
    return a, nxt


# -- handshake, subscribe, connect -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["websocket", "long-polling"])
def test_handshake_then_subscribes_then_first_connect_each_in_its_own_frame(kind: str) -> None:
    a = BayeuxAdapter()
    a.subscribe(CHATS, 0.0)
    a.subscribe("/v2/me/calls", 0.0)
    assert a.data_to_send() == []  # nothing before a connection
    a.transport_kind = kind
    a.connection_made(0.0)
    (frame,) = frames(a)
    (hs,) = frame
    assert hs["channel"] == "/meta/handshake" and hs["version"] == "1.0" and hs["minimumVersion"] == "1.0"
    assert hs["supportedConnectionTypes"] == [kind]
    assert "clientId" not in hs
    feed(a, 0.1, hs_reply(hs["id"], "x8xg"))
    subs_frame, connect_frame = frames(a)
    assert [m["subscription"] for m in subs_frame] == [CHATS, "/v2/me/calls"]
    assert all(m["channel"] == "/meta/subscribe" and m["clientId"] == "x8xg" for m in subs_frame)
    (connect,) = connect_frame  # alone: faye answers a batched subscribe only when the connect returns
    assert connect == {
        "channel": "/meta/connect",
        "clientId": "x8xg",
        "connectionType": kind,
        "advice": {"timeout": 0},
        "id": connect["id"],
    }
    events = a.events_received()
    assert [e.name for e in events] == ["handshake"]
    assert events[0].data == SessionInfo(1, kind)


def test_subscribe_results_are_events_with_the_servers_error() -> None:
    a = BayeuxAdapter()
    a.subscribe(CHATS, 0.0)
    a.subscribe("/forbidden", 0.0)
    a.connection_made(0.0)
    (hs,) = frames(a)[0]
    feed(a, 0.1, hs_reply(hs["id"]))
    subs, _ = frames(a)
    a.events_received()
    feed(
        a,
        0.2,
        {"id": subs[0]["id"], "channel": "/meta/subscribe", "successful": True, "subscription": CHATS},
        {
            "id": subs[1]["id"],
            "channel": "/meta/subscribe",
            "successful": False,
            "subscription": "/forbidden",
            "error": "403:/forbidden:Forbidden",
        },
    )
    ok, rejected = a.events_received()
    assert ok.name == "subscribed" and ok.data.subscription == Subscription("channel", CHATS)
    assert rejected.name == "subscription_rejected" and rejected.data.reason == "403:/forbidden:Forbidden"


def test_subscribe_while_connected_goes_alone_and_never_with_the_held_connect() -> None:
    a, _held = connected()
    a.subscribe("/v2/me/calls", 1.0)
    (frame,) = frames(a)
    assert [m["channel"] for m in frame] == ["/meta/subscribe"]
    a.subscribe("/v2/me/calls", 1.1)  # already wanted: nothing
    assert a.data_to_send() == []


def test_exactly_one_connect_outstanding_and_the_next_after_advice_interval() -> None:
    a, held = connected()
    # While the connect is held nothing else goes out, however often timers fire.
    for t in (1.0, 2.0, 5.0):
        a.handle_timer(t)
        assert a.data_to_send() == []
    feed(
        a,
        6.0,
        {
            "id": held["id"],
            "channel": "/meta/connect",
            "successful": True,
            "advice": {"reconnect": "retry", "interval": 2500, "timeout": 10000},
        },
    )
    assert a.data_to_send() == []
    assert a.next_deadline() == pytest.approx(8.5)
    a.handle_timer(8.4)
    assert a.data_to_send() == []
    a.handle_timer(8.5)
    (frame,) = frames(a)
    assert frame[0]["channel"] == "/meta/connect" and "advice" not in frame[0]
    # Advice supersedes and is kept: a reply without advice keeps interval 2.5 s.
    feed(a, 9.0, {"id": frame[0]["id"], "channel": "/meta/connect", "successful": True})
    assert a.next_deadline() == pytest.approx(11.5)


def test_data_messages_are_never_matched_by_id() -> None:
    a, held = connected(decoder=decode_notification)
    data = {
        "messageType": "ChatStateChangeMessage",
        "notificationType": "StatusChange",
        "chat": {"id": "c9", "state": "Chatting"},
    }
    # The publisher's id happens to equal our outstanding connect's id.
    feed(a, 1.0, {"channel": CHATS, "data": data, "id": held["id"]})
    (event,) = a.events_received()
    assert event.name == "chat.status_change" and event.entity_id == "c9"
    assert isinstance(event.data, ChatStateChange)
    assert event.subscription == Subscription("channel", CHATS)
    assert event.raw["id"] == held["id"]
    # The connect is still outstanding: its reply is still expected and matched.
    feed(a, 2.0, {"id": held["id"], "channel": "/meta/connect", "successful": True})
    a.handle_timer(2.0)
    assert frames(a)[0][0]["channel"] == "/meta/connect"


def test_a_bare_object_frame_is_accepted() -> None:
    a, _ = connected()
    a.receive_text(json.dumps({"channel": CHATS, "data": {"x": 1}}), 1.0)
    (event,) = a.events_received()
    assert event.name == "message" and event.entity_id == CHATS and event.data == {"x": 1}


def test_wildcard_subscription_routes_messages() -> None:
    a, _ = connected(subs=("/chat/*",))
    feed(a, 1.0, {"channel": "/chat/room1", "data": 1}, {"channel": "/chat/room1/deep", "data": 2})
    e1, e2 = a.events_received()
    assert e1.subscription == Subscription("channel", "/chat/*") and e2.subscription is None


# -- advice ------------------------------------------------------------------------------------


def test_advice_handshake_starts_a_new_session_and_resubscribes_everything() -> None:
    a, held = connected(subs=(CHATS, "/v2/me/calls"))
    feed(
        a,
        1.0,
        {
            "id": held["id"],
            "channel": "/meta/connect",
            "successful": False,
            "error": "401:c1:Unknown client",
            "advice": {"reconnect": "handshake", "interval": 0},
        },
    )
    assert a.state is BayeuxState.HANDSHAKING and a.client_id is None
    a.handle_timer(1.0)
    (hs,) = frames(a)[0]
    assert hs["channel"] == "/meta/handshake"
    feed(a, 1.1, hs_reply(hs["id"], "c2"))
    subs, connect = frames(a)
    assert sorted(m["subscription"] for m in subs) == ["/v2/me/calls", CHATS]
    assert all(m["clientId"] == "c2" for m in subs) and connect[0]["clientId"] == "c2"
    (event,) = a.events_received()
    assert event.name == "handshake" and event.data.number == 2
    for m in subs:
        feed(
            a, 1.2, {"id": m["id"], "channel": "/meta/subscribe", "successful": True, "subscription": m["subscription"]}
        )
    assert names(a) == ["subscribed", "subscribed"]


def test_the_error_string_does_not_matter_only_the_advice() -> None:
    for error in ("402::Unknown client", "403::Unknown client", "402::session_unknown", "whatever"):
        a, held = connected()
        feed(
            a,
            1.0,
            {
                "id": held["id"],
                "channel": "/meta/connect",
                "successful": False,
                "error": error,
                "advice": {"reconnect": "handshake"},
            },
        )
        a.handle_timer(1.0)
        assert frames(a)[0][0]["channel"] == "/meta/handshake"
    # "Unknown client" without handshake advice is a plain retry.
    a, held = connected()
    feed(a, 1.0, {"id": held["id"], "channel": "/meta/connect", "successful": False, "error": "402::Unknown client"})
    a.handle_timer(2.0)
    assert frames(a)[0][0]["channel"] == "/meta/connect"


def test_advice_none_reports_and_stops_for_good() -> None:
    a, held = connected()
    feed(
        a,
        1.0,
        {
            "id": held["id"],
            "channel": "/meta/connect",
            "successful": False,
            "error": "403::go away",
            "advice": {"reconnect": "none"},
        },
    )
    (event,) = a.events_received()
    assert event.name == "error" and isinstance(event.data, ErrorInfo) and event.data.kind == "server"
    assert "go away" in event.data.message
    req = a.close_request()
    assert isinstance(req, CloseRequest) and req.reconnect is False
    assert a.state is BayeuxState.STOPPED
    a.connection_lost(1.1)
    a.connection_made(2.0)  # even if the transport came back, the adapter refuses
    assert a.data_to_send() == []
    assert a.close_request() is not None


def test_advice_none_on_handshake_stops() -> None:
    a = BayeuxAdapter()
    a.connection_made(0.0)
    (hs,) = frames(a)[0]
    feed(
        a,
        0.1,
        {
            "id": hs["id"],
            "channel": "/meta/handshake",
            "successful": False,
            "error": "403::denied",
            "advice": {"reconnect": "none"},
        },
    )
    assert names(a) == ["error"]
    # A credential refusal (auth=True, so start(wait=True) raises AuthenticationError), already
    # reported by the error event above.
    assert a.close_request() == CloseRequest(
        "handshake refused: 403::denied", reconnect=False, auth=True, reported=True
    )


# -- timing: dead connections and backoff ------------------------------------------------------


def test_a_connect_unanswered_within_timeout_plus_allowance_is_a_dead_connection() -> None:
    a, _held = connected(max_network_delay=10.0)  # advice.timeout = 10 s; sent at 0.2
    assert a.next_deadline() == pytest.approx(0.2 + 10 + 10)
    a.handle_timer(20.1)
    assert a.close_request() is None
    a.handle_timer(20.2)
    req = a.close_request()
    assert req is not None and req.reconnect and "no reply to /meta/connect" in req.reason


def test_the_first_connect_returns_at_once_so_its_allowance_is_the_network_delay() -> None:
    a = BayeuxAdapter(max_network_delay=3.0)
    a.connection_made(0.0)
    (hs,) = frames(a)[0]
    feed(a, 1.0, hs_reply(hs["id"]))
    frames(a)
    assert a.next_deadline() == pytest.approx(4.0)
    a.handle_timer(4.0)
    assert "no reply to /meta/connect" in a.close_request().reason  # type: ignore[union-attr]


def test_an_unanswered_handshake_or_subscribe_is_a_dead_connection_too() -> None:
    a = BayeuxAdapter(max_network_delay=5.0)
    a.connection_made(0.0)
    a.handle_timer(5.0)
    assert "no reply to /meta/handshake" in a.close_request().reason  # type: ignore[union-attr]


def test_connect_failures_back_off_linearly_by_one_second_up_to_sixty_and_reset_on_success() -> None:
    a, held = connected()
    now = 1.0
    delays = []
    for _ in range(63):
        feed(a, now, {"id": held["id"], "channel": "/meta/connect", "successful": False, "error": "500::oops"})
        deadline = a.next_deadline()
        assert deadline is not None
        delays.append(round(deadline - now, 6))
        # the connect deadline of nothing outstanding: the next one is the retry
        now = deadline
        a.handle_timer(now)
        (held,) = frames(a)[0]
    assert delays[:4] == [1.0, 2.0, 3.0, 4.0]
    assert delays[59:] == [60.0] * 4
    feed(a, now, {"id": held["id"], "channel": "/meta/connect", "successful": True})
    # Reset: the next connect goes at once (advice interval 0), not after a back-off.
    assert a.backoff.current.failures == 0
    ((nxt,),) = frames(a)
    assert nxt["channel"] == "/meta/connect"


def test_handshake_refusals_retry_with_backoff_and_auth_refusals_close() -> None:
    a = BayeuxAdapter()
    a.connection_made(0.0)
    now = 0.0
    waits = []
    for _ in range(3):
        (hs,) = frames(a)[0]
        feed(
            a,
            now,
            {
                "id": hs["id"],
                "channel": "/meta/handshake",
                "successful": False,
                "error": "500::busy",
                "advice": {"reconnect": "handshake", "interval": 0},
            },
        )
        waits.append(a.next_deadline() - now)  # type: ignore[operator]
        now = a.next_deadline()  # type: ignore[assignment]
        a.handle_timer(now)
    assert waits == [0.0, 1.0, 2.0]  # the reference: delay = backoff, then increase
    assert all(e.data.kind == "server" for e in a.events_received())
    (hs,) = frames(a)[0]
    feed(
        a,
        now,
        {"id": hs["id"], "channel": "/meta/handshake", "successful": False, "error": "401::Authentication required"},
    )
    (event,) = a.events_received()
    assert event.data.kind == "auth"
    req = a.close_request()
    assert req is not None and req.auth and req.reconnect


def test_http_401_failures_from_long_polling_are_credential_refusals() -> None:
    a = BayeuxAdapter()
    a.transport_kind = "long-polling"
    a.connection_made(0.0)
    (hs,) = frames(a)[0]
    feed(
        a,
        0.1,
        {
            "id": hs["id"],
            "channel": "/meta/handshake",
            "successful": False,
            "error": "401::HTTP 401 Unauthorized",
            "failure": {"httpCode": 401, "reason": "HTTP 401 Unauthorized"},
        },
    )
    (event,) = a.events_received()
    assert event.name == "error" and event.data.kind == "auth"
    req = a.close_request()
    assert req is not None and req.auth


# -- connections and sessions ------------------------------------------------------------------


def test_a_new_connection_resumes_a_live_session_without_handshake() -> None:
    a, _held = connected(subs=(CHATS,))
    a.connection_lost(1.0, "dropped")
    a.subscribe("/v2/me/calls", 1.5)  # while disconnected: queued as desired state
    assert a.data_to_send() == []
    a.connection_made(2.0)
    (connect,) = frames(a)[0]
    assert connect["channel"] == "/meta/connect" and connect["clientId"] == "c1" and connect["advice"] == {"timeout": 0}
    feed(a, 2.1, {"id": connect["id"], "channel": "/meta/connect", "successful": True})
    subs, (nxt,) = frames(a)  # and the next connect, at once (advice interval 0)
    assert [m["subscription"] for m in subs] == ["/v2/me/calls"]  # only what the session lacks
    assert nxt["channel"] == "/meta/connect"
    assert a.events_received() == []  # no new session


def test_a_resumed_session_the_server_forgot_is_replaced() -> None:
    a, _held = connected(subs=(CHATS,))
    a.connection_lost(1.0, "dropped")
    a.connection_made(2.0)
    (connect,) = frames(a)[0]
    feed(
        a,
        2.1,
        {
            "id": connect["id"],
            "channel": "/meta/connect",
            "successful": False,
            "error": "401:c1:Unknown client",
            "advice": {"reconnect": "handshake", "interval": 0},
        },
    )
    a.handle_timer(2.1)
    (hs,) = frames(a)[0]
    feed(a, 2.2, hs_reply(hs["id"], "c2"))
    subs, _ = frames(a)
    assert [m["subscription"] for m in subs] == [CHATS]


def test_after_a_long_outage_the_new_connection_handshakes() -> None:
    a, _held = connected()
    a.connection_lost(1.0, "dropped")
    a.connection_made(1000.0)
    assert frames(a)[0][0]["channel"] == "/meta/handshake"


def test_close_sends_disconnect_and_its_reply_closes_for_good() -> None:
    a, _held = connected()
    a.start_closing(1.0)
    (frame,) = frames(a)
    assert frame == [{"channel": "/meta/disconnect", "clientId": "c1", "id": frame[0]["id"]}]
    feed(a, 1.1, {"id": frame[0]["id"], "channel": "/meta/disconnect", "successful": True})
    req = a.close_request()
    assert req is not None and not req.reconnect


def test_switches_transport_when_the_server_does_not_offer_it() -> None:
    a = BayeuxAdapter()
    a.transport_kind = "websocket"
    a.connection_made(0.0)
    (hs,) = frames(a)[0]
    feed(a, 0.1, hs_reply(hs["id"], supportedConnectionTypes=["long-polling", "callback-polling"]))
    assert a.transport_hint == "long-polling"
    req = a.close_request()
    assert req is not None and req.delay == 0.0


def test_a_stale_close_request_does_not_survive_into_the_next_connection() -> None:
    a, _held = connected()
    a.handle_timer(1000.0)  # dead connect -> close requested
    a.connection_lost(1000.0)
    a.connection_made(1001.0)
    assert a.close_request() is None


# -- publish, unsubscribe, extensions ----------------------------------------------------------


def test_publish_is_held_until_a_session_exists_and_failures_are_reported() -> None:
    a = BayeuxAdapter()
    a.publish("/chat/demo", {"text": "hi"}, 0.0)
    a.connection_made(0.0)
    (hs,) = frames(a)[0]
    feed(a, 0.1, hs_reply(hs["id"]))
    pub, _connect = frames(a)
    assert pub[0]["channel"] == "/chat/demo" and pub[0]["data"] == {"text": "hi"} and pub[0]["clientId"] == "c1"
    a.events_received()
    feed(a, 0.2, {"id": pub[0]["id"], "channel": "/chat/demo", "successful": False, "error": "403::denied"})
    (event,) = a.events_received()
    assert event.name == "error" and "403::denied" in event.data.message
    # A successful publish reply makes no event; a data message on the same channel does.
    a.publish("/chat/demo", 1, 0.3)
    (pub2,) = frames(a)[0]
    feed(a, 0.4, {"id": pub2["id"], "channel": "/chat/demo", "successful": True})
    assert a.events_received() == []


def publish_errors(a: BayeuxAdapter) -> list[ErrorInfo]:
    return [e.data for e in a.events_received() if e.name == "error" and e.data.kind == "publish"]


@pytest.mark.parametrize("kind", ["websocket", "long-polling"])
def test_a_publish_in_flight_when_the_connection_is_lost_is_reported_once_and_not_resent(kind: str) -> None:
    # CometD's clients fail the messages of a failed request (cometd.js _handleFailure ->
    # _failMessage: the publish callback gets successful: false); they do not re-send them.
    a, _connect = connected(kind)
    a.publish("/chat/demo", {"text": "lost?"}, 1.0)
    (pub,) = frames(a)[0]
    a.connection_lost(1.5, "HTTP 500 Server Error")
    events = a.events_received()
    (err,) = [e for e in events if e.name == "error"]
    assert err.data.kind == "publish"
    assert "'/chat/demo'" in err.data.message and f"id {pub['id']}" in err.data.message
    assert "HTTP 500" in err.data.message
    assert err.entity_id == "/chat/demo"
    assert err.raw == {"id": pub["id"], "channel": "/chat/demo", "data": {"text": "lost?"}}
    # The session resumes on the next connection: the publish is not sent again.
    a.connection_made(2.0)
    (resume,) = frames(a)[0]
    feed(a, 2.1, {"id": resume["id"], "channel": "/meta/connect", "successful": True})
    assert [m["channel"] for f in frames(a) for m in f] == ["/meta/connect"]  # the next connect only
    assert publish_errors(a) == []


def test_a_publish_unanswered_in_time_is_reported_with_the_dead_connection() -> None:
    a, _ = connected()
    a.publish("/chat/demo", 1, 1.0)
    frames(a)
    a.handle_timer(1.0 + a.max_network_delay + 0.1)
    assert isinstance(a.close_request(), CloseRequest)
    (err,) = publish_errors(a)
    assert "no reply" in err.message and "'/chat/demo'" in err.message
    a.connection_lost(12.0, "presumed dead")
    assert publish_errors(a) == []  # once


def test_a_publish_refused_because_the_session_expired_is_reported() -> None:
    # The refusal carries advice "handshake": the session ends at once, but the publish's own
    # reply must still be matched and reported (it was dropped as unmatched before).
    a, _ = connected()
    a.publish("/chat/demo", 1, 1.0)
    (pub,) = frames(a)[0]
    a.events_received()
    refusal = {
        "id": pub["id"],
        "channel": "/chat/demo",
        "successful": False,
        "error": "402::Unknown client",
        "advice": {"reconnect": "handshake", "interval": 0},
    }
    feed(a, 1.1, refusal)
    errors = [e.data for e in a.events_received() if e.name == "error"]
    assert any("/chat/demo" in e.message and "402::Unknown client" in e.message for e in errors), errors


def test_closing_reports_queued_publishes_and_a_stopped_client_reports_new_ones() -> None:
    a = BayeuxAdapter()
    a.publish("/chat/demo", {"n": 1}, 0.0)  # no session yet: queued
    a.start_closing(0.5)
    (err,) = publish_errors(a)
    assert "'/chat/demo'" in err.message and "not sent" in err.message
    # A publish in flight at a normal close is not failed: cometd.js waits for its reply
    # (disconnect() keeps the transport); ours is unconfirmed, logged, not an error.
    b, _ = connected()
    b.publish("/chat/demo", 2, 1.0)
    frames(b)
    b.start_closing(1.1)
    b.connection_lost(1.2, "closed by the client")
    assert publish_errors(b) == []
    # advice "none": the client stops for good; a publish is refused with an error, not dropped.
    c, connect = connected()
    feed(
        c, 1.0, {"id": connect["id"], "channel": "/meta/connect", "successful": False, "advice": {"reconnect": "none"}}
    )
    c.events_received()
    c.publish("/chat/demo", 3, 1.1)
    (err,) = publish_errors(c)
    assert "'/chat/demo'" in err.message


def test_unsubscribe_sends_and_forgets() -> None:
    a, _ = connected(subs=(CHATS,))
    a.unsubscribe(CHATS, 1.0)
    (frame,) = frames(a)
    assert frame[0]["channel"] == "/meta/unsubscribe" and frame[0]["subscription"] == CHATS
    assert len(a.subscriptions) == 0
    a.unsubscribe(CHATS, 1.1)
    assert a.data_to_send() == []


def test_extensions_see_every_message_both_ways(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="realtime_sync")
    seen: list[str] = []

    class Spy:
        def outgoing(self, m: dict[str, Any]) -> dict[str, Any]:
            seen.append("out " + m["channel"])
            return m

        def incoming(self, m: dict[str, Any]) -> dict[str, Any] | None:
            seen.append("in " + m["channel"])
            return None if m["channel"] == "/drop" else m

    class Broken:
        def outgoing(self, m: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("boom")

    a = BayeuxAdapter(extensions=[AuthExtension({"auth": "tok-123456"}), Spy(), Broken()])
    a.connection_made(0.0)
    (hs,) = frames(a)[0]
    assert hs["ext"] == {"auth": "tok-123456"}
    errors = a.events_received()
    assert [e.data.kind for e in errors] == ["handler"]  # Broken raised; the message went on
    # Logged once, with its traceback, at ERROR (not again as a WARNING line of the error event).
    assert [(r.levelname, r.exc_info is not None) for r in caplog.records] == [("ERROR", True)]
    feed(a, 0.1, hs_reply(hs["id"]))
    a.events_received()
    frames(a)
    feed(a, 0.2, {"channel": "/drop", "data": 1}, {"channel": "/keep", "data": 2})
    assert [e.entity_id for e in a.events_received() if e.name == "message"] == ["/keep"]
    assert seen[:2] == ["out /meta/handshake", "in /meta/handshake"]
    assert "tok-123456" not in repr(AuthExtension({"auth": "tok-123456"}))


# -- bad input ---------------------------------------------------------------------------------


def test_bad_frames_become_error_events_and_later_frames_still_work() -> None:
    a, held = connected(decoder=decode_notification)
    a.receive_text("not json", 1.0)
    a.receive_text("42", 1.0)
    feed(
        a,
        1.0,
        7,
        {"no": "channel"},
        {
            "channel": CHATS,
            "data": {
                "messageType": "MessageLogUpdated",
                "notificationType": "NewMessages",
                "messages": [{"index": "three"}],
            },
        },
    )
    feed(a, 1.0, {"channel": "/meta/connect", "successful": "yes", "id": held["id"]})
    events = a.events_received()
    # The chat notification with an unreadable index is delivered anyway (the index left at its
    # default) and the mismatch reported; the other bad frames are errors only.
    assert [e.name for e in events] == ["error"] * 4 + ["chat.new_messages", "error", "error"]
    assert [e.data.kind for e in events if e.name == "error"] == ["bad_frame"] * 4 + ["decode", "bad_frame"]
    assert events[4].data.messages[0].index is None and "index" in events[4].decode_error
    assert "index" in events[5].data.message
    good = {
        "messageType": "MessageLogUpdated",
        "notificationType": "NewMessages",
        "messages": [{"index": 3, "text": "hi"}],
        "chatPath": "/chats/c7",
    }
    feed(a, 2.0, {"channel": CHATS, "data": good})
    (event,) = a.events_received()
    assert event.name == "chat.new_messages" and event.entity_id == "c7"
    assert isinstance(event.data, MessageLogUpdate) and event.data.messages[0].text == "hi"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
_channels = st.sampled_from(
    ["/meta/handshake", "/meta/connect", "/meta/subscribe", "/meta/disconnect", CHATS, "/x", 3, None]
)
_messages = st.fixed_dictionaries(
    {"channel": _channels},
    optional={
        "id": st.sampled_from(["1", "2", "3", "4", 2, None]),
        "successful": st.sampled_from([True, False, None, "x"]),
        "clientId": st.sampled_from(["c1", None, 5]),
        "advice": st.one_of(
            st.none(),
            st.text(max_size=3),
            st.fixed_dictionaries(
                {},
                optional={
                    "reconnect": st.sampled_from(["retry", "handshake", "none", 1]),
                    "interval": st.one_of(st.integers(-5, 5000), st.text(max_size=2)),
                    "timeout": st.one_of(st.integers(-5, 5000), st.none()),
                },
            ),
        ),
        "data": _json,
        "error": st.one_of(st.text(max_size=10), st.integers()),
        "supportedConnectionTypes": st.one_of(st.none(), st.lists(st.sampled_from(["websocket", "long-polling", 3]))),
        "subscription": st.sampled_from([CHATS, None, 1]),
        "failure": st.one_of(st.none(), st.fixed_dictionaries({"httpCode": st.sampled_from([401, 500, "x"])})),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_never_raises(text: str) -> None:
    a, _ = connected(decoder=decode_notification)
    a.receive_text(text, 1.0)
    for e in a.events_received():
        assert e.name in ("error", "message", "notification") or e.name.startswith("chat.")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.one_of(_messages, _json), max_size=4), max_size=6), st.booleans())
def test_any_message_sequence_never_raises_and_keeps_one_connect(batches: list[list[Any]], fresh: bool) -> None:
    a = BayeuxAdapter(decoder=decode_notification)
    a.subscribe(CHATS, 0.0)
    a.connection_made(0.0)
    if not fresh:
        a.receive_text(json.dumps([hs_reply("1")]), 0.1)
    now = 0.2
    for batch in batches:
        a.receive_text(json.dumps(batch), now)
        a.handle_timer(now)
        now += 1.0
        sent = [json.loads(f) for f in a.data_to_send()]
        for frame in sent:
            channels = [m["channel"] for m in frame]
            # a connect always travels alone
            assert "/meta/connect" not in channels or channels == ["/meta/connect"]
        outstanding = [r for r in a._requests.values() if r.channel == "/meta/connect"]
        assert len(outstanding) <= 1
        a.events_received()
        a.close_request()


# -- helpers of the module ---------------------------------------------------------------------


def test_channel_validation_and_matching() -> None:
    assert validate_channel("/a/**", subscribe=True) == "/a/**"
    for bad in ("a/b", "/", "/a//b", "/meta/connect", "/a/*/b", "/a/b*"):
        with pytest.raises(ConfigurationError):
            validate_channel(bad, subscribe=True)
    with pytest.raises(ConfigurationError):
        validate_channel("/a/*", subscribe=False)
    assert channel_matches("/a/*", "/a/b") and not channel_matches("/a/*", "/a")
    assert channel_matches("/a/**", "/a/b/c") and not channel_matches("/a/**", "/b/c")


def test_a_server_side_meta_disconnect_ends_the_session_as_cometd_js_does() -> None:
    # {"channel":"/meta/disconnect","successful":true} with no id: the server ended the session;
    # cometd.js stops (no re-handshake), so does the adapter.
    a, _held = connected()
    feed(a, 1.0, {"channel": "/meta/disconnect", "successful": True})
    events = a.events_received()
    assert [e.name for e in events] == ["error"] and "ended" in events[0].data.message
    req = a.close_request()
    assert req is not None and req.reconnect is False
    assert a.client_id is None
    a.handle_timer(100.0)
    assert frames(a) == []  # no handshake, no connect


def test_an_unmatched_failed_meta_disconnect_is_not_an_end() -> None:
    a, _held = connected()
    feed(a, 1.0, {"channel": "/meta/disconnect", "successful": False, "error": "x"})
    assert a.close_request() is None


def test_the_same_connect_reply_again_is_taken_like_any_other() -> None:
    """An idle session gets the same reply to every held connect; the adapter takes a repeat
    without decoding it (see BayeuxAdapter._remember_echo): what follows must not differ."""

    class Seen:
        def __init__(self) -> None:
            self.n = 0

        def incoming(self, m: dict[str, Any]) -> dict[str, Any]:
            self.n += 1
            return m

    a, held = connected()
    now = 1.0

    def reply(rid: str, extra: str = "") -> str:  # as a server writes it: the same text but the id
        return '[{"id": "' + rid + '", "channel": "/meta/connect", "successful": true' + extra + "}]"

    for _ in range(5):  # the first is decoded, the next ones are the same text around a new id
        now += 10.0
        a.receive_text(reply(held["id"]), now)
        ((held,),) = frames(a)
        assert held["channel"] == "/meta/connect" and "advice" not in held
        assert a.next_deadline() == pytest.approx(now + 10.0 + a.max_network_delay)
        assert a.events_received() == [] and a.close_request() is None
    assert len(a._requests) == 1  # no reply forgotten
    # The same text around another id (a late reply to an older connect) is not ours.
    a.receive_text(reply("999"), now + 1)
    assert frames(a) == []
    # A data message with it: decoded, delivered.
    now += 1.0
    a.receive_text(
        '[{"channel": "/v2/me/chats", "data": {"x": 1}}, ' + reply(held["id"])[1:],
        now,
    )
    assert [e.name for e in a.events_received()] == ["message"]
    ((held,),) = frames(a)
    # Advice "handshake" in the same shape: the session is lost, as without the shortcut.
    a.receive_text(
        reply(held["id"], ', "advice": {"reconnect": "handshake"}'),
        now + 1,
    )
    assert a.state is BayeuxState.HANDSHAKING
    # With an extension, every reply goes through it.
    b, held = connected()
    seen = Seen()
    b.add_extension(seen)
    for k in range(3):
        b.receive_text(reply(held["id"]), 20.0 + k)
        ((held,),) = frames(b)
    assert seen.n == 3


def test_only_frames_of_meta_messages_are_marked_safe_to_send_twice() -> None:
    # A long-polling transport re-sends a request lost on a kept-alive connection only when the
    # adapter marked its frame idempotent: /meta/ messages yes, a publish (or a /service/
    # request) never (it may have been applied once already).
    a = BayeuxAdapter()
    a.transport_kind = "long-polling"
    a.connection_made(0.0)
    (hs,) = a.data_to_send()
    assert isinstance(hs, IdempotentFrame) and not getattr(hs, "held", False)
    feed(a, 0.1, hs_reply(json.loads(hs)[0]["id"]))
    (connect,) = a.data_to_send()
    assert isinstance(connect, HeldFrame) and connect.idempotent
    a.subscribe(CHATS, 0.2)
    a.unsubscribe(CHATS, 0.3)
    a.publish("/chat/room", {"n": 1}, 0.4)
    a.publish("/service/echo", {"n": 2}, 0.5)
    a.start_closing(0.6)
    out = a.data_to_send()
    channels = [json.loads(f)[0]["channel"] for f in out]
    assert channels == ["/meta/subscribe", "/meta/unsubscribe", "/chat/room", "/service/echo", "/meta/disconnect"]
    assert [getattr(f, "idempotent", False) for f in out] == [True, True, False, False, True]
