"""run_forever() in a real process: Ctrl-C (SIGINT) closes the client cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

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


def test_ctrl_c_closes_cleanly(echo_server):
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
        proc.send_signal(signal.SIGINT)
        # close() itself may take up to its 10 s timeout on a loaded machine: a deadline for a hang.
        out, err = proc.communicate(timeout=T(60))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "CLOSED closed []" in out
    assert "Traceback" not in err
    assert conn.closed.wait(T(5)), "the server did not see the connection close"
