"""The notebook, Flask and Django samples run against the fake servers and exit by themselves.

The Flask and Django samples are also run the way they are deployed: ``realtime-sync
fake-server`` in one process, the listener command (``flask realtime listen``, ``manage.py
realtime_listen``) in another, and the web side reading what the listener stored.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import T
from .test_cli import SECRET_VARS, Proc

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def env(**extra: str) -> dict[str, str]:
    # tests/test_django.py sets DJANGO_SETTINGS_MODULE for the test project: not the sample's.
    skip = {*SECRET_VARS, "REALTIME_SYNC_URL", "DJANGO_SETTINGS_MODULE"}
    e = {k: v for k, v in os.environ.items() if k not in skip}
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    e["PYTHONUNBUFFERED"] = "1"
    e.update(extra)
    return e


def run(args: list[str], timeout: float = 30, **extra: str) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            args, cwd=ROOT, env=env(**extra), capture_output=True, text=True, timeout=T(timeout),
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{args} did not exit within {T(timeout)}s:\n{exc.stdout}\n{exc.stderr}") from None
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture
def fake_voxsig() -> Iterator[str]:
    """``realtime-sync fake-server voxsig`` on a free port, pushing a message every 0.2 s."""
    proc = Proc("fake-server", "voxsig", "--port", "0", "--every", "0.2")
    try:
        url = proc.wait_line(lambda line: "listening on" in line, stream="out").split()[-1]
        yield url
        proc.proc.send_signal(signal.SIGINT)
        assert proc.finish() == 0
    finally:
        proc.kill()


def test_notebook_style_sample() -> None:
    out = run([sys.executable, str(SAMPLES / "notebook_style.py")], timeout=40).stdout
    assert "Voxsig: a fake server" in out
    assert "conversation 4" in out  # the first wait_for
    assert "someone mentioned an order" in out  # wait_for(where=...)
    assert "no conversation changed status in the last 0.5 s" in out  # WaitTimeout caught
    assert "ticket 32423 reached state 3; changed fields: ['state']" in out
    assert out.rstrip().endswith("done")


def test_flask_sample_all_in_one() -> None:
    out = run([sys.executable, str(SAMPLES / "flask_app.py")]).stdout
    assert "stored message 3 of conversation 42: Thanks!" in out
    page = json.loads(out.split("GET /messages -> 200 ", 1)[1].replace("'", '"'))
    assert [m["text"] for m in page] == ["Hello", "My parcel is late", "Thanks!"]


def test_flask_sample_as_deployed(fake_voxsig: str, tmp_path: Path) -> None:
    db = str(tmp_path / "flask.db")
    app = str(SAMPLES / "flask_app.py")
    listen = run([sys.executable, "-m", "flask", "--app", app, "realtime", "listen", "--max-events", "3"],
                 REALTIME_SYNC_URL=fake_voxsig, FLASK_SAMPLE_DB=db)  # fmt: skip
    assert "stored message" in listen.stdout and "stopped (count)" in listen.stdout
    # The web side (another process) reads what the listener stored.
    code = "from flask_app import app; print(app.test_client().get('/messages').get_data(as_text=True))"
    page = run([sys.executable, "-c", code], FLASK_SAMPLE_DB=db, PYTHONPATH=f"{SAMPLES}{os.pathsep}{ROOT}")
    assert len(json.loads(page.stdout)) >= 1


def test_django_sample_as_deployed(fake_voxsig: str, tmp_path: Path) -> None:
    manage = str(SAMPLES / "django_project" / "manage.py")
    settings = {"DJANGO_SAMPLE_DB": str(tmp_path / "django.sqlite3"), "REALTIME_SYNC_URL": fake_voxsig}
    run([sys.executable, manage, "migrate", "-v", "0"], **settings)
    run([sys.executable, manage, "check"], **settings)
    listen = run([sys.executable, manage, "realtime_listen", "--max-events", "3"], **settings)
    assert "stored message" in listen.stdout and "stopped (count)" in listen.stdout
    assert "user-token-1" not in listen.stdout + listen.stderr
    code = "from django.test import Client; print(Client().get('/messages/').content.decode())"
    page = run([sys.executable, manage, "shell", "-c", code], **settings)
    messages = json.loads(page.stdout.strip().splitlines()[-1])["messages"]  # Django 5.2 prints a banner first
    assert len(messages) >= 1 and messages[0]["conversation"] == 42 and messages[0]["sender"] == "Bo Contact"
