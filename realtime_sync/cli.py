"""The ``realtime-sync`` command (also ``python -m realtime_sync``).

Commands::

    realtime-sync demo [jifeline|voxsig|genesys|all]     fake servers + a real client, scripted
    realtime-sync listen <vendor> [options]              print a real server's events until Ctrl-C
    realtime-sync fake-server <vendor> [--port N]        run a fake server for local development

Secrets are never needed on the command line (they would end up in the shell history and in
``ps``): ``listen`` reads them from environment variables, or asks for them when it runs in a
terminal.  Every command has ``--help``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sys
import threading
from typing import Any, Callable, Sequence, TextIO

import attrs

from ._redact import get_logger, is_secret_header, redact, register_secret
from ._version import __version__
from .events import LIFECYCLE_EVENTS, Event
from .exceptions import ConfigurationError, RealtimeSyncError

__all__ = ["build_parser", "main"]

log = get_logger("realtime_sync.cli")

#: The vendors ``listen`` and ``fake-server`` know (``jifeline`` is short for ``jifeline-customer``).
CLI_VENDORS = ("jifeline-customer", "jifeline-partner", "voxsig", "genesys")
_ALIASES = {"jifeline-customer": ["jifeline"], "jifeline-partner": ["partner"]}

_LISTEN_EPILOG = """\
Secrets come from environment variables, or from a prompt when stdin is a terminal; never from
the command line:
  jifeline-customer  JIFELINE_TOKEN (optional)
  jifeline-partner   JIFELINE_TOKEN, or JIFELINE_CLIENT_ID + JIFELINE_CLIENT_SECRET (OAuth2)
  voxsig             VOXSIG_PUBSUB_TOKEN
  genesys            GENESYS_PASSWORD (with --username / GENESYS_USERNAME), GENESYS_JSESSIONID
  any vendor         REALTIME_SYNC_TOKEN, when the vendor's own variable is not set

Run `realtime-sync listen VENDOR --help` for that vendor's options and examples.

"""

_LISTEN_OUTPUT = """\
Events go to stdout (one line each, or JSON lines with --json); lifecycle events (connected,
disconnected, reconnecting, subscribed, error...) go to stderr, and to stdout too when named
with --event.  Exit status: 0 after Ctrl-C/SIGTERM/--duration/--count, 1 when the client
stopped by itself (credentials refused, the server said not to reconnect, a refused
subscription), 2 on usage errors.  With --redis a listener serves on: a tenant whose client
stopped by itself is released, logged with the reason, and taken again after 60 s.
"""

#: Per vendor: where its secret comes from, and examples (a real server; the fake one to try).
_VENDOR_HELP = {
    "jifeline-customer": """\
Secret: JIFELINE_TOKEN (optional), else REALTIME_SYNC_TOKEN, or a prompt in a terminal.

Examples:
  JIFELINE_TOKEN=... realtime-sync listen jifeline-customer --url wss://HOST/ws --ticket 32423
  realtime-sync listen jifeline --url wss://HOST/ws --connector 17 --all-snapshots --json

Try it without an account: `realtime-sync fake-server jifeline` in another terminal, then
  realtime-sync listen jifeline-customer --url ws://127.0.0.1:8765/ --ticket 32423
""",
    "jifeline-partner": """\
Secret: JIFELINE_TOKEN (else REALTIME_SYNC_TOKEN), or JIFELINE_CLIENT_ID + JIFELINE_CLIENT_SECRET
(OAuth2 client credentials, renewed for you), or a prompt in a terminal.

Examples:
  JIFELINE_CLIENT_ID=... JIFELINE_CLIENT_SECRET=... \\
      realtime-sync listen jifeline-partner --system-event tickets.ticket.created --json
  JIFELINE_TOKEN=... realtime-sync listen partner --cluster 002 --connector 5f0c...-uuid

Try it without an account: `realtime-sync fake-server jifeline-partner` in another terminal, then
  JIFELINE_TOKEN=any realtime-sync listen jifeline-partner --url ws://127.0.0.1:8765/ \\
      --system-event tickets.ticket.created
""",
    "voxsig": """\
Secret: VOXSIG_PUBSUB_TOKEN (the agent's or the contact's pubsub token; else REALTIME_SYNC_TOKEN),
or a prompt in a terminal.  An agent's token needs --account-id and --user-id; a contact's token
no --user-id.  A token the server refuses (the RoomChannel subscription is rejected, or not
confirmed within --confirm-timeout) exits with status 1 and says what to check.

Examples:
  VOXSIG_PUBSUB_TOKEN=... realtime-sync listen voxsig --account-id 1 --user-id 7
  VOXSIG_PUBSUB_TOKEN=... realtime-sync listen voxsig --url https://chat.example.com/cable \\
      --account-id 1 --user-id 7 --event 'message.*' --json

Try it without an account: `realtime-sync fake-server voxsig` in another terminal, then
  VOXSIG_PUBSUB_TOKEN=user-token-1 realtime-sync listen voxsig --url ws://127.0.0.1:8765/cable \\
      --account-id 1 --user-id 7 --event 'message.*' --json
""",
    "genesys": """\
Secret: GENESYS_PASSWORD (with --username or GENESYS_USERNAME; HTTP Basic), GENESYS_JSESSIONID
(a session cookie), REALTIME_SYNC_TOKEN (a bearer token), or a prompt in a terminal.

Examples:
  GENESYS_PASSWORD=... realtime-sync listen genesys --url https://gws.example.com/api/v2/notifications \\
      --username agent1 --event 'chat.*'
  realtime-sync listen genesys --url https://gws.example.com --transport long-polling --json

Try it without an account: `realtime-sync fake-server genesys` in another terminal, then
  realtime-sync listen genesys --url http://127.0.0.1:8765/api/v2/notifications
""",
}


def _vendor_epilog(vendor: str) -> str:
    return _VENDOR_HELP[vendor] + "\n" + _LISTEN_OUTPUT


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _env_default(*names: str, default: str | None = None) -> str | None:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return default


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``realtime-sync`` (every command has ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="realtime-sync",
        description="Real-time updates from Jifeline, Voxsig (ActionCable) and Genesys (CometD), in a terminal.",
        epilog="Start with:  realtime-sync demo",
        formatter_class=_Formatter,
    )
    parser.add_argument("-V", "--version", action="version", version=f"realtime-sync {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    # -- demo -------------------------------------------------------------------------------
    demo = commands.add_parser(
        "demo",
        help="play a short scenario against built-in fake servers (no network)",
        description=(
            "Start the built-in fake servers on 127.0.0.1 and a real client, and play a short scenario:\n"
            "subscriptions, live events, a dropped connection and the recovery, a bad frame.\n"
            "Exits by itself (status 0) in a few seconds; needs no network and no account."
        ),
        formatter_class=_Formatter,
    )
    demo.add_argument(
        "vendor",
        nargs="?",
        default="all",
        choices=["jifeline", "voxsig", "genesys", "all"],
        help="which scenario to play (default: all)",
    )
    demo.add_argument(
        "--pace",
        type=float,
        default=0.15,
        metavar="SECONDS",
        help="pause before each scenario step, for the reader (default 0.15; 0 = full speed)",
    )
    demo.set_defaults(func=_cmd_demo)

    # -- listen -----------------------------------------------------------------------------
    listen = commands.add_parser(
        "listen",
        help="connect to a real server and print its events until Ctrl-C",
        description="Connect to a real server and print its events until Ctrl-C, reconnecting as the library does.",
        epilog=_LISTEN_EPILOG + _LISTEN_OUTPUT,
        formatter_class=_Formatter,
    )
    vendors = listen.add_subparsers(dest="vendor", metavar="VENDOR", required=True)
    common = _listen_common()

    p = vendors.add_parser(
        "jifeline-customer",
        aliases=_ALIASES["jifeline-customer"],
        parents=[common],
        formatter_class=_Formatter,
        help="the Jifeline customer websocket (ticket, connection, connector snapshots)",
        description="The Jifeline customer websocket: ticket.updated, connection.updated, connector.updated.",
        epilog=_vendor_epilog("jifeline-customer"),
    )
    p.add_argument(
        "--url",
        default=_env_default("JIFELINE_CUSTOMER_URL"),
        help="the customer websocket URL of your cluster (env JIFELINE_CUSTOMER_URL)",
    )
    p.add_argument(
        "--ticket", type=int, action="append", default=[], metavar="ID", help="subscribe to a ticket (repeatable)"
    )
    p.add_argument("--connector", type=int, action="append", default=[], metavar="ID", help="subscribe to a connector")
    p.add_argument("--connection", action="append", default=[], metavar="UUID", help="subscribe to a connection")
    p.add_argument("--token-in-query", action="store_true", help="send the token as ?access_token= instead of a header")
    p.add_argument(
        "--all-snapshots", action="store_true", help="print every periodic snapshot (default: only those that changed)"
    )
    p.set_defaults(vendor="jifeline-customer")

    p = vendors.add_parser(
        "jifeline-partner",
        aliases=_ALIASES["jifeline-partner"],
        parents=[common],
        formatter_class=_Formatter,
        help="the Jifeline partner websocket (connector statuses, system events)",
        description="The Jifeline partner websocket: connector.status and system events (tickets.ticket.created...).",
        epilog=_vendor_epilog("jifeline-partner"),
    )
    p.add_argument(
        "--url",
        default=_env_default("JIFELINE_PARTNER_URL"),
        help="the partner websocket URL (env JIFELINE_PARTNER_URL; default: the cluster's)",
    )
    p.add_argument(
        "--cluster", default=_env_default("JIFELINE_CLUSTER"), help="cluster number: 001 (EU, default), 002 (US)"
    )
    p.add_argument(
        "--connector", action="append", default=[], metavar="UUID", help="subscribe to a connector (repeatable)"
    )
    p.add_argument(
        "--system-event",
        action="append",
        default=[],
        metavar="TYPE",
        help="subscribe to a system event type, e.g. tickets.ticket.created (repeatable)",
    )
    p.add_argument(
        "--token-url",
        default=_env_default("JIFELINE_TOKEN_URL"),
        help="OAuth2 token endpoint for JIFELINE_CLIENT_ID/SECRET (default: the cluster's /oauth2/token)",
    )
    p.add_argument("--token-in-query", action="store_true", help="send the token as ?access_token= instead of a header")
    p.add_argument(
        "--gap-recovery",
        action="store_true",
        help="after a reconnect, fetch the system events missed meanwhile from the REST API",
    )
    p.add_argument(
        "--all-snapshots",
        action="store_true",
        help="print every periodic connector status (default: only those that changed)",
    )
    p.set_defaults(vendor="jifeline-partner")

    p = vendors.add_parser(
        "voxsig",
        parents=[common],
        formatter_class=_Formatter,
        help="Voxsig (Chatwoot-style ActionCable RoomChannel)",
        description="Voxsig real-time events: message.created, conversation.*, notification.*, presence.update...",
        epilog=_vendor_epilog("voxsig"),
    )
    p.add_argument(
        "--url",
        default=_env_default("VOXSIG_URL", default="wss://app.voxsig.com/cable"),
        help="the cable URL (env VOXSIG_URL; default wss://app.voxsig.com/cable)",
    )
    p.add_argument(
        "--account-id", type=int, default=_env_int("VOXSIG_ACCOUNT_ID"), help="account id (env VOXSIG_ACCOUNT_ID)"
    )
    p.add_argument(
        "--user-id",
        type=int,
        default=_env_int("VOXSIG_USER_ID"),
        help="the agent's user id (env VOXSIG_USER_ID); omit for a contact's token",
    )
    p.add_argument(
        "--presence-interval",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="seconds between presence updates (default 15: Chatwoot keeps an agent online 20 s; 0 = none)",
    )
    p.add_argument(
        "--confirm-timeout",
        type=_number(float, minimum=0, inclusive=False),
        default=10.0,
        metavar="SECONDS",
        help="give up (exit 1) when the subscription is not confirmed within SECONDS (default 10)",
    )
    p.set_defaults(vendor="voxsig")

    p = vendors.add_parser(
        "genesys",
        parents=[common],
        formatter_class=_Formatter,
        help="Genesys (GWS) chat notifications over CometD",
        description="Genesys chat notifications: chat.status_change, chat.new_messages... (CometD /v2/me/chats).",
        epilog=_vendor_epilog("genesys"),
    )
    p.add_argument(
        "--url", default=_env_default("GENESYS_URL"), help="https://HOST/api/v2/notifications (env GENESYS_URL)"
    )
    p.add_argument(
        "--topic", action="append", default=[], metavar="TOPIC", help="CometD topic (default /v2/me/chats; repeatable)"
    )
    p.add_argument(
        "--username", default=_env_default("GENESYS_USERNAME"), help="HTTP Basic user (env GENESYS_USERNAME)"
    )
    p.add_argument(
        "--transport",
        choices=["auto", "websocket", "long-polling"],
        default="auto",
        help="auto: websocket, else long-polling (default)",
    )
    p.add_argument(
        "--csrf",
        action="store_true",
        help="GWS with CSRF protection on: read the X-CSRF-TOKEN from GET /api/v2/me, send it on every long-polling POST",
    )
    p.set_defaults(vendor="genesys")
    listen.set_defaults(func=_cmd_listen)

    # -- fake-server ------------------------------------------------------------------------
    fake = commands.add_parser(
        "fake-server",
        help="run a fake server on 127.0.0.1 for developing an app locally",
        description=(
            "Run one of the built-in fake servers on 127.0.0.1 until Ctrl-C.  It speaks the vendor's protocol,\n"
            "accepts the demo credentials it prints, and (with --every) pushes a sample event now and then."
        ),
        formatter_class=_Formatter,
    )
    fake.add_argument("vendor", choices=[*CLI_VENDORS, "jifeline", "partner"], help="which server")
    fake.add_argument("--port", type=_port, default=8765, help="port on 127.0.0.1 (default 8765; 0 = any free port)")
    fake.add_argument(
        "--every",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="push a sample event every SECONDS (default 2; 0 = never)",
    )
    fake.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="Jifeline: seconds between snapshot pushes (default 5, like the real server)",
    )
    fake.add_argument(
        "--token", default=None, help="Jifeline: require this bearer token (a fake one: this is a test server)"
    )
    fake.add_argument(
        "--csrf",
        action="store_true",
        help="Genesys: CSRF protection on, as a GWS node with enableCsrfProtection (listen with --csrf)",
    )
    fake.add_argument("-v", "--verbose", action="store_true", help="print every frame the server receives")
    fake.set_defaults(func=_cmd_fake_server)
    return parser


def _number(kind: Callable[[str], Any], *, minimum: float, inclusive: bool = True) -> Callable[[str], Any]:
    """An argparse ``type``: a number no smaller than ``minimum`` (a usage error, exit 2, otherwise)."""

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value != value or value < minimum or (not inclusive and value == minimum):  # NaN too
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {minimum:g}, got {text}")
        return value

    return convert


def _port(text: str) -> int:
    value = _number(int, minimum=0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {text}")
    return int(value)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _listen_common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    out = common.add_argument_group("output")
    out.add_argument(
        "--event",
        action="append",
        default=[],
        metavar="PATTERN",
        help="print only events matching PATTERN (message.created, 'conversation.*'; repeatable; default all)",
    )
    out.add_argument(
        "--entity", metavar="ID", help="print only events about this entity (ticket id, conversation id...)"
    )
    out.add_argument("--json", action="store_true", help="print JSON lines (name, entity_id, received_at, data...)")
    out.add_argument(
        "--raw", action="store_true", help="JSON lines with the decoded frame added as 'raw' (implies --json)"
    )
    out.add_argument("-q", "--quiet", action="store_true", help="no lifecycle lines on stderr")
    out.add_argument("-v", "--verbose", action="count", default=0, help="library logs on stderr (-vv: debug)")
    run = common.add_argument_group("running")
    run.add_argument(
        "--duration",
        type=_number(float, minimum=0, inclusive=False),
        metavar="SECONDS",
        help="stop after SECONDS (default: until Ctrl-C)",
    )
    run.add_argument("--count", type=_number(int, minimum=1), metavar="N", help="stop after N printed events")
    run.add_argument(
        "--max-attempts",
        type=_number(int, minimum=1),
        metavar="N",
        help="give up after N failed connection attempts in a row (ReconnectPolicy(max_attempts=N-1): the policy counts retries)",
    )
    run.add_argument(
        "--keep-trying-on-auth-failure",
        action="store_true",
        help="retry (slowly) when credentials are refused; default: exit with status 1",
    )
    conn = common.add_argument_group("connection")
    conn.add_argument(
        "--connect-timeout",
        type=_number(float, minimum=0, inclusive=False),
        metavar="SECONDS",
        help="TCP + TLS + handshake timeout (default 10)",
    )
    conn.add_argument(
        "--proxy",
        metavar="URL",
        help="http://[user:pass@]host:port (default: $REALTIME_SYNC_PROXY, else $https_proxy / $http_proxy); "
        "put a proxy password in $REALTIME_SYNC_PROXY, not in argv (other users can read argv)",
    )
    conn.add_argument("--ca-bundle", metavar="PATH", help="CA certificates file or directory for TLS")
    conn.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (testing only)")
    conn.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra handshake header (repeatable; values are redacted in logs; for a secret use --header-from-env)",
    )
    conn.add_argument(
        "--header-from-env",
        action="append",
        default=[],
        metavar="NAME=VARIABLE",
        help="extra handshake header whose value is read from the environment variable VARIABLE "
        "(repeatable), e.g. --header-from-env X-Auth-Token=MY_TOKEN: secrets stay out of argv",
    )
    conn.add_argument("--origin", help="Origin header (ActionCable derives it from the URL)")
    hand = common.add_argument_group("replicas and hand-off (Redis; pip install 'realtime_sync[redis]')")
    hand.add_argument(
        "--redis",
        default=_env_default("REALTIME_SYNC_REDIS_URL"),
        metavar="URL",
        help="share the connection(s) with every listener started with the same --redis: each is held by one "
        "live listener through a lease, and taken over when it dies (env REALTIME_SYNC_REDIS_URL)",
    )
    hand.add_argument("--to-stream", metavar="NAME", help="append every event to this Redis stream (needs --redis)")
    hand.add_argument(
        "--stream-maxlen", type=_number(int, minimum=1), default=100_000, metavar="N", help="stream bound (~N entries)"
    )
    hand.add_argument(
        "--tenants",
        metavar="FILE|MODULE:FUNC",
        help="hold these tenants instead of one connection: a JSON list of {key, token, url, subscribe, options}, "
        "or a function returning such a list (read again every minute)",
    )
    hand.add_argument(
        "--tenant-key", metavar="KEY", help="the lease name of this command's connection (default: derived)"
    )
    hand.add_argument(
        "--lease-ttl",
        type=_number(float, minimum=0.5),
        default=10.0,
        metavar="SECONDS",
        help="lease expiry (default 10)",
    )
    hand.add_argument("--namespace", default="realtime_sync", help="prefix of the Redis keys of this listener group")
    hand.add_argument(
        "--hub-workers",
        type=_number(int, minimum=1),
        default=None,
        metavar="N",
        help="run the tenants' connections on one hub with N handler workers: a fixed thread count "
        "however many tenants this listener holds",
    )
    return common


# -- commands -----------------------------------------------------------------------------------


def _quiet_library_logs() -> None:
    """Every problem the library logs is also an ``error`` event, which we print: without this,
    Python's last-resort handler would print the warnings a second time, unformatted."""
    logging.getLogger("realtime_sync").addHandler(logging.NullHandler())


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_VENDORS, run_demo

    _quiet_library_logs()

    vendors = DEMO_VENDORS if args.vendor == "all" else (args.vendor,)
    return run_demo(vendors, pace=max(0.0, args.pace))


class _UsageError(Exception):
    pass


def _ask(prompt: str, *, secret: bool = True) -> str | None:
    """Ask on the terminal (never echoing a secret); None when stdin is not a terminal."""
    if not sys.stdin or not sys.stdin.isatty():
        return None
    try:
        value = getpass.getpass(prompt) if secret else input(prompt)
    except (EOFError, KeyboardInterrupt):
        raise _UsageError("no answer given") from None
    value = value.strip()
    if secret:
        register_secret(value)
    return value


def _env_secret(*names: str) -> str | None:
    from .contrib._common import secret_from_env

    return secret_from_env(*names, "REALTIME_SYNC_TOKEN")


def _argv_warning(what: str, instead: str) -> None:
    """A secret given on the command line: other users of the machine can read argv (``ps``)."""
    sys.stderr.write(
        f"realtime-sync: warning: {what} puts a secret on the command line, readable by other users "
        f"(ps, /proc); use {instead} instead\n"
    )


def _connect_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise _UsageError(f"--header wants 'Name: value', got {redact(item)!r}")
        headers[name.strip()] = value.strip()
        register_secret(value.strip())
        if is_secret_header(name):
            _argv_warning(f"--header {name.strip()}", f"--header-from-env {name.strip()}=VARIABLE")
    for item in args.header_from_env:
        name, sep, variable = item.partition("=")
        if not sep or not name.strip() or not variable.strip():
            raise _UsageError(f"--header-from-env wants 'NAME=VARIABLE', got {item!r}")
        value = os.environ.get(variable.strip())
        if not value:
            raise _UsageError(
                f"--header-from-env {name.strip()}: the environment variable {variable.strip()} is not set"
            )
        register_secret(value)
        headers[name.strip()] = value
    if headers:
        options["headers"] = headers
    if args.connect_timeout is not None:
        options["connect_timeout"] = args.connect_timeout
    proxy = args.proxy
    if proxy and "@" in proxy.partition("://")[2].split("/", 1)[0]:
        _argv_warning("--proxy with a user:password", "REALTIME_SYNC_PROXY")
    proxy = proxy or os.environ.get("REALTIME_SYNC_PROXY") or None
    if proxy:
        register_secret(proxy.partition("@")[0].rpartition(":")[2] if "@" in proxy else None)
        options["proxy"] = proxy
    if args.ca_bundle:
        if not os.path.exists(args.ca_bundle):
            raise _UsageError(f"--ca-bundle: no such file or directory: {args.ca_bundle}")
        options["ca_bundle"] = args.ca_bundle
    if args.insecure:
        options["verify"] = False
    if args.origin is not None:
        options["origin"] = args.origin
    return options


def _make_listen_client(args: argparse.Namespace, resume_point: str | None = None) -> Any:
    from .contrib._common import client_class, make_client

    vendor = args.vendor
    options = _connect_options(args)
    policy = client_class(vendor).default_reconnect
    policy = attrs.evolve(
        policy,
        stop_on_auth_failure=not args.keep_trying_on_auth_failure,
        # The policy counts the retries after a first failure; --max-attempts counts failures.
        max_attempts=args.max_attempts - 1 if args.max_attempts is not None else policy.max_attempts,
    )
    options["reconnect"] = policy
    options["name"] = "listen"
    subscribe: dict[str, list[Any]] = {}
    token: Any = None
    url = args.url
    if vendor == "jifeline-customer":
        if not url:
            raise _UsageError("give the customer websocket URL: --url or JIFELINE_CUSTOMER_URL")
        token = _env_secret("JIFELINE_TOKEN")
        if token is None:
            token = _ask("Jifeline token (empty for none): ") or None
        options["token_in_query"] = args.token_in_query
        subscribe = {"ticket": args.ticket, "connector": args.connector, "connection": args.connection}
        if not any(subscribe.values()):
            raise _UsageError("subscribe to something: --ticket ID, --connector ID or --connection UUID")
    elif vendor == "jifeline-partner":
        token = _env_secret("JIFELINE_TOKEN")
        client_id = os.environ.get("JIFELINE_CLIENT_ID")
        client_secret = _env_secret("JIFELINE_CLIENT_SECRET") if client_id else None
        if token is None and not (client_id and client_secret):
            client_id = client_id or _ask("Jifeline client id: ", secret=False)
            client_secret = client_secret or (_ask("Jifeline client secret: ") if client_id else None)
        if token is None and not (client_id and client_secret):
            raise _UsageError("set JIFELINE_TOKEN, or JIFELINE_CLIENT_ID and JIFELINE_CLIENT_SECRET")
        if token is None:
            options.update(client_id=client_id, client_secret=client_secret)
            if args.token_url:
                options["token_url"] = args.token_url
        if args.cluster and not url:
            options["cluster"] = args.cluster
        options["token_in_query"] = args.token_in_query
        if args.gap_recovery:
            from .jifeline import GapRecovery

            options["gap_recovery"] = GapRecovery(after_id=resume_point)  # resume point: from --redis
        subscribe = {"connector": args.connector, "event": args.system_event}
        if not any(subscribe.values()):
            raise _UsageError("subscribe to something: --connector UUID or --system-event TYPE")
    elif vendor == "voxsig":
        token = _env_secret("VOXSIG_PUBSUB_TOKEN") or _ask("Voxsig pubsub token: ")
        if not token:
            raise _UsageError("set VOXSIG_PUBSUB_TOKEN (the user's or contact's pubsub token)")
        options.update(
            account_id=args.account_id,
            user_id=args.user_id,
            presence_interval=args.presence_interval if args.presence_interval > 0 else None,
            confirm_timeout=args.confirm_timeout,
        )
    elif vendor == "genesys":
        if not url:
            raise _UsageError("give the notifications URL: --url or GENESYS_URL (https://HOST/api/v2/notifications)")
        if args.username:
            password = _env_secret("GENESYS_PASSWORD") or _ask(f"Genesys password for {args.username}: ")
            if not password:
                raise _UsageError("set GENESYS_PASSWORD for --username / GENESYS_USERNAME")
            options.update(username=args.username, password=password)
        else:
            token = _env_secret()
        from .contrib._common import secret_from_env

        cookie = secret_from_env("GENESYS_JSESSIONID")
        if cookie:
            options["cookies"] = {"JSESSIONID": cookie}
        options["transport"] = args.transport
        if args.csrf:
            options["csrf"] = True
        subscribe = {}
        options["topics"] = tuple(args.topic) or ("/v2/me/chats",)
    return make_client(vendor, url, token, subscribe={k: v for k, v in subscribe.items() if v}, **options)


class _Printer:
    """Routes a ``listen`` client's events to stdout/stderr in the chosen format."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        from .demo import Console

        self.runner: Any = None  # set once running: --count stops it
        self.printed = 0
        self.rejected: str | None = None  # why the server refused the Voxsig subscription
        self.broken_pipe = False  # stdout's reader went away (`| head`): stop, quietly
        self.args = args
        self.out = out
        self.err = err
        self.patterns = args.event or ["*"]
        self.lock = threading.Lock()
        label = args.vendor.split("-")[0]
        self.console_out = Console(out, label, timestamps="wall")
        self.console_err = Console(err, label, timestamps="wall")

    def attach(self, client: Any) -> None:
        entity = self.args.entity
        changes_only = self.args.vendor.startswith("jifeline") and not self.args.all_snapshots
        for pattern in self.patterns:
            if changes_only:
                client.on(pattern, self.data_event, entity_id=entity, changes_only=True)
            else:
                client.on(pattern, self.data_event, entity_id=entity)
        lifecycle = [*LIFECYCLE_EVENTS, "handshake"]
        for name in lifecycle:
            client.on(name, self.lifecycle_event)

    def _emit(self, event: Event, console: Any, stream: TextIO) -> None:
        if self.broken_pipe:
            return
        try:
            self._write(event, console, stream)
        except (BrokenPipeError, ValueError):  # ValueError: written to after being closed
            self._gone()
            return
        if stream is self.out:
            with self.lock:
                self.printed += 1
                reached = self.args.count is not None and self.printed >= self.args.count
            if reached and self.runner is not None:
                self.runner.stop("count")

    def _gone(self) -> None:
        """A reader of our output went away (``listen ... | head -3``): stop, exit 0."""
        self.broken_pipe = True
        if self.runner is not None:
            self.runner.stop("broken pipe")

    def _write(self, event: Event, console: Any, stream: TextIO) -> None:
        if self.args.json and stream is self.out:
            from .demo import to_jsonable

            doc = to_jsonable(event)
            if self.args.raw:
                doc["raw"] = to_jsonable(event.raw)
            line = redact(json.dumps(doc, separators=(",", ":"), default=str, ensure_ascii=False))
            with self.lock:
                stream.write(line + "\n")
                stream.flush()
        else:
            console.event(event)

    def data_event(self, event: Event) -> None:
        if event.name in LIFECYCLE_EVENTS or event.name == "handshake":
            return  # printed by lifecycle_event (once)
        self._emit(event, self.console_out, self.out)

    def lifecycle_event(self, event: Event) -> None:
        if event.name == "subscription_rejected" and self.args.vendor == "voxsig" and self.rejected is None:
            # Voxsig has one subscription, made from the token: refused, nothing will ever come.
            self.rejected = str(getattr(event.data, "reason", None) or "rejected")
            if self.runner is not None:
                self.runner.stop("rejected")
        if not self.args.quiet and not self.broken_pipe:
            try:
                self.console_err.event(event)
            except (BrokenPipeError, ValueError):
                self._gone()
                return
        if event.name in self.patterns:
            self._emit(event, self.console_out, self.out)


def _cmd_listen(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from .contrib._common import Runner

    out = out or sys.stdout
    err = err or sys.stderr
    if args.raw:
        args.json = True  # --raw only exists in JSON lines
    if args.verbose:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose > 1 else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=err,
        )
    else:
        _quiet_library_logs()
    if args.redis or args.to_stream or args.tenants:
        from .contrib.redis_cli import listen_replicated

        return listen_replicated(args, _make_listen_client, _Printer(args, out, err), err)
    try:
        client = _make_listen_client(args)
    except (_UsageError, ConfigurationError) as exc:
        err.write(f"realtime-sync listen {args.vendor}: {redact(exc)}\n")
        return 2
    printer = _Printer(args, out, err)
    printer.attach(client)
    if not args.quiet:
        err.write(redact(f"realtime-sync: listening to {client.url} (Ctrl-C to stop)") + "\n")
        err.flush()
    printer.runner = runner = Runner([client])
    result = runner.run(duration=args.duration)
    if printer.broken_pipe:
        _silence_stdio()
        return 0
    if printer.rejected is not None:
        err.write(
            redact(
                f"realtime-sync: the server refused the Voxsig subscription ({printer.rejected}).\n"
                "  Check VOXSIG_PUBSUB_TOKEN: it must be the pubsub token of the agent given by --user-id "
                "(in the account of --account-id), or a contact's token without --user-id.\n"
            )
        )
        return 1
    if result.reason == "stopped" and not args.quiet:
        err.write("realtime-sync: the client stopped (see the last error above)\n")
    return result.exit_code


# -- fake-server --------------------------------------------------------------------------------


def _silence_stdio() -> None:
    """After a broken pipe: point stdout/stderr at /dev/null, so that the flush at exit does not
    print "Exception ignored ... BrokenPipeError"."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, AttributeError):  # not a real file (tests)
            pass
    os.close(devnull)


def _fake_server_class(vendor: str) -> tuple[type[Any], dict[str, Any]]:
    if vendor == "jifeline-customer":
        from .testing.jifeline import FakeJifelineCustomerServer

        return FakeJifelineCustomerServer, {}
    if vendor == "jifeline-partner":
        from .testing.jifeline import FakeJifelinePartnerServer

        return FakeJifelinePartnerServer, {}
    if vendor == "voxsig":
        from .testing.actioncable import FakeVoxsigServer

        return FakeVoxsigServer, {}
    from .testing.bayeux import FakeGenesysServer

    return FakeGenesysServer, {}


def _printing_server(base: type[Any], write: Callable[[str], None], verbose: bool) -> type[Any]:
    """A subclass of ``base`` that reports connections (and, verbose, frames) on the console."""

    def on_connect(self: Any, conn: Any) -> None:
        write(f"+ connection #{conn.id} opened ({conn.path.split('?')[0]})")
        base.on_connect(self, conn)

    def on_message(self: Any, conn: Any, text: str) -> None:
        if verbose:
            write(f"< #{conn.id} {text[:300]}")
        base.on_message(self, conn, text)

    def on_disconnect(self: Any, conn: Any) -> None:
        write(f"- connection #{conn.id} closed")
        base.on_disconnect(self, conn)

    return type(f"Cli{base.__name__}", (base,), {
        "on_connect": on_connect, "on_message": on_message, "on_disconnect": on_disconnect,
    })  # fmt: skip


def _sample_pusher(vendor: str, server: Any) -> Callable[[], None]:
    """One sample event per call, varied a little, for apps under development."""
    n = [0]

    def push() -> None:
        n[0] += 1
        i = n[0]
        if vendor == "jifeline-customer":
            for kind, key in {(k, v) for c in server.live_connections() for k, v in server.subscriptions(c)}:
                if kind == "ticket":
                    server.update_ticket(key, state=1 + i % 5)
                elif kind == "connector":
                    server.update_connector(key, is_online=bool(i % 2))
        elif vendor == "jifeline-partner":
            server.emit_event("tickets.ticket.created" if i % 2 else "tickets.ticket.closed")
            for kind, key in {(k, v) for c in server.live_connections() for k, v in server.subscriptions(c)}:
                if kind == "connector":
                    server.update_connector(key, voltage=round(11.5 + (i % 10) / 10, 1))
        elif vendor == "voxsig":
            from .testing.actioncable import message_payload

            texts = ["Hello!", "Is my order on its way?", "Thanks a lot.", "Bye"]
            server.send_event("account_1", "message.created", message_payload(i, 42, texts[i % len(texts)]))
        else:
            server.new_messages("0000Wa9CAM6W00J", [f"sample message {i}"], start_index=i, sender="Customer1")

    return push


def _cmd_fake_server(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    vendor = {"jifeline": "jifeline-customer", "partner": "jifeline-partner"}.get(args.vendor, args.vendor)
    try:
        base, kwargs = _fake_server_class(vendor)
    except ImportError as exc:
        out.write(f"the fake servers need python-websockets: pip install 'realtime_sync[demo]' ({exc})\n")
        return 2
    lock = threading.Lock()

    def write(text: str) -> None:
        with lock:
            out.write(text + "\n")
            out.flush()

    cls = _printing_server(base, write, args.verbose)
    if vendor.startswith("jifeline"):
        kwargs.update(interval=args.interval, token=args.token)
    if vendor == "genesys" and args.csrf:
        kwargs.update(csrf=True)
    try:
        server = cls(port=args.port, **kwargs)
        server.start()
    except OSError as exc:
        out.write(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}\n")
        return 1
    if vendor == "voxsig":
        # Accept the Origin a client derives from either loopback name.
        server.allowed_origins = [f"http://127.0.0.1:{server.port}", f"http://localhost:{server.port}"]
    url = server.http_url if vendor == "genesys" else server.url
    write(f"fake {vendor} server listening on {url}")
    for hint in _fake_hints(vendor, url, args):
        write(f"  {hint}")
    if args.every > 0 and server.scheduler is not None:
        server.scheduler.every(args.every, _sample_pusher(vendor, server))
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
        except ValueError:  # not the main thread (tests calling main() in a thread)
            pass
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
        write("fake server stopped")
    return 0


def _fake_hints(vendor: str, url: str, args: argparse.Namespace) -> list[str]:
    if vendor == "jifeline-customer":
        token = "JIFELINE_TOKEN=<the --token value> " if args.token else ""
        return [f"try: {token}realtime-sync listen jifeline-customer --url {url} --ticket 32423"]
    if vendor == "jifeline-partner":
        token = "JIFELINE_TOKEN=<the --token value>" if args.token else "JIFELINE_TOKEN=any"
        return [f"try: {token} realtime-sync listen jifeline-partner --url {url} --system-event tickets.ticket.created"]
    if vendor == "voxsig":
        return [
            "users: pubsub token user-token-1 (account 1, user 7), user-token-2 (user 8); contact: contact-token-1",
            f"try: VOXSIG_PUBSUB_TOKEN=user-token-1 realtime-sync listen voxsig --url {url} --account-id 1 --user-id 7",
        ]
    if args.csrf:  # the token is for long-polling POSTs; a websocket needs none
        return [f"try: realtime-sync listen genesys --url {url} --csrf --transport long-polling"]
    return [f"try: realtime-sync listen genesys --url {url}"]


# -- entry point --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``realtime-sync`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except _UsageError as exc:
        sys.stderr.write(f"realtime-sync: {redact(exc)}\n")
        return 2
    except RealtimeSyncError as exc:
        sys.stderr.write(f"realtime-sync: {type(exc).__name__}: {redact(exc)}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `realtime-sync listen ... | head`
        try:
            sys.stdout = open(os.devnull, "w")  # silence the flush at exit
        except OSError:
            pass
        return 0
