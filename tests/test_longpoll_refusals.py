"""A refused long-polling request reads like a refused websocket upgrade: no ``connected`` before
the server answered a request, one ``error``; a redirect's refusal names where it pointed, with
no secret of the target's query string."""

from __future__ import annotations

import pytest

import realtime_sync as rs
from realtime_sync.cometd import CometDClient
from realtime_sync.testing.bayeux import FakeBayeuxServer

from .conftest import Recorder, T
from .test_longpoll_http import subscribed_client


def lifecycle(transport: str, policy: rs.ReconnectPolicy, until: str, count: int = 1) -> list[str]:
    """The event names a client refused with HTTP 401 reports, until ``count`` x ``until``."""
    with FakeBayeuxServer(basic_auth=("agent", "right-password")) as server:
        client = CometDClient(
            server.http_url, transport=transport, username="agent", password="wrong-pass", reconnect=policy
        )
        rec = Recorder(client)
        try:
            client.start()
            rec.wait(until, count=count, timeout=10)
        finally:
            client.close(timeout=T(5))
        return [n for n in rec.names() if n in ("connected", "disconnected", "error", "reconnecting")]


def test_a_refused_long_polling_handshake_reports_no_connected_as_a_refused_upgrade() -> None:
    stop = rs.ReconnectPolicy(stop_on_auth_failure=True)
    assert lifecycle("long-polling", stop, "disconnected") == ["error", "disconnected"]
    assert lifecycle("long-polling", stop, "disconnected") == lifecycle("websocket", stop, "disconnected")
    retry = rs.ReconnectPolicy(instant_retries=0, interval=0.05, jitter=0, auth_failure_delay=0.05)
    names = lifecycle("long-polling", retry, "reconnecting", count=3)
    assert "connected" not in names and "disconnected" not in names
    assert names[:6] == ["error", "reconnecting"] * 3
    assert names[:6] == lifecycle("websocket", retry, "reconnecting", count=3)[:6]


def test_connected_is_reported_once_the_server_answers() -> None:
    with subscribed_client(2.0) as (_server, client, rec):
        names = rec.names()
        assert names.index("connected") < names.index("handshake") < names.index("subscribed")
        assert client.state is rs.State.CONNECTED
        client.close(timeout=T(5))
        assert rec.names()[-1] == "disconnected"


@pytest.mark.parametrize("on_hub", [False, True], ids=["standalone", "hub"])
def test_a_redirect_refusal_names_its_target_without_the_query(on_hub: bool) -> None:
    if on_hub:
        pytest.importorskip("h11")
    hub = rs.Hub(workers=1, name="t-redirect") if on_hub else None
    target = "https://sso.example.com/login?ticket=ST-secret-ticket-42&service=x"
    try:
        with subscribed_client(2.0, **({"hub": hub} if hub else {})) as (server, _client, rec):
            server.refuse_http(307, "moved", headers={"Location": target})
            info = rec.wait("disconnected").data
            assert "HTTP 307" in info.reason
            assert "https://sso.example.com/login?***" in info.reason, info.reason
            assert "ST-secret-ticket-42" not in info.reason and "service=x" not in info.reason
            server.refuse_http(302, "found", headers={"Location": "/elsewhere"})
            # The next connection's first request is refused: an error, as for a refused upgrade.
            err = rec.wait("error", where=lambda e: "302" in e.data.message, timeout=10).data
            assert err.kind == "connect"
            assert f"{server.http_url.rsplit('/', 1)[0]}/elsewhere, not followed" in err.message  # resolved
            server.refuse_http(None)
            rec.wait("connected", count=2, timeout=10)
    finally:
        if hub is not None:
            assert hub.close(T(10))
