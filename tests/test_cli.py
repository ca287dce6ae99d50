"""The ``realtime-sync`` command: demo, listen, fake-server, --help (real subprocesses, fake servers)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

import realtime_sync as rs
from realtime_sync.cli import main
from realtime_sync.jifeline import JifelineCustomerClient
from realtime_sync.testing.actioncable import FakeVoxsigServer, message_payload
from realtime_sync.testing.bayeux import FakeGenesysServer
from realtime_sync.testing.jifeline import (
    FakeJifelineCustomerServer,
    FakeJifelinePartnerServer,
    FakeJifelineRestServer,
)
from realtime_sync.voxsig import VoxsigClient

from .conftest import T

ROOT = Path(__file__).resolve().parent.parent
SECRET_VARS = ("VOXSIG_PUBSUB_TOKEN", "REALTIME_SYNC_TOKEN", "JIFELINE_TOKEN", "JIFELINE_CLIENT_ID",
               "JIFELINE_CLIENT_SECRET", "GENESYS_USERNAME", "GENESYS_PASSWORD", "GENESYS_JSESSIONID",
               "VOXSIG_URL", "VOXSIG_ACCOUNT_ID", "VOXSIG_USER_ID", "GENESYS_URL", "JIFELINE_CUSTOMER_URL")  # fmt: skip


class Proc:
    """A ``python -m realtime_sync ...`` subprocess whose output lines can be awaited."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.update(env or {})
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "realtime_sync", *args],
            cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8",
        )  # fmt: skip
        self.out: list[str] = []
        self.err: list[str] = []
        self._lines: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out, "out"), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err, "err"), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream, sink: list[str], name: str) -> None:
        for line in stream:
            sink.append(line)
            self._lines.put((name, line))

    def wait_line(self, predicate: Callable[[str], bool], timeout: float = 30.0, stream: str | None = None) -> str:
        """Wait for a (new or already read) line matching ``predicate``."""
        deadline = time.monotonic() + T(timeout)
        for line in (self.out if stream != "err" else []) + (self.err if stream != "out" else []):
            if predicate(line):
                return line
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching line within {T(timeout)}s\nout:\n{self.text}\nerr:\n{self.errors}")
            try:
                name, line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if (stream is None or name == stream) and predicate(line):
                return line

    def finish(self, timeout: float = 60.0) -> int:
        try:
            code = self.proc.wait(timeout=T(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"did not exit within {T(timeout)}s\nout:\n{self.text}\nerr:\n{self.errors}") from None
        for t in self._readers:
            t.join(T(5))
        self.elapsed = time.monotonic() - self.started
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def text(self) -> str:
        return "".join(self.out)

    @property
    def errors(self) -> str:
        return "".join(self.err)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


# -- demo -------------------------------------------------------------------------------------


def test_demo_each_vendor_and_all_exit_0_quickly(procs: list[Proc]) -> None:
    # All four at once: each mostly waits on its own scenario.
    runs = {name: Proc("demo", name) for name in ("jifeline", "voxsig", "genesys", "all")}
    procs.extend(runs.values())
    expected = {
        "jifeline": ["ticket.updated", "changed: state", "connection.updated", "tickets.ticket.created",
                     "connector.status", "changed: voltage"],
        "voxsig": ["message.created", "Bo Contact: Hi, my order is late", "notification.created", "presence.update",
                   "conversation.status_changed", "status=resolved"],
        "genesys": ["chat.new_messages", "Customer1: Hello, can you help me?", "chat.status_change",
                    "CometD session #2", "topic /v2/me/chats"],
    }  # fmt: skip
    for name, proc in runs.items():
        code = proc.finish(timeout=90)
        out = proc.text
        assert code == 0, f"{name}: exit {code}\n{out}\n{proc.errors}"
        assert proc.elapsed < T(90), f"{name} took {proc.elapsed:.1f}s"  # exits by itself (a hang fails)
        assert proc.errors == "", proc.errors
        vendors = ("jifeline", "voxsig", "genesys") if name == "all" else (name,)
        for vendor in vendors:
            lines = [line for line in out.splitlines() if f"  {vendor:<9} " in line]
            marks = {line.split(vendor, 1)[1][:5].strip()[:1] for line in lines}
            assert {"*", ">", "!"} <= marks, (vendor, marks)  # lifecycle, server steps, error events
            # The scenario's lifecycle: a drop, the recovery, a bad frame reported as an event.
            assert any("* disconnected" in line and "closed by the server" in line for line in lines), vendor
            assert any("* reconnecting" in line for line in lines), vendor
            assert any("! error" in line and "bad_frame" in line for line in lines), vendor
            for text in expected[vendor]:
                assert text in out, (vendor, text)
        assert "demo finished in" in out
        assert "Traceback" not in out
    # The agent is kept online: the demo shows an update_presence reaching the server (it once
    # ended before the first one and printed "the server saw 0 presence updates").
    assert re.search(r"the server saw [1-9]\d* update_presence call", runs["voxsig"].text), runs["voxsig"].text
    # Aligned columns: the event name starts at the same offset on every event line.
    rows = [line for line in runs["voxsig"].text.splitlines() if line.startswith("   +") and "=" not in line[20:23]]
    assert rows and all(row[21] in " *>!" and row[22] == " " and row[23] != " " for row in rows), rows


# -- listen -----------------------------------------------------------------------------------


def test_listen_json_lines_with_token_from_the_environment(procs: list[Proc]) -> None:
    with FakeVoxsigServer() as server:
        proc = Proc(
            "listen", "voxsig", "--url", server.url, "--account-id", "1", "--user-id", "7", "--json",
            "--event", "message.created", "--count", "2", "--presence-interval", "0",
            env={"VOXSIG_PUBSUB_TOKEN": "user-token-1"},
        )  # fmt: skip
        procs.append(proc)
        server.wait_for_subscription("user-token-1", timeout=15)
        server.send_event("account_1", "conversation.created", {"id": 42, "status": "open"})  # filtered out
        server.send_event("account_1", "message.created", message_payload(1, 42, "first"))
        server.send_event("account_1", "message.created", message_payload(2, 42, "second"))
        assert proc.finish() == 0, proc.errors
    docs = [json.loads(line) for line in proc.out]
    assert [d["name"] for d in docs] == ["message.created", "message.created"]
    assert [d["data"]["content"] for d in docs] == ["first", "second"]
    assert docs[0]["entity_id"] == 42 and isinstance(docs[0]["received_at"], float)
    assert docs[0]["subscription"]["kind"] == "channel"
    assert "connected" in proc.errors and "subscribed" in proc.errors  # lifecycle on stderr
    assert "user-token-1" not in proc.text + proc.errors


def test_listen_reconnects_and_ctrl_c_exits_cleanly(procs: list[Proc]) -> None:
    with FakeVoxsigServer() as server:
        proc = Proc("listen", "voxsig", "--url", server.url, "--account-id", "1", "--user-id", "7",
                    env={"REALTIME_SYNC_TOKEN": "user-token-1"})  # fmt: skip
        procs.append(proc)
        server.wait_for_subscription("user-token-1", timeout=15)
        server.send_event("account_1", "message.created", message_payload(1, 42, "before the drop"))
        proc.wait_line(lambda line: "before the drop" in line, stream="out")
        server.drop_all()
        proc.wait_line(lambda line: "* reconnecting" in line, stream="err")
        # Subscribed again on the new connection (the old one may not look closed yet).
        server.wait_until(lambda: any(c.id >= 2 for c, _ in server.subscriptions()), timeout=15)
        server.send_event("account_1", "message.created", message_payload(2, 42, "after the drop"))
        proc.wait_line(lambda line: "after the drop" in line, stream="out")
        proc.proc.send_signal(signal.SIGINT)
        assert proc.finish() == 0
    assert "Traceback" not in proc.errors and "KeyboardInterrupt" not in proc.errors
    assert "closed by the client" in proc.errors
    assert "conversation 42   Bo Contact: before the drop" in proc.text


def test_listen_other_vendors(procs: list[Proc]) -> None:
    with FakeJifelineCustomerServer(interval=0.2) as jif, FakeGenesysServer(timeout=1.0) as gws, \
            FakeJifelinePartnerServer(token="good-token") as partner:  # fmt: skip
        customer = Proc("listen", "jifeline", "--url", jif.url, "--ticket", "32423", "--count", "2", "--json",
                        env={"JIFELINE_TOKEN": "x-not-checked"})  # fmt: skip
        genesys = Proc("listen", "genesys", "--url", gws.http_url, "--count", "1", "--event", "chat.*")
        refused = Proc("listen", "jifeline-partner", "--url", partner.url, "--system-event", "tickets.ticket.created",
                       env={"JIFELINE_TOKEN": "wrong-token"})  # fmt: skip
        rest = FakeJifelineRestServer("cli-client", "cli-secret", partner=partner).start()
        oauth = Proc("listen", "partner", "--url", partner.url, "--token-url", rest.token_url, "--system-event",
                     "tickets.ticket.created", "--count", "1", "--json",
                     env={"JIFELINE_CLIENT_ID": "cli-client", "JIFELINE_CLIENT_SECRET": "cli-secret"})  # fmt: skip
        procs.extend([customer, genesys, refused, oauth])
        customer.wait_line(lambda line: "ticket.updated" in line, stream="out")  # the first snapshot
        jif.update_ticket(32423, state=4)  # the second changed snapshot ends it (--count 2)
        gws.wait_for_subscription("/v2/me/chats", timeout=15)
        gws.new_messages("C1", ["hello"])
        assert customer.finish() == 0, customer.errors
        assert genesys.finish() == 0, genesys.errors
        # Credentials refused: the CLI gives up at once (exit 1) instead of retrying for ever.
        assert refused.finish() == 1, refused.errors
        # Client credentials from the environment: a token is fetched, then the event arrives.
        partner.wait_until(lambda: ("event", "tickets.ticket.created") in partner.subscriptions(), timeout=15)
        partner.emit_event("tickets.ticket.created")
        assert oauth.finish() == 0, oauth.errors
        rest.stop()
        assert rest.token_requests() == 1
        assert json.loads(oauth.out[0])["name"] == "tickets.ticket.created"
        assert "cli-secret" not in oauth.text + oauth.errors and rest.issued[0] not in oauth.text + oauth.errors
    tickets = [json.loads(line) for line in customer.out]
    assert [t["name"] for t in tickets] == ["ticket.updated", "ticket.updated"]
    assert tickets[1]["data"]["state"] == 4 and tickets[1]["changes"] == ["state"]
    assert "chat.new_messages" in genesys.text and "[1] Agent1: hello" in genesys.text
    assert "auth" in refused.errors and "wrong-token" not in refused.errors + refused.text


def test_listen_without_a_secret_says_which_variable(procs: list[Proc]) -> None:
    proc = Proc("listen", "voxsig", "--url", "ws://127.0.0.1:9/cable")
    procs.append(proc)
    assert proc.finish() == 2
    assert "VOXSIG_PUBSUB_TOKEN" in proc.errors
    proc = Proc("listen", "jifeline-partner", "--system-event", "x")
    procs.append(proc)
    assert proc.finish() == 2
    assert "JIFELINE_CLIENT_ID" in proc.errors


# -- fake-server ------------------------------------------------------------------------------


def test_fake_server_runs_accepts_a_connection_and_stops_on_ctrl_c(procs: list[Proc]) -> None:
    proc = Proc("fake-server", "voxsig", "--port", "0", "--every", "0.2")
    procs.append(proc)
    first = proc.wait_line(lambda line: "listening on" in line, stream="out")
    url = first.split()[-1]
    assert url.startswith("ws://127.0.0.1:") and url.endswith("/cable")
    client = VoxsigClient(url, "user-token-1", account_id=1, user_id=7, presence_interval=None)
    try:
        event = client.wait_for("message.created", timeout=T(10))  # the server's sample events
        assert event.entity_id == 42
    finally:
        client.close()
    proc.wait_line(lambda line: "+ connection #1 opened" in line, stream="out")
    proc.proc.send_signal(signal.SIGINT)
    assert proc.finish() == 0
    assert "fake server stopped" in proc.text and "Traceback" not in proc.errors


def test_fake_server_jifeline_with_a_token(procs: list[Proc]) -> None:
    proc = Proc("fake-server", "jifeline", "--port", "0", "--interval", "0.2", "--token", "dev-token")
    procs.append(proc)
    url = proc.wait_line(lambda line: "listening on" in line, stream="out").split()[-1]
    client = JifelineCustomerClient(url, token="dev-token")
    try:
        client.subscribe_ticket(7)
        assert client.wait_for("ticket.updated", timeout=T(10)).entity_id == 7
    finally:
        client.close()
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.finish() == 0


def test_fake_server_genesys_with_csrf_and_listen_with_csrf(procs: list[Proc]) -> None:
    # The README's pair for trying GWS CSRF protection locally: the fake server refuses a POST
    # without the token, and its hint is the listen command that brings it.
    server = Proc("fake-server", "genesys", "--port", "0", "--every", "0.2", "--csrf")
    procs.append(server)
    url = server.wait_line(lambda line: "listening on" in line, stream="out").split()[-1]
    hint = server.wait_line(lambda line: "try:" in line, stream="out")
    assert "--csrf" in hint and "--transport long-polling" in hint
    bare = rs.GenesysChatClient(url, transport="long-polling")  # no token: refused
    try:
        err = bare.wait_for("error", timeout=T(10)).data
        assert "403" in err.message
    finally:
        bare.close()
    listen = Proc("listen", "genesys", *hint.split("listen genesys", 1)[1].split(), "--count", "1")
    procs.append(listen)
    assert listen.finish() == 0, listen.errors
    # Not a bare "403": the log's timestamps have milliseconds (12:00:25,403).
    assert "chat.new_messages" in listen.text and "HTTP 403" not in listen.errors and "403:" not in listen.errors
    server.proc.send_signal(signal.SIGTERM)
    assert server.finish() == 0


# -- help -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [[], ["demo"], ["listen"], ["listen", "jifeline-customer"], ["listen", "jifeline-partner"],
     ["listen", "voxsig"], ["listen", "genesys"], ["fake-server"]],
)  # fmt: skip
def test_help_for_every_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: realtime-sync")
    if argv[:1] == ["listen"] and len(argv) == 2:
        assert "--json" in out and "--event" in out and "--entity" in out and "REALTIME_SYNC_TOKEN" in out


def test_python_dash_m_and_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out
    out = subprocess.run(
        [sys.executable, "-m", "realtime_sync", "--version"], cwd=ROOT, capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=T(30),
    ).stdout  # fmt: skip
    assert out.strip() == f"realtime-sync {rs.__version__}"


# -- hardening from review --------------------------------------------------------------------

# A proxy that refuses everything: what a corporate http_proxy without no_proxy looks like from
# a loopback-only test.  Nothing may try to reach 127.0.0.1 through it.
DEAD_PROXY = {"http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
              "https_proxy": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}  # fmt: skip


def test_demo_ignores_a_proxy_in_the_environment(procs: list[Proc]) -> None:
    proc = Proc("demo", "voxsig", "--pace", "0", env=DEAD_PROXY)
    procs.append(proc)
    assert proc.finish(timeout=30) == 0, proc.text + proc.errors
    assert "demo finished in" in proc.text


def test_listen_reaches_a_local_server_despite_a_proxy_in_the_environment(procs: list[Proc]) -> None:
    with FakeVoxsigServer() as server:
        proc = Proc("listen", "voxsig", "--url", server.url, "--account-id", "1", "--user-id", "7", "--json",
                    "--event", "message.created", "--count", "1", "--presence-interval", "0",
                    env={"VOXSIG_PUBSUB_TOKEN": "user-token-1", **DEAD_PROXY})  # fmt: skip
        procs.append(proc)
        server.wait_for_subscription("user-token-1", timeout=15)
        server.send_event("account_1", "message.created", message_payload(1, 42, "through no proxy"))
        assert proc.finish() == 0, proc.errors
    assert json.loads(proc.out[0])["data"]["content"] == "through no proxy"


def test_listen_stops_with_status_0_when_its_reader_goes_away() -> None:
    """`realtime-sync listen ... | head -1`: once head exits, listen must exit too (it used to
    keep running, reporting a BrokenPipeError handler error for every event)."""
    import selectors

    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", VOXSIG_PUBSUB_TOKEN="user-token-1")
    with FakeVoxsigServer() as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "realtime_sync", "listen", "voxsig", "--url", server.url, "--account-id", "1",
             "--user-id", "7", "--event", "message.created", "--presence-interval", "0", "-q"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None and proc.stderr is not None
            server.wait_for_subscription("user-token-1", timeout=15)
            server.send_event("account_1", "message.created", message_payload(1, 42, "first"))
            with selectors.DefaultSelector() as sel:  # the first line, with a deadline
                sel.register(proc.stdout, selectors.EVENT_READ)
                assert sel.select(T(10)), "no event line"
            assert b"first" in proc.stdout.readline()
            proc.stdout.close()  # what `| head -1` does after its line
            deadline = time.monotonic() + T(10)
            n = 2
            while proc.poll() is None:  # each event is a write into the closed pipe
                assert time.monotonic() < deadline, "listen kept running after its stdout was closed"
                server.send_event("account_1", "message.created", message_payload(n, 42, f"more {n}"))
                n += 1
                try:
                    proc.wait(timeout=T(0.2))
                except subprocess.TimeoutExpired:
                    pass
            errors = proc.stderr.read().decode()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == 0, errors
    assert "BrokenPipeError" not in errors and "Traceback" not in errors, errors


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["listen", "voxsig", "--count", "0"], "--count"),
     (["listen", "voxsig", "--duration", "-1"], "--duration"),
     (["listen", "voxsig", "--duration", "nan"], "--duration"),
     (["listen", "voxsig", "--max-attempts", "0"], "--max-attempts"),
     (["listen", "voxsig", "--connect-timeout", "0"], "--connect-timeout"),
     (["fake-server", "voxsig", "--port", "99999"], "--port")],
)  # fmt: skip
def test_bad_numbers_are_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_ca_bundle_and_raw_implies_json(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("VOXSIG_PUBSUB_TOKEN", "user-token-1")
    assert main(["listen", "voxsig", "--url", "ws://127.0.0.1:9/cable", "--ca-bundle", "/nonexistent/ca.pem"]) == 2
    err = capsys.readouterr().err
    assert "--ca-bundle" in err and "/nonexistent/ca.pem" in err and "user-token-1" not in err
    with FakeVoxsigServer() as server:

        def push() -> None:
            server.wait_for_subscription("user-token-1", timeout=15)
            server.send_event("account_1", "message.created", message_payload(1, 42, "raw one"))

        t = threading.Thread(target=push, daemon=True)
        t.start()
        code = main(["listen", "voxsig", "--url", server.url, "--account-id", "1", "--user-id", "7", "--raw",
                     "--event", "message.created", "--count", "1", "--presence-interval", "0", "-q",
                     "--duration", str(T(15))])  # fmt: skip
        t.join(T(5))
    assert code == 0
    doc = json.loads(capsys.readouterr().out.splitlines()[0])
    assert doc["data"]["content"] == "raw one" and doc["raw"]["message"]["event"] == "message.created"


def test_max_attempts_counts_failed_attempts(procs: list[Proc]) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        proc = Proc("listen", "voxsig", "--url", f"ws://127.0.0.1:{port}/cable", "--max-attempts", "2",
                    env={"VOXSIG_PUBSUB_TOKEN": "user-token-1"})  # fmt: skip
        procs.append(proc)
        assert proc.finish() == 1
    assert proc.errors.count("! error") == 3, proc.errors  # 2 refused connections + giving up
    assert "giving up after 2 failures in a row" in proc.errors


def test_secrets_can_stay_out_of_argv_and_argv_secrets_are_warned_about(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 10: --proxy user:pass@... and --header put secrets in argv (readable with ps)."""
    monkeypatch.setenv("VOXSIG_PUBSUB_TOKEN", "user-token-1")
    monkeypatch.setenv("MY_HDR_SECRET", "hdr-from-env-value-1")
    monkeypatch.setenv("REALTIME_SYNC_PROXY", "")
    with FakeVoxsigServer() as server:
        code = main(["listen", "voxsig", "--url", server.url, "--account-id", "1", "--user-id", "7", "-q",
                     "--presence-interval", "0", "--header-from-env", "X-Auth-Token=MY_HDR_SECRET",
                     "--duration", str(T(2))])  # fmt: skip
        assert code == 0
        assert server.handshakes[-1].headers["X-Auth-Token"] == "hdr-from-env-value-1"
    err = capsys.readouterr().err
    assert "warning" not in err and "hdr-from-env-value-1" not in err
    assert main(["listen", "voxsig", "--url", "ws://127.0.0.1:9/cable", "--header", "Authorization: Bearer argv-secret-1",
                 "--proxy", "http://bob:argv-pw-1@127.0.0.1:9", "--ca-bundle", "/nonexistent"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--header-from-env Authorization=VARIABLE" in err and "REALTIME_SYNC_PROXY" in err
    assert "argv-secret-1" not in err and "argv-pw-1" not in err
    assert main(["listen", "voxsig", "--url", "ws://h/cable", "--header-from-env", "X-A=NOT_SET_ANYWHERE"]) == 2
    assert "NOT_SET_ANYWHERE is not set" in capsys.readouterr().err
