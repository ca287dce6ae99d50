"""A raw-socket websocket server on 127.0.0.1 for conformance tests.

It accepts the opening handshake (RFC 6455 4.2.2) and then writes whatever bytes the test
gives it, including frames no real server library would produce (reserved bits, masked frames,
bad close codes, invalid UTF-8).  A reader thread per connection parses what the client sends
(client frames, which must be masked) so a test can assert the exact close frame it got.

    with RawServer() as server:
        client = ...(server.url)
        conn = server.wait_for_connection()
        conn.send_raw(b"\\x81\\x02hi")
        assert conn.wait_close() == (1000, b"")

Like a real server it answers the client's close frame and then closes TCP first (RFC 6455
7.1.1); ``answer_close=False`` makes a deaf one.  It can also answer the handshake with
anything (``handshake=`` a callable given the socket and the request, which writes what it
likes, trickles, or returns at once to hang), for handshake-hardening tests.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from typing import Callable

from realtime_sync.config import timing_scale

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: bytes) -> str:
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def server_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> bytes:
    from realtime_sync._frames import Frame

    return Frame(opcode, payload, fin, rsv).serialize(mask=None)


class RawConnection:
    """One accepted client connection, after the handshake."""

    def __init__(self, server: RawServer, sock: socket.socket, request: bytes) -> None:
        self.server = server
        self.sock = sock
        self.request = request
        self.frames: list[tuple[int, bytes]] = []  # (opcode, unmasked payload) from the client
        self.unmasked_frame = False
        self.eof = threading.Event()
        self.reset = False  # the client's TCP reset (not a FIN) ended the reading
        self.close_sent = False
        self.reading = threading.Event()  # clear it to stop reading (the client's writes back up)
        self.reading.set()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="realtime_sync-fake-raw-reader", daemon=True)
        self._thread.start()

    @property
    def path(self) -> str:
        return self.request.split(b" ", 2)[1].decode()

    def send_raw(self, data: bytes) -> None:
        if data[:1] == b"\x88":
            self.close_sent = True  # the test closes: the client's close frame is its answer
        try:
            self.sock.sendall(data)
        except OSError:
            pass

    def send_text(self, text: str) -> None:
        self.send_raw(server_frame(1, text.encode()))

    def texts(self) -> list[str]:
        with self._cond:
            return [p.decode() for op, p in self.frames if op == 1]

    def wait_for(self, predicate: Callable[[list[tuple[int, bytes]]], bool], timeout: float = 5.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.frames), timeout * timing_scale()):
                raise AssertionError(f"not received within {timeout}s; frames: {self.frames[-10:]}")

    def wait_text(self, fragment: str, timeout: float = 5.0) -> None:
        self.wait_for(lambda fs: any(op == 1 and fragment.encode() in p for op, p in fs), timeout)

    def wait_close(self, timeout: float = 5.0) -> tuple[int | None, bytes]:
        """The client's close frame: (code or None, reason bytes)."""
        self.wait_for(lambda fs: any(op == 8 for op, _ in fs), timeout)
        with self._cond:
            payload = next(p for op, p in self.frames if op == 8)
        if len(payload) < 2:
            return None, payload
        return struct.unpack("!H", payload[:2])[0], payload[2:]

    def close(self) -> None:
        self.reading.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(5)
        self.sock.close()

    def _answer_close(self, payload: bytes) -> None:
        """As a server does (RFC 6455 5.5.1, 7.1.1): answer the client's close frame with one
        (unless the server closed first), then close TCP first."""
        if not self.close_sent:
            self.close_sent = True
            self.send_raw(server_frame(8, payload[:2]))
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                self.reading.wait()
                data = self.sock.recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 2:
                    b0, b1 = buf[0], buf[1]
                    n = b1 & 0x7F
                    pos = 2
                    if n == 126:
                        if len(buf) < 4:
                            break
                        (n,) = struct.unpack_from("!H", buf, 2)
                        pos = 4
                    elif n == 127:
                        if len(buf) < 10:
                            break
                        (n,) = struct.unpack_from("!Q", buf, 2)
                        pos = 10
                    masked = b1 & 0x80
                    if len(buf) < pos + (4 if masked else 0) + n:
                        break
                    key = buf[pos : pos + 4] if masked else b"\0\0\0\0"
                    pos += 4 if masked else 0
                    payload = bytes(b ^ key[i % 4] for i, b in enumerate(buf[pos : pos + n]))
                    buf = buf[pos + n :]
                    with self._cond:
                        self.unmasked_frame = self.unmasked_frame or not masked
                        self.frames.append((b0 & 0x0F, payload))
                        self._cond.notify_all()
                    if b0 & 0x0F == 8 and self.server.answer_close:
                        self._answer_close(payload)
        except ConnectionResetError:
            self.reset = True
        except OSError:
            pass
        finally:
            self.eof.set()
            with self._cond:
                self._cond.notify_all()


class RawServer:
    """Listens on 127.0.0.1; see the module docstring."""

    def __init__(
        self, handshake: Callable[[socket.socket, bytes], None] | None = None, *, answer_close: bool = True
    ) -> None:
        #: Answer the client's close frame and close TCP, as servers do; False: a deaf server
        #: (or a test that writes on another thread and answers itself: frames must not interleave).
        self.answer_close = answer_close
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.connections: list[RawConnection] = []
        self.requests: list[bytes] = []
        self._handshake = handshake
        self._cond = threading.Condition()
        self._stop = False
        self._socks: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="realtime_sync-fake-raw-server", daemon=True)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        try:
            self._listener.close()
        except OSError:
            pass
        # A blocked accept() does not notice close() on Linux: connect once to wake it.
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self._thread.join(5)
        for c in list(self.connections):
            c.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass

    def wait_for_connection(self, count: int = 1, timeout: float = 5.0) -> RawConnection:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.connections) >= count, timeout * timing_scale()):
                raise AssertionError(f"no connection #{count} within {timeout}s")
            return self.connections[count - 1]

    def _accept(self) -> None:
        while not self._stop:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            if self._stop:
                sock.close()
                return
            threading.Thread(target=self._serve, args=(sock,), name="realtime_sync-fake-raw-hs", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        self._socks.append(sock)
        request = b""
        try:
            sock.settimeout(10 * timing_scale())  # in the try: stop() may have closed it already
            while b"\r\n\r\n" not in request:
                data = sock.recv(4096)
                if not data:
                    return
                request += data
        except OSError:
            return
        with self._cond:
            self.requests.append(request)
        if self._handshake is not None:
            try:
                self._handshake(sock, request)  # may write anything, trickle, or hang
            except OSError:
                pass
            return  # the socket stays open until the server exits
        key = b""
        for line in request.split(b"\r\n"):
            if line.lower().startswith(b"sec-websocket-key:"):
                key = line.split(b":", 1)[1].strip()
        sock.settimeout(None)
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
        )
        conn = RawConnection(self, sock, request)
        with self._cond:
            self.connections.append(conn)
            self._cond.notify_all()


__all__ = ["RawConnection", "RawServer", "accept_key", "server_frame"]
