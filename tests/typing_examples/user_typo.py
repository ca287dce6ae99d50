"""The same handler with a typo: `mypy --strict` must fail on it (tests/test_typing.py)."""

from __future__ import annotations

import realtime_sync as rs
from realtime_sync.models.voxsig import Message

client = rs.VoxsigClient("wss://app.voxsig.com/cable", pubsub_token="token", account_id=1, user_id=7)


@client.on("message.created")
def show(event: rs.Event[Message]) -> None:
    print(event.data.contnet)


def newest() -> str | None:
    # wait_for() of a known name is typed by its model: the typo is caught here too.
    return client.wait_for("message.created", timeout=30).data.contnt  # type: ignore[no-any-return]
