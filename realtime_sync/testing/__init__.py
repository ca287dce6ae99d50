"""Fake servers for tests, demos and local development: real websocket servers on 127.0.0.1.

Needs the ``test`` extra: ``pip install 'realtime_sync[test]'``.
"""

from .actioncable import FakeActionCableServer, FakeVoxsigServer
from .bayeux import FakeBayeuxServer, FakeGenesysServer
from .chatwoot import FakeChatwootRestServer
from .jifeline import FakeJifelineCustomerServer, FakeJifelinePartnerServer, FakeJifelineRestServer
from .server import FakeConnection, FakeServer, Handshake, Received, Scheduler

__all__ = [
    "FakeActionCableServer",
    "FakeBayeuxServer",
    "FakeChatwootRestServer",
    "FakeConnection",
    "FakeGenesysServer",
    "FakeJifelineCustomerServer",
    "FakeJifelinePartnerServer",
    "FakeJifelineRestServer",
    "FakeServer",
    "FakeVoxsigServer",
    "Handshake",
    "Received",
    "Scheduler",
]
