"""A web worker's client sends; it does not run the listener's handlers (issue 12 item 3).

Under gunicorn ``--preload -w 2``, a view that used ``get_client()`` made every worker a second
listener: the apps' handlers ran there too, and messages were stored once per worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from realtime_sync.testing.actioncable import FakeVoxsigServer, message_payload

from .conftest import T


@pytest.fixture
def server() -> Iterator[FakeVoxsigServer]:
    with FakeVoxsigServer() as s:
        yield s


def test_django_get_client_has_no_listener_handlers_unless_asked(server: FakeVoxsigServer) -> None:
    pytest.importorskip("django")
    import django
    from django.test import override_settings

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_project.settings")
    django.setup()
    from realtime_sync.contrib.django import close_clients, get_client
    from tests.django_project.inbox import realtime as inbox_handlers

    settings = {
        "VENDOR": "voxsig",
        "URL": server.url,
        "TOKEN": "user-token-1",
        "OPTIONS": {"account_id": 1, "user_id": 7, "presence_interval": None},
    }
    inbox_handlers.RECEIVED.clear()
    inbox_handlers.SETUP_CALLS.clear()
    with override_settings(REALTIME_SYNC=settings):
        try:
            sender = get_client()
            assert get_client() is sender
            server.wait_for_subscription("user-token-1", timeout=10)
            waiting = sender.events("message.created", timeout=T(10))
            server.send_event("account_1", "message.created", message_payload(1, 42, "hi"))
            assert next(waiting).entity_id == 42  # the sender's own wait_for/events() work
            assert inbox_handlers.RECEIVED == [] and inbox_handlers.SETUP_CALLS == []
            listener = get_client(handlers=True)  # opting in: a process that is its own listener
            assert listener is not sender
            server.wait_for_subscription("user-token-1", count=2, timeout=10)
            got = listener.events("message.created", timeout=T(10))
            server.send_event("account_1", "message.created", message_payload(2, 43, "again"))
            next(got)
            assert inbox_handlers.RECEIVED == [("message.created", 43, "again")]
            assert inbox_handlers.SETUP_CALLS == ["default"]
        finally:
            close_clients(timeout=5)
            inbox_handlers.RECEIVED.clear()
            inbox_handlers.SETUP_CALLS.clear()


def test_flask_get_client_has_no_listener_handlers_unless_asked(server: FakeVoxsigServer) -> None:
    pytest.importorskip("flask")
    from .test_flask import make_app

    app, realtime, stored = make_app(server.url)
    setups: list[str] = []
    realtime.setup(lambda client: setups.append(client.name))
    try:
        sender = realtime.get_client(app)
        assert realtime.get_client(app) is sender
        server.wait_for_subscription("user-token-1", timeout=10)
        waiting = sender.events("message.created", timeout=T(10))
        server.send_event("account_1", "message.created", message_payload(1, 42, "hi"))
        assert next(waiting).entity_id == 42
        assert stored == [] and setups == []
        listener = realtime.get_client(app, handlers=True)
        assert listener is not sender
        server.wait_for_subscription("user-token-1", count=2, timeout=10)
        got = listener.events("message.created", timeout=T(10))
        server.send_event("account_1", "message.created", message_payload(2, 43, "again"))
        next(got)
        assert stored == [("message.created", 43, "in-app-context")]
        assert setups == ["flask-flask_test_app"] and sender.name == "flask-flask_test_app-sender"
    finally:
        realtime.close(timeout=5)
