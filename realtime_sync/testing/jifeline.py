"""Fake Jifeline servers for tests, demos and local development (loopback only).

* :class:`FakeJifelineCustomerServer`: the customer websocket (seed 000).  Honours the exact
  action names (``unsubscribeToTicket``...), keeps subscriptions per connection and pushes a
  snapshot of every subscribed entity every ``interval`` seconds (and once right after the
  subscribe, unless ``push_on_subscribe=False``).
* :class:`FakeJifelinePartnerServer`: the partner websocket (seed 001), kebab-case actions,
  connector statuses, system events (:meth:`~FakeJifelinePartnerServer.emit_event`), optionally
  answering in camelCase.
* :class:`FakeJifelineRestServer`: a small HTTP server with the partner API's OAuth2 token
  endpoint (``POST /oauth2/token``, client-credentials grant) and ``GET /v2/system/events``.

Like the managed gateway in front of the real servers, a frame the fakes cannot route (no action,
unknown action, not JSON) is answered with ``{"message":"Forbidden","connectionId":..,
"requestId":..}``.  Tokens are checked at the handshake (``Authorization: Bearer`` or
``?access_token=``): missing or wrong -> HTTP 401.  Scripted faults: :meth:`send_gateway_error`,
:meth:`send_malformed`, ``max_connection_age`` (periodic forced disconnects), ``idle_timeout``
(close connections that sent nothing), plus everything :class:`~realtime_sync.testing.FakeServer`
offers (``drop_all``, ``go_silent``, ``refuse``, ``restart``).

    >>> with FakeJifelineCustomerServer(interval=0.2) as server:          # doctest: +SKIP
    ...     server.update_ticket(32423, state=2)
    ...     client = JifelineCustomerClient(server.url)
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any, Hashable, Iterable, TypeVar

from ..config import timing_scale
from ._httpserver import FakeHttpServer
from .server import FakeConnection, FakeServer

__all__ = ["FakeJifelineCustomerServer", "FakeJifelinePartnerServer", "FakeJifelineRestServer"]

log = logging.getLogger("realtime_sync.testing.jifeline")

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ulid_like(seq: int) -> str:
    """A 26-character, lexicographically increasing id shaped like a ULID."""
    ms = int(time.time() * 1000)
    head = ""
    for _ in range(10):
        head = _CROCKFORD[ms % 32] + head
        ms //= 32
    tail = ""
    n = seq
    for _ in range(16):
        tail = _CROCKFORD[n % 32] + tail
        n //= 32
    return head + tail


def _header(headers: dict[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


_F = TypeVar("_F", bound="_JifelineFake")


class _JifelineFake(FakeServer):
    """Shared machinery: routes, tokens, per-connection subscriptions, periodic snapshots."""

    #: kind -> (subscribe action, unsubscribe action, id field, id type)
    routes: dict[str, tuple[str, str, str, type]] = {}

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | Iterable[str] | None = None,
        interval: float = 5.0,
        push_on_subscribe: bool = True,
        max_connection_age: float | None = None,
        idle_timeout: float | None = None,
        max_size: int | None = None,
    ) -> None:
        super().__init__(host, port, max_size=max_size)
        self.interval = interval
        self.push_on_subscribe = push_on_subscribe
        self.max_connection_age = max_connection_age
        self.idle_timeout = idle_timeout
        self._lock = threading.RLock()
        #: time.monotonic() of every handshake attempt (accepted or refused), in order.
        self.attempt_times: list[float] = []
        self._tokens: dict[str, float | None] = {}
        self.require_token = token is not None
        for t in [token] if isinstance(token, str) else (token or ()):
            self.accept_token(t)
        self.entities: dict[tuple[str, Hashable], dict[str, Any]] = {}
        self._request_ids = itertools.count(1)
        self._by_action = {}
        for kind, (sub, unsub, field, typ) in self.routes.items():
            self._by_action[sub] = ("subscribe", kind, field, typ)
            self._by_action[unsub] = ("unsubscribe", kind, field, typ)

    def start(self: _F) -> _F:
        """Start listening; returns the server itself (typed as the subclass)."""
        super().start()
        return self

    def __enter__(self: _F) -> _F:
        return self.start()

    # -- tokens ----------------------------------------------------------------------------

    def accept_token(self, token: str, ttl: float | None = None) -> None:
        """Accept ``token`` at handshakes (for ``ttl`` seconds, or forever); turns checks on."""
        with self._lock:
            self._tokens[token] = None if ttl is None else time.monotonic() + ttl
            self.require_token = True

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def token_valid(self, token: str | None) -> bool:
        if token is None:
            return False
        with self._lock:
            if token not in self._tokens:
                return False
            expiry = self._tokens[token]
        return expiry is None or time.monotonic() < expiry

    def _process_request(self, ws: Any, request: Any) -> Any:
        with self._lock:
            self.attempt_times.append(time.monotonic())
        return super()._process_request(ws, request)

    def check_request(self, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        if not self.require_token:
            return None
        token = None
        auth = _header(headers, "authorization")
        if auth and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        else:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
            values = query.get("access_token")
            token = values[0] if values else None
        if self.token_valid(token):
            return None
        return 401, '{"message":"Unauthorized"}'

    # -- lifecycle -------------------------------------------------------------------------

    def on_start(self) -> None:
        assert self.scheduler is not None
        self.scheduler.every(self.interval, self.push_snapshots)
        checks = [t for t in (self.max_connection_age, self.idle_timeout) if t]
        if checks:
            self.scheduler.every(max(0.02, min(checks) / 5), self._enforce_limits)

    def on_connect(self, conn: FakeConnection) -> None:
        now = time.monotonic()
        conn.state.update(subs=[], opened=now, last_rx=now, gateway_id=secrets.token_urlsafe(8))

    def _enforce_limits(self) -> None:
        now = time.monotonic()
        for conn in self.live_connections():
            if self.max_connection_age and now - conn.state.get("opened", now) >= self.max_connection_age:
                conn.close(1001, "Going away")
            elif self.idle_timeout and now - conn.state.get("last_rx", now) >= self.idle_timeout:
                conn.close(1001, "Going away")

    # -- routing ---------------------------------------------------------------------------

    def gateway_error(self, conn: FakeConnection, message: str = "Forbidden") -> dict[str, Any]:
        return {
            "message": message,
            "connectionId": conn.state.get("gateway_id", str(conn.id)),
            "requestId": f"req-{next(self._request_ids)}",
        }

    def on_message(self, conn: FakeConnection, text: str) -> None:
        conn.state["last_rx"] = time.monotonic()
        try:
            frame = json.loads(text)
        except ValueError:
            frame = None
        action = frame.get("action") if isinstance(frame, dict) else None
        route = self._by_action.get(action) if isinstance(action, str) else None
        if route is None:
            if not self.handle_other(conn, frame):
                conn.send(self.gateway_error(conn))
            return
        assert isinstance(frame, dict)
        op, kind, field, typ = route
        key = frame.get(field)
        if not isinstance(key, typ) or isinstance(key, bool):
            conn.send(self.gateway_error(conn, "Internal server error"))
            return
        subs: list[tuple[str, Hashable]] = conn.state["subs"]
        with self._lock:
            if op == "subscribe":
                if (kind, key) not in subs:
                    subs.append((kind, key))
                push = self.push_on_subscribe and kind in self.snapshot_kinds()
            else:
                if (kind, key) in subs:
                    subs.remove((kind, key))
                push = False
        if push:
            conn.send(self.push_frame(kind, key))

    def handle_other(self, conn: FakeConnection, frame: Any) -> bool:
        """Frames no route matched; return True when handled (else the gateway says Forbidden)."""
        return False

    # -- snapshots -------------------------------------------------------------------------

    def snapshot_kinds(self) -> tuple[str, ...]:
        return tuple(self.routes)

    def default_entity(self, kind: str, key: Hashable) -> dict[str, Any]:
        raise NotImplementedError

    def entity(self, kind: str, key: Hashable) -> dict[str, Any]:
        """The current snapshot of an entity (created with defaults on first use)."""
        with self._lock:
            if (kind, key) not in self.entities:
                self.entities[(kind, key)] = self.default_entity(kind, key)
            return dict(self.entities[(kind, key)])

    def update_entity(self, kind: str, key: Hashable, **fields: Any) -> dict[str, Any]:
        """Change fields of an entity, so the next snapshots differ."""
        with self._lock:
            current = self.entity(kind, key)
            current.update(fields)
            self.entities[(kind, key)] = current
            return dict(current)

    def push_action(self, kind: str) -> str:
        return self.routes[kind][0]

    def push_frame(self, kind: str, key: Hashable) -> dict[str, Any]:
        return {"action": self.push_action(kind), "message": self.entity(kind, key)}

    def push_snapshots(self) -> None:
        """Push a snapshot of every subscribed entity to every connection (the periodic tick)."""
        kinds = self.snapshot_kinds()
        for conn in self.live_connections():
            with self._lock:
                subs = [s for s in conn.state.get("subs", ()) if s[0] in kinds]
            for kind, key in subs:
                conn.send(self.push_frame(kind, key))

    def subscriptions(self, conn: FakeConnection | None = None) -> list[tuple[str, Hashable]]:
        """The subscriptions of ``conn`` (default: the newest live connection)."""
        if conn is None:
            live = self.live_connections()
            if not live:
                return []
            conn = live[-1]
        with self._lock:
            return list(conn.state.get("subs", ()))

    # -- faults ----------------------------------------------------------------------------

    def send_gateway_error(self, conn: FakeConnection | None = None, message: str = "Forbidden") -> int:
        """Send a gateway error frame (no action) to ``conn`` or every live connection."""
        targets = [conn] if conn is not None else self.live_connections()
        return sum(1 for c in targets if c.send(self.gateway_error(c, message)))

    def send_malformed(self, conn: FakeConnection | None = None, text: str = '{"action": "subscribeTo') -> int:
        """Send a frame that is not valid JSON."""
        return self.push(text, conn)


class FakeJifelineCustomerServer(_JifelineFake):
    """The customer websocket; entities get plausible defaults on first subscribe.

    >>> server = FakeJifelineCustomerServer(interval=0.1)
    >>> server.update_ticket(32423, state=2)["state"]
    2
    """

    routes = {
        "ticket": ("subscribeToTicket", "unsubscribeToTicket", "ticket_id", int),
        "connector": ("subscribeToConnector", "unsubscribeFromConnector", "connector_id", int),
        "connection": ("subscribeToConnection", "unsubscribeToConnection", "connection_uuid", str),
    }

    def default_entity(self, kind: str, key: Hashable) -> dict[str, Any]:
        if kind == "ticket":
            assert isinstance(key, int)
            return {
                "id": key,
                "ticket_id": key,
                "ticket_uuid": f"00000000-0000-4000-8000-{key:012d}"[-36:],
                "state": 1,
                "connection_id": 1631171716525,
                "connection_uuid": "97a0e81d-d0ac-42ae-9195-a11732ad322a",
                "cancelled_reason": 0,
                "chat_state": 0,
                "vehicle_model_id": 243021,
                "is_script_composition_running": False,
                "vehicle_model_variant_id": 243031,
                "vin": "JFL94020109394020",
                "schedule": None,
            }
        if kind == "connection":
            return {
                "connection_uuid": key,
                "script_ui_wss_url": None,
                "script_ui_available": 1300,
                "is_autonomous": True,
            }
        return {
            "id": key,
            "uuid": "9389ba6f-3696-4571-84d4-34d588c4b109",
            "is_online": True,
            "has_wifi": True,
            "software_version": "2.3.1",
            "hardware_version": "4",
            "supports_doip": True,
            "vin_number": "JFL94020109394020",
            "product_description": "J-ReX",
            "hardware_type": "jrex",
        }

    def update_ticket(self, ticket_id: int, **fields: Any) -> dict[str, Any]:
        return self.update_entity("ticket", ticket_id, **fields)

    def update_connection(self, connection_uuid: str, **fields: Any) -> dict[str, Any]:
        return self.update_entity("connection", connection_uuid, **fields)

    def update_connector(self, connector_id: int, **fields: Any) -> dict[str, Any]:
        return self.update_entity("connector", connector_id, **fields)


class FakeJifelinePartnerServer(_JifelineFake):
    """The partner websocket: kebab-case actions, connector statuses, system events.

    ``camel_case=True`` makes the server answer with camelCase actions (``subscribeToConnector``,
    ``eventReceived``), which the client must accept too.

    >>> server = FakeJifelinePartnerServer(token="t0k3n-demo")
    >>> server.update_connector("9389ba6f-3696-4571-84d4-34d588c4b109", voltage=12.4)["voltage"]
    12.4
    """

    routes = {
        "connector": ("subscribe-to-connector", "unsubscribe-from-connector", "connector_id", str),
        "event": ("subscribe-to-event", "unsubscribe-from-event", "event_type", str),
    }

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, camel_case: bool = False, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self.camel_case = camel_case
        #: Every system event ever emitted, oldest first (what the REST fake serves).
        self.events: list[dict[str, Any]] = []
        self._event_seq = itertools.count(1)

    def snapshot_kinds(self) -> tuple[str, ...]:
        return ("connector",)

    def push_action(self, kind: str) -> str:
        return "subscribeToConnector" if self.camel_case else "subscribe-to-connector"

    def default_entity(self, kind: str, key: Hashable) -> dict[str, Any]:
        return {"connector_id": key, "voltage": 12.6, "vin_number": "JFL91010104491010", "round_trip_time": 23}

    def update_connector(self, connector_id: str, **fields: Any) -> dict[str, Any]:
        return self.update_entity("connector", connector_id, **fields)

    def emit_event(
        self, event_type: str, message: Any = None, *, event_id: str | None = None, deliver: bool = True
    ) -> dict[str, Any]:
        """Record a system event and push it to every connection subscribed to its type.

        Returns the frame.  ``deliver=False`` only records it (the REST fake still serves it).
        """
        if message is None:
            n = len(self.events) + 1
            message = {
                "customer": {"id": 1, "name": "Garage Demo"},
                "ticket": {"id": f"2f500382-0f8e-4298-83ee-{n:012d}", "number": n, "ticket_number": str(17386000 + n)},
                "parent_ticket": None,
            }
        frame = {
            "action": "eventReceived" if self.camel_case else "event-received",
            "event_id": event_id or _ulid_like(next(self._event_seq)),
            "event_type": event_type,
            "message": message,
        }
        with self._lock:
            # The REST list says when it happened; the websocket push does not (seed 001).
            self.events.append({**frame, "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            targets = [c for c in self.live_connections() if ("event", event_type) in c.state.get("subs", ())]
        if deliver:
            for conn in targets:
                conn.send(frame)
        return frame


# -- REST + OAuth ---------------------------------------------------------------------------


class FakeJifelineRestServer(FakeHttpServer):
    """The partner REST API's token endpoint and system-event list, on 127.0.0.1.

    * ``POST /oauth2/token`` (form ``grant_type=client_credentials&client_id=..&client_secret=..``,
      or the client in HTTP Basic auth): ``{"access_token", "expires_in", "token_type"}``; a wrong
      client id or secret gets ``401 {"error": "invalid_client"}``.  With ``api_key`` set, the
      ``x-api-key`` header is required as well (the oldest deployments).  Every token issued is
      also accepted by ``partner`` (a :class:`FakeJifelinePartnerServer`), for ``token_ttl`` s.
    * ``GET /v2/system/events?after_id=..&limit=..`` (Bearer token, and ``x-api-key`` when
      ``events_api_key`` is set, as the API reference's beta revision lists): the partner fake's
      events after ``after_id`` as ``{"result": [{"id", "type", "occurred_at", "payload"}]}``
      (the API reference's shape; PROTOCOLS.md section 2).

    >>> with FakeJifelineRestServer("demo-client", "demo-secret") as rest:  # doctest: +SKIP
    ...     provider = ClientCredentialsTokenProvider(rest.token_url, "demo-client", "demo-secret")
    """

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _RestHandler  # defined below

    thread_name = "realtime_sync-fake-jifeline-rest"

    def __init__(
        self,
        client_id: str = "demo-client",
        client_secret: str = "demo-secret",
        *,
        partner: FakeJifelinePartnerServer | None = None,
        token_ttl: float = 3600.0,
        api_key: str | None = None,
        events_api_key: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("fake servers listen on loopback only")
        self.client_id = client_id
        self.client_secret = client_secret
        self.partner = partner
        self.token_ttl = token_ttl
        self.api_key = api_key
        #: When set, ``GET /v2/system/events`` requires this ``x-api-key`` header (else 403).
        self.events_api_key = events_api_key
        self.host = host
        self.port = 0
        #: (method, path, headers) of every request, in order.
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.issued: list[str] = []
        self.events_delay = 0.0  # seconds to wait before answering /v2/system/events
        self.token_delay = 0.0  # seconds to wait before answering /oauth2/token (slow endpoint)
        self.fail_events: list[int] = []  # statuses to answer the next event requests with
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self._init_http()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the REST base)."""
        return f"http://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        return self.url + "/oauth2/token"

    # -- state -----------------------------------------------------------------------------

    def token_requests(self) -> int:
        with self._lock:
            return sum(1 for m, p, _ in self.requests if m == "POST" and p.startswith("/oauth2/token"))

    def event_requests(self) -> list[str]:
        """Paths (with query) of every ``/v2/system/events`` request."""
        with self._lock:
            return [p for m, p, _ in self.requests if m == "GET" and p.startswith("/v2/system/events")]

    def issue_token(self) -> tuple[str, float]:
        token = "fake-at-" + secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl
            self.issued.append(token)
        if self.partner is not None:
            self.partner.accept_token(token, self.token_ttl)
        return token, self.token_ttl

    def token_valid(self, token: str | None) -> bool:
        if token is None:
            return False
        with self._lock:
            expiry = self._tokens.get(token)
        if expiry is not None and time.monotonic() < expiry:
            return True
        return self.partner is not None and self.partner.token_valid(token)

    def _record(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append((method, path, headers))

    def _pop_failure(self) -> int | None:
        with self._lock:
            return self.fail_events.pop(0) if self.fail_events else None


class _RestHandler(BaseHTTPRequestHandler):
    fake: FakeJifelineRestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("rest fake: " + format, *args)

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        fake = self.fake
        headers = {k: v for k, v in self.headers.items()}
        fake._record("POST", self.path, headers)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        if urllib.parse.urlsplit(self.path).path != "/oauth2/token":
            self._reply(404, {"message": "Not Found"})
            return
        if fake.api_key is not None and self.headers.get("x-api-key") != fake.api_key:
            self._reply(403, {"message": "Forbidden"})
            return
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                client_id = client_secret = None
        if form.get("grant_type") != "client_credentials":
            self._reply(400, {"error": "unsupported_grant_type"})
            return
        if client_id != fake.client_id or client_secret != fake.client_secret:
            self._reply(401, {"error": "invalid_client"})
            return
        if fake.token_delay:
            time.sleep(fake.token_delay * timing_scale())
        token, ttl = fake.issue_token()
        self._reply(200, {"access_token": token, "expires_in": int(ttl) if ttl >= 1 else ttl, "token_type": "Bearer"})

    def do_GET(self) -> None:
        fake = self.fake
        headers = {k: v for k, v in self.headers.items()}
        fake._record("GET", self.path, headers)
        parts = urllib.parse.urlsplit(self.path)
        if parts.path != "/v2/system/events":
            self._reply(404, {"message": "Not Found"})
            return
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if not fake.token_valid(token):
            self._reply(401, {"message": "Unauthorized"})
            return
        if fake.events_api_key is not None and self.headers.get("x-api-key") != fake.events_api_key:
            self._reply(403, {"message": "Forbidden"})
            return
        if fake.events_delay:
            time.sleep(fake.events_delay * timing_scale())
        failure = fake._pop_failure()
        if failure is not None:
            self._reply(failure, {"message": "Internal server error"})
            return
        query = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query).items()}
        events = list(fake.partner.events) if fake.partner is not None else []
        after = query.get("after_id")
        if after:
            ids = [e["event_id"] for e in events]
            events = events[ids.index(after) + 1 :] if after in ids else events
        try:
            limit = max(1, min(500, int(query.get("limit", "100"))))
        except ValueError:
            limit = 100
        total = len(events)
        result = [
            {
                "id": e["event_id"],
                "type": e["event_type"],
                "occurred_at": e.get("occurred_at") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "payload": e["message"],
            }
            for e in events[:limit]
        ]
        self._reply(200, {"query": {"after_id": after, "limit": limit}, "result": result, "total": total})
