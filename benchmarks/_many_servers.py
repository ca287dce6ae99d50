"""Protocol servers for benchmarks/many_connections.py, each run in its own process.

    python benchmarks/_many_servers.py actioncable [--port P]
    python benchmarks/_many_servers.py jifeline [--port P]
    python benchmarks/_many_servers.py bayeux [--port P] [--timeout S]

Prints ``PORT <n>`` once it listens on 127.0.0.1 and serves until stdin closes or SIGTERM.  Every
line it reads on stdin is a command: ``stats`` prints ``STATS {json}`` (connections, subscriptions
confirmed so far); ``blast N`` (actioncable) sends N ``message.created`` broadcasts to every
subscribed connection, pre-built and written at once (the throughput measurement).

Built on asyncio (and python-websockets for the websocket ones) so that one process holds 10,000
connections on one thread and costs little: the servers do what the protocol needs and no more, so
that what the benchmark measures is the client.

* ``actioncable``: ``welcome`` on connect, ``confirm_subscription`` for any ``subscribe``, and a
  ``{"type":"ping","message":<unix time>}`` to every connection every 3 s (as Rails does: one timer
  for the server, ``websockets.broadcast``).  On SIGTERM it says
  ``{"type":"disconnect","reason":"server_restart","reconnect":true}`` to everyone first, as
  ActionCable's ``restart`` does.
* ``jifeline``: accepts the customer actions; the first ``subscribeTo*`` of each entity on a
  connection is answered with one snapshot at once (the real server repeats it every 5 s; here
  ``--push-interval`` does, default 0 = never, so the connections are idle and the client's own
  websocket pings are the heartbeat).
* ``bayeux``: Bayeux long-polling over HTTP/1.1 keep-alive (a hand-rolled parser: POST with a
  Content-Length body, which is what Bayeux clients send): handshake, subscribe, and a
  ``/meta/connect`` held ``--timeout`` seconds (advice.timeout), one per session.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import signal
import sys
import time
from typing import Any

_PING_EVERY = 3.0


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Base:
    def __init__(self) -> None:
        self.connections = 0
        self.confirmed = 0
        self.stopping = asyncio.Event()

    def stats(self) -> dict[str, Any]:
        return {"connections": self.connections, "confirmed": self.confirmed}

    async def stop(self) -> None:
        """Polite goodbye before the process exits (ActionCable's server_restart)."""


class ActionCable(_Base):
    def __init__(self) -> None:
        super().__init__()
        self.conns: set[Any] = set()
        self.idents: dict[Any, str] = {}

    async def blast(self, count: int) -> None:
        """Send ``count`` Voxsig ``message.created`` broadcasts to every subscribed connection,
        with an ActionCable ping every 100 of them.

        The server must never be the bottleneck: the payloads are encoded once, each
        connection's frames are built as one byte string (server frames are not masked) and
        handed to the transport in one write, so the server spends a few milliseconds where the
        client spends seconds.  The pings inside the blast keep a client's stale detection fed
        however long it takes to read its share."""
        bodies = [json.dumps(_message(i), separators=(",", ":")) for i in range(count)]
        for ws, ident in list(self.idents.items()):
            prefix = '{"identifier":' + json.dumps(ident) + ',"message":'
            ping = _text_frame(json.dumps({"type": "ping", "message": int(time.time())}))
            parts = []
            for i, body in enumerate(bodies):
                if i % 100 == 0:
                    parts.append(ping)
                parts.append(_text_frame(prefix + body + "}"))
            try:
                ws.transport.write(b"".join(parts))
            except Exception:
                pass
            await asyncio.sleep(0)

    async def handler(self, ws: Any) -> None:
        self.conns.add(ws)
        self.connections += 1
        try:
            await ws.send('{"type":"welcome"}')
            async for text in ws:
                try:
                    msg = json.loads(text)
                except ValueError:
                    continue
                if msg.get("command") == "subscribe":
                    ident = msg.get("identifier")
                    await ws.send(json.dumps({"identifier": ident, "type": "confirm_subscription"}))
                    self.idents[ws] = ident
                    self.confirmed += 1
        except Exception:
            pass
        finally:
            self.conns.discard(ws)
            self.idents.pop(ws, None)
            self.connections -= 1

    async def pinger(self) -> None:
        import websockets

        while True:
            await asyncio.sleep(_PING_EVERY)
            websockets.broadcast(self.conns, json.dumps({"type": "ping", "message": int(time.time())}))

    async def stop(self) -> None:
        import websockets

        bye = '{"type":"disconnect","reason":"server_restart","reconnect":true}'
        websockets.broadcast(self.conns, bye)
        await asyncio.gather(*(ws.close() for ws in list(self.conns)), return_exceptions=True)


def _text_frame(text: str) -> bytes:
    """One unmasked text frame (RFC 6455 5.2), as a server sends it."""
    data = text.encode()
    n = len(data)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 1 << 16:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + data


def _message(i: int) -> dict[str, Any]:
    """A Voxsig ``message.created`` broadcast (as Chatwoot sends it, shortened)."""
    conversation = 1000 + i % 97
    return {
        "event": "message.created",
        "data": {
            "id": 500_000 + i,
            "content": "Hello, I ordered a blue kettle last Tuesday and it still has not shipped.",
            "account_id": 1,
            "inbox_id": 3,
            "conversation_id": conversation,
            "message_type": i % 2,
            "created_at": 1_700_000_000 + i,
            "private": False,
            "status": "sent",
            "content_type": "text",
            "sender": {"id": 90_000 + i % 97, "name": "Jane Doe", "type": "contact"},
        },
    }


class Jifeline(_Base):
    def __init__(self, push_interval: float) -> None:
        super().__init__()
        self.push_interval = push_interval
        self.subs: dict[Any, set[tuple[str, Any]]] = {}

    @staticmethod
    def snapshot(action: str, key: Any) -> str:
        if action == "subscribeToTicket":
            body: dict[str, Any] = {"id": key, "ticket_id": key, "state": 1, "connection_id": 1}
        elif action == "subscribeToConnection":
            body = {"connection_uuid": key, "script_ui_available": 0, "is_autonomous": False}
        else:
            body = {"id": key, "is_online": True}
        return json.dumps({"action": action, "message": body})

    async def handler(self, ws: Any) -> None:
        self.connections += 1
        subs: set[tuple[str, Any]] = set()
        self.subs[ws] = subs
        try:
            async for text in ws:
                try:
                    msg = json.loads(text)
                except ValueError:
                    continue
                action = msg.get("action", "")
                if action.startswith("subscribeTo"):
                    key = msg.get("ticket_id", msg.get("connector_id", msg.get("connection_uuid")))
                    if (action, key) not in subs:
                        subs.add((action, key))
                        self.confirmed += 1
                        await ws.send(self.snapshot(action, key))
        except Exception:
            pass
        finally:
            self.subs.pop(ws, None)
            self.connections -= 1

    async def pinger(self) -> None:
        if not self.push_interval:
            return
        while True:
            await asyncio.sleep(self.push_interval)
            for ws, subs in list(self.subs.items()):
                for action, key in list(subs):
                    try:
                        await ws.send(self.snapshot(action, key))
                    except Exception:
                        break


class _Session:
    __slots__ = ("held", "subscriptions")

    def __init__(self) -> None:
        self.held: asyncio.Future[Any] | None = None
        self.subscriptions: set[str] = set()


class Bayeux(_Base):
    """Bayeux long-polling (HTTP/1.1 POST, JSON arrays), one held connect per session."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        self.sessions: dict[str, _Session] = {}
        self.ids = itertools.count(1)
        self.epoch = f"{os.getpid():x}{int(time.time() * 1000) % 100000:x}"
        self.writers: set[asyncio.StreamWriter] = set()

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "sessions": len(self.sessions)}

    async def reply(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        channel = msg.get("channel")
        base = {"id": msg.get("id"), "channel": channel}
        advice = {"reconnect": "retry", "interval": 0, "timeout": int(self.timeout * 1000)}
        if channel == "/meta/handshake":
            # Unique across restarts: a restarted server must not recognise an old client id.
            cid = f"{self.epoch}-{next(self.ids)}"
            self.sessions[cid] = _Session()
            return [
                {
                    **base,
                    "successful": True,
                    "version": "1.0",
                    "clientId": cid,
                    "supportedConnectionTypes": ["long-polling"],
                    "advice": advice,
                }
            ]
        session = self.sessions.get(msg.get("clientId", ""))
        if session is None:
            return [
                {**base, "successful": False, "error": "402::session_unknown", "advice": {"reconnect": "handshake"}}
            ]
        if channel == "/meta/subscribe":
            sub = msg.get("subscription")
            if isinstance(sub, str) and sub not in session.subscriptions:
                session.subscriptions.add(sub)
                self.confirmed += 1
            return [{**base, "successful": True, "subscription": sub, "clientId": msg.get("clientId")}]
        if channel == "/meta/unsubscribe":
            session.subscriptions.discard(msg.get("subscription", ""))
            return [{**base, "successful": True, "subscription": msg.get("subscription")}]
        if channel == "/meta/disconnect":
            self.sessions.pop(msg.get("clientId", ""), None)
            return [{**base, "successful": True}]
        if channel == "/meta/connect":
            timeout = self.timeout
            if isinstance(msg.get("advice"), dict) and msg["advice"].get("timeout") == 0:
                timeout = 0
            if session.held is not None and not session.held.done():
                session.held.set_result(None)  # one held connect per session: release the older
            if timeout:
                fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                session.held = fut
                try:
                    await asyncio.wait_for(asyncio.shield(fut), timeout)
                except asyncio.TimeoutError:
                    pass
            return [{**base, "successful": True, "advice": advice}]
        return [{**base, "successful": True}]

    async def handle_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length) if length else b"[]"
                try:
                    messages = json.loads(body)
                except ValueError:
                    messages = []
                if isinstance(messages, dict):
                    messages = [messages]
                replies: list[dict[str, Any]] = []
                for m in messages:
                    if isinstance(m, dict):
                        replies.extend(await self.reply(m))
                data = json.dumps(replies).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\n"
                    b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.writers.discard(writer)
            self.connections -= 1
            writer.close()

    async def pinger(self) -> None:
        return

    async def stop(self) -> None:
        for w in list(self.writers):
            w.close()


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server: Any
    if args.kind == "bayeux":
        impl: Any = Bayeux(args.timeout)
        server = await asyncio.start_server(
            impl.handle_http, "127.0.0.1", args.port, backlog=4096, reuse_address=True, limit=1 << 20
        )
    else:
        from websockets.asyncio.server import serve

        impl = ActionCable() if args.kind == "actioncable" else Jifeline(args.push_interval)
        subprotocols = ["actioncable-v1-json"] if args.kind == "actioncable" else None
        server = await serve(
            impl.handler,
            "127.0.0.1",
            args.port,
            subprotocols=subprotocols,  # type: ignore[arg-type]
            compression=None,
            ping_interval=None,  # ActionCable has its own pings; Jifeline's client pings
            max_size=1 << 20,
            backlog=4096,
            reuse_address=True,
        )
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    pinger = asyncio.create_task(impl.pinger())
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_signal_handler(signal.SIGINT, done.set)

    blasts: list[asyncio.Future[None]] = []

    def on_stdin() -> None:
        line = sys.stdin.readline()
        if not line:
            done.set()
        elif line.strip() == "stats":
            print("STATS " + json.dumps(impl.stats()), flush=True)
        elif line.startswith("blast ") and hasattr(impl, "blast"):
            blasts.append(asyncio.ensure_future(impl.blast(int(line.split()[1]))))

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await done.wait()
    loop.remove_reader(sys.stdin.fileno())
    pinger.cancel()
    server.close()
    await impl.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["actioncable", "jifeline", "bayeux"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0, help="bayeux advice.timeout (s)")
    parser.add_argument("--push-interval", type=float, default=0.0, help="jifeline snapshot period (s)")
    args = parser.parse_args()
    _raise_nofile()
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
