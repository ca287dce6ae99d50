"""The Genesys sample runs against its in-process fake GWS and exits by itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import T

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "genesys_chats.py"


def start(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    for var in ("GENESYS_URL", "GENESYS_USERNAME", "GENESYS_PASSWORD", "GENESYS_JSESSIONID"):
        env.pop(var, None)
    return subprocess.Popen(
        [sys.executable, str(SAMPLE), *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float, code: int = 0) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=T(timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"sample did not exit within {timeout}s:\n{out}\n{err}") from None
    assert proc.returncode == code, f"exit {proc.returncode}\n{out}\n{err}"
    return out, err


def test_sample_runs_against_the_fake_gws_and_exits() -> None:
    # Both fakes at once (each mostly waits on its own clock): GWS-like without websocket, and
    # one that accepts websockets.
    lp = start("-v")
    ws = start("--websocket")
    for proc, transport in ((lp, "long-polling"), (ws, "websocket")):
        out, err = finish(proc, 90)
        if transport == "long-polling":
            assert "falling back to long-polling" in err  # -v: the fallback is logged at INFO
        lines = out.splitlines()
        assert lines[0] == f"session #1 over {transport}"
        assert "subscribed to /v2/me/chats" in lines
        assert "[chat 0000Wa9CAM6W00J] #1 Customer1: Hello, my order is late" in lines
        assert "[chat 0000Wa9CAM6W00J] #5 Agent1: Sorry! It ships today." in lines  # chatPath form
        assert f"session #2 over {transport}" in lines  # the expired session was replaced
        assert lines.count("subscribed to /v2/me/chats") == 2
        assert any("chat.status_change: state=Finished" in line for line in lines)
        assert "demo-Passw0rd" not in out + err  # the password stays out of output and INFO logs
        assert "error (" not in err


def test_real_mode_without_credentials_explains_and_exits() -> None:
    _out, err = finish(start("--real"), 60, code=2)
    assert "GENESYS_URL" in err
