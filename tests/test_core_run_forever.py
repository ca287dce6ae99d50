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


def script(body: str) -> str:
    """A child process running ``body`` (with ``EchoClient`` imported, ``sys.argv[1]`` the echo
    server's URL) under terminal-like signal handling; it prints ``CLOSED <state> <threads left>``
    once ``client.run_forever()`` in ``body`` has returned."""
    return (
        textwrap.dedent(
            """
        import faulthandler, os, signal, sys, threading
        from tests._echo import EchoClient

        faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for stacks on a hang
        # As in a terminal: a test runner started in the background (nohup, `cmd &`) passes SIGINT on
        # as ignored, and a process that ignores Ctrl-C keeps ignoring it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        """
        )
        + textwrap.dedent(body)
        + textwrap.dedent(
            """
        alive = [t.name for t in threading.enumerate() if t.name.startswith("realtime_sync-")]
        print("CLOSED", client.state.value, alive, flush=True)
        """
        )
    )


def child(code: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run ``code`` with ``args`` from the repository root."""
    return [sys.executable, "-c", code, *args], dict(os.environ, PYTHONPATH=str(ROOT))


def assert_closed_cleanly(returncode: int, out: str, err: str) -> None:
    assert returncode == 0, err
    assert "CLOSED closed []" in out
    assert "Traceback" not in err


SCRIPT = script(
    """
    client = EchoClient(sys.argv[1])
    client.on("connected", lambda e: print("READY", flush=True))
    client.run_forever()
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_close_cleanly(echo_server, sig):
    # SIGTERM is what docker and systemd send: it used to kill the process without closing.
    cmd, env = child(SCRIPT, echo_server.url)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
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
    assert_closed_cleanly(proc.returncode, out, err)
    assert conn.closed.wait(T(5)), "the server did not see the connection close"


EARLY_SCRIPT = script(
    """
    class Early(EchoClient):
        def start(self, *args, **kwargs):
            # The signal lands while start() runs (a process manager that stops a service at once).
            os.kill(os.getpid(), int(sys.argv[2]))
            return super().start(*args, **kwargs)

    client = Early(sys.argv[1])
    client.run_forever()
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_during_start_is_held_until_start_is_done_then_closes(echo_server, sig):
    # An exception raised between two steps of start() could leave threads nobody stops: the
    # signal is held until start() is done, and then closes the client like any other.
    cmd, env = child(EARLY_SCRIPT, echo_server.url, str(int(sig)))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=T(60))
    assert_closed_cleanly(proc.returncode, proc.stdout, proc.stderr)
