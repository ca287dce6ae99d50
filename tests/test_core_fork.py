"""A client inherited by a forked child (gunicorn --preload, Celery prefork) does not pretend to run."""

from __future__ import annotations

import os
import sys

import pytest

import realtime_sync as rs

from .conftest import Recorder, run_in_fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_sees_a_dead_client_and_the_parent_keeps_running(echo_server, make_client):
    client = make_client(echo_server.url)
    rec = Recorder(client)
    client.start()
    echo_server.wait_for_connection(timeout=5)

    def child() -> list[bool]:
        checks = []
        checks.append(client.state is rs.State.FORKED)
        try:
            client.start()
            checks.append(False)
        except rs.ClientForkedError as exc:
            checks.append("fork" in str(exc) and "new client" in str(exc))
        try:
            client.wait_for("x", timeout=0.1)
            checks.append(False)
        except rs.ClientForkedError:
            checks.append(True)
        try:
            client.send({"from": "child"})
            checks.append(False)
        except rs.ClientForkedError:
            checks.append(True)
        client.close()  # a no-op in the child: must not touch the parent's connection
        return checks

    result = run_in_fork(child)
    assert result == "1111", result
    # The parent's client is untouched: the connection is still there and works.
    conn = echo_server.wait_for_connection(timeout=5)
    assert len(echo_server.connections) == 1
    conn.send({"event": "parent-ok"})
    rec.wait("parent-ok")
    assert client.state is rs.State.CONNECTED
    assert echo_server.messages() == [], "the child must not have sent anything"
    sys.stdout.flush()


def test_client_created_before_fork_but_not_started_can_start_in_child(echo_server):
    from ._echo import EchoClient

    client = EchoClient(echo_server.url)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # wait_for() starts it; a start() first could miss the event
            conn_ok = client.wait_for("connected", timeout=5) is not None
            client.close()
            code = 0 if conn_ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
