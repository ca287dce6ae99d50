"""``manage.py realtime_listen --redis`` and ``flask realtime listen --redis`` against a REAL
redis-server and the fake Voxsig server: the app's handlers run (fenced by the lease) and every
event is appended to the stream."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterator

import pytest

redis = pytest.importorskip("redis")
pytest.importorskip("django")
flask = pytest.importorskip("flask")

import django  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import override_settings  # noqa: E402

from realtime_sync.testing.actioncable import FakeVoxsigServer, message_payload  # noqa: E402

from .conftest import T  # noqa: E402
from .servers.harness import RedisServer  # noqa: E402
from .servers.harness import redis_server as redis_server  # noqa: E402  (the fixture)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_project.settings")
django.setup()

from tests.django_project.inbox import realtime as inbox_handlers  # noqa: E402


@pytest.fixture
def server() -> Iterator[FakeVoxsigServer]:
    with FakeVoxsigServer() as s:
        yield s


def _push_when_subscribed(server: FakeVoxsigServer, text: str) -> threading.Thread:
    def script() -> None:
        server.wait_for_subscription("user-token-1", timeout=T(15))
        server.send_event("account_1", "message.created", message_payload(1, 42, text))

    pusher = threading.Thread(target=script, name="test-pusher", daemon=True)
    pusher.start()
    return pusher


def _stream(r: object, name: str) -> list[dict[str, object]]:
    return [{k.decode(): v.decode() for k, v in f.items()} for _i, f in r.xrange(name)]  # type: ignore[attr-defined]


def test_django_realtime_listen_with_redis_hands_events_to_the_stream(
    redis_server: RedisServer, server: FakeVoxsigServer
) -> None:
    inbox_handlers.RECEIVED.clear()
    conf = {
        "VENDOR": "voxsig",
        "URL": server.url,
        "TOKEN": "user-token-1",
        "OPTIONS": {"account_id": 1, "user_id": 7, "presence_interval": None},
    }
    pusher = _push_when_subscribed(server, "via django")
    out = io.StringIO()
    with override_settings(REALTIME_SYNC=conf):
        call_command(
            "realtime_listen", redis=redis_server.url, to_stream="dj", lease_ttl=T(2.0), duration=T(5), stdout=out
        )
    pusher.join(T(5))
    assert ("message.created", 42, "via django") in inbox_handlers.RECEIVED
    entries = _stream(redis.Redis.from_url(redis_server.url), "dj")
    # (presence.update at subscribe is Chatwoot's own broadcast: not what this test sent)
    assert [(e["name"], e["tenant"]) for e in entries if e["name"] != "presence.update"] == [
        ("message.created", "default")
    ]
    (sent,) = [e for e in entries if e["name"] == "message.created"]
    assert json.loads(str(sent["event"]))["data"]["content"] == "via django"
    assert "stopped" in out.getvalue() and "user-token-1" not in out.getvalue()


def test_flask_realtime_listen_with_redis_hands_events_to_the_stream(
    redis_server: RedisServer, server: FakeVoxsigServer
) -> None:
    from realtime_sync.contrib.flask import RealtimeSync

    seen: list[tuple[str, str]] = []
    realtime = RealtimeSync()

    @realtime.on("message.created")
    def store(event: object) -> None:
        seen.append((event.name, flask.current_app.name))  # type: ignore[attr-defined]

    app = flask.Flask("flask_redis_app")
    app.config.update(
        REALTIME_SYNC_VENDOR="voxsig",
        REALTIME_SYNC_URL=server.url,
        REALTIME_SYNC_TOKEN="user-token-1",
        REALTIME_SYNC_OPTIONS={"account_id": 1, "user_id": 7, "presence_interval": None},
    )
    realtime.init_app(app)
    pusher = _push_when_subscribed(server, "via flask")
    args = ["realtime", "listen", "--redis", redis_server.url, "--to-stream", "fl",
            "--lease-ttl", str(T(2.0)), "--duration", str(T(5))]  # fmt: skip
    result = app.test_cli_runner().invoke(args=args)
    pusher.join(T(5))
    assert result.exit_code == 0, result.output
    assert seen == [("message.created", "flask_redis_app")]
    entries = _stream(redis.Redis.from_url(redis_server.url), "fl")
    assert [(e["name"], e["tenant"]) for e in entries if e["name"] != "presence.update"] == [
        ("message.created", "flask-flask_redis_app")
    ]
    assert "user-token-1" not in result.output
    bad = app.test_cli_runner().invoke(args=["realtime", "listen", "--to-stream", "x", "--duration", "0.1"])
    assert bad.exit_code != 0 and "--redis" in bad.output
