"""A new Django project and a new Flask app, set up as the README says, run as their commands
(issue 12, "done means"): ``manage.py check`` passes (and imports the app's ``realtime.py``),
``manage.py realtime_listen`` / ``flask --app myapp realtime listen`` store a live message."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from realtime_sync.testing.actioncable import FakeVoxsigServer, message_payload

from .conftest import T

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "user-token-1"  # the fake server's demo token


def _readme_block(section: str, starts: str) -> str:
    readme = (ROOT / "README.md").read_text()
    text = readme.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return next(b for b in re.findall(r"^```python\n(.*?)^```", text, re.M | re.S) if b.startswith(starts))


def _env(server: FakeVoxsigServer, cwd: Path) -> dict[str, str]:
    env = dict(os.environ, VOXSIG_PUBSUB_TOKEN=TOKEN, VOXSIG_URL=server.url)
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), str(ROOT)])
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=T(120))
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def _listen_and_push(args: list[str], cwd: Path, env: dict[str, str], server: FakeVoxsigServer) -> str:
    """Run a listener that stops after 2 events: the presence.update answering its first
    presence, and the message pushed once it subscribed."""
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:

        def push() -> None:
            server.wait_for_subscription(TOKEN, timeout=T(60))
            server.send_event("account_1", "message.created", message_payload(1, 42, "hello from the README"))

        pusher = threading.Thread(target=push, daemon=True)
        pusher.start()
        out, _ = proc.communicate(timeout=T(120))
        pusher.join(T(10))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    return out


def test_a_new_django_project_as_the_readme_says(tmp_path: Path) -> None:
    pytest.importorskip("django")
    with FakeVoxsigServer() as server:
        env = _env(server, tmp_path)
        _run([sys.executable, "-m", "django", "startproject", "mysite", str(tmp_path)], tmp_path, env)
        _run([sys.executable, "manage.py", "startapp", "inbox"], tmp_path, env)
        settings = _readme_block("Django", "# settings.py")
        settings = settings.replace('INSTALLED_APPS = [..., "realtime_sync.contrib.django"]',
                                    'INSTALLED_APPS += ["realtime_sync.contrib.django", "inbox"]')  # fmt: skip
        settings = settings.replace('"wss://app.voxsig.com/cable"', 'os.environ["VOXSIG_URL"]')
        with (tmp_path / "mysite" / "settings.py").open("a") as f:
            f.write("\nimport os\n" + settings)
        (tmp_path / "inbox" / "models.py").write_text(
            textwrap.dedent(
                """
                from django.db import models

                class Message(models.Model):
                    id = models.IntegerField(primary_key=True)
                    text = models.TextField()

                class Ticket(models.Model):
                    open = models.BooleanField(default=True)
                """
            )
        )
        handlers = _readme_block("Django", "# inbox/realtime.py")
        (tmp_path / "inbox" / "realtime.py").write_text("from .models import Message, Ticket\n" + handlers)
        _run([sys.executable, "manage.py", "makemigrations", "inbox"], tmp_path, env)
        _run([sys.executable, "manage.py", "migrate"], tmp_path, env)
        check = _run([sys.executable, "manage.py", "check"], tmp_path, env)
        assert "no issues" in check.stdout and "realtime_sync" not in check.stdout + check.stderr
        out = _listen_and_push(
            [sys.executable, "manage.py", "realtime_listen", "--max-events", "2", "--duration", str(T(60))],
            tmp_path,
            env,
            server,
        )
    assert "stopped (count), 2 event(s) handled" in out, out
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        assert db.execute("select id, text from inbox_message").fetchall() == [(1, "hello from the README")]
    assert TOKEN not in out


def test_a_new_flask_app_as_the_readme_says(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    app_code = _readme_block("Flask", "from realtime_sync.contrib.flask import RealtimeSync")
    app_code = app_code.replace('"wss://app.voxsig.com/cable"', 'os.environ["VOXSIG_URL"]')
    # The README's db is Flask-SQLAlchemy's; a few lines of sqlite3 stand in for it here.
    prelude = textwrap.dedent(
        """
        import os, sqlite3
        from flask import Flask

        class Message:
            def __init__(self, id, text):
                self.id, self.text = id, text

        class _Session:
            def add(self, m):
                with sqlite3.connect(os.environ["APP_DB"]) as db:
                    db.execute("create table if not exists message (id integer primary key, text text)")
                    db.execute("insert into message values (?, ?)", (m.id, m.text))
            def commit(self):
                pass

        class db:
            session = _Session()
        """
    )
    (tmp_path / "myapp.py").write_text(prelude + app_code)
    with FakeVoxsigServer() as server:
        env = _env(server, tmp_path)
        env["APP_DB"] = str(tmp_path / "app.sqlite3")
        out = _listen_and_push(
            [sys.executable, "-m", "flask", "--app", "myapp", "realtime", "listen", "--max-events", "2",
             "--duration", str(T(60))],
            tmp_path, env, server,
        )  # fmt: skip
    assert "stopped (count), 2 event(s) handled" in out, out
    with sqlite3.connect(tmp_path / "app.sqlite3") as db:
        assert db.execute("select id, text from message").fetchall() == [(1, "hello from the README")]
