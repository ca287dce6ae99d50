"""The first hour of a new user (issue 12): handler errors seen, re-run cells, SIGTERM.

Each test failed before the fix it names.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import pytest

import realtime_sync as rs
from realtime_sync.demo import Console
from realtime_sync.events import ErrorInfo, Event

from ._echo import EchoClient
from .conftest import FAST, Recorder, T

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARNINGS")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=T(timeout),
    )


# -- item 1: a handler with a typo is not silent -------------------------------------------------

TYPO_SCRIPT = """
    import logging, sys, threading
    import realtime_sync as rs
    from realtime_sync.testing.actioncable import FakeVoxsigServer, message_payload

    mode = sys.argv[1]
    if mode == "logging":
        logging.basicConfig()
    with FakeVoxsigServer() as server:
        client = rs.VoxsigClient(server.url, pubsub_token="user-token-1", account_id=1, user_id=7)
        done = threading.Event()

        @client.on("message.created")
        def show(event):
            print(event.data.contnet)

        client.on("message.created", lambda e: done.set())
        if mode == "error_handler":
            client.on("error", lambda e: print("ERROR HANDLER", e.data.kind, flush=True))
        client.wait_for("subscribed", timeout=30)
        server.send_event("user-token-1", "message.created", message_payload(1, 42, "hi"))
        assert done.wait(30)
        client.close()
        print("handler_errors", client.stats.handler_errors, flush=True)
"""


def test_a_handler_error_prints_its_traceback_when_nothing_else_would() -> None:
    result = _run(TYPO_SCRIPT, "plain")
    assert result.returncode == 0, result.stderr
    assert "handler_errors 1" in result.stdout
    err = result.stderr
    assert "Exception in realtime_sync handler show on 'message.created' event" in err
    assert "Traceback (most recent call last)" in err and "contnet" in err and "AttributeError" in err
    assert "user-token-1" not in err


def test_with_logging_configured_the_traceback_is_printed_once_by_logging() -> None:
    result = _run(TYPO_SCRIPT, "logging")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Traceback (most recent call last)") == 1, result.stderr
    assert "ERROR:realtime_sync.VoxsigClient:handler show raised" in result.stderr


def test_an_error_handler_takes_the_report_instead_of_stderr() -> None:
    result = _run(TYPO_SCRIPT, "error_handler")
    assert result.returncode == 0, result.stderr
    assert "ERROR HANDLER handler" in result.stdout
    assert "Traceback" not in result.stderr


def test_the_listener_console_prints_a_handler_traceback() -> None:
    def show(event: Event) -> None:
        event.data.contnet  # noqa: B018 - the typo under test

    try:
        show(Event("message.created", object()))
    except AttributeError as exc:
        error = exc
    out = io.StringIO()
    Console(out, "voxsig", timestamps="wall").event(
        Event("error", ErrorInfo("handler", "handler show raised AttributeError", None, error))
    )
    text = out.getvalue()
    assert "Traceback (most recent call last)" in text and "event.data.contnet" in text


# -- item 6: re-run cells, duplicate clients, SIGTERM ---------------------------------------------


def test_on_is_idempotent_for_the_same_handler_pattern_and_entity(echo_server) -> None:
    client = EchoClient(echo_server.url, reconnect=FAST)
    calls: list[str] = []
    namespace: dict[str, object] = {"client": client, "calls": calls}
    cell = textwrap.dedent(
        """
        @client.on("ping")
        def handle(event, run=RUN):
            calls.append("run %d" % run)
        """
    )
    try:
        for run in (1, 2, 3):  # a notebook cell run three times: new function objects each time
            namespace["RUN"] = run
            exec(compile(cell, "<cell>", "exec"), namespace)
        same = namespace["handle"]
        client.on("ping", same)  # the very same object again
        client.on("ping", same, entity_id=5)  # another entity filter: another registration
        rec = Recorder(client)
        client.start()
        conn = echo_server.wait_for_connection(timeout=T(5))
        conn.send({"event": "ping", "id": 5})
        rec.wait("ping")
        client.close()
    finally:
        client.close()
    # The newest definition, in the first one's place, once; plus the entity-filtered one.
    assert calls == ["run 3", "run 3"]


def test_two_builtin_methods_of_one_object_are_two_handlers(echo_server) -> None:
    # They share ``__self__`` and have no ``__func__``: they once compared "the same" and the
    # second replaced the first.
    client = EchoClient(echo_server.url, reconnect=FAST)
    got: list[Event] = []
    try:
        client.on("ping", got.append)
        client.on("ping", got.append)  # the same one again: still once
        client.on("ping", got.count)  # harmless, and a different handler
        rec = Recorder(client)
        client.start()
        echo_server.wait_for_connection(timeout=T(5)).send({"event": "ping", "id": 1})
        rec.wait("ping")
    finally:
        client.close()
    assert [e.name for e in got] == ["ping"]


def test_off_still_removes_a_re_registered_handler(echo_server) -> None:
    client = EchoClient(echo_server.url, reconnect=FAST)
    try:

        def h(event: Event) -> None: ...

        client.on("ping", h)
        client.on("ping", h)
        assert client.off("ping", h) == 1
    finally:
        client.close()


def test_a_second_running_client_with_the_same_name_warns(echo_server) -> None:
    first = EchoClient(echo_server.url, reconnect=FAST, name="feed")
    second = EchoClient(echo_server.url, reconnect=FAST, name="feed")
    third = EchoClient(echo_server.url, reconnect=FAST, name="other")
    try:
        first.start()
        with pytest.warns(RuntimeWarning, match="another client named 'feed' is already running"):
            second.start()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.simplefilter("default", ResourceWarning)  # the collector may run here
            third.start()  # another name: fine
    finally:
        for c in (first, second, third):
            c.close()
    fourth = EchoClient(echo_server.url, reconnect=FAST, name="feed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.simplefilter("default", ResourceWarning)  # the collector may run here
            fourth.start()  # the others are closed: fine
    finally:
        fourth.close()


# run_forever() and SIGTERM: tests/test_core_run_forever.py.


def test_run_forever_leaves_an_application_sigterm_handler_alone() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        client = EchoClient("ws://127.0.0.1:9/never", reconnect=FAST)
        timer = threading.Timer(0.2, client.close)
        timer.start()
        client.run_forever()
        timer.join()
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # still the application's
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert isinstance(rs.State.CLOSED, rs.State)


# -- an error nobody would see is printed (session 12's reviewer: a wrong token was silent) ------

UNSEEN_SCRIPT = """
    import logging, socket, sys, threading
    import realtime_sync as rs
    from realtime_sync.testing.actioncable import FakeVoxsigServer

    mode = sys.argv[1]
    if mode == "logging":
        logging.basicConfig()
    if mode == "closed_port":  # every attempt fails alike: printed once, not once an attempt
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        failed = threading.Semaphore(0)
        client = rs.VoxsigClient(f"ws://127.0.0.1:{port}/cable", pubsub_token="user-token-1", account_id=1, user_id=7)
        client.on("reconnecting", lambda e: failed.release())
        client.start()
        for _ in range(3):  # the three instant retries, each a connect error
            assert failed.acquire(timeout=30)
        client.close()
        print("closed", flush=True)
        raise SystemExit(0)
    with FakeVoxsigServer() as server:
        if mode == "unknown_token":  # as Chatwoot: no answer to the subscribe, then confirm_timeout
            client = rs.VoxsigClient(server.url, pubsub_token="wrong-token-1234", account_id=1, user_id=7,
                                     confirm_timeout=1)
            rejected = threading.Event()
            client.on("subscription_rejected", lambda e: rejected.set())
            client.start()
            assert rejected.wait(30)
            client.close()  # delivers what is queued
            print("closed", flush=True)
            raise SystemExit(0)
        server.reject_connections = True  # reject_unauthorized_connection (reconnect: false)
        client = rs.VoxsigClient(server.url, pubsub_token="wrong-token-1234", account_id=1, user_id=7)
        if mode == "error_handler":
            client.on("error", lambda e: print("ERROR HANDLER", e.data.kind, flush=True))
        deadline = threading.Timer(30, client.close)  # run_forever() must return before
        deadline.start()
        client.run_forever()  # returns: the server asked not to reconnect
        deadline.cancel()
        print("closed", flush=True)
"""


def test_an_error_nobody_would_see_is_printed_to_stderr() -> None:
    result = _run(UNSEEN_SCRIPT, "plain")
    assert result.returncode == 0, result.stderr
    lines = [
        line for line in result.stderr.splitlines() if line.startswith("realtime_sync VoxsigClient: error (auth): ")
    ]
    assert len(lines) == 1, result.stderr
    assert "unauthorized" in lines[0]
    assert "wrong-token-1234" not in result.stderr


def test_an_unanswered_subscription_is_not_silent_either() -> None:
    result = _run(UNSEEN_SCRIPT, "unknown_token")
    assert result.returncode == 0, result.stderr
    assert "realtime_sync VoxsigClient: error (subscription): " in result.stderr, result.stderr
    assert "wrong-token-1234" not in result.stderr


def test_an_error_handler_or_logging_takes_the_unseen_error_instead() -> None:
    handled = _run(UNSEEN_SCRIPT, "error_handler")
    assert handled.returncode == 0, handled.stderr
    assert "ERROR HANDLER auth" in handled.stdout
    assert "error (auth)" not in handled.stderr, handled.stderr
    logged = _run(UNSEEN_SCRIPT, "logging")
    assert logged.returncode == 0, logged.stderr
    assert "realtime_sync VoxsigClient: error" not in logged.stderr, logged.stderr
    assert "unauthorized" in logged.stderr  # the log line says it instead
    assert "wrong-token-1234" not in logged.stderr


def test_the_same_unseen_error_is_printed_once_not_at_every_attempt() -> None:
    result = _run(UNSEEN_SCRIPT, "closed_port")
    assert result.returncode == 0, result.stderr
    assert "closed" in result.stdout
    lines = [
        line for line in result.stderr.splitlines() if line.startswith("realtime_sync VoxsigClient: error (connect): ")
    ]
    assert len(lines) == 1, result.stderr
