"""The core on real sockets: delivery, routing, lifecycle, waiting, stats."""

from __future__ import annotations

import threading

import pytest

import realtime_sync as rs

from .conftest import Recorder, T


def test_event_reaches_handlers_by_name_pattern_and_entity(echo_server, make_client):
    client = make_client(echo_server.url)
    got: dict[str, list] = {"exact": [], "pattern": [], "all": [], "entity": [], "second": []}
    client.on("message.created", lambda e: got["exact"].append(e.entity_id))
    client.on("message.created", lambda e: got["second"].append(e.entity_id))
    client.on("message.*", lambda e: got["pattern"].append(e.name))
    client.on("*", lambda e: got["all"].append(e.name))

    @client.on("message.created", entity_id=7)
    def only_seven(event):
        got["entity"].append(event.entity_id)

    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send({"event": "message.created", "id": 7, "data": {"content": "a"}})
    conn.send({"event": "message.updated", "id": 8, "data": {}})
    conn.send({"event": "message.created", "id": "8", "data": {}})
    last = rec.wait("message.created", where=lambda e: e.entity_id == "8")
    assert last.raw == {"event": "message.created", "id": "8", "data": {}}
    assert got["exact"] == [7, "8"] and got["second"] == [7, "8"]
    assert got["pattern"] == ["message.created", "message.updated", "message.created"]
    assert got["entity"] == [7]
    assert "message.updated" in got["all"]
    assert last.received_at > 0


def test_entity_filter_compares_as_strings(echo_server, make_client):
    client = make_client(echo_server.url)
    seen = []
    client.on("x", seen.append, entity_id="42")
    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send({"event": "x", "id": 42})
    conn.send({"event": "x", "id": 43})
    rec.wait("x", where=lambda e: e.entity_id == 43)
    assert [e.entity_id for e in seen] == [42]


def test_off_removes_handlers(echo_server, make_client):
    client = make_client(echo_server.url)
    a, b = [], []
    client.on("x", a.append)
    client.on("x", b.append)
    assert client.off("x", a.append) == 1
    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send({"event": "x"})
    rec.wait("x")
    assert len(b) == 1 and a == []
    assert client.off() >= 1


def test_wait_for_timeout_and_iterator(echo_server, make_client):
    client = make_client(echo_server.url)
    client.start()
    with pytest.raises(rs.WaitTimeout):
        client.wait_for("never", timeout=0.2)
    conn = echo_server.wait_for_connection(timeout=T(5))
    received = []

    def feed():
        for i in range(3):
            conn.send({"event": "tick", "id": i})

    it = client.events("tick", timeout=T(5), limit=3)
    threading.Thread(target=feed).start()
    for event in it:
        received.append(event.entity_id)
    assert received == [0, 1, 2]
    s = client.stats
    assert s.frames_received >= 3 and s.events_dispatched >= 3 and s.last_frame_at is not None


def test_a_where_function_that_raises_is_raised_in_the_waiting_thread(echo_server, make_client):
    # A message with no text (an attachment): `"urgent" in e.data.content` raises TypeError. It
    # used to be printed from the dispatcher's thread, naming a function of ours, while the wait
    # went on; the caller now gets it, saying which event and what to do.
    client = make_client(echo_server.url)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))

    stop = threading.Event()

    def feed():  # until the wait has seen one (an event before the wait began does not count)
        while not stop.is_set():
            conn.send({"event": "tick", "id": 1, "data": {"content": None}})
            stop.wait(0.02)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        with pytest.raises(rs.ConfigurationError, match=r"where function raised TypeError: .* on a 'tick' event") as c:
            client.wait_for("tick", where=lambda e: "urgent" in e.data["content"], timeout=T(10))
    finally:
        stop.set()
        feeder.join()
    assert isinstance(c.value.__cause__, TypeError)
    later = client.events("tick", timeout=T(10))  # registered now: the next events count
    conn.send({"event": "tick", "id": 2, "data": {"content": "urgent!"}})
    assert any(e.entity_id == 2 for e in later)  # the client carries on


def test_iterator_ends_on_idle_timeout(echo_server, make_client):
    client = make_client(echo_server.url)
    assert list(client.events("nothing", timeout=0.3)) == []


def test_start_is_idempotent_and_close_is_idempotent(echo_server, make_client):
    client = make_client(echo_server.url)
    assert client.state is rs.State.IDLE
    client.start()
    client.start()
    echo_server.wait_for_connection(timeout=T(5))
    client.close()
    client.close()
    assert client.state is rs.State.CLOSED
    assert client.join(0)
    with pytest.raises(rs.ClientClosedError, match="create a new"):
        client.start()
    assert len(echo_server.connections) == 1


def test_context_manager_and_no_threads_after_close(echo_server):
    from ._echo import EchoClient
    from .conftest import FAST

    client = EchoClient(echo_server.url, reconnect=FAST)
    rec = Recorder(client)
    with client:
        rec.wait("connected")
        names = {t.name for t in threading.enumerate()}
        assert any(n.startswith("realtime_sync-transport-") for n in names)
        assert any(n.startswith("realtime_sync-dispatch-") for n in names)
    alive = [t.name for t in threading.enumerate() if t.name.startswith("realtime_sync-") and "fake" not in t.name]
    assert alive == []
    assert client.state is rs.State.CLOSED


def test_close_from_inside_a_handler(echo_server, make_client):
    client = make_client(echo_server.url)
    done = threading.Event()

    @client.on("stop")
    def stop(event):
        client.close()
        done.set()

    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send({"event": "stop"})
    assert done.wait(T(5))
    assert client.join(T(5)), "threads still alive after close() from a handler"
    assert client.state is rs.State.CLOSED
    conn.closed.wait(T(5))
    assert conn.closed.is_set()


def test_run_forever_returns_on_close(echo_server, make_client):
    client = make_client(echo_server.url)
    client.on("stop", lambda e: client.close())
    t = threading.Thread(target=client.run_forever)
    t.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send({"event": "stop"})
    t.join(T(5))
    assert not t.is_alive()


def test_subscription_and_send_from_other_threads_before_start(echo_server, make_client):
    client = make_client(echo_server.url)
    threads = [threading.Thread(target=client.subscribe, args=(f"t{i}",)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    echo_server.wait_until(lambda: len(conn.state.get("subs", ())) == 5, timeout=T(5))
    client.send({"hello": 1})
    echo_server.wait_for_message(lambda m: m.json == {"hello": 1}, timeout=T(5))


def test_misuse_raises_clear_errors(echo_server):
    from ._echo import EchoClient

    with pytest.raises(rs.ConfigurationError, match="absolute URL"):
        EchoClient("not a url")
    with pytest.raises(rs.ConfigurationError, match="unknown option"):
        EchoClient(echo_server.url, conect_timeout=3)
    client = EchoClient(echo_server.url)
    with pytest.raises(rs.ConfigurationError, match="event name"):
        client.on("", print)
    with pytest.raises(rs.ConfigurationError, match="callable"):
        client.on("x", 3)  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigurationError):
        rs.DispatchOptions(overflow="explode")


def test_wait_for_inside_handler_is_refused(echo_server, make_client):
    client = make_client(echo_server.url)
    errors = []

    @client.on("x")
    def bad(event):
        try:
            client.wait_for("y", timeout=1)
        except rs.ConfigurationError as exc:
            errors.append(str(exc))

    rec = Recorder(client)
    client.start()
    conn = echo_server.wait_for_connection(timeout=T(5))
    conn.send({"event": "x"})
    conn.send({"event": "z"})
    rec.wait("z")
    assert errors and "inside a handler" in errors[0]
