"""``CometDClient``: a generic Bayeux 1.0 (CometD) client, over websocket or HTTP long-polling.

The protocol lives in :mod:`realtime_sync.protocols.bayeux` (sans-I/O), the long-polling
transport and the websocket-first fallback in :mod:`realtime_sync.transport_longpoll`; this
module is the facade that ties them to the core :class:`~realtime_sync.Client`.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Mapping, overload

import attrs

from ._cookies import CookieJar
from ._csrf import CsrfSource, CsrfToken
from ._redact import register_secret
from ._validate import number, secret_text
from .client import Client, _Timeout, _Where
from .config import ReconnectPolicy
from .events import Event
from .exceptions import ConfigurationError
from .protocols.base import ConnectRequest
from .protocols.bayeux import AckExtension, AuthExtension, BayeuxAdapter, Decoder, SessionInfo, validate_channel
from .transport_longpoll import TRANSPORTS, make_connection_factory

__all__ = ["CometDClient"]


def split_userinfo(url: Any) -> tuple[Any, str | None, str | None]:
    """``(url without its userinfo, user, password)``, both percent-decoded (``None``, ``None``
    when the URL has none; a user without a password has the empty one, as curl and requests
    read it).  The password is registered as a secret at once.

    >>> split_userinfo("https://agent1:p%40ss@gws.example.com/api/v2/notifications")
    ('https://gws.example.com/api/v2/notifications', 'agent1', 'p@ss')
    """
    if not isinstance(url, str) or "://" not in url:
        return url, None, None
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError:
        return url, None, None  # the URL's validation says what is wrong with it
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, quoted = userinfo.partition(":")
    password = urllib.parse.unquote(quoted)
    for secret in {password, quoted} - {""}:
        register_secret(secret)
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), urllib.parse.unquote(user), password


#: The event name whose data is typed (SessionInfo), for the overloads of wait_for() and events().
_HandshakeEvents = Literal["handshake"]


class CometDClient(Client[BayeuxAdapter]):
    """A Bayeux 1.0 client for any CometD server (CometD, faye, Genesys GWS, Salesforce...).

    The URL may be ``http(s)://`` or ``ws(s)://``: each transport derives its own from it.
    ``transport="auto"`` (default) tries a websocket and falls back to long-polling when the
    server refuses the upgrade; ``"websocket"`` or ``"long-polling"`` forces one.

    Events: ``message`` for every data message (``event.data`` is the message's ``data``,
    ``event.entity_id`` its channel, ``event.raw`` the whole Bayeux message); ``handshake``
    (:class:`~realtime_sync.protocols.bayeux.SessionInfo`) when a session starts, from the second
    one on meaning the previous session was lost; and the lifecycle events.  Subscriptions are
    remembered and restored on every new session; ``subscribed`` / ``subscription_rejected``
    report the server's answer (with its error).

    Args:
        url: the CometD endpoint, e.g. ``https://host/cometd``.
        transport: ``"auto"`` | ``"websocket"`` | ``"long-polling"``.
        username, password: HTTP Basic credentials sent on every request (both transports).
            Credentials in the URL (``https://user:password@host/...``, percent-encoded) are
            taken as these, as curl and requests do; giving both is refused.  Prefer the
            options: URLs end up in logs and shell histories.
        token: sent as ``Authorization: Bearer`` (a callable is called again on each attempt).
        ext: fields added to the handshake's ``ext`` (e.g. ``{"auth": token}``); a mapping or a
            callable returning one (called at each handshake).
        extensions: Bayeux extensions (objects with ``outgoing(msg)`` / ``incoming(msg)``).
        ack: use CometD's acknowledged-messages extension (:class:`AckExtension`): ordered,
            at-least-once delivery of data messages, with a server that has it (the CometD
            servers do; others ignore it).
        max_network_delay: seconds allowed for a reply beyond the server's hold time; a request
            unanswered past it means a dead connection (the reference client's 10 s).
        csrf: a CSRF token header on every long-polling request, as Genesys GWS requires with
            CSRF protection on: ``True`` reads it from ``GET https://HOST/api/v2/me`` (the
            ``X-CSRF-HEADER`` / ``X-CSRF-TOKEN`` response headers) with the client's credentials
            and cookies; an http(s) URL reads it from there; a callable returns the token (or a
            ``(header name, token)`` pair).  Fetched before the connection's first request,
            and once more after a 403 (see :class:`~realtime_sync.GenesysChatClient`).
        **options: any :class:`~realtime_sync.ConnectOptions` / :class:`~realtime_sync.DispatchOptions`
            field (``cookies={"JSESSIONID": ...}``, ``headers``, ``connect_timeout``, ``proxy``...).

    Reconnecting follows the reference client (cometd-javascript): after failures the delay grows
    linearly by 1 s up to 60 s, within a session (failed connects or handshakes on a working
    connection: the adapter's own backoff, reset by the next success) as well as between
    connections (:attr:`default_reconnect`; there the count resets once a connection has stayed
    up ``stable_after`` seconds, where the reference resets on the first successful connect).
    A new connection resumes the session when it may still be alive (no message lost), else
    handshakes and subscribes again.

    >>> client = CometDClient("https://push.example.com/cometd")          # doctest: +SKIP
    >>> client.subscribe("/chat/demo")                                     # doctest: +SKIP
    >>> @client.on("message")                                              # doctest: +SKIP
    ... def show(event):
    ...     print(event.entity_id, event.data)
    >>> with client:                                                       # doctest: +SKIP
    ...     client.publish("/chat/demo", {"text": "hello"})
    ...     client.wait_for("message", timeout=10)
    """

    #: The reference client's backoff: +1 s per consecutive failure, capped at 60 s (a little
    #: jitter on top, so a fleet does not reconnect in lockstep after a server restart).
    # Each transport derives its own URL: http(s) for long-polling, ws(s) for the websocket.
    url_schemes = ("https", "http", "wss", "ws")
    url_example = "https://host/cometd"

    default_reconnect = ReconnectPolicy(instant_retries=0, interval=1.0, step=1.0, max_interval=60.0, jitter=0.1)

    if TYPE_CHECKING:
        # For type checkers only (at run time these are Client's methods): wait_for() and
        # events() of "handshake" give Event[SessionInfo]; "message" (whatever the server
        # publishes), any other name or a pattern give Event[Any].

        @overload
        def wait_for(
            self, name: _HandshakeEvents, timeout: _Timeout = None, where: _Where = None
        ) -> Event[SessionInfo]: ...
        @overload
        def wait_for(self, name: str, timeout: _Timeout = None, where: _Where = None) -> Event[Any]: ...
        def wait_for(self, name: str, timeout: _Timeout = None, where: _Where = None) -> Event[Any]: ...

        @overload
        def events(
            self, name: _HandshakeEvents, *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[SessionInfo]]: ...
        @overload
        def events(
            self, name: str = "*", *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[Any]]: ...
        def events(
            self, name: str = "*", *, timeout: _Timeout = None, limit: int | None = None
        ) -> Iterator[Event[Any]]: ...

    def __init__(
        self,
        url: str,
        *,
        transport: str = "auto",
        username: str | None = None,
        password: str | None = None,
        ext: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
        extensions: Iterable[Any] = (),
        ack: bool = False,
        max_network_delay: float = 10.0,
        decoder: Decoder | None = None,
        csrf: CsrfSource | None = None,
        **options: Any,
    ) -> None:
        url, url_user, url_password = split_userinfo(url)
        if url_user is not None:
            if username is not None or password is not None:
                raise ConfigurationError(
                    "credentials given twice: in the URL (user:password@host) and as username=/password=; "
                    "keep one: username=/password= with a URL without them (better: URLs end up in logs), "
                    "or the URL's alone"
                )
            username, password = url_user, url_password
        if transport not in TRANSPORTS:
            raise ConfigurationError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        token_source = None
        if csrf is not None and csrf is not False:
            if transport == "websocket":
                raise ConfigurationError(
                    "csrf= applies to long-polling (GWS checks the token on POSTs; the websocket's only "
                    "HTTP request is its upgrade, a GET): use transport='auto' or 'long-polling', or drop csrf="
                )
            token_source = CsrfToken(csrf, url)
        if (username is None) != (password is None):
            raise ConfigurationError("username and password go together (HTTP Basic)")
        if username is not None and options.get("token") is not None:
            # Basic credentials win in the Authorization header: the token would be dropped.
            raise ConfigurationError(
                "give either token= (sent as Authorization: Bearer) or username=/password= (HTTP Basic), not both: "
                "the request has one Authorization header"
            )
        for what, value in (("username", username), ("password", password)):
            if value is not None:
                if not isinstance(value, str):
                    raise ConfigurationError(f"{what} must be a str, got a {type(value).__name__}")
                # Not stripped (a password may end with a space); a line break is a file's newline.
                secret_text(value, what, strip=False)
        max_network_delay = number(max_network_delay, "max_network_delay", positive=True, unit="seconds")
        basic: str | None = None
        if username is not None and password is not None:
            register_secret(password)
            basic = base64.b64encode(f"{username}:{password}".encode()).decode()
            register_secret(basic)
        exts = list(extensions)
        if ext is not None:
            exts.insert(0, AuthExtension(ext))
        if ack and not any(isinstance(e, AckExtension) for e in exts):
            exts.append(AckExtension())
        adapter = BayeuxAdapter(decoder=decoder, extensions=exts, max_network_delay=max_network_delay)
        # One jar for both transports: cookies given as an option seed it, the server's are kept.
        jar = CookieJar(url=url)
        name = options.get("name") or type(self).__name__
        factory = make_connection_factory(transport, jar, name, lambda: adapter.transport_hint, csrf=token_source)
        super().__init__(url, adapter=adapter, connection_factory=factory, **options)
        cookies = self.connect_options.cookie_header()
        if cookies:
            jar.update([c.strip() for c in cookies.split(";") if "=" in c])
        #: The cookies both transports send and update (thread-safe).
        self.cookies = jar
        self._basic = basic
        if password is not None and basic is not None:
            # Registered again before every connect with the client's other secrets (the
            # registry keeps only the most recent ones).
            self._secrets += (password, basic)

    # -- wiring -----------------------------------------------------------------------------

    def _connect_request(self, token: str | None) -> ConnectRequest:
        # Basic credentials win over a bearer token; cookies come from the shared jar (it also
        # holds those the server set since), not only from the options.
        request = super()._connect_request(None if self._basic is not None else token)
        headers = dict(request.headers)
        if self._basic is not None:
            headers["Authorization"] = f"Basic {self._basic}"
        return attrs.evolve(request, headers=headers, cookies=self.cookies.header())

    # -- intents ----------------------------------------------------------------------------

    def subscribe(self, channel: str) -> None:
        """Subscribe to ``channel`` (wildcards ``/a/*`` and ``/a/**`` allowed); kept across
        reconnects and new sessions.  The answer arrives as ``subscribed`` or
        ``subscription_rejected``."""
        validate_channel(channel, subscribe=True)
        self._call(BayeuxAdapter.subscribe, channel)

    def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel`` (forgotten for later sessions too)."""
        validate_channel(channel, subscribe=True)
        self._call(BayeuxAdapter.unsubscribe, channel)

    def publish(self, channel: str, data: Any) -> None:
        """Publish ``data`` (JSON-serialisable) to ``channel``.  Held until a session exists.

        A publish that may not have arrived is reported, never re-sent (CometD's own clients
        fail it too: cometd.js calls the publish callback with ``successful: false``): one
        ``error`` event of kind ``"publish"``, ``entity_id`` the channel, ``raw`` the publish
        ``{"id", "channel", "data"}``, when the server refused it, when the request carrying
        it failed (an HTTP error status, a dropped connection, no reply in time), or when it was
        still waiting for a session as the client closed or the server said stop.  Send it
        again if it must arrive (it may have arrived: a reply can be lost with its connection).

            @client.on("error")
            def resend(event):
                if event.data.kind == "publish":
                    client.publish(event.raw["channel"], event.raw["data"])
        """
        validate_channel(channel, subscribe=False)
        self._call(BayeuxAdapter.publish, channel, data)

    def add_extension(self, extension: Any) -> None:
        """Add a Bayeux extension (``outgoing(message)`` / ``incoming(message)``, each returning
        the message or ``None`` to drop it).  It runs on the transport thread."""
        if not (hasattr(extension, "outgoing") or hasattr(extension, "incoming")):
            raise ConfigurationError("an extension needs an outgoing(message) and/or incoming(message) method")
        self._call(BayeuxAdapter.add_extension, extension)

    def remove_extension(self, extension: Any) -> None:
        self._call(BayeuxAdapter.remove_extension, extension)

    @property
    def transport(self) -> str:
        """The transport of the current (or last) connection: ``"websocket"`` or ``"long-polling"``."""
        return self.snapshot.transport or "websocket"
