"""run_forever() in a real process: Ctrl-C (SIGINT) and SIGTERM close the client cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import T

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from tests._echo import EchoClient

    client = EchoClient(sys.argv[1])
    client.on("connected", lambda e: print("READY", flush=True))
    client.run_forever()
    alive = [t.name for t in threading.enumerate() if t.name.startswith("realtime_sync-")]
    print("CLOSED", client.state.value, alive, flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_close_cleanly(echo_server, sig):
    # SIGTERM is what docker and systemd send: it used to kill the process without closing.
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, echo_server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        conn = echo_server.wait_for_connection(timeout=T(5))
        proc.send_signal(sig)
        # close() itself may take up to its 10 s timeout on a loaded machine: a deadline for a hang.
        out, err = proc.communicate(timeout=T(60))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "CLOSED closed []" in out
    assert "Traceback" not in err
    assert conn.closed.wait(T(5)), "the server did not see the connection close"
