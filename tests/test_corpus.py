"""Real-shaped payloads (realtime_sync.testing.corpus, built from Chatwoot's source and the GWS
documentation) arrive as their events, typed, with no decode error: through the adapters, the
fakes, the REAL Rails ActionCable server and faye.  Plus Chatwoot's account and presence
behaviour on the real server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync._json import dumps
from realtime_sync.genesys import GenesysChatClient
from realtime_sync.models import genesys as gmodels
from realtime_sync.models import voxsig as vmodels
from realtime_sync.models.genesys import decode_notification
from realtime_sync.protocols.voxsig import VoxsigAdapter
from realtime_sync.testing.actioncable import FakeVoxsigServer
from realtime_sync.testing.corpus import CHATWOOT_CORPUS, GWS_EXAMPLES
from realtime_sync.voxsig import VoxsigClient

from .conftest import FAST, T
from .conftest import poll_until as eventually
from .servers.harness import ActionCableServer, FayeServer, actioncable_available, faye_available
from .test_voxsig_client import Recorder

CABLE_OK, CABLE_WHY = actioncable_available()
FAYE_OK, FAYE_WHY = faye_available()


def _expect_corpus(events: list[rs.Event]) -> None:
    got = [e for e in events if e.name not in rs.LIFECYCLE_EVENTS and e.name != "presence.update"]
    want = [(n, m) for n, _d, m in CHATWOOT_CORPUS if n != "presence.update"]
    assert [(e.name, type(e.data).__name__) for e in got] == want
    for e in got:
        assert e.decode_error is None, (e.name, e.decode_error)
        assert e.account_id == 1
        # Conversations carry contact_inbox with its own pubsub_token: never forwarded in clear.
        forwarded = json.dumps(e.raw) + json.dumps(e.to_dict())
        assert "contact-inbox-token-not-ours" not in forwarded, e.name
    assert any("contact_inbox" in json.dumps(e.raw) for e in got)  # the corpus does carry it
    assert [e for e in events if e.name == "error"] == []


# -- adapters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "model"), CHATWOOT_CORPUS)
def test_every_chatwoot_payload_decodes_typed_without_a_mismatch(name: str, data: dict[str, Any], model: str) -> None:
    a = VoxsigAdapter("corpus-token-1", account_id=1, user_id=7, presence_interval=None)
    a.connection_made(0.0)
    a.receive_text('{"type":"welcome"}', 0.0)
    a.receive_text(dumps({"type": "confirm_subscription", "identifier": a.identifier}), 0.0)
    a.events_received()
    message = {"event": name, "data": {**data, "account_id": 1}}
    a.receive_text(dumps({"identifier": a.identifier, "message": message}), 1.0)
    (event,) = a.events_received()
    assert event.name == name and isinstance(event.data, getattr(vmodels, model))
    assert event.decode_error is None and event.account_id == 1


def test_the_loose_spellings_are_read_as_chatwoot_meant_them() -> None:
    by = {(n, m): d for n, d, m in CHATWOOT_CORPUS}
    typing, _ = vmodels.decode_payload(by[("conversation.typing_on", "TypingEvent")], vmodels.TypingEvent)
    assert typing.is_private is True  # "true", a form parameter passed through
    messages = [d for n, d, m in CHATWOOT_CORPUS if n == "message.created" and d.get("attachments")]
    msg, problem = vmodels.decode_payload(messages[0], vmodels.Message)
    assert problem is None and [a.file_type for a in msg.attachments] == ["image", "location"]  # null skipped
    assert msg.attachments[0].width == 1280 and msg.echo_id == "tmp-7f3a"
    conv, _ = vmodels.decode_payload(by[("conversation.created", "Conversation")], vmodels.Conversation)
    assert isinstance(conv.updated_at, float) and conv.created_at == 1700000000
    assert vmodels.as_datetime(conv.updated_at) is not None and vmodels.as_datetime(conv.first_reply_created_at)
    cache, _ = vmodels.decode_payload(by[("account.cache_invalidated", "CacheInvalidated")], vmodels.CacheInvalidated)
    assert cache.cache_keys.label == "1700000001" and cache.cache_keys.team == 0


@pytest.mark.parametrize(("channel", "data", "name", "model", "entity"), GWS_EXAMPLES)
def test_gws_documentation_examples_decode_typed_by_topic(
    channel: str, data: dict[str, Any], name: str, model: str | None, entity: Any
) -> None:
    got_name, got, got_entity, problem = decode_notification(channel, data)
    assert (got_name, got_entity, problem) == (name, entity, None)
    if model is None:
        assert got == data  # passed through as the decoded dict
    else:
        assert isinstance(got, getattr(gmodels, model))


def test_gws_call_and_device_details() -> None:
    calls = [d for c, d, *_ in GWS_EXAMPLES if c == "/v2/me/calls"]
    first, _ = decode_notification("/v2/me/calls", calls[0])[1:3], None
    call = first[0].call
    assert call.state == "Dialing" and call.participants == ("5001",) and call.capabilities == ("HangUp",)
    later = decode_notification("/v2/me/calls", calls[1])[1].call
    assert later.duration == 12 and later.user_data == {"OrderId": "A-1001"}  # "12" read as 12
    devices = [d for c, d, *_ in GWS_EXAMPLES if c == "/v2/me/devices"]
    device = decode_notification("/v2/me/devices", devices[1])[1].devices[0]
    assert device.user_state.work_mode == "AuxWork" and device.e164_number == "5000"


# -- the fake -----------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeVoxsigServer]:
    with FakeVoxsigServer(ping_interval=0.3) as server:
        yield server


def test_the_corpus_through_the_fake(fake: FakeVoxsigServer) -> None:
    client = VoxsigClient(fake.url, "user-token-1", account_id=1, user_id=7, presence_interval=None, reconnect=FAST)
    rec = Recorder(client)
    try:
        client.start()
        rec.wait_count("subscribed")
        for name, data, _model in CHATWOOT_CORPUS:
            fake.send_event("user-token-1", name, data)
        rec.wait(lambda evs: sum(1 for e in evs if e.name == "copilot.message.created") == 1, timeout=10)
        _expect_corpus(rec.events)
    finally:
        client.close(timeout=5)


# -- the real Rails ActionCable server ------------------------------------------------------------

real_cable = pytest.mark.skipif(not CABLE_OK, reason=f"real ActionCable server not installed: {CABLE_WHY}")


@pytest.fixture(scope="module")
def cable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActionCableServer]:
    if not CABLE_OK:
        pytest.skip(CABLE_WHY)
    # Presence lasts 2 s here (Chatwoot: 20 s), so that expiry is visible in a test.
    server = ActionCableServer(log_dir=tmp_path_factory.mktemp("actioncable-corpus"), presence_duration=2.0)
    server.start()
    yield server
    server.stop()


@real_cable
def test_the_corpus_through_the_real_rails_server(cable: ActionCableServer) -> None:
    token = "user-7-corpus"
    client = VoxsigClient(cable.url, token, account_id=1, user_id=7, presence_interval=None, reconnect=FAST)
    rec = Recorder(client)
    try:
        client.start()
        rec.wait_count("subscribed")
        for name, data, _model in CHATWOOT_CORPUS:
            # As Chatwoot's ActionCableListener#broadcast: account_id merged into the data.
            cable.broadcast(token, {"event": name, "data": {**data, "account_id": 1}})
        rec.wait(lambda evs: sum(1 for e in evs if e.name == "copilot.message.created") == 1, timeout=15)
        _expect_corpus(rec.events)
    finally:
        client.close(timeout=5)


@real_cable
def test_an_account_1_agent_does_not_see_account_2_on_the_real_server(cable: ActionCableServer) -> None:
    mine = VoxsigClient(cable.url, "user-7-acc", account_id=1, user_id=7, presence_interval=None, reconnect=FAST)
    every = VoxsigClient(
        cable.url, "user-8-acc", account_id=1, user_id=8, presence_interval=None, all_accounts=True, reconnect=FAST
    )
    rec_mine, rec_every = Recorder(mine), Recorder(every)
    try:
        mine.start()
        every.start()
        rec_mine.wait_count("subscribed")
        rec_every.wait_count("subscribed")
        # One user stream carries both accounts (the token is the user's); display id 42 twice.
        for account in (2, 1):
            cable.broadcast(
                f"account_{account}",
                {"event": "message.created", "data": {"id": account, "conversation_id": 42, "account_id": account}},
            )
        (got,) = rec_mine.wait_count("message.created")
        assert (got.account_id, got.entity_id, got.data.id) == (1, 42, 1)
        both = rec_every.wait_count("message.created", 2)
        assert [(e.account_id, e.entity_id) for e in both] == [(2, (2, 42)), (1, (1, 42))]
        cable.broadcast("account_1", {"event": "conversation.created", "data": {"id": 43, "account_id": 1}})
        rec_mine.wait_count("conversation.created")
        assert len(rec_mine.named("message.created")) == 1  # account 2's never came
    finally:
        mine.close(timeout=5)
        every.close(timeout=5)


@real_cable
def test_presence_keeps_an_agent_online_on_the_real_server(cable: ActionCableServer) -> None:
    # The Rails channel expires presence as Chatwoot's OnlineStatusTracker does (2 s here, 20 s
    # there); the client's interval keeps the same ratio as the default (15 s for 20 s).
    client = VoxsigClient(cable.url, "user-31-online", account_id=1, user_id=31, presence_interval=1.5, reconnect=FAST)
    silent = VoxsigClient(cable.url, "user-32-online", account_id=1, user_id=32, presence_interval=None, reconnect=FAST)
    try:
        client.start()
        silent.start()
        eventually(lambda: {"31", "32"} <= set(cable.online(1)["users"]), T(10), "both online at subscribe")
        deadline = time.monotonic() + 5.0  # more than two presence durations
        while time.monotonic() < deadline:
            assert "31" in cable.online(1)["users"]
            time.sleep(0.1)
        assert "32" not in cable.online(1)["users"]  # no update_presence: offline after 2 s
    finally:
        client.close(timeout=5)
        silent.close(timeout=5)


# -- faye: the GWS examples over a real Bayeux server ---------------------------------------------


@pytest.mark.skipif(not FAYE_OK, reason=f"faye not available: {FAYE_WHY}")
def test_gws_examples_through_faye_arrive_typed(tmp_path_factory: pytest.TempPathFactory) -> None:
    with FayeServer(log_dir=tmp_path_factory.mktemp("faye-corpus"), timeout=1.0, auth="none") as faye:
        topics = ("/v2/me/chats", "/v2/me/calls", "/v2/me/devices", "/v2/me/facebooksession")
        client = GenesysChatClient(faye.url, topics=topics, reconnect=FAST)
        seen: list[rs.Event] = []
        client.on("*", seen.append)
        try:
            client.start()
            eventually(lambda: sum(1 for e in seen if e.name == "subscribed") == len(topics), T(10), "subscribed")
            for channel, data, *_ in GWS_EXAMPLES:
                faye.publish(channel, data)
            eventually(lambda: sum(1 for e in seen if e.name == "notification") == 1, T(10), "all examples")
            eventually(
                lambda: (
                    len([e for e in seen if e.name not in rs.LIFECYCLE_EVENTS and e.name != "handshake"])
                    == len(GWS_EXAMPLES)
                ),
                T(10),
                "all",
            )
            got = [e for e in seen if e.name not in rs.LIFECYCLE_EVENTS and e.name != "handshake"]
            assert [(e.name, e.entity_id) for e in got] == [(n, ent) for _c, _d, n, _m, ent in GWS_EXAMPLES]
            for e, (_c, _d, _n, model, _ent) in zip(got, GWS_EXAMPLES, strict=True):
                assert e.decode_error is None
                if model is not None:
                    assert type(e.data).__name__ == model
        finally:
            client.close(timeout=5)
