"""Exceptions raised by realtime_sync.

The tree::

    RealtimeSyncError                 root: catch this to catch everything we raise
    ├── ConfigurationError            you misused the API (bad option, wrong state, ...)
    │   └── ClientClosedError         the client was closed; create a new one
    │       └── ClientForkedError     the client belongs to the parent process of a fork
    ├── WaitTimeout                   wait_for()/iteration deadline passed (also a TimeoutError)
    └── RemoteError                   the peer misbehaved or refused us
        ├── ConnectError              the connection could not be opened
        │   └── AuthenticationError   the server refused our credentials (HTTP 401/403, ...)
        ├── ProtocolError             a frame broke the protocol's rules
        └── TokenError                a token provider could not produce a token
            └── TokenRefusedError     the token endpoint refused the client's credentials
                                      (also an AuthenticationError: same backoff, same stop)

Local errors (``ConfigurationError``) are raised to the caller at once.  Remote errors
happen on the transport thread; they are reported as ``error`` events (``event.data`` is an
:class:`~realtime_sync.ErrorInfo` whose ``exception`` is one of these) and the client carries on
according to its reconnect policy.

Messages never contain secrets: everything built from a URL, header or frame is passed through
:func:`realtime_sync.redact` first.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ClientClosedError",
    "ClientForkedError",
    "ConfigurationError",
    "ConnectError",
    "ProtocolError",
    "RealtimeSyncError",
    "RemoteError",
    "TokenError",
    "TokenRefusedError",
    "WaitTimeout",
]


class RealtimeSyncError(Exception):
    """Root of every exception raised by realtime_sync."""


class ConfigurationError(RealtimeSyncError, ValueError):
    """The API was used in a way it does not support; the message says what to do instead."""


class ClientClosedError(ConfigurationError):
    """The client is closed. Clients are not restartable: create a new one."""


class ClientForkedError(ClientClosedError):
    """The client was started in another process (this one is a fork of it).

    Threads do not survive ``fork()``, so a client inherited by a child process (gunicorn
    ``--preload``, Celery prefork, ``multiprocessing`` with the fork start method) cannot run.
    Create the client in the child, after the fork.
    """


class WaitTimeout(RealtimeSyncError, TimeoutError):
    """A blocking wait (``wait_for``, event iteration) reached its deadline."""


class RemoteError(RealtimeSyncError):
    """The server or the network did something we could not accept."""


class ConnectError(RemoteError):
    """Opening the websocket failed (DNS, TCP, TLS, proxy or HTTP handshake).

    ``status`` is the HTTP status of a refused handshake, when there was one.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(ConnectError):
    """The server refused our credentials (HTTP 401/403, or a protocol-level refusal), or a proxy
    refused our proxy credentials (HTTP 407, a SOCKS5 refusal of the user name and password)."""


class ProtocolError(RemoteError):
    """A frame did not follow the protocol (not JSON, wrong shape, wrong field type, too big).

    ``code`` is the websocket close code (RFC 6455 7.4.1) when the server broke the websocket
    framing rules and the connection was failed with it (1002 protocol error, 1007 invalid
    UTF-8, 1009 too big); None for an application-level frame error (the connection carries on).

    >>> ProtocolError("masked frame from the server", code=1002).code
    1002
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TokenError(RemoteError):
    """A token provider failed to produce a token (e.g. the OAuth2 endpoint refused the secret)."""


class TokenRefusedError(TokenError, AuthenticationError):
    """The token endpoint refused the client's credentials (OAuth ``invalid_client``, HTTP 401).

    It is an :class:`AuthenticationError` too: a client treats it as refused credentials (an
    ``error`` event of kind ``"auth"``, the slow ``auth_failure_delay`` backoff, a stop with
    ``stop_on_auth_failure``, and :meth:`~realtime_sync.Client.wait_connected` raises it at
    once) rather than retrying the token endpoint every few seconds with a secret that cannot work.
    """
