"""``realtime-sync listen <vendor>``: help and examples per vendor; a refused Voxsig token exits 1
with a hint instead of staying connected and silent (issue 12 item 8)."""

from __future__ import annotations

import pytest

from realtime_sync.cli import main
from realtime_sync.testing.actioncable import FakeVoxsigServer
from realtime_sync.testing.bayeux import FakeGenesysServer

from .test_cli import Proc, procs  # noqa: F401 - the fixture

VENDOR_MARKS = {
    "jifeline-customer": ("JIFELINE_TOKEN", "--ticket 32423", "fake-server jifeline"),
    "jifeline-partner": (
        "JIFELINE_CLIENT_SECRET",
        "--system-event tickets.ticket.created",
        "fake-server jifeline-partner",
    ),
    "voxsig": ("VOXSIG_PUBSUB_TOKEN", "--account-id 1 --user-id 7", "fake-server voxsig"),
    "genesys": ("GENESYS_PASSWORD", "--username agent1", "fake-server genesys"),
}


@pytest.mark.parametrize("vendor", sorted(VENDOR_MARKS))
def test_each_vendor_has_its_own_help_and_examples(vendor: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["listen", vendor, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for mark in VENDOR_MARKS[vendor]:
        assert mark in out, (vendor, mark)
    assert f"realtime-sync listen {vendor}" in out or (vendor == "jifeline-partner" and "listen partner" in out)
    for other, marks in VENDOR_MARKS.items():
        if other != vendor:
            assert f"realtime-sync {marks[2]} " not in out and f"`realtime-sync {marks[2]}`" not in out, (vendor, other)
    # Another vendor's example never shows up (it used to be Voxsig's for every vendor).
    if vendor != "voxsig":
        assert "VOXSIG_PUBSUB_TOKEN=user-token-1" not in out


def test_a_refused_voxsig_token_exits_1_with_a_hint(procs: list[Proc]) -> None:  # noqa: F811
    # Chatwoot never answers reject_subscription: a wrong token is a subscription never confirmed.
    token, reason = "nobody-token-1234", "no confirmation within 1 s"
    with FakeVoxsigServer() as server:
        proc = Proc(
            "listen", "voxsig", "--url", server.url, "--account-id", "1", "--user-id", "7",
            "--confirm-timeout", "1", "--presence-interval", "0",
            env={"VOXSIG_PUBSUB_TOKEN": token},
        )  # fmt: skip
        procs.append(proc)
        assert proc.finish(timeout=30) == 1, proc.errors
    assert "the server refused the Voxsig subscription" in proc.errors
    assert reason in proc.errors
    assert "Check VOXSIG_PUBSUB_TOKEN" in proc.errors
    assert token not in proc.errors + proc.text


def test_listen_genesys_with_csrf(procs: list[Proc]) -> None:  # noqa: F811
    password = "agent1-cli-password"
    with FakeGenesysServer(websocket=False, timeout=1.0, csrf=True, basic_auth=("agent1", password)) as gws:
        proc = Proc(
            "listen", "genesys", "--url", gws.http_url, "--username", "agent1", "--csrf",
            "--count", "1", "--event", "chat.*", env={"GENESYS_PASSWORD": password},
        )  # fmt: skip
        procs.append(proc)
        gws.wait_for_subscription("/v2/me/chats", timeout=15)
        gws.new_messages("C1", ["hello"])
        assert proc.finish() == 0, proc.errors
        assert len(gws.csrf_issued) == 1
    assert "[1] Agent1: hello" in proc.text
    assert gws.csrf_issued[0] not in proc.text + proc.errors and password not in proc.text + proc.errors
