"""Argument checks shared by the clients, the configuration objects and the integrations.

Misuse raises :class:`~realtime_sync.ConfigurationError` at construction, with a message that
says what to do, instead of failing later on the transport thread (a retry loop on "scheme http
is invalid", ``'str' object cannot be compared``...).  Values that come from settings files and
environment variables arrive as strings: numbers are read from numeric strings (``"5"``,
``" 2.5 "``), never guessed from anything else.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import os
import re
import sys
import urllib.parse
import warnings
from typing import Any, Collection, Iterable, Mapping

import attrs

from ._redact import redact, redact_url
from .exceptions import ConfigurationError

__all__ = [
    "check_event_name",
    "closest_event",
    "closest_pattern",
    "flag",
    "header_map",
    "number",
    "number_converter",
    "secret_text",
    "websocket_url",
]

#: Control characters (C0 and DEL): never inside a token; CR, LF and NUL would split the HTTP
#: request they are written into (header injection), the others make the server refuse it.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: The same for a header value, where a tab is allowed (RFC 9110 5.5: field-vchar, SP, HTAB).
_CONTROL_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: A header name is an RFC 9110 token.
_HEADER_NAME = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")


def seconds(timeout: Any) -> float | None:
    """A ``timeout=`` argument: seconds (numeric strings too) or None; else ConfigurationError.

    >>> seconds("2.5"), seconds(None)
    (2.5, None)
    """
    return number(timeout, "timeout", optional=True, unit="seconds")  # type: ignore[no-any-return]


def number(
    value: Any,
    name: str,
    *,
    integer: bool = False,
    minimum: float | None = None,
    positive: bool = False,
    optional: bool = False,
    unit: str = "",
) -> Any:
    """``value`` as an int (``integer``) or float, accepting numeric strings; else a
    ConfigurationError naming ``name``.

    >>> number("5", "connect_timeout")
    5.0
    >>> number(" 3 ", "max_queue", integer=True)
    3
    >>> number("abc", "connect_timeout", unit="seconds")
    Traceback (most recent call last):
    ...
    realtime_sync.exceptions.ConfigurationError: connect_timeout must be a number of seconds, got 'abc'
    """
    what = ("a whole number" if integer else "a number") + (f" of {unit}" if unit else "")
    if value is None:
        if optional:
            return None
        raise ConfigurationError(f"{name} must be {what}, got None")
    original = value
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            try:  # "5.0" for an integer setting is fine; "5.5" is not
                as_float = float(text)
            except ValueError:
                as_float = math.nan
            if not (integer and as_float.is_integer()):
                raise ConfigurationError(f"{name} must be {what}, got {redact(repr(original))}") from None
            value = int(as_float)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be {what}, got {type(value).__name__} {redact(repr(original))}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {original!r}")
    if integer:
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigurationError(f"{name} must be {what}, got {original!r}")
            value = int(value)
    else:
        value = float(value)
    if positive and value <= 0:
        raise ConfigurationError(f"{name} must be > 0, got {original!r}")
    if minimum is not None and value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum:g}, got {original!r}")
    return value


def secret_text(value: str, name: str, *, strip: bool = True, error: type[Exception] = ConfigurationError) -> str:
    """A token (bearer, pubsub token...) as it will be sent: surrounding whitespace stripped with
    ``strip`` (a token read from a file or a Kubernetes secret usually ends with a newline, and no
    token holds whitespace at its ends); a control character left inside (CR, LF, NUL, a tab...)
    raises ``error`` naming ``name``, never showing the value (it is a secret).

    >>> secret_text("abc123\\n", "token")
    'abc123'
    >>> secret_text("abc\\r\\nX-Injected: yes", "token")
    Traceback (most recent call last):
    ...
    realtime_sync.exceptions.ConfigurationError: token contains a line break or another control character inside it (the value is not shown: it is a secret); sent in an HTTP header it would break the request: check where the value is read from
    """
    text = value.strip() if strip else value
    if _CONTROL.search(text):
        raise error(
            f"{name} contains a line break or another control character inside it (the value is not shown: it "
            "is a secret); sent in an HTTP header it would break the request: check where the value is read from"
        )
    if strip and value and not text:
        raise error(f"{name} is blank (only whitespace): give the token itself, or None for none")
    return text


def header_map(value: Any, option: str = "headers") -> dict[str, str]:
    """``value`` as HTTP headers to send: a mapping of ``str`` names (RFC 9110 tokens) to ``str``
    values; each value's surrounding whitespace is stripped (RFC 9110 5.5: it is no part of the
    value; a value read from a file ends with a newline), and a control character left inside it
    (CR, LF, NUL...: header injection) raises a ConfigurationError naming the header, never
    showing the value (it may be a secret).

    >>> header_map({"X-Trace": " 1\\n"})
    {'X-Trace': '1'}
    >>> header_map(["Authorization: Bearer x"])
    Traceback (most recent call last):
    ...
    realtime_sync.exceptions.ConfigurationError: headers must be a mapping of header names to values, e.g. headers={'X-Trace': '1'}; got a list (for 'Name: value' lines, write {'Name': 'value'})
    """
    if not isinstance(value, Mapping):
        hint = ""
        if isinstance(value, (list, tuple, str)):
            hint = " (for 'Name: value' lines, write {'Name': 'value'})"
        raise ConfigurationError(
            f"{option} must be a mapping of header names to values, e.g. {option}={{'X-Trace': '1'}}; "
            f"got a {type(value).__name__}{hint}"
        )
    out: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str):
            raise ConfigurationError(f"{option}: a header name must be a str, got a {type(name).__name__}")
        if not _HEADER_NAME.fullmatch(name):
            bad = _HEADER_NAME.sub("", name)[:1]
            shown = name[: name.index(bad)] if bad else ""  # the part before it: a value may follow
            what = "is empty" if not name else f"has {bad!r} after {shown!r}" if shown else f"starts with {bad!r}"
            raise ConfigurationError(
                f"{option}: a header name is letters, digits and -_.!#$%&'*+^`|~; one {what} "
                f"(the name alone is the key, the value goes after it: {option}={{'X-Trace': '1'}})"
            )
        if not isinstance(text, str):
            raise ConfigurationError(
                f"{option}[{name!r}] must be a str, got a {type(text).__name__}"
                + (f" (write str({text!r}))" if isinstance(text, (int, float)) and not isinstance(text, bool) else "")
            )
        text = text.strip(" \t\r\n")
        if _CONTROL_IN_VALUE.search(text):
            raise ConfigurationError(
                f"{option}[{name!r}]: the value contains a line break or another control character inside it "
                "(not shown: it may be a secret); it would break the HTTP request (header injection): "
                "check where the value is read from"
            )
        out[name] = text
    return out


_TRUE = frozenset({"true", "t", "1", "on"})
_FALSE = frozenset({"false", "f", "0", "off"})


def flag(value: Any, name: str) -> bool | None:
    """``value`` as a boolean: ``True``/``False``, and the strings settings files and environment
    variables give (``"true"``, ``"false"``, ``"1"``, ``"0"``, ``"on"``, ``"off"``, ``"t"``,
    ``"f"``, any case: the spellings Rails casts, which the models read through this too), as numbers are read
    from numeric strings.  None for anything else: the caller says what it takes.

    >>> flag("False", "verify"), flag(True, "verify"), flag("yes", "verify") is None
    (False, True, True)
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    return None


def number_converter(*, integer: bool = False, optional: bool = False, unit: str = "") -> attrs.Converter[Any, Any]:
    """An attrs field converter applying :func:`number` with the field's name in the message."""

    def convert(value: Any, _self: Any, field: attrs.Attribute[Any]) -> Any:
        return number(value, field.name, integer=integer, optional=optional, unit=unit)

    return attrs.Converter(convert, takes_self=True, takes_field=True)  # type: ignore[call-overload, no-any-return]


def websocket_url(
    url: Any,
    client: str,
    *,
    schemes: Collection[str] = ("ws", "wss"),
    http_to_ws: bool = False,
    example: str = "wss://host/path",
) -> str:
    """Check a client URL's scheme and host; ``http_to_ws`` turns ``http(s)://`` into ``ws(s)://``.

    >>> websocket_url("http://127.0.0.1:3000/cable", "VoxsigClient", http_to_ws=True)
    'ws://127.0.0.1:3000/cable'
    >>> websocket_url("ftp://host/cable", "VoxsigClient", example="wss://app.voxsig.com/cable")
    Traceback (most recent call last):
    ...
    realtime_sync.exceptions.ConfigurationError: VoxsigClient needs a ws:// or wss:// URL such as 'wss://app.voxsig.com/cable', got 'ftp://host/cable'
    >>> websocket_url("eyJhbGciOi.SECRET.sig", "JifelinePartnerClient")
    Traceback (most recent call last):
    ...
    realtime_sync.exceptions.ConfigurationError: JifelinePartnerClient needs an absolute URL such as 'wss://host/path', got a value with no scheme (21 characters, not shown: is it a token? check the argument order)
    """
    if not isinstance(url, str) or "://" not in url:
        if isinstance(url, str) and "/" not in url:
            # No scheme and no path: not shown, it may be a token given where the URL goes.
            got = f"a value with no scheme ({len(url)} characters, not shown: is it a token? check the argument order)"
        else:
            got = repr(redact_url(url))
        raise ConfigurationError(f"{client} needs an absolute URL such as {example!r}, got {got}")
    try:
        parts = urllib.parse.urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigurationError(f"{client}: the URL {redact_url(url)!r} is malformed ({exc})") from None
    scheme = parts.scheme.lower()
    accepted = list(schemes) + (["http", "https"] if http_to_ws else [])
    if scheme not in accepted:
        names = [f"{s}://" for s in accepted]
        wanted = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        hint = ""
        if scheme in ("http", "https") and "wss" in schemes:
            hint = f" (websocket URLs start with {'wss' if scheme == 'https' else 'ws'}://)"
        raise ConfigurationError(f"{client} needs a {wanted} URL such as {example!r}, got {redact_url(url)!r}{hint}")
    if not parts.hostname:
        raise ConfigurationError(f"{client}: the URL {redact_url(url)!r} has no host; e.g. {example!r}")
    if http_to_ws and scheme in ("http", "https"):
        parts = parts._replace(scheme="ws" if scheme == "http" else "wss")
    else:
        parts = parts._replace(scheme=scheme)
    return urllib.parse.urlunsplit(parts)


_LIFECYCLE = ("connected", "disconnected", "reconnecting", "subscribed", "subscription_rejected", "error", "handshake")


def closest_event(name: str, known: Iterable[str]) -> str | None:
    """The known event name nearest to ``name`` (difflib), if any is close.

    >>> closest_event("mesage.created", ["message.created", "message.updated"])
    'message.created'
    """
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def closest_pattern(pattern: str, known: Iterable[str]) -> str | None:
    """The glob pattern of the same shape as ``pattern`` (its wildcards kept where they are) with
    the fewest edits to its literal text that makes it match a known name, if one is close.

    ``mesage.*`` gives ``message.*`` (not one name it could have meant): the typo is fixed, the
    wildcard kept.  Every wildcard of ``pattern`` stays in the suggestion, in its place.

    >>> closest_pattern("mesage.*", ["message.created", "message.updated", "contact.created"])
    'message.*'
    >>> closest_pattern("*.creatd", ["message.created", "contact.created"])
    '*.created'
    >>> closest_pattern("zzz*", ["message.created"]) is None
    True
    """
    if len(pattern) > 64:
        return None  # longer than any event name: a table per name would cost too much for a hint
    tokens = _glob_tokens(pattern)
    literal = _literal(pattern)
    tables = {name: _table(tokens, name) for name in set(known)}
    fewest = min((t[-1][-1] for t in tables.values()), default=_NO_MATCH)
    if fewest >= _NO_MATCH:
        return None  # more one-character wildcards than any name has characters
    best: tuple[int, float, str] | None = None
    for name in sorted(n for n, t in tables.items() if t[-1][-1] == fewest):
        for candidate in _edited(tokens, name, tables[name]):
            if not fnmatch.fnmatchcase(name, candidate):  # pragma: no cover - edits keep it matching
                continue
            key = (fewest, -difflib.SequenceMatcher(None, literal, _literal(candidate)).ratio(), candidate)
            if best is None or key < best:
                best = key
    # The cutoff closest_event uses, on the literal text only: the wildcards both share would
    # make any two patterns look alike ('chat.*' is not 'ha*').
    if best is None or -best[1] < 0.6:
        return None
    return best[2]


def _literal(pattern: str) -> str:
    """The literal characters of ``pattern`` (what a typo can be in)."""
    return "".join(text for kind, text in _glob_tokens(pattern) if not kind)


def _glob_tokens(pattern: str) -> list[tuple[str, str]]:
    """``pattern`` as fnmatch reads it: ``("*", "*")``, ``("?", "?" or "[...]")`` (one character)
    or ``("", c)`` (a literal character; an unclosed ``[`` is one)."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*" or c == "?":
            out.append((c, c))
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(("", c))
            else:
                out.append(("?", pattern[i - 1 : j + 1]))
                i = j + 1
        else:
            out.append(("", c))
    return out


_NO_MATCH = 1 << 20


def _table(tokens: list[tuple[str, str]], name: str) -> list[list[int]]:
    """The fewest edits (insert, delete or replace a literal character) that make the pattern
    ``tokens[:i]`` match ``name[:j]``, for every i and j (``[-1][-1]``: the whole pattern and name).

    A Levenshtein table where ``*`` takes any run of ``name`` for free and a one-character
    wildcard takes one matching character: O(len(tokens) * len(name)), for a warning only.
    """
    big = _NO_MATCH
    n = len(name)
    cost = [list(range(n + 1))]  # row 0: name[:j] inserted before the first token
    for kind, text in tokens:
        prev = cost[-1]
        row = [big] * (n + 1)
        if kind == "*":
            row[0] = prev[0]
            for j in range(1, n + 1):
                row[j] = min(prev[j], row[j - 1])
        elif kind == "?":
            for j in range(1, n + 1):
                fit = prev[j - 1] if fnmatch.fnmatchcase(name[j - 1], text) else big
                row[j] = min(fit, row[j - 1] + 1)
        else:
            row[0] = prev[0] + 1
            for j in range(1, n + 1):
                row[j] = min(prev[j - 1] + (text != name[j - 1]), prev[j] + 1, row[j - 1] + 1)
        cost.append(row)
    return cost


def _edited(tokens: list[tuple[str, str]], name: str, cost: list[list[int]]) -> set[str]:
    """The pattern ``tokens`` edited to match ``name`` in the fewest edits of ``cost``
    (:func:`_table`), wildcards kept: several when edits of the same cost differ (``eror*``
    becomes ``error*`` or ``err*``)."""
    memo: dict[tuple[int, int], set[str]] = {}

    def edited(i: int, j: int) -> set[str]:
        """The patterns tokens[:i] become on the cheapest ways to match name[:j] (a few)."""
        if i == 0:
            return {name[:j]}  # inserted before the first token
        found = memo.get((i, j))
        if found is not None:
            return found
        kind, text = tokens[i - 1]
        here = cost[i][j]
        found = set()
        if kind == "*":
            if j > 0 and here == cost[i][j - 1]:
                found |= edited(i, j - 1)  # the star takes one more character
            if here == cost[i - 1][j]:
                found |= {p + "*" for p in edited(i - 1, j)}
        else:
            if j > 0 and kind == "?" and here == cost[i - 1][j - 1] and fnmatch.fnmatchcase(name[j - 1], text):
                found |= {p + text for p in edited(i - 1, j - 1)}
            if j > 0 and kind == "" and here == cost[i - 1][j - 1] + (text != name[j - 1]):
                found |= {p + name[j - 1] for p in edited(i - 1, j - 1)}  # kept or replaced
            if kind == "" and here == cost[i - 1][j] + 1:
                found |= edited(i - 1, j)  # deleted
            if j > 0 and here == cost[i][j - 1] + 1:
                found |= {p + name[j - 1] for p in edited(i, j - 1)}  # inserted
        found = set(sorted(found)[:8])  # ties are few; bounded whatever the input
        memo[i, j] = found
        return found

    return edited(len(tokens), len(name))


def is_pattern(name: str) -> bool:
    """True when ``name`` is a glob pattern (``*``, ``?`` or ``[``) rather than one event name."""
    return any(c in name for c in "*?[")


def unknown_event_message(name: str, known: Collection[str] | None, client: str) -> str | None:
    """Why ``name`` (an event name or glob pattern) can never match an event of a client that
    sends ``known`` (plus the lifecycle events), or None when it can (or ``known`` is open).

    For a pattern the hint is the corrected pattern, for a name the nearest name:

    >>> unknown_event_message("mesage.*", {"message.created", "message.updated"}, "VoxsigClient")
    "VoxsigClient sends no event matching 'mesage.*'; did you mean 'message.*'?"
    >>> unknown_event_message("mesage.created", {"message.created"}, "VoxsigClient")
    "VoxsigClient sends no event named 'mesage.created'; did you mean 'message.created'?"
    """
    if known is None or not isinstance(name, str):
        return None
    names = {*known, *_LIFECYCLE}
    if is_pattern(name):
        if any(fnmatch.fnmatchcase(n, name) for n in names):
            return None
        nearest = closest_pattern(name, names)
        what = "matching"
    elif name in names:
        return None
    else:
        nearest = closest_event(name, names)
        what = "named"
    hint = f"; did you mean {nearest!r}?" if nearest else f"; it sends {sorted(known)}"
    return f"{client} sends no event {what} {name!r}{hint}"


#: unknown_event_message() by (name, known, client): the nearest-name search takes ~0.1 ms for a
#: name and ~2 ms for a pattern, and the same name comes again and again when handlers are
#: registered per entity (``on("custom.*", h, entity_id=i)`` for 10,000 ids took 20 s).
_MESSAGES: dict[tuple[str, Collection[str] | None, str], str | None] = {}
_MESSAGES_MAX = 4096


def check_event_name(name: str, known: Collection[str] | None, client: str) -> None:
    """Warn (``UserWarning``, pointing at the caller's line) when ``name`` matches no event the
    client sends, naming the nearest one."""
    key = (name, known, client)
    try:
        message = _MESSAGES[key]
    except KeyError:
        message = unknown_event_message(name, known, client)
        if len(_MESSAGES) < _MESSAGES_MAX:
            _MESSAGES[key] = message
    except TypeError:  # ``known`` is not hashable (a set): not cached
        message = unknown_event_message(name, known, client)
    if message is not None:
        warnings.warn(message, UserWarning, stacklevel=_user_stacklevel())


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside this package (a decorator, a subclass's
    ``on()`` and the mixins add frames of their own)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)).startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
