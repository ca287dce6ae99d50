"""The hub's websocket connection: the opening handshake in one read.

A hub opens thousands of websockets (at startup, and all at once after a server restart) on its
few handshake threads.  websocket-client reads the handshake response one byte per ``recv()``
(about 250 system calls, ~10 ms per handshake on a busy 2-core machine), which makes 10,000
handshakes take minutes.  This connection writes the upgrade request itself and reads the
response with a peek and one read (RFC 6455 section 4.1: 101 status, ``Upgrade``,
``Sec-WebSocket-Accept`` checked, subprotocol one of those offered); frames the server sent right
after the response stay in the socket for the codec.  Everything after the handshake is
:class:`~realtime_sync._wsconn.WebSocketConnection`'s.

Only plain ``ws://`` without a proxy takes this path; ``wss://`` (TLS has no ``MSG_PEEK``) and
proxies go through websocket-client as on a standalone client.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
import urllib.request
from urllib.parse import urlsplit

from ._frames import ClientCodec
from ._redact import redact
from ._wsconn import WebSocketConnection, is_loopback
from .config import ConnectOptions
from .exceptions import AuthenticationError, ConnectError
from .protocols.base import ConnectRequest

__all__ = ["HubWebSocketConnection"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 64 * 1024


class HubWebSocketConnection(WebSocketConnection):
    """:class:`~realtime_sync._wsconn.WebSocketConnection` with a one-read opening handshake."""

    def __init__(self) -> None:
        super().__init__()
        self._raw: socket.socket | None = None

    def open(self, request: ConnectRequest, options: ConnectOptions) -> None:
        parts = urlsplit(request.url)
        if parts.scheme.lower() != "ws" or not parts.hostname or not _direct(parts.hostname, options):
            super().open(request, options)
            return
        url = redact(request.url)
        host, port = parts.hostname, parts.port or 80
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
            f"Host: {host if port == 80 else f'{host}:{port}'}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if request.origin:
            lines.append(f"Origin: {request.origin}")
        if request.subprotocols:
            lines.append(f"Sec-WebSocket-Protocol: {', '.join(request.subprotocols)}")
        if request.cookies:
            lines.append(f"Cookie: {request.cookies}")
        lines.extend(f"{k}: {v}" for k, v in request.headers.items())
        try:
            sock = socket.create_connection((host, port), timeout=options.connect_timeout or None)
            self._raw = sock  # visible to abort() from now on
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            head = _read_head(sock)
        except (OSError, ValueError) as exc:
            self._drop_raw()
            raise ConnectError(f"cannot connect to {url}: {redact(f'{type(exc).__name__}: {exc}')}") from None
        status, headers = _parse_head(head)
        if status != 101:
            self._drop_raw()
            msg = f"handshake with {url} refused: HTTP {status}"
            if status in (401, 403):
                raise AuthenticationError(msg + " (credentials refused)", status=status)
            raise ConnectError(msg, status=status)
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        chosen = headers.get("sec-websocket-protocol")
        problem = None
        if headers.get("upgrade", "").lower() != "websocket":
            problem = "no 'Upgrade: websocket'"
        elif headers.get("sec-websocket-accept") != accept:
            problem = "wrong Sec-WebSocket-Accept"
        elif chosen is not None and chosen not in request.subprotocols:
            problem = f"subprotocol {chosen!r} was not offered"
        if problem is not None:
            self._drop_raw()
            raise ConnectError(f"handshake with {url} failed: {problem}")
        sock.settimeout(max(options.connect_timeout or 10.0, 1.0))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not TCP
            pass
        self._sock = sock
        self.subprotocol = chosen
        self._codec = ClientCodec(options.max_frame_size)
        self.last_activity = time.monotonic()

    def abort(self) -> None:
        raw = self._raw
        if raw is None:
            super().abort()
            return
        try:
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _drop_raw(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            try:
                raw.close()
            except OSError:  # pragma: no cover
                pass


def _direct(host: str, options: ConnectOptions) -> bool:
    """No proxy applies (the rules of the standalone connection: an explicit proxy, or the
    environment's ``http_proxy`` unless ``no_proxy`` or loopback says otherwise)."""
    if options.proxy:
        return False
    if is_loopback(host) or not options.trust_env:
        return True
    proxies = urllib.request.getproxies()
    return not (proxies.get("http") or proxies.get("ws")) or bool(urllib.request.proxy_bypass(host))


def _read_head(sock: socket.socket) -> bytes:
    """The response head, consumed exactly: bytes after it (the first frames) stay unread."""
    buf = b""
    while True:
        peek = sock.recv(_MAX_HEAD, socket.MSG_PEEK)
        if not peek:
            raise ConnectionError("connection closed during the handshake")
        data = buf + peek
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            need = end + 4 - len(buf)
            while need > 0:
                chunk = sock.recv(need)
                if not chunk:
                    raise ConnectionError("connection closed during the handshake")
                buf += chunk
                need -= len(chunk)
            return buf
        buf += sock.recv(len(peek))  # no frame can be in an unfinished head: take it all
        if len(buf) > _MAX_HEAD:
            raise ValueError("handshake response head too large")


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise ConnectError(f"not an HTTP response: {lines[0][:80]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers
