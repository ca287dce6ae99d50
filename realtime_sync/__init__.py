"""realtime_sync: a synchronous, thread-based client for real-time websocket APIs.

Jifeline (customer and partner), Voxsig (ActionCable) and Genesys (CometD/Bayeux) for code that
is not async: Django and Flask apps, scripts, notebooks, management commands and workers.

    import realtime_sync as rs

    client = rs.VoxsigClient("wss://app.voxsig.com/cable", pubsub_token=TOKEN, account_id=1, user_id=7)

    @client.on("message.created")
    def show(event):
        print(event.entity_id, event.data.content)

    client.run_forever()
"""

from __future__ import annotations

import logging as _logging

from ._redact import BOUNDARY_HANDLER as _BOUNDARY_HANDLER
from ._redact import protect_loggers as _protect_loggers
from ._redact import redact
from ._version import __version__
from .actioncable import ActionCableClient
from .client import Client, Stats
from .cometd import CometDClient
from .config import ConnectOptions, DispatchOptions, ReconnectPolicy
from .engine import Snapshot
from .events import (
    LIFECYCLE_EVENTS,
    ConnectionInfo,
    DisconnectInfo,
    ErrorInfo,
    Event,
    ReconnectInfo,
    Subscription,
    SubscriptionInfo,
)
from .exceptions import (
    AuthenticationError,
    ClientClosedError,
    ClientForkedError,
    ConfigurationError,
    ConnectError,
    ProtocolError,
    RealtimeSyncError,
    RemoteError,
    TokenError,
    TokenRefusedError,
    WaitTimeout,
)
from .genesys import GenesysChatClient
from .hub import Hub, HubStats
from .jifeline import GapRecovery, JifelineCustomerClient, JifelinePartnerClient
from .oauth import ClientCredentialsTokenProvider
from .transport import State
from .voxsig import VoxsigCatchUp, VoxsigClient, VoxsigResumePoint

__all__ = [
    "LIFECYCLE_EVENTS",
    "ActionCableClient",
    "AuthenticationError",
    "Client",
    "ClientCredentialsTokenProvider",
    "ClientClosedError",
    "ClientForkedError",
    "CometDClient",
    "ConfigurationError",
    "ConnectError",
    "ConnectOptions",
    "ConnectionInfo",
    "DisconnectInfo",
    "DispatchOptions",
    "ErrorInfo",
    "Event",
    "GapRecovery",
    "GenesysChatClient",
    "Hub",
    "HubStats",
    "JifelineCustomerClient",
    "JifelinePartnerClient",
    "ProtocolError",
    "RealtimeSyncError",
    "ReconnectInfo",
    "ReconnectPolicy",
    "RemoteError",
    "Snapshot",
    "State",
    "Stats",
    "Subscription",
    "SubscriptionInfo",
    "TokenError",
    "TokenRefusedError",
    "VoxsigCatchUp",
    "VoxsigClient",
    "VoxsigResumePoint",
    "WaitTimeout",
    "__version__",
    "redact",
]

# A library logs; the application decides where logs go (without this, Python's last-resort
# handler would print every warning to stderr on top of the matching ``error`` event).
# Every realtime_sync logger redacts what it logs (see _redact): the loggers of the modules
# imported above get the filter here, later ones through _redact.get_logger(), and the handler
# on "realtime_sync" (a NullHandler that redacts) catches any record of the tree that propagates.
_logging.getLogger("realtime_sync").addHandler(_BOUNDARY_HANDLER)
_protect_loggers()
