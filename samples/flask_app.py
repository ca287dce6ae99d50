#!/usr/bin/env python
"""A Flask app whose real-time listener stores Voxsig messages, and a page that shows them.

The deployment it shows: the web app and the listener are two processes sharing a database.
The listener (``flask realtime listen``) receives the events and writes them; the web workers
only read.  No web worker holds a websocket.

Run it against a fake server (no account needed), in three terminals::

    realtime-sync fake-server voxsig                       # ws://127.0.0.1:8765/cable
    flask --app samples/flask_app.py realtime listen       # the listener process
    flask --app samples/flask_app.py run                   # then open http://127.0.0.1:5000/messages

or all in one go (a fake server in-process, the listener for a few events, then the page)::

    python samples/flask_app.py

Against the real Voxsig server, set ``REALTIME_SYNC_URL`` (e.g. ``wss://app.voxsig.com/cable``),
``VOXSIG_PUBSUB_TOKEN``, ``VOXSIG_ACCOUNT_ID`` and ``VOXSIG_USER_ID``.  In production run the
listener under your process manager (a systemd unit, a Procfile line
``realtime: flask --app myapp realtime listen``); it exits on SIGTERM after closing cleanly.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import threading
from typing import Any

try:
    from flask import Flask, current_app, g, jsonify
except ImportError:  # the sample's one dependency beyond realtime_sync
    sys.exit("samples/flask_app.py needs Flask: pip install flask")

import realtime_sync as rs
from realtime_sync.contrib.flask import RealtimeSync

realtime = RealtimeSync()


# -- the database (sqlite3 keeps the sample dependency-free) ---------------------------------------


def db() -> sqlite3.Connection:
    if "db" not in g:
        g.db = sqlite3.connect(current_app.config["DATABASE"])
        g.db.execute(
            "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, conversation INTEGER, sender TEXT, text TEXT)"
        )
    return g.db  # type: ignore[no-any-return]


def close_db(_exc: BaseException | None = None) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


# -- real-time handlers: they run in the listener process, each inside an app context -------------


@realtime.on("message.created")
def store_message(event: rs.Event) -> None:
    m = event.data
    sender = getattr(m.sender, "name", None) or m.sender_type or "?"
    with db() as conn:  # commits
        conn.execute(
            "INSERT OR REPLACE INTO messages (id, conversation, sender, text) VALUES (?, ?, ?, ?)",
            (m.id, event.entity_id, sender, m.content),
        )
    print(f"stored message {m.id} of conversation {event.entity_id}: {m.content}", flush=True)


@realtime.on("error")
def report(event: rs.Event) -> None:
    print(f"realtime error ({event.data.kind}): {event.data.message}", file=sys.stderr, flush=True)


# -- the app ----------------------------------------------------------------------------------------


def create_app(**overrides: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        DATABASE=os.environ.get("FLASK_SAMPLE_DB", os.path.join(tempfile.gettempdir(), "realtime_sync_flask.db")),
        REALTIME_SYNC_VENDOR="voxsig",
        REALTIME_SYNC_URL=os.environ.get("REALTIME_SYNC_URL", "ws://127.0.0.1:8765/cable"),
        # The fake server's demo token by default; the real one comes from the environment.
        REALTIME_SYNC_TOKEN=os.environ.get("VOXSIG_PUBSUB_TOKEN", "user-token-1"),
        REALTIME_SYNC_OPTIONS={
            "account_id": int(os.environ.get("VOXSIG_ACCOUNT_ID", "1")),
            "user_id": int(os.environ.get("VOXSIG_USER_ID", "7")),
        },
    )
    app.config.update(overrides)
    app.teardown_appcontext(close_db)
    realtime.init_app(app)

    @app.get("/messages")
    def messages() -> Any:
        rows = db().execute("SELECT id, conversation, sender, text FROM messages ORDER BY id").fetchall()
        return jsonify([{"id": i, "conversation": c, "sender": s, "text": t} for i, c, s, t in rows])

    return app


app = create_app()


def main() -> int:
    """Everything in one process: a fake server, the listener for a few events, then the page."""
    from realtime_sync.testing.actioncable import FakeVoxsigServer, message_payload

    with FakeVoxsigServer() as server, tempfile.TemporaryDirectory() as tmp:
        demo = create_app(REALTIME_SYNC_URL=server.url, DATABASE=os.path.join(tmp, "demo.db"))

        def customers() -> None:
            server.wait_for_subscription("user-token-1", timeout=10)
            for i, text in enumerate(["Hello", "My parcel is late", "Thanks!"], start=1):
                server.send_event("account_1", "message.created", message_payload(i, 42, text))

        threading.Thread(target=customers, daemon=True).start()
        # What `flask realtime listen --max-events 3` runs:
        code = realtime.listen(demo, max_events=3, duration=30)
        page = demo.test_client().get("/messages")
        print("GET /messages ->", page.status_code, page.get_json())
        return code


if __name__ == "__main__":
    sys.exit(main())
