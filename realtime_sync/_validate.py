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
import sys
import urllib.parse
import warnings
from typing import Any, Collection, Iterable

import attrs

from ._redact import redact, redact_url
from .exceptions import ConfigurationError

__all__ = ["check_event_name", "closest_event", "number", "number_converter", "websocket_url"]


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


def unknown_event_message(name: str, known: Collection[str] | None, client: str) -> str | None:
    """Why ``name`` (an event name or glob pattern) can never match an event of a client that
    sends ``known`` (plus the lifecycle events), or None when it can (or ``known`` is open)."""
    if known is None or not isinstance(name, str):
        return None
    names = {*known, *_LIFECYCLE}
    if any(c in name for c in "*?["):
        if any(fnmatch.fnmatchcase(n, name) for n in names):
            return None
    elif name in names:
        return None
    nearest = closest_event(name, names)
    hint = f"; did you mean {nearest!r}?" if nearest else f"; it sends {sorted(known)}"
    return f"{client} sends no event named {name!r}{hint}"


def check_event_name(name: str, known: Collection[str] | None, client: str) -> None:
    """Warn (``UserWarning``, pointing at the caller's line) when ``name`` matches no event the
    client sends, naming the nearest one."""
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
