"""A scriptable websocket server on 127.0.0.1 for tests, demos and local development.

:class:`FakeServer` is a real websocket server (python-websockets' sync server, in a background
thread) that a test can script: push frames, drop connections without a close frame, close them
cleanly, refuse the handshake with an HTTP status, go silent (keep the TCP connection open but
send nothing and answer nothing, not even websocket pings), restart on the same port, and record
everything the client sent.  The vendor fake servers subclass it and override the ``on_*`` hooks.

    >>> from realtime_sync.testing import FakeServer
    >>> with FakeServer() as server:                      # doctest: +SKIP
    ...     client = MyClient(server.url)
    ...     client.start()
    ...     conn = server.wait_for_connection(timeout=5)
    ...     conn.send({"action": "hello"})
    ...     server.wait_for_message(lambda m: m.json.get("action") == "subscribe", timeout=5)

Requires the ``test`` extra (``pip install 'realtime_sync[test]'``) for python-websockets.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import json
import logging
import os
import socket
import ssl
import threading
import time
from typing import Any, Callable, Iterable, TypeVar

import attrs

try:
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Request, Response
    from websockets.sync.server import Server, ServerConnection, serve
    from websockets.typing import Subprotocol
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("realtime_sync.testing needs python-websockets: pip install 'realtime_sync[test]'") from exc

from .._redact import get_logger
from ..config import timing_scale

__all__ = ["FakeConnection", "FakeServer", "Handshake", "Received", "Scheduler"]

log = logging.getLogger("realtime_sync.testing")

# python-websockets logs a client that hangs up in the middle of its handshake (a reconnecting
# client aborted by close(), a port probe) with a traceback at ERROR.  With no logging configured
# Python's last-resort handler would print it to stderr: into the demo's output, between the
# events.  A NullHandler keeps it out of stderr; an application that configures logging still
# receives these records through propagation.
# The fake server reads the client's secrets in clear (tests assert on them), but what it logs
# goes through the same redacting filter as the library's own loggers: a test suite that logs
# at DEBUG must not print the token of the handshake's "GET /?access_token=...".
_server_log = get_logger("websockets.fake_server")
_server_log.addHandler(logging.NullHandler())

# python-websockets 17 (Python 3.11+) gave Server.shutdown() close_connections= and socket_closed.
_SHUTDOWN_CLOSES_CONNECTIONS = "close_connections" in inspect.signature(Server.shutdown).parameters

_S = TypeVar("_S", bound="FakeServer")


@attrs.frozen
class Received:
    """A text frame the server received: which connection, the text, when (monotonic)."""

    conn_id: int
    text: str
    at: float

    @property
    def json(self) -> Any:
        """The frame decoded as JSON (``None`` if it is not JSON)."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None


@attrs.frozen
class Handshake:
    """One handshake the server saw: path (with query), headers, the status answered, when (monotonic)."""

    path: str
    headers: dict[str, str]
    status: int
    at: float


class FakeConnection:
    """One client connection as the test sees it."""

    def __init__(self, server: FakeServer, ws: ServerConnection, conn_id: int) -> None:
        self.server = server
        self.ws = ws
        self.id = conn_id
        self.path: str = ws.request.path if ws.request else ""
        self.headers: dict[str, str] = dict(ws.request.headers.raw_items()) if ws.request else {}
        self.state: dict[str, Any] = {}  # free space for protocol subclasses
        self.closed = threading.Event()
        self.silent = False
        self._send_lock = threading.Lock()

    def send(self, message: Any) -> bool:
        """Send a text frame (a str as is, anything else as JSON).  False if it could not be sent."""
        text = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
        if self.silent or self.closed.is_set():
            return False
        try:
            with self._send_lock:
                self.ws.send(text)
            return True
        except (ConnectionClosed, OSError, RuntimeError):
            return False

    def send_bytes(self, data: bytes) -> bool:
        """Send a binary frame."""
        try:
            self.ws.send(data)
            return True
        except (ConnectionClosed, OSError, RuntimeError):
            return False

    def send_raw(self, data: bytes) -> bool:
        """Write bytes straight to the socket, bypassing the websocket framing: several frames in
        one TCP write, a frame cut in the middle, or garbage.  False if it could not be sent."""
        try:
            with self._send_lock:
                self.ws.socket.sendall(data)
            return True
        except OSError:
            return False

    def drop(self) -> None:
        """Cut the TCP connection without a websocket close frame (a network failure)."""
        # shutdown() only: it wakes python-websockets' reader thread, which then closes the
        # socket itself (closing the fd under its poll() would leave it waiting forever).
        try:
            self.ws.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close cleanly with a close frame."""
        try:
            self.ws.close(code, reason)
        except Exception:  # pragma: no cover - already gone
            pass

    def go_silent(self) -> None:
        """Keep the TCP connection open but send nothing more, not even pongs or close frames."""
        self.silent = True
        # Every frame python-websockets writes goes through protocol.send_frame: swallow them.
        self.ws.protocol.send_frame = lambda frame: None  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"<FakeConnection {self.id} {self.path.split('?')[0]!r}>"


class Scheduler:
    """Runs callbacks at intervals on one named thread (periodic pushes, pings)."""

    def __init__(self, name: str) -> None:
        self._heap: list[tuple[float, int, float, Callable[[], Any]]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._seq = itertools.count()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def every(self, interval: float, fn: Callable[[], Any], first: float | None = None) -> None:
        with self._cond:
            start = time.monotonic() + (interval if first is None else first)
            heapq.heappush(self._heap, (start, next(self._seq), interval, fn))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._heap else max(0.0, self._heap[0][0] - time.monotonic()))
                if self._stop:
                    return
                due, seq, interval, fn = heapq.heappop(self._heap)
                heapq.heappush(self._heap, (max(due + interval, time.monotonic()), seq, interval, fn))
            try:
                fn()
            except Exception:  # pragma: no cover - a test helper must not die
                log.exception("scheduled callback failed")

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(5)


class FakeServer:
    """A scriptable websocket server on 127.0.0.1 (see the module docstring).

    Subclasses speak a protocol by overriding :meth:`on_connect`, :meth:`on_message`,
    :meth:`on_disconnect` and :meth:`check_request`.
    """

    #: Subprotocols the server accepts (the first one the client offers is chosen).
    subprotocols: tuple[str, ...] = ()
    #: Path appended to the URL.
    path = "/"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_size: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("fake servers listen on loopback only")
        self.host = host
        self.port = port
        self.max_size = max_size
        #: Serve TLS (``wss://``) with this server-side context.
        self.ssl_context = ssl_context
        self.received: list[Received] = []
        self.handshakes: list[Handshake] = []
        self.connections: list[FakeConnection] = []  # every connection ever accepted, in order
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._refuse: tuple[int, str] | None = None
        self.scheduler: Scheduler | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/path``."""
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}{self.path}"

    def start(self: _S) -> _S:
        """Start listening (on ``port``, or a free one chosen now and kept across restarts)."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._server = serve(
            self._handler,
            sock=sock,
            ssl=self.ssl_context,
            subprotocols=[Subprotocol(p) for p in self.subprotocols] or None,
            select_subprotocol=self._select_subprotocol if self.subprotocols else None,  # type: ignore[arg-type]
            process_request=self._process_request,
            compression=None,
            ping_interval=None,
            ping_timeout=None,
            close_timeout=2,
            max_size=self.max_size,
            max_queue=None,
            server_header=None,
            # The server side sees secrets in clear (it checks them): keep its wire log out of the
            # client library's "realtime_sync" namespace.
            logger=_server_log,
        )
        self.scheduler = Scheduler(f"realtime_sync-fake-{type(self).__name__}-timers")
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"realtime_sync-fake-{type(self).__name__}", daemon=True
        )
        self._thread.start()
        self.on_start()
        return self

    def stop(self) -> None:
        """Stop accepting and drop every connection."""
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        server, self._server = self._server, None
        if server is not None:
            # Stop accepting first, so a client reconnecting at once cannot reach the old server.
            if _SHUTDOWN_CLOSES_CONNECTIONS:
                # python-websockets 17+: shutdown() waits for the handlers; run it aside until the
                # listening socket is closed.
                closer = threading.Thread(target=server.shutdown, kwargs={"close_connections": False}, daemon=True)
                closer.start()
                server_closed = getattr(server, "socket_closed", None)  # not in 16's type hints
                if server_closed is not None:
                    server_closed.wait(5)
            else:
                # Before 17 (the last for Python 3.10 is 16.1): shutdown() takes no argument, only
                # closes the listening socket and returns.
                closer = None
                server.shutdown()
            # Then cut the connections the way a crashing server would (no close frame).
            for conn in self.live_connections():
                conn.drop()
            if closer is not None:
                closer.join(10)
        if self._thread is not None:
            self._thread.join(5)
            if server is not None and not _SHUTDOWN_CLOSES_CONNECTIONS and not self._thread.is_alive():
                # Before 17 python-websockets never closes its shutdown pipe: two file descriptors
                # leaked a server, >1024 open by the end of the suite on Python 3.10 (select()
                # refuses those).  serve_forever() is over: nothing watches them any more.
                for fd in (getattr(server, "shutdown_watcher", None), getattr(server, "shutdown_notifier", None)):
                    if isinstance(fd, int):
                        try:
                            os.close(fd)
                        except OSError:
                            pass
            self._thread = None

    def restart(self) -> None:
        """Stop, then start again on the same port (a server restart as the client sees it)."""
        self.stop()
        self.start()

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting --------------------------------------------------------------------------

    def live_connections(self) -> list[FakeConnection]:
        with self._cond:
            return [c for c in self.connections if not c.closed.is_set()]

    def wait_for_connection(self, n: int | None = None, timeout: float = 5.0) -> FakeConnection:
        """Wait for a connection and return it.

        ``n=None``: wait until a connection is live and return the newest live one.  ``n=k``: wait
        until the ``k``-th connection since the server was created exists (k=2 is the first
        reconnection) and return it.
        """
        with self._cond:
            if n is None:
                ok = self._cond.wait_for(
                    lambda: any(not c.closed.is_set() for c in self.connections), timeout * timing_scale()
                )
                if not ok:
                    raise TimeoutError(f"no live connection within {timeout}s (had {len(self.connections)})")
                return [c for c in self.connections if not c.closed.is_set()][-1]
            if not self._cond.wait_for(lambda: len(self.connections) >= n, timeout * timing_scale()):
                raise TimeoutError(f"no connection #{n} within {timeout}s (have {len(self.connections)})")
            return self.connections[n - 1]

    def wait_for_message(
        self, predicate: Callable[[Received], bool] = lambda m: True, timeout: float = 5.0, *, since: int = 0
    ) -> Received:
        """Wait for a received frame matching ``predicate`` (searching from index ``since``)."""

        def find() -> Received | None:
            for m in self.received[since:]:
                try:
                    if predicate(m):
                        return m
                except Exception:
                    continue
            return None

        with self._cond:
            found: list[Received | None] = [None]

            def ready() -> bool:
                found[0] = find()
                return found[0] is not None

            if not self._cond.wait_for(ready, timeout * timing_scale()):
                raise TimeoutError(
                    f"no matching message within {timeout}s; got {[m.text[:120] for m in self.received[-5:]]}"
                )
            assert found[0] is not None
            return found[0]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (re-checked whenever the server sees something)."""
        with self._cond:
            if not self._cond.wait_for(predicate, timeout * timing_scale()):
                raise TimeoutError(f"condition not met within {timeout}s")

    def messages(self, conn: FakeConnection | None = None) -> list[Any]:
        """Decoded JSON of every received frame (of one connection, if given)."""
        with self._cond:
            return [m.json for m in self.received if conn is None or m.conn_id == conn.id]

    def push(self, message: Any, conn: FakeConnection | None = None) -> int:
        """Send ``message`` to ``conn`` or to every live connection; returns how many got it."""
        targets = [conn] if conn is not None else self.live_connections()
        return sum(1 for c in targets if c.send(message))

    def drop_all(self) -> None:
        """Cut every live connection without a close frame."""
        for c in self._settled_connections():
            c.drop()

    def close_all(self, code: int = 1000, reason: str = "") -> None:
        for c in self._settled_connections():
            c.close(code, reason)

    def go_silent(self) -> None:
        """Every live connection stops sending and answering (TCP stays open)."""
        for c in self._settled_connections():
            c.go_silent()

    def _settled_connections(self) -> list[FakeConnection]:
        """:meth:`live_connections`, once every handshake already answered with 101 has its
        connection listed: python-websockets runs the handler only after the 101 is sent, so a
        client can see itself connected a moment before the server lists it, and ``drop_all()``
        in that moment missed it (measured: 2-7 times in 40 loops of a reconnect test).  Waits
        at most 1 s (scaled) for them: a handshake that failed after its 101 has no connection."""
        with self._cond:
            self._cond.wait_for(
                lambda: sum(h.status == 101 for h in self.handshakes) <= len(self.connections),
                1.0 * timing_scale(),
            )
        return self.live_connections()

    def refuse(self, status: int | None, body: str = "refused") -> None:
        """Refuse the next handshakes with HTTP ``status`` (``None`` accepts again)."""
        self._refuse = None if status is None else (status, body)

    # -- hooks for protocol subclasses ------------------------------------------------------

    def on_start(self) -> None:
        """Called after (re)start; schedule periodic work with ``self.scheduler.every``."""

    def check_request(self, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        """Return ``(status, body)`` to refuse a handshake (token checks...), else None."""
        return None

    def on_connect(self, conn: FakeConnection) -> None:
        """A connection is open (send a welcome here)."""

    def on_message(self, conn: FakeConnection, text: str) -> None:
        """A text frame arrived (it is already recorded in ``received``)."""

    def on_disconnect(self, conn: FakeConnection) -> None:
        """A connection ended."""

    # -- internals --------------------------------------------------------------------------

    def _select_subprotocol(self, ws: ServerConnection, offered: Iterable[str]) -> str | None:
        for p in offered:
            if p in self.subprotocols:
                return p
        return None

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        headers = dict(request.headers.raw_items())
        refusal = self._refuse or self.check_request(request.path, headers)
        status = refusal[0] if refusal else 101
        with self._cond:
            self.handshakes.append(Handshake(request.path, headers, status, time.monotonic()))
            self._cond.notify_all()
        if refusal:
            return ws.respond(refusal[0], refusal[1] + "\n")
        return None

    def _handler(self, ws: ServerConnection) -> None:
        conn = FakeConnection(self, ws, next(self._ids))
        with self._cond:
            self.connections.append(conn)
            self._cond.notify_all()
        try:
            self.on_connect(conn)
            for message in ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                with self._cond:
                    self.received.append(Received(conn.id, text, time.monotonic()))
                    self._cond.notify_all()
                if conn.silent:
                    continue
                try:
                    self.on_message(conn, text)
                except Exception:
                    log.exception("fake server handler failed")
                with self._cond:  # on_message may have changed what wait_until() waits on
                    self._cond.notify_all()
        except (ConnectionClosed, OSError):
            pass
        finally:
            conn.closed.set()
            with self._cond:
                self._cond.notify_all()
            try:
                self.on_disconnect(conn)
            except Exception:  # pragma: no cover
                log.exception("fake server on_disconnect failed")
