"""GWS CSRF protection: the token read from the REST API, sent on every long-polling request.

What Genesys documents (Web Services 8.5.2 and 8.6 API guide, "Cross-Site Request Forgery
protection", docs.genesys.com/Documentation/GWS/8.5.2/API/CSRFProtection; deployment guide
".../GWS/8.5.2/Dep/CSRFProtection"):

* a GWS node with ``enableCsrfProtection: true`` requires a token in a custom header on every
  request that modifies data: ``PUT``, ``POST``, ``DELETE``.  Bayeux long-polling is ``POST``\\ s
  to ``/api/v2/notifications``, so every one of them carries it; the websocket transport's one
  HTTP request is the upgrade, a ``GET``, which is not checked (and GWS 8.5 documents CometD
  without websocket anyway);
* the client learns the token from any ``GET`` of the REST API (``/api/v2/me``): the response
  carries ``X-CSRF-HEADER`` (the header name to send, ``X-CSRF-TOKEN``) and ``X-CSRF-TOKEN``
  (its value).  The client must cache both;
* the token is stored with the HTTP session and shares its life cycle: it belongs to the
  ``JSESSIONID`` cookie the same response sets, so the cookie must be sent too (the client's
  shared :class:`~realtime_sync._cookies.CookieJar` does);
* a missing or stale token, or a missing cookie, is answered ``403`` with the body "Missing or
  invalid Csrf token".

So :class:`CsrfToken` fetches before a long-polling connection opens (before the handshake),
and when a request is refused with 403 it is fetched again **once**, on a new connection at
once (the Bayeux session resumes on it); a 403 with the renewed token is a credential refusal
like any other (the auth backoff).  The token is a secret: registered with the redactor, never
in a repr, a log line or an exception.
"""

from __future__ import annotations

import http.client
import logging
import threading
import urllib.parse
from typing import Any, Callable, Mapping, Union

from ._redact import redact, redact_url, redirect_target, register_secret
from .config import ConnectOptions
from .exceptions import AuthenticationError, ConfigurationError, ConnectError, TokenError

__all__ = ["CSRF_HEADER", "CSRF_NAME_HEADER", "GWS_ME_PATH", "CsrfSource", "CsrfToken", "rest_url"]

log = logging.getLogger("realtime_sync.transport.csrf")

#: The response header naming the request header to send (GWS).
CSRF_NAME_HEADER = "X-CSRF-HEADER"
#: The response header holding the token, and the request header's usual name.
CSRF_HEADER = "X-CSRF-TOKEN"
#: The REST resource read for the token when ``csrf=True`` (any GET would do; this one is small).
GWS_ME_PATH = "/api/v2/me"
_MAX_BODY = 1 << 20  # the GET's body is read and discarded (a user resource: small)
_READ_TIMEOUT = 30.0

#: ``csrf=``: True (GET ``/api/v2/me`` of the client's host), the URL to GET, or a callable
#: returning the token (sent as ``X-CSRF-TOKEN``) or a ``(header name, token)`` pair.
CsrfSource = Union[bool, str, Callable[[], Union[str, tuple[str, str]]]]


def rest_url(url: str) -> str:
    """The REST resource to GET for the token of a client of ``url`` (same scheme and host).

    >>> rest_url("wss://gws.example.com:8443/api/v2/notifications")
    'https://gws.example.com:8443/api/v2/me'
    """
    parts = urllib.parse.urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    return urllib.parse.urlunsplit((scheme, parts.netloc, GWS_ME_PATH, "", ""))


def _header_name(value: object) -> bool:
    return isinstance(value, str) and bool(value) and all(c.isalnum() or c in "-_" for c in value)


class CsrfToken:
    """The CSRF token of one client: fetched when needed, renewed once after a refusal.

    ``source``: see :data:`CsrfSource`; ``url`` the client's URL (for ``True``).  Thread-safe:
    connections fetch from their opening thread and report outcomes from their own.

    >>> CsrfToken(True, "https://gws.example.com/api/v2/notifications")
    <CsrfToken from https://gws.example.com/api/v2/me, none yet>
    """

    def __init__(self, source: CsrfSource, url: str) -> None:
        self._provider: Callable[[], str | tuple[str, str]] | None = None
        self._url = ""
        if source is True:
            self._url = rest_url(url)
        elif isinstance(source, str):
            parts = urllib.parse.urlsplit(source)
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise ConfigurationError(
                    f"csrf= takes True, an http(s) URL to GET the token from (e.g. "
                    f"'https://HOST{GWS_ME_PATH}') or a callable; got {redact_url(source)!r}"
                )
            self._url = source
        elif callable(source) and not isinstance(source, bool):
            self._provider = source
        else:
            raise ConfigurationError(
                "csrf= takes True (read the token from GET /api/v2/me with the client's credentials), "
                f"an http(s) URL to GET it from, or a callable returning it; got {type(source).__name__}"
            )
        self._lock = threading.Lock()
        self._name = CSRF_HEADER
        self._value: str | None = None
        self._stale = True  # fetch before the next connection
        self._renewals = 1  # refetches left before a 403 counts as a credential refusal
        self._refused: str | None = None  # the value whose refusal started the current renewal

    def __repr__(self) -> str:
        where = f"from {redact_url(self._url)}" if self._url else "from a callable"
        return f"<CsrfToken {where}, {'cached' if self._value else 'none yet'}>"

    # -- the connections' side ----------------------------------------------------------------

    def fetch(
        self,
        headers: Mapping[str, str],
        options: ConnectOptions,
        cookies: object,
        watch: Callable[[Any], None] | None = None,
    ) -> dict[str, str]:
        """The header to send (``{name: token}``; ``{}`` when the server sends none), fetched now
        (blocking) when none is cached or the last one was refused.  ``headers`` are the
        connection's (credentials included); ``cookies`` its :class:`CookieJar`, which keeps
        the session cookie the GET sets; ``watch`` is handed the GET's HTTP connection before
        it is used, so that the opening connection's ``abort()`` (``close()`` from another
        thread) can interrupt it.  Raises :class:`AuthenticationError` (401/403),
        :class:`ConnectError` or :class:`TokenError` (a callable failed)."""
        with self._lock:
            if self._stale:
                self._name, self._value = self._load(headers, options, cookies, watch)
                self._stale = False
            name, value = self._name, self._value
        return {name: value} if value else {}

    def refused(self, sent: Mapping[str, str]) -> bool:
        """A request carrying ``sent`` headers was refused with 403: True when the token will be
        renewed for the next connection (the first refusal since a success), False when the
        refusal stands (the token was renewed already)."""
        value = sent.get(self._name) if self._value else None
        with self._lock:
            if self._refused is not None and value == self._refused and self._stale:
                return True  # the same refusal, reported by the other request in flight
            self._stale = True
            if self._renewals <= 0:
                return False
            self._renewals -= 1
            self._refused = value
        log.info("HTTP 403 with the CSRF token: fetching a new one")
        return True

    def accepted(self, sent: Mapping[str, str]) -> None:
        """A request carrying ``sent`` headers went through: if it carried the current token, a
        later refusal gets its renewal again.  (A late answer on a connection the renewal
        replaced carries the old token: it proves nothing about the new one.)"""
        if self._renewals <= 0 and not self._stale and self._value and sent.get(self._name) == self._value:
            with self._lock:
                if not self._stale and sent.get(self._name) == self._value:
                    self._renewals = 1
                    self._refused = None

    # -- loading -------------------------------------------------------------------------------

    def _load(
        self, headers: Mapping[str, str], options: ConnectOptions, cookies: object, watch: Callable[[Any], None] | None
    ) -> tuple[str, str | None]:
        if self._provider is not None:
            try:
                got = self._provider()
            except (TokenError, ConnectError):
                raise
            except Exception as exc:
                raise TokenError(f"the csrf callable raised {type(exc).__name__}: {redact(exc)}") from None
            name, value = (CSRF_HEADER, got) if isinstance(got, str) else (got if isinstance(got, tuple) else ("", ""))
            if not _header_name(name) or not isinstance(value, str) or not value or "\n" in value or "\r" in value:
                raise TokenError(
                    "the csrf callable must return the token (a non-empty string) or a (header name, token) "
                    f"pair, got {type(got).__name__}"
                )
            register_secret(value)
            return name, value
        return self._get(headers, options, cookies, watch)

    def _get(
        self, headers: Mapping[str, str], options: ConnectOptions, cookies: object, watch: Callable[[Any], None] | None
    ) -> tuple[str, str | None]:
        from ._wsconn import proxy_credentials_refused
        from .transport_longpoll import _Http  # the transport's HTTP: same TLS, proxy and timeouts

        url = self._url
        shown = redact_url(url)
        send = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        cookie = cookies.header() if hasattr(cookies, "header") else None
        if cookie:
            send["Cookie"] = cookie
        h = _Http(url, options, options.connect_timeout or _READ_TIMEOUT)
        try:
            if watch is not None:
                watch(h)  # may abort it at once: the connection is closing
            status, reason, msg, _body = h.post(b"", send, _MAX_BODY, method="GET")
        except AuthenticationError as exc:  # a proxy refused our proxy credentials (it names the proxy)
            raise AuthenticationError(f"CSRF token: GET {shown} failed: {exc}") from None
        except (OSError, http.client.HTTPException, ValueError, ConnectError) as exc:
            raise ConnectError(f"CSRF token: GET {shown} failed: {redact(f'{type(exc).__name__}: {exc}')}") from None
        finally:
            h.abort()
        set_cookies = msg.get_all("Set-Cookie") or []
        if set_cookies and hasattr(cookies, "update"):
            cookies.update(set_cookies)  # the token belongs to this HTTP session (JSESSIONID)
        refusal = proxy_credentials_refused(h.hop, url, status, h.absolute)  # a plain-HTTP proxy's 407
        if refusal:
            raise AuthenticationError(f"CSRF token: GET {shown} failed: {refusal}")
        if status in (401, 403):
            raise AuthenticationError(f"CSRF token: GET {shown} refused: HTTP {status} {reason}".strip(), status=status)
        if status != 200:
            where = ""
            if 300 <= status < 400:
                where = f" (a redirect to {redirect_target(url, msg.get('Location'))}: not followed)"
            raise ConnectError(f"CSRF token: GET {shown} answered HTTP {status} {reason}{where}", status=status)
        value = msg.get(CSRF_HEADER)
        name = msg.get(CSRF_NAME_HEADER) or CSRF_HEADER
        if not value:
            log.info("GET %s sent no %s: the server does not ask for one (none is sent)", shown, CSRF_HEADER)
            return CSRF_HEADER, None
        value = value.strip()
        register_secret(value)
        if not _header_name(name):
            raise ConnectError(f"CSRF token: GET {shown} named an invalid header in {CSRF_NAME_HEADER}")
        return name, value
