"""``start(wait=True)`` when the reconnect policy gives up: a network failure is a ConnectError
naming the last failure (not a ClientClosedError, which is a ConfigurationError/ValueError)."""

from __future__ import annotations

import pytest

import realtime_sync as rs

from .conftest import T


@pytest.mark.parametrize("policy", ["off", "max_attempts"])
def test_start_wait_raises_connect_error_when_reconnecting_gives_up(dead_port: int, policy: str) -> None:
    reconnect = False if policy == "off" else rs.ReconnectPolicy(max_attempts=2, interval=0.01, max_interval=0.02)
    client = rs.VoxsigClient(f"ws://127.0.0.1:{dead_port}/cable", pubsub_token="p-secret-1", reconnect=reconnect)
    try:
        with pytest.raises(rs.ConnectError) as caught:
            client.start(wait=True, timeout=T(15))
    finally:
        client.close(timeout=T(5))
    assert not isinstance(caught.value, (rs.ConfigurationError, ValueError))
    message = str(caught.value)
    assert "refused" in message.lower(), message  # the last failure, not only "giving up"
    assert "p-secret-1" not in message
    assert client.closed


@pytest.mark.parametrize("ids", [[3, 4], {3}, {3: 4}])
def test_on_refuses_a_collection_of_entity_ids(ids: object) -> None:
    # Ids are compared as strings: str([3, 4]) matches no event, so the handler would never run.
    client = rs.VoxsigClient("ws://127.0.0.1:1/cable", pubsub_token="p")
    try:
        with pytest.raises(rs.ConfigurationError, match="once per id"):
            client.on("message.created", lambda e: None, entity_id=ids)
        with pytest.raises(rs.ConfigurationError, match="once per id"):
            client.on("message.created", entity_id=ids)
        client.on("message.created", lambda e: None, entity_id=(1, 3))  # all_accounts' (account, id)
    finally:
        client.close(timeout=T(5))
