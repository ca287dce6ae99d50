"""Constructor arguments are checked at construction, with a message that says what to do
(issue 12 item 2): URL schemes per vendor, numbers from settings and environment variables as
numeric strings, unknown event names in ``on()`` and in ``manage.py check``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync._validate import number, websocket_url

from .conftest import T

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "pubsub-validation-token"


def voxsig(url: str = "wss://h/cable", **kw: object) -> rs.VoxsigClient:
    return rs.VoxsigClient(url, pubsub_token=TOKEN, account_id=1, user_id=7, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://app.voxsig.com/cable", "wss://app.voxsig.com/cable"),
        ("http://127.0.0.1:3000/cable", "ws://127.0.0.1:3000/cable"),
        ("WSS://h/cable", "wss://h/cable"),
    ],
)
def test_an_actioncable_url_may_be_given_as_http(url: str, expected: str) -> None:
    client = voxsig(url)
    try:
        assert client.url == expected
    finally:
        client.close()


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: voxsig("ftp://h/cable"), "VoxsigClient needs a ws://, wss://, http:// or https:// URL"),
        (lambda: voxsig("app.voxsig.com/cable"), "needs an absolute URL such as 'wss://app.voxsig.com/cable'"),
        (lambda: voxsig("wss:///cable"), "has no host"),
        (lambda: voxsig("wss://h:99999/cable"), "is malformed"),
        (lambda: rs.JifelineCustomerClient("https://h/ws"), "websocket URLs start with wss://"),
        (lambda: rs.JifelineCustomerClient("ftp://h/ws"), "JifelineCustomerClient needs a ws:// or wss:// URL"),
        (lambda: rs.GenesysChatClient("ftp://h"), "https://HOST/api/v2/notifications"),
        (lambda: rs.CometDClient("gopher://h/cometd"), "https://host/cometd"),
    ],
)
def test_a_wrong_url_fails_at_construction_saying_what_to_give(make: object, fragment: str) -> None:
    with pytest.raises(rs.ConfigurationError) as excinfo:
        make()  # type: ignore[operator]
    assert fragment in str(excinfo.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda token: rs.JifelinePartnerClient(token),
        lambda token: rs.JifelineCustomerClient(token, "wss://h/ws"),
        lambda token: rs.VoxsigClient(token, "wss://h/cable", account_id=1, user_id=7),
        lambda token: rs.GenesysChatClient(token),
    ],
)
def test_a_token_given_where_the_url_goes_is_not_echoed(make: Any) -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.SECRETPAYLOAD.sig"
    with pytest.raises(rs.ConfigurationError) as excinfo:
        make(token)
    message = str(excinfo.value)
    assert "SECRETPAYLOAD" not in message and "argument order" in message


def test_cometd_keeps_http_urls_for_long_polling() -> None:
    client = rs.CometDClient("https://push.example.com/cometd")
    try:
        assert client.url == "https://push.example.com/cometd"
    finally:
        client.close()


def test_numbers_from_settings_and_environment_may_be_strings() -> None:
    client = voxsig(
        connect_timeout="5",
        max_queue=" 1000 ",
        max_frame_size="65536",
        ping_interval="20",
        presence_interval="30",
        stale_after="6",
        confirm_timeout="10.5",
    )
    try:
        assert client.connect_options.connect_timeout == 5.0
        assert client.connect_options.max_frame_size == 65536
        assert client.dispatch_options.max_queue == 1000
    finally:
        client.close()
    cometd = rs.CometDClient("https://h/cometd", max_network_delay="3")
    cometd.close()
    jifeline = rs.JifelineCustomerClient("wss://h/ws", keepalive_interval="300", max_snapshots="10")
    jifeline.close()
    assert rs.ConnectOptions(connect_timeout="2.5").connect_timeout == 2.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"connect_timeout": "abc"}, "connect_timeout must be a number of seconds, got 'abc'"),
        ({"connect_timeout": "-1"}, "connect_timeout must be >= 0"),
        ({"max_queue": "1.5"}, "max_queue must be a whole number, got '1.5'"),
        ({"max_queue": True}, "max_queue must be a whole number, got bool"),
        ({"ping_interval": "nan"}, "ping_interval must be a finite number"),
        ({"presence_interval": "soon"}, "presence_interval must be a number of seconds"),
        ({"stale_after": "x"}, "stale_after must be a number of seconds"),
        ({"connect": {"connect_timeout": 5}}, "connect= takes a ConnectOptions, got dict"),
        ({"name": ""}, "name= must be a non-empty string"),
    ],
)
def test_a_bad_number_is_a_configuration_error_not_a_type_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(rs.ConfigurationError) as excinfo:
        voxsig(**kwargs)
    assert message in str(excinfo.value)


def test_number_and_url_helpers() -> None:
    assert number("5.0", "n", integer=True) == 5
    assert number(None, "n", optional=True) is None
    assert websocket_url("https://h/cable", "X", http_to_ws=True) == "wss://h/cable"
    with pytest.raises(rs.ConfigurationError, match="must be > 0"):
        number("0", "delay", positive=True)


def test_on_warns_about_an_unknown_event_name_with_the_nearest_one() -> None:
    client = voxsig()
    try:
        with pytest.warns(UserWarning, match="no event named 'mesage.created'; did you mean 'message.created'") as rec:
            client.on("mesage.created", print)
        assert rec[0].filename == __file__  # points at the user's line, not the library's
        with pytest.warns(UserWarning, match="conversation.typing_off"):

            @client.on("conversation.typing_of")
            def typing(event: rs.Event) -> None: ...

        with pytest.warns(UserWarning, match="'mesage.\\*'"):
            client.on("mesage.*", print)  # a pattern that matches nothing
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.simplefilter("default", ResourceWarning)  # the collector may run here
            for ok in ("message.created", "message.*", "*", "connected", "error", "subscription_rejected"):
                client.on(ok, print)
    finally:
        client.close()
    jifeline = rs.JifelineCustomerClient("wss://h/ws")
    try:
        with pytest.warns(UserWarning, match="did you mean 'ticket.updated'"):
            jifeline.on("tickets.updated", print, changes_only=True)
    finally:
        jifeline.close()
    # Open sets of names (any ActionCable channel, CometD channels, partner event types): no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("default", ResourceWarning)  # the collector may run here
        cable = rs.ActionCableClient("wss://h/cable")
        cable.on("whatever.the_decoder_says", print)
        cable.close()
        partner = rs.JifelinePartnerClient(token="validation-token")
        partner.on("tickets.ticket.created", print)
        partner.close()


def test_the_same_unknown_name_registered_per_entity_warns_every_time_with_the_same_hint() -> None:
    # The hint is looked up once per (name, known names, client) and kept: registering a
    # handler per entity of an unknown pattern took ~2 ms each (20 s for 10,000 ids).
    client = voxsig()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for i in range(50):
                client.on("mesage.*", print, entity_id=i)
                client.on("message.created", print, entity_id=i)  # known: never a warning
        texts = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        assert texts == ["VoxsigClient sends no event matching 'mesage.*'; did you mean 'message.*'?"] * 50
        assert {w.filename for w in caught} == {__file__}
    finally:
        client.close()
    jifeline = rs.JifelineCustomerClient("wss://h/ws")  # another client's names: its own hint
    try:
        with pytest.warns(UserWarning, match="matching 'mesage.\\*'; it sends \\['connection.updated'"):
            jifeline.on("mesage.*", print)
    finally:
        jifeline.close()


def _warning_of(client: rs.Client, name: str) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client.on(name, print)
    texts = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(texts) == 1, texts
    assert caught[0].filename == __file__  # the user's line
    return texts[0]


@pytest.mark.parametrize(
    ("vendor", "name", "hint"),
    [
        # A pattern: the same pattern with the typo fixed, its wildcards where they were.
        ("voxsig", "mesage.*", "matching 'mesage.*'; did you mean 'message.*'?"),
        ("voxsig", "conversaton.*", "matching 'conversaton.*'; did you mean 'conversation.*'?"),
        ("voxsig", "*.creatd", "matching '*.creatd'; did you mean '*.created'?"),
        ("voxsig", "conversation.typng_*", "matching 'conversation.typng_*'; did you mean 'conversation.typing_*'?"),
        ("voxsig", "mesage.?reated", "matching 'mesage.?reated'; did you mean 'message.?reated'?"),
        ("voxsig", "notifcation.[cu]*", "matching 'notifcation.[cu]*'; did you mean 'notification.[cu]*'?"),
        ("voxsig", "eror*", "matching 'eror*'; did you mean 'error*'?"),  # a lifecycle event
        ("jifeline", "tiket.*", "matching 'tiket.*'; did you mean 'ticket.*'?"),
        ("jifeline", "conection.*", "matching 'conection.*'; did you mean 'connection.*'?"),
        ("jifeline", "*.updatd", "matching '*.updatd'; did you mean '*.updated'?"),
        ("genesys", "chta.*", "matching 'chta.*'; did you mean 'chat.*'?"),
        ("genesys", "chat.*_updatd", "matching 'chat.*_updatd'; did you mean 'chat.*_updated'?"),
        # An exact name: the nearest name, as before.
        ("voxsig", "mesage.created", "named 'mesage.created'; did you mean 'message.created'?"),
        ("jifeline", "tickets.updated", "named 'tickets.updated'; did you mean 'ticket.updated'?"),
        ("genesys", "chat.status_chnage", "named 'chat.status_chnage'; did you mean 'chat.status_change'?"),
    ],
)
def test_the_typo_hint_of_a_pattern_is_the_corrected_pattern(vendor: str, name: str, hint: str) -> None:
    # The hint for 'mesage.*' was 'message.updated': one name, not the pattern the user meant.
    clients: dict[str, Any] = {
        "voxsig": voxsig,
        "jifeline": lambda: rs.JifelineCustomerClient("wss://h/ws"),
        "genesys": lambda: rs.GenesysChatClient("https://gws.example.com"),
    }
    client = clients[vendor]()
    try:
        assert _warning_of(client, name) == f"{type(client).__name__} sends no event {hint}"
    finally:
        client.close()


def test_a_pattern_with_no_close_correction_lists_the_events() -> None:
    client = voxsig()
    try:
        text = _warning_of(client, "chat.*")  # a Genesys pattern on a Voxsig client: no 'ha*'
        assert text.startswith("VoxsigClient sends no event matching 'chat.*'; it sends ['account.cache_invalidated',")
        assert "did you mean" not in _warning_of(client, "?" * 40)  # longer than any name
        assert "did you mean" not in _warning_of(client, "x" * 300 + "*")  # no quadratic work on a hint
    finally:
        client.close()


_VOXSIG_SETTINGS = """{"VENDOR": "voxsig", "URL": "https://h/cable", "TOKEN": "user-token-1",
                             "OPTIONS": {"account_id": 1, "user_id": 7, "connect_timeout": "5"}}"""


def _django_project(tmp_path: Path, handlers: str, settings: str = _VOXSIG_SETTINGS) -> dict[str, str]:
    (tmp_path / "typo_app").mkdir()
    (tmp_path / "typo_app" / "__init__.py").write_text("")
    (tmp_path / "typo_app" / "realtime.py").write_text(textwrap.dedent(handlers))
    (tmp_path / "typo_settings.py").write_text(
        textwrap.dedent(
            """
            SECRET_KEY = "tests-only"
            INSTALLED_APPS = ["realtime_sync.contrib.django", "typo_app"]
            DATABASES = {}
            REALTIME_SYNC = SETTINGS
            """
        ).replace("SETTINGS", settings)
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="typo_settings")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    return env


def test_django_check_imports_realtime_modules_and_reports_unknown_event_names(tmp_path: Path) -> None:
    pytest.importorskip("django")
    env = _django_project(
        tmp_path,
        """
        from realtime_sync.contrib.django import realtime

        @realtime.on("mesage.created")
        def store(event): ...

        @realtime.on("message.created")
        def fine(event): ...
        """,
    )
    result = subprocess.run(
        [sys.executable, "-m", "django", "check"], env=env, capture_output=True, text=True, timeout=T(60)
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out  # a warning, not an error
    assert "realtime_sync.W001" in out and "typo_app.realtime.store" in out
    assert "did you mean 'message.created'" in out
    assert "fine" not in out.split("realtime_sync.W001", 1)[1].split("\n", 1)[0]


def test_django_check_knows_the_events_of_the_configured_genesys_topics(tmp_path: Path) -> None:
    # The check used the class's chat-only names: a handler for call.* on a client subscribed to
    # /v2/me/calls was reported as one that never runs.
    pytest.importorskip("django")
    env = _django_project(
        tmp_path,
        """
        from realtime_sync.contrib.django import realtime

        @realtime.on("call.status_change")
        def calls(event): ...

        @realtime.on("call.status_chnage")
        def typo(event): ...
        """,
        settings="""{"VENDOR": "genesys", "URL": "https://h/api/v2/notifications",
                     "OPTIONS": {"username": "agent1", "password": "pw"},
                     "SUBSCRIBE": {"topic": ["/v2/me/calls"]}}""",
    )
    result = subprocess.run(
        [sys.executable, "-m", "django", "check"], env=env, capture_output=True, text=True, timeout=T(60)
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "typo_app.realtime.typo" in out and "did you mean 'call.status_change'" in out, out
    assert "typo_app.realtime.calls" not in out, out


def test_django_check_reports_a_realtime_module_that_does_not_import(tmp_path: Path) -> None:
    pytest.importorskip("django")
    env = _django_project(tmp_path, "import no_such_module_for_the_check\n")
    result = subprocess.run(
        [sys.executable, "-m", "django", "check"], env=env, capture_output=True, text=True, timeout=T(60)
    )
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "realtime_sync.E002" in out and "no_such_module_for_the_check" in out


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.start(wait=True, timeout="soon"), "timeout must be a number of seconds, got 'soon'"),
        (lambda c: c.wait_connected(timeout="soon"), "timeout must be a number of seconds, got 'soon'"),
        (lambda c: c.wait_for("connected", timeout="soon"), "timeout must be a number of seconds, got 'soon'"),
        (lambda c: c.events(timeout="soon"), "timeout must be a number of seconds, got 'soon'"),
        (lambda c: c.events(limit="two"), "limit must be a whole number, got 'two'"),
    ],
)
def test_a_bad_wait_timeout_is_a_configuration_error_raised_before_anything_starts(call: object, message: str) -> None:
    # Nothing listens on port 9: had the client started, it would be reconnecting with live threads.
    client = rs.JifelineCustomerClient("ws://127.0.0.1:9/", name="bad-timeout")
    try:
        with pytest.raises(rs.ConfigurationError) as excinfo:
            call(client)  # type: ignore[operator]
        assert message in str(excinfo.value)
        assert client.state is rs.State.IDLE
        assert not [t.name for t in threading.enumerate() if t.name.endswith("bad-timeout")]
        with pytest.raises(rs.ConfigurationError, match="timeout must be a number of seconds, got 'five'"):
            client.close(timeout="five")
    finally:
        client.close()


def test_timeouts_and_limits_may_be_numeric_strings() -> None:
    from realtime_sync.testing import FakeJifelineCustomerServer

    with FakeJifelineCustomerServer(interval=0.1) as server:
        client = rs.JifelineCustomerClient(server.url, name="string-timeouts")
        try:
            client.start(wait=True, timeout=str(T(30)))
            client.wait_connected(timeout=str(T(30)))
            with pytest.raises(rs.WaitTimeout):
                client.wait_for("no.such.event", timeout="0.01")
            assert list(client.events("no.such.event", timeout="0", limit="1")) == []
        finally:
            client.close(timeout=str(T(10)))
        assert client.join(timeout=" 1 ")
    hub = rs.Hub(workers="1", name="string-timeouts-hub")
    assert hub.close(timeout=str(T(10)))


def test_reconnect_policy_and_dispatch_numbers_may_be_strings_and_say_what_they_expect() -> None:
    policy = rs.ReconnectPolicy(interval="5", max_attempts="3", instant_retries=" 2 ", jitter="0.5")
    assert (policy.interval, policy.max_attempts, policy.instant_retries, policy.jitter) == (5.0, 3, 2, 0.5)
    assert rs.ReconnectPolicy(max_attempts=None).max_attempts is None
    for kwargs, message in (
        ({"interval": "five"}, "interval must be a number of seconds, got 'five'"),
        ({"max_attempts": "3.5"}, "max_attempts must be a whole number"),
        ({"auth_failure_delay": []}, "auth_failure_delay must be a number of seconds, got list"),
        ({"interval": "-1"}, "interval must be >= 0"),
    ):
        with pytest.raises(rs.ConfigurationError) as excinfo:
            rs.ReconnectPolicy(**kwargs)  # type: ignore[arg-type]
        assert message in str(excinfo.value)
    assert rs.DispatchOptions(max_queue_bytes="1024").max_queue_bytes == 1024
    with pytest.raises(rs.ConfigurationError, match="max_queue_bytes must be a whole number of bytes"):
        rs.DispatchOptions(max_queue_bytes="lots")
    # Through a client's options as well (the README: numbers may be strings).
    client = voxsig(reconnect=rs.ReconnectPolicy(interval="2"))
    client.close()


def test_vendor_close_takes_a_numeric_string_timeout_and_refuses_anything_else() -> None:
    # VoxsigClient and JifelinePartnerClient close more threads of their own (catch-up, gap recovery).
    for client in (voxsig("ws://127.0.0.1:9/cable"), rs.JifelinePartnerClient(url="ws://127.0.0.1:9/", token="t")):
        with pytest.raises(rs.ConfigurationError, match="timeout must be a number of seconds, got 'five'"):
            client.close(timeout="five")
        assert not client.closed
        client.close(timeout=" 5 ")
        assert client.closed


def test_sink_timeouts_take_numeric_strings_and_refuse_anything_else() -> None:
    pytest.importorskip("redis")
    from realtime_sync.contrib.sinks import RedisStreamSink

    sink = RedisStreamSink("redis://127.0.0.1:9/0", "events")  # nothing buffered: no connection made
    assert sink.flush(timeout="0.5") is True
    with pytest.raises(rs.ConfigurationError, match="timeout must be a number of seconds, got 'soon'"):
        sink.flush(timeout="soon")
    with pytest.raises(rs.ConfigurationError, match="timeout must be a number of seconds, got 'soon'"):
        sink.close(timeout="soon")
    sink.close(timeout=" 2 ")
    assert sink.stats.dropped == 0
