"""realtime_sync.contrib.django with the minimal project in tests/django_project/.

Settings, autodiscovery of each app's realtime.py, the realtime_listen command (in-process and as
its own process, stopped by SIGTERM), the settings check, and the gunicorn --preload story: a
client started before a fork is dead in the child (ClientForkedError), get_client() gives the
child a working one.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("django")

import django
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

import realtime_sync as rs
from realtime_sync.testing.actioncable import FakeVoxsigServer, conversation_payload, message_payload

from .conftest import T, run_in_fork

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_project.settings")
django.setup()

from realtime_sync.contrib.django import build_clients, client_configs, get_client, realtime  # noqa: E402
from tests.django_project.inbox import realtime as inbox_handlers  # noqa: E402


def voxsig_settings(url: str, **extra: object) -> dict[str, object]:
    conf: dict[str, object] = {
        "VENDOR": "voxsig",
        "URL": url,
        "TOKEN": "user-token-1",
        "OPTIONS": {"account_id": 1, "user_id": 7, "presence_interval": None},
    }
    conf.update(extra)
    return conf


@pytest.fixture
def server() -> Iterator[FakeVoxsigServer]:
    with FakeVoxsigServer() as s:
        yield s


@pytest.fixture(autouse=True)
def clear_received() -> Iterator[None]:
    inbox_handlers.RECEIVED.clear()
    inbox_handlers.SETUP_CALLS.clear()
    yield


def test_ready_starts_no_client_and_handlers_are_autodiscovered() -> None:
    # django.setup() ran ready(): no client thread exists (the autoreloader and every worker run
    # ready(); a client started there would connect once per process).
    assert not [t.name for t in threading.enumerate() if t.name.startswith("realtime_sync-transport")]
    clients = build_clients()  # autodiscovers tests.django_project.inbox.realtime
    try:
        patterns = [r.pattern for r in realtime.registrations]
        assert "message.created" in patterns and "conversation.*" in patterns
        assert inbox_handlers.SETUP_CALLS == ["default"]
        client = clients["default"]
        assert isinstance(client, rs.Client) and type(client).__name__ == "VoxsigClient"
        assert client.url == "ws://127.0.0.1:9/cable" and client.account_id == 1
        assert client.state is rs.State.IDLE  # built, not started
    finally:
        for c in clients.values():
            c.close()
    # Importing the module again (autoreloader, double import) does not double the handlers.
    before = len(realtime.registrations)
    import importlib

    importlib.reload(inbox_handlers)
    assert len(realtime.registrations) == before


def test_settings_forms_and_validation() -> None:
    with override_settings(REALTIME_SYNC={"CLIENTS": {"a": voxsig_settings("ws://h/cable"), "b": {
        "VENDOR": "jifeline", "URL": "wss://h/ws", "SUBSCRIBE": {"ticket": [1, 2]}}}}):  # fmt: skip
        configs = client_configs()
        assert sorted(configs) == ["a", "b"] and configs["b"].vendor == "jifeline-customer"
        clients = build_clients(["b"])
        try:
            assert list(clients) == ["b"]
            assert clients["b"].subscriptions == [rs.Subscription("ticket", 1), rs.Subscription("ticket", 2)]
        finally:
            clients["b"].close()
    from django.core.exceptions import ImproperlyConfigured

    for bad in ({"VENDOR": "nope", "URL": "ws://h"}, {"URL": "ws://h"}, {"VENDOR": "voxsig"},
                {"VENDOR": "voxsig", "URL": "ws://h", "TOKEN": "t", "TYPO": 1}):  # fmt: skip
        with override_settings(REALTIME_SYNC=bad), pytest.raises(ImproperlyConfigured):
            client_configs()
    # `manage.py check` reports a bad configuration without connecting anywhere.
    from django.core.management import call_command as cc

    with override_settings(REALTIME_SYNC={"VENDOR": "nope", "URL": "ws://h"}):
        with pytest.raises(Exception) as excinfo:
            cc("check", stdout=io.StringIO(), stderr=io.StringIO())
        assert "realtime_sync.E001" in str(excinfo.value)


def test_realtime_listen_handles_events_then_stops_after_max_events(server: FakeVoxsigServer) -> None:
    # Counted events are the two sent below; Chatwoot's presence.update at subscribe would race them.
    server.answer_presence = False

    def script() -> None:
        server.wait_for_subscription("user-token-1", timeout=10)
        server.send_event("account_1", "conversation.created", conversation_payload(42))
        server.send_event("account_1", "message.created", message_payload(1, 42, "Hello from Django"))

    pusher = threading.Thread(target=script, daemon=True)
    pusher.start()
    out = io.StringIO()
    with override_settings(REALTIME_SYNC=voxsig_settings(server.url)):
        call_command("realtime_listen", max_events=2, duration=T(15), stdout=out)
    pusher.join(T(5))
    assert ("message.created", 42, "Hello from Django") in inbox_handlers.RECEIVED
    assert ("conversation.created", 42, "open") in inbox_handlers.RECEIVED
    text = out.getvalue()
    assert "connected" in text and "subscribed" in text
    assert "stopped (count), 2 event(s) handled" in text
    assert "user-token-1" not in text
    assert not [t.name for t in threading.enumerate() if t.name.startswith("realtime_sync-transport")]


def test_realtime_listen_duration_and_errors(server: FakeVoxsigServer) -> None:
    out = io.StringIO()
    with override_settings(REALTIME_SYNC=voxsig_settings(server.url)):
        call_command("realtime_listen", duration=0.3, stdout=out, verbosity=0)
    assert out.getvalue() == ""
    with override_settings(REALTIME_SYNC={"VENDOR": "voxsig"}), pytest.raises(CommandError, match="URL"):
        call_command("realtime_listen", duration=0.1, stdout=io.StringIO())
    with override_settings(REALTIME_SYNC=voxsig_settings(server.url)), pytest.raises(CommandError, match="nope"):
        call_command("realtime_listen", client=["nope"], duration=0.1, stdout=io.StringIO())


def test_realtime_listen_runs_as_its_own_process_and_stops_on_sigterm(server: FakeVoxsigServer) -> None:
    env = dict(os.environ, REALTIME_SYNC_TEST_URL=server.url, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "django_project" / "manage.py"), "realtime_listen", "-v", "2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        server.wait_for_subscription("user-token-1", timeout=15)
        server.send_event("account_1", "message.created", message_payload(3, 42, "from another process"))
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:  # ends at EOF; bounded by the server-side deadline below
            lines.append(line)
            if "handled message.created 42 from another process" in line:
                break
        proc.send_signal(signal.SIGTERM)  # what systemd / docker stop / a Procfile runner send
        out, err = proc.communicate(timeout=T(15))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = "".join(lines) + out
    assert proc.returncode == 0, err
    assert "handled message.created 42 from another process" in text
    assert "message.created" in text and "stopped (interrupted)" in text
    assert "user-token-1" not in text + err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_gunicorn_preload_fork_story(server: FakeVoxsigServer) -> None:
    """gunicorn --preload imports (and so runs anything started at import or in ready()) in the
    master, then forks the workers: the inherited client is dead there and says so loudly, while
    get_client() builds one per process, after the fork."""
    with override_settings(REALTIME_SYNC=voxsig_settings(server.url, OPTIONS={
        "account_id": 1, "user_id": 7, "presence_interval": 0.2})):  # fmt: skip
        master_client = build_clients()["default"]
        master_client.start()  # the mistake: a client started in the master
        try:
            server.wait_for_subscription("user-token-1", timeout=10)
            in_parent = get_client()
            assert get_client() is in_parent  # one per process
            server.wait_for_subscription("user-token-1", timeout=10, count=2)

            def child() -> list[bool]:
                checks = [master_client.state is rs.State.FORKED]
                try:
                    master_client.wait_for("message.created", timeout=0.1)
                    checks.append(False)
                except rs.ClientForkedError as exc:
                    checks.append("fork" in str(exc))
                worker_client = get_client()  # a new client, started in this process
                checks.append(worker_client is not in_parent)
                # presence.update answers come every 0.2 s: proof the new client is live here.
                event = worker_client.wait_for("presence.update", timeout=10 * float(os.environ.get(
                    "REALTIME_SYNC_TIMING_SCALE", "1")))  # fmt: skip
                checks.append(event.entity_id == 1)
                from realtime_sync.contrib.django import close_clients

                close_clients(timeout=5)
                master_client.close()  # a no-op in the child
                return checks

            result = run_in_fork(child)
            assert result == "1111", result
            # The worker connected on its own connection: master + parent get_client + worker.
            assert len(server.connections) >= 3
            assert master_client.state is rs.State.CONNECTED  # the parent's clients are untouched
        finally:
            master_client.close()
            from realtime_sync.contrib.django import close_clients

            close_clients(timeout=5)


def test_check_reports_bad_options_and_subscriptions_without_calling_the_token_provider() -> None:
    """`manage.py check` used to pass a typo in OPTIONS or SUBSCRIBE, which only failed later in
    realtime_listen.  It builds (never starts) the clients now; a TOKEN_PROVIDER is not called."""
    from django.core.management.base import SystemCheckError

    for conf, expected in (
        (voxsig_settings("ws://127.0.0.1:9/cable", OPTIONS={"acount_id": 1}), "acount_id"),
        (voxsig_settings("ws://127.0.0.1:9/cable", SUBSCRIBE={"ticket": [1]}), "ticket"),
        ({"VENDOR": "voxsig", "URL": "ws://127.0.0.1:9/cable"}, "pubsub token"),
        ({"VENDOR": "voxsig", "URL": "ws://h/cable", "TOKEN_PROVIDER": "no.such.module.token"}, "no.such.module"),
    ):
        with override_settings(REALTIME_SYNC=conf), pytest.raises(SystemCheckError) as excinfo:
            call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
        assert "realtime_sync.E001" in str(excinfo.value) and expected in str(excinfo.value), str(excinfo.value)
    conf = voxsig_settings("ws://127.0.0.1:9/cable", TOKEN=None,
                           TOKEN_PROVIDER="tests.test_django._provider_that_must_not_be_called")  # fmt: skip
    with override_settings(REALTIME_SYNC=conf):
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
    assert not [t.name for t in threading.enumerate() if t.name.startswith("realtime_sync-transport")]


def _provider_that_must_not_be_called() -> str:
    raise AssertionError("manage.py check called the token provider")


def test_check_never_prints_credentials_from_the_url() -> None:
    """Issue 10: the settings check printed a URL with ``user:password@``."""
    from django.core.management.base import SystemCheckError

    for url in (
        "alice:pa55w0rd-django@gws.example/api",
        "https://alice:pa55w0rd-django@gws.example/api/v2/notifications",
    ):
        conf = {"VENDOR": "genesys", "URL": url, "OPTIONS": {"tpyo": 1}}
        with override_settings(REALTIME_SYNC=conf), pytest.raises(SystemCheckError) as excinfo:
            call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
        assert "realtime_sync.E001" in str(excinfo.value) and "pa55w0rd" not in str(excinfo.value), str(excinfo.value)
        with override_settings(REALTIME_SYNC=conf):
            assert "pa55w0rd" not in repr(client_configs())
