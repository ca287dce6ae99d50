"""A csrf= callable returning the wrong type: `mypy --strict` must fail on it (tests/test_typing.py)."""

from __future__ import annotations

import realtime_sync as rs


def gws_csrf_token() -> int:
    return 42


gws = rs.GenesysChatClient("https://gws.example.com/api/v2/notifications", csrf=gws_csrf_token)
