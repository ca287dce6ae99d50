"""The websocket connection used by the transport thread.

websocket-client does the opening handshake (proxy, TLS, headers, subprotocols, Origin,
cookies); after it, the bytes go through the sans-I/O codec of :mod:`realtime_sync._frames`:

* one ``recv()`` of up to 256 KiB parses every frame it holds, instead of websocket-client's
  two or three ``recv()`` calls per frame;
* UTF-8 is validated by ``bytes.decode`` in C, not by websocket-client's pure-Python validator
  (about 6x slower);
* RFC 6455 is enforced: a server that breaks a MUST rule gets a close frame with the RFC's code
  (1002, 1007, 1009), the connection ends with :attr:`WebSocketConnection.failure` set, and the
  transport reports it and reconnects;
* a data message over ``max_frame_size`` and any binary message are skipped as they stream
  past, never buffered, and reported as a :class:`FrameError`; the connection carries on;
* pongs and close replies never block the transport thread: what the socket does not take at
  once waits for the next read, and a newer pong replaces an unsent older one;
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
import time
from typing import Union
from urllib.parse import urlsplit

import attrs
import websocket

from ._frames import OPEN, BinaryMessage, ClientCodec, CloseReceived, MessageTooBig
from ._redact import redact
from .config import ConnectOptions
from .exceptions import AuthenticationError, ConnectError, ProtocolError
from .protocols.base import ConnectRequest, truncate

__all__ = ["FrameError", "WebSocketConnection"]

log = logging.getLogger("realtime_sync.transport")

_READ_SIZE = 256 * 1024


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
    """One websocket connection attempt (see the module docstring).

    After it ended, ``closed`` is true, ``close_reason`` says why and ``close_code`` gives the
    close code (the server's, or the one we sent when we failed the connection).  ``failure``
    is a :class:`~realtime_sync.ProtocolError` (with ``.code``) when the server broke RFC 6455
    and we failed the connection, else None: the transport reports it as an ``error`` event of
    kind ``"protocol"`` before ``disconnected``, then reconnects as usual.
    """

    kind = "websocket"

    def __init__(self) -> None:
        self._ws: websocket.WebSocket | None = None
        self._sock: socket.socket | None = None
        self._codec = ClientCodec()
        self._out = b""  # control frames (pong, close) not yet written: never block on them
        self._started = False  # part of _out went out already: it cannot be dropped
        self.subprotocol: str | None = None
        self.closed = False
        self.close_reason = ""
        self.close_code: int | None = None
        self.failure: ProtocolError | None = None
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
        self._codec = ClientCodec(options.max_frame_size)
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
        """Read what is available and return the complete messages; None once closed."""
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
        codec = self._codec
        events = codec.events
        items = codec.receive_data(data)
        reply = codec.data_to_send()
        if reply or self._out:
            self._write_control(reply)
        if codec.state is not OPEN:
            self._codec_ended()
        if codec.events != events:  # rare: something other than text messages
            return [x if type(x) is str else _as_frame_error(x) for x in items if type(x) is not CloseReceived]
        return items  # type: ignore[return-value]  # only str here

    def _codec_ended(self) -> None:
        codec = self._codec
        violation = codec.failure
        if violation is not None:
            self.close_code = violation.code
            self.failure = ProtocolError(f"{violation.reason} (close code {violation.code})", code=violation.code)
            log.debug("failing the connection with %d: %s", violation.code, violation.reason)
            self._finish_sending()
            self._mark_closed(f"protocol error: {violation.reason} (close code {violation.code})")
            return
        received = codec.close_received
        if received is not None:
            code = received.code
            self.close_code = 1005 if code is None else code  # 1005: "no status" (RFC 6455 7.1.5)
            reason = redact(received.reason) if received.reason else ""
            self._finish_sending()
            self._mark_closed(
                f"closed by the server: code {self.close_code}" + (f" ({truncate(reason)})" if reason else "")
            )

    # -- writing -----------------------------------------------------------------------------

    def send(self, text: str) -> None:
        sock = self._sock
        if sock is None or self.closed:
            raise ConnectionError("connection is closed")
        if self._out:  # frames must not interleave: finish the pending control frame first
            out, self._out = self._out, b""
            sock.sendall(out)
        sock.sendall(self._codec.text(text))

    def ping(self) -> None:
        if self._sock is None or self.closed:
            raise ConnectionError("connection is closed")
        self._write_control(self._codec.ping())

    def _write_control(self, data: bytes) -> None:
        """Write control frames without blocking the transport thread: what the socket does not
        take now waits in ``_out`` for the next read or send.  A pong that was not started yet is
        replaced by a newer one (the codec coalesces pings the same way, RFC 6455 5.5.3), so a
        server that floods pings and does not read cannot grow this or stall us."""
        sock = self._sock
        if sock is None:
            return
        if data and self._out and not self._started:
            self._out = b""  # not one byte of it went out: the newer frames supersede it
        out = self._out + data
        if not out:
            return
        timeout = sock.gettimeout()
        try:
            sock.settimeout(0.0)
            sent = sock.send(out)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError, InterruptedError):
            sent = 0
        finally:
            sock.settimeout(timeout)
        self._out = out[sent:]
        self._started = sent > 0 and bool(self._out)

    def _finish_sending(self) -> None:
        """Write the close frame the codec queued, waiting briefly, then stop writing."""
        sock = self._sock
        if sock is None:
            return
        out, self._out = self._out, b""
        try:
            if out:
                sock.settimeout(1.0)
                sock.sendall(out)
            sock.shutdown(socket.SHUT_WR)  # our FIN follows the close frame
        except OSError:
            pass

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (best effort) and shut the socket down.  Idempotent."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if not self.closed:
            try:
                sock.settimeout(1.0)
                sock.sendall(self._out + self._codec.close(code, reason))
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


def _as_frame_error(item: object) -> FrameError:
    if isinstance(item, BinaryMessage):
        return FrameError(f"binary message of {item.size} bytes ignored: this protocol sends text messages only")
    if isinstance(item, MessageTooBig):
        return FrameError(f"message of {item.size}+ bytes exceeds max_frame_size={item.limit}; skipped")
    raise AssertionError(f"unexpected codec event {item!r}")  # pragma: no cover


def _close_quietly(ws: websocket.WebSocket) -> None:
    try:
        ws.shutdown()
    except Exception:  # pragma: no cover - best effort
        pass
