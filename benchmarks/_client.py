"""The client measured by benchmarks/throughput.py: typed events, as the vendor clients deliver them.

Frames are ``{"event": NAME, "id": ENTITY, "data": {...}}`` (see ``_server.message``).  The
adapter decodes each frame once (orjson when installed), structures ``data`` into a frozen attrs
model with a cattrs hook generated at import time by the library's strict converter (the one
every vendor module uses), and emits an :class:`~realtime_sync.Event` whose ``entity_id`` is the
conversation id and whose ``raw`` is the decoded frame.  Unknown event names pass through with
the decoded dict; a bad frame becomes an ``error`` event, as in the real adapters.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

from realtime_sync import Client
from realtime_sync.models._converter import make_converter, register, structure
from realtime_sync.protocols.base import BAD, Adapter


@attrs.frozen
class Sender:
    id: int | None = None
    name: str | None = None
    type: str | None = None
    email: str | None = None


@attrs.frozen
class ChatMessage:
    id: int | None = None
    content: str | None = None
    account_id: int | None = None
    inbox_id: int | None = None
    conversation_id: int | None = None
    message_type: int | None = None
    created_at: int | float | str | None = None
    private: bool | None = None
    status: str | None = None
    content_type: str | None = None
    sender_type: str | None = None
    sender_id: int | None = None
    sender: Sender | None = None


_converter = make_converter()
register(_converter, Sender)
register(_converter, ChatMessage)

#: Event name -> (model, prebuilt structure hook).
MODELS: dict[str, tuple[type, Callable[[Any, Any], Any]]] = {
    name: (ChatMessage, _converter.get_structure_hook(ChatMessage)) for name in ("message.created", "message.updated")
}


class BenchAdapter(Adapter):
    name = "bench"

    def receive_text(self, text: str, now: float) -> None:
        msg = self._decode(text, now)
        if msg is BAD:
            return
        if type(msg) is not dict or type(name := msg.get("event")) is not str:
            self._bad_frame("expected an object with a string 'event'", text, now, raw=msg)
            return
        data = msg.get("data")
        model = MODELS.get(name)
        if model is not None:
            cls, hook = model
            try:
                data = hook(data, cls)
            except Exception:
                # Slow path, only for bad frames: the strict converter names the bad field.
                try:
                    structure(_converter, data, cls)
                except Exception as exc:
                    self._bad_frame(str(exc), text, now, raw=msg, exc=exc)
                    return
        self._emit(name, now, data, entity_id=msg.get("id"), raw=msg)


class BenchClient(Client[BenchAdapter]):
    """``BenchClient("ws://127.0.0.1:port/blast?n=1000")``: typed ``message.created`` events."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, adapter=BenchAdapter(), **options)
