"""JSON codec used on the hot path.

``orjson`` is used when installed (``pip install 'realtime_sync[fast]'``): it decodes 2-4x
faster than the standard library.  Both codecs raise :class:`ValueError` subclasses on bad
input, and both produce compact output, so the choice never changes what goes on the wire.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

__all__ = ["CODEC", "MAX_DEPTH", "decode", "dumps", "loads", "may_nest_deeper"]

#: The deepest nesting :func:`decode` accepts.  Real frames nest a handful of levels; a
#: thousand-level one would raise ``RecursionError`` out of ``json``, ``repr()`` or cattrs.
MAX_DEPTH = 128

loads: Callable[[str | bytes], Any]
dumps: Callable[[Any], str]

try:  # pragma: no cover - depends on the environment
    import orjson as _orjson

    _orjson_dumps = _orjson.dumps

    def dumps(obj: Any) -> str:
        return _orjson_dumps(obj).decode()

    loads = _orjson.loads
    CODEC = "orjson"
except ImportError:  # pragma: no cover - depends on the environment
    _encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    dumps = _encoder.encode
    loads = json.loads
    CODEC = "json"


def _stdlib_loads(text: str | bytes, _scan: Any = json.JSONDecoder().scan_once) -> Any:  # type: ignore[attr-defined]
    """``json.loads`` through the C scanner directly: a frame it reads whole is returned
    without ``json.loads``' Python layers (~0.7 µs of ~10 on a 900-byte Voxsig frame); anything
    else (bytes, leading or trailing whitespace, extra data, no value at all) goes to
    ``json.loads`` itself, so results and errors are exactly its own.  (The scanner holds the
    GIL throughout and clears its key memo after each call: threads may share it.)"""
    if type(text) is str:
        try:
            value, end = _scan(text, 0)
        except StopIteration:  # no value at 0: json.loads says what is wrong
            return json.loads(text)
        if end == len(text):
            return value
    return json.loads(text)


if CODEC == "json":  # pragma: no cover - depends on the environment
    loads = _stdlib_loads


# On *valid* JSON every string is closed, so these are linear (the string pattern is the
# unrolled form: its classes are disjoint, nothing is tried twice).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def may_nest_deeper(text: str, max_depth: int = MAX_DEPTH) -> bool:
    """False when ``text`` cannot nest deeper than ``max_depth`` (it has no more opening
    brackets than that); True when it might, and :func:`decode` must look closer.

    The hot path's guard: one counting pass over the frame (the ``[`` count only when there
    is a ``[`` at all, a ``memchr``; many frames hold objects only).  The ActionCable adapter
    inlines this test (a call per frame): change both together.

    >>> may_nest_deeper('{"a": {"b": [1]}}', 3), may_nest_deeper('{"a": {"b": [1]}}', 2)
    (False, True)
    """
    opening = text.count("{")
    if "[" in text:
        opening += text.count("[")
    return opening > max_depth


def _deeper_than(text: str, max_depth: int) -> bool:
    if not may_nest_deeper(text, max_depth):
        return False  # cannot be that deep: the usual frame stops here
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(max_depth):  # each pass peels the innermost level, in C
        if not brackets:
            return False
        brackets = brackets.replace("[]", "").replace("{}", "")
    return bool(brackets)


def decode(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``loads(text)`` for server input: too deep a nesting is a :class:`ValueError` too.

    Every decoder of server input goes through here, so no frame can raise ``RecursionError``
    out of an adapter (stdlib ``json`` recurses once per level) or reach code that recurses
    over the value afterwards (``repr()``, the model converters).

    >>> decode('{"a": [1, 2]}')
    {'a': [1, 2]}
    >>> try:
    ...     decode("[" * 100_000 + "]" * 100_000)
    ... except ValueError:
    ...     print("refused")
    refused
    """
    try:
        value = loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    if _deeper_than(text if isinstance(text, str) else text.decode("utf-8", "replace"), max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return value
