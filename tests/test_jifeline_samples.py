"""The Jifeline samples run end to end against their in-process fake servers and exit by themselves."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import T

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def start_sample(name: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for key in ("JIFELINE_TOKEN", "JIFELINE_CLIENT_ID", "JIFELINE_CLIENT_SECRET", "JIFELINE_CUSTOMER_URL"):
        env.pop(key, None)
    return subprocess.Popen(
        [sys.executable, str(SAMPLES / name), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(ROOT),
    )


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"sample did not exit within {timeout:.0f}s:\n{out}\n{err}")
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def sample_runs() -> Iterator[dict[str, tuple[int, str, str]]]:
    # Both samples run at once (default options: they stop after 6 s) to keep the suite short.
    procs = {name: start_sample(name) for name in ("jifeline_customer.py", "jifeline_partner.py")}
    yield {name: finish(proc, T(90)) for name, proc in procs.items()}


def test_customer_sample_prints_changes_only(sample_runs):
    code, out, err = sample_runs["jifeline_customer.py"]
    assert code == 0, err
    assert "first snapshot" in out
    assert "changed: state=2" in out  # the fake's first change
    assert out.count("connected to ws://127.0.0.1") == 2  # the fake dropped the connection once
    assert "changed: schedule=Schedule(" in out
    assert "Traceback" not in err


def test_partner_sample_recovers_missed_events(sample_runs):
    code, out, err = sample_runs["jifeline_partner.py"]
    assert code == 0, err
    assert "5 system events received, 0 duplicates" in out
    assert "5 emitted by the fake, 0 missing" in out
    assert out.count("connected to ws://127.0.0.1") == 2
    assert "Traceback" not in err


@pytest.mark.parametrize("name", ["jifeline_customer.py", "jifeline_partner.py"])
def test_samples_refuse_real_mode_without_configuration(name):
    code, _out, err = finish(start_sample(name, "--real"), T(60))
    assert code == 2 and "--real needs" in err
