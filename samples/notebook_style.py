#!/usr/bin/env python
"""realtime_sync in a script or a notebook: blocking helpers that read top to bottom.

Each ``# %%`` block is a cell (VS Code, PyCharm and Jupytext run them one by one; paste them
into Jupyter cells as they are), and the whole file runs as a script::

    python samples/notebook_style.py

By default it talks to in-process fake servers (``realtime_sync.testing``, the ``demo`` extra:
``pip install 'realtime_sync[demo]'``) with a small simulated world pushing events, so it needs
no account.  With ``VOXSIG_PUBSUB_TOKEN`` (and ``VOXSIG_URL``, ``VOXSIG_ACCOUNT_ID``,
``VOXSIG_USER_ID``) set, the Voxsig cells use the real server instead.

The three helpers:

* ``with client:`` starts the client's background threads and closes them at the end of the
  block, even after an exception or an interrupted cell.
* ``client.wait_for(name, timeout=..., where=...)`` blocks until a matching event arrives and
  returns it (:class:`~realtime_sync.WaitTimeout` after the timeout).  It only sees events that
  arrive *after* the call, so wait for something that is still to come.
* ``for event in client.events(name, timeout=..., limit=...)`` iterates as events arrive and
  stops after ``timeout`` seconds of silence (or ``limit`` events).  Interrupting the cell
  (Ctrl-C / the stop button) ends the loop; the client keeps running until closed.
"""

# %% Setup: where the events come from
from __future__ import annotations

import os
import threading

import realtime_sync as rs
from realtime_sync.jifeline import JifelineCustomerClient
from realtime_sync.voxsig import VoxsigClient

REAL = bool(os.environ.get("VOXSIG_PUBSUB_TOKEN"))
stop_world = threading.Event()

if REAL:
    URL = os.environ.get("VOXSIG_URL", "wss://app.voxsig.com/cable")
    TOKEN = os.environ["VOXSIG_PUBSUB_TOKEN"]
    ACCOUNT = int(os.environ.get("VOXSIG_ACCOUNT_ID", "1"))
    USER = int(os.environ["VOXSIG_USER_ID"]) if os.environ.get("VOXSIG_USER_ID") else None
else:
    from realtime_sync.testing.actioncable import FakeVoxsigServer, message_payload

    voxsig_server = FakeVoxsigServer().start()
    URL, TOKEN, ACCOUNT, USER = voxsig_server.url, "user-token-1", 1, 7
    texts = ["Hi!", "Where is my order?", "It was due yesterday.", "Order #1234.", "Thanks!"]

    def simulated_world() -> None:
        """Customers write every 0.2 s, as long as the notebook runs."""
        n = 0
        while not stop_world.wait(0.2):
            n += 1
            content = texts[n % len(texts)]
            voxsig_server.send_event("account_1", "message.created", message_payload(n, 40 + n % 3, content))

    threading.Thread(target=simulated_world, name="simulated-world", daemon=True).start()

print(f"Voxsig: {'the real server' if REAL else 'a fake server'} at {URL}")

# %% `with client:` + `wait_for`: connect, wait for the next message, done
with VoxsigClient(URL, TOKEN, account_id=ACCOUNT, user_id=USER) as client:
    event = client.wait_for("message.created", timeout=30)
    print(f"conversation {event.entity_id}: {event.data.content!r}")
# Here the client is closed: its threads are gone.

# %% `wait_for(where=...)`: wait for a particular event
with VoxsigClient(URL, TOKEN, account_id=ACCOUNT, user_id=USER) as client:
    event = client.wait_for("message.created", where=lambda e: "order" in (e.data.content or "").lower(), timeout=30)
    print(f"someone mentioned an order in conversation {event.entity_id}: {event.data.content!r}")

# %% A client that lives across cells: start it once, use it in later cells, close it at the end
client = VoxsigClient(URL, TOKEN, account_id=ACCOUNT, user_id=USER)
client.start()  # returns at once; the connection is made in the background

# %% `for event in client.events(...)`: the next few messages, or until 5 s of silence
for event in client.events("message.created", timeout=5, limit=4):
    print(f"{event.entity_id}: {event.data.content}")
print(client.stats)

# %% Timeouts are exceptions you can catch
try:
    client.wait_for("conversation.status_changed", timeout=0.5)
except rs.WaitTimeout:
    print("no conversation changed status in the last 0.5 s")

# %% Close it when done (idempotent; a notebook kernel restart also ends the threads)
client.close()
print(client.state)

# %% Jifeline: wait until a ticket reaches a state (snapshots every few seconds; changes only)
if REAL and os.environ.get("JIFELINE_CUSTOMER_URL"):
    JIF_URL, JIF_TOKEN, TICKET = os.environ["JIFELINE_CUSTOMER_URL"], os.environ.get("JIFELINE_TOKEN"), 32423
    jif_server = None
else:
    from realtime_sync.testing.jifeline import FakeJifelineCustomerServer

    jif_server = FakeJifelineCustomerServer(interval=0.2)
    jif_server.start()
    JIF_URL, JIF_TOKEN, TICKET = jif_server.url, None, 32423
    # The simulated technician moves the ticket along: state 1 -> 2 -> 3, one step a second.
    for delay, state in ((0.6, 2), (1.2, 3)):
        threading.Timer(delay, jif_server.update_ticket, args=(TICKET,), kwargs={"state": state}).start()

jifeline = JifelineCustomerClient(JIF_URL, token=JIF_TOKEN)
jifeline.subscribe_ticket(TICKET)  # subscriptions are desired state: set them before or after start()
with jifeline:
    done = jifeline.wait_for("ticket.updated", where=lambda e: e.data.state == 3, timeout=60)
    print(f"ticket {done.entity_id} reached state {done.data.state}; changed fields: {sorted(done.changes or ())}")

# %% Clean up the fake servers (nothing to do against real ones)
stop_world.set()
if not REAL:
    voxsig_server.stop()
if jif_server is not None:
    jif_server.stop()
print("done")
