"""Configuration objects: how to reconnect, how to connect, how to dispatch.

All are frozen attrs classes; pass them to any client, or pass their fields as keyword
arguments (``VoxsigClient(url, token, connect_timeout=5)`` is the same as
``connect=ConnectOptions(connect_timeout=5)``).
"""

from __future__ import annotations

import os
import random
import re
import ssl
import urllib.parse
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs

from ._validate import _CONTROL_IN_VALUE, flag, header_map, number_converter
from .exceptions import ConfigurationError

__all__ = ["Backoff", "ConnectOptions", "DispatchOptions", "ReconnectPolicy", "SharedBackoff", "timing_scale"]


#: A subprotocol or cookie name: an RFC 9110 token.
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")

#: Proxy schemes the websocket transport speaks (HTTP CONNECT, or SOCKS: realtime_sync._socks).
_PROXY_SCHEMES = ("http", "socks4", "socks4a", "socks5", "socks5h")


def timing_scale() -> float:
    """Multiplier for timing constants in tests (``REALTIME_SYNC_TIMING_SCALE``, default 1)."""
    try:
        return max(0.1, float(os.environ.get("REALTIME_SYNC_TIMING_SCALE", "1")))
    except ValueError:
        return 1.0


def _non_negative(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value < 0:
        raise ConfigurationError(f"{attribute.name} must be >= 0, got {value!r}")


_SECONDS = number_converter(unit="seconds")
_NUMBER = number_converter()


def _default_max_interval(policy: Any) -> float:
    """``max_interval`` when none is given: ``interval`` (at least the 5 s of the default
    policy) for a constant delay; for a growing one (``multiplier > 1``, ``step > 0``) a cap of a
    minute (or ``interval``, when longer), as CometD's reference client caps its backoff."""
    growing = policy.multiplier > 1 or policy.step > 0
    return max(60.0 if growing else 5.0, float(policy.interval))


@attrs.frozen
class ReconnectPolicy:
    """When to try again after a connection fails or drops.

    The default follows the Jifeline partner API's advice: reconnect instantly a handful of
    times (``instant_retries``), then no more often than every ``interval`` seconds, with
    ``jitter`` (a fraction added on top, never below the interval), until ``close()``.  The
    first connection follows the same policy.  The count of consecutive failures resets once a
    connection has stayed up for ``stable_after`` seconds.

    The delay before attempt ``n`` (0-based count of consecutive failures), past the instant
    retries (``k = n - instant_retries``), is
    ``min(max_interval, interval * multiplier**k + step * k) * (1 + jitter * random())``.
    ``max_interval`` not given follows ``interval``: ``ReconnectPolicy(interval=30)`` waits 30 s
    (a growing delay is capped at a minute, or at ``interval`` when longer); given, it must not be
    below ``interval`` (0: no cap).

    Credentials refused by the server (HTTP 401/403, an ActionCable ``unauthorized``) never
    retry quickly: the client waits ``auth_failure_delay`` seconds, doubling each time up to
    ``auth_failure_max_delay``, or stops when ``stop_on_auth_failure`` is true.

    After a disconnect the *server* initiated (an ActionCable ``server_restart``, a Bayeux
    ``handshake`` advice, a gateway closing its sockets), every client of a fleet sees the drop
    at the same instant: the first retry waits up to ``restart_jitter`` seconds more (uniformly
    spread), so they do not all reconnect in one instant.  Later retries follow the policy (the
    vendor's advice) unchanged.

    ``max_attempts`` counts the retries after a failure: ``max_attempts=3`` gives up after 4
    failures in a row (the CLI's ``--max-attempts`` counts every failed attempt instead);
    ``None`` never gives up.  ``max_attempts=0`` (what ``reconnect=False`` gives) never
    reconnects: the first failure or drop ends the client.

    >>> ReconnectPolicy().delay(0)
    0.0
    >>> 5.0 <= ReconnectPolicy().delay(10) <= 6.25
    True
    >>> exponential = ReconnectPolicy(instant_retries=0, interval=1, multiplier=2, max_interval=60)
    >>> linear = ReconnectPolicy(instant_retries=0, interval=1, step=1, max_interval=60, jitter=0)
    >>> linear.delay(3)
    4.0
    >>> ReconnectPolicy(interval=30, jitter=0).delay(5)
    30.0
    >>> ReconnectPolicy().max_interval, ReconnectPolicy(interval=1, multiplier=2).max_interval
    (5.0, 60.0)
    """

    # Numbers from settings may be strings ("5"), as everywhere in the configuration.
    instant_retries: int = attrs.field(
        default=3,
        converter=number_converter(integer=True),  # type: ignore[misc]
        validator=_non_negative,
    )
    interval: float = attrs.field(default=5.0, converter=_SECONDS, validator=_non_negative)  # type: ignore[misc]
    multiplier: float = attrs.field(default=1.0, converter=_NUMBER, validator=_non_negative)  # type: ignore[misc]
    step: float = attrs.field(default=0.0, converter=_SECONDS, validator=_non_negative)  # type: ignore[misc]
    #: Not given: ``interval`` (at least 5 s) for a constant delay, ``max(60, interval)`` for a
    #: growing one (``multiplier > 1`` or ``step > 0``), so ``interval=30`` waits 30 s.
    max_interval: float = attrs.field(
        default=attrs.Factory(lambda self: _default_max_interval(self), takes_self=True),
        converter=_SECONDS,  # type: ignore[misc]
        validator=_non_negative,
    )
    jitter: float = attrs.field(default=0.25, converter=_NUMBER, validator=_non_negative)  # type: ignore[misc]
    max_attempts: int | None = attrs.field(
        default=None,
        converter=number_converter(integer=True, optional=True),  # type: ignore[misc]
        validator=_non_negative,
    )
    stable_after: float = attrs.field(default=10.0, converter=_SECONDS, validator=_non_negative)  # type: ignore[misc]
    auth_failure_delay: float = attrs.field(
        default=60.0,
        converter=_SECONDS,  # type: ignore[misc]
        validator=_non_negative,
    )
    auth_failure_max_delay: float = attrs.field(
        default=900.0,
        converter=_SECONDS,  # type: ignore[misc]
        validator=_non_negative,
    )
    stop_on_auth_failure: bool = False
    restart_jitter: float = attrs.field(default=1.0, converter=_SECONDS, validator=_non_negative)  # type: ignore[misc]

    def __attrs_post_init__(self) -> None:
        if self.max_interval and self.max_interval < self.interval:
            raise ConfigurationError(
                f"max_interval ({self.max_interval:g} s) is below interval ({self.interval:g} s): it caps every "
                f"delay, so the client would retry every {self.max_interval:g} s; raise max_interval, or leave it "
                "out (it then follows interval)"
            )

    @classmethod
    def never(cls) -> ReconnectPolicy:
        """The policy of ``reconnect=False``: no reconnection at all."""
        return cls(max_attempts=0, instant_retries=0)

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before the next attempt after ``failures`` consecutive failures."""
        if failures < self.instant_retries:
            return 0.0
        k = failures - self.instant_retries
        try:
            base = self.interval * self.multiplier**k + self.step * k
        except OverflowError:
            base = self.max_interval
        base = min(self.max_interval, base) if self.max_interval else base
        return float(base * (1.0 + self.jitter * rand()))

    def auth_delay(self, auth_failures: int) -> float:
        """Seconds to wait after the ``auth_failures``-th consecutive credential refusal (1-based)."""
        d = self.auth_failure_delay * (2 ** max(0, min(auth_failures - 1, 30)))
        return float(min(self.auth_failure_max_delay, d))


@attrs.frozen
class Backoff:
    """The reconnect state of one client: its policy and its counters, as one immutable value.

    Modelled on urllib3's ``Retry``: nothing is counted in loop variables; ``increment()``
    returns a new object carrying the counters and a short history, and that one object answers
    "how long now" (:meth:`delay`) and "may I go on" (:attr:`exhausted`).

    >>> b = Backoff(ReconnectPolicy(instant_retries=1, interval=2, jitter=0))
    >>> b.delay()
    0.0
    >>> b = b.increment("connection refused")
    >>> b.failures, b.delay()
    (1, 0.0)
    >>> b = b.increment("connection refused")
    >>> b.delay(), b.history
    (2.0, ('connection refused', 'connection refused'))
    >>> b.reset().failures
    0
    """

    policy: ReconnectPolicy
    failures: int = 0  #: consecutive failures (attempts that failed, connections that dropped early)
    auth_failures: int = 0  #: consecutive credential refusals among them
    last_auth: bool = False  #: the last failure was a credential refusal
    history: tuple[str, ...] = ()  #: the reasons of the last few failures, oldest first

    def increment(self, reason: str = "", *, auth: bool = False) -> Backoff:
        """A new Backoff with one more failure (``auth``: a credential refusal)."""
        return Backoff(
            self.policy,
            self.failures + 1,
            self.auth_failures + 1 if auth else self.auth_failures,
            auth,
            (*self.history, reason)[-10:],
        )

    def reset(self) -> Backoff:
        """A new Backoff with no failures (a connection stayed up, a session was confirmed)."""
        if not self.failures and not self.history and not self.last_auth and not self.auth_failures:
            return self  # already (immutable): not a new object per confirmed Bayeux connect
        return Backoff(self.policy)

    def delay(self, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before the next attempt (0 before any failure)."""
        if self.failures == 0:
            return 0.0
        if self.last_auth:
            return self.policy.auth_delay(self.auth_failures)
        return self.policy.delay(self.failures - 1, rand)

    def restart_delay(self, base: float, rand: Callable[[], float] = random.random) -> float:
        """``base`` plus the policy's ``restart_jitter`` spread, for the first retry after a
        disconnect the server initiated (see :class:`ReconnectPolicy`)."""
        return base + self.policy.restart_jitter * rand()

    @property
    def exhausted(self) -> bool:
        """True when ``max_attempts`` consecutive failures were exceeded: stop."""
        limit = self.policy.max_attempts
        return limit is not None and self.failures > limit

    @property
    def stop_on_auth(self) -> bool:
        """The last failure was a credential refusal and the policy says to stop then."""
        return self.last_auth and self.policy.stop_on_auth_failure


class SharedBackoff:
    """The one slot holding a client's current :class:`Backoff`.

    The engine owns it and lends it to the adapter (``adapter.backoff``), so in-session retries
    (a Bayeux connect refused on a working connection) and reconnects count on the same
    counters.  Only the I/O thread uses it.

    >>> shared = SharedBackoff(ReconnectPolicy(instant_retries=0, interval=1, step=1, jitter=0))
    >>> shared.fail("connect refused"), shared.fail("connect refused")
    (1.0, 2.0)
    >>> shared.succeeded(); shared.current.failures
    0
    """

    __slots__ = ("current",)

    def __init__(self, policy: ReconnectPolicy) -> None:
        self.current = Backoff(policy)

    @property
    def policy(self) -> ReconnectPolicy:
        return self.current.policy

    def fail(self, reason: str = "", *, auth: bool = False) -> float:
        """Count one failure; returns the delay before the next try."""
        self.current = self.current.increment(reason, auth=auth)
        return self.current.delay()

    def succeeded(self) -> None:
        self.current = self.current.reset()

    def pending_delay(self) -> float:
        """The delay the counters give now, without counting a new failure."""
        return self.current.delay()


def _headers(value: Mapping[str, str]) -> dict[str, str]:
    return header_map(value, "headers")


def _subprotocols(value: Sequence[str]) -> tuple[str, ...]:
    # Each a token (RFC 6455 4.1); never shown: some servers carry a credential in one.
    if isinstance(value, (str, bytes)):
        raise ConfigurationError(
            f"subprotocols takes a list of names, e.g. subprotocols=['v1.json'], got one {type(value).__name__} "
            "(it would be read as a list of characters)"
        )
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise ConfigurationError(
            f"subprotocols takes a list of names, e.g. subprotocols=['v1.json'], got a {type(value).__name__}"
        )
    out = tuple(value)
    for i, name in enumerate(out):
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            what = f"a {type(name).__name__}" if not isinstance(name, str) else "not a token (letters, digits, -._...)"
            raise ConfigurationError(f"subprotocols[{i}] must be a subprotocol name, got {what}")
    return out


def _origin(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(
            f"origin must be a str such as 'https://app.example.com' (or None), got a {type(value).__name__}"
        )
    value = value.strip()
    if _CONTROL_IN_VALUE.search(value):
        raise ConfigurationError(
            "origin contains a line break or another control character: it would break the request"
        )
    return value


def _cookies(value: str | Mapping[str, str] | None) -> str | Mapping[str, str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if _CONTROL_IN_VALUE.search(value):
            raise ConfigurationError(
                "cookies contains a line break or another control character (not shown: it is a secret): "
                "it would break the request; check where the value is read from"
            )
        return value
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            "cookies must be a Cookie header value ('a=1; b=2') or a mapping of cookie names to values "
            f"({{'JSESSIONID': '...'}}), got a {type(value).__name__}"
        )
    out: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ConfigurationError(
                f"cookies: a cookie name must be a token (letters, digits, -._...), got {name!r:.40}"
            )
        if not isinstance(text, str):
            raise ConfigurationError(f"cookies[{name!r}] must be a str, got a {type(text).__name__}")
        text = text.strip()
        if _CONTROL_IN_VALUE.search(text) or ";" in text:
            raise ConfigurationError(
                f"cookies[{name!r}]: the value contains ';', a line break or another control character (not shown: "
                "it is a secret): check where the value is read from"
            )
        out[name] = text
    return out


def _verify(value: bool) -> bool:
    # Settings files and environment variables give strings: "false"/"true" (and "0"/"1",
    # "off"/"on") are read as the booleans they spell, as numbers are read from numeric strings;
    # anything else is refused, never taken for true ("false" is a non-empty string).
    read = flag(value, "verify")
    if read is not None:
        return read
    if isinstance(value, os.PathLike) or (isinstance(value, str) and ("/" in value or "\\" in value or "." in value)):
        raise ConfigurationError(
            "verify takes True or False; a CA file or directory goes to ca_bundle= (verify='/path/ca.pem' is "
            "the requests idiom: here write ca_bundle='/path/ca.pem')"
        )
    if isinstance(value, str):
        raise ConfigurationError(f"verify takes True or False (or the strings 'true'/'false'), got {value!r:.40}")
    raise ConfigurationError(f"verify takes True or False, got a {type(value).__name__}")


def _ca_bundle(value: str | os.PathLike[str] | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigurationError(f"ca_bundle must be the path of a CA file or directory, got a {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise ConfigurationError("ca_bundle must be the path of a CA file or directory")
    if not os.path.exists(path):
        # The CLI's wording for --ca-bundle (a usage error there).
        raise ConfigurationError(f"ca_bundle: no such file or directory: {path}")
    return path


@attrs.frozen(repr=False)
class ConnectOptions:
    """How to open the websocket.

    Attributes:
        headers: extra HTTP headers for the handshake (values are redacted in logs).
        subprotocols: offered subprotocols (adapters add their own, e.g. ActionCable's).
        origin: the ``Origin`` header; ``None`` lets the adapter choose (ActionCable derives it
            from the URL), ``""`` sends none.
        cookies: a ``Cookie`` header value, or a mapping of cookie names to values.
        verify: verify TLS certificates (on by default); ``ca_bundle`` a CA file or directory;
            ``ssl_context`` a ready :class:`ssl.SSLContext` (overrides both).
        proxy: ``"http://[user:pass@]host:port"`` (or ``socks5://``, ``socks5h://``,
            ``socks4://``, ``socks4a://``: SOCKS needs no extra package; the ``h``/``a`` forms
            let the proxy resolve the server's name, the others resolve it here; websocket
            only, long-polling refuses SOCKS); ``None`` honours
            ``http_proxy`` / ``https_proxy`` / ``no_proxy`` from the environment when
            ``trust_env`` is true.  An ``https://`` proxy is refused (it would be spoken to in
            plain HTTP); the websocket itself stays TLS end to end through any proxy.
        connect_timeout: seconds for the whole opening handshake (TCP, TLS, HTTP upgrade): a
            server trickling its answer cannot keep the client connecting past it.  Redirects
            are never followed: a 3xx answer is a :class:`~realtime_sync.ConnectError`.
        max_frame_size: websocket messages larger than this (one frame, or the total of a
            fragmented message) are refused before they are read into memory: an ``error``
            event, the message is skipped as it streams past and the websocket carries on (a
            long-polling response that large ends that connection).
        ping_interval / ping_timeout: websocket pings for protocols that have no heartbeat of
            their own (Jifeline): a ping every ``ping_interval`` seconds of silence, and the
            connection is declared dead when nothing arrives within ``ping_timeout`` after it.

    Misuse is a :class:`~realtime_sync.ConfigurationError` here, not a failure at every
    connect: headers that are not a mapping of ``str`` to ``str`` (or with a line break inside a
    value: each value's surrounding whitespace is stripped, as HTTP ignores it), a single string
    as ``subprotocols``, ``verify`` that is not a boolean (the strings ``"true"``/``"false"`` of
    a settings file are read as such; a path goes to ``ca_bundle=``), ``verify=False`` with a
    ``ca_bundle``, a ``ca_bundle`` that does not exist, a proxy URL without a host or with a bad
    port.

    >>> opts = ConnectOptions(headers={"X-Trace": "1"}, subprotocols=["v1.json"], connect_timeout=5)
    >>> ConnectOptions(verify="false").verify
    False
    """

    # Typed converters (not ``dict``/``tuple``): the attrs plugin types each parameter from its
    # converter, and a user's ``headers={"X-Trace": "1"}`` must pass ``mypy --strict``.
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_headers)
    subprotocols: Sequence[str] = attrs.field(default=(), converter=_subprotocols)
    origin: str | None = attrs.field(default=None, converter=_origin)
    cookies: str | Mapping[str, str] | None = attrs.field(default=None, converter=_cookies)
    verify: bool = attrs.field(default=True, converter=_verify)
    ca_bundle: str | None = attrs.field(default=None, converter=_ca_bundle)
    ssl_context: ssl.SSLContext | None = attrs.field(default=None)
    proxy: str | None = attrs.field(default=None)
    trust_env: bool = True
    # Numbers also as numeric strings ("5"), as settings files and environment variables give them.
    # (mypy's attrs plugin does not follow converter factories: hence the ignores.)
    connect_timeout: float = attrs.field(
        default=10.0,
        converter=number_converter(unit="seconds"),  # type: ignore[misc]
        validator=_non_negative,
    )
    max_frame_size: int = attrs.field(
        default=16 * 1024 * 1024,
        converter=number_converter(integer=True, unit="bytes"),  # type: ignore[misc]
        validator=_non_negative,
    )
    ping_interval: float | None = attrs.field(
        default=20.0,
        converter=number_converter(optional=True, unit="seconds"),  # type: ignore[misc]
        validator=_non_negative,
    )
    ping_timeout: float = attrs.field(
        default=10.0,
        converter=number_converter(unit="seconds"),  # type: ignore[misc]
        validator=_non_negative,
    )

    @proxy.validator
    def _check_proxy(self, _attr: attrs.Attribute[Any], value: str | None) -> None:
        # websocket-client speaks plain HTTP to an HTTP proxy: an https:// proxy would get the
        # CONNECT request and its credentials in clear.  The websocket itself stays TLS.
        if value is None:
            return
        if not isinstance(value, str):
            raise ConfigurationError(
                f"proxy must be one proxy URL such as 'http://host:3128' (or None), got a {type(value).__name__}"
                + (
                    " (a requests-style proxies dict is not read: give the URL itself)"
                    if isinstance(value, Mapping)
                    else ""
                )
            )
        scheme = value.split("://", 1)[0].lower() if "://" in value else "http"
        if scheme not in _PROXY_SCHEMES:
            raise ConfigurationError(
                f"proxy scheme {scheme!r} is not supported (use one of {', '.join(_PROXY_SCHEMES)}); an https:// "
                "proxy would be spoken to in plain HTTP: use http://host:port (the websocket stays TLS end to end)"
            )
        # Parsed as the transports parse it (_wsconn._proxy_kwargs): with no host they would
        # connect directly, past the proxy; a bad port fails every attempt.  The message never
        # shows the user name and password.
        parts = urllib.parse.urlsplit(value if "://" in value else "http://" + value)
        credentials = "***@" if "@" in parts.netloc else ""
        if not parts.hostname:
            raise ConfigurationError(
                f"proxy {scheme}://{credentials}... has no host: give 'http://[user:password@]host:port'"
            )
        try:
            port = parts.port
        except ValueError:
            port = -1
        if port is not None and not 0 < port < 65536:
            text = parts.netloc.rpartition("@")[2].rpartition(":")[2]
            raise ConfigurationError(
                f"proxy {scheme}://{credentials}{parts.hostname}:{text}: the port must be a number from 1 to "
                "65535, e.g. 'http://host:3128'"
            )

    @ssl_context.validator
    def _check_ssl_context(self, _attr: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and not isinstance(value, ssl.SSLContext):
            raise ConfigurationError(
                f"ssl_context must be an ssl.SSLContext (e.g. ssl.create_default_context(cafile=...)) or None, "
                f"got a {type(value).__name__}; for a CA file give ca_bundle='/path/ca.pem'"
            )

    def __attrs_post_init__(self) -> None:
        if not self.verify and self.ca_bundle is not None:
            raise ConfigurationError(
                "verify=False turns certificate checks off, and ca_bundle= gives the CA to check them with: "
                "pass one of them (ca_bundle= alone to trust a private CA)"
            )

    def __repr__(self) -> str:
        from ._redact import redact_headers

        return (
            f"ConnectOptions(headers={redact_headers(self.headers)!r}, subprotocols={self.subprotocols!r}, "
            f"origin={self.origin!r}, verify={self.verify!r}, proxy={'***' if self.proxy else None}, "
            f"connect_timeout={self.connect_timeout!r}, max_frame_size={self.max_frame_size!r})"
        )

    def cookie_header(self) -> str | None:
        if self.cookies is None:
            return None
        if isinstance(self.cookies, str):
            return self.cookies
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())


OVERFLOW_POLICIES = ("drop_oldest", "drop_newest")


@attrs.frozen
class DispatchOptions:
    """How events reach callbacks.

    Callbacks run on one dispatcher thread (``realtime_sync-dispatch``), in the order the events
    were received, never on the transport thread: a slow handler cannot delay a heartbeat.

    **Flow control** (``flow_control=True``, the default) comes first: once ``high_water``
    events (256) wait for the handlers, the transport stops reading the connection, and resumes
    when they are down to a quarter of it.  The data waits in the kernel and TCP makes the server
    wait (as python-websockets' sync client does); nothing is dropped, the pause does not count
    as a silent connection (no stale or ping-timeout reconnect), and timers (presence,
    keep-alives) go on.  Memory stays small and the garbage collector does not traverse
    thousands of queued events again and again.

    ``max_queue`` bounds the events waiting for the dispatcher (those being delivered
    included), ``max_queue_bytes`` their estimated size (default 64 MiB).  With flow control
    these bounds only meet what arrives decoded beyond the mark (the rest of one read, lifecycle
    events, a long-polling batch, a catch-up); with ``flow_control=False`` the client keeps
    reading whatever the handlers do, and the bounds decide.  When full, ``overflow``
    decides: ``"drop_oldest"`` (default: the newest state wins) or ``"drop_newest"``.  Every
    drop is counted in ``stats.dropped`` and reported by an ``error`` event of kind
    ``"overflow"`` (at most one per second).  For a snapshot or status feed where only the
    newest state matters, ``flow_control=False`` with a small ``max_queue`` sheds old states
    instead of making the server wait.

    >>> DispatchOptions(max_queue=1000, overflow="drop_newest").overflow
    'drop_newest'
    >>> DispatchOptions(flow_control=False).high_water
    256
    """

    max_queue: int = attrs.field(
        default=100_000,
        converter=number_converter(integer=True),  # type: ignore[misc]
    )
    overflow: str = attrs.field(default="drop_oldest")
    #: Bound of the waiting events in (estimated) bytes too, so a server sending large frames
    #: cannot grow the queue to ``max_queue`` times its frame size.  Same overflow policy.
    max_queue_bytes: int = attrs.field(
        default=64 * 1024 * 1024,
        converter=number_converter(integer=True, unit="bytes"),  # type: ignore[misc]
    )
    #: Flow control: when ``high_water`` events wait for the handlers, the transport stops
    #: reading the connection until they are down to a quarter of it, so TCP makes the server
    #: wait instead of the queue growing (``False``: keep reading and shed events by ``overflow``).
    flow_control: bool = attrs.field(default=True)
    high_water: int = attrs.field(
        default=256,
        converter=number_converter(integer=True),  # type: ignore[misc]
    )

    @flow_control.validator
    def _check_flow_control(self, _attr: attrs.Attribute[Any], value: bool) -> None:
        if not isinstance(value, bool):
            raise ConfigurationError(f"flow_control must be True or False, got {value!r}")

    @high_water.validator
    def _check_high_water(self, _attr: attrs.Attribute[Any], value: int) -> None:
        if value < 1:
            raise ConfigurationError(f"high_water must be >= 1, got {value!r}")

    @max_queue_bytes.validator
    def _check_max_queue_bytes(self, _attr: attrs.Attribute[Any], value: int) -> None:
        if not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"max_queue_bytes must be an int >= 1, got {value!r}")

    @max_queue.validator
    def _check_max_queue(self, _attr: attrs.Attribute[Any], value: int) -> None:
        # 0 would drop every event, even the overflow report saying so.
        if value < 1:
            raise ConfigurationError(f"max_queue must be >= 1, got {value!r}")

    @overflow.validator
    def _check_overflow(self, _attr: attrs.Attribute[Any], value: str) -> None:
        if value not in OVERFLOW_POLICIES:
            raise ConfigurationError(f"overflow must be one of {OVERFLOW_POLICIES}, got {value!r}")
