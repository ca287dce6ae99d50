"""OAuth2 client-credentials tokens, fetched, cached and refreshed for you.

:class:`ClientCredentialsTokenProvider` is a callable returning an access token.  Give it to any
client as ``token=``: clients call their token callable before every connection attempt, and the
provider answers from its cache until the token is due for renewal, so a reconnect never uses an
expired token and the token endpoint is not hit on every reconnect.

The Jifeline partner API issues tokens valid for one hour and advises fetching a new one about
every 30 minutes: the default ``refresh_every=1800`` does that (a token is also renewed
``refresh_margin`` seconds before its ``expires_in`` runs out, whichever comes first).

Only the standard library is used (``urllib``).  Secrets (the client secret, every token
fetched, the values of ``extra_headers``) are registered with :func:`realtime_sync.redact` and
never appear in logs, reprs or exception messages.
"""

from __future__ import annotations

import base64
import math
import threading
import time
import urllib.parse
from typing import Any, Callable, Mapping

from ._http import HTTPFailure
from ._http import request as http_request
from ._json import decode
from ._redact import get_logger, redact, register_secret
from .exceptions import ConfigurationError, TokenError, TokenRefusedError

__all__ = ["ClientCredentialsTokenProvider"]

log = get_logger("realtime_sync.oauth")

_MAX_BODY = 64 * 1024


class ClientCredentialsTokenProvider:
    """A thread-safe, caching OAuth2 client-credentials token source.

    Args:
        token_url: the token endpoint, e.g.
            ``https://partner-api-001.prd.jifeline.cloud/oauth2/token`` (older Jifeline
            deployments used an Amazon Cognito URL; the oldest also required ``x-api-key``:
            pass it in ``extra_headers``).
        client_id, client_secret: the credentials.
        scope: optional ``scope`` form field.
        extra_headers: extra HTTP headers for the token request (values are treated as secrets).
        refresh_every: renew a token after this many seconds at most (default 30 minutes).
        refresh_margin: renew this many seconds before the token's ``expires_in`` runs out.
        timeout: seconds for one token request (connect + answer).
        auth_method: ``"body"`` (credentials in the form, as Jifeline documents) or ``"basic"``
            (HTTP Basic authentication, RFC 6749 section 2.3.1).

    Calling the provider returns a token: the cached one while it is fresh, else a new one (one
    request at a time: concurrent callers wait for it).  If renewal fails while the cached token
    has not expired yet, the cached token is returned and a warning logged; otherwise
    :class:`~realtime_sync.TokenError` is raised, whose message names the endpoint and the
    OAuth error (``invalid_client``...) but never a secret.  A refusal of the credentials
    (HTTP 401/403, or 400 ``invalid_client``/``unauthorized_client``) raises its subclass
    :class:`~realtime_sync.TokenRefusedError`, also an :class:`~realtime_sync.AuthenticationError`,
    so a client backs off as for any refused credentials instead of asking again every few seconds.

    >>> provider = ClientCredentialsTokenProvider(
    ...     "https://partner-api-001.prd.jifeline.cloud/oauth2/token", CLIENT_ID, CLIENT_SECRET)  # doctest: +SKIP
    >>> client = rs.JifelinePartnerClient(token=provider)                                      # doctest: +SKIP
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        refresh_every: float = 1800.0,
        refresh_margin: float = 60.0,
        timeout: float = 10.0,
        auth_method: str = "body",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urllib.parse.urlsplit(token_url) if isinstance(token_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"token_url must be an http(s) URL, got {redact(repr(token_url))}")
        if not isinstance(client_id, str) or not client_id:
            raise ConfigurationError("client_id must be a non-empty string")
        if not isinstance(client_secret, str) or not client_secret:
            raise ConfigurationError("client_secret must be a non-empty string")
        if auth_method not in ("body", "basic"):
            raise ConfigurationError(f"auth_method must be 'body' or 'basic', got {auth_method!r}")
        if refresh_every <= 0 or refresh_margin < 0 or timeout <= 0:
            raise ConfigurationError("refresh_every and timeout must be > 0, refresh_margin >= 0")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            log.warning("token_url %s is not https: the client secret travels in clear text", redact(token_url))
        register_secret(client_secret)
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self.extra_headers = dict(extra_headers or {})
        for value in self.extra_headers.values():
            register_secret(value)
        self.refresh_every = float(refresh_every)
        self.refresh_margin = float(refresh_margin)
        self.timeout = float(timeout)
        self.auth_method = auth_method
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._expires_at = 0.0
        #: How many tokens were fetched (for tests and monitoring).
        self.fetches = 0

    def __repr__(self) -> str:
        return f"ClientCredentialsTokenProvider(token_url={redact(self.token_url)!r}, client_id={self.client_id!r})"

    # -- public ------------------------------------------------------------------------------

    def __call__(self) -> str:
        """A valid access token (cached, or fetched now)."""
        with self._lock:
            now = self._clock()
            if self._token is not None and now < self._refresh_at:
                return self._token
            try:
                token, expires_in = self._fetch()
            except TokenError as exc:
                if self._token is not None and now < self._expires_at:
                    log.warning("token renewal failed (%s); using the cached token until it expires", exc)
                    return self._token
                raise
            self.fetches += 1
            now = self._clock()
            lifetime = self.refresh_every if expires_in is None else expires_in
            self._token = token
            self._expires_at = math.inf if expires_in is None else now + expires_in
            self._refresh_at = now + min(self.refresh_every, max(0.0, lifetime - self.refresh_margin))
            log.debug("fetched a new access token (expires_in=%s)", expires_in)
            return token

    def invalidate(self) -> None:
        """Forget the cached token: the next call fetches a new one (e.g. after a 401)."""
        with self._lock:
            self._token = None
            self._refresh_at = self._expires_at = 0.0

    @property
    def expires_in(self) -> float | None:
        """Seconds until the cached token expires (None when no token is cached or no expiry is known)."""
        with self._lock:
            if self._token is None or math.isinf(self._expires_at):
                return None
            return max(0.0, self._expires_at - self._clock())

    # -- internals ---------------------------------------------------------------------------

    def _fetch(self) -> tuple[str, float | None]:
        form = {"grant_type": "client_credentials"}
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        headers.update(self.extra_headers)
        if self.auth_method == "basic":
            pair = f"{urllib.parse.quote(self.client_id)}:{urllib.parse.quote(self._client_secret)}"
            basic = base64.b64encode(pair.encode()).decode()
            register_secret(basic)
            headers["Authorization"] = "Basic " + basic
            form["client_id"] = self.client_id
        else:
            form["client_id"] = self.client_id
            form["client_secret"] = self._client_secret
        if self.scope:
            form["scope"] = self.scope
        where = redact(self.token_url)
        try:
            # No redirect is followed: it would carry the client secret elsewhere (_http).
            body = http_request(
                self.token_url,
                method="POST",
                headers=headers,
                data=urllib.parse.urlencode(form).encode(),
                timeout=self.timeout,
                max_body=_MAX_BODY,
            )
        except HTTPFailure as exc:
            if exc.kind == "status" and exc.status is not None:
                refused, message = self._refusal(where, exc.status, exc.body)
                raise (TokenRefusedError if refused else TokenError)(message) from None
            if exc.kind == "connect":
                raise TokenError(redact(f"cannot reach the token endpoint {where}: {exc}")) from None
            raise TokenError(f"the token endpoint {where}: {exc}") from None
        try:
            data = decode(body)
        except ValueError:
            raise TokenError(f"the token endpoint {where} answered with something that is not JSON") from None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenError(f"the token endpoint {where} answered without an access_token") from None
        register_secret(token)
        token_type = data.get("token_type")
        if isinstance(token_type, str) and token_type.lower() != "bearer":
            log.warning("token endpoint returned token_type %r, expected Bearer", token_type)
        return token, _expires_in(data.get("expires_in"))

    def _refusal(self, where: str, code: int, body: bytes) -> tuple[bool, str]:
        """(the client's credentials were refused, a message without secrets)"""
        detail = ""
        try:
            payload: Any = decode(body or b"null")
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            parts = [
                str(payload[k]) for k in ("error", "error_description", "message") if isinstance(payload.get(k), str)
            ]
            detail = ": " + ", ".join(parts) if parts else ""
        refused = code in (400, 401, 403) and (
            "invalid_client" in detail or "unauthorized_client" in detail or code != 400
        )
        if refused:
            msg = f"the token endpoint {where} refused the client credentials (HTTP {code}{detail}); check client_id and client_secret"
        else:
            msg = f"the token endpoint {where} answered HTTP {code}{detail}"
        return refused, redact(msg)


def _expires_in(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    if isinstance(value, str):
        try:
            v = float(value)
        except ValueError:
            return None
        return v if v > 0 else None
    return None
