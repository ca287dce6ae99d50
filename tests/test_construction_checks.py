"""Misuse found by a new user's review, raised at construction as ``rs.ConfigurationError`` with
what to do, never with the secret in the message (README, "Errors and bad input"); and the
values that are fine once read as meant (a token read from a file, with its newline) going out
right on the wire.  Each test fails on the code before the fix (say which in its docstring)."""

from __future__ import annotations

from typing import Any

import pytest

import realtime_sync as rs

SECRET = "s3cr3t-t0ken"
INJECTED = f"{SECRET}\r\nX-Injected: yes"


def _refused(make: Any, *, names: str, secret: str = SECRET) -> str:
    """``make()`` raises ConfigurationError naming ``names`` and not showing ``secret``."""
    with pytest.raises(rs.ConfigurationError) as info:
        client = make()
        client.close()  # pragma: no cover - only reached on the old code
    message = str(info.value)
    assert names in message, message
    assert secret not in message, message
    return message


def _header(handshake: Any, name: str) -> str | None:
    return {k.lower(): v for k, v in handshake.headers.items()}.get(name.lower())


# -- 7. ReconnectPolicy's interval and max_interval ---------------------------------------------


def test_a_longer_interval_is_not_capped_by_the_default_max_interval() -> None:
    """Before: ``ReconnectPolicy(interval=30)`` retried every 5 s (the default ``max_interval``)
    and a doubling delay from 1 s stopped growing at 5 s."""
    assert rs.ReconnectPolicy(interval=30, jitter=0).delay(10) == 30.0
    doubling = rs.ReconnectPolicy(instant_retries=0, interval=1, multiplier=2, jitter=0)
    assert [doubling.delay(k) for k in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    message = _refused(lambda: rs.ReconnectPolicy(interval=30, max_interval=5), names="max_interval (5 s)")
    assert "interval (30 s)" in message
    default = rs.ReconnectPolicy()
    assert (default.interval, default.max_interval, default.delay(3, lambda: 0.0)) == (5.0, 5.0, 5.0)
    assert rs.ReconnectPolicy(interval=30, max_interval=0, jitter=0).delay(3) == 30.0  # 0: no cap
