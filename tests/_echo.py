"""A minimal protocol used to test the core on real sockets.

Frames from the server: ``{"event": NAME, "id": ENTITY, "data": {...}}``.
Client commands: ``{"subscribe": TOPIC}`` / ``{"unsubscribe": TOPIC}``, re-sent on every connection.
"""

from __future__ import annotations

from typing import Any

from realtime_sync import Client, Subscription
from realtime_sync.protocols.base import BAD, Adapter
from realtime_sync.testing import FakeConnection, FakeServer


class EchoAdapter(Adapter):
    name = "echo"

    def connection_made(self, now: float) -> None:
        super().connection_made(now)
        for sub in self.subscriptions:
            self._send({"subscribe": sub.key})

    def subscribe(self, topic: str, now: float) -> None:
        sub = Subscription("topic", topic)
        if self.subscriptions.add(sub) and self.connected:
            self._send({"subscribe": topic})

    def unsubscribe(self, topic: str, now: float) -> None:
        if self.subscriptions.discard(Subscription("topic", topic)) and self.connected:
            self._send({"unsubscribe": topic})

    def receive_text(self, text: str, now: float) -> None:
        msg = self._decode(text, now)
        if msg is BAD:
            return
        if isinstance(msg, dict) and "close" in msg:  # {"close": reason, "auth": bool, "reconnect": bool}
            self._request_close(str(msg["close"]), auth=bool(msg.get("auth")), reconnect=msg.get("reconnect", True))
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
            self._bad_frame("expected an object with a string 'event'", text, now, raw=msg)
            return
        data = msg.get("data")
        if data is not None and not isinstance(data, dict):
            self._bad_frame(f"'data' must be an object, got {type(data).__name__}", text, now, raw=msg)
            return
        self._emit(msg["event"], now, data, entity_id=msg.get("id"), raw=msg)


class EchoClient(Client[EchoAdapter]):
    """A custom protocol on the public API: an adapter handed to ``rs.Client``."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, adapter=EchoAdapter(), **options)

    def subscribe(self, topic: str) -> None:
        self._call(EchoAdapter.subscribe, topic)

    def unsubscribe(self, topic: str) -> None:
        self._call(EchoAdapter.unsubscribe, topic)


class EchoServer(FakeServer):
    """Records subscriptions per connection; can push to subscribers."""

    def on_message(self, conn: FakeConnection, text: str) -> None:
        import json

        msg: Any = json.loads(text)
        subs = conn.state.setdefault("subs", set())
        if "subscribe" in msg:
            subs.add(msg["subscribe"])
        elif "unsubscribe" in msg:
            subs.discard(msg["unsubscribe"])
