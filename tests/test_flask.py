"""realtime_sync.contrib.flask with a minimal app against a fake Voxsig server."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

flask = pytest.importorskip("flask")

import realtime_sync as rs  # noqa: E402
from realtime_sync.contrib.flask import RealtimeSync  # noqa: E402
from realtime_sync.testing.actioncable import FakeVoxsigServer, conversation_payload, message_payload  # noqa: E402

from .conftest import T, run_in_fork  # noqa: E402


@pytest.fixture
def server() -> Iterator[FakeVoxsigServer]:
    with FakeVoxsigServer() as s:
        yield s


def make_app(url: str, **config: object) -> tuple[flask.Flask, RealtimeSync, list[tuple[str, object, str]]]:
    seen: list[tuple[str, object, str]] = []
    realtime = RealtimeSync()

    @realtime.on("message.created")
    def store(event: rs.Event) -> None:
        # Runs on the dispatcher thread, inside an application context of this app.
        seen.append((event.name, event.entity_id, flask.current_app.config["MARK"]))

    @realtime.on("conversation.*", entity_id=42)
    def status(event: rs.Event) -> None:
        seen.append((event.name, event.entity_id, event.data.status))

    app = flask.Flask("flask_test_app")
    app.config.update(
        MARK="in-app-context",
        REALTIME_SYNC_VENDOR="voxsig",
        REALTIME_SYNC_URL=url,
        REALTIME_SYNC_TOKEN="user-token-1",
        REALTIME_SYNC_OPTIONS={"account_id": 1, "user_id": 7, "presence_interval": None},
    )
    app.config.update(config)
    realtime.init_app(app)
    return app, realtime, seen


def test_init_app_config_and_client() -> None:
    app, realtime, _ = make_app("ws://127.0.0.1:9/cable")
    assert app.extensions["realtime_sync"] is realtime
    assert "realtime" in app.cli.commands and "listen" in app.cli.commands["realtime"].commands
    assert app.config["REALTIME_SYNC_APP_CONTEXT"] is True
    client = realtime.create_client(app)
    try:
        assert type(client).__name__ == "VoxsigClient" and client.url == "ws://127.0.0.1:9/cable"
        assert client.state is rs.State.IDLE  # nothing starts until asked
    finally:
        client.close()
    # Also through the factory pattern: RealtimeSync(app).
    other = flask.Flask("other")
    other.config.update(REALTIME_SYNC_VENDOR="jifeline", REALTIME_SYNC_URL="wss://h/ws",
                        REALTIME_SYNC_SUBSCRIBE={"ticket": [5]})  # fmt: skip
    ext = RealtimeSync(other)
    with other.app_context():
        c = ext.create_client()
    assert c.subscriptions == [rs.Subscription("ticket", 5)]
    c.close()


def test_flask_realtime_listen_handles_events_in_app_context(server: FakeVoxsigServer) -> None:
    # Counted events are the two sent below; Chatwoot's presence.update at subscribe would race them.
    server.answer_presence = False
    app, _realtime, seen = make_app(server.url)

    def script() -> None:
        server.wait_for_subscription("user-token-1", timeout=10)
        server.send_event("account_1", "message.created", message_payload(1, 42, "hi"))
        server.send_event("account_1", "conversation.status_changed", conversation_payload(42, "resolved"))

    pusher = threading.Thread(target=script, daemon=True)
    pusher.start()
    result = app.test_cli_runner().invoke(args=["realtime", "listen", "--max-events", "2", "--duration", str(T(15))])
    pusher.join(T(5))
    assert result.exit_code == 0, result.output
    assert ("message.created", 42, "in-app-context") in seen
    assert ("conversation.status_changed", 42, "resolved") in seen
    assert "subscribed" in result.output and "stopped (count), 2 event(s) handled" in result.output
    assert "user-token-1" not in result.output
    assert not [t.name for t in threading.enumerate() if t.name.startswith("realtime_sync-transport")]


def test_flask_realtime_listen_reports_bad_config() -> None:
    app = flask.Flask("bad")
    RealtimeSync(app)
    result = app.test_cli_runner().invoke(args=["realtime", "listen", "--duration", "0.1"])
    assert result.exit_code != 0 and "REALTIME_SYNC_VENDOR" in result.output
    help_result = app.test_cli_runner().invoke(args=["realtime", "listen", "--help"])
    assert help_result.exit_code == 0 and "--max-events" in help_result.output


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_get_client_is_per_process_and_survives_a_fork(server: FakeVoxsigServer) -> None:
    app, realtime, _ = make_app(server.url, REALTIME_SYNC_OPTIONS={"account_id": 1, "user_id": 7,
                                                                   "presence_interval": 0.2})  # fmt: skip
    parent = realtime.get_client(app)
    try:
        assert realtime.get_client(app) is parent
        server.wait_for_subscription("user-token-1", timeout=10)

        def child() -> list[bool]:
            checks = [parent.state is rs.State.FORKED]
            try:
                parent.send({"x": 1})
                checks.append(False)
            except rs.ClientForkedError:
                checks.append(True)
            child = realtime.get_client(app)
            checks.append(child is not parent)
            scale = float(os.environ.get("REALTIME_SYNC_TIMING_SCALE", "1"))
            checks.append(child.wait_for("presence.update", timeout=10 * scale).entity_id == 1)
            realtime.close(timeout=5)
            return checks

        result = run_in_fork(child)
        assert result == "1111", result
        assert parent.state is rs.State.CONNECTED
    finally:
        realtime.close(timeout=5)


def test_changes_only_on_a_client_without_change_detection_is_a_clear_error():
    import realtime_sync as rs
    from realtime_sync.contrib._common import HandlerRegistry

    registry = HandlerRegistry()
    registry.on("message.created", lambda e: None, changes_only=True)
    client = rs.VoxsigClient("ws://127.0.0.1:9/cable", "pubsub-token-1234", account_id=1)
    with pytest.raises(rs.ConfigurationError, match="no change detection"):
        registry.attach(client)
    client.close()
