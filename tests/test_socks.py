"""The SOCKS client handshake (realtime_sync._socks), sans-I/O: the bytes it sends, and any
answer a proxy may give yields the next step, the open tunnel, or a SocksRefused (never another
exception).  On the wire it is tested in tests/test_ws_proxy.py (a SOCKS4/5 proxy on 127.0.0.1)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_sync._socks import SocksRefused, handshake


def run(steps: Any, answers: list[bytes]) -> list[bytes]:
    """Drive ``steps`` with ``answers`` (each cut or padded to the length asked); what it sent."""
    sent: list[bytes] = []
    answer = None
    it = iter(answers)
    try:
        while True:
            out, want = steps.send(answer)
            sent.append(out)
            answer = (next(it, b"") + bytes(want))[:want]
    except StopIteration:
        return sent


def test_socks5_with_credentials_and_a_name_the_proxy_resolves() -> None:
    sent = run(
        handshake("socks5h", "vox.test", 443, ("agent", "pw")),
        [b"\x05\x02", b"\x01\x00", b"\x05\x00\x00\x01", b"\x7f\x00\x00\x01\x04\x00"],
    )
    assert sent == [
        b"\x05\x02\x00\x02",  # version 5, two methods: none, username/password
        b"\x01\x05agent\x02pw",  # RFC 1929
        b"\x05\x01\x00\x03\x08vox.test\x01\xbb",  # CONNECT, a domain name
        b"",  # the rest of the bound address
    ]


def test_socks5_resolves_here_and_sends_the_address() -> None:
    sent = run(handshake("socks5", "127.0.0.1", 80), [b"\x05\x00", b"\x05\x00\x00\x04", bytes(18)])
    assert sent[:2] == [b"\x05\x01\x00", b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"]


@pytest.mark.parametrize(
    ("scheme", "request_bytes"),
    [
        ("socks4", b"\x04\x01\x00\x50\x7f\x00\x00\x01me\x00"),
        ("socks4a", b"\x04\x01\x00\x50\x00\x00\x00\x01me\x00vox.test\x00"),
    ],
)
def test_socks4(scheme: str, request_bytes: bytes) -> None:
    host = "127.0.0.1" if scheme == "socks4" else "vox.test"
    assert run(handshake(scheme, host, 80, ("me", "")), [b"\x00\x5a" + bytes(6)]) == [request_bytes]
    with pytest.raises(SocksRefused, match="request rejected"):
        run(handshake(scheme, host, 80, ("me", "")), [b"\x00\x5b" + bytes(6)])


@pytest.mark.parametrize(
    ("answers", "what", "auth"),
    [
        ([b"\x05\xff"], "requires authentication", True),
        ([b"\x04\x00"], "did not answer as a SOCKS5 proxy", False),
        ([b"\x05\x00", b"\x05\x05\x00\x01"], "connection refused", False),
        ([b"\x05\x00", b"\x05\x02\x00\x01"], "not allowed by ruleset", False),
    ],
)
def test_socks5_refusals_say_why(answers: list[bytes], what: str, auth: bool) -> None:
    with pytest.raises(SocksRefused, match=what) as caught:
        run(handshake("socks5h", "vox.test", 443), answers)
    assert caught.value.hint
    # Only a refusal of authentication is a credential refusal (the client's slow auth backoff).
    assert caught.value.auth is auth


@pytest.mark.parametrize(
    ("answers", "auth"),
    [
        ([b"\x05\x02", b"\x01\x01"], True),  # RFC 1929: the user name and password refused
        ([b"\x05\xff"], True),  # no acceptable method: an authentication we cannot give
        ([b"\x05\x01"], False),  # GSSAPI, which we did not offer: no SOCKS5 proxy we can speak to
    ],
)
def test_socks5_credential_refusals(answers: list[bytes], auth: bool) -> None:
    with pytest.raises(SocksRefused) as caught:
        run(handshake("socks5", "127.0.0.1", 443, ("agent", "pw")), answers)
    assert caught.value.auth is auth


def test_a_socks4_rejection_is_no_credential_refusal() -> None:
    # 91 "request rejected or failed" may be the user id, a rule or an unreachable target.
    with pytest.raises(SocksRefused) as caught:
        run(handshake("socks4", "127.0.0.1", 80, ("me", "")), [b"\x00\x5b" + bytes(6)])
    assert caught.value.auth is False


def test_refused_credentials_never_appear_in_the_error() -> None:
    with pytest.raises(SocksRefused) as caught:
        run(handshake("socks5", "127.0.0.1", 443, ("agent", "s3cret-pw")), [b"\x05\x02", b"\x01\x01"])
    assert "s3cret-pw" not in str(caught.value) and "s3cret-pw" not in caught.value.hint
    assert "user name and password" in str(caught.value)


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["socks4", "socks4a", "socks5", "socks5h"]),
    credentials=st.sampled_from([None, ("agent", "pw")]),
    answers=st.lists(st.binary(max_size=24), max_size=6),
)
def test_any_answer_opens_the_tunnel_or_is_refused(scheme: str, credentials: Any, answers: list[bytes]) -> None:
    try:
        run(handshake(scheme, "127.0.0.1", 8080, credentials), answers)
    except SocksRefused:
        pass
