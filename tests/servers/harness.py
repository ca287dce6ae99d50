"""Start/stop the REAL test servers (Rails ActionCable under puma, faye under node).

Install them with ``bash .ci/install-servers.sh`` (CI does). Each server runs as a
subprocess bound to 127.0.0.1 on a free port, logs to a temp file, and offers an
HTTP control surface on the same port (see tests/servers/README.md).

    from tests.servers.harness import ActionCableServer, actioncable_available

    ok, why = actioncable_available()
    with ActionCableServer() as srv:
        srv.url          # ws://127.0.0.1:PORT/cable
        srv.origin       # http://127.0.0.1:PORT  (the only Origin accepted)
        srv.broadcast("user-token-1", {"event": "message.created", "data": {...}})
        srv.restart()    # stop + start on the same port

Nothing here imports pytest at module level; the optional fixtures at the bottom
do so lazily.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ACTIONCABLE_DIR = HERE / "actioncable"
FAYE_DIR = HERE / "faye"
HOST = "127.0.0.1"

# Fixed test identities understood by the ActionCable RoomChannel (cable_app.rb).
ACCOUNT_ID = 1
USER_TOKEN = "user-token-1"
USER_ID = 7
USER_TOKEN_2 = "user-token-2"
USER_ID_2 = 8
CONTACT_TOKEN = "contact-token-1"
CONTACT_ID = 101
REJECT_TOKEN = "reject-me"  # subscribed -> reject  => reject_subscription
EXPLODE_TOKEN = "explode"  # subscribed raises     => nothing at all is sent

# Credentials understood by the faye server when auth is on (server.js).
FAYE_BASIC_USER = "agent"
FAYE_BASIC_PASSWORD = "secret"
FAYE_COOKIE = ("JSESSIONID", "test-session-1")
FAYE_EXT_TOKEN = "test-token-1"

START_TIMEOUT = float(os.environ.get("RTS_SERVER_START_TIMEOUT", "30"))


class ServerError(RuntimeError):
    pass


# --------------------------------------------------------------------------
# availability checks
# --------------------------------------------------------------------------
_avail_cache: dict[str, tuple[bool, str]] = {}
_avail_lock = threading.Lock()


def actioncable_available() -> tuple[bool, str]:
    """(True, "") when ruby, puma and the actioncable gem are installed."""
    with _avail_lock:
        if "actioncable" not in _avail_cache:
            _avail_cache["actioncable"] = _check_actioncable()
        return _avail_cache["actioncable"]


def _check_actioncable() -> tuple[bool, str]:
    hint = "run `bash .ci/install-servers.sh` (as root) to install it"
    ruby = shutil.which("ruby")
    if not ruby:
        return False, f"ruby not installed; {hint}"
    if not shutil.which("puma"):
        return False, f"puma not installed; {hint}"
    try:
        proc = subprocess.run(
            [ruby, "-e", 'require "action_cable"; require "puma"; print ActionCable.version'],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"ruby failed: {exc}"
    if proc.returncode != 0:
        return False, f"ruby gem actioncable/puma missing ({proc.stderr.strip()[-200:]}); {hint}"
    return True, ""


def faye_available() -> tuple[bool, str]:
    """(True, "") when node and tests/servers/faye/node_modules/faye are installed."""
    with _avail_lock:
        if "faye" not in _avail_cache:
            hint = "run `bash .ci/install-servers.sh` to install it"
            if not shutil.which("node"):
                result = (False, f"node not installed; {hint}")
            elif not (FAYE_DIR / "node_modules" / "faye" / "package.json").is_file():
                result = (False, f"faye not installed in {FAYE_DIR / 'node_modules'}; {hint}")
            else:
                result = (True, "")
            _avail_cache["faye"] = result
        return _avail_cache["faye"]


COMETD_DIR = Path(__file__).resolve().parent / "cometd"


def cometd_available() -> tuple[bool, str]:
    """(True, "") when node and tests/servers/cometd/node_modules/cometd-nodejs-server are installed."""
    hint = "run `bash .ci/install-servers.sh` to install it"
    if not shutil.which("node"):
        return False, f"node not installed; {hint}"
    if not (COMETD_DIR / "node_modules" / "cometd-nodejs-server" / "package.json").is_file():
        return False, f"cometd-nodejs-server not installed in {COMETD_DIR / 'node_modules'}; {hint}"
    return True, ""


def available() -> dict[str, tuple[bool, str]]:
    return {"actioncable": actioncable_available(), "faye": faye_available()}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def http_json(method: str, url: str, body: Any = None, timeout: float = 60.0) -> Any:
    """Call a control endpoint; only 127.0.0.1 is allowed."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.hostname != HOST:
        raise ValueError(f"control calls go to {HOST} only, not {parsed.hostname!r}")
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise ServerError(f"{method} {url} -> HTTP {exc.code}: {exc.read()[:500]!r}") from exc
    return json.loads(raw) if raw else None


class _Server:
    """A server subprocess on a fixed 127.0.0.1 port, logging to a temp file."""

    name = "server"

    def __init__(self, port: int | None = None, log_dir: str | os.PathLike[str] | None = None):
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix=f"rts-{self.name}-"))
        self.log_path = self._log_dir / f"{self.name}-{self.port}.log"
        self.starts = 0
        self.startup_seconds: float | None = None

    # subclasses
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _cwd(self) -> Path:
        raise NotImplementedError

    @property
    def http_base(self) -> str:
        return f"http://{HOST}:{self.port}"

    # lifecycle
    def start(self, timeout: float = START_TIMEOUT) -> _Server:
        if self.running:
            return self
        t0 = time.monotonic()
        deadline = t0 + timeout
        # after a stop the port may linger a moment (e.g. TIME_WAIT without SO_REUSEADDR)
        while _port_open(self.port):
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name}: port {self.port} still in use")
            time.sleep(0.05)
        log = open(self.log_path, "ab")
        log.write(f"\n==== start #{self.starts + 1}: {' '.join(self._command())}\n".encode())
        log.flush()
        try:
            self._proc = subprocess.Popen(
                self._command(),
                cwd=self._cwd(),
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self.starts += 1
        try:
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, deadline: float) -> None:
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self._proc.returncode} during startup:\n{self.log_tail()}")
            if _port_open(self.port):
                try:
                    if http_json("GET", f"{self.http_base}/health", timeout=2).get("ok"):
                        return
                except (OSError, ServerError, ValueError):
                    pass
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name} not ready on port {self.port}:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server (no goodbye frames at all)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)

    def restart(self, timeout: float = START_TIMEOUT) -> _Server:
        """Stop the process and start a new one on the SAME port."""
        self.stop()
        return self.start(timeout=timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.http_base} running={self.running}>"


# --------------------------------------------------------------------------
# ActionCable (Rails 6.1, puma)
# --------------------------------------------------------------------------
def room_identifier(pubsub_token: str, account_id: int | None = ACCOUNT_ID, user_id: int | None = None) -> str:
    """Chatwoot's RoomChannel identifier string (serialize once, reuse the exact string)."""
    ident: dict[str, Any] = {"channel": "RoomChannel", "pubsub_token": pubsub_token}
    if account_id is not None:
        ident["account_id"] = account_id
    if user_id is not None:
        ident["user_id"] = user_id
    return json.dumps(ident, separators=(",", ":"))


class ActionCableServer(_Server):
    """Rails ActionCable 6.1 with a Chatwoot-shaped RoomChannel (actioncable/cable_app.rb).

    Streams: a subscriber with pubsub_token T streams from "T" (Chatwoot's naming) and,
    when it is a user, from "account_1" and "account_2" (every user is in both accounts: the
    token is the user's, so one stream carries both accounts' broadcasts).  A user
    subscription without account_id, or for another account, gets no answer (Chatwoot raises
    in ``subscribed``); no subscription is ever rejected.  Presence expires after
    ``presence_duration`` seconds (20, as Chatwoot's OnlineStatusTracker).

    ordered=True (default) delivers broadcasts to a subscriber in order (one worker
    thread, one pubsub callback thread). ordered=False is stock Rails: async adapter and
    4 workers, which may reorder a burst.
    """

    name = "actioncable"

    def __init__(
        self,
        port: int | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        ordered: bool = True,
        allowed_origins: list[str] | None = None,
        threads: str = "4:16",
        log_level: str = "info",
        presence_duration: float | None = None,
    ):
        super().__init__(port, log_dir)
        self.presence_duration = presence_duration
        self.ordered = ordered
        self.allowed_origins = allowed_origins
        self.threads = threads
        self.log_level = log_level

    @staticmethod
    def available() -> tuple[bool, str]:
        return actioncable_available()

    def _command(self) -> list[str]:
        puma = shutil.which("puma") or "puma"
        return [
            puma,
            "-e", "production",
            "-b", f"tcp://{HOST}:{self.port}",
            "-t", self.threads,
            str(ACTIONCABLE_DIR / "config.ru"),
        ]  # fmt: skip

    def _cwd(self) -> Path:
        return ACTIONCABLE_DIR

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CABLE_PORT"] = str(self.port)
        env["CABLE_ADAPTER"] = "ordered" if self.ordered else "async"
        env["CABLE_WORKER_POOL"] = "1" if self.ordered else "4"
        env["CABLE_LOG_LEVEL"] = self.log_level
        if self.presence_duration is not None:
            env["CABLE_PRESENCE_DURATION"] = str(self.presence_duration)
        env["RACK_ENV"] = "production"
        if self.allowed_origins is not None:
            env["CABLE_ALLOWED_ORIGINS"] = ",".join(self.allowed_origins)
        else:
            env.pop("CABLE_ALLOWED_ORIGINS", None)
        return env

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/cable"

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    # control surface
    def broadcast(self, stream: str, message: Any) -> None:
        http_json("POST", f"{self.http_base}/broadcast", {"stream": stream, "message": message})

    def burst(self, stream: str, count: int, event: str = "message.created", start: int = 1) -> None:
        """Broadcast `count` messages {"event", "data": {"id": i, "account_id": 1,
        "conversation_id": 1, "content": "m<i>"}} for i = start .. start+count-1, in order."""
        http_json(
            "POST",
            f"{self.http_base}/burst",
            {"stream": stream, "count": count, "event": event, "start": start},
            timeout=120,
        )

    def presence_count(self, token: str) -> int:
        q = urllib.parse.urlencode({"token": token})
        return int(http_json("GET", f"{self.http_base}/presence_count?{q}")["count"])

    def stats(self) -> dict[str, Any]:
        return http_json("GET", f"{self.http_base}/stats")

    def online(self, account_id: int = ACCOUNT_ID) -> dict[str, Any]:
        """What ``presence.update`` would say now for ``account_id``: ``{"account_id", "users":
        {"7": "online"}, "contacts": {...}}`` of who sent a presence within the presence duration
        (20 s unless ``presence_duration=`` says otherwise; Chatwoot's OnlineStatusTracker)."""
        q = urllib.parse.urlencode({"account_id": account_id})
        return http_json("GET", f"{self.http_base}/online?{q}")

    def restart_notice(self) -> int:
        """ActionCable.server.restart: every connection gets
        {"type":"disconnect","reason":"server_restart","reconnect":true} and is closed;
        the process keeps running. Returns the number of connections."""
        return int(http_json("POST", f"{self.http_base}/restart_notice", {})["connections"])

    def disconnect_all(self, reason: str | None = None, reconnect: bool = True) -> int:
        """connection.close(reason:, reconnect:) on every connection."""
        body = {"reason": reason, "reconnect": reconnect}
        return int(http_json("POST", f"{self.http_base}/disconnect_all", body)["connections"])

    def restart(self, timeout: float = START_TIMEOUT, notice: bool = False) -> ActionCableServer:
        """Stop the process and start a new one on the SAME port. Stopping puma drops the
        websockets without any frame (as a plain deploy does); notice=True first sends every
        connection the server_restart disconnect (ActionCable.server.restart)."""
        if notice and self.running:
            self.restart_notice()
        self.stop()
        self.start(timeout=timeout)
        return self

    def set_pings(self, enabled: bool) -> None:
        """Stop/resume the 3 s {"type":"ping"} heartbeat (simulates a stalled server)."""
        http_json("POST", f"{self.http_base}/pings", {"enabled": enabled})


# --------------------------------------------------------------------------
# faye (Bayeux / CometD)
# --------------------------------------------------------------------------
class FayeServer(_Server):
    """faye Bayeux server at /api/v2/notifications (faye/server.js).

    timeout: seconds the server holds a /meta/connect (advice.timeout = timeout*1000);
        a client that sends no connect for about 2*timeout is expired.
    auth: "none" | "handshake" (handshake fails with "403::Handshake denied" and advice
        reconnect=none, as CometD denies, unless
        Basic agent:secret, cookie JSESSIONID=test-session-1 or ext.auth="test-token-1")
        | "http" (HTTP 401 for every endpoint request/upgrade without Basic or cookie).
    websocket: False refuses upgrades (HTTP 400) and advertises no "websocket".
    """

    name = "faye"

    def __init__(
        self,
        port: int | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        timeout: float = 3.0,
        ping: float | None = None,
        auth: str = "none",
        websocket: bool = True,
    ):
        super().__init__(port, log_dir)
        if auth not in ("none", "handshake", "http"):
            raise ValueError(f"auth must be none, handshake or http, not {auth!r}")
        self.timeout = timeout
        self.ping = ping
        self.auth = auth
        self.websocket = websocket

    @staticmethod
    def available() -> tuple[bool, str]:
        return faye_available()

    def _command(self) -> list[str]:
        cmd = [
            shutil.which("node") or "node",
            str(FAYE_DIR / "server.js"),
            f"--port={self.port}",
            f"--timeout={self.timeout:g}",
            f"--auth={self.auth}",
        ]
        if self.ping is not None:
            cmd.append(f"--ping={self.ping:g}")
        if not self.websocket:
            cmd.append("--no-websocket")
        return cmd

    def _cwd(self) -> Path:
        return FAYE_DIR

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for k in ("FAYE_PORT", "FAYE_TIMEOUT", "FAYE_PING", "FAYE_AUTH", "FAYE_NO_WEBSOCKET"):
            env.pop(k, None)
        return env

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/api/v2/notifications"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/api/v2/notifications"

    # control surface
    def publish(self, channel: str, data: Any) -> None:
        http_json("POST", f"{self.http_base}/publish", {"channel": channel, "data": data})

    def burst(self, channel: str, count: int, start: int = 1, chat_uri: str | None = None) -> None:
        """Publish `count` MessageLogUpdated/NewMessages messages with messages[0].index = i
        and text "m<i>" for i = start .. start+count-1, in order."""
        body: dict[str, Any] = {"channel": channel, "count": count, "start": start}
        if chat_uri:
            body["chatUri"] = chat_uri
        http_json("POST", f"{self.http_base}/burst", body, timeout=120)

    def stats(self) -> dict[str, Any]:
        return http_json("GET", f"{self.http_base}/stats")

    def expire_clients(self, close_sockets: bool = False) -> int:
        """Destroy every Bayeux session (as a server-side session timeout would). A held
        connect is answered (successful); the next connect gets "401:<id>:Unknown client"
        with advice reconnect=handshake. Websockets stay open unless close_sockets."""
        body = {"close_sockets": close_sockets}
        return int(http_json("POST", f"{self.http_base}/expire_clients", body)["clients"])

    def drop_connections(self) -> int:
        """Destroy every open TCP connection (websockets, held long-polls) abruptly."""
        return int(http_json("POST", f"{self.http_base}/drop_connections", {})["sockets"])


# --------------------------------------------------------------------------
# Redis (Debian redis-server): leases, streams, the Celery broker
# --------------------------------------------------------------------------
def redis_available() -> tuple[bool, str]:
    """(True, "") when Debian's redis-server is installed."""
    if shutil.which("redis-server"):
        return True, ""
    return False, "redis-server not installed; run `bash .ci/install-servers.sh` (as root) to install it"


class RedisServer(_Server):
    """A throw-away redis-server on 127.0.0.1 (no config file, data in the log directory).

    ``appendonly=True`` (default) keeps the data across :meth:`restart` (fsync on every write),
    as a broker that is restarted under load would; ``stop()`` is SIGTERM (a clean shutdown),
    :meth:`kill` is SIGKILL.

        with RedisServer() as redis_srv:
            redis_srv.url          # redis://127.0.0.1:PORT/0
    """

    name = "redis"

    def __init__(
        self, port: int | None = None, log_dir: str | os.PathLike[str] | None = None, *, appendonly: bool = True
    ):
        super().__init__(port, log_dir)
        self.appendonly = appendonly

    @staticmethod
    def available() -> tuple[bool, str]:
        return redis_available()

    def _command(self) -> list[str]:
        cmd = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--dir", str(self._log_dir),
            "--dbfilename", f"dump-{self.port}.rdb",
            "--protected-mode", "no",
        ]  # fmt: skip
        if self.appendonly:
            cmd += ["--appendonly", "yes", "--appendfsync", "always", "--appendfilename", f"aof-{self.port}.aof"]
        return cmd

    def _cwd(self) -> Path:
        return self._log_dir

    def _wait_ready(self, deadline: float) -> None:
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise ServerError(f"redis exited with {self._proc.returncode} during startup:\n{self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"redis not ready on port {self.port}:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"


def require_servers() -> bool:
    """True under REALTIME_SYNC_REQUIRE_SERVERS=1 (CI): a missing real server fails the test."""
    return os.environ.get("REALTIME_SYNC_REQUIRE_SERVERS", "") not in ("", "0")


# --------------------------------------------------------------------------
# optional pytest fixtures: `from tests.servers.harness import actioncable_server`
# --------------------------------------------------------------------------
try:  # pragma: no cover - only when pytest is present
    import pytest as _pytest
except ImportError:  # pragma: no cover
    _pytest = None

if _pytest is not None:

    @_pytest.fixture
    def actioncable_server(tmp_path_factory):
        ok, why = actioncable_available()
        if not ok:
            _pytest.skip(why)
        srv = ActionCableServer(log_dir=tmp_path_factory.mktemp("actioncable"))
        srv.start()
        yield srv
        srv.stop()

    @_pytest.fixture
    def faye_server(tmp_path_factory):
        ok, why = faye_available()
        if not ok:
            _pytest.skip(why)
        srv = FayeServer(log_dir=tmp_path_factory.mktemp("faye"))
        srv.start()
        yield srv
        srv.stop()

    @_pytest.fixture
    def redis_server(tmp_path_factory):
        """A fresh redis-server per test (skipped when it is not installed, unless
        REALTIME_SYNC_REQUIRE_SERVERS=1: then the test fails)."""
        ok, why = redis_available()
        if not ok:
            if require_servers():
                _pytest.fail(f"REALTIME_SYNC_REQUIRE_SERVERS=1 but {why}")
            _pytest.skip(why)
        srv = RedisServer(log_dir=tmp_path_factory.mktemp("redis"))
        srv.start()
        yield srv
        srv.stop()


# --------------------------------------------------------------------------
# cometd-nodejs-server (the CometD project's own Node.js server)
# --------------------------------------------------------------------------
class CometDNodeServer(_Server):
    """cometd-nodejs-server at /api/v2/notifications: long-polling only (a websocket upgrade
    gets HTTP 400), sessions by the BAYEUX_BROWSER cookie, queued messages in the reply of any
    request, and its acknowledged-messages extension installed (cometd/server.js)."""

    name = "cometd"

    def __init__(
        self, port: int | None = None, log_dir: str | os.PathLike[str] | None = None, *, timeout_ms: int = 2000
    ):
        super().__init__(port, log_dir)
        self.timeout_ms = timeout_ms

    @staticmethod
    def available() -> tuple[bool, str]:
        return cometd_available()

    def _command(self) -> list[str]:
        return [
            shutil.which("node") or "node",
            str(COMETD_DIR / "server.js"),
            f"--port={self.port}",
            f"--timeout={self.timeout_ms}",
        ]

    def _cwd(self) -> Path:
        return COMETD_DIR

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/api/v2/notifications"

    def burst(self, channel: str, count: int, start: int = 1) -> None:
        """Publish data {"seq": i} for i = start .. start+count-1, in order, over several
        event-loop turns (several batches)."""
        http_json("POST", f"{self.http_base}/burst", {"channel": channel, "count": count, "start": start}, timeout=60)

    def stats(self) -> dict[str, Any]:
        return http_json("GET", f"{self.http_base}/stats")
