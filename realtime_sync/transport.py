"""What the engine needs from a physical connection, and the lifecycle states.

The connection loop itself lives in :mod:`realtime_sync.engine` (a selector-driven state
machine); this module holds the interface every connection implements
(:class:`Connection`: the websocket one in :mod:`realtime_sync._wsconn`, the long-polling one in
:mod:`realtime_sync.transport_longpoll`) and the :class:`State` a client reports.

Liveness: protocols with their own heartbeat (ActionCable pings, Bayeux connects) detect dead
connections in their adapter.  For the others (Jifeline) the engine sends a websocket ping
after ``ping_interval`` seconds without any incoming byte and gives up on the connection when
nothing at all arrives within ``ping_timeout`` after it.
"""

from __future__ import annotations

import enum
from typing import Protocol, Sequence, Union

from ._wsconn import FrameError, WebSocketConnection
from .config import ConnectOptions
from .protocols.base import ConnectRequest, HttpResult

__all__ = ["Connection", "FrameError", "HttpResult", "Received", "State", "WebSocketConnection"]


class State(str, enum.Enum):
    """Where a client is in its life."""

    IDLE = "idle"  #: created, not started
    CONNECTING = "connecting"  #: first connection attempt under way (from the moment start() returns)
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  #: waiting or trying again after a failure or a drop
    CLOSING = "closing"
    CLOSED = "closed"  #: closed by close(), or stopped for good (auth refused, "do not reconnect")
    FORKED = "forked"  #: this process is a fork of the one that started the client: unusable

    def __str__(self) -> str:
        return self.value


#: What ``Connection.receive()`` returns: text frames, frame errors, HTTP outcomes.
Received = list[Union[str, FrameError, HttpResult]]


class Connection(Protocol):
    """What the engine needs from one physical connection (websocket or long-polling).

    Only the engine's I/O thread calls these.  ``fileno()`` is watched for readability through
    the loop's selector; ``pending()`` says bytes are buffered where the selector cannot see
    them (TLS).  ``receive()`` returns what arrived (``None`` once the connection ended);
    ``send()`` writes one frame (a :class:`~realtime_sync.protocols.base.HeldFrame` may be held
    by the server: a long-polling connection gives it a request of its own).  A connection
    that failed for a protocol violation sets ``failure`` (an exception with a close ``code``).
    """

    kind: str
    subprotocol: str | None
    closed: bool
    close_reason: str
    last_activity: float

    def open(self, request: ConnectRequest, options: ConnectOptions) -> None: ...
    def fileno(self) -> int: ...
    def pending(self) -> bool: ...
    def receive(self) -> Sequence[str | FrameError | HttpResult] | None: ...
    def send(self, text: str) -> None: ...
    def ping(self) -> None: ...
    def close(self, code: int = 1000, reason: str = "") -> None: ...
