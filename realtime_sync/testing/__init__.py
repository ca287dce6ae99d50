"""Fake servers for tests, demos and local development: real websocket servers on 127.0.0.1.

Needs the ``test`` extra: ``pip install 'realtime_sync[test]'``.
"""

from .server import FakeConnection, FakeServer, Received, Scheduler

__all__ = ["FakeConnection", "FakeServer", "Received", "Scheduler"]
