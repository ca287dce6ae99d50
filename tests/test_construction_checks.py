"""Misuse found by a new user's review, raised at construction as ``rs.ConfigurationError`` with
what to do, never with the secret in the message (README, "Errors and bad input"); and the
values that are fine once read as meant (a token read from a file, with its newline) going out
right on the wire.  Each test fails on the code before the fix (say which in its docstring)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync._wsconn import _target, _upgrade_request
from realtime_sync.genesys import GenesysChatClient
from realtime_sync.jifeline import JifelineCustomerClient, JifelinePartnerClient
from realtime_sync.protocols.base import ConnectRequest
from realtime_sync.testing.actioncable import FakeVoxsigServer
from realtime_sync.testing.jifeline import FakeJifelineCustomerServer
from realtime_sync.voxsig import VoxsigClient

from ._echo import EchoClient
from .conftest import T

SECRET = "s3cr3t-t0ken"
INJECTED = f"{SECRET}\r\nX-Injected: yes"


def _refused(make: Any, *, names: str, secret: str = SECRET) -> str:
    """``make()`` raises ConfigurationError naming ``names`` and not showing ``secret``."""
    with pytest.raises(rs.ConfigurationError) as info:
        client = make()
        client.close()  # pragma: no cover - only reached on the old code
    message = str(info.value)
    assert names in message, message
    assert secret not in message, message
    return message


def _header(handshake: Any, name: str) -> str | None:
    return {k.lower(): v for k, v in handshake.headers.items()}.get(name.lower())


# -- 1. line breaks in tokens and headers -----------------------------------------------------


def test_a_token_read_from_a_file_goes_out_without_its_newline(clients: Any) -> None:
    """``token="abc123\\n"`` (``open(...).read()``, a Kubernetes secret) and a header value
    with its file's newline are sent stripped: the server accepts the handshake.  Before, the
    header went out as ``Bearer abc123\\n`` and every handshake failed as a connect error."""
    with FakeJifelineCustomerServer(interval=0.1, token=SECRET) as server:
        client = clients(JifelineCustomerClient, server.url, token=SECRET + "\n", headers={"X-Api-Key": " k-1\r\n"})
        client.subscribe_ticket(32423)
        client.start(wait=True, timeout=T(10))
        (handshake,) = server.handshakes
        assert handshake.status == 101
        assert _header(handshake, "Authorization") == f"Bearer {SECRET}"
        assert _header(handshake, "X-Api-Key") == "k-1"
        assert "x-injected" not in {k.lower() for k in handshake.headers}


@pytest.mark.parametrize(
    ("make", "names"),
    [
        (lambda: JifelineCustomerClient("wss://h/ws", token=INJECTED), "token"),
        (lambda: JifelineCustomerClient("wss://h/ws", token=SECRET + "\x00"), "token"),
        (lambda: JifelineCustomerClient("wss://h/ws", token="ab\tc" + SECRET), "token"),
        (lambda: JifelineCustomerClient("wss://h/ws", headers={"X-A": INJECTED}), "headers['X-A']"),
        (lambda: JifelineCustomerClient("wss://h/ws", headers={"X-A\r\nX-B": SECRET}), "header name"),
        (lambda: JifelineCustomerClient("wss://h/ws", cookies={"sid": INJECTED}), "cookies['sid']"),
        (lambda: JifelineCustomerClient("wss://h/ws", cookies=f"sid={INJECTED}"), "cookies"),
        (lambda: JifelineCustomerClient("wss://h/ws", origin="https://a\r\nX: y"), "origin"),
        (lambda: VoxsigClient("wss://h/cable", INJECTED, account_id=1, user_id=7), "pubsub_token"),
        (lambda: GenesysChatClient("https://h/api/v2/notifications", token=INJECTED), "token"),
        (lambda: GenesysChatClient("https://h/api/v2/notifications", username="a", password=SECRET + "\n"), "password"),
        (lambda: rs.CometDClient("https://h/cometd", headers={"Authorization": f"Bearer {INJECTED}"}), "Authorization"),
    ],
)
def test_a_line_break_inside_a_token_or_header_is_refused_at_construction(make: Any, names: str) -> None:
    """Before: accepted, and written into the HTTP request as is (header injection), or a
    pubsub token the server silently never confirmed."""
    message = _refused(make, names=names)
    assert "line break" in message or "header name" in message or "';'" in message, message


def test_a_token_callable_returning_a_line_break_is_an_error_event_and_nothing_is_sent(clients: Any) -> None:
    """Before: the handshake went out with ``X-Injected: yes`` as a header line of its own."""
    with FakeJifelineCustomerServer(interval=0.1) as server:
        client = clients(JifelineCustomerClient, server.url, token=lambda: INJECTED)
        client.start()
        error = client.wait_for("error", timeout=T(10))
        assert error.data.kind == "token", error.data
        assert "control character" in error.data.message and SECRET not in error.data.message
        assert server.handshakes == []  # no attempt was made with it


def test_a_pubsub_token_with_its_file_newline_is_confirmed(voxsig_server: FakeVoxsigServer, clients: Any) -> None:
    """Before: the identifier carried ``user-token-1\\n``; Chatwoot never answers a wrong token."""
    client = clients(VoxsigClient, voxsig_server.url, "user-token-1\n", account_id=1, user_id=7, presence_interval=None)
    client.start(wait=True, timeout=T(10))
    assert '"pubsub_token":"user-token-1"' in voxsig_server.subscribe_commands[0][1]


def test_a_pubsub_token_callable_returning_a_line_break_is_an_error_event(
    voxsig_server: FakeVoxsigServer, clients: Any
) -> None:
    """Before: subscribed with it and waited for a confirmation that never comes."""
    client = clients(VoxsigClient, voxsig_server.url, lambda: "user-token-1\nx", account_id=1, user_id=7)
    client.start()
    error = client.wait_for("error", timeout=T(10))
    assert error.data.kind == "token" and "pubsub_token" in error.data.message, error.data
    assert voxsig_server.subscribe_commands == []


def test_the_upgrade_request_refuses_a_header_line_break_whatever_built_it() -> None:
    """The websocket's own HTTP writer (an adapter or a hook may add headers after the
    options' checks): before, the lines were joined as given."""
    for headers in ({"X-A": "b\r\nX-Injected: yes"}, {"X-A\nB": "c"}, {"X-A": "b\n"}):
        request = ConnectRequest("ws://127.0.0.1:9/", headers=headers)
        with pytest.raises(ValueError, match="HTTP header"):
            _upgrade_request(request, _target(request.url))


def test_long_polling_refuses_a_folded_header_before_connecting(dead_port: int) -> None:
    """http.client lets ``"\\r\\n X-Injected: yes"`` (an obsolete folded line) through; before,
    the request was tried (here: connection refused, an OSError)."""
    from realtime_sync.transport_longpoll import _Http

    h = _Http(f"http://127.0.0.1:{dead_port}/cometd", rs.ConnectOptions(), T(5))
    try:
        with pytest.raises(ValueError, match="HTTP header 'X-A'"):
            h.post(b"[]", {"X-A": "b\r\n X-Injected: yes"}, 1024)
    finally:
        h.abort()


# -- 2. typed converters of ConnectOptions ------------------------------------------------------


def test_headers_and_subprotocols_of_the_wrong_shape_are_configuration_errors() -> None:
    """Before: ``ValueError: dictionary update sequence element #0...`` for a list of lines, a
    str as subprotocols split into one-letter subprotocols."""
    message = _refused(lambda: rs.ConnectOptions(headers=["Authorization: " + SECRET]), names="headers")  # type: ignore[arg-type]
    assert "{'Name': 'value'}" in message
    _refused(lambda: rs.ConnectOptions(headers={"X-Retry": 3}), names="headers['X-Retry'] must be a str")  # type: ignore[dict-item]
    _refused(lambda: rs.ConnectOptions(subprotocols="graphql-ws"), names="subprotocols takes a list")
    _refused(lambda: rs.ConnectOptions(subprotocols=["ok", 5]), names="subprotocols[1]")  # type: ignore[list-item]
    opts = rs.ConnectOptions(headers={"X-Trace": "1"}, subprotocols=["a", "b"])
    assert opts.headers == {"X-Trace": "1"} and opts.subprotocols == ("a", "b")


# -- 3. raw exceptions ------------------------------------------------------------------------


def test_wrong_types_are_configuration_errors_not_attribute_errors() -> None:
    """Before: ``cookies=5`` and ``gap_recovery="yes"`` raised AttributeError, ``ssl_context="x"``
    was accepted and failed at every connect."""
    _refused(lambda: EchoClient("ws://127.0.0.1:9/", cookies=5), names="cookies must be")
    _refused(lambda: EchoClient("ws://127.0.0.1:9/", ssl_context="x"), names="ssl_context must be an ssl.SSLContext")
    _refused(
        lambda: JifelinePartnerClient("ws://127.0.0.1:9/", token="t", gap_recovery="yes"),
        names="gap_recovery takes True, False or a GapRecovery",
    )
    client = JifelinePartnerClient("ws://127.0.0.1:9/", token="t", gap_recovery="false")  # a settings string
    assert client.gap_recovery is None
    client.close()


def test_flask_options_that_are_not_a_dict_are_a_configuration_error() -> None:
    """Before: ``ValueError: dictionary update sequence element #0 has length 1``."""
    flask = pytest.importorskip("flask")
    from realtime_sync.contrib.flask import RealtimeSync

    app = flask.Flask("construction_checks")
    app.config.update(
        REALTIME_SYNC_VENDOR="voxsig",
        REALTIME_SYNC_URL="ws://127.0.0.1:9/cable",
        REALTIME_SYNC_TOKEN="user-token-1",
        REALTIME_SYNC_OPTIONS="account_id=1",
    )
    realtime = RealtimeSync(app)
    _refused(lambda: realtime.create_client(app), names='REALTIME_SYNC_OPTIONS={"account_id": 1')


# -- 4. verify and ca_bundle -------------------------------------------------------------------


def test_verify_takes_booleans_and_their_settings_spellings_only(tmp_path: Path) -> None:
    """Before: ``verify="/path/ca.pem"`` was silently ignored (a non-empty string is true), so was
    ``verify="false"`` (verification stayed on), ``verify=False`` with a ``ca_bundle`` verified
    nothing, and a missing ``ca_bundle`` failed at every connect."""
    message = _refused(lambda: rs.ConnectOptions(verify="/etc/ssl/private-ca.pem"), names="ca_bundle=")  # type: ignore[arg-type]
    assert "requests" in message
    assert rs.ConnectOptions(verify="false").verify is False  # type: ignore[arg-type]
    assert rs.ConnectOptions(verify=" TRUE ").verify is True  # type: ignore[arg-type]
    _refused(lambda: rs.ConnectOptions(verify="maybe"), names="verify takes True or False")  # type: ignore[arg-type]
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here\n")
    assert rs.ConnectOptions(ca_bundle=str(ca)).ca_bundle == str(ca)
    _refused(lambda: EchoClient("wss://127.0.0.1:9/", verify=False, ca_bundle=str(ca)), names="pass one of them")
    missing = os.path.join(tmp_path, "missing.pem")
    _refused(lambda: EchoClient("wss://127.0.0.1:9/", ca_bundle=missing), names=f"no such file or directory: {missing}")


# -- 5. proxy host and port --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxy", "names"),
    [("http://agent:" + SECRET + "@", "has no host"), ("http://agent:" + SECRET + "@p:notaport", "the port")],
)
def test_a_proxy_without_a_host_or_with_a_bad_port_is_refused(proxy: str, names: str) -> None:
    """Before: no host connected directly, past the proxy; a bad port failed every attempt
    with ``ValueError: Port could not be cast``."""
    message = _refused(lambda: EchoClient("ws://127.0.0.1:9/", proxy=proxy), names=names)
    assert "agent" not in message


# -- 6. unknown options --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "hint"),
    [
        ("acount_id", "did you mean account_id="),
        ("userid", "did you mean user_id="),
        ("presense_interval", "did you mean presence_interval="),
        ("timeout", "did you mean connect_timeout="),
        ("max_retries", "reconnect=rs.ReconnectPolicy(max_attempts=N)"),
        ("retries", "reconnect=rs.ReconnectPolicy(max_attempts=N)"),
    ],
)
def test_an_unknown_option_names_the_nearest_valid_one(option: str, hint: str) -> None:
    """Before: the same list of connection and dispatch fields for every typo, without the
    vendor's own arguments, ``reconnect`` or ``name``."""
    message = _refused(
        lambda: VoxsigClient("wss://h/cable", SECRET, account_id=1, user_id=7, **{option: 3}), names=hint
    )
    for accepted in ("account_id", "presence_interval", "reconnect", "name", "hub", "connect", "dispatch"):
        assert accepted in message.split("It takes:")[1], message
    assert "unknown option" in message


def test_a_misspelt_account_id_is_named_before_the_account_check() -> None:
    """Review 13: ``acount_id=1, user_id=7`` said "user_id=7 needs account_id=..." (the vendor's
    own check ran first), never naming the typo; Django's ``manage.py check`` said the same."""
    message = _refused(lambda: VoxsigClient("wss://h/cable", SECRET, acount_id=1, user_id=7), names="acount_id")
    assert "did you mean account_id=" in message and "needs account_id" not in message


# -- 7. ReconnectPolicy's interval and max_interval ---------------------------------------------


def test_a_longer_interval_is_not_capped_by_the_default_max_interval() -> None:
    """Before: ``ReconnectPolicy(interval=30)`` retried every 5 s (the default ``max_interval``)
    and a doubling delay from 1 s stopped growing at 5 s."""
    assert rs.ReconnectPolicy(interval=30, jitter=0).delay(10) == 30.0
    doubling = rs.ReconnectPolicy(instant_retries=0, interval=1, multiplier=2, jitter=0)
    assert [doubling.delay(k) for k in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    message = _refused(lambda: rs.ReconnectPolicy(interval=30, max_interval=5), names="max_interval (5 s)")
    assert "interval (30 s)" in message
    default = rs.ReconnectPolicy()
    assert (default.interval, default.max_interval, default.delay(3, lambda: 0.0)) == (5.0, 5.0, 5.0)
    assert rs.ReconnectPolicy(interval=30, max_interval=0, jitter=0).delay(3) == 30.0  # 0: no cap


# -- 8. credentials that contradict or are missing ------------------------------------------------


def test_a_token_with_username_and_password_is_refused() -> None:
    """Before: the Basic credentials won and the token was silently dropped."""
    for make in (
        lambda: GenesysChatClient("https://h/api/v2/notifications", token=SECRET, username="a", password="b"),
        lambda: rs.CometDClient("https://a:b@h/cometd", token=SECRET),
    ):
        _refused(make, names="not both")


def test_the_partner_api_without_a_token_and_token_in_query_without_one_are_refused() -> None:
    """Before: ``JifelinePartnerClient()`` was refused (401) at every handshake, forever;
    ``token_in_query=True`` without a token did nothing."""
    _refused(lambda: JifelinePartnerClient(), names="needs token=")
    _refused(lambda: JifelinePartnerClient(cluster="002"), names="needs token=")
    _refused(lambda: JifelineCustomerClient("wss://h/ws", token_in_query=True), names="no token= was given")
    # A URL of one's own (a gateway adding the token, the fake server) may go without one.
    JifelinePartnerClient("ws://127.0.0.1:9/").close()
    JifelinePartnerClient(headers={"Authorization": "Bearer " + SECRET}).close()


# -- 9. start(timeout=) without wait=True -------------------------------------------------------


def test_start_with_a_timeout_but_without_wait_is_an_error() -> None:
    """Before: ``start(timeout=5)`` returned at once, the timeout ignored."""
    client = EchoClient("ws://127.0.0.1:9/", reconnect=False)
    try:
        _refused(lambda: client.start(timeout=5), names="pass wait=True")
        assert client.state is rs.State.IDLE  # nothing started
    finally:
        client.close()
