"""The reconnect log lines name their counters (the logs said ``attempt`` for two of them).

``reconnecting`` counts failures in a row (the backoff's counter, ``ReconnectInfo.attempt``: a
connection that dropped before ``stable_after`` is one more); ``connected`` counts connection
attempts since the last connection (``ConnectionInfo.attempt``).  They differ: after two refused
handshakes and a connection that dropped at once, the next try is connection attempt 1 after 3
failures in a row.  Each line says which is which, the same over a websocket and long-polling,
with no secret in it.  Real reconnects against the fakes of ``realtime_sync.testing``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.cometd import CometDClient
from realtime_sync.demo import describe
from realtime_sync.jifeline import JifelineCustomerClient
from realtime_sync.testing.bayeux import FakeBayeuxServer
from realtime_sync.testing.jifeline import FakeJifelineCustomerServer

from .conftest import Recorder, T

TOKEN = "reconnect-log-S3CRET-token"
PASSWORD = "reconnect-log-pa55word"
# stable_after: a connection that drops within a minute counts as one more failure in a row.
POLICY = rs.ReconnectPolicy(instant_retries=0, interval=0.05, max_interval=0.05, jitter=0, stable_after=60)


class _RefusingJifeline(FakeJifelineCustomerServer):
    """Refuses its first ``refusals`` handshakes with HTTP 503 (then checks tokens as usual)."""

    refusals = 2

    def check_request(self, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        if self.refusals > 0:
            self.refusals -= 1
            return 503, "busy"
        return super().check_request(path, headers)


def _counter_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The transport's lines about connecting, with the URL and the delay made generic."""
    out = []
    for record in caplog.records:
        text = record.getMessage()
        if record.name.startswith("realtime_sync.transport") and re.match(r"(re)?connect(ing|ed) (to|in) ", text):
            text = re.sub(r"(https?|wss?)://\S+", "URL", text)
            out.append(re.sub(r"in \d+\.\d\ds", "in Ds", text))
    return out


def _expected(failures_after_the_drop: int) -> list[str]:
    return [
        "connecting to URL (connection attempt 1)",
        "reconnecting in Ds (connection attempt 2 next; 1 failure in a row)",
        "connecting to URL (connection attempt 2)",
        "reconnecting in Ds (connection attempt 3 next; 2 failures in a row)",
        "connecting to URL (connection attempt 3)",
        "connected to URL (connection attempt 3)",
        # The connection dropped: a new count of attempts; the failures go on (see the callers).
        f"reconnecting in Ds (connection attempt 1 next; {failures_after_the_drop} failure"
        f"{'' if failures_after_the_drop == 1 else 's'} in a row)",
        "connecting to URL (connection attempt 1)",
        "connected to URL (connection attempt 1)",
    ]


def _check(rec: Recorder, caplog: pytest.LogCaptureFixture, secret: str, failures_after_the_drop: int) -> None:
    lines = _counter_lines(caplog)
    assert lines == _expected(failures_after_the_drop), "\n".join(lines)
    # The events carry the same two counters, and the CLI's lines name them alike.
    assert [e.data.attempt for e in rec.named("reconnecting")] == [1, 2, failures_after_the_drop]
    assert [e.data.attempt for e in rec.named("connected")] == [3, 1]
    first, second = rec.named("connected")
    assert describe(first).endswith("(connection attempt 3)") and "attempt" not in describe(second)
    shown = [describe(e) for e in rec.named("reconnecting")]
    assert shown[:2] == ["in 0.05s (1 failure in a row)", "in 0.05s (2 failures in a row)"], shown
    assert shown[2].endswith(
        f"({failures_after_the_drop} failure{'' if failures_after_the_drop == 1 else 's'} in a row)"
    )
    fmt = logging.Formatter("%(message)s")
    logged = "\n".join(fmt.format(r) for r in caplog.records if r.name.startswith("realtime_sync"))
    assert secret not in logged and secret not in repr(rec.events)
    assert "(attempt " not in logged  # no bare "attempt N" left


def test_websocket_reconnect_lines_name_their_counters(clients: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    server = _RefusingJifeline(token=TOKEN).start()
    try:
        client = clients(JifelineCustomerClient, server.url, token=TOKEN, reconnect=POLICY)
        rec = Recorder(client)
        client.start()
        rec.wait("connected")
        server.wait_for_connection()  # the server's side registered too (else drop_all() may miss it)
        server.drop_all()  # at once: well within stable_after
        rec.wait("connected", count=2)
        client.close(timeout=T(5))
        # Within stable_after the drop is one more failure in a row: 3.
        _check(rec, caplog, TOKEN, 3)
    finally:
        server.stop()


def test_long_polling_reconnect_lines_name_their_counters(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    with FakeBayeuxServer(timeout=0.3, websocket=False, basic_auth=("agent", PASSWORD)) as server:
        server.fail_post(503, channel="/meta/handshake", count=2)  # two refused connection attempts
        client = CometDClient(
            server.http_url, transport="long-polling", username="agent", password=PASSWORD, reconnect=POLICY
        )
        rec = Recorder(client)
        try:
            client.start()
            rec.wait("connected", timeout=10)
            # The next connect answered HTTP 500: the connection ends (a dropped one would be
            # re-sent once on a fresh socket: /meta/connect may be repeated).
            server.fail_post(500, channel="/meta/connect")
            rec.wait("connected", count=2, timeout=10)
        finally:
            client.close(timeout=T(5))
        # Bayeux resets the backoff once the server confirms the session (the handshake's
        # reply), so the drop is the first failure in a row again.
        _check(rec, caplog, PASSWORD, 1)
