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
    import faulthandler, signal, sys, threading
    from tests._echo import EchoClient

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for stacks on a hang
    # As in a terminal: a test runner started in the background (nohup, `cmd &`) passes SIGINT on
    # as ignored, and a process that ignores Ctrl-C keeps ignoring it.
    signal.signal(signal.SIGINT, signal.default_int_handler)

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
        try:
            out, err = proc.communicate(timeout=T(60))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # every thread's stack, for the report
            out, err = proc.communicate(timeout=T(10))
            pytest.fail(f"run_forever() did not return after the signal; stacks:\n{err}\nstdout:\n{out}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "CLOSED closed []" in out
    assert "Traceback" not in err
    assert conn.closed.wait(T(5)), "the server did not see the connection close"


EARLY_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading
    from tests._echo import EchoClient

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (see SCRIPT)

    class Early(EchoClient):
        def start(self, *args, **kwargs):
            # The signal lands while start() runs (a process manager that stops a service at once).
            os.kill(os.getpid(), int(sys.argv[2]))
            return super().start(*args, **kwargs)

    client = Early(sys.argv[1])
    client.run_forever()
    alive = [t.name for t in threading.enumerate() if t.name.startswith("realtime_sync-")]
    print("CLOSED", client.state.value, alive, flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_during_start_is_held_until_start_is_done_then_closes(echo_server, sig):
    # An exception raised between two steps of start() could leave threads nobody stops: the
    # signal is held until start() is done, and then closes the client like any other.
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", EARLY_SCRIPT, echo_server.url, str(int(sig))],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=T(60),
    )
    assert proc.returncode == 0, proc.stderr
    assert "CLOSED closed []" in proc.stdout
    assert "Traceback" not in proc.stderr
