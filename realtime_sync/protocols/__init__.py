"""Sans-I/O protocol adapters, one module per protocol family."""

from .base import Adapter, CloseRequest, ConnectRequest, SubscriptionRegistry

__all__ = ["Adapter", "CloseRequest", "ConnectRequest", "SubscriptionRegistry"]
