"""The websocket connection used by the transport thread.

websocket-client does the opening handshake (proxy, TLS, headers, subprotocols, Origin,
cookies); after it, this module reads frames itself from the socket:

* one ``recv()`` of up to 256 KiB parses every frame it holds, instead of websocket-client's
  two or three ``recv()`` calls per frame;
* UTF-8 is validated by ``bytes.decode`` in C, not by websocket-client's pure-Python validator
  (about 6x slower);
* the frame size limit is checked against the header, before the payload is buffered; an
  oversized frame is skipped as it streams past (reported as a :class:`FrameError`) and the
  connection carries on;
* a TLS socket can hold decrypted bytes that ``select()`` does not see: ``SSLSocket.pending()``
  is drained after every read.

Only the transport thread calls into a connection (``open``, ``receive``, ``send``, ``ping``,
``close``), so it needs no lock.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
import struct
import time
from typing import Union
from urllib.parse import urlsplit

import attrs
import websocket

from ._redact import redact
from .config import ConnectOptions
from .exceptions import AuthenticationError, ConnectError
from .protocols.base import ConnectRequest, truncate

__all__ = ["FrameError", "WebSocketConnection"]

log = logging.getLogger("realtime_sync.transport")

_READ_SIZE = 256 * 1024
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@attrs.frozen
class FrameError:
    """A frame the connection could not turn into text (too big, not UTF-8, bad framing)."""

    message: str
    frame: str | None = None


Received = list[Union[str, FrameError]]


def _sslopt(options: ConnectOptions) -> dict[str, object]:
    if options.ssl_context is not None:
        return {"context": options.ssl_context}
    if not options.verify:
        return {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    opt: dict[str, object] = {"cert_reqs": ssl.CERT_REQUIRED}
    if options.ca_bundle:
        key = "ca_cert_path" if os.path.isdir(options.ca_bundle) else "ca_certs"
        opt[key] = options.ca_bundle
    return opt


def is_loopback(host: str | None) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1: no proxy can reach this machine's loopback for us."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_NO_PROXY: dict[str, object] = {"http_proxy_host": "proxy.invalid", "http_proxy_port": 1, "http_no_proxy": ["*"]}


def _proxy_kwargs(options: ConnectOptions, url: str = "") -> dict[str, object]:
    if options.proxy is None:
        # websocket-client reads http_proxy / https_proxy / no_proxy itself unless told not to.
        # A loopback URL always goes direct (websocket-client >= 1.9 would send it to the proxy).
        if options.trust_env and not is_loopback(urlsplit(url).hostname):
            return {}
        # websocket-client consults no_proxy only alongside an explicit proxy host: a dummy
        # proxy that no_proxy "*" always bypasses turns the environment lookup off.
        return dict(_NO_PROXY)
    parts = urlsplit(options.proxy if "://" in options.proxy else "http://" + options.proxy)
    kw: dict[str, object] = {
        "http_proxy_host": parts.hostname,
        "http_proxy_port": parts.port or 8080,
        "proxy_type": parts.scheme if parts.scheme in ("http", "socks4", "socks4a", "socks5", "socks5h") else "http",
    }
    if parts.username:
        kw["http_proxy_auth"] = (parts.username, parts.password or "")
    return kw


class WebSocketConnection:
    """One websocket connection attempt (see the module docstring)."""

    kind = "websocket"

    def __init__(self) -> None:
        self._ws: websocket.WebSocket | None = None
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._max = 0
        self._skip = 0  # payload bytes of an oversized frame still to discard
        self._frag_op: int | None = None
        self._frags: list[bytes] = []
        self._frag_size = 0
        self._frag_oversized = False
        self.subprotocol: str | None = None
        self.closed = False
        self.close_reason = ""
        self.close_code: int | None = None
        self.last_activity = 0.0

    # -- opening ---------------------------------------------------------------------------

    def open(self, request: ConnectRequest, options: ConnectOptions) -> None:
        ws = websocket.WebSocket(sslopt=_sslopt(options), skip_utf8_validation=True, enable_multithread=False)
        headers = [f"{k}: {v}" for k, v in request.headers.items()]
        kwargs: dict[str, object] = {
            "header": headers,
            "timeout": options.connect_timeout or None,
            **_proxy_kwargs(options, request.url),
        }
        if request.subprotocols:
            kwargs["subprotocols"] = list(request.subprotocols)
        if request.origin:
            kwargs["origin"] = request.origin
        else:
            kwargs["suppress_origin"] = True
        if request.cookies:
            kwargs["cookie"] = request.cookies
        url = redact(request.url)
        self._ws = ws  # visible to abort() from now on
        try:
            ws.connect(request.url, **kwargs)
        except websocket.WebSocketBadStatusException as exc:
            status = getattr(exc, "status_code", None)
            _close_quietly(ws)
            msg = f"handshake with {url} refused: HTTP {status}"
            if status in (401, 403):
                raise AuthenticationError(msg + " (credentials refused)", status=status) from None
            raise ConnectError(msg, status=status) from None
        except (OSError, websocket.WebSocketException, ValueError) as exc:
            _close_quietly(ws)
            detail = redact(f"{type(exc).__name__}: {exc}")
            raise ConnectError(f"cannot connect to {url}: {detail}") from None
        self._sock = ws.sock
        assert self._sock is not None
        # Reads happen only when select() (or SSL pending()) says data is there; the timeout
        # bounds a read stuck in the middle of a TLS record and every write.
        self._sock.settimeout(max(options.connect_timeout or 10.0, 1.0))
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not TCP
            pass
        self.subprotocol = ws.getsubprotocol()
        self._max = options.max_frame_size or (1 << 62)
        self.last_activity = time.monotonic()

    def abort(self) -> None:
        """Interrupt an ``open()`` blocked in the handshake; called from another thread.

        websocket-client assigns ``ws.sock`` once TCP is connected; shutting it down makes the
        blocked ``recv()`` return at once, so ``open()`` raises instead of waiting for
        ``connect_timeout``.  Before that point there is no socket yet (the caller retries).
        """
        ws = self._ws
        sock = ws.sock if ws is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    # -- reading -----------------------------------------------------------------------------

    def pending(self) -> bool:
        """Decrypted bytes are waiting inside the TLS layer (invisible to select())."""
        sock = self._sock
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

    def receive(self) -> Received | None:
        """Read what is available and return the complete frames; None once closed."""
        sock = self._sock
        if self.closed or sock is None:
            return None
        try:
            data = sock.recv(_READ_SIZE)
            while data and isinstance(sock, ssl.SSLSocket) and sock.pending():
                data += sock.recv(_READ_SIZE)
        except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
            return []
        except (OSError, ValueError) as exc:
            self._mark_closed(f"connection lost: {type(exc).__name__}: {exc}")
            return None
        if not data:
            self._mark_closed("connection closed by the server (EOF)")
            return None
        self.last_activity = time.monotonic()
        self._buf += data
        return self._parse()

    def _parse(self) -> Received:
        out: Received = []
        buf = self._buf
        pos = 0
        end = len(buf)
        if self._skip:
            n = min(self._skip, end)
            self._skip -= n
            pos = n
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            hdr = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                hdr = 4
            elif length == 127:
                if end - pos < 10:
                    break
                (length,) = struct.unpack_from("!Q", buf, pos + 2)
                hdr = 10
            masked = b1 & 0x80
            if masked:
                hdr += 4
            op = b0 & 0x0F
            fin = b0 & 0x80
            if length > self._max and op < 0x8:
                # Refuse before buffering: skip the payload as it streams past.
                out.append(FrameError(f"frame of {length} bytes exceeds max_frame_size={self._max}; skipped"))
                if op != OP_CONT or self._frag_op is not None:
                    self._frag_oversized = not fin
                if end - pos < hdr:
                    break
                avail = end - pos - hdr
                take = min(avail, length)
                self._skip = length - take
                pos += hdr + take
                continue
            if end - pos < hdr + length:
                break
            start = pos + hdr
            payload = bytes(buf[start : start + length])
            if masked:
                payload = _unmask(bytes(buf[pos + hdr - 4 : pos + hdr]), payload)
            pos = start + length
            if op == OP_TEXT or op == OP_BINARY:
                if fin and self._frag_op is None:
                    self._deliver(payload, out)
                else:
                    self._frag_op = op
                    self._frags = [payload]
                    self._frag_size = length
                    self._frag_oversized = False
            elif op == OP_CONT:
                if self._frag_op is None:
                    if not self._frag_oversized:
                        out.append(FrameError("continuation frame without a first fragment"))
                    self._frag_oversized = self._frag_oversized and not fin
                    continue
                self._frag_size += length
                if self._frag_size > self._max:
                    out.append(FrameError(f"fragmented message exceeds max_frame_size={self._max}; skipped"))
                    self._frag_op = None
                    self._frags = []
                    self._frag_oversized = not fin
                    continue
                self._frags.append(payload)
                if fin:
                    self._frag_op = None
                    data = b"".join(self._frags)
                    self._frags = []
                    self._deliver(data, out)
            elif op == OP_PING:
                self._send_frame(OP_PONG, payload)
            elif op == OP_PONG:
                pass
            elif op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                reason = payload[2:].decode("utf-8", "replace")
                self.close_code = code
                try:
                    self._send_frame(OP_CLOSE, payload[:2])
                except OSError:
                    pass
                self._mark_closed(f"closed by the server: code {code}" + (f" ({reason})" if reason else ""))
                break
            else:
                out.append(FrameError(f"unknown websocket opcode {op:#x}"))
        del buf[:pos]
        return out

    def _deliver(self, payload: bytes, out: Received) -> None:
        try:
            out.append(payload.decode("utf-8"))
        except UnicodeDecodeError as exc:
            out.append(
                FrameError(f"frame is not valid UTF-8: {exc.reason} at byte {exc.start}", truncate(repr(payload[:300])))
            )

    # -- writing -----------------------------------------------------------------------------

    def send(self, text: str) -> None:
        self._send_frame(OP_TEXT, text.encode("utf-8"))

    def ping(self) -> None:
        self._send_frame(OP_PING, b"")

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        sock = self._sock
        if sock is None or self.closed:
            raise ConnectionError("connection is closed")
        frame = websocket.ABNF(1, 0, 0, 0, opcode, 1, payload).format()
        sock.sendall(frame)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (best effort) and shut the socket down.  Idempotent."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if not self.closed:
            try:
                sock.settimeout(1.0)
                frame = websocket.ABNF(
                    1, 0, 0, 0, OP_CLOSE, 1, struct.pack("!H", code) + reason.encode()[:120]
                ).format()
                sock.sendall(frame)
            except OSError:
                pass
            self._mark_closed(self.close_reason or "closed by the client")
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:  # pragma: no cover
            pass
        self._ws = None

    def _mark_closed(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason


def _unmask(key: bytes, payload: bytes) -> bytes:
    n = len(payload)
    mask = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ mask).to_bytes(n, "big")


def _close_quietly(ws: websocket.WebSocket) -> None:
    try:
        ws.shutdown()
    except Exception:  # pragma: no cover - best effort
        pass
