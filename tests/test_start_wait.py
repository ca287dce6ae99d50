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
