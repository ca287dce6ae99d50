"""The websocket connection used by the transport thread.

TCP, an HTTP proxy's ``CONNECT``, a SOCKS proxy's handshake (:mod:`realtime_sync._socks`) and
TLS happen on a socket of ours, which :meth:`WebSocketConnection.abort` can reach at every step
(a proxy or a TLS server that never answers cannot hold ``close()``).  The HTTP upgrade (RFC 6455 4.1) is ours too, so that ``connect_timeout``
bounds the whole handshake, the response head is read linearly and bounded, a refused
handshake's body is read only up to a bound (and discarded), and a redirect is never followed
(the handshake carries the credentials).  After it, the bytes go through the sans-I/O codec of
:mod:`realtime_sync._frames`:

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

import base64
import errno
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
import time
from typing import Any, Callable, Union
from urllib.parse import SplitResult, unquote, urlsplit

import attrs
import websocket
from websocket import _http as ws_http
from websocket import _socket as ws_socket
from websocket._url import get_proxy_info

from ._frames import OPEN, BinaryMessage, ClientCodec, CloseReceived, MessageTooBig
from ._h1 import check_header
from ._redact import redact, register_secret
from ._socks import SCHEMES as SOCKS_SCHEMES
from ._socks import SocksRefused, handshake
from .config import ConnectOptions
from .exceptions import AuthenticationError, ConfigurationError, ConnectError, ProtocolError
from .protocols.base import ConnectRequest, truncate

__all__ = ["FrameError", "Handshake", "WebSocketConnection"]

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
        # Percent-decoded, as from the environment (a password may hold "@" or ":" as %40, %3A).
        kw["http_proxy_auth"] = (unquote(parts.username), unquote(parts.password or ""))
    return kw


#: The status line and headers of the handshake response may take this much, no more.
MAX_HANDSHAKE_HEAD = 64 * 1024
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_REDIRECTS = frozenset((301, 302, 303, 307, 308))


@attrs.frozen
class _Response:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    set_cookies: list[str]  # each Set-Cookie header's value (they cannot be joined)


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, without userinfo, path or query (for messages)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return "(same origin)"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}" if parts.scheme else host + port


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("handshake deadline passed")
    return left


def _read_exactly(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    """``n`` bytes from ``sock`` within the deadline (a proxy's fixed-size answers)."""
    buf = b""
    while len(buf) < n:
        sock.settimeout(_remaining(deadline))
        data = sock.recv(n - len(buf))
        if not data:
            raise ConnectionError("the proxy closed the connection")
        buf += data
    return buf


def _read_head(sock: socket.socket, deadline: float | None) -> _Response:
    """Read the response head within the deadline, at most MAX_HANDSHAKE_HEAD bytes, and not one
    byte more: frames the server sent right behind it stay in the socket (or the TLS layer),
    where the I/O loop's selector (or ``pending()``) finds them.  Linear: each chunk is searched
    once for the blank line, from just before where it starts."""
    buf = bytearray()
    tls = isinstance(sock, ssl.SSLSocket)
    while True:
        sock.settimeout(_remaining(deadline))
        start = max(0, len(buf) - 3)
        if tls:
            # No MSG_PEEK on TLS: one byte at a time, from the decrypted buffer (no syscall).
            data = sock.recv(1)
            take = len(data)
        else:
            data = sock.recv(16384, socket.MSG_PEEK)
            take = _peek_take(data, buf, start)
            data = sock.recv(take) if take else b""
        if not data:
            raise ConnectionError("the server closed the connection during the handshake")
        buf += data
        end = buf.find(b"\r\n\r\n", start)
        if end >= 0:
            break
        if len(buf) > MAX_HANDSHAKE_HEAD:
            raise _HandshakeFailed(f"response head larger than {MAX_HANDSHAKE_HEAD} bytes")
    return _parse_head(buf, end)


def _peek_take(data: bytes, buf: bytearray, start: int) -> int:
    """How many of the peeked ``data`` bytes belong to the head (up to its blank line)."""
    end = (buf[start:] + data).find(b"\r\n\r\n")
    return len(data) if end < 0 else end + start + 4 - len(buf)


def _parse_head(buf: bytearray, end: int) -> _Response:
    """The status line and headers of a response head ending (blank line) at ``end``."""
    if end > MAX_HANDSHAKE_HEAD:
        raise _HandshakeFailed(f"response head larger than {MAX_HANDSHAKE_HEAD} bytes")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise _HandshakeFailed(f"not an HTTP response: {truncate(redact(lines[0]), 80)!r}")
    headers: dict[str, str] = {}
    set_cookies: list[str] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        value = value.strip()
        if name == "set-cookie":
            set_cookies.append(value)
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return _Response(int(parts[1]), headers, set_cookies)


#: At most this much of a refused handshake's body is read (and discarded), within the time left
#: and at most :data:`_BODY_DRAIN_SECONDS`: closing with unread bytes makes the kernel reset the
#: connection, which some servers take badly.  Never more: the body is the server's to waste.
MAX_REFUSED_BODY = 64 * 1024
_BODY_DRAIN_SECONDS = 1.0


def _drain_body(sock: socket.socket, headers: dict[str, str], deadline: float | None) -> None:
    try:
        length = int(headers.get("content-length", ""))
    except ValueError:
        length = MAX_REFUSED_BODY
    left = min(max(length, 0), MAX_REFUSED_BODY)
    until = time.monotonic() + _BODY_DRAIN_SECONDS
    if deadline is not None:
        until = min(until, deadline)
    chunk = bytearray(16384)
    try:
        while left > 0:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            sock.settimeout(remaining)
            n = sock.recv_into(chunk, min(left, len(chunk)))
            if not n:
                return
            left -= n
    except OSError:
        pass


class _HandshakeFailed(Exception):
    """Internal: the handshake response was not acceptable (message says why)."""


class _Refused(Exception):
    """Internal: the handshake failed with this error, ready to raise."""

    def __init__(self, error: ConnectError) -> None:
        super().__init__(str(error))
        self.error = error


def _refuse_https_proxy(proxy: dict[str, object], host: str, secure: bool, options: ConnectOptions) -> None:
    """websocket-client speaks plain HTTP to its proxy, so an ``https://`` proxy would get the
    CONNECT request and its credentials in clear: refuse it (explicit ones already are, by
    :class:`ConnectOptions`; this catches ``https_proxy=https://...`` in the environment)."""
    if proxy:  # an explicit proxy, or the environment turned off
        return
    key = "https_proxy" if secure else "http_proxy"
    value = os.environ.get(key) or os.environ.get(key.upper()) or ""
    if not value.strip().lower().startswith("https://"):
        return
    if get_proxy_info(host, secure)[0] is None:
        return  # no_proxy covers this host
    raise ConfigurationError(
        f"the {key} environment variable names an https:// proxy, which is not supported (the "
        "proxy would be spoken to in plain HTTP, its credentials in clear): use an http:// proxy "
        "(the websocket stays TLS end to end), set proxy= explicitly, or trust_env=False"
    )


@attrs.frozen
class _Hop:
    """A proxy in the way of a websocket connection: its scheme (``http``, or one of
    :data:`realtime_sync._socks.SCHEMES`), where it is, the ``Proxy-Authorization`` token of an
    HTTP proxy (registered as a secret) or the user and password of a SOCKS one (the password
    registered as a secret), and how errors name it."""

    scheme: str
    host: str
    port: int
    auth: str | None = attrs.field(repr=False)
    label: str  # "the proxy http://***@host:port" (see proxy_label)
    source: str  # where it was configured, for the hint: "proxy=" or an environment variable
    credentials: tuple[str, str] | None = attrs.field(default=None, repr=False)

    def refused(self, url: str, what: str, hint: str, *, verb: str = "connect to", auth: bool = False) -> _Refused:
        """``cannot connect to the proxy http://***@host:port (for URL): what; hint (source)``.

        ``auth``: the proxy refused our proxy credentials (HTTP 407, a SOCKS5 refusal): an
        :class:`~realtime_sync.AuthenticationError`, so that the client applies the
        credential-refusal policy (no instant retries, ``auth_failure_delay``,
        ``stop_on_auth_failure``) instead of retrying a wrong proxy password every few seconds,
        which locks the account of a proxy checking directory (AD/LDAP) credentials."""
        message = f"cannot {verb} {self.label} (for {redact(url)}): {what}; {hint} ({self.source})"
        return _Refused(AuthenticationError(message) if auth else ConnectError(message))


def _proxy_hop(via: Any, target: _Target, options: ConnectOptions) -> _Hop | None:
    """The proxy the connection goes through (``proxy=``, or the environment's), or None."""
    if via.proxy_host and via.proxy_protocol != "http":  # SOCKS: only ever from proxy=
        user, password = via.auth or (None, None)
        credentials = (str(user), str(password or "")) if user else None
        if credentials:
            register_secret(credentials[1])
        port = int(via.proxy_port or 1080)
        label = proxy_label(via.proxy_protocol, via.proxy_host, port, bool(credentials))
        return _Hop(via.proxy_protocol, via.proxy_host, port, None, label, "the proxy= option", credentials)
    host, port, auth = get_proxy_info(
        target.host, target.secure, via.proxy_host, via.proxy_port, via.auth, via.no_proxy
    )
    if host is None:
        return None
    if options.proxy is None:
        # From the environment: websocket-client keeps no scheme, so a SOCKS URL there would be
        # spoken to in HTTP (a CONNECT to a SOCKS proxy).  Long-polling takes it as SOCKS; so here.
        var = "https_proxy" if target.secure else "http_proxy"
        raw = os.environ.get(var, os.environ.get(var.upper(), "")).replace(" ", "")  # as websocket-client reads it
        if "://" in raw and raw.split("://", 1)[0].lower() in SOCKS_SCHEMES:
            return url_hop(urlsplit(raw), f"the {var} environment variable")
    port = int(port or 80)  # websocket-client's default for an environment proxy without a port
    token = None
    if auth and auth[0]:
        token = base64.b64encode(f"{auth[0]}:{auth[1] or ''}".encode()).decode()
        register_secret(token)
    if options.proxy is not None:
        source = "the proxy= option"
    else:
        source = f"the {'https_proxy' if target.secure else 'http_proxy'} environment variable"
    return _Hop("http", host, port, token, proxy_label("http", host, port, bool(auth)), source)


def url_hop(proxy: SplitResult, source: str) -> _Hop:
    """The :class:`_Hop` of a proxy URL (the long-polling transports': ``proxy=`` or the
    environment's, see :func:`realtime_sync.transport_longpoll._proxy_for`): an HTTP proxy with
    its ``Proxy-Authorization`` token, a SOCKS one with its user and password (percent-decoded;
    the password and the token registered as secrets).  ``source`` says where it was configured.

    >>> url_hop(urlsplit("socks5h://agent:pw@10.0.0.1"), "the proxy= option").label
    'the proxy socks5h://***@10.0.0.1:1080'
    """
    scheme = proxy.scheme.lower()
    host = proxy.hostname or ""
    user = unquote(proxy.username) if proxy.username else None
    password = unquote(proxy.password or "")
    if password:
        register_secret(password)
    if scheme in SOCKS_SCHEMES:
        port = proxy.port or 1080
        credentials = (user, password) if user else None
        return _Hop(scheme, host, port, None, proxy_label(scheme, host, port, bool(user)), source, credentials)
    port = proxy.port or 8080
    token = None
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        register_secret(token)
    return _Hop("http", host, port, token, proxy_label(scheme, host, port, bool(user)), source)


def tunnel_hint(status: int, authority: str, credentials: bool = True) -> str:
    """What to check when a proxy refused the tunnel with ``status`` (``credentials``: the
    proxy URL gave a user name and password)."""
    if status == 407:
        return "check the proxy's user name and password" if credentials else _NO_CREDENTIALS
    if status in (403, 405):
        return f"check that the proxy allows CONNECT to {authority}"
    if status in (502, 503, 504):
        return f"the proxy could not reach {authority}: check the URL, and that the proxy may reach it"
    return "check that it is an HTTP proxy and that it allows CONNECT"


_NO_CREDENTIALS = "give the user name and password in the proxy URL"


def proxy_label(scheme: str | None, host: str, port: int | None, credentials: bool) -> str:
    """How an error names a proxy: ``the proxy http://***@host:port`` (credentials hidden).

    >>> proxy_label("http", "10.0.0.1", 3128, True)
    'the proxy http://***@10.0.0.1:3128'
    """
    return f"the proxy {scheme or 'http'}://{'***@' if credentials else ''}{host}:{port or 8080}"


def _connect_error(exc: BaseException, url: str, timeout: float | None) -> ConnectError:
    """The :class:`ConnectError` an opening handshake that raised ``exc`` reports (secrets
    redacted); anything unexpected is re-raised."""
    url = redact(url)
    if isinstance(exc, _Refused):
        return exc.error
    if isinstance(exc, _HandshakeFailed):
        return ConnectError(f"handshake with {url} failed: {exc}")
    if isinstance(exc, TimeoutError):
        return ConnectError(f"cannot connect to {url}: handshake timed out (connect_timeout={timeout}s)")
    if isinstance(exc, (OSError, websocket.WebSocketException, ValueError)):
        return ConnectError(f"cannot connect to {url}: {redact(f'{type(exc).__name__}: {exc}')}")
    raise exc


@attrs.frozen
class _Target:
    host: str
    port: int
    secure: bool
    resource: str


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise _Refused(ConnectError(f"not a websocket URL: {redact(url)} (use ws:// or wss://)"))
    secure = scheme == "wss"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(parts.hostname, parts.port or (443 if secure else 80), secure, resource)


def _upgrade_request(request: ConnectRequest, target: _Target) -> tuple[str, bytes]:
    """The key and the bytes of the HTTP upgrade request (RFC 6455 4.1)."""
    key = base64.b64encode(os.urandom(16)).decode()
    host = target.host
    hostport = f"[{host}]" if ":" in host else host
    if target.port != (443 if target.secure else 80):
        hostport += f":{target.port}"
    lines = [
        f"GET {target.resource} HTTP/1.1",
        f"Host: {hostport}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    fields: list[tuple[str, str]] = []
    if request.origin:
        fields.append(("Origin", request.origin))
    if request.subprotocols:
        fields.append(("Sec-WebSocket-Protocol", ", ".join(request.subprotocols)))
    fields += request.headers.items()
    if request.cookies:
        fields.append(("Cookie", request.cookies))
    for name, value in fields:
        # ConnectOptions refuses these at construction; an adapter or a token callable may still
        # hand one over: a CR or LF would split the request (header injection).  A ValueError
        # here is a ConnectError naming the header, never its value (_connect_error).
        check_header(name, value)
    lines += [f"{k}: {v}" for k, v in fields]
    return key, ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def dial(
    host: str,
    port: int,
    hop: _Hop | None,
    options: ConnectOptions,
    deadline: float | None,
    url: str,
    own: Callable[[socket.socket], None],
    aborted: Callable[[], bool],
    *,
    tunnel: bool = True,
) -> socket.socket:
    """TCP to ``host:port``, or to the proxy ``hop`` and, with ``tunnel``, through its tunnel to
    ``host:port``: an HTTP proxy's ``CONNECT host:port`` (RFC 9110 9.3.6) or a SOCKS proxy's
    handshake (:mod:`realtime_sync._socks`).  No TLS: the caller's.  Each step within the
    deadline, each on a socket handed to ``own`` before it is used, so that the caller's
    ``abort()`` can shut it down (which ends a blocked connect or read at once); ``aborted()``
    says whether that happened.  An error in the proxy's part is a :class:`_Refused` naming the
    proxy (credentials hidden) and what to check; the websocket and both long-polling
    transports share it (``tunnel=False``: a plain-HTTP proxy taking absolute URIs).

    Example (a caller keeping the socket where its ``abort()`` finds it)::

        sock = dial("gws.example.com", 443, hop, options, time.monotonic() + 10, url, self._own,
                    lambda: self._aborted)           # then TLS on sock
    """
    first = (host, port) if hop is None else (hop.host, hop.port)
    try:
        infos = socket.getaddrinfo(first[0], first[1], 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        if hop is None:
            raise
        raise hop.refused(url, f"cannot resolve its host name ({exc})", "check the proxy's host name") from None
    sock: socket.socket | None = None
    for i, (family, kind, proto, _name, addr) in enumerate(infos):
        sock = socket.socket(family, kind, proto)
        own(sock)
        for opt in ws_socket.DEFAULT_SOCKET_OPTION:
            sock.setsockopt(*opt)
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(addr)
            break
        except TimeoutError:
            if hop is None:
                raise
            raise hop.refused(
                url,
                f"no TCP connection within connect_timeout={options.connect_timeout}s",
                "check the proxy's host and port, and that this machine may reach it",
            ) from None
        except OSError as exc:
            if aborted():
                raise
            if i + 1 < len(infos) and exc.errno in (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH):
                sock.close()
                continue  # the name's next address
            if hop is None:
                raise
            raise hop.refused(url, f"{type(exc).__name__}: {exc}", "check the proxy's host and port") from None
    assert sock is not None
    own(sock)  # (again: abort() may have come while connecting)
    if hop is not None and tunnel:
        if hop.scheme == "http":
            _tunnel(sock, hop, host, port, options, deadline, url, aborted)
        else:
            _socks(sock, hop, host, port, options, deadline, url, aborted)
    return sock


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tunnel(
    sock: socket.socket,
    hop: _Hop,
    host: str,
    port: int,
    options: ConnectOptions,
    deadline: float | None,
    url: str,
    aborted: Callable[[], bool],
) -> None:
    """``CONNECT host:port`` on ``sock`` (connected to the proxy); raises unless a 2xx answer
    opened the tunnel."""
    authority = _authority(host, port)
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if hop.auth is not None:
        lines.append(f"Proxy-Authorization: Basic {hop.auth}")
    try:
        sock.settimeout(_remaining(deadline))
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        answer = _read_head(sock, deadline)  # not one byte more: TLS follows right behind it
    except (OSError, _HandshakeFailed) as exc:
        what, hint = (
            f"no answer to CONNECT {authority}",
            "check that it is an HTTP proxy (a SOCKS proxy needs socks5://)",
        )
        raise hop_failed(exc, hop, url, what, hint, options, aborted()) from None
    if not 200 <= answer.status < 300:
        what = f"CONNECT {authority} answered with HTTP {answer.status}"
        hint = tunnel_hint(answer.status, authority, hop.auth is not None)
        raise hop.refused(url, what, hint, verb="tunnel through", auth=answer.status == 407)


def _socks(
    sock: socket.socket,
    hop: _Hop,
    host: str,
    port: int,
    options: ConnectOptions,
    deadline: float | None,
    url: str,
    aborted: Callable[[], bool],
) -> None:
    """The SOCKS handshake on ``sock`` (connected to the proxy), each read within the
    deadline; raises unless the proxy opened the tunnel."""
    steps = handshake(hop.scheme, host, port, hop.credentials)
    answer: bytes | None = None
    try:
        while True:
            try:
                out, want = steps.send(answer)  # type: ignore[arg-type]  # None starts it
            except StopIteration:
                return
            sock.settimeout(_remaining(deadline))
            if out:
                sock.sendall(out)
            answer = _read_exactly(sock, want, deadline)
    except SocksRefused as exc:
        raise socks_refused(exc, hop, url) from None
    except socket.gaierror as exc:  # socks4/socks5 resolve the target's name here
        raise _Refused(ConnectError(f"cannot connect to {redact(url)}: {redact(f'{type(exc).__name__}: {exc}')}"))
    except OSError as exc:
        what, hint = socks_silence(hop, host, port)
        raise hop_failed(exc, hop, url, what, hint, options, aborted()) from None


def socks_refused(exc: SocksRefused, hop: _Hop, url: str) -> _Refused:
    """The error of a SOCKS proxy that refused the tunnel (or did not speak SOCKS)."""
    return hop.refused(url, str(exc), exc.hint, verb="tunnel through", auth=exc.auth)


def proxy_credentials_refused(hop: _Hop | None, url: str, status: int, absolute: bool) -> str:
    """For a response with ``status`` to a request sent to a plain-HTTP proxy in absolute form
    (``absolute``, no tunnel): when it is the proxy's 407, the message of a credential refusal
    naming the proxy; else ``""``."""
    if status != 407 or not absolute or hop is None:
        return ""
    hint = tunnel_hint(407, "", hop.auth is not None)
    return str(hop.refused(url, "it answered with HTTP 407", hint, verb="get an answer through", auth=True).error)


def socks_silence(hop: _Hop, host: str, port: int) -> tuple[str, str]:
    """What happened and what to check, when a SOCKS proxy did not answer its handshake."""
    return (
        f"no answer to the SOCKS handshake for {_authority(host, port)}",
        f"check that it is a {hop.scheme[:6]} proxy",
    )


def silent_proxy(hop: _Hop, url: str, options: ConnectOptions) -> _Refused:
    """A plain-HTTP proxy (taking requests in absolute form, no tunnel) that accepted the
    connection and did not answer the first request on it within ``connect_timeout``."""
    what = f"no answer to the first request within connect_timeout={options.connect_timeout}s"
    return hop.refused(url, what, "check that it is an HTTP proxy and that it is working", verb="get an answer through")


def hop_failed(
    exc: Exception, hop: _Hop, url: str, what: str, hint: str, options: ConnectOptions, aborted: bool
) -> Exception:
    """What a proxy's handshake that raised ``exc`` (timed out, or the connection failed)
    reports: ``what`` happened and the ``hint``, naming the proxy; or the abort."""
    if isinstance(exc, TimeoutError):
        what = f"{what} within connect_timeout={options.connect_timeout}s"
        return hop.refused(url, what, f"{hint} and that it is working", verb="tunnel through")
    if aborted:
        return ConnectionAbortedError("the handshake was aborted")
    reason = "the proxy closed the connection" if isinstance(exc, ConnectionError) else str(exc)
    return hop.refused(url, f"{what}: {redact(reason)}", hint, verb="tunnel through")


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
        self._sock: socket.socket | None = None
        self._aborted = False  # sticky: see abort()
        self._codec = ClientCodec()
        self._out = b""  # control frames (pong, close) not yet written: never block on them
        self._started = False  # part of _out went out already: it cannot be dropped
        self.subprotocol: str | None = None
        self.set_cookies: list[str] = []  #: the handshake response's Set-Cookie values
        self.closed = False
        self.close_reason = ""
        self.close_code: int | None = None
        self.failure: ProtocolError | None = None
        self.last_activity = 0.0

    # -- opening ---------------------------------------------------------------------------

    def open(self, request: ConnectRequest, options: ConnectOptions) -> None:
        """Connect and do the opening handshake (RFC 6455 4.1), all within ``connect_timeout``.

        TCP, an HTTP proxy's ``CONNECT`` and TLS (with the options' certificates) run on a socket
        that :meth:`abort` can reach (see :meth:`_connect`; websocket-client makes it only
        through a SOCKS proxy); the HTTP upgrade is ours, so that: ``connect_timeout`` bounds the
        whole handshake (a server trickling its answer cannot keep us connecting); the response
        head is read linearly and bounded (:data:`MAX_HANDSHAKE_HEAD`), and at most
        :data:`MAX_REFUSED_BODY` of a refused handshake's body is read (then discarded); a redirect is never followed (the handshake carries
        credentials: a 3xx is a :class:`ConnectError` naming the status and the target's origin);
        and no exception raised here keeps a library exception, with the response headers, in
        its ``__context__``.
        """
        timeout = options.connect_timeout or None
        deadline = None if timeout is None else time.monotonic() + timeout
        error: ConnectError | None = None
        try:
            self._open(request, options, deadline)
        except Exception as exc:
            error = _connect_error(exc, request.url, timeout)
        if error is not None:
            # Raised here, outside the except blocks: the ConnectError has no __context__ holding
            # websocket-client's exception (which may carry the response headers).
            self._drop_socket()
            raise error
        self._ready(options)

    def _ready(self, options: ConnectOptions) -> None:
        """The handshake succeeded: set the socket up for the I/O loop."""
        sock = self._sock
        assert sock is not None
        # Reads happen only when select() (or pending()) says data is there; the timeout bounds
        # a read stuck in the middle of a TLS record and every blocking write.
        sock.settimeout(max(options.connect_timeout or 10.0, 1.0))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not TCP
            pass
        self._codec = ClientCodec(options.max_frame_size)
        self.last_activity = time.monotonic()

    def _open(self, request: ConnectRequest, options: ConnectOptions, deadline: float | None) -> None:
        url = request.url
        target = _target(url)
        proxy = _proxy_kwargs(options, url)
        _refuse_https_proxy(proxy, target.host, target.secure, options)
        # Each blocking step is bounded by the time left (CPython bounds a whole TLS handshake by
        # the socket timeout); from the upgrade on, every read gets only what remains.
        via = ws_http.proxy_info(**proxy)
        # Direct or through a proxy: TCP, the proxy's CONNECT (HTTP or SOCKS) and TLS on a socket
        # of ours, so that abort() reaches every step (a proxy or a TLS server that never answers
        # cannot hold close() for the whole connect_timeout).
        sock = self._connect(target, _proxy_hop(via, target, options), options, deadline, url)
        if self._aborted:  # it came while the socket was being made (see abort())
            raise ConnectionAbortedError("the handshake was aborted")
        key, head = _upgrade_request(request, target)
        sock.settimeout(_remaining(deadline))
        sock.sendall(head)
        response = _read_head(sock, deadline)
        self.set_cookies = response.set_cookies
        if response.status != 101:
            _drain_body(sock, response.headers, deadline)
        self.subprotocol = self._check_response(response, request, key)

    def _own(self, sock: socket.socket) -> None:
        """From now on ``sock`` is the one :meth:`abort` shuts down."""
        self._sock = sock
        if self._aborted:
            raise ConnectionAbortedError("the handshake was aborted")

    def _connect(
        self, target: _Target, hop: _Hop | None, options: ConnectOptions, deadline: float | None, url: str
    ) -> socket.socket:
        """:func:`dial` (TCP, and a proxy's tunnel), then TLS with the server for ``wss://``, each
        step within the deadline on a socket that :meth:`abort` can shut down."""
        sock = dial(target.host, target.port, hop, options, deadline, url, self._own, lambda: self._aborted)
        if not target.secure:
            return sock
        # TLS with the server (end to end through a proxy's tunnel); the handshake runs once the
        # SSLSocket is ours (do_handshake_on_connect=False), so that abort() can end it.
        tls = ws_http._ssl_socket(sock, {**_sslopt(options), "do_handshake_on_connect": False}, target.host)
        self._own(tls)
        tls.settimeout(_remaining(deadline))
        tls.do_handshake()
        return tls

    def begin_open(self, request: ConnectRequest, options: ConnectOptions) -> Handshake | None:
        """The opening handshake as a non-blocking :class:`Handshake` for an I/O loop to drive
        (a hub opens thousands of connections this way without a thread each), or None when it
        needs the blocking :meth:`open` (``wss://``: TLS; a proxy in the way; a bad URL)."""
        try:
            target = _target(request.url)
            if target.secure:
                return None
            proxy = ws_http.proxy_info(**_proxy_kwargs(options, request.url))
            via = get_proxy_info(target.host, False, proxy.proxy_host, proxy.proxy_port, proxy.auth, proxy.no_proxy)
        except Exception:
            return None  # open() reports it
        if via[0] is not None:
            return None
        try:
            return Handshake(self, request, options, target)
        except ValueError:
            return None  # a header that cannot be sent: open() reports it

    def _check_response(self, response: _Response, request: ConnectRequest, key: str) -> str | None:
        url = redact(request.url)
        status = response.status
        headers = response.headers
        if status in _REDIRECTS or 300 <= status < 400:
            target = _origin(headers.get("location", ""))
            raise _Refused(
                ConnectError(
                    f"handshake with {url} refused: HTTP {status} redirect to {target}; redirects are never "
                    "followed (the handshake carries credentials): use the final URL",
                    status=status,
                )
            )
        if status != 101:
            msg = f"handshake with {url} refused: HTTP {status}"
            if status in (401, 403):
                raise _Refused(AuthenticationError(msg + " (credentials refused)", status=status))
            if status == 404:
                # Rails ActionCable answers 404 to an Origin it does not allow, too.
                msg += (
                    " (no websocket here: check the URL's path; an ActionCable server also answers "
                    "404 to an Origin it does not allow: pass origin=)"
                )
            raise _Refused(ConnectError(msg, status=status))
        # RFC 6455 4.1, the client's checks of a 101 answer.
        problem = None
        accept = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()
        if headers.get("upgrade", "").lower() != "websocket":
            problem = "no 'Upgrade: websocket' header"
        elif "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
            problem = "no 'Connection: Upgrade' header"
        elif headers.get("sec-websocket-accept") != accept:
            problem = "wrong Sec-WebSocket-Accept"
        elif headers.get("sec-websocket-extensions"):
            problem = "the server chose an extension we did not offer"
        chosen = headers.get("sec-websocket-protocol") or None
        if problem is None and chosen is not None and chosen not in request.subprotocols:
            problem = f"the server chose a subprotocol we did not offer: {truncate(redact(chosen), 60)!r}"
        if problem is not None:
            raise _Refused(ConnectError(f"handshake with {url} failed: {problem} (RFC 6455 4.1)", status=status))
        return chosen

    def abort(self) -> None:
        """Interrupt an ``open()`` blocked in the handshake; called from another thread.

        Once TCP (and TLS) is up, shutting the socket down makes the blocked ``recv()`` return at
        once, so ``open()`` raises instead of waiting for ``connect_timeout``.  The socket is ours
        from before its TCP connect, so the connect, the wait for an HTTP proxy's answer to
        ``CONNECT`` or a SOCKS proxy's handshake and the TLS handshake end at once too.  Sticky:
        an abort that comes before the socket exists (a DNS look-up, which cannot be
        interrupted) makes the handshake fail as soon as the socket is there, instead of being
        missed.
        """
        self._aborted = True
        sock = self._sock
        if sock is not None:
            try:
                # socket.socket's own shutdown, also for an SSLSocket: its override drops the TLS
                # object under the thread that may be in do_handshake() with it.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:  # pragma: no cover
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

    def start_closing(self, code: int = 1000, reason: str = "") -> bool:
        """Begin a clean closing handshake: send our close frame and keep the socket.

        True: the caller reads on (:meth:`drain_closing` each time :meth:`fileno` is readable)
        until the server closes TCP, then calls :meth:`close`.  False: nothing to wait for,
        call :meth:`close` now.  Closing a socket with unread data makes the kernel answer with
        a TCP reset instead of a FIN, and a server that reads our last frames together with the
        reset can drop them (python-websockets does: its close reply fails and the frames read
        with it are lost), so a goodbye such as Bayeux' ``/meta/disconnect`` would vanish.
        RFC 6455 7.1.1 wants the server to close TCP first anyway.
        """
        sock = self._sock
        if sock is None or self.closed:
            return False
        try:
            sock.settimeout(1.0)
            sock.sendall(self._out + self._codec.close(code, reason))
            self._out = b""
            sock.settimeout(0.0)
        except OSError:
            return False
        finally:
            self._mark_closed(self.close_reason or "closed by the client")
        return True

    def drain_closing(self) -> bool:
        """Read and drop what the server still sends after our close frame; True once it has
        closed TCP (or the socket failed): then :meth:`close`."""
        sock = self._sock
        if sock is None:
            return True
        try:
            while sock.recv(_READ_SIZE):
                pass
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            return False
        except (OSError, ValueError):
            return True
        return True

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

    def _mark_closed(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason


class Handshake:
    """One opening handshake (RFC 6455 4.1) on a non-blocking socket, for an I/O loop to drive.

    The same request, response checks and errors as :meth:`WebSocketConnection.open`, without
    a thread: the loop calls :meth:`start`, then :meth:`step` each time :meth:`fileno` is ready
    for :attr:`want_write` (writable) or reading, until ``step()`` returns True (the connection is
    open) or raises :class:`ConnectError`; at :attr:`deadline` it calls :meth:`timed_out`.  A
    hostname is resolved first by :meth:`resolve` (``needs_resolve``), which blocks: the loop runs
    it on a worker thread.  Only ``ws://`` without a proxy (see :meth:`WebSocketConnection.
    begin_open`).

    >>> conn = WebSocketConnection()
    >>> hs = conn.begin_open(ConnectRequest("ws://127.0.0.1:9/cable"), ConnectOptions())
    >>> hs.needs_resolve, hs.want_write
    (False, True)
    """

    def __init__(self, conn: WebSocketConnection, request: ConnectRequest, options: ConnectOptions, target: _Target):
        self.conn = conn
        self._request = request
        self._options = options
        self._target = target
        self._timeout = options.connect_timeout or None
        self._key, self._out = _upgrade_request(request, target)
        self._buf = bytearray()
        self._connecting = True
        self._addr: tuple[int, Any] | None = None
        try:
            ip = ipaddress.ip_address(target.host)
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            self._addr = (family, (target.host, target.port))
        except ValueError:
            pass
        #: True until the data for :meth:`step` is to be read (the socket is connecting or the
        #: request is not all written).
        self.want_write = True
        #: The monotonic time after which the handshake has failed (None: no connect_timeout).
        self.deadline: float | None = None

    @property
    def needs_resolve(self) -> bool:
        return self._addr is None

    def resolve(self) -> None:
        """Look the host name up (blocks: DNS)."""
        try:
            infos = socket.getaddrinfo(self._target.host, self._target.port, 0, socket.SOCK_STREAM)
        except Exception as exc:
            raise self._error(exc) from None
        family, _type, _proto, _name, addr = infos[0]
        self._addr = (family, addr)

    def start(self) -> None:
        """Create the socket and begin connecting (never blocks)."""
        assert self._addr is not None
        timeout = self._timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        family, addr = self._addr
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            raise self._error(exc) from None
        sock.setblocking(False)
        self.conn._sock = sock  # visible to abort() from now on
        if self.conn._aborted:
            raise self._error(ConnectionAbortedError("the handshake was aborted"))
        err = sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            raise self._error(OSError(err, os.strerror(err)))

    def fileno(self) -> int:
        sock = self.conn._sock
        return sock.fileno() if sock is not None else -1

    def step(self) -> bool:
        """Advance on readiness; True once the connection is open (then it is the caller's)."""
        try:
            return self._step()
        except Exception as exc:
            error = self._error(exc)
        raise error

    def _step(self) -> bool:
        sock = self.conn._sock
        if sock is None:
            raise ConnectionAbortedError("the handshake was aborted")
        if self._connecting:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            self._connecting = False
        if self._out:
            try:
                sent = sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                return False
            self._out = self._out[sent:]
            self.want_write = bool(self._out)
            return False  # the answer comes later: wait for readable
        buf = self._buf
        while True:
            start = max(0, len(buf) - 3)
            try:
                data = sock.recv(16384, socket.MSG_PEEK)  # only the head: frames behind it stay queued
            except (BlockingIOError, InterruptedError):
                return False
            if not data:
                raise ConnectionError("the server closed the connection during the handshake")
            take = _peek_take(data, buf, start)
            buf += sock.recv(take)
            end = buf.find(b"\r\n\r\n", start)
            if end >= 0:
                break
            if len(buf) > MAX_HANDSHAKE_HEAD:
                raise _HandshakeFailed(f"response head larger than {MAX_HANDSHAKE_HEAD} bytes")
        response = _parse_head(buf, end)
        conn = self.conn
        conn.set_cookies = response.set_cookies
        if response.status != 101:
            _skip_available(sock, response.headers)
        conn.subprotocol = conn._check_response(response, self._request, self._key)
        conn._ready(self._options)
        return True

    def timed_out(self) -> ConnectError:
        """The error of a handshake past its deadline (the caller then calls :meth:`close`)."""
        return self._error(TimeoutError("handshake deadline passed"))

    def close(self) -> None:
        """Give up: close the socket (after a failure, a timeout or an abort)."""
        self.conn._drop_socket()

    def _error(self, exc: BaseException) -> ConnectError:
        return _connect_error(exc, self._request.url, self._timeout)


def _skip_available(sock: socket.socket, headers: dict[str, str]) -> None:
    """A refused handshake's body, read up to :data:`MAX_REFUSED_BODY` as far as it is already
    here (never waiting: the loop must not block), then discarded (see :func:`_drain_body`)."""
    try:
        left = int(headers.get("content-length", ""))
    except ValueError:
        left = MAX_REFUSED_BODY
    left = min(max(left, 0), MAX_REFUSED_BODY)
    try:
        while left > 0:
            data = sock.recv(min(left, 16384))
            if not data:
                return
            left -= len(data)
    except OSError:
        pass


def _as_frame_error(item: object) -> FrameError:
    if isinstance(item, BinaryMessage):
        return FrameError(f"binary message of {item.size} bytes ignored: this protocol sends text messages only")
    if isinstance(item, MessageTooBig):
        return FrameError(f"message of {item.size}+ bytes exceeds max_frame_size={item.limit}; skipped")
    raise AssertionError(f"unexpected codec event {item!r}")  # pragma: no cover
