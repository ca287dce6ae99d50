"""A strict, sans-I/O HTTP/1.1 client codec for the hub's long-polling connections (RFC 9112).

Why not h11
-----------
h11 (the sans-I/O HTTP/1.1 library) did this until it was measured as most of the hub's idle
cost: an idle Bayeux session on a hub is one held ``/meta/connect`` per ``advice.timeout``, and
of the ~550 µs of CPU that one such cycle cost on the 2-core benchmark machine, h11 took
~155 µs in isolation (building and validating the ``Request`` event, its state machine, the
response's event objects) and about half of the profile in place.  This module does the one thing
the hub needs (a ``POST`` with a body, then one response) in ~10 µs: the request is bytes built
from a head prepared once per connection (checked once, not on every request), and the response
reader parses the head with one search and one regular expression per line.  The numbers are in
the README's hub section (``benchmarks/many_connections.py --scenario bayeux``).

Strict where it matters, and tested against h11 as a reference (``tests/test_hub_http11.py``
feeds both the same responses, whole and byte by byte):

* the status line is ``HTTP/1.0`` or ``HTTP/1.1``, a 3-digit status and an optional reason;
  header lines are ``token ":" OWS value OWS`` (no whitespace before the colon, no CR, LF or NUL
  in a value); obsolete line folding is unfolded into one space (RFC 9112 5.2), and a
  continuation line right after the status line is an error;
* framing (RFC 9112 6.3): 1xx responses are interim and skipped (a ``101`` is an error: nothing
  here asked to switch protocols), ``204`` and ``304`` have no body; ``Transfer-Encoding:
  chunked`` beats ``Content-Length`` (any other transfer coding is an error); a
  ``Content-Length`` must be digits, repeated or listed values must agree; without either the
  body runs until the server closes (and the connection is not reused);
* chunked bodies: hex sizes (at most 20 digits), extensions ignored, each chunk's data followed
  by CRLF exactly, trailers read and dropped;
* keep-alive: an HTTP/1.0 response, ``Connection: close``, a body read until close, or bytes
  beyond the response's end (a confused peer) end the connection after this response;
* every head, chunk-size line and trailer section is bounded (``max_head``); the body by
  ``max_body``.

Line endings are CRLF only (a bare LF is an error: every server Bayeux clients meet sends CRLF).

Theory of operation
-------------------
::

    ResponseReader.feed(bytes) --> HEAD --(1xx: skip)--> HEAD
                                    |  framing from the head
                                    v
                        LENGTH | CHUNK_SIZE <-> CHUNK_DATA (+CRLF) --0--> TRAILERS | UNTIL_CLOSE
                                    |                                       |            | eof()
                                    v                                       v            v
                                   DONE  <----------------------------------+------------+

``feed`` returns True once the response is complete (``status``, ``reason``, ``headers``,
``body``, ``keep_alive``); :class:`HttpProtocolError` says what the peer got wrong;
:class:`BodyTooLarge` that the body passed ``max_body``.
"""

from __future__ import annotations

import re

__all__ = ["BodyTooLarge", "HttpProtocolError", "ResponseReader", "build_request_head", "check_header"]

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
# As h11 reads them (its _abnf.py): a field value is visible bytes (anything but NUL and
# whitespace) separated by spaces or tabs; the status line's reason may be left out.
_VCHAR = rb"[^\x00\s]"
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _VCHAR + rb"+(?:[ \t]+" + _VCHAR + rb"+)*)?[ \t]*")
# All the header lines of a head at once (each ending in CRLF), when none is folded: one match in
# C instead of one per line.
_FIELDS = re.compile(rb"(?:" + _TOKEN + rb":[ \t]*(?:" + _VCHAR + rb"+(?:[ \t]+" + _VCHAR + rb"+)*)?[ \t]*\r\n)*")
_FOLD = re.compile(rb"[ \t]+(" + _VCHAR + rb"+(?:[ \t]+" + _VCHAR + rb"+)*)?[ \t]*")
_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ((?:[ \t]|" + _VCHAR + rb")*))?")
_CHUNK = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*")
_DIGITS = re.compile(rb"[0-9]{1,19}")
_BAD_VALUE = re.compile(r"[\x00\r\n]")
_BAD_NAME = re.compile(r"[^-!#$%&'*+.^_`|~0-9A-Za-z]")

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


#: Final response heads already read, and what they say (status, reason, headers, close,
#: chunked, length): a hub's sessions get the same head from the same server again and again
#: (a held connect's reply differs in its id, in the body).  Shared and bounded; a head with a
#: Set-Cookie is not kept.
_HEADS: dict[bytes, tuple[int, str, tuple[tuple[str, str], ...], bool, bool, int | None]] = {}
_HEADS_KEPT = 256


class HttpProtocolError(ValueError):
    """The peer's bytes are not a valid HTTP/1.1 response (the message says where)."""


class BodyTooLarge(ValueError):
    """The response body is larger than the reader's ``max_body``."""


def check_header(name: str, value: str) -> None:
    """Raise ValueError for a header we must not send: a name that is not a token, a value with
    CR, LF or NUL (which would split the request: header injection)."""
    if not name or _BAD_NAME.search(name):
        raise ValueError(f"invalid HTTP header name {name!r}")
    if _BAD_VALUE.search(value):
        raise ValueError(f"invalid character in the value of HTTP header {name!r}")


def build_request_head(method: str, target: str, headers: list[tuple[str, str]]) -> bytes:
    """The request line and ``headers`` (checked), without the blank line ending the head.

    >>> build_request_head("POST", "/cometd", [("Host", "example.com")])
    b'POST /cometd HTTP/1.1\\r\\nHost: example.com\\r\\n'
    """
    if not target or any(c <= " " or c == "\x7f" for c in target):
        raise ValueError("invalid request target")
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in headers:
        check_header(name, value)
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


class ResponseReader:
    """One response, fed the bytes that arrive (see the module docstring).

    >>> r = ResponseReader()
    >>> r.feed(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n")
    False
    >>> r.feed(b"[]"), r.status, r.body, r.keep_alive
    (True, 200, b'[]', True)
    """

    __slots__ = (
        "_buf",
        "_chunks",
        "_left",
        "_scan",
        "_state",
        "body",
        "headers",
        "keep_alive",
        "max_body",
        "max_head",
        "reason",
        "size",
        "status",
    )

    def __init__(self, max_body: int = 0, max_head: int = 64 * 1024) -> None:
        self.max_body = max_body
        self.max_head = max_head
        self.status = 0
        self.reason = ""
        #: (lower-case name, value) pairs, in order, of the final response.
        self.headers: tuple[tuple[str, str], ...] = ()
        self.body = b""
        self.size = 0
        self.keep_alive = True
        self._state = _HEAD
        self._buf = b""
        self._scan = 0  # where to resume looking for the end of a line or head in _buf
        self._left = 0
        self._chunks: list[bytes] = []

    @property
    def started(self) -> bool:
        """Any byte of a response arrived."""
        return bool(self._buf) or self._state != _HEAD or self.status != 0

    def feed(self, data: bytes) -> bool:
        """Take ``data``; True once the response is complete."""
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pos = 0
        end_of_data = len(data)
        while True:
            state = self._state
            if state == _LENGTH or state == _CHUNK_DATA:
                take = min(end_of_data - pos, self._left)
                if take:
                    self._add(data[pos : pos + take] if take < end_of_data - pos or pos else data)
                    pos += take
                    self._left -= take
                if self._left:
                    return False
                self._state = _DONE if state == _LENGTH else _CHUNK_END
            elif state == _TRAILERS and data.startswith(b"\r\n", pos):
                pos += 2  # no trailers: the blank line right away
                self._state = _DONE
            elif state == _HEAD or state == _TRAILERS:
                end = data.find(b"\r\n\r\n", max(pos, self._scan - 3))
                if end < 0:
                    self._keep(data, pos, "response head" if state == _HEAD else "trailer section")
                    return False
                if end - pos > self.max_head:
                    raise HttpProtocolError(f"the response head is larger than {self.max_head} bytes")
                if state == _HEAD:
                    self._head(data[pos:end])
                else:  # trailers are checked, not used
                    for line in data[pos:end].split(b"\r\n"):
                        if _FIELD.fullmatch(line) is None and _FOLD.fullmatch(line) is None:
                            raise HttpProtocolError(f"invalid trailer line: {line[:80]!r}")
                    self._state = _DONE
                pos = end + 4
                self._scan = 0
            elif state == _CHUNK_SIZE:
                end = data.find(b"\r\n", max(pos, self._scan - 1))
                if end < 0:
                    self._keep(data, pos, "chunk size line")
                    return False
                m = _CHUNK.fullmatch(data, pos, end)
                if m is None:
                    raise HttpProtocolError(f"invalid chunk size line: {data[pos:end][:40]!r}")
                self._left = int(m[1], 16)
                self._state = _CHUNK_DATA if self._left else _TRAILERS
                pos = end + 2
                self._scan = 0
            elif state == _CHUNK_END:
                if end_of_data - pos < 2:
                    if data[pos:end_of_data] not in (b"", b"\r"):
                        raise HttpProtocolError("missing CRLF after a chunk's data")
                    self._buf = data[pos:]
                    return False
                if data[pos : pos + 2] != b"\r\n":
                    raise HttpProtocolError("missing CRLF after a chunk's data")
                pos += 2
                self._state = _CHUNK_SIZE
            elif state == _UNTIL_CLOSE:
                if pos < end_of_data:
                    self._add(data[pos:] if pos else data)
                return False
            else:  # _DONE
                if pos < end_of_data:
                    self.keep_alive = False  # bytes nobody asked for: never reuse this connection
                self._finish()
                return True

    def eof(self) -> bool:
        """The peer closed the connection: True if that completed the response (a body read
        until close); raises :class:`HttpProtocolError` if the response was cut short."""
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
            self._finish()
            return True
        if self._state == _DONE:
            return True
        raise HttpProtocolError("the connection closed before the response ended")

    # -- internals -----------------------------------------------------------------------

    def _keep(self, data: bytes, pos: int, what: str) -> None:
        rest = data[pos:] if pos else data
        if len(rest) > self.max_head:
            raise HttpProtocolError(f"the {what} is larger than {self.max_head} bytes")
        self._buf = rest
        self._scan = len(rest)

    def _add(self, part: bytes) -> None:
        self.size += len(part)
        if self.max_body and self.size > self.max_body:
            raise BodyTooLarge(f"response larger than {self.max_body} bytes")
        self._chunks.append(part)

    def _finish(self) -> None:
        chunks = self._chunks
        self.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []

    def _head(self, head: bytes) -> None:
        known = _HEADS.get(head)
        if known is not None:
            self._final(*known)
            return
        first = head.find(b"\r\n")
        end = first if first >= 0 else len(head)
        m = _STATUS.fullmatch(head, 0, end)
        if m is None:
            raise HttpProtocolError(f"not an HTTP/1.x status line: {head[: min(end, 80)]!r}")
        status = int(m[2])
        headers: list[tuple[str, str]] = []
        length: int | None = None
        chunked = False
        close = m[1] == b"0"  # HTTP/1.0: no keep-alive (RFC 9112 9.3)
        fields = head[first + 2 :] + b"\r\n" if first >= 0 else b""
        if _FIELDS.fullmatch(fields):  # the usual head: valid, nothing folded
            for field in fields.split(b"\r\n")[:-1]:
                raw_name, _, raw_value = field.partition(b":")
                headers.append((raw_name.decode("ascii").lower(), raw_value.strip(b" \t").decode("latin-1")))
            lines: list[bytes] = []
        else:  # find the bad line, or unfold
            lines = head.split(b"\r\n")
        for i in range(1, len(lines)):
            line = lines[i]
            if line[:1] in (b" ", b"\t"):  # obs-fold: part of the previous line's value
                if not headers:
                    raise HttpProtocolError("a continuation line right after the status line")
                g = _FOLD.fullmatch(line)
                if g is None:
                    raise HttpProtocolError(f"invalid header line: {line[:80]!r}")
                name, value = headers[-1]
                fold = (g[1] or b"").decode("latin-1")
                headers[-1] = (name, f"{value} {fold}" if value and fold else value or fold)
                continue
            f = _FIELD.fullmatch(line)
            if f is None:
                raise HttpProtocolError(f"invalid header line: {line[:80]!r}")
            headers.append((f[1].decode("ascii").lower(), (f[2] or b"").decode("latin-1")))
        for name, value in headers:
            if name == "content-length":
                for part in value.split(","):
                    part = part.strip()
                    if not _DIGITS.fullmatch(part.encode("latin-1")):
                        raise HttpProtocolError(f"invalid Content-Length: {value[:40]!r}")
                    if length is not None and int(part) != length:
                        raise HttpProtocolError("conflicting Content-Length headers")
                    length = int(part)
            elif name == "transfer-encoding":
                if chunked:
                    raise HttpProtocolError("more than one Transfer-Encoding header")
                if value.strip().lower() != "chunked":
                    raise HttpProtocolError(f"unsupported Transfer-Encoding {value[:40]!r} (only chunked)")
                chunked = True
            elif name == "connection":
                if "close" in (t.strip().lower() for t in value.split(",")):
                    close = True
        if status < 200:
            if status == 101:
                raise HttpProtocolError("unexpected 101 Switching Protocols")
            return  # interim (100 Continue, 103 Early Hints): the final response follows
        parsed = (status, (m[3] or b"").decode("latin-1"), tuple(headers), close, chunked, length)
        if not any(name == "set-cookie" for name, _ in headers):  # (a cookie is one client's)
            if len(_HEADS) >= _HEADS_KEPT:
                _HEADS.clear()
            _HEADS[head] = parsed
        self._final(*parsed)

    def _final(
        self,
        status: int,
        reason: str,
        headers: tuple[tuple[str, str], ...],
        close: bool,
        chunked: bool,
        length: int | None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.keep_alive = not close
        if status == 204 or status == 304:
            self._state = _DONE
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._left = length
            self._state = _LENGTH if length else _DONE
        else:  # no framing: the body is whatever comes until the server closes
            self._state = _UNTIL_CLOSE
            self.keep_alive = False
