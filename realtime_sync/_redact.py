"""Keep secrets out of logs, reprs and exception messages.

Every string that may hold a URL, a header or a frame passes through :func:`redact` before it
is logged, put in a repr or in an exception.  Two mechanisms work together:

* shape-based rules that catch well-known secret carriers (``access_token=`` in a query string,
  ``Authorization``/``Cookie`` headers, ``"pubsub_token": "..."`` and ``"token"`` JSON members,
  ``clientId``-independent ``ext`` auth fields);
* a registry of literal secret values (tokens the client was given or fetched), replaced wherever
  they appear, including inside JSON that was escaped once (ActionCable identifiers are JSON in a
  JSON string).
"""

from __future__ import annotations

import re
import threading
from typing import Any

__all__ = ["REDACTED", "redact", "register_secret"]

REDACTED = "***"

_SECRET_KEYS = (
    r"access_token|refresh_token|id_token|pubsub_token|token|client_secret|password|secret|"
    r"api_key|apikey|x-api-key|authorization|cookie|set-cookie|jsessionid|auth"
)
# "key": "value" or \"key\":\"value\" (escaped once, as in an ActionCable identifier).
_JSON_MEMBER = re.compile(
    r'(?P<pre>(?:\\*")(?:' + _SECRET_KEYS + r')(?:\\*")\s*:\s*(?:\\*"))(?P<val>(?:[^"\\]|\\(?!"))*)',
    re.IGNORECASE,
)
# key=value in query strings and form bodies.
_QUERY = re.compile(r"(?P<pre>[?&;\s](?:" + _SECRET_KEYS + r")=)(?P<val>[^&#\s\"']*)", re.IGNORECASE)
# Header lines and header-ish reprs: Authorization: Bearer xyz / 'Cookie': 'a=b'
_HEADER = re.compile(
    r"(?P<pre>\b(?:authorization|proxy-authorization|cookie|set-cookie|x-api-key)['\"]?\s*[:=]\s*['\"]?)"
    r"(?P<val>[^'\"\r\n,}]*)",
    re.IGNORECASE,
)
# user:password@ in URLs
_USERINFO = re.compile(r"(?P<pre>[a-z][a-z0-9+.-]*://[^/@\s:]*:)(?P<val>[^@/\s]+)(?=@)", re.IGNORECASE)

#: How many literal secrets are remembered.  A token callable may return a new token on every
#: connect (days of reconnects): the registry keeps the most recently registered ones, and
#: clients register their secrets again before every connect, so live secrets stay in it.
MAX_SECRETS = 256

_lock = threading.Lock()
_secrets: dict[str, None] = {}  # insertion-ordered: oldest first
_by_length: tuple[str, ...] = ()  # longest first (a secret containing another is replaced whole)


def register_secret(value: Any) -> None:
    """Remember a literal secret so that :func:`redact` removes it wherever it appears.

    Values shorter than 8 characters are ignored: they would redact ordinary words (a password
    such as "secret") everywhere.  Shape-based rules still hide them in headers, URLs and JSON.
    The last :data:`MAX_SECRETS` distinct values are kept; registering a value again renews it.

    >>> register_secret("s3cr3t-token")
    >>> redact("connecting with s3cr3t-token")
    'connecting with ***'
    """
    global _by_length
    if not isinstance(value, str) or len(value) < 8:
        return
    with _lock:
        if value in _secrets:
            if next(reversed(_secrets)) == value:
                return  # the usual case (same token every connect): nothing changes
            del _secrets[value]
            _secrets[value] = None
            return
        _secrets[value] = None
        while len(_secrets) > MAX_SECRETS:
            del _secrets[next(iter(_secrets))]
        _by_length = tuple(sorted(_secrets, key=len, reverse=True))


def _sub(match: re.Match[str]) -> str:
    return match.group("pre") + REDACTED


def redact(text: Any) -> str:
    """Return ``str(text)`` with every secret replaced by ``***``.

    >>> redact("wss://h/ws?access_token=abc.def&x=1")
    'wss://h/ws?access_token=***&x=1'
    >>> redact('{"channel":"RoomChannel","pubsub_token":"tok123"}')
    '{"channel":"RoomChannel","pubsub_token":"***"}'
    >>> redact("Authorization: Bearer eyJhbGciOi")
    'Authorization: ***'
    """
    s = text if isinstance(text, str) else str(text)
    for value in _by_length:  # a tuple swapped whole by register_secret(): no lock needed
        if value in s:
            s = s.replace(value, REDACTED)
    s = _JSON_MEMBER.sub(_sub, s)
    s = _QUERY.sub(_sub, s)
    s = _HEADER.sub(_sub, s)
    s = _USERINFO.sub(_sub, s)
    return s


def redact_headers(headers: Any) -> dict[str, str]:
    """A copy of a header mapping safe to log."""
    out: dict[str, str] = {}
    for k, v in dict(headers or {}).items():
        if k.lower() in {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}:
            out[k] = REDACTED
        else:
            out[k] = redact(v)
    return out
