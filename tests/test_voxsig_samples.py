"""The Voxsig samples run against their in-process fake server and exit by themselves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from realtime_sync.testing.actioncable import FakeVoxsigServer

from .conftest import T

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def start(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    extra = env or {}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    for var in ("VOXSIG_URL", "VOXSIG_PUBSUB_TOKEN", "VOXSIG_CONTACT_PUBSUB_TOKEN"):
        env.pop(var, None)
    env.update(extra)
    return subprocess.Popen(
        [sys.executable, str(SAMPLES / name), *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=T(timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"sample did not exit within {timeout}s:\n{out}\n{err}") from None
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    return out, err


def test_samples_run_against_the_fake_and_exit() -> None:
    # Both at once: each mostly waits on its own clock.
    agent = start("voxsig_agent.py", "-v")
    contact = start("voxsig_contact.py")
    out, err = finish(agent, 90)
    assert "subscribed to the agent's room" in out
    assert "Bo Contact: Hi, my order is late" in out
    assert "Bo Contact is typing" in out
    assert "[notification 500]" in out
    assert "disconnected: server_restart" in out
    assert out.count("subscribed to the agent's room") == 2  # came back after the restart
    assert "status=resolved" in out
    assert "[presence] user 7: online" in out
    presence = int(out.split("the server saw ")[1].split()[0])
    assert presence >= 3  # every second, on both connections (the confirmations count as the first)
    assert "user-token-1" not in out + err  # the pubsub token stays out of the output and the INFO logs
    assert "error (" not in err

    out, err = finish(contact, 90)
    assert out.splitlines()[:4] == [
        "subscribed",
        "the agent is typing...",
        "agent says: Hello! How can I help?",
        "conversation 42 is now resolved",
    ]
    assert "contact-token-1" not in out + err


def test_real_mode_without_credentials_explains_and_exits() -> None:
    _out, err = finish_status(start("voxsig_agent.py", "--real"), 60)
    assert "VOXSIG_PUBSUB_TOKEN" in err
    _out, err = finish_status(start("voxsig_contact.py", "--real"), 60)
    assert "VOXSIG_CONTACT_PUBSUB_TOKEN" in err


def finish_status(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    out, err = proc.communicate(timeout=T(timeout))
    assert proc.returncode == 2, (out, err)
    return out, err


def test_contact_sample_exits_1_when_its_room_is_rejected() -> None:
    # A wrong contact token: the room subscription is refused, and nothing would ever come;
    # the sample says so and exits 1 rather than waiting out --duration (reviewer, session 10).
    with FakeVoxsigServer() as server:
        server.rejected_channels.add("RoomChannel")
        env_extra = {"VOXSIG_URL": server.url, "VOXSIG_CONTACT_PUBSUB_TOKEN": "contact-token-9x"}
        proc = start("voxsig_contact.py", "--real", "--duration", "60", env=env_extra)
        out, err = proc.communicate(timeout=T(60))
    assert proc.returncode == 1, (out, err)
    assert "subscription_rejected" in err and "contact-token-9x" not in out + err
