"""The cookie jar shared by a client's transports (long-polling and the websocket upgrade)."""

from __future__ import annotations

import email.utils
import threading
import time
import urllib.parse
from typing import Mapping

import attrs

from ._redact import get_logger, register_secret, register_server_secret

log = get_logger("realtime_sync.cookies")

__all__ = ["CookieJar"]


_COOKIE_ATTRS = frozenset(
    {
        "path",
        "domain",
        "expires",
        "max-age",
        "secure",
        "httponly",
        "samesite",
        "version",
        "comment",
        "priority",
        "partitioned",
    }
)


#: Default bounds of a jar: a server cannot make a client store more than this.
MAX_COOKIES = 50
MAX_COOKIE_BYTES = 4096  # one cookie, name and value (RFC 6265 section 6.1's minimum)
MAX_JAR_BYTES = 16 * 1024


@attrs.define
class _Cookie:
    value: str
    path: str = "/"
    secure: bool = False
    expires: float | None = None  # wall-clock time.time(); None: a session cookie


def _path_matches(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 section 5.1.4."""
    if request_path == cookie_path:
        return True
    if request_path.startswith(cookie_path):
        return cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    return False


def _domain_matches(host: str, domain: str) -> bool:
    """RFC 6265 section 5.1.3 (an IP address only matches itself)."""
    return host == domain or (host.endswith("." + domain) and not host.replace(".", "").isdigit())


class CookieJar:
    """The cookies of one client, shared by its transports (thread-safe).

    A deliberately small jar for one server URL (``url``): names map to values.  It honours
    ``Domain`` (a cookie for another domain is refused), ``Path`` (sent only on matching
    request paths), ``Secure`` (never set by nor sent to a plain ``http``/``ws`` URL),
    ``Max-Age`` and ``Expires`` (``Max-Age=0``, a past date or an empty value delete).  It is
    bounded: at most ``max_cookies`` cookies and ``max_bytes`` in all, no cookie over 4096
    bytes; cookies beyond the bounds are refused (the ones already held are kept, so a flood
    cannot push out a session cookie).  Values set by the server are registered as *server*
    secrets (a registry of their own: they cannot evict the client's secrets from the redactor).

    >>> jar = CookieJar("JSESSIONID=abc123", url="https://gws.example.com/api")
    >>> jar.update(["BAYEUX_BROWSER=xyz9; Path=/; HttpOnly", "OTHER=1; Domain=evil.example"])
    >>> jar.header()
    'JSESSIONID=abc123; BAYEUX_BROWSER=xyz9'
    >>> jar
    CookieJar(['JSESSIONID', 'BAYEUX_BROWSER'])
    """

    def __init__(
        self,
        initial: str | Mapping[str, str] | None = None,
        url: str | None = None,
        *,
        max_cookies: int = MAX_COOKIES,
        max_bytes: int = MAX_JAR_BYTES,
    ) -> None:
        self._lock = threading.Lock()
        self._cookies: dict[str, _Cookie] = {}
        parts = urllib.parse.urlsplit(url) if url else None
        self._host = (parts.hostname or "").lower() if parts else None
        self._path = (parts.path or "/") if parts else "/"
        self._secure = parts.scheme.lower() in ("https", "wss") if parts else True
        self.max_cookies = max_cookies
        self.max_bytes = max_bytes
        # The client's own cookies (given as an option): registered as its own secrets.
        if isinstance(initial, str):
            for part in initial.split(";"):
                name, sep, value = part.strip().partition("=")
                if sep and name:
                    register_secret(value)
                    self._cookies[name] = _Cookie(value)
        elif initial:
            for name, value in initial.items():
                register_secret(str(value))
                self._cookies[str(name)] = _Cookie(str(value))

    def _size(self) -> int:
        return sum(len(k) + len(c.value) for k, c in self._cookies.items())

    def _parse(self, raw: str, now: float) -> tuple[str, _Cookie | None] | None:
        """(name, cookie) to store, (name, None) to delete, None to refuse."""
        first, *attributes = raw.split(";")
        name, sep, value = first.strip().partition("=")
        name = name.strip()
        if not sep or not name or len(name) + len(value) > MAX_COOKIE_BYTES:
            return None
        value = value.strip().strip('"')
        cookie = _Cookie(value, path=self._default_path())
        delete = not value
        for attribute in attributes:
            key, _, arg = attribute.strip().partition("=")
            key = key.strip().lower()
            arg = arg.strip()
            if key == "domain" and arg:
                domain = arg.lstrip(".").lower()
                if self._host is not None and not _domain_matches(self._host, domain):
                    return None  # a cookie for another site
            elif key == "path" and arg.startswith("/"):
                cookie.path = arg
            elif key == "secure":
                if not self._secure:
                    return None  # a plain-text origin may not set a Secure cookie
                cookie.secure = True
            elif key == "max-age":
                try:
                    seconds = int(arg)
                except ValueError:
                    continue
                if seconds <= 0:
                    delete = True
                else:
                    cookie.expires = now + min(seconds, 400 * 86400)
            elif key == "expires" and cookie.expires is None:
                try:
                    when = email.utils.parsedate_to_datetime(arg).timestamp()
                except (TypeError, ValueError, OverflowError, IndexError):
                    continue
                if when <= now:
                    delete = True
                else:
                    cookie.expires = when
        return name, (None if delete else cookie)

    def _default_path(self) -> str:
        # RFC 6265 section 5.1.4: the directory of the request path.
        return self._path[: self._path.rfind("/")] or "/" if self._path.count("/") > 1 else "/"

    def update(self, set_cookie_values: list[str]) -> None:
        """Apply ``Set-Cookie`` header values (one cookie each)."""
        now = time.time()
        with self._lock:
            for raw in set_cookie_values[: self.max_cookies * 4]:
                parsed = self._parse(raw, now)
                if parsed is None:
                    continue
                name, cookie = parsed
                if cookie is None:
                    self._cookies.pop(name, None)
                    continue
                old = self._cookies.get(name)
                grows = len(cookie.value) - (len(old.value) if old else -len(name))
                if (old is None and len(self._cookies) >= self.max_cookies) or self._size() + grows > self.max_bytes:
                    log.warning(
                        "cookie %r refused: the jar is full (%d cookies, %d bytes)",
                        name,
                        len(self._cookies),
                        self.max_bytes,
                    )
                    continue
                register_server_secret(cookie.value)
                self._cookies[name] = cookie

    def update_merged(self, merged: str) -> None:
        """Apply websocket-client's merged ``set-cookie`` (several cookies joined by ``; ``)."""
        cookies: list[str] = []
        for part in merged.split(";"):
            name, sep, _value = part.strip().partition("=")
            if sep and name and name.strip().lower() not in _COOKIE_ATTRS:
                cookies.append(part.strip())
            elif cookies and name.strip().lower() in _COOKIE_ATTRS:
                cookies[-1] += "; " + part.strip()  # keep its attributes with it
        self.update(cookies)

    def header(self) -> str | None:
        """The ``Cookie`` header value for the jar's URL, or None when no cookie applies."""
        if not self._cookies:
            return None  # (every long-polling request asks)
        now = time.time()
        with self._lock:
            for name in [n for n, c in self._cookies.items() if c.expires is not None and c.expires <= now]:
                del self._cookies[name]
            values = [
                f"{k}={c.value}"
                for k, c in self._cookies.items()
                if _path_matches(self._path, c.path) and (self._secure or not c.secure)
            ]
            return "; ".join(values) or None

    def get(self, name: str) -> str | None:
        with self._lock:
            cookie = self._cookies.get(name)
            return None if cookie is None else cookie.value

    def __len__(self) -> int:
        with self._lock:
            return len(self._cookies)

    def __repr__(self) -> str:
        with self._lock:
            return f"CookieJar({list(self._cookies)!r})"
