"""The websocket frame codec (RFC 6455), client side, with no I/O.

Theory of operation
-------------------
:class:`ClientCodec` is a state machine fed the bytes the server sent
(:meth:`ClientCodec.receive_data`); it returns the complete text messages (as ``str``) and the
few other things a caller must hear about (:class:`CloseReceived`, :class:`BinaryMessage`,
:class:`MessageTooBig`), and it queues the bytes it must answer with (pongs, the close reply)
for :meth:`ClientCodec.data_to_send`.  Outgoing frames are built by :meth:`ClientCodec.text`,
:meth:`ClientCodec.ping` and :meth:`ClientCodec.close`.  Nothing here reads a clock or a socket,
so the same code runs whether one byte or a megabyte arrives, and tests can drive it directly.

States: ``OPEN`` -> ``CLOSED`` (a valid close frame arrived and was answered, or we sent one)
or ``OPEN`` -> ``FAILED`` (the server broke a MUST rule; :attr:`ClientCodec.failure` says which,
with the close code of RFC 6455 7.4.1, and the close frame carrying it is queued).  Once not
``OPEN`` the codec discards whatever else arrives (RFC 6455 1.4: "after receiving a control
frame indicating the connection should be closed, a peer discards any further data").

Every header rule lives in one function, :func:`check_header`; the close codes are a table
(:data:`CLOSE_CODES`).  The hot path (an unfragmented text frame, the whole of our protocols'
traffic) is a shortcut for the one header that needs no check (``0x81``, unmasked): it costs one
slice and one C-level ``bytes.decode`` per message.

Resource limits (a hostile server must not make us buffer or loop without bound):

* ``max_frame_size`` bounds every frame and the total of a fragmented message.  A data message
  over it is *skipped without being buffered* (its bytes are discarded as they stream past) and
  reported as :class:`MessageTooBig`; the connection carries on.  Control frames cannot exceed
  125 bytes (RFC 6455 5.5); a longer one fails the connection from its first two bytes.
* ``max_fragments`` bounds the frames of one message (empty continuations included): more fail
  the connection with 1009, as python-websockets does.
* Binary messages are never buffered either: none of our protocols uses them, so they are
  skipped and reported as :class:`BinaryMessage` (the caller turns it into an ``error`` event).
* Pings are answered with a pong carrying the same payload; several pings received before
  :meth:`~ClientCodec.data_to_send` is called get one pong, for the most recent (RFC 6455 5.5.3
  allows it), so a ping flood cannot make us write more than we read.

Every byte is looked at a bounded number of times, so any input costs linear work.
"""

from __future__ import annotations

import codecs
import os
import struct
from typing import Final, Union

import attrs

__all__ = [
    "CLOSE_CODES",
    "BinaryMessage",
    "ClientCodec",
    "CloseReceived",
    "Frame",
    "MessageTooBig",
    "Received",
    "Violation",
    "check_header",
    "valid_close_code",
]

# Opcodes (RFC 6455 5.2); 0x3-0x7 and 0xB-0xF are reserved.
OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

#: Close codes (RFC 6455 7.4.1, and the IANA registry of 11.7 for 1012-1014) mapped to their
#: meaning and whether a peer may put them in a close frame.  1004 is reserved; 1005, 1006 and
#: 1015 are for reporting only and "MUST NOT be set as a status code in a Close control frame".
#: 0-999 are unused, 1016-2999 are reserved for future revisions (7.4.2): all invalid on the wire.
#: 3000-4999 (libraries, frameworks, applications) are valid: see :func:`valid_close_code`.
CLOSE_CODES: Final[dict[int, tuple[str, bool]]] = {
    1000: ("normal closure", True),
    1001: ("going away", True),
    1002: ("protocol error", True),
    1003: ("unsupported data", True),
    1004: ("reserved", False),
    1005: ("no status received", False),
    1006: ("abnormal closure", False),
    1007: ("invalid frame payload data", True),
    1008: ("policy violation", True),
    1009: ("message too big", True),
    1010: ("mandatory extension", True),
    1011: ("internal error", True),
    1012: ("service restart", True),
    1013: ("try again later", True),
    1014: ("bad gateway", True),
    1015: ("TLS handshake failure", False),
}
_WIRE_CODES: Final = frozenset(code for code, (_, ok) in CLOSE_CODES.items() if ok)

PROTOCOL_ERROR: Final = 1002
INVALID_DATA: Final = 1007
MESSAGE_TOO_BIG: Final = 1009

#: python-websockets' default bound on the frames of one message, for the same reason.
DEFAULT_MAX_FRAGMENTS: Final = 4096

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")
_U16: Final = struct.Struct("!H")
_U64: Final = struct.Struct("!Q")


def valid_close_code(code: int) -> bool:
    """May ``code`` appear in a close frame?  (RFC 6455 7.4.1 / 7.4.2)

    >>> [valid_close_code(c) for c in (1000, 1005, 1015, 2999, 3000, 4999, 5000)]
    [True, False, False, False, True, True, False]
    """
    return code in _WIRE_CODES or 3000 <= code <= 4999


# -- what the codec reports ---------------------------------------------------------------------


@attrs.frozen(slots=True)
class Violation:
    """The server broke a MUST rule: the connection fails with ``code`` (RFC 6455 7.1.7)."""

    code: int
    reason: str


@attrs.frozen(slots=True)
class CloseReceived:
    """The server sent a valid close frame (already answered).  ``code`` is None when it
    carried no status (reported as 1005, RFC 6455 7.1.5)."""

    code: int | None
    reason: str


@attrs.frozen(slots=True)
class BinaryMessage:
    """A complete binary message was skipped: none of our protocols sends any."""

    size: int


@attrs.frozen(slots=True)
class MessageTooBig:
    """A data message over ``max_frame_size`` is being skipped without being buffered."""

    size: int  #: bytes known so far (the frame's declared length, or the fragments' total)
    limit: int


Event = Union[CloseReceived, BinaryMessage, MessageTooBig]
#: What :meth:`ClientCodec.receive_data` returns: text messages and events, in wire order.
Received = list[Union[str, Event]]


# -- the rules ----------------------------------------------------------------------------------


def check_header(b0: int, b1: int, continuing: bool) -> Violation | None:
    """Every RFC 6455 rule that the first two bytes of a frame received by a client can break.

    ``continuing``: a fragmented data message is unfinished.  No extension is ever negotiated,
    so every reserved bit must be 0.  Called before the payload is buffered: a control frame
    that claims more than 125 bytes fails at once.

    >>> check_header(0x81, 0x05, False) is None
    True
    >>> check_header(0x89, 0x7E, False).reason
    'control frame longer than 125 bytes (RFC 6455 5.5)'
    """
    if b0 & 0x70:
        bits = "/".join(f"RSV{i}" for i, bit in ((1, 0x40), (2, 0x20), (3, 0x10)) if b0 & bit)
        return Violation(PROTOCOL_ERROR, f"{bits} set but no extension was negotiated (RFC 6455 5.2)")
    opcode = b0 & 0x0F
    if opcode >= 0x8:
        if opcode > OP_PONG:
            return Violation(PROTOCOL_ERROR, f"reserved control opcode {opcode:#x} (RFC 6455 5.2)")
        if not b0 & 0x80:
            return Violation(PROTOCOL_ERROR, "fragmented control frame (RFC 6455 5.5)")
        if b1 & 0x7F > 125:
            return Violation(PROTOCOL_ERROR, "control frame longer than 125 bytes (RFC 6455 5.5)")
    elif opcode == OP_CONT:
        if not continuing:
            return Violation(PROTOCOL_ERROR, "continuation frame with no message to continue (RFC 6455 5.4)")
    elif opcode <= OP_BINARY:
        if continuing:
            return Violation(PROTOCOL_ERROR, "new data frame inside an unfinished fragmented message (RFC 6455 5.4)")
    else:
        return Violation(PROTOCOL_ERROR, f"reserved data opcode {opcode:#x} (RFC 6455 5.2)")
    if b1 & 0x80:
        return Violation(PROTOCOL_ERROR, "masked frame from the server (RFC 6455 5.1)")
    return None


def parse_close(payload: bytes) -> CloseReceived | Violation:
    """The payload of a close frame (RFC 6455 5.5.1, 7.1.5, 7.1.6, 7.4).

    >>> parse_close(b"\\x03\\xe8bye")
    CloseReceived(code=1000, reason='bye')
    >>> parse_close(b"\\x03\\xec").code  # 1004 is reserved
    1002
    """
    if not payload:
        return CloseReceived(None, "")
    if len(payload) == 1:
        return Violation(PROTOCOL_ERROR, "close frame with a 1-byte payload (RFC 6455 5.5.1)")
    (code,) = _U16.unpack_from(payload)
    try:  # the reason first, as python-websockets does: both fail the connection anyway
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        return Violation(INVALID_DATA, f"close reason is not valid UTF-8: {exc.reason} (RFC 6455 5.5.1)")
    if not valid_close_code(code):
        return Violation(PROTOCOL_ERROR, f"invalid close code {code} (RFC 6455 7.4)")
    return CloseReceived(code, reason)


# -- outgoing frames ----------------------------------------------------------------------------


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


@attrs.frozen(slots=True)
class Frame:
    """One websocket frame, as a test or a sender sees it (the receiving hot path makes none).

    >>> Frame(OP_TEXT, b"hi").serialize(mask=None)
    b'\\x81\\x02hi'
    >>> len(Frame(OP_PING, b"").serialize())  # a client masks: 2 + 4 bytes of key
    6
    """

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0  #: the three reserved bits as an int 0-7 (RSV1 = 4)

    def serialize(self, mask: bytes | bool | None = True) -> bytes:
        """The frame's bytes; a client masks with a fresh random key (RFC 6455 5.3) unless
        ``mask`` is None/False (what a server sends); ``mask`` may also be the 4-byte key."""
        payload = self.payload
        n = len(payload)
        head = bytearray([(0x80 if self.fin else 0) | (self.rsv & 7) << 4 | self.opcode & 0x0F])
        m = 0x80 if mask else 0
        if n < 126:
            head.append(m | n)
        elif n < 65536:
            head.append(m | 126)
            head += _U16.pack(n)
        else:
            head.append(m | 127)
            head += _U64.pack(n)
        if mask:
            key = mask if isinstance(mask, bytes) else os.urandom(4)
            return bytes(head) + key + _mask(payload, key)
        return bytes(head) + payload


def close_payload(code: int | None, reason: str = "") -> bytes:
    """The payload of a close frame we send; an invalid ``code`` becomes 1000.  The reason is
    cut to fit the 125-byte limit of control frames (RFC 6455 5.5) on a character boundary."""
    if code is None:
        return b""
    if not valid_close_code(code):
        code = 1000
    raw = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    return _U16.pack(code) + raw


# -- the decoder --------------------------------------------------------------------------------

# What the message in progress is (``_msg``).
_NONE, _TEXT, _DISCARD_BINARY, _DISCARD_TEXT = 0, 1, 2, 3
OPEN, CLOSED, FAILED = "OPEN", "CLOSED", "FAILED"


class ClientCodec:
    """Client side of RFC 6455 framing: bytes in, text messages and events out (see the module
    docstring).  Not thread-safe: one owner (the transport thread) calls it.

    >>> codec = ClientCodec()
    >>> codec.receive_data(b"\\x81\\x05hello\\x89\\x01!")
    ['hello']
    >>> codec.data_to_send()[:2]  # the pong (masked, 1 byte of payload)
    b'\\x8a\\x81'
    >>> codec.receive_data(b"\\x81\\x80abcd")  # a masked frame from a server
    []
    >>> codec.state, codec.failure
    ('FAILED', Violation(code=1002, reason='masked frame from the server (RFC 6455 5.1)'))
    """

    def __init__(self, max_frame_size: int = 16 * 1024 * 1024, max_fragments: int = DEFAULT_MAX_FRAGMENTS) -> None:
        self.max_frame_size = max_frame_size if max_frame_size > 0 else 1 << 62
        self.max_fragments = max_fragments
        self.state = OPEN
        self.failure: Violation | None = None
        self.close_received: CloseReceived | None = None
        #: events other than text messages returned so far (lets a caller skip a scan)
        self.events = 0
        self._buf = bytearray()
        self._skip = 0  # payload bytes still to discard (oversized or binary frame)
        self._msg = _NONE
        self._decoder: codecs.IncrementalDecoder | None = None
        self._parts: list[str] = []
        self._msg_size = 0
        self._frags = 0
        self._pong: bytes | None = None  # payload of the most recent unanswered ping
        self._out = bytearray()

    # -- receiving -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> Received:
        """Feed bytes from the server; return the messages and events they complete."""
        if self.state is not OPEN:
            return []
        out: Received = []
        buf = self._buf
        buf += data
        end = len(buf)
        pos = 0
        if self._skip:
            pos = min(self._skip, end)
            self._skip -= pos
        maxf = self.max_frame_size
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            # The hot path: a whole, unmasked, unfragmented text frame (0x81, b1 < 0x80, no
            # message in progress) breaks no header rule; anything else is checked from its
            # first two bytes, before any payload is buffered.
            fast = b0 == 0x81 and b1 < 0x80 and not self._msg
            if not fast:
                violation = check_header(b0, b1, self._msg != _NONE)
                if violation is not None:
                    self._fail(violation.code, violation.reason)
                    break
            length = b1 & 0x7F
            hdr = 2
            if length >= 126:
                if length == 126:
                    if end - pos < 4:
                        break
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                    hdr = 4
                else:
                    if end - pos < 10:
                        break
                    (length,) = _U64.unpack_from(buf, pos + 2)
                    hdr = 10
                    if length >> 63:
                        self._fail(PROTOCOL_ERROR, "frame length with its most significant bit set (RFC 6455 5.2)")
                        break
            if fast and length <= maxf:
                start = pos + hdr
                stop = start + length
                if stop > end:
                    break
                try:
                    out.append(buf[start:stop].decode("utf-8"))
                except UnicodeDecodeError as exc:
                    self._fail(INVALID_DATA, f"text message is not valid UTF-8: {exc.reason} at byte {exc.start}")
                    break
                pos = stop
                continue
            opcode = b0 & 0x0F
            start = pos + hdr
            stop = start + length
            if opcode < 0x8:
                if opcode == OP_TEXT:
                    skip = length > maxf
                elif opcode == OP_BINARY:
                    skip = True
                else:
                    skip = self._msg != _TEXT or self._msg_size + length > maxf
                if skip:
                    # Never buffered: discard what is here now, the rest as it arrives.
                    self._data_frame(opcode, length, b0 & 0x80, out)
                    if self.state is not OPEN:
                        break
                    take = min(end - start, length)
                    self._skip = length - take
                    pos = start + take
                    continue
                if stop > end:
                    break
                pos = stop
                self._data_frame(opcode, length, b0 & 0x80, out)
                if self.state is not OPEN or not self._text_fragment(buf[start:stop], b0 & 0x80, out):
                    break
                continue
            if stop > end:
                break
            pos = stop
            if opcode == OP_PING:
                self._pong = bytes(buf[start:stop])
            elif opcode == OP_CLOSE:
                self._close_frame(bytes(buf[start:stop]), out)
                break
            # OP_PONG: unsolicited pongs need no answer (RFC 6455 5.5.3); any byte is liveness.
        if self.state is OPEN:
            del buf[:pos]
        else:
            buf.clear()
        return out

    def _data_frame(self, opcode: int, length: int, fin: int, out: Received) -> None:
        """Account for one data frame (its header is valid) and move the message state on."""
        if opcode != OP_CONT:  # the first frame of a message
            self._frags = 1
            self._msg_size = length
            if opcode == OP_BINARY:
                msg = _DISCARD_BINARY
            elif length > self.max_frame_size:
                msg = _DISCARD_TEXT
                self.events += 1
                out.append(MessageTooBig(length, self.max_frame_size))
            else:
                msg = _TEXT
                self._decoder = _Utf8Decoder()
                self._parts = []
        else:
            msg = self._msg
            self._frags += 1
            self._msg_size += length
            if self._frags > self.max_fragments:
                self._fail(MESSAGE_TOO_BIG, f"message of more than {self.max_fragments} fragments")
                return
            if msg == _TEXT and self._msg_size > self.max_frame_size:
                msg = _DISCARD_TEXT
                self._parts = []
                self._decoder = None
                self.events += 1
                out.append(MessageTooBig(self._msg_size, self.max_frame_size))
        if fin:
            if msg == _DISCARD_BINARY:
                self.events += 1
                out.append(BinaryMessage(self._msg_size))
            self._msg = _NONE
        else:
            self._msg = msg

    def _text_fragment(self, payload: bytearray, fin: int, out: Received) -> bool:
        """One frame of a text message that fits; False if it failed the connection."""
        decoder = self._decoder
        assert decoder is not None
        try:
            # C-level and incremental: invalid UTF-8 fails as soon as it is certain (RFC 6455
            # 8.1 allows failing fast); a character split across fragments is fine.
            self._parts.append(decoder.decode(payload, bool(fin)))
        except UnicodeDecodeError as exc:
            self._fail(INVALID_DATA, f"text message is not valid UTF-8: {exc.reason}")
            return False
        if fin:
            out.append("".join(self._parts))
            self._parts = []
            self._decoder = None
        return True

    def _close_frame(self, payload: bytes, out: Received) -> None:
        result = parse_close(payload)
        if isinstance(result, Violation):
            self._fail(result.code, result.reason)
            return
        # 5.5.1: a close frame must be answered with a close frame, typically echoing the code.
        self._out += Frame(OP_CLOSE, close_payload(result.code)).serialize()
        self._pong = None
        self.state = CLOSED
        self.close_received = result
        self.events += 1
        out.append(result)

    def _fail(self, code: int, reason: str) -> None:
        """_Fail the WebSocket Connection_ (RFC 6455 7.1.7): queue a close frame with the code."""
        self.state = FAILED
        self.failure = Violation(code, reason)
        self._pong = None
        self._out += Frame(OP_CLOSE, close_payload(code)).serialize()

    # -- sending ---------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes the codec owes the server (the pong to the latest ping, a close reply)."""
        pong, self._pong = self._pong, None
        if pong is None and not self._out:
            return b""
        data = Frame(OP_PONG, pong).serialize() if pong is not None else b""
        if self._out:
            data += bytes(self._out)
            self._out.clear()
        return data

    def text(self, text: str) -> bytes:
        """The bytes of a text message to send (masked, as a client must: RFC 6455 5.3)."""
        return Frame(OP_TEXT, text.encode("utf-8")).serialize()

    def ping(self, payload: bytes = b"") -> bytes:
        """The bytes of a ping."""
        return Frame(OP_PING, payload[:125]).serialize()

    def close(self, code: int = 1000, reason: str = "") -> bytes:
        """The bytes of the close frame that starts the closing handshake (RFC 6455 7.1.2);
        afterwards the codec discards what arrives.  Empty if the codec is closed already."""
        if self.state is not OPEN:
            return b""
        self.state = CLOSED
        return Frame(OP_CLOSE, close_payload(code, reason)).serialize()
