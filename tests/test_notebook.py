"""A Jupyter notebook, run headless with nbclient (issue 12, "done means"): the README's
"Scripts and notebooks" code works in a kernel, re-running a handler cell does not register the
handler twice, and re-running a client cell warns that the first client is still running."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from .conftest import T  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _readme_notebook_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Scripts and notebooks", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, re.M | re.S)[0]


SETUP = """
import threading
import realtime_sync as rs
from realtime_sync.models.voxsig import Message
from realtime_sync.testing.actioncable import FakeVoxsigServer, message_payload

server = FakeVoxsigServer().start()
URL, TOKEN = server.url, "user-token-1"
stop_pushing = threading.Event()

def push():  # a live feed: a message every 0.1 s once the client subscribed
    server.wait_for_subscription(TOKEN, timeout=60)
    i = 0
    while not stop_pushing.wait(0.1):
        i += 1
        server.send_event("account_1", "message.created", message_payload(i, 42, f"urgent message {i}"))

threading.Thread(target=push, daemon=True).start()
"""

HANDLER_CELL = """
stored = globals().get("stored", [])

@client.on("message.created")
def store(event: rs.Event[Message]) -> None:
    stored.append(event.data.content)
"""

CLIENT_CELL = """
client = rs.VoxsigClient(URL, TOKEN, account_id=1, user_id=7, presence_interval=None)
client.start()
"""


def test_a_notebook_runs_the_readme_code_and_survives_re_run_cells(tmp_path: Path) -> None:
    cells = [
        SETUP,
        _readme_notebook_block(),  # the README's code, verbatim
        "print('README block done', event.entity_id, urgent.data.content[:6])",
        CLIENT_CELL,
        HANDLER_CELL,
        HANDLER_CELL,  # the same cell run again
        "client.wait_for('message.created', timeout=30); client.wait_for('message.created', timeout=30)\n"
        "counts = {}\nfor s in stored: counts[s] = counts.get(s, 0) + 1\n"
        "print('max handler calls per message:', max(counts.values()))",
        "first = client\n" + CLIENT_CELL,  # the client cell run again: the first one still runs
        "first.close(); client.close(); stop_pushing.set(); server.stop()\n"
        "print('threads left:', [t.name for t in threading.enumerate() if t.name.startswith('realtime_sync-')])",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(c)) for c in cells])
    env_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env_path  # the kernel is a subprocess: it inherits the environment
    try:
        client = nbclient.NotebookClient(
            nb, timeout=int(T(180)), kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        client.execute()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old

    def output(i: int) -> str:
        return "".join(o.get("text", "") for o in nb.cells[i].outputs if o.get("output_type") == "stream")

    assert "README block done 42 urgent" in output(2)
    assert "max handler calls per message: 1" in output(6)  # the re-run handler cell did not double it
    assert "another client named 'VoxsigClient' is already running" in output(7)
    assert "threads left: []" in output(8)
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.outputs)
