"""The SOCKS client handshake (SOCKS4/4a, SOCKS5 RFC 1928 with RFC 1929 username/password), sans-I/O.

The websocket connection speaks to a SOCKS proxy itself, on its own socket, rather than letting
websocket-client do it through python-socks: there the proxy's socket is made inside a library
call that nothing can interrupt, with python-socks' own timeout (60 s; websocket-client does not
pass ``connect_timeout``), so a proxy that accepted the TCP connection and never answered held
``close()`` that long (measured: ``close(timeout=1)`` returned after 2.5 s, and the transport
thread lived 60 s).  Here every step runs on a socket that ``abort()`` shuts down, within the
handshake's deadline; and SOCKS needs no extra package.

Theory of operation: :func:`handshake` is a generator of steps.  Each step it yields is
``(bytes to send, number of bytes to read)``; the driver sends the bytes, reads exactly that
many and sends them back in; the generator returns when the tunnel is open, and raises
:class:`SocksRefused` (with what to tell the user) when the proxy says no or speaks nonsense::

    steps = handshake("socks5", "example.com", 443, credentials=None)
    answer = None
    try:
        while True:
            out, want = steps.send(answer)
            sock.sendall(out)
            answer = read_exactly(sock, want)
    except StopIteration:
        pass                                  # sock is now a tunnel to example.com:443

Names: ``socks4`` and ``socks5`` resolve the target's host name here (a blocking
``getaddrinfo``, like any DNS look-up of ours: it cannot be interrupted); ``socks4a`` and
``socks5h`` let the proxy resolve it.  SOCKS4 carries IPv4 only.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Generator

__all__ = ["SCHEMES", "SocksRefused", "handshake"]

#: The proxy URL schemes spoken here.
SCHEMES = ("socks4", "socks4a", "socks5", "socks5h")

Steps = Generator[tuple[bytes, int], bytes, None]

_SOCKS5_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
_SOCKS4_REPLIES = {
    91: "request rejected or failed",
    92: "rejected: the proxy cannot reach the client's identd",
    93: "rejected: identd reports a different user id",
}


class SocksRefused(Exception):
    """The proxy refused the tunnel, or did not speak SOCKS: ``str()`` says why, ``hint`` what
    to check.  Never carries the credentials.  ``auth``: a SOCKS5 proxy refused our credentials
    (RFC 1929 status not 0) or accepts none of the methods we offered (0xFF: it requires an
    authentication we did not give): a credential refusal, which a client must not retry every
    few seconds (a proxy checking directory credentials locks the account).  A SOCKS4 rejection
    (91) says too little to be one."""

    def __init__(self, what: str, hint: str, *, auth: bool = False) -> None:
        super().__init__(what)
        self.hint = hint
        self.auth = auth


def handshake(scheme: str, host: str, port: int, credentials: tuple[str, str] | None = None) -> Steps:
    """The steps of a ``CONNECT`` to ``host:port`` through a proxy of ``scheme`` (see the module
    docstring); ``credentials`` (user, password): RFC 1929 for SOCKS5, the user id for SOCKS4."""
    if scheme in ("socks5", "socks5h"):
        return _socks5(host, port, credentials, remote_dns=scheme == "socks5h")
    if scheme in ("socks4", "socks4a"):
        return _socks4(host, port, credentials[0] if credentials else "", remote_dns=scheme == "socks4a")
    raise ValueError(f"not a SOCKS scheme: {scheme!r}")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _resolve(host: str, port: int, family: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``host``'s first address (``family``: AF_INET for SOCKS4, AF_UNSPEC for SOCKS5)."""
    ip = _ip(host)
    if ip is not None:
        return ip
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)  # raises gaierror
    return ipaddress.ip_address(infos[0][4][0])


def _socks5(host: str, port: int, credentials: tuple[str, str] | None, *, remote_dns: bool) -> Steps:
    # RFC 1928 section 3: the methods we offer (username/password, RFC 1929, when we have them).
    methods = b"\x00\x02" if credentials else b"\x00"
    answer = yield b"\x05" + bytes([len(methods)]) + methods, 2
    if answer[0] != 5:
        raise SocksRefused("it did not answer as a SOCKS5 proxy", "check that it is a SOCKS5 proxy (the scheme)")
    method = answer[1]
    if method == 0xFF or bytes([method]) not in methods:
        refused = method == 0xFF  # "no acceptable methods": an authentication we did not give
        if credentials:
            raise SocksRefused(
                "it accepts no user name and password (RFC 1929)",
                "check the proxy's authentication methods",
                auth=refused,
            )
        raise SocksRefused(
            "it requires authentication", "give the user name and password in the proxy URL", auth=refused
        )
    if method == 2:
        assert credentials is not None
        user, password = (part.encode("utf-8") for part in credentials)
        if not 0 < len(user) < 256 or len(password) > 255:
            raise SocksRefused("the user name or password is too long for SOCKS5", "at most 255 bytes each")
        # RFC 1929 section 2.
        answer = yield b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password, 2
        if answer[1] != 0:
            raise SocksRefused(
                "it refused the user name and password", "check the proxy's user name and password", auth=True
            )
    # RFC 1928 section 4: CONNECT.
    ip = None if remote_dns else _resolve(host, port, socket.AF_UNSPEC)
    if ip is None:
        ip = _ip(host)
    if ip is None:
        name = host.encode("idna")
        if len(name) > 255:
            raise SocksRefused("the host name is too long for SOCKS5", "use a shorter name")
        address = b"\x03" + bytes([len(name)]) + name
    else:
        address = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
    head = yield b"\x05\x01\x00" + address + struct.pack("!H", port), 4
    if head[0] != 5:
        raise SocksRefused("it did not answer as a SOCKS5 proxy", "check that it is a SOCKS5 proxy (the scheme)")
    if head[1] != 0:
        why = _SOCKS5_REPLIES.get(head[1], f"reply code {head[1]}")
        raise SocksRefused(f"CONNECT {host}:{port} refused: {why}", _hint(head[1]))
    # The bound address (ignored), then the tunnel is open.
    if head[3] == 1:
        yield b"", 4 + 2
    elif head[3] == 4:
        yield b"", 16 + 2
    elif head[3] == 3:
        length = yield b"", 1
        yield b"", length[0] + 2
    else:
        raise SocksRefused(f"it answered with address type {head[3]}", "check that it is a SOCKS5 proxy")


def _socks4(host: str, port: int, user: str, *, remote_dns: bool) -> Steps:
    ip = _ip(host)
    if ip is None and not remote_dns:
        ip = _resolve(host, port, socket.AF_INET)
    if ip is not None and ip.version != 4:
        raise SocksRefused(f"SOCKS4 cannot reach the IPv6 address of {host}", "use socks5:// or socks5h://")
    userid = user.encode("utf-8") + b"\x00"
    if ip is None:  # SOCKS4a: 0.0.0.x (x non-zero), then the name after the user id
        request = b"\x04\x01" + struct.pack("!H", port) + b"\x00\x00\x00\x01" + userid + host.encode("idna") + b"\x00"
    else:
        request = b"\x04\x01" + struct.pack("!H", port) + ip.packed + userid
    answer = yield request, 8
    if answer[0] != 0:
        raise SocksRefused("it did not answer as a SOCKS4 proxy", "check that it is a SOCKS4 proxy (the scheme)")
    if answer[1] != 90:
        why = _SOCKS4_REPLIES.get(answer[1], f"reply code {answer[1]}")
        if answer[1] in (92, 93):
            hint = "check the user id in the proxy URL (socks4://USER@host:port): the proxy asks the client's identd"
        elif user:
            hint = "check that the proxy may reach it and accepts the user id of the proxy URL"
        else:
            hint = "check that the proxy may reach it (and whether it wants a user id: socks4://USER@host:port)"
        raise SocksRefused(f"CONNECT {host}:{port} refused: {why}", hint)


def _hint(code: int) -> str:
    if code == 2:
        return "check that the proxy allows connections to it"
    if code in (3, 4, 5, 6):
        return "the proxy could not reach it: check the URL, and that the proxy may reach it"
    return "check that the proxy supports CONNECT"
