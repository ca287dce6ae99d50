"""A fake of the two Chatwoot REST endpoints the Voxsig catch-up reads, on 127.0.0.1.

The shapes follow Chatwoot's source (``config/routes.rb``; ``ConversationFinder`` and
``MessageFinder``; ``app/views/api/v1/accounts/conversations/index.json.jbuilder`` and
``.../conversations/messages/index.json.jbuilder``):

* ``GET /api/v1/accounts/{account_id}/conversations?updated_within=<s>&status=all``: with
  ``updated_within`` Chatwoot returns *every* conversation whose ``updated_at`` is within the last
  ``<s>`` seconds (no pagination), most recently active first, as
  ``{"data": {"meta": {"mine_count", "unassigned_count", "assigned_count", "all_count"},
  "payload": [conversation...]}}``; a conversation's ``id`` is its display id.  Without
  ``updated_within``: pages of 25 (``page=``).
* ``GET /api/v1/accounts/{account_id}/conversations/{id}/messages?after=<message id>``: up to 100
  messages with a larger id, oldest first; ``before=<id>``: the 20 before it; neither: the latest
  20, oldest first.  Answer ``{"meta": {...}, "payload": [message...]}``.
* Auth: the ``api_access_token`` header (a user's access token); otherwise
  ``401 {"error": "You need to sign in or sign up before continuing."}``.

>>> with FakeChatwootRestServer("tok") as rest:  # doctest: +SKIP
...     rest.add_message(message_payload(1, 42))
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any, Mapping

from .._redact import register_secret
from ._httpserver import FakeHttpServer
from .actioncable import conversation_payload

__all__ = ["FakeChatwootRestServer"]

log = logging.getLogger("realtime_sync.testing.chatwoot")


class FakeChatwootRestServer(FakeHttpServer):
    """Conversations and messages of one account, served as Chatwoot's REST API serves them.

    :meth:`add_message` stores a message (as ``message_payload`` makes it) and touches its
    conversation (``updated_at``, ``last_activity_at``), creating it if needed, as a new message
    does in Chatwoot.  ``fail_next`` holds statuses to answer the next requests with.

    ``accounts``: every account the access token's user belongs to (default: ``account_id``'s
    only); ``add_message(..., account_id=2)`` stores into another one.
    """

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler  # defined below

    thread_name = "realtime_sync-fake-chatwoot"

    def __init__(
        self,
        access_token: str = "api-token-1",
        *,
        account_id: int = 1,
        accounts: tuple[int, ...] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("fake servers listen on loopback only")
        register_secret(access_token)
        self.access_token = access_token
        self.account_id = account_id
        self.accounts = frozenset(accounts if accounts is not None else (account_id,))
        self.host = host
        self.port = 0
        self.fail_next: list[int] = []
        #: (method, path with query, headers) of every request.
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.delay = 0.0  # seconds before answering (a slow API)
        # Keyed by (account id, conversation display id): display ids repeat across accounts.
        self._conversations: dict[tuple[int, int], dict[str, Any]] = {}
        self._updated: dict[tuple[int, int], float] = {}
        self._messages: dict[tuple[int, int], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._init_http()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``VoxsigCatchUp(api_url=...)``)."""
        return f"http://{self.host}:{self.port}"

    # -- state -----------------------------------------------------------------------------

    def add_conversation(self, conversation: Mapping[str, Any], account_id: int | None = None) -> None:
        """Store (or replace) a conversation (``conversation_payload`` shape) and touch it."""
        account = self.account_id if account_id is None else account_id
        key = (account, int(conversation["id"]))
        with self._lock:
            self._conversations[key] = {**conversation, "account_id": account}
            self._updated[key] = time.time()

    def add_message(self, message: Mapping[str, Any], account_id: int | None = None) -> None:
        """Store a message (``message_payload`` shape); its conversation is created or touched."""
        account = self.account_id if account_id is None else account_id
        cid = int(message["conversation_id"])
        key = (account, cid)
        with self._lock:
            if key not in self._conversations:
                self._conversations[key] = {**conversation_payload(cid), "account_id": account}
            self._conversations[key]["last_activity_at"] = int(time.time())
            self._conversations[key]["timestamp"] = int(time.time())
            self._updated[key] = time.time()
            self._messages.setdefault(key, []).append({**message, "account_id": account})

    def message_requests(self) -> list[str]:
        with self._lock:
            return [p for m, p, _ in self.requests if "/messages" in p]

    def _answer(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:3] != ["api", "v1", "accounts"] or len(parts) < 5 or parts[4] != "conversations":
            return 404, {"error": "Resource could not be found"}
        if not parts[3].isdigit() or int(parts[3]) not in self.accounts:
            return 401, {"error": "You are not authorized to access this account"}
        account = int(parts[3])
        rest = parts[5:] or [""]
        with self._lock:
            if rest == [""]:
                mine = [c for c in self._conversations if c[0] == account]
                order = sorted(mine, key=lambda c: self._updated[c], reverse=True)
                if "updated_within" in query:
                    since = time.time() - int(query["updated_within"])
                    order = [c for c in order if self._updated[c] > since]
                else:
                    page = max(1, int(query.get("page", "1")))
                    order = order[(page - 1) * 25 : page * 25]
                payload = [self._conversations[c] for c in order]
                counts: dict[str, Any] = {
                    "mine_count": 0,
                    "unassigned_count": 0,
                    "assigned_count": 0,
                    "all_count": len(payload),
                }
                return 200, {"data": {"meta": counts, "payload": payload}}
            if len(rest) == 2 and rest[1] == "messages" and rest[0].isdigit():
                cid = (account, int(rest[0]))
                if cid not in self._conversations:
                    return 404, {"error": "Resource could not be found"}
                messages = sorted(self._messages.get(cid, []), key=lambda m: m["id"])
                if "after" in query:
                    messages = [m for m in messages if m["id"] > int(query["after"])][:100]
                elif "before" in query:
                    messages = [m for m in messages if m["id"] < int(query["before"])][-20:]
                else:
                    messages = messages[-20:]
                meta: dict[str, Any] = {"labels": [], "additional_attributes": {}, "contact": {}, "assignee": None}
                return 200, {"meta": meta, "payload": messages}
        return 404, {"error": "Resource could not be found"}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeChatwootRestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("chatwoot fake: " + format, *args)

    def do_GET(self) -> None:
        fake = self.fake
        with fake._lock:
            fake.requests.append(("GET", self.path, dict(self.headers.items())))
            failure = fake.fail_next.pop(0) if fake.fail_next else None
        if fake.delay:
            time.sleep(fake.delay)
        parts = urllib.parse.urlsplit(self.path)
        if self.headers.get("api_access_token") != fake.access_token:
            status, body = 401, {"error": "You need to sign in or sign up before continuing."}
        elif failure is not None:
            status, body = failure, {"error": "Internal Server Error"}
        else:
            query = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query).items()}
            status, body = fake._answer(parts.path, query)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
