"""Issue 10: hostile servers and secret-shaped input (redaction, limits, server numbers).

Each test plays a hostile server on 127.0.0.1 (the fakes of realtime_sync.testing, or a raw
socket server) and checks one promise of SECURITY.md.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import realtime_sync as rs
from realtime_sync import _redact
from realtime_sync.cometd import CometDClient
from realtime_sync.jifeline import JifelineCustomerClient, JifelinePartnerClient
from realtime_sync.testing.actioncable import FakeVoxsigServer
from realtime_sync.testing.bayeux import FakeBayeuxServer
from realtime_sync.testing.jifeline import FakeJifelineCustomerServer, FakeJifelinePartnerServer
from realtime_sync.voxsig import VoxsigClient

from .conftest import Recorder, T, hold_dispatcher, poll_until

SECRET = "hostile-echo-s3cret-T0KEN"


def _formatted(caplog: pytest.LogCaptureFixture) -> str:
    """Every realtime_sync record as a handler would write it (message and traceback)."""
    fmt = logging.Formatter("%(message)s")
    return "\n".join(fmt.format(r) for r in caplog.records if r.name.startswith("realtime_sync"))


# -- redaction: linear time ----------------------------------------------------------------------

ADVERSARIAL = {
    "letters": "abcdefgh",  # the old scheme:// pattern: 23 s on 32 KB of this
    "backslashes": "\\",
    "userinfo": "a://b:c",
    "escaped json member": '\\"token\\":\\"' + "\\" * 20,
    "keys": '"token" "password" ',
    "header": "Authorization" + " " * 40,
    "unclosed credentials": '{"credentials":{',
    "free text names": "token: password: ",
    "free text quote": 'token: "',
    "free text scheme": "token: Bearer ",
}


@pytest.mark.parametrize("shape", sorted(ADVERSARIAL))
def test_redact_is_linear_on_adversarial_input(shape: str) -> None:
    """The old patterns took 23 s on 32 KB of plain letters (quadratic, holding the GIL); 256 KiB
    would take about 25 minutes.  benchmarks/redact.py has the figures; this is a deadline."""
    unit = ADVERSARIAL[shape]
    text = (unit * (256 * 1024 // len(unit) + 1))[: 256 * 1024]
    done = threading.Event()
    worker = threading.Thread(target=lambda: (_redact.redact(text), done.set()), daemon=True)
    worker.start()
    assert done.wait(T(10)), f"redact() of 256 KiB of {shape!r} did not finish within {T(10)}s"


def test_truncate_redacts_before_cutting() -> None:
    _redact.register_secret(SECRET)
    for cut in range(480, 505):
        frame = "x" * cut + SECRET + "y" * 100
        excerpt = rs.protocols.base.truncate(frame)
        assert SECRET[:6] not in excerpt, cut
    url = "wss://alice:" + "p" * 600 + "@example.com/"
    assert "ppp" not in rs.protocols.base.truncate(url)


def test_shapes() -> None:
    r = _redact.redact
    assert r('{"ext":{"authentication":{"credentials":{"user":"u","pw":"x1"}}}}') == '{"ext":{"authentication":***}}'
    assert r("X-Auth-Token: abc123") == "X-Auth-Token: ***"
    assert r("{'X-Auth-Token': 'abc123', 'Accept': 'json'}") == "{'X-Auth-Token': '***', 'Accept': 'json'}"
    assert r('{"token_type":"bearer","session_token":"abc"}') == '{"token_type":"bearer","session_token":"***"}'
    assert r("http://u:p@h1/x http://u2:p2@h2/") == "http://u:***@h1/x http://u2:***@h2/"
    assert r("GET /x?a=1&access_token=zzz#f") == "GET /x?a=1&access_token=***#f"
    # JWTs and session ids in a query string, a JSON member, a header-like line (reviewer, session 10).
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI3In0.c2lnbmF0dXJl"
    assert r(f"ws://h/cable?jwt={jwt}&room=1") == "ws://h/cable?jwt=***&room=1"
    assert r(f'{{"user_jwt": "{jwt}", "id": 7}}') == '{"user_jwt": "***", "id": 7}'
    assert r("wss://h/ws?sessionid=a1b2c3d4e5&x=1 refused") == "wss://h/ws?sessionid=***&x=1 refused"
    assert r("GET /poll?session_id=9f8e7d6c5b4a") == "GET /poll?session_id=***"


# -- redaction: free text ``name: value`` ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # A value after a secret name and a colon is hidden...
        ("invalid token: abc123", "invalid token: ***"),
        ("handshake refused: invalid token: eyJhbGciOi.eyJzdWIi.c2ln.", "handshake refused: invalid token: ***."),
        ("pubsub_token: k3yJxQ9sLmN0pQrStUvWxYz1", "pubsub_token: ***"),
        ("VOXSIG_PUBSUB_TOKEN:k3yJxQ9sLmN0pQrStUvWxYz1 set", "VOXSIG_PUBSUB_TOKEN:*** set"),
        ("access_token : ya29.a0AfH6SMB", "access_token : ***"),
        ("error=invalid_token (token: eyJabc.def)", "error=invalid_token (token: ***)"),
        ("client_secret: cs-1; api_key: k_live_9", "client_secret: ***; api_key: ***"),
        ("token: Bearer abc123 was refused", "token: *** was refused"),
        ('token: "two words 1" sent', 'token: "***" sent'),
        ('{"token": 123456789}', '{"token": ***}'),
        # ... a password unless it is a status word, even a plain word ...
        ("password: hunter2", "password: ***"),
        ("Password: sunshine", "Password: ***"),
        ("password: expired", "password: expired"),
        ("the password: required.", "the password: required."),
        # ... any other secret unless it reads as a word of a sentence (letters, at most 16).
        ("token: expired", "token: expired"),
        ("OAuth: token expired", "OAuth: token expired"),
        ("CSRF token: GET https://h/x failed", "CSRF token: GET https://h/x failed"),
        ("ws://h/cable refused the credentials: HTTP 401", "ws://h/cable refused the credentials: HTTP 401"),
        ("Check VOXSIG_PUBSUB_TOKEN: it must be the agent's", "Check VOXSIG_PUBSUB_TOKEN: it must be the agent's"),
        ("token: abcdefghijklmnopq", "token: ***"),  # 17 letters: not a word
        ('{"token": null}', '{"token": null}'),
        # Not a name and a value: a scope operator, a URL's userinfo (its own rule), no colon.
        (
            "ActionCable::Connection::Authorization::UnauthorizedError",
            "ActionCable::Connection::Authorization::UnauthorizedError",
        ),
        ("Cookie::Jar", "Cookie::Jar"),
        ("wss://token:abc@h/x", "wss://token:***@h/x"),
        ("the token is abc123", "the token is abc123"),
        ("token_type: bearer", "token_type: bearer"),
        # The shapes that were covered before stay as they were.
        ("Authorization: Bearer x", "Authorization: ***"),
        ("Cookie: sid=abc", "Cookie: ***"),
        ("token=abc123", "token=***"),
    ],
)
def test_free_text_name_value(text: str, shown: str) -> None:
    assert _redact.redact(text) == shown
    assert _redact.redact(shown) == shown  # idempotent


_TOKEN_NAMES = ["token", "pubsub_token", "access_token", "refresh_token", "id_token", "client_secret",
                "api_key", "apikey", "secret", "credentials", "auth", "OAuth", "session_token", "X_API_TOKEN",
                "VOXSIG_PUBSUB_TOKEN", "authentication"]  # fmt: skip
_PASSWORD_NAMES = ["password", "passwd", "Password", "db_password", "PROXY_PASSWORD"]
_PREFIXES = ["", "invalid ", "error: ", "HTTP 401 (", "server said: ", "refused; the ", "[", "\n"]
_SUFFIXES = ["", ".", " was rejected", ", retry", ")", "; see the logs", "!", "\n", " (expired)"]
_SEPARATORS = [": ", ":", " : ", ":\t", ":  "]
_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/="


def _token_like(value: str) -> bool:
    """What the rule hides after a token name: not a word of prose."""
    return not (len(value) <= 16 and value.isascii() and value.isalpha())


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_TOKEN_NAMES + _PASSWORD_NAMES),
    st.sampled_from(_SEPARATORS),
    st.text(_TOKEN_CHARS, min_size=1, max_size=80).filter(lambda v: v[-1].isalnum()),
    st.sampled_from(_PREFIXES),
    st.sampled_from(_SUFFIXES),
    st.booleans(),
)
def test_a_secret_after_a_name_and_a_colon_never_shows(
    name: str, sep: str, value: str, prefix: str, suffix: str, scheme: bool
) -> None:
    password = name.lower().endswith(("password", "passwd"))
    if not password and not _token_like(value):
        value += "1"  # a word of prose is kept by design (next test): make it a token
    if password and value.lower() in _redact._STATUS_WORDS:
        value += "1"
    said = f"Bearer {value}" if scheme else value
    text = f"{prefix}{name}{sep}{said}{suffix}"
    if name.lower() in _redact._HEADER_NAMES:  # a header's value runs to the end of the line
        assert _redact.redact(text).startswith(f"{prefix}{name}{sep}***"), text
        return
    assert _redact.redact(text) == f"{prefix}{name}{sep}***{suffix}", text
    # The same inside a JSON frame's string (what event.raw and a DEBUG frame line show).
    frame = f'{{"content": "{text}", "id": 1}}'
    assert _redact.redact(frame) == f'{{"content": "{prefix}{name}{sep}***{suffix}", "id": 1}}', frame


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(_TOKEN_NAMES),
    st.sampled_from(_SEPARATORS),
    st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=16),
    st.sampled_from(_PREFIXES),
    st.sampled_from(_SUFFIXES),
)
def test_a_word_after_a_token_name_is_prose_and_kept(name: str, sep: str, word: str, prefix: str, suffix: str) -> None:
    if _redact.is_secret_header(name) and name.lower() in _redact._HEADER_NAMES:
        return  # a header's name (apikey): its value is hidden whatever it is
    if word.lower() in ("bearer", "basic", "digest", "negotiate") and suffix.startswith(" "):
        return  # a scheme: what follows is its credential (tested above)
    text = f"{prefix}{name}{sep}{word}{suffix}"
    assert _redact.redact(text) == text


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(_PASSWORD_NAMES),
    st.sampled_from(_SEPARATORS),
    st.sampled_from(sorted(_redact._STATUS_WORDS)),
    st.sampled_from(_PREFIXES),
    st.sampled_from(_SUFFIXES),
)
def test_a_status_word_after_a_password_name_is_kept(name: str, sep: str, word: str, prefix: str, suffix: str) -> None:
    text = f"{prefix}{name}{sep}{word}{suffix}"
    assert _redact.redact(text) == text


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(["token", "password", "Authorization", "Bearer", "cookie", ":", "::", ": ", "=", " ",
                         '"', "'", "\\", "://", "@", "(", ")", "abc123", "expired", "{", "}", ",", ".", "\n"])
        | st.text(max_size=6),
        max_size=30,
    ).map("".join)
)  # fmt: skip
def test_redaction_is_idempotent_and_total(text: str) -> None:
    once = _redact.redact(text)
    assert _redact.redact(once) == once


# -- the registries: server input cannot evict the client's secrets ------------------------------


def test_server_secrets_cannot_evict_the_clients_own() -> None:
    own = "own-password-never-evicted"
    _redact.register_secret(own)
    for i in range(_redact.MAX_SERVER_SECRETS * 10):
        _redact.register_server_secret(f"cookie-flood-{i:06d}")
    assert _redact.redact(f"pw={own}!") == "pw=***!"
    assert len(_redact._server_secrets) <= _redact.MAX_SERVER_SECRETS


# -- the logging boundary ------------------------------------------------------------------------


def test_every_realtime_sync_logger_redacts(
    echo_server: Any, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    _redact.register_secret(SECRET)
    client = make_client(echo_server.url, name="logger-check")
    client.wait_for("connected", timeout=T(5))  # starts it: a start() first could miss the event
    # The library's loggers carry the filter (a handler on them sees redacted records)...
    for name in ("realtime_sync", "realtime_sync.logger-check", "realtime_sync.transport", "realtime_sync.bayeux"):
        assert any(isinstance(f, _redact.RedactingFilter) for f in logging.getLogger(name).filters), name
    # ...and a logger created later without it (a new module) is redacted on its way up.
    logging.getLogger("realtime_sync.some.new.module").warning("leaking %s", SECRET)
    logging.getLogger("realtime_sync.some.new.module").error("boom", exc_info=ValueError(SECRET))
    text = _formatted(caplog)
    assert "leaking ***" in text and "ValueError: ***" in text and SECRET not in text


def test_handler_tracebacks_and_server_echoes_are_redacted(
    echo_server: Any, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    client = make_client(echo_server.url, token=SECRET)
    rec = Recorder(client)

    @client.on("boom")
    def handler(event: rs.Event) -> None:
        raise ValueError(f"handler saw {SECRET}")

    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send({"event": "boom", "data": {}})
    rec.wait("error", where=lambda e: e.data.kind == "handler")
    # A server that echoes the bearer token in its close reason.
    conn.close(4000, f"bad token {SECRET}")
    info = rec.wait("disconnected").data
    assert SECRET not in info.reason and SECRET not in repr(info)
    rec.wait("connected", count=2)
    text = _formatted(caplog)
    assert "handler saw ***" in text and "Traceback" in text
    assert SECRET not in text


def test_a_refused_handshake_body_echoing_the_token_is_redacted(
    echo_server: Any, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    echo_server.refuse(401, body=f'{{"error":"invalid token","got":"Bearer {SECRET}"}}')
    client = make_client(echo_server.url, token=SECRET, reconnect=rs.ReconnectPolicy(stop_on_auth_failure=True))
    rec = Recorder(client)
    client.start()
    err = rec.wait("error").data
    assert SECRET not in repr(err) and SECRET not in err.message and SECRET not in str(err.exception or "")
    assert SECRET not in _formatted(caplog)


# -- Bayeux: server numbers, amplification, nesting -----------------------------------------------


def _use_stdlib_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode as the standard library does (no orjson): ``1e999`` is infinity, deep nesting
    raises RecursionError.  CI installs no orjson; the developer's machine may."""
    import json

    from realtime_sync import _json
    from realtime_sync.protocols import base

    monkeypatch.setattr(_json, "loads", json.loads)
    monkeypatch.setattr(base, "loads", json.loads, raising=False)


@pytest.fixture
def bayeux() -> Iterator[FakeBayeuxServer]:
    with FakeBayeuxServer(timeout=1.0) as server:
        yield server


def _no_adapter_failure(caplog: pytest.LogCaptureFixture, rec: Recorder) -> None:
    """The transport survives an exception out of an adapter (and logs it at ERROR): the
    promise is stronger, no server input makes an adapter raise."""
    assert not [r for r in caplog.records if r.name.startswith("realtime_sync") and r.levelno >= logging.ERROR]
    assert not [e for e in rec.events if e.name == "error" and "could not be processed" in e.data.message]


class _InfiniteAdvice(FakeBayeuxServer):
    """Once ``hostile`` is set, every reply advises ``timeout``/``interval`` = infinity (what
    ``1e999`` decodes to)."""

    hostile = False

    def _advice(self) -> dict[str, Any]:
        advice = super()._advice()
        if self.hostile:
            advice = {**advice, "timeout": float("inf"), "interval": float("inf")}
        return advice


def test_an_infinite_bayeux_advice_is_range_checked(
    clients: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``1e999`` is valid JSON for infinity: int() or select() of it killed the transport thread."""
    _use_stdlib_json(monkeypatch)
    with _InfiniteAdvice(timeout=0.5) as bayeux:
        bayeux.hostile = True  # the handshake and first connect replies carry the advice
        client = clients(CometDClient, bayeux.http_url, transport="websocket")
        client.subscribe("/chat/a")
        rec = Recorder(client)
        client.start()
        bayeux.wait_for_subscription("/chat/a", timeout=T(5))
        # Other errors may come first on a loaded machine (a slow connect reply): wait for this one.
        err = rec.wait("error", where=lambda e: "out of range" in e.data.message, timeout=T(5)).data
        assert err.kind == "bad_frame"
        bayeux.hostile = False
        since = len(bayeux.received)
        bayeux.expire_sessions()  # a new handshake: it sends the advice back as integers
        hs = bayeux.wait_for_meta("/meta/handshake", timeout=T(10), since=since)
        assert all(isinstance(v, int) and 0 <= v <= 3_600_000 for v in hs["advice"].values()), hs
        assert client.state is not rs.State.CLOSED
        _no_adapter_failure(caplog, rec)


def test_a_frame_of_thousands_of_bad_messages_is_one_summary(
    bayeux: FakeBayeuxServer, clients: Callable[..., Any]
) -> None:
    client = clients(CometDClient, bayeux.http_url, transport="websocket")
    client.subscribe("/chat/a")
    rec = Recorder(client)
    client.start()
    bayeux.wait_for_subscription("/chat/a", timeout=T(5))
    conn = bayeux.wait_for_connection(timeout=T(5))
    conn.send("[" + ",".join(["1", '{"no":"channel"}'] * 5000) + "]")
    bayeux.publish("/chat/a", {"after": True})
    # 10,000 bad messages are a few tenths of a second of CPU: a deadline for a hang, with room
    # for a machine that gives this process a tenth of a core (10 s failed at load 30 and 300).
    rec.wait("message", timeout=T(60))
    errors = [e for e in rec.events if e.name == "error"]
    assert 1 <= len(errors) <= 4, len(errors)
    assert "9997 more bad message(s)" in errors[-1].data.message


DEEP = ["[" * 1000 + "]" * 1000, "[" * 100_000 + "]" * 100_000, '{"a":' * 1000 + "1" + "}" * 1000]


def _vendors() -> list[Any]:
    def jifeline_customer(clients: Any) -> tuple[Any, Any, Callable[[], None]]:
        server = FakeJifelineCustomerServer(interval=0.1).start()
        client = clients(JifelineCustomerClient, server.url)
        client.subscribe_ticket(1)
        return server, client, lambda: None

    def jifeline_partner(clients: Any) -> tuple[Any, Any, Callable[[], None]]:
        server = FakeJifelinePartnerServer(interval=0.1).start()
        client = clients(JifelinePartnerClient, server.url, token="partner-token")
        client.subscribe_connector("1d7fc3f0-8b6f-4b8e-9f55-2a2a2a2a2a2a")
        return server, client, lambda: None

    def voxsig(clients: Any) -> tuple[Any, Any, Callable[[], None]]:
        server = FakeVoxsigServer(ping_interval=0.3).start()
        client = clients(VoxsigClient, server.url, "user-token-1", account_id=1, user_id=7, presence_interval=None)
        return server, client, lambda: None

    def bayeux(clients: Any) -> tuple[Any, Any, Callable[[], None]]:
        server = FakeBayeuxServer(timeout=1.0).start()
        client = clients(CometDClient, server.http_url, transport="websocket")
        client.subscribe("/chat/a")
        return server, client, lambda: server.publish("/chat/a", {"n": 1})

    return [jifeline_customer, jifeline_partner, voxsig, bayeux]


@pytest.mark.parametrize("codec", ["json", "default"])
@pytest.mark.parametrize("vendor", _vendors(), ids=lambda f: f.__name__)
def test_deeply_nested_json_is_a_decode_error_on_every_adapter(
    vendor: Any,
    codec: str,
    clients: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if codec == "json":
        _use_stdlib_json(monkeypatch)
    server, client, _ = vendor(clients)
    try:
        rec = Recorder(client)
        client.start()
        conn = server.wait_for_connection(timeout=T(5))
        rec.wait("connected", timeout=T(5))
        for frame in DEEP:
            conn.send(frame)
        poll_until(lambda: sum(1 for e in rec.events if e.name == "error") >= len(DEEP), timeout=10)
        assert all(e.data.kind == "bad_frame" for e in rec.events if e.name == "error")
        # Still the same, working connection.
        assert not [e for e in rec.events if e.name == "disconnected"]
        assert client.state is rs.State.CONNECTED
        _no_adapter_failure(caplog, rec)
    finally:
        client.close(timeout=5)
        server.stop()


def test_decode_refuses_deep_nesting_whatever_the_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from realtime_sync import _json

    monkeypatch.setattr(_json, "loads", json.loads)  # stdlib json raises RecursionError itself
    for frame in DEEP:
        with pytest.raises(ValueError):
            _json.decode(frame)
    assert _json.decode('{"a":"[[[[[[[["}') == {"a": "[[[[[[[["}


def test_decoding_stays_fast_on_big_frames() -> None:
    """Not a benchmark: only that a big valid frame is not rejected nor slow to check."""
    import json

    from realtime_sync import _json

    frame = json.dumps([{"id": i, "tags": [1, 2], "text": "a [b] {c}"} for i in range(20_000)])
    t0 = time.perf_counter()
    assert len(_json.decode(frame)) == 20_000
    assert time.perf_counter() - t0 < T(5)


# -- redirects and bounded bodies of the library's own HTTP requests --------------------------------


class _HostileHTTP:
    """A raw HTTP server on 127.0.0.1: ``routes[path] = (status, headers, body)``; records requests."""

    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]] | None = None) -> None:
        import http.server

        self.routes = routes or {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                outer.requests.append((self.command, self.path, dict(self.headers)))
                status, headers, body = outer.routes.get(self.path.split("?")[0], (404, {}, b"no"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the client stopped reading: that is the point

            do_GET = do_POST = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-hostile-http", daemon=True)

    def __enter__(self) -> _HostileHTTP:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("auth_method", ["body", "basic"])
def test_the_oauth_token_request_follows_no_redirect(auth_method: str) -> None:
    with _HostileHTTP() as elsewhere, _HostileHTTP() as hostile:
        for code in (301, 302, 307, 308):
            hostile.routes[f"/token{code}"] = (code, {"Location": elsewhere.url + "/steal"}, b"")
            provider = rs.ClientCredentialsTokenProvider(
                hostile.url + f"/token{code}",
                "cid-1",
                "client-secret-never-elsewhere",
                extra_headers={"x-api-key": "api-key-never-elsewhere"},
                auth_method=auth_method,
                timeout=T(5),
            )
            with pytest.raises(rs.TokenError, match="redirect") as info:
                provider()
            assert "never-elsewhere" not in str(info.value)
        assert elsewhere.requests == []


def test_the_oauth_basic_value_is_registered_as_a_secret() -> None:
    import base64

    with _HostileHTTP() as hostile:
        hostile.routes["/token"] = (200, {"Content-Type": "application/json"}, b'{"access_token":"tok-123456789"}')
        rs.ClientCredentialsTokenProvider(hostile.url + "/token", "cid-9", "basic-secret-xyz", auth_method="basic")()
    basic = base64.b64encode(b"cid-9:basic-secret-xyz").decode()
    assert basic not in rs.redact(f"Basic {basic} sent")


CREATED = "tickets.ticket.created"


def _gap_client(clients: Callable[..., Any], partner: Any, rest_url: str, **gap: Any) -> tuple[Any, Recorder]:
    options = {"rest_url": rest_url, "http_timeout": T(5), "hold_timeout": T(5), "after_id": "evt-1", **gap}
    client = clients(
        JifelinePartnerClient, partner.url, token="gap-bearer-never-elsewhere", gap_recovery=rs.GapRecovery(**options)
    )
    client.subscribe_event(CREATED)
    rec = Recorder(client)
    client.start()
    return client, rec


def test_gap_recovery_follows_no_redirect(clients: Callable[..., Any]) -> None:
    with FakeJifelinePartnerServer(interval=0.1) as partner, _HostileHTTP() as elsewhere, _HostileHTTP() as hostile:
        hostile.routes["/v2/system/events"] = (302, {"Location": elsewhere.url + "/v2/system/events"}, b"")
        _client, rec = _gap_client(clients, partner, hostile.url)
        err = rec.wait("error", timeout=T(10)).data
        assert "redirect" in err.message and "never-elsewhere" not in repr(err)
        assert hostile.requests and elsewhere.requests == []


def test_gap_recovery_reads_a_bounded_body(clients: Callable[..., Any]) -> None:
    huge = b'{"data":[' + b'{"event_id":"x"},' * 400_000 + b'{"event_id":"y"}]}'  # about 7 MB
    with FakeJifelinePartnerServer(interval=0.1) as partner, _HostileHTTP() as hostile:
        hostile.routes["/v2/system/events"] = (200, {"Content-Type": "application/json"}, huge)
        _client, rec = _gap_client(clients, partner, hostile.url, max_body=1024 * 1024)
        err = rec.wait("error", timeout=T(10)).data
        assert "larger than 1048576 bytes" in err.message


# -- the cookie jar: bounded, Domain/Path/Secure/Max-Age --------------------------------------------


@pytest.mark.parametrize(
    "set_cookie",
    ["EVIL=planted-value-1; Domain=evil.example", "SEC=secure-on-plain-http; Secure", "OLD=gone-1; Max-Age=0"],
)
def test_cookies_for_another_domain_or_secure_over_http_are_not_kept(
    clients: Callable[..., Any], set_cookie: str
) -> None:
    with FakeBayeuxServer(timeout=0.3, websocket=False, set_cookie=set_cookie) as server:
        client = clients(CometDClient, server.http_url, transport="long-polling")
        client.wait_for("connected", timeout=T(5))  # starts it: a start() first could miss the event
        n = len(server.http_requests)
        poll_until(lambda: len(server.http_requests) >= n + 3, timeout=10)
        name = set_cookie.split("=", 1)[0]
        for request in server.http_requests:
            cookie = {k.lower(): v for k, v in request.headers.items()}.get("cookie", "")
            assert name + "=" not in cookie, cookie
        assert client.cookies.get(name) is None


def test_a_cookie_flood_is_bounded_and_keeps_the_session_cookie() -> None:
    from realtime_sync._cookies import MAX_COOKIES, CookieJar

    jar = CookieJar(url="https://gws.example.com/api/v2/notifications")
    jar.update(["JSESSIONID=session-cookie-value-1; Path=/"])
    own = "client-password-kept-1"
    _redact.register_secret(own)
    jar.update([f"flood{i}=flood-value-{i:08d}" for i in range(5000)])
    assert len(jar) <= MAX_COOKIES and jar.get("JSESSIONID") == "session-cookie-value-1"
    assert len(jar.header() or "") <= jar.max_bytes + 2 * MAX_COOKIES
    assert rs.redact(own) == "***"
    # Path and expiry.
    jar = CookieJar(url="https://h.example/api/v2/notifications")
    jar.update(["A=1; Path=/other", "B=2; Path=/api", "C=3; Max-Age=1", "D=4; Expires=Wed, 21 Oct 2015 07:28:00 GMT"])
    assert jar.header() == "B=2; C=3"


def test_a_custom_auth_header_is_hidden_everywhere(
    echo_server: Any, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    value = "xauth-value-no-space-42"
    client = make_client(echo_server.url, headers={"X-Auth-Token": value, "Accept-Language": "nl"})
    assert value not in repr(client.connect_options) and "nl" in repr(client.connect_options)
    client.start()
    echo_server.wait_for_connection(timeout=T(5))
    assert echo_server.handshakes[-1].headers["X-Auth-Token"] == value
    client.send({"echo": value})
    echo_server.wait_for_message(lambda m: "echo" in m.text, timeout=T(5))
    assert value not in _formatted(caplog) and value not in rs.redact(f"got {value}")


def test_genesys_errors_never_show_url_credentials(
    clients: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    with pytest.raises(rs.ConfigurationError) as info:
        rs.GenesysChatClient("alice:pa55w0rd-genesys@gws.example/api")
    assert "pa55w0rd" not in str(info.value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = clients(rs.GenesysChatClient, f"http://alice:pa55w0rd-genesys@127.0.0.1:{port}/api/v2/notifications")
    rec = Recorder(client)
    client.start()
    err = rec.wait("error", timeout=T(10)).data
    assert "pa55w0rd" not in repr(err) + str(err.exception) + repr(client) + _formatted(caplog)


def test_the_event_queue_is_bounded_in_bytes(echo_server: Any, make_client: Any) -> None:
    client = make_client(echo_server.url, max_queue_bytes=256 * 1024)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    release = hold_dispatcher(client, conn)
    for i in range(20):  # 20 x 64 KiB: five times the byte bound, far under max_queue
        conn.send({"event": "big", "id": i, "data": {"text": "x" * 65536}})
    poll_until(lambda: client.stats.frames_received >= 21)
    depth = client.stats.queue_depth
    release.set()
    assert depth <= 1 + 256 * 1024 // 65536 + 1, depth
    assert client.stats.dropped >= 20 - 5


def test_nested_cometd_ext_credentials_never_reach_debug_logs(
    bayeux: FakeBayeuxServer, clients: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    ext = {"authentication": {"credentials": {"user": "agent-7", "token": "nested-cred-0042", "pin": "4711"}}}
    client = clients(CometDClient, bayeux.http_url, transport="websocket", ext=ext)
    client.subscribe("/chat/a")
    client.start()
    bayeux.wait_for_subscription("/chat/a", timeout=T(5))
    handshake = bayeux.wait_for_meta("/meta/handshake", timeout=T(5))
    assert handshake["ext"]["authentication"]["credentials"]["token"] == "nested-cred-0042"  # sent...
    text = _formatted(caplog)
    assert "/meta/handshake" in text  # ...and the frame was logged at DEBUG, without them
    assert "nested-cred-0042" not in text and "4711" not in text and "agent-7" not in text


@pytest.mark.parametrize(
    "text",
    [
        '{"a": [1, 2.5, "x", null, true]}',
        "  {}  ",
        "{}\n",
        "[1] [2]",
        "",
        "   ",
        "\ufeff{}",
        '{"a": 1',
        '{"a": "\\ud800"}',
        "NaN",
        "1e999",
        '"just a string"',
        b'{"bytes": 1}',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_the_stdlib_fast_loads_is_json_loads(text: str | bytes) -> None:
    """Without orjson, frames are read by the C scanner directly; results and errors must be
    json.loads' own, whatever the input."""
    import json

    from realtime_sync import _json

    def outcome(fn: Callable[[Any], Any]) -> Any:
        try:
            return ("ok", fn(text))
        except BaseException as exc:  # the exception itself is compared
            return ("err", type(exc), str(exc))

    assert outcome(_json._stdlib_loads) == outcome(json.loads)
