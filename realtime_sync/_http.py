"""One small HTTP helper for the library's own requests that carry credentials.

Used by the OAuth token request (client secret, Basic credentials, ``x-api-key``) and the
Jifeline REST gap-recovery request (bearer token).  Two rules hold for every such request:

* **No redirect is followed.**  ``urllib`` follows 301/302/303/307/308 and re-sends the
  headers, ``Authorization`` included, to wherever the server points, even from ``https`` to
  ``http`` or to another host.  A redirect is answered with :class:`HTTPFailure` of kind
  ``"redirect"`` naming the (redacted) target instead: configure the final URL.
* **The body read is bounded** (``max_body``): a larger answer is :class:`HTTPFailure` of kind
  ``"too_large"`` after reading at most ``max_body + 1`` bytes.

Proxies from the environment are used as ``urllib.request.urlopen`` does.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any, Mapping

from ._redact import redact

__all__ = ["HTTPFailure", "request"]


class HTTPFailure(Exception):
    """A request that did not produce a usable answer.

    ``kind`` is ``"status"`` (an HTTP error status; ``status`` and the bounded ``body`` are
    set), ``"redirect"`` (refused), ``"too_large"`` or ``"connect"`` (DNS, TCP, TLS, timeout).
    The message is redacted.
    """

    def __init__(self, kind: str, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(redact(message))
        self.kind = kind
        self.status = status
        self.body = body


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise HTTPFailure(
            "redirect",
            f"{req.get_method()} {req.full_url} answered HTTP {code}, a redirect to {newurl}: not followed "
            "(credentials are never sent on to another URL; configure the final URL)",
            code,
        )

    # urllib routes 308 here only from Python 3.11: on 3.10 it was a plain HTTP error (not
    # followed either, but reported as kind "status" without the target).
    http_error_308 = urllib.request.HTTPRedirectHandler.http_error_302


_OPENER = urllib.request.build_opener(_RefuseRedirects())


def _read(response: Any, max_body: int, what: str) -> bytes:
    body: bytes = response.read(max_body + 1)
    if len(body) > max_body:
        raise HTTPFailure("too_large", f"{what}: the answer is larger than {max_body} bytes")
    return body


def request(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    timeout: float,
    max_body: int,
) -> bytes:
    """The body of a 2xx answer to one request (no redirect followed, at most ``max_body`` bytes).

    >>> request("http://127.0.0.1:9/", timeout=1, max_body=10)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    realtime_sync._http.HTTPFailure: GET http://127.0.0.1:9/ failed: ...
    """
    what = f"{method} {url}"
    req = urllib.request.Request(url, data=data, headers=dict(headers or {}), method=method)
    try:
        with _OPENER.open(req, timeout=timeout) as response:
            return _read(response, max_body, what)
    except HTTPFailure:
        raise
    except urllib.error.HTTPError as exc:
        try:
            body = _read(exc, max_body, what)
        except (HTTPFailure, OSError):
            body = b""
        raise HTTPFailure("status", f"{what} answered HTTP {exc.code}", exc.code, body) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HTTPFailure("connect", f"{what} failed: {reason}") from None
