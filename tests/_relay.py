"""TCP relays on 127.0.0.1 that watch how the client's connections end, and a SOCKS5 proxy.

:class:`ResetRelay` sits between a client and a real server and relays bytes both ways, one
upstream connection per client connection.  For each it records (:class:`Leg`) what the client
sent, whether the client's side ended with a FIN or a TCP reset, and whether bytes the server
sent after the client's close were refused with a reset.  Linux answers with a reset when a
socket is closed with unread data in its receive buffer, or when data arrives for a socket
already closed; a server sees either as ``ECONNRESET``, which this relay stands in for.

:class:`Socks5Server` is a minimal SOCKS proxy (SOCKS5, RFC 1928 ``CONNECT``, with no
authentication or with username/password, RFC 1929; and SOCKS4/4a) that relays each tunnel the
same way.

    relay = ResetRelay(("127.0.0.1", server_port))
    ... a client connects to ("127.0.0.1", relay.port) ...
    relay.wait_ended(count, timeout)
    assert not [leg for leg in relay.legs if leg.reset]
    relay.close()
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time
from typing import Callable


class Leg:
    """One client connection through the relay."""

    def __init__(self) -> None:
        self.sent = bytearray()  # every byte the client sent
        self.client_end: str | None = None  # "eof", or "reset" (the client closed with a reset)
        self.refused: str | None = None  # the server's later bytes were refused with a reset (errno name)
        self.done = False  # both directions ended

    @property
    def reset(self) -> bool:
        return self.client_end == "reset" or self.refused is not None

    def __repr__(self) -> str:
        return f"<Leg client_end={self.client_end} refused={self.refused} sent={len(self.sent)}>"


class _Relaying:
    """The pumping shared by the relay and the proxy: a thread each way per connection."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cond = threading.Condition()
        self.legs: list[Leg] = []
        self._threads: list[threading.Thread] = []
        self._socks: set[socket.socket] = set()
        self._closing = False
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=target, args=args, name=f"{self.name}-fake", daemon=True)
        with self.cond:
            self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.cond:
                self._socks.add(client)
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        """Relay until both sides are done (on this thread and one more)."""
        leg = Leg()
        with self.cond:
            self.legs.append(leg)
            self._socks.add(upstream)
        ends = [0]

        def finished() -> None:
            with self.cond:
                ends[0] += 1
                if ends[0] < 2:
                    return
                leg.done = True
                self.cond.notify_all()
            client.close()
            upstream.close()

        def to_server() -> None:
            how = "eof"
            try:
                while True:
                    data = client.recv(65536)
                    if not data:
                        break
                    with self.cond:
                        leg.sent += data
                    upstream.sendall(data)
            except ConnectionResetError:
                how = "reset"
            except OSError:
                how = "eof" if self._closing else "error"
            with self.cond:
                leg.client_end = how
            try:
                upstream.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            finished()

        def to_client() -> None:
            refused: str | None = None
            try:
                while True:
                    data = upstream.recv(65536)
                    if not data:
                        break
                    try:
                        client.sendall(data)
                    except OSError as exc:
                        refused = refused or errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            except OSError:
                pass
            try:
                client.shutdown(socket.SHUT_WR)
            except OSError as exc:  # ENOTCONN: the client's reset came back
                refused = refused or errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            err = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err and not self._closing:
                refused = refused or errno.errorcode.get(err, str(err))
            with self.cond:
                leg.refused = None if self._closing else refused
            finished()

        self._spawn(to_client)
        to_server()

    def wait_ended(self, count: int, timeout: float) -> list[Leg]:
        """Wait until at least ``count`` connections ended both ways; returns every leg."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while sum(leg.done for leg in self.legs) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.name}: {sum(leg.done for leg in self.legs)} of {count} ended")
                self.cond.wait(remaining)
            return list(self.legs)

    def close(self) -> None:
        self._closing = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (close() alone does not)
        except OSError:
            pass
        self.listener.close()
        with self.cond:
            socks, threads = list(self._socks), list(self._threads)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(5)
        for s in socks:
            s.close()


class ResetRelay(_Relaying):
    """Relays every connection to ``upstream`` (see the module docstring)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        super().__init__("reset-relay")

    def url(self, upstream_url: str) -> str:
        """``upstream_url`` with its port replaced by the relay's."""
        return upstream_url.replace(f":{self.upstream[1]}/", f":{self.port}/", 1)

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        self._relay(client, upstream)


class Socks5Server(_Relaying):
    """A SOCKS5 proxy (RFC 1928, ``CONNECT`` only), with no authentication, or with
    username/password (RFC 1929) when ``credentials`` is given; SOCKS4/4a too (the user id must
    then be the credentials' user).  It connects to 127.0.0.1 only,
    whatever host is asked for (no test reaches beyond the machine).  :attr:`requests` lists
    the ``(host, port)`` asked for, :attr:`logins` the ``(username, password)`` offered."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.requests: list[tuple[str, int]] = []
        self.logins: list[tuple[str, str]] = []
        super().__init__("socks5")

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(10)
            upstream = self._handshake(client)
        except (OSError, ValueError):
            upstream = None
        if upstream is None:
            client.close()
            return
        client.settimeout(None)
        self._relay(client, upstream)

    def _handshake(self, c: socket.socket) -> socket.socket | None:
        ver, second = _exact(c, 2)
        if ver == 4:
            return self._socks4(c, second)
        methods = _exact(c, second)
        if ver != 5:
            return None
        want = 2 if self.credentials is not None else 0
        if want not in methods:
            c.sendall(b"\x05\xff")
            return None
        c.sendall(bytes([5, want]))
        if want == 2:  # RFC 1929
            ver, ulen = _exact(c, 2)
            user = _exact(c, ulen).decode()
            (plen,) = _exact(c, 1)
            password = _exact(c, plen).decode()
            with self.cond:
                self.logins.append((user, password))
            if (user, password) != self.credentials:
                c.sendall(b"\x01\x01")
                return None
            c.sendall(b"\x01\x00")
        ver, cmd, _rsv, atyp = _exact(c, 4)
        if atyp == 1:
            host = socket.inet_ntoa(_exact(c, 4))
        elif atyp == 3:
            (length,) = _exact(c, 1)
            host = _exact(c, length).decode()
        elif atyp == 4:
            host = socket.inet_ntop(socket.AF_INET6, _exact(c, 16))
        else:
            return None
        (port,) = struct.unpack("!H", _exact(c, 2))
        with self.cond:
            self.requests.append((host, port))
        if cmd != 1:
            c.sendall(b"\x05\x07\x00\x01" + bytes(6))  # command not supported
            return None
        try:
            upstream = socket.create_connection(("127.0.0.1", port))  # loopback only, whatever the name
        except OSError:
            c.sendall(b"\x05\x05\x00\x01" + bytes(6))  # connection refused
            return None
        bound = upstream.getsockname()
        c.sendall(b"\x05\x00\x00\x01" + socket.inet_aton(bound[0]) + struct.pack("!H", bound[1]))
        return upstream

    def _socks4(self, c: socket.socket, cmd: int) -> socket.socket | None:
        """SOCKS4 (and 4a: address 0.0.0.x, the host name after the user id); the user id
        is recorded in :attr:`logins` (with an empty password)."""
        (port,) = struct.unpack("!H", _exact(c, 2))
        ip = _exact(c, 4)
        user = _until_nul(c)
        host = _until_nul(c) if ip[:3] == b"\0\0\0" and ip[3] else socket.inet_ntoa(ip)
        with self.cond:
            self.requests.append((host, port))
            self.logins.append((user, ""))
        if cmd != 1 or (self.credentials is not None and user != self.credentials[0]):
            c.sendall(b"\x00\x5b" + bytes(6))  # rejected
            return None
        try:
            upstream = socket.create_connection(("127.0.0.1", port))
        except OSError:
            c.sendall(b"\x00\x5b" + bytes(6))
            return None
        c.sendall(b"\x00\x5a" + bytes(6))  # granted
        return upstream


def _until_nul(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\0"):
        data += _exact(sock, 1)
        if len(data) > 512:
            raise ValueError("no NUL within 512 bytes")
    return data[:-1].decode()


def _exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ValueError("the client went away during the SOCKS handshake")
        data += chunk
    return data
