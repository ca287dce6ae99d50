"""Smoke tests for the real test servers, driven with raw websocket-client / urllib.

They prove the harness works and pin the wire facts the library relies on.
Skipped (with the reason) when the servers are not installed: run
`bash .ci/install-servers.sh`.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
import websocket

from .harness import (
    CONTACT_TOKEN,
    EXPLODE_TOKEN,
    REJECT_TOKEN,
    USER_ID,
    USER_TOKEN,
    ActionCableServer,
    FayeServer,
    actioncable_available,
    faye_available,
    room_identifier,
)

AC_OK, AC_WHY = actioncable_available()
FAYE_OK, FAYE_WHY = faye_available()
SUBPROTOCOLS = ["actioncable-v1-json", "actioncable-unsupported"]
CHATS = "/v2/me/chats"


# --------------------------------------------------------------------------
# helpers: every wait has a deadline
# --------------------------------------------------------------------------
def recv_json(ws: websocket.WebSocket, timeout: float = 5.0):
    ws.settimeout(timeout)
    raw = ws.recv()
    assert raw, "connection closed"
    return json.loads(raw)


def recv_until(ws: websocket.WebSocket, pred, timeout: float = 5.0, skip_pings: bool = True):
    """Return the first JSON frame satisfying pred; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no matching frame before the deadline")
        msg = recv_json(ws, left)
        if skip_pings and isinstance(msg, dict) and msg.get("type") == "ping":
            continue
        if pred(msg):
            return msg


def recv_nothing(ws: websocket.WebSocket, seconds: float, ignore_pings: bool = True) -> list:
    """Collect non-ping frames for `seconds` (expected: none)."""
    got = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ws.settimeout(left)
        try:
            raw = ws.recv()
        except websocket.WebSocketTimeoutException:
            break
        msg = json.loads(raw)
        if not (ignore_pings and msg.get("type") == "ping"):
            got.append(msg)
    return got


# --------------------------------------------------------------------------
# ActionCable
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cable(tmp_path_factory):
    if not AC_OK:
        pytest.skip(AC_WHY)
    srv = ActionCableServer(log_dir=tmp_path_factory.mktemp("actioncable"))
    srv.start()
    yield srv
    srv.stop()


def cable_connect(srv: ActionCableServer, query: str = "", **kw) -> websocket.WebSocket:
    ws = websocket.create_connection(srv.url + query, origin=srv.origin, subprotocols=SUBPROTOCOLS, timeout=5, **kw)
    return ws


def subscribe(ws, ident: str) -> None:
    ws.send(json.dumps({"command": "subscribe", "identifier": ident}))


def test_actioncable_welcome_subscribe_broadcast(cable):
    ws = cable_connect(cable)
    try:
        assert ws.getsubprotocol() == "actioncable-v1-json"
        assert recv_json(ws) == {"type": "welcome"}
        ident = room_identifier(USER_TOKEN, user_id=USER_ID)
        subscribe(ws, ident)
        assert recv_until(ws, lambda m: m.get("identifier") == ident) == {
            "identifier": ident,
            "type": "confirm_subscription",
        }
        # a duplicate subscribe is ignored (no second confirmation)
        subscribe(ws, ident)
        msg = {"event": "message.created", "data": {"id": 1, "account_id": 1, "content": "hi"}}
        cable.broadcast(USER_TOKEN, msg)
        got = recv_until(ws, lambda m: "message" in m)
        assert got == {"identifier": ident, "message": msg}
        # users also stream from account_<id>
        cable.broadcast("account_1", {"event": "conversation.created", "data": {"account_id": 1}})
        got = recv_until(ws, lambda m: "message" in m)
        assert got["message"]["event"] == "conversation.created"

        # update_presence -> presence.update on the caller's stream, counted by the server
        before = cable.presence_count(USER_TOKEN)
        ws.send(
            json.dumps(
                {
                    "command": "message",
                    "identifier": ident,
                    "data": json.dumps({"action": "update_presence"}),
                }
            )
        )
        got = recv_until(ws, lambda m: "message" in m)
        assert got["message"]["event"] == "presence.update"
        assert got["message"]["data"]["users"] == {str(USER_ID): "online"}
        assert cable.presence_count(USER_TOKEN) == before + 1

        # a burst arrives complete and in order
        n = 2000
        cable.burst(USER_TOKEN, n, start=1)
        ids = []
        deadline = time.monotonic() + 10
        while len(ids) < n:
            m = recv_until(ws, lambda m: "message" in m, timeout=max(0.1, deadline - time.monotonic()))
            ids.append(m["message"]["data"]["id"])
        assert ids == list(range(1, n + 1))
    finally:
        ws.close()


def test_actioncable_never_rejects_and_fails_silently(cable):
    # Chatwoot's RoomChannel never calls `reject`: every refusal is an exception in `subscribed`.
    ws = cable_connect(cable)
    try:
        assert recv_json(ws)["type"] == "welcome"
        explode = room_identifier(EXPLODE_TOKEN)
        unknown = room_identifier("no-such-token")
        formerly_rejected = room_identifier(REJECT_TOKEN)
        no_account = room_identifier("user-token-1", account_id=None, user_id=7)
        other_account = room_identifier("user-token-1", account_id=3, user_id=7)
        contact = room_identifier(CONTACT_TOKEN)
        for ident in (explode, unknown, formerly_rejected, no_account, other_account, contact):
            subscribe(ws, ident)
        assert recv_until(ws, lambda m: m.get("identifier") == contact)["type"] == "confirm_subscription"
        # an exception in `subscribed` / an unknown token / a user without its account: nothing
        assert recv_nothing(ws, 0.5) == []
    finally:
        ws.close()


def test_actioncable_unauthorized_connection(cable):
    ws = cable_connect(cable, query="?reject=1")
    try:
        assert recv_json(ws) == {"type": "disconnect", "reason": "unauthorized", "reconnect": False}
        ws.settimeout(5)
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:  # close frame (empty) then the socket is gone
                ws.recv()
    finally:
        ws.close()


@pytest.mark.parametrize("origin", ["http://evil.example", "https://127.0.0.1:{port}", "http://localhost:{port}"])
def test_actioncable_origin_mismatch_is_404(cable, origin):
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        websocket.create_connection(
            cable.url, origin=origin.format(port=cable.port), subprotocols=SUBPROTOCOLS, timeout=5
        )
    assert exc.value.status_code == 404


def test_actioncable_restart_notice_and_process_restart(cable):
    ws = cable_connect(cable)
    try:
        assert recv_json(ws)["type"] == "welcome"
        assert cable.restart_notice() >= 1
        assert recv_until(ws, lambda m: m.get("type") == "disconnect") == {
            "type": "disconnect",
            "reason": "server_restart",
            "reconnect": True,
        }
    finally:
        ws.close()
    port = cable.port
    cable.restart()
    assert cable.port == port
    ws = cable_connect(cable)
    try:
        assert recv_json(ws)["type"] == "welcome"
    finally:
        ws.close()


# --------------------------------------------------------------------------
# faye / Bayeux
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def faye(tmp_path_factory):
    if not FAYE_OK:
        pytest.skip(FAYE_WHY)
    srv = FayeServer(log_dir=tmp_path_factory.mktemp("faye"), timeout=2)
    srv.start()
    yield srv
    srv.stop()


def handshake_msg(conn_types):
    return {
        "id": "1",
        "channel": "/meta/handshake",
        "version": "1.0",
        "minimumVersion": "1.0",
        "supportedConnectionTypes": conn_types,
    }


def test_faye_websocket_session(faye):
    ws = websocket.create_connection(faye.ws_url, timeout=5)
    try:
        ws.send(json.dumps([handshake_msg(["websocket", "long-polling"])]))
        (hs,) = recv_json(ws)
        assert hs["successful"] is True and "websocket" in hs["supportedConnectionTypes"]
        assert hs["advice"] == {"reconnect": "retry", "interval": 0, "timeout": 2000}
        cid = hs["clientId"]
        ws.send(json.dumps([{"id": "2", "channel": "/meta/subscribe", "subscription": CHATS, "clientId": cid}]))
        (sub,) = recv_json(ws)
        assert sub["successful"] is True and sub["subscription"] == CHATS
        ws.send(
            json.dumps(
                [
                    {
                        "id": "3",
                        "channel": "/meta/connect",
                        "connectionType": "websocket",
                        "advice": {"timeout": 0},
                        "clientId": cid,
                    }
                ]
            )
        )
        (conn,) = recv_json(ws)
        assert conn["channel"] == "/meta/connect" and conn["successful"] is True
        # the held connect (the heartbeat)
        t0 = time.monotonic()
        ws.send(json.dumps([{"id": "4", "channel": "/meta/connect", "connectionType": "websocket", "clientId": cid}]))
        data = {"messageType": "ChatStateChangeMessage", "notificationType": "StatusChange", "chat": {"id": "c1"}}
        faye.publish(CHATS, data)
        frame = recv_json(ws)
        assert frame[0]["channel"] == CHATS and frame[0]["data"] == data
        # a burst: every message, in order, while the connect is still held
        faye.burst(CHATS, 500)
        idx = []
        while len(idx) < 500:
            for m in recv_json(ws):
                if m["channel"] == CHATS:
                    idx.append(m["data"]["messages"][0]["index"])
        assert idx == list(range(1, 501))
        # the held connect returns after ~timeout
        reply = recv_until(ws, lambda f: any(m["channel"] == "/meta/connect" for m in f), timeout=15)
        assert reply[0]["id"] == "4" and reply[0]["successful"] is True
        assert time.monotonic() - t0 >= 1.5  # held (timeout 2 s); no upper bound: a loaded machine is slow
    finally:
        ws.close()


def _post(url: str, messages, timeout: float = 10.0):
    req = urllib.request.Request(url, data=json.dumps(messages).encode(), headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def test_faye_long_polling_session(faye):
    (hs,) = _post(faye.url, [handshake_msg(["long-polling"])])
    assert hs["successful"] is True
    cid = hs["clientId"]
    (sub,) = _post(faye.url, [{"id": "2", "channel": "/meta/subscribe", "subscription": CHATS, "clientId": cid}])
    assert sub["successful"] is True
    (conn,) = _post(
        faye.url,
        [
            {
                "id": "3",
                "channel": "/meta/connect",
                "connectionType": "long-polling",
                "advice": {"timeout": 0},
                "clientId": cid,
            }
        ],
    )
    assert conn["successful"] is True
    data = {"messageType": "MessageLogUpdated", "notificationType": "NewMessages", "messages": []}
    timer = threading.Timer(0.3, faye.publish, args=(CHATS, data))
    timer.start()
    try:
        replies = _post(
            faye.url, [{"id": "4", "channel": "/meta/connect", "connectionType": "long-polling", "clientId": cid}]
        )
    finally:
        timer.join(5)
    # Released by the message: it comes back in the held connect's own reply (a timed-out connect
    # answers alone).  Not timed: on a loaded machine the 0.3 s publish can be late.
    assert [m["channel"] for m in replies] == ["/meta/connect", CHATS]
    assert replies[1]["data"] == data
    # after expiry, a connect is refused with advice to handshake again
    assert faye.expire_clients() >= 1
    (gone,) = _post(
        faye.url, [{"id": "5", "channel": "/meta/connect", "connectionType": "long-polling", "clientId": cid}]
    )
    assert gone["successful"] is False and gone["advice"]["reconnect"] == "handshake"
    assert gone["error"].startswith("401:")


def test_faye_auth_and_no_websocket(tmp_path):
    if not FAYE_OK:
        pytest.skip(FAYE_WHY)
    with FayeServer(log_dir=tmp_path, auth="handshake", websocket=False) as srv:
        (denied,) = _post(srv.url, [handshake_msg(["long-polling"])])
        assert denied["successful"] is False and denied["advice"]["reconnect"] == "none"
        ok_msg = dict(handshake_msg(["long-polling"]), ext={"auth": "test-token-1"})
        (ok,) = _post(srv.url, [ok_msg])
        assert ok["successful"] is True and "websocket" not in ok["supportedConnectionTypes"]
        with pytest.raises(websocket.WebSocketBadStatusException) as exc:
            websocket.create_connection(srv.ws_url, timeout=5)
        assert exc.value.status_code == 400
