"""A Flask app deployed as the README says, for tests/test_gunicorn.py.

    gunicorn --preload -w 2 -b 127.0.0.1:0 tests._gunicorn_app:app     # the web workers
    flask --app tests._gunicorn_app realtime listen                   # the listener

``RT_URL`` is the (fake) Voxsig server, ``RT_STORE`` a file standing in for the database: the
app's handler appends one line per message it stores, with the process that stored it.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from flask import Flask, jsonify

import realtime_sync as rs
from realtime_sync.contrib.flask import RealtimeSync

realtime = RealtimeSync()

#: A view waits this long for a message (a deadline for a hang, not for speed).
WAIT = float(os.environ.get("RT_WAIT", "60"))


@realtime.on("message.created")
def store(event: rs.Event[Any]) -> None:
    """The app's handler: it belongs in the listener process, and runs there only."""
    with open(os.environ["RT_STORE"], "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "id": event.data.id}) + "\n")


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        REALTIME_SYNC_VENDOR="voxsig",
        REALTIME_SYNC_URL=os.environ["RT_URL"],
        REALTIME_SYNC_TOKEN="user-token-1",
        REALTIME_SYNC_OPTIONS={"account_id": 1, "user_id": 7, "presence_interval": None},
    )
    realtime.init_app(app)  # starts nothing: under --preload this runs in the master

    @app.get("/presence")
    def presence() -> Any:
        """Send through this worker's client (the agent is online), then wait for the next
        message on it: the client is live, yet the app's handler does not run here."""
        client = realtime.get_client()
        with contextlib.closing(client.events("message.created", timeout=WAIT, limit=1)) as messages:
            client.wait_connected(timeout=WAIT)
            client.update_presence()  # type: ignore[attr-defined]
            event = next(messages, None)
        return jsonify(pid=os.getpid(), message=None if event is None else event.data.id)

    return app


app = create_app()
