"""Keep secrets out of logs, reprs, exception messages and lifecycle event payloads.

Every string that may hold a URL, a header or a frame passes through :func:`redact` before it
leaves the library.  The boundary is structural: a :class:`RedactingFilter` sits on every
``realtime_sync`` logger (so every log line, handler tracebacks included, is redacted whatever
the call site did), the lifecycle payloads (``ErrorInfo``, ``DisconnectInfo``...) redact their
text when built, and reprs and exception messages are built through :func:`redact`.

Two mechanisms work together:

* shape-based rules that catch well-known secret carriers (``access_token=`` in a query string,
  ``Authorization``/``Cookie``/``X-Auth-Token`` headers, ``"pubsub_token": "..."`` and
  ``"token"`` JSON members, nested ``"credentials": {...}`` objects, ``user:password@`` in URLs,
  and ``name: value`` in free text for the same names, unless the value reads as prose: see
  :func:`_free_text`);
* registries of literal secret values, replaced wherever they appear, including inside JSON
  that was escaped once (ActionCable identifiers are JSON in a JSON string).

Theory of operation (why it is linear)
--------------------------------------
``re`` holds the GIL while it matches, so a backtracking pattern on server text (a gateway
error, a Bayeux ``error``, a chat message) would stop every thread of the process.  No pattern
here has a repetition that can be retried from many start positions: keywords are found by a
pattern of literal alternatives (constant work per position), and each hit is examined by
forward scans over character classes that cannot contain the next keyword, so the scans of two
hits never overlap.  A value that is redacted is consumed (the search resumes after it).
Literal secrets cost one substring search each, and both registries are bounded, so
``redact()`` is O(len(text)) with a bounded constant; ``benchmarks/redact.py`` measures it on
1 MiB of adversarial input.

The registries: the client's own secrets (tokens, passwords, header values it was given or
fetched) and server-derived ones (cookie values a server set) are kept apart, each bounded and
least-recently-registered first out, so a server sending thousands of cookies can never evict a
client's password from the redactor.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from typing import Any, Iterable

__all__ = [
    "MAX_SECRETS",
    "BOUNDARY_HANDLER",
    "MAX_SERVER_SECRETS",
    "REDACTED",
    "RedactingFilter",
    "get_logger",
    "is_secret_header",
    "is_secret_name",
    "protect_loggers",
    "redact",
    "redact_headers",
    "redact_members",
    "redacted_repr",
    "redirect_target",
    "register_secret",
    "register_server_secret",
]

REDACTED = "***"

#: How many of the client's own literal secrets are remembered.  A token callable may return a
#: new token on every connect (days of reconnects): the registry keeps the most recently
#: registered ones, and clients register their secrets again before every connect.
MAX_SECRETS = 256
#: How many server-derived secrets (cookie values) are remembered, separately.
MAX_SERVER_SECRETS = 128
#: Registered values shorter than this are ignored: they would redact ordinary words.
MIN_SECRET_LENGTH = 8

# Names (lowercase) of members, parameters and headers whose value is a secret.  A name that
# *ends* with one of them counts too (``session_token``, ``X-Auth-Token``).
_KEYWORDS = (
    "proxy-authorization",
    "authorization",
    "authentication",
    "credentials",
    "access_token",
    "refresh_token",
    "id_token",
    "pubsub_token",
    "client_secret",
    "set-cookie",
    "x-api-key",
    "jsessionid",
    "session_id",
    "sessionid",
    "password",
    "passwd",
    "api_key",
    "apikey",
    "api-key",
    "secret",
    "cookie",
    "token",
    "auth",
    "jwt",
)
# Literal alternatives only: constant work per start position, no backtracking.  Matched on
# an ASCII-lowercased copy of the text (IGNORECASE makes ``re`` five times slower here).
_KEYWORD = re.compile("|".join(re.escape(k) for k in _KEYWORDS))
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
_MAX_NAME = 64  # a name is extended left over at most this many characters
# Names whose value may be an object or array (CometD ``ext``): the whole value is hidden.
_OBJECT_KEYS = frozenset({"authentication", "credentials", "auth"})
# Header names (lowercase) always secret, besides X-... names containing an auth-ish word.
_HEADER_NAMES = frozenset(
    # api_access_token: Chatwoot's API header (what a Voxsig REST catch-up sends).
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "api_access_token",
    }
)
_AUTHISH = ("auth", "token", "secret", "key", "cookie", "session", "password", "passwd", "credential")

_WS = " \t"
_JSON_VALUE_END = re.compile(r'"|\\"')  # the closing quote, plain or escaped once
_PY_VALUE_END = re.compile(r"'|\\'")  # the same in a Python repr's single-quoted string
_QUERY_VALUE = re.compile(r"[^&#\s\"']*")
_HEADER_VALUE = re.compile(r"[^'\"\r\n,}]*")
_AUTHORITY = re.compile(r"[^/\s\"'<>]*")


def is_secret_header(name: str) -> bool:
    """True when a header of this name carries a secret (``Authorization``, ``X-Auth-Token``...).

    >>> is_secret_header("X-Auth-Token"), is_secret_header("Accept")
    (True, False)
    """
    n = name.strip().lower()
    if n in _HEADER_NAMES:
        return True
    return any(word in n for word in _AUTHISH)


# -- registries ------------------------------------------------------------------------------

_lock = threading.Lock()
_secrets: dict[str, None] = {}  # the client's own; insertion-ordered: oldest first
_server_secrets: dict[str, None] = {}  # derived from server input (cookies)
_by_length: tuple[str, ...] = ()  # both registries, longest first (a secret containing another is replaced whole)
_longest = 0


def _rebuild() -> None:
    """Recompute the lookup tuple from the registries (call with ``_lock`` held)."""
    global _by_length, _longest
    values = set(_secrets) | set(_server_secrets)
    _by_length = tuple(sorted(values, key=len, reverse=True))
    _longest = len(_by_length[0]) if _by_length else 0


def _register(registry: dict[str, None], bound: int, value: Any) -> None:
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value in registry:
            if next(reversed(registry)) != value:
                del registry[value]
                registry[value] = None  # renewed: now the most recent
            return
        registry[value] = None
        while len(registry) > bound:
            del registry[next(iter(registry))]
        _rebuild()


def register_secret(value: Any) -> None:
    """Remember one of the client's own secrets so that :func:`redact` removes it everywhere.

    Values shorter than 8 characters are ignored: they would redact ordinary words (a password
    such as "secret") everywhere.  Shape-based rules still hide them in headers, URLs and JSON.
    The last :data:`MAX_SECRETS` distinct values are kept; registering a value again renews it.
    Server input never goes here (see :func:`register_server_secret`), so it cannot evict these.

    >>> register_secret("s3cr3t-token")
    >>> redact("connecting with s3cr3t-token")
    'connecting with ***'
    """
    _register(_secrets, MAX_SECRETS, value)


def register_server_secret(value: Any) -> None:
    """Remember a secret the *server* handed out (a cookie value), in a registry of its own.

    Bounded by :data:`MAX_SERVER_SECRETS`; a flood of such values only evicts older ones of
    the same kind, never the client's own secrets.

    >>> register_server_secret("srv-session-42abc")
    >>> redact("Cookie was srv-session-42abc")
    'Cookie was ***'
    """
    _register(_server_secrets, MAX_SERVER_SECRETS, value)


def register_secrets_in(value: Any, _depth: int = 0) -> None:
    """Register every string leaf of a (nested) mapping or sequence as the client's secret."""
    if isinstance(value, str):
        register_secret(value)
    elif _depth < 8 and isinstance(value, dict):
        for v in value.values():
            register_secrets_in(v, _depth + 1)
    elif _depth < 8 and isinstance(value, (list, tuple)):
        for v in value:
            register_secrets_in(v, _depth + 1)


# -- the redactor ----------------------------------------------------------------------------


def _name_start(s: str, i: int) -> int:
    """Where the name ending with the keyword at ``i`` starts (bounded left scan)."""
    p = i
    stop = max(0, i - _MAX_NAME)
    while p > stop and s[p - 1] in _NAME_CHARS:
        p -= 1
    return p


def _skip(s: str, k: int, chars: str, limit: int = 16) -> int:
    end = min(len(s), k + limit)
    while k < end and s[k] in chars:
        k += 1
    return k


def _balanced_end(s: str, k: int) -> int:
    """End of the object/array starting at ``s[k]`` (or of the string: a cut frame hides the rest)."""
    depth = 0
    n = len(s)
    while k < n:
        c = s[k]
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return k + 1
        k += 1
    return n


def _json_member(s: str, start: int, j: int, name: str) -> tuple[int, int] | None:
    """``"name": "value"`` (or escaped once, or an object for credential names), or a Python
    dict's ``'name': 'value'``: the value span."""
    # The name is quoted: a quote (after any backslashes) right before it and right after it.
    p = start
    while p > 0 and start - p < 16 and s[p - 1] == "\\":
        p -= 1
    if p == 0 or s[p - 1] not in "\"'":
        return None
    quote = s[p - 1]
    k = _skip(s, j, "\\")
    if k >= len(s) or s[k] != quote:
        return None
    k = _skip(s, k + 1, _WS)
    if k >= len(s) or s[k] != ":":
        return None
    k = _skip(s, k + 1, _WS)
    if k < len(s) and s[k] in "{[" and name in _OBJECT_KEYS:
        return k, _balanced_end(s, k)
    q = _skip(s, k, "\\")
    if q >= len(s) or s[q] not in "\"'":
        return None
    m = (_JSON_VALUE_END if s[q] == '"' else _PY_VALUE_END).search(s, q + 1)
    end = len(s) if m is None else m.start()
    return q + 1, end


def _query_param(s: str, start: int, j: int) -> tuple[int, int] | None:
    """``?name=value`` / ``&name=value`` / `` name=value`` (or at the start, or at the start of a
    quoted string: ``"password=..."`` inside a JSON frame or a repr): the value span."""
    if start > 0 and s[start - 1] not in "?&;\"'" + _WS + "\r\n":
        return None
    if j >= len(s) or s[j] != "=":
        return None
    m = _QUERY_VALUE.match(s, j + 1)
    assert m is not None
    end = m.end()
    if end > j + 1 and s[end - 1] == ":" and (end == len(s) or s[end] in _WS):
        end -= 1  # "... ?access_token=abc: ConnectionRefusedError": the colon is the message's
    return j + 1, end


def _header(s: str, start: int, j: int, name: str) -> tuple[int, int] | None:
    """``Name: value`` or ``'Name': 'value'`` for a secret header name: the value span."""
    if start > 0 and s[start - 1].isalnum():
        return None
    if not (name in _HEADER_NAMES or (name.startswith("x-") and is_secret_header(name))):
        return None
    k = _skip(s, j, "'\"", 1)
    k = _skip(s, k, _WS)
    if k >= len(s) or s[k] not in ":=" or s.startswith("::", k):
        return None  # (``Authorization::UnauthorizedError`` is a Ruby class, not a header)
    k = _skip(s, k + 1, _WS)
    k = _skip(s, k, "'\"", 1)
    m = _HEADER_VALUE.match(s, k)
    assert m is not None
    return k, m.end()


# Free text: ``name: value`` (a server's ``invalid token: abc123``, a header dump of a name that
# is not a header's, ``password: hunter2``).  The value is one run of characters up to a space, a
# quote or a bracket; sentence punctuation at its end is left out.
_FREE_VALUE = re.compile(r"[^\s'\"`,;()<>\[\]{}]*")
#: Authentication schemes: ``token: Bearer abc`` hides the credential after the scheme too.
_SCHEMES = frozenset({"bearer", "basic", "digest", "negotiate"})
#: What a password is *said to be* in an error message: after a password name only these are
#: kept (a password is often a plain word, so the prose rule below would show it).
_STATUS_WORDS = frozenset(
    "expired invalid incorrect wrong missing required empty none null not no unset changed reset "
    "rejected refused revoked accepted ok set hidden redacted unknown mismatch weak too is was must".split()
)
#: The longest value that can read as a word of prose after a token-like name.
_PROSE_MAX = 16


def _free_text(s: str, start: int, j: int, name: str) -> tuple[int, int] | None:
    """``name: value`` in free text: the value span, unless the value reads as prose.

    The rule (documented in SECURITY.md): after a name ending with a secret word (as for JSON
    members), a colon and optional spaces, the value is hidden unless it reads as a word of a
    sentence: after a ``password``/``passwd`` name, one of a few status words (``expired``,
    ``required``...); after any other secret name (tokens, secrets, keys, cookies, auth,
    credentials), ASCII letters only and at most 16 of them (``token: expired``,
    ``CSRF token: GET ...``, ``refused the credentials: HTTP 401``).  A token has digits,
    symbols or length; a value the client registered is hidden everywhere anyway.
    """
    if start >= 3 and s[start - 3 : start] == "://":
        return None  # scheme://token:pw@host is the userinfo rule's
    n = len(s)
    k = _skip(s, j, "'\"", 1)  # a quoted name with a bare value: {"token": 12345}
    k = _skip(s, k, _WS)
    if k >= n or s[k] != ":" or (k + 1 < n and s[k + 1] == ":"):
        return None  # no colon, or a Ruby/C++ scope (Authorization::UnauthorizedError)
    k = _skip(s, k + 1, _WS)
    if k < n and s[k] in "'\"":
        q = s.find(s[k], k + 1)  # a quoted value: token: "abc def"
        vs, end = k + 1, (n if q < 0 else q)
        value = s[vs:end]
    else:
        m = _FREE_VALUE.match(s, k)
        assert m is not None
        vs, end = k, m.end()
        scheme = s[vs:end].lower() in _SCHEMES and end + 1 < n and s[end] == " "
        if scheme:
            m2 = _FREE_VALUE.match(s, end + 1)
            assert m2 is not None
            scheme = m2.end() > end + 1
            if scheme:
                end = m2.end()  # "Bearer abc": the scheme and its credential, as a header's
        while end > vs and s[end - 1] in ".:!?":
            end -= 1  # "invalid token: abc123." : the full stop is the sentence's
        if scheme:
            return vs, end
        value = s[vs:end]
    if not value:
        return None
    if name.endswith(("password", "passwd")):
        if value.lower() in _STATUS_WORDS:
            return None
    elif len(value) <= _PROSE_MAX and value.isascii() and value.isalpha():
        return None
    return vs, end


def _lower(s: str) -> str:
    """``s`` lowercased, character for character (so positions match)."""
    low = s.lower()
    return low if len(low) == len(s) else s.translate(_ASCII_LOWER)


def _redact_shapes(s: str) -> str:
    low = _lower(s)
    out: list[str] = []
    last = 0  # everything before this is already in ``out``
    pos = 0
    n = len(s)
    while pos < n:
        m = _KEYWORD.search(low, pos)
        if m is None:
            break
        i, j = m.span()
        # The keyword must end the name (``token_type`` is not a token).
        if j < n and s[j] in _NAME_CHARS:
            pos = i + 1
            continue
        start = _name_start(s, i)
        name = low[start:j]
        span = (
            _json_member(s, start, j, name)
            or _query_param(s, start, j)
            or _header(s, start, j, name)
            or _free_text(s, start, j, name)
        )
        if span is None or span[0] == span[1]:
            pos = j
            continue
        vs, ve = span
        out.append(s[last:vs])
        out.append(REDACTED)
        last = pos = ve
    if not out:
        return s
    out.append(s[last:])
    return "".join(out)


def _redact_userinfo(s: str, cut: bool) -> str:
    """``scheme://user:password@host``: the password (with ``cut``, a URL cut before its ``@``
    hides everything after the colon too)."""
    out: list[str] = []
    last = 0
    pos = 0
    while True:
        k = s.find("://", pos)
        if k < 0:
            break
        a = k + 3
        m = _AUTHORITY.match(s, a)
        assert m is not None
        end = m.end()  # the authority runs to the first '/', space or quote: runs never overlap
        at = s.rfind("@", a, end)
        if at < 0 and cut and end == len(s):
            at = end
        colon = s.find(":", a, at) if at > a else -1
        if colon >= 0:
            out.append(s[last : colon + 1])
            out.append(REDACTED)
            last = at
        pos = max(end - 1, a)  # a run stops at the '/' of the next "://", if any
    if not out:
        return s
    out.append(s[last:])
    return "".join(out)


def redact(text: Any) -> str:
    """Return ``str(text)`` with every secret replaced by ``***`` (linear time on any input).

    >>> redact("wss://h/ws?access_token=abc.def&x=1")
    'wss://h/ws?access_token=***&x=1'
    >>> redact('{"channel":"RoomChannel","pubsub_token":"tok123"}')
    '{"channel":"RoomChannel","pubsub_token":"***"}'
    >>> redact("Authorization: Bearer eyJhbGciOi")
    'Authorization: ***'
    >>> redact("https://alice:pa55@example.com/x")
    'https://alice:***@example.com/x'
    >>> redact("cannot connect to ws://h/?access_token=abc: ConnectionRefusedError")
    'cannot connect to ws://h/?access_token=***: ConnectionRefusedError'
    >>> redact("api_access_token: abc123")
    'api_access_token: ***'
    >>> redact("handshake refused: invalid token: eyJhbGciOi.x1.y2")
    'handshake refused: invalid token: ***'
    >>> redact("token: expired; password: hunter2")
    'token: expired; password: ***'
    """
    return _redact(text if isinstance(text, str) else str(text), False)


def _redact(s: str, cut: bool) -> str:
    for value in _by_length:  # a tuple swapped whole by _rebuild(): no lock needed
        if value in s:
            s = s.replace(value, REDACTED)
    s = _redact_shapes(s)
    if "://" in s:
        s = _redact_userinfo(s, cut)
    return s


def truncate(text: Any, limit: int) -> str:
    """A redacted excerpt of at most about ``limit`` characters: redacted *before* it is cut.

    Only a window of ``limit`` plus the longest registered secret is redacted, so an excerpt of
    a huge frame costs O(limit), and no prefix of a secret survives the cut.

    >>> register_secret("tok-0123456789abcdef")
    >>> truncate("x" * 15 + "tok-0123456789abcdef" + "y" * 100, 20)
    'xxxxxxxxxxxxxxx***yy... (135 chars)'
    """
    s = text if isinstance(text, str) else repr(text)
    if len(s) <= limit:
        return redact(s)
    window = _redact(s[: limit + _longest + _MAX_NAME], True)
    return window[:limit] + f"... ({len(s)} chars)"


def redact_url(url: Any) -> str:
    """A URL safe to show, even without a scheme (``user:password@host`` hides its userinfo).

    >>> redact_url("alice:pw@gws.example/api")
    '***@gws.example/api'
    """
    s = redact(url)
    if "://" not in s:
        authority = s.split("/", 1)[0]
        if "@" in authority:
            s = REDACTED + s[authority.rfind("@") :]
    return s


def redirect_target(base: str, location: str | None) -> str:
    """Where a redirect points, safe to show: resolved against ``base``, without userinfo, and
    with any query string hidden whole (it may carry a token under any name).

    >>> redirect_target("https://gws.example.com/api/v2/notifications", "/sso/login?ticket=ST-1&x=2")
    'https://gws.example.com/sso/login?***'
    """
    if not location:
        return "an unnamed location (no Location header)"
    try:
        parts = urllib.parse.urlsplit(urllib.parse.urljoin(base, location.strip()))
        netloc = parts.netloc.rpartition("@")[2]
        shown = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "an invalid location"
    return redact(shown + ("?" + REDACTED if parts.query else ""))


def redact_headers(headers: Any) -> dict[str, str]:
    """A copy of a header mapping safe to log: secret-named headers are hidden whole."""
    out: dict[str, str] = {}
    for k, v in dict(headers or {}).items():
        out[k] = REDACTED if is_secret_header(str(k)) else redact(v)
    return out


# -- decoded JSON: members named as secrets ---------------------------------------------------
#
# Servers put other people's secrets in payloads: Chatwoot's ``conversation.created`` carries
# ``contact_inbox`` as the whole database row, ``pubsub_token`` included (Conversation#
# push_event_data), and a contact's ``pubsub_token`` can ride along in ``meta.sender``.  Those are
# not the client's registered secrets, so the literal registry cannot know them: the member's
# *name* says what it is, as in the shape rules above.  ``event.raw`` and ``Event.to_dict()`` go
# through :func:`redact_members`: one walk, whose members of names already known to be plain
# cost one ``issuperset`` per object (a text pre-test cost more: ~7 µs a frame).

_secret_names: dict[str, bool] = {}
_MAX_NAMES = 4096


def is_secret_name(name: str) -> bool:
    """True when a JSON member, parameter or header of this name holds a secret: its lowercase
    name ends with a secret word (``pubsub_token``, ``accessToken``, ``X-Auth-Token``,
    ``password``), as the redactor's shape rules decide (``token_type`` is not one).

    >>> is_secret_name("pubsub_token"), is_secret_name("accessToken"), is_secret_name("token_type")
    (True, True, False)
    """
    known = _secret_names.get(name)
    if known is None:
        low = _lower(name)
        known = low.endswith(_KEYWORDS) or (low.startswith("x-") and is_secret_header(low))
        if len(_secret_names) >= _MAX_NAMES:
            _secret_names.clear()
        _secret_names[name] = known
    return known


#: Member names seen and found not secret (bounded like _secret_names): a dict whose every name is
#: in here is checked with one C-level ``issuperset`` instead of a lookup per member.
_plain_names: set[str] = set()


def redact_members(value: Any, _depth: int = 0) -> Any:
    """``value`` (decoded JSON) with the value of every member named as a secret replaced by
    ``***`` at any depth (strings, numbers, and whole objects or arrays; ``null`` and booleans
    are kept), and every string that carries a secret by the text rules redacted as
    :func:`redact` would (``wss://h/?access_token=...`` inside a member).  Copy on write: what
    holds no such member is returned as it is, never mutated.

    >>> redact_members({"id": 5, "contact_inbox": {"source_id": "a", "pubsub_token": "XyZ"}})
    {'id': 5, 'contact_inbox': {'source_id': 'a', 'pubsub_token': '***'}}
    >>> redact_members({"link": "wss://h/cable?access_token=abc"})
    {'link': 'wss://h/cable?access_token=***'}
    """
    if _depth > _MAX_WALK:
        return REDACTED  # deeper than any decoded frame (MAX_DEPTH 128): hidden, not unchecked
    kind = type(value)
    if kind is dict:
        out = None
        if _plain_names.issuperset(value):
            # No member here is named as a secret (the usual case, every broadcast comes
            # through here): only a nested value can hold one.
            for k, v in value.items():
                if v:
                    new: Any = _redact_value(v, _depth)
                    if new is not v:
                        if out is None:
                            out = dict(value)
                        out[k] = new
            return value if out is None else out
        for k, v in value.items():
            if type(k) is str:
                if not is_secret_name(k):
                    if len(_plain_names) >= _MAX_NAMES:
                        _plain_names.clear()
                    _plain_names.add(k)
                elif v is not None and type(v) is not bool:
                    if out is None:
                        out = dict(value)
                    out[k] = REDACTED
                    continue
            if v:
                new = _redact_value(v, _depth)
                if new is not v:
                    if out is None:
                        out = dict(value)
                    out[k] = new
        return value if out is None else out
    if kind is list:
        items = None
        for i, v in enumerate(value):
            if v:
                new = _redact_value(v, _depth)
                if new is not v:
                    if items is None:
                        items = list(value)
                    items[i] = new
        return value if items is None else items
    if kind is str:
        return _redact_value(value, _depth - 1)
    return value


#: How deep :func:`redact_members` looks (past the decoder's limit: a decoded frame is all seen).
_MAX_WALK = 256


def _redact_value(v: Any, depth: int) -> Any:
    """A member's value or an array item, redacted (``v`` itself when nothing needed it)."""
    t = type(v)
    if t is dict or t is list:
        return redact_members(v, depth + 1)
    if t is str and may_hold_text_secret(v):
        new = _redact(v, False)
        return v if new == v else new
    return v


def may_hold_text_secret(text: str) -> bool:
    """A cheap test before :func:`redact` on a string of server data: True when it holds a
    registered secret, or the ``=``/``:`` that every text rule's shape needs."""
    if "=" in text or ":" in text:
        return True
    for secret in _by_length:  # a tuple swapped whole by _rebuild(): no lock needed
        if secret in text:
            return True
    return False


def redacted_repr(value: Any, _depth: int = 0) -> str:
    """``repr(value)`` with the value of every member or attrs field named as a secret shown as
    ``'***'``, at any depth (dicts, lists, tuples, models).  For reprs of server data (an
    event's ``data``, a model): the server may send other users' secrets (a contact's
    ``pubsub_token``, a ``password`` in custom attributes).  Text rules and registered secrets
    still go through :func:`redact` on the result.

    >>> redacted_repr({"user": "bo", "password": "hunter2", "tags": [{"api_key": "k"}]})
    "{'user': 'bo', 'password': '***', 'tags': [{'api_key': '***'}]}"
    """
    if _depth > 64:
        return "..."
    kind = type(value)
    if kind is dict:
        return "{" + ", ".join(f"{k!r}: {_member_repr(k, v, _depth)}" for k, v in value.items()) + "}"
    if kind is list:
        return "[" + ", ".join(redacted_repr(v, _depth + 1) for v in value) + "]"
    if kind is tuple:
        inner = ", ".join(redacted_repr(v, _depth + 1) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    fields = getattr(kind, "__attrs_attrs__", None)
    if fields is not None:
        shown = ", ".join(f"{f.name}={_member_repr(f.name, getattr(value, f.name), _depth)}" for f in fields if f.repr)
        return f"{kind.__qualname__.rsplit('>.', 1)[-1]}({shown})"
    return repr(value)


def _member_repr(name: Any, value: Any, depth: int) -> str:
    if type(name) is str and value is not None and type(value) is not bool and is_secret_name(name):
        return repr(REDACTED)
    return redacted_repr(value, depth + 1)


def model_repr(self: Any) -> str:
    """The ``__repr__`` of every vendor model: :func:`redacted_repr`, then :func:`redact`."""
    return redact(redacted_repr(self))


# -- the logging boundary ----------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """Redacts every record of the logger it is on: message, arguments, traceback, stack.

    Installed on every ``realtime_sync`` logger (:func:`get_logger`, :func:`protect_loggers`), so
    no call site can forget: a handler's traceback that quotes a token is redacted too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_realtime_sync_redacted", False):
            return True  # propagated from a child logger: done already
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what we can, safely
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._realtime_sync_redacted = True
        return True


_FILTER = RedactingFilter()


def _protect(logger: logging.Logger) -> logging.Logger:
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


class _BoundaryHandler(logging.NullHandler):
    """The catch-all: on the ``realtime_sync`` logger, it sees every record of the tree that
    propagates (from a logger created by ``logging.getLogger`` without the filter too) before the
    root logger's handlers do, and redacts it in place.  It writes nothing, like the
    ``NullHandler`` a library installs anyway."""

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        _FILTER.filter(record)
        return True


#: Installed on the ``realtime_sync`` logger by the package.
BOUNDARY_HANDLER = _BoundaryHandler()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the redacting filter on it (use for every logger)."""
    return _protect(logging.getLogger(name))


def protect_loggers(prefix: str = "realtime_sync") -> None:
    """Put the redacting filter on every existing logger named ``prefix`` or ``prefix.*``."""
    manager = logging.Logger.manager
    names: Iterable[str] = list(manager.loggerDict)
    for name in names:
        if name == prefix or name.startswith(prefix + "."):
            logger = manager.loggerDict[name]
            if isinstance(logger, logging.Logger):
                _protect(logger)
    _protect(logging.getLogger(prefix))
