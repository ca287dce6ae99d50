"""Credentials in the URL (``https://user:password@HOST/api/v2/notifications``) are sent as HTTP
Basic auth, as curl and requests do with a URL's userinfo: on the websocket upgrade and on every
long-polling request, standalone and on a hub.  They are the ``username=``/``password=``
options by another spelling: giving both is refused at construction.  Never in a log line, a
repr, an exception or an event."""

from __future__ import annotations

import logging

import pytest

import realtime_sync as rs
from realtime_sync.cometd import CometDClient
from realtime_sync.genesys import GenesysChatClient
from realtime_sync.testing.bayeux import FakeGenesysServer

from .conftest import FAST, Recorder, T, on

USER, PASSWORD = "agent1", "p@ss:w/rd-42"
QUOTED = "p%40ss%3Aw%2Frd-42"  # percent-encoded in the URL, as RFC 3986 asks


def with_userinfo(url: str, userinfo: str = f"{USER}:{QUOTED}") -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{userinfo}@{rest}"


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
def test_url_credentials_are_sent_as_basic_auth(
    transport: str, hub: rs.Hub | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    # The fake server answers 401 to an upgrade or a POST without these credentials.
    with FakeGenesysServer(timeout=1.0, basic_auth=(USER, PASSWORD)) as gws:
        client = GenesysChatClient(with_userinfo(gws.http_url), transport=transport, reconnect=FAST, **on(hub))
        rec = Recorder(client)
        try:
            client.start()
            rec.wait("subscribed", timeout=10)
            gws.chat_state_change("c1")
            assert rec.wait("chat.status_change").entity_id == "c1"
            assert client.snapshot.transport == transport
            shown = " ".join([repr(client), str(client.url), repr(client.connect_options), repr(rec.events)])
        finally:
            client.close(timeout=T(5))
        assert "@" not in client.url and USER not in client.url  # the URL the client uses has none
        logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("realtime_sync.testing"))
        for secret in (PASSWORD, QUOTED):
            assert secret not in shown and secret not in logged
        assert [e.data for e in rec.events if e.name == "error"] == []


def test_a_user_without_a_password_is_sent_with_an_empty_one() -> None:
    with FakeGenesysServer(timeout=1.0, basic_auth=(USER, "")) as gws:
        client = CometDClient(with_userinfo(gws.http_url, USER), transport="long-polling", reconnect=FAST)
        try:
            client.subscribe("/v2/me/chats")
            assert client.wait_for("subscribed", timeout=T(10))
        finally:
            client.close(timeout=T(5))


@pytest.mark.parametrize("cls", [GenesysChatClient, CometDClient])
def test_url_credentials_and_username_password_together_are_refused(cls: type[CometDClient]) -> None:
    url = with_userinfo("https://gws.example.com/api/v2/notifications")
    with pytest.raises(rs.ConfigurationError) as info:
        cls(url, username="agent2", password="other-secret")
    message = str(info.value)
    assert "username=" in message and "password=" in message and "URL" in message
    assert PASSWORD not in message and QUOTED not in message and "other-secret" not in message
