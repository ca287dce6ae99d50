"""A real gunicorn ``--preload -w 2`` in front of a Flask app that uses the integration as the
README says (issue 12 item 3), next to its listener process (``flask realtime listen``), against
the fake Voxsig server of realtime_sync.testing.

Under ``--preload`` the master imports the app and forks the workers.  Each worker's view uses
``realtime.get_client()``: one client per worker, created after the fork, that sends
(``update_presence``) and receives, without the app's handlers: a message is stored once, by the
listener.  Stopping gunicorn leaves no process, no connection and no socket behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flask")
pytest.importorskip("gunicorn")

from realtime_sync.testing.actioncable import FakeVoxsigServer, message_payload

from .conftest import T, poll_until

ROOT = Path(__file__).resolve().parent.parent


def _env(server: FakeVoxsigServer, store: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), RT_URL=server.url, RT_STORE=str(store), RT_WAIT=str(T(60)))


def _stop(proc: subprocess.Popen[Any], timeout: float) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def server() -> Iterator[FakeVoxsigServer]:
    with FakeVoxsigServer() as s:
        yield s


def test_gunicorn_preload_workers_send_without_the_listeners_handlers(server: FakeVoxsigServer, tmp_path: Path) -> None:
    store = tmp_path / "stored.jsonl"
    env = _env(server, store)
    listener = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "tests._gunicorn_app", "realtime", "listen", "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "listener.log", "w"),
    )  # fmt: skip
    gunicorn_log = tmp_path / "gunicorn.log"
    # --timeout: a view waits for a message; on a loaded machine that must not count as a hung
    # worker.  --graceful-timeout: a worker that hung at exit would be killed only after 60 s.
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-b", "127.0.0.1:0", "--timeout", "120",
         "--graceful-timeout", "60", "tests._gunicorn_app:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(gunicorn_log, "w"),
    )  # fmt: skip
    try:
        server.wait_for_subscription("user-token-1", timeout=T(30))  # the listener
        log = poll_until(
            lambda: (lambda text: text if text.count("Booting worker") >= 2 else None)(gunicorn_log.read_text()),
            30,
            "gunicorn listening with 2 workers",
        )
        port = int(re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log).group(1))  # type: ignore[union-attr]

        # Two requests at once: a sync worker serves one at a time, so each worker gets one.
        replies: list[dict[str, Any]] = []

        def get() -> None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/presence", timeout=T(90)) as r:
                replies.append(json.loads(r.read()))

        threads = [threading.Thread(target=get) for _ in range(2)]
        for t in threads:
            t.start()
        # The views' sends reach the server, one per worker connection ...
        poll_until(
            lambda: len({p.conn_id for p in server.performed if p.action == "update_presence"}) == 2,
            60,
            "update_presence from both workers",
        )
        # ... and one message reaches every connection: the listener's and both workers'.
        server.send_event("account_1", "message.created", message_payload(7, 42, "hello"))
        for t in threads:
            t.join(T(90))
        assert len(replies) == 2, replies
        worker_pids = {r["pid"] for r in replies}
        assert len(worker_pids) == 2 and gunicorn.pid not in worker_pids and listener.pid not in worker_pids
        assert [r["message"] for r in replies] == [7, 7]  # both workers' clients received it

        # Stored once, by the listener.  A worker that ran the handler would have written its
        # line before its view saw the event (handlers run in registration order, the view's
        # iterator last), so the replies above came after any such line.
        lines = poll_until(lambda: store.exists() and store.read_text().splitlines(), 30, "the message stored")
        assert [json.loads(line) for line in lines] == [{"pid": listener.pid, "id": 7}]
        # The master imported the app (--preload) and connected nothing: the listener and the two
        # workers are the only handshakes the server ever saw.
        assert len(server.handshakes) == 3

        worker_conns = {p.conn_id for p in server.performed if p.action == "update_presence"}
        assert _stop(gunicorn, T(30)) == 0
        assert not [pid for pid in worker_pids if _alive(pid)]
        poll_until(
            lambda: not [c for c in server.live_connections() if c.id in worker_conns], 10, "the workers' connections"
        )
        closes = {c.id: c.ws.close_code for c in server.connections if c.id in worker_conns}
        assert closes == dict.fromkeys(worker_conns, 1000), closes  # closed cleanly at exit, not dropped
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))
        assert len(server.live_connections()) == 1  # the listener goes on
        assert _stop(listener, T(30)) == 0
        poll_until(lambda: not server.live_connections(), 10, "the listener's connection closed")
        assert "Traceback" not in gunicorn_log.read_text(), gunicorn_log.read_text()[-3000:]
    finally:
        for proc in (gunicorn, listener):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
