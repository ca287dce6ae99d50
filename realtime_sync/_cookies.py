"""The cookie jar shared by a client's transports (long-polling and the websocket upgrade)."""

from __future__ import annotations

import threading
from typing import Mapping

from ._redact import register_secret

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


class CookieJar:
    """The cookies of one client, shared by its transports (thread-safe).

    A deliberately small jar: one server, so names map to values; a ``Set-Cookie`` with
    ``Max-Age=0`` (or an empty value) deletes.  Values are registered as secrets.

    >>> jar = CookieJar("JSESSIONID=abc123")
    >>> jar.update(["BAYEUX_BROWSER=xyz9; Path=/; HttpOnly"])
    >>> jar.header()
    'JSESSIONID=abc123; BAYEUX_BROWSER=xyz9'
    >>> jar
    CookieJar(['JSESSIONID', 'BAYEUX_BROWSER'])
    """

    def __init__(self, initial: str | Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._cookies: dict[str, str] = {}
        if isinstance(initial, str):
            for part in initial.split(";"):
                name, sep, value = part.strip().partition("=")
                if sep and name:
                    self._set(name, value)
        elif initial:
            for name, value in initial.items():
                self._set(str(name), str(value))

    def _set(self, name: str, value: str) -> None:
        register_secret(value)
        self._cookies[name] = value

    def update(self, set_cookie_values: list[str]) -> None:
        """Apply ``Set-Cookie`` header values (one cookie each)."""
        with self._lock:
            for raw in set_cookie_values:
                first, *attrs_ = raw.split(";")
                name, sep, value = first.strip().partition("=")
                if not sep or not name:
                    continue
                value = value.strip().strip('"')
                expired = any(a.strip().lower().replace(" ", "") in ("max-age=0",) for a in attrs_)
                if expired or not value:
                    self._cookies.pop(name, None)
                else:
                    self._set(name, value)

    def update_merged(self, merged: str) -> None:
        """Apply websocket-client's merged ``set-cookie`` (several cookies joined by ``; ``)."""
        cookies = []
        for part in merged.split(";"):
            name, sep, _value = part.strip().partition("=")
            if sep and name and name.strip().lower() not in _COOKIE_ATTRS:
                cookies.append(part.strip())
        self.update(cookies)

    def header(self) -> str | None:
        """The ``Cookie`` header value, or None when the jar is empty."""
        with self._lock:
            if not self._cookies:
                return None
            return "; ".join(f"{k}={v}" for k, v in self._cookies.items())

    def get(self, name: str) -> str | None:
        with self._lock:
            return self._cookies.get(name)

    def __repr__(self) -> str:
        with self._lock:
            return f"CookieJar({list(self._cookies)!r})"
