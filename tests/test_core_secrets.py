"""Secrets never appear in log lines (any level), reprs or exception messages."""

from __future__ import annotations

import logging

import realtime_sync as rs

from .conftest import Recorder, T

SECRET = "sup3r-s3cret-t0ken-value"


def _all_text(caplog, rec) -> str:
    records = [r for r in caplog.records if r.name.startswith("realtime_sync")]
    parts = [r.getMessage() for r in records]
    parts += [r.exc_text or "" for r in records]
    for e in rec.events:
        parts.append(repr(e))  # event.data itself is the payload as sent: the app's to handle
        if e.name == "error":
            parts.append(str(e.data.message))
            parts.append(str(e.data.exception))
            parts.append(str(e.data.frame))
    return "\n".join(parts)


def test_token_in_header_query_and_frames_stays_out_of_logs(echo_server, make_client, caplog):
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    url = echo_server.url + f"?access_token={SECRET}2&x=1"
    client = make_client(url, token=SECRET, cookies={"JSESSIONID": SECRET + "3"}, headers={"X-Api-Key": "k" + SECRET})
    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    # The secrets did go over the wire...
    hs = echo_server.handshakes[-1]
    assert hs.headers["Authorization"] == f"Bearer {SECRET}" and SECRET + "2" in hs.path
    # ...and frames carrying them are logged at DEBUG, redacted.
    conn.send({"event": "x", "data": {"pubsub_token": "pst-" + SECRET, "token": SECRET}})
    conn.send("not json " + SECRET)
    client.send({"identifier": '{"channel":"RoomChannel","pubsub_token":"' + "pst-" + SECRET + '"}'})
    echo_server.wait_for_message(lambda m: "identifier" in m.text, timeout=T(5))
    rec.wait("x")
    rec.wait("error")
    conn.drop()
    rec.wait("connected", count=2)
    client.close()
    text = _all_text(caplog, rec) + repr(client) + repr(client.connect_options)
    assert "> " in text or any(r.levelno == logging.DEBUG for r in caplog.records)
    assert SECRET not in text
    assert "***" in text


def test_secrets_the_server_sends_under_secret_names_are_hidden_in_raw_and_to_dict(echo_server, make_client):
    # Not the client's own (nothing registered them): the member's name says it is a secret.
    import json

    client = make_client(echo_server.url)
    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send(
        {
            "event": "x",
            "data": {
                "id": 1,
                "contact_inbox": {"source_id": "s1", "pubsub_token": "SRV-PUBSUB-1"},
                "people": [{"name": "a", "Password": "SRV-PW-2"}, {"auth": {"user": "u", "key": "SRV-OBJ-3"}}],
                "refresh_token": 12345678901,
                "token_type": "bearer",
                "hmac_verified": False,
                "access_token": None,
            },
        }
    )
    event = rec.wait("x")
    assert event.data["contact_inbox"]["pubsub_token"] == "SRV-PUBSUB-1"  # the app's own payload
    raw = event.raw
    assert raw["data"]["contact_inbox"] == {"source_id": "s1", "pubsub_token": "***"}
    assert raw["data"]["people"] == [{"name": "a", "Password": "***"}, {"auth": "***"}]
    assert raw["data"]["refresh_token"] == "***" and raw["data"]["token_type"] == "bearer"
    assert raw["data"]["hmac_verified"] is False and raw["data"]["access_token"] is None
    for text in (json.dumps(event.raw), json.dumps(event.to_dict()), repr(event.raw)):
        for secret in ("SRV-PUBSUB-1", "SRV-PW-2", "SRV-OBJ-3", "12345678901"):
            assert secret not in text, (secret, text)
    client.close()


def test_refused_handshake_error_has_no_secret(echo_server, make_client, caplog):
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    echo_server.refuse(401)
    client = make_client(
        echo_server.url + f"?access_token={SECRET}", reconnect=rs.ReconnectPolicy(stop_on_auth_failure=True)
    )
    rec = Recorder(client)
    client.start()
    err = rec.wait("error").data
    assert err.kind == "auth" and "401" in err.message
    assert SECRET not in _all_text(caplog, rec)


def test_connect_failure_message_has_no_secret(make_client, caplog):
    caplog.set_level(logging.DEBUG, logger="realtime_sync")
    client = make_client(f"ws://user:{SECRET}@127.0.0.1:9/?access_token={SECRET}")
    rec = Recorder(client)
    client.start()
    err = rec.wait("error").data
    assert err.kind == "connect"
    assert SECRET not in _all_text(caplog, rec) + repr(client)
