"""Flow control: a client whose handlers fall behind stops reading, and TCP makes the server wait.

Over the wire (a raw-socket ActionCable server on 127.0.0.1 writing as fast as its socket takes
it): while a handler is stuck, the client's dispatcher holds ``high_water`` events, the client
stops reading, and the server's socket backs up (its sends would block); nothing is lost, the
silence is not taken for a dead connection (no stale reconnect, although the gap is longer than
``stale_after``), the other timers go on (presence), and once the handler returns the client
reads again and every event arrives, in order.  Standalone and on a hub.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time

import pytest

import realtime_sync as rs
from realtime_sync.protocols.bayeux import BayeuxAdapter
from realtime_sync.protocols.voxsig import room_identifier

from ._rawws import RawConnection, RawServer, server_frame
from .conftest import FAST, T, poll_until

TOKEN = "tok-flow-control"
N = 1500
CONTENT = "x" * 16_000  # 16 KB a message: N of them overflow the kernel's buffers on loopback


class Blaster:
    """The server side, on one thread (frames never interleave): ``welcome``, a ping every 0.1 s
    until the client subscribes (so the client never finds it silent), ``confirm_subscription``,
    then ``frames`` as fast as the socket takes them, never blocking: it records when a send
    would block (the client is not reading) and when it finished."""

    def __init__(self, conn: RawConnection, ident: str, frames: bytes) -> None:
        self.conn = conn
        self.sock = conn.sock
        self.ident = ident
        self.data = frames
        self.sent = 0
        self.blocked_since: float | None = None  # the socket is full right now, since then
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="realtime_sync-test-blaster", daemon=True)
        self.thread.start()

    def stalled_for(self) -> float:
        """How long the server's socket has been full, without a byte taken (0: it is not)."""
        since = self.blocked_since
        return 0.0 if since is None else time.monotonic() - since

    def _run(self) -> None:
        conn = self.conn
        try:
            conn.send_text('{"type":"welcome"}')
            deadline = time.monotonic() + T(20)
            while not any('"subscribe"' in t for t in conn.texts()) and time.monotonic() < deadline:
                conn.send_text('{"type":"ping","message":1700000000}')
                conn.eof.wait(0.1)
            conn.send_text(json.dumps({"identifier": self.ident, "type": "confirm_subscription"}))
            view = memoryview(self.data)
            while self.sent < len(view):
                try:
                    n = self.sock.send(view[self.sent : self.sent + 65536], socket.MSG_DONTWAIT)
                except BlockingIOError:
                    if self.blocked_since is None:
                        self.blocked_since = time.monotonic()
                    select.select([], [self.sock], [], 0.05)
                    continue
                self.sent += n
                self.blocked_since = None
        except OSError:
            return
        self.done.set()


def _broadcasts(ident: str, start: int, n: int) -> bytes:
    return b"".join(
        server_frame(
            1,
            json.dumps(
                {
                    "identifier": ident,
                    "message": {
                        "event": "message.created",
                        "data": {"id": i, "content": CONTENT, "conversation_id": 5, "account_id": 1},
                    },
                }
            ).encode(),
        )
        for i in range(start, start + n)
    )


class StuckHandler:
    """A ``message.created`` handler stuck on its first event until ``gate`` is set; records
    the message ids it was given."""

    def __init__(self) -> None:
        self.gate, self.entered = threading.Event(), threading.Event()
        self.ids: list[int] = []

    def __call__(self, event: rs.Event) -> None:
        if not self.ids:
            self.entered.set()
            self.gate.wait(T(30))
        self.ids.append(event.data.id)


def _presences(conn: RawConnection) -> int:
    return sum("update_presence" in t for t in conn.texts())


@pytest.mark.parametrize("on_hub", [False, True], ids=["standalone", "hub"])
def test_a_stuck_handler_pauses_reading_and_the_server_waits_nothing_lost(on_hub: bool) -> None:
    hub = rs.Hub(workers=1, handshake_workers=1, name="t-flow") if on_hub else None
    handler = StuckHandler()
    gate, entered, ids, on_message = handler.gate, handler.entered, handler.ids, handler
    lifecycle: list[str] = []

    with RawServer() as server:
        client = rs.VoxsigClient(
            server.url,
            TOKEN,
            account_id=1,
            user_id=7,
            presence_interval=0.3,
            stale_after=1.0,
            high_water=8,
            reconnect=FAST,
            hub=hub,
            name=f"flow-{'hub' if on_hub else 'alone'}",
        )
        client.on("message.created", on_message)
        client.on("disconnected", lambda e: lifecycle.append("disconnected"))
        client.on("reconnecting", lambda e: lifecycle.append("reconnecting"))
        try:
            client.start()
            conn = server.wait_for_connection(timeout=T(5))
            ident = room_identifier(TOKEN, 1, 7)
            blaster = Blaster(conn, ident, _broadcasts(ident, 0, N))
            assert entered.wait(T(30))

            # The handler is stuck: the client stops reading and the server's socket backs up.
            poll_until(lambda: blaster.stalled_for() > 0.5, 20, "the server's sends blocked for good")
            assert client.stats.reads_paused >= 1
            # high_water, plus a slice (at most max(16, high_water) frames), plus a batch being delivered (64)
            assert client.stats.queue_depth <= 8 + 16 + 64
            # Time passes (longer than stale_after) and the timers go on: presence is still sent.
            before = _presences(conn)
            poll_until(lambda: _presences(conn) >= before + 5, 20, "presence updates while paused")
            assert blaster.stalled_for() > 0.5 and not blaster.done.is_set()
            assert client.state is rs.State.CONNECTED and lifecycle == []  # no stale reconnect

            # The handler returns: the client reads again, the server finishes, nothing is lost.
            gate.set()
            assert blaster.done.wait(T(60)), f"the server sent {blaster.sent} of {len(blaster.data)} bytes"
            poll_until(lambda: len(ids) >= N, 60, "every event delivered")
            assert ids == list(range(N))
            assert client.stats.dropped == 0 and lifecycle == [] and len(server.connections) == 1

            # And the pause really ended: a later broadcast arrives at once.
            blaster.thread.join(T(5))
            conn.send_raw(_broadcasts(ident, N, 1))
            poll_until(lambda: len(ids) == N + 1, 10, "a broadcast after the pause")
        finally:
            gate.set()
            client.close(timeout=T(10))
            if hub is not None:
                assert hub.close(T(10))


@pytest.mark.parametrize("on_hub", [False, True], ids=["standalone", "hub"])
def test_close_while_reading_is_paused_reads_on_until_the_server_closes(on_hub: bool) -> None:
    """close() with the server's frames unread in the socket.  Closing a socket with unread data
    makes the kernel send a TCP reset instead of a FIN, and a server that reads our last frames
    together with the reset can drop them (python-websockets did: the fake GWS lost the client's
    /meta/disconnect).  The client sends its close frame and reads on, dropping what comes, until
    the server closes TCP (RFC 6455 7.1.1): the server's every byte is taken, and the server
    reads our close frame, then a FIN."""
    hub = rs.Hub(workers=1, handshake_workers=1, name="t-flow-close") if on_hub else None
    handler = StuckHandler()
    with RawServer(answer_close=False) as server:  # it answers below, after the blaster's last frame
        client = rs.VoxsigClient(
            server.url, TOKEN, account_id=1, user_id=7, high_water=8, reconnect=FAST, hub=hub, name="flow-close"
        )
        client.on("message.created", handler)
        closer = threading.Thread(target=client.close, kwargs={"timeout": T(20)}, name="realtime_sync-test-closer")
        try:
            client.start()
            conn = server.wait_for_connection(timeout=T(5))
            ident = room_identifier(TOKEN, 1, 7)
            blaster = Blaster(conn, ident, _broadcasts(ident, 0, N))
            assert handler.entered.wait(T(30))
            poll_until(lambda: blaster.stalled_for() > 0.2, 20, "the server's sends blocked")
            assert client.stats.reads_paused >= 1  # the server's frames wait unread in our socket

            closer.start()
            code, _reason = conn.wait_close(timeout=T(10))
            assert code == 1000
            handler.gate.set()
            # The client drains the socket: the server's sends all complete.
            assert blaster.done.wait(T(30)), f"the server sent {blaster.sent} of {len(blaster.data)} bytes"
            assert not conn.eof.is_set()  # the client waits for the server to close first
            conn.send_raw(server_frame(8, struct.pack("!H", 1000)))
            conn.sock.shutdown(socket.SHUT_WR)
            assert conn.eof.wait(T(10))
            assert not conn.reset, "the client reset the connection instead of closing it"
            closer.join(T(20))
            assert not closer.is_alive()
            assert client.state is rs.State.CLOSED
        finally:
            handler.gate.set()
            client.close(timeout=T(10))
            if hub is not None:
                assert hub.close(T(10))


@pytest.mark.parametrize("on_hub", [False, True], ids=["standalone", "hub"])
def test_close_gives_up_waiting_for_a_server_that_never_closes(on_hub: bool) -> None:
    """A server that ignores our close frame keeps its socket open: close() (or hub.close())
    still ends every thread within its timeout: the wait for the server takes at most half of
    what is left of it."""
    before = set(threading.enumerate())
    hub = rs.Hub(workers=1, handshake_workers=1, name="t-flow-deaf") if on_hub else None
    with RawServer(answer_close=False) as server:
        client = rs.VoxsigClient(server.url, TOKEN, account_id=1, user_id=7, reconnect=FAST, hub=hub, name="deaf")
        client.start()
        conn = server.wait_for_connection(timeout=T(5))
        conn.send_text('{"type":"welcome"}')
        conn.wait_text('"subscribe"', timeout=T(10))  # welcomed: the client is serving
        if hub is None:
            client.close(timeout=T(4))
        else:
            assert hub.close(T(4))
        assert conn.wait_close(timeout=T(5))[0] == 1000
        assert conn.eof.wait(T(5)) and not conn.reset
        alive = [t.name for t in set(threading.enumerate()) - before if t.name.startswith("realtime_sync-")]
        assert [n for n in alive if "fake" not in n] == []


def test_without_flow_control_the_client_keeps_reading_and_sheds_by_the_overflow_policy() -> None:
    handler = StuckHandler()
    gate, entered, ids, on_message = handler.gate, handler.entered, handler.ids, handler

    with RawServer() as server:
        client = rs.VoxsigClient(
            server.url, TOKEN, account_id=1, user_id=7, max_queue=10, flow_control=False, reconnect=FAST
        )
        client.on("message.created", on_message)
        try:
            client.start()
            conn = server.wait_for_connection(timeout=T(5))
            ident = room_identifier(TOKEN, 1, 7)
            blaster = Blaster(conn, ident, _broadcasts(ident, 0, 300))
            assert entered.wait(T(30))
            # The server is never made to wait: the client reads everything and drops the oldest.
            assert blaster.done.wait(T(30))
            poll_until(lambda: client.stats.frames_received >= 302, 20, "every frame read")
            gate.set()
            poll_until(lambda: client.stats.queue_depth == 0 and ids and ids[-1] == 299, 20, "the newest delivered")
            assert client.stats.dropped > 0 and client.stats.reads_paused == 0
        finally:
            gate.set()
            client.close(timeout=T(10))


def test_bayeux_reply_deadlines_wait_while_reading_is_paused() -> None:
    a = BayeuxAdapter()
    a.connection_made(0.0)
    a.data_to_send()
    deadline = a.next_deadline()
    assert deadline is not None  # the handshake's reply deadline
    a.pause_reading(1.0)
    assert a.next_deadline() is None or a.next_deadline() != deadline
    a.handle_timer(deadline + 100.0)  # no reply for a long time, but unread frames may hold it
    assert a.close_request() is None
    a.resume_reading(51.0)  # paused for 50 s: the deadline moves on by as much
    assert a.next_deadline() == pytest.approx(deadline + 50.0)
    a.handle_timer(deadline + 50.0 + 0.001)
    assert a.close_request() is not None  # and is enforced again afterwards


def test_actioncable_stale_detection_waits_while_reading_is_paused() -> None:
    from realtime_sync.protocols.actioncable import ActionCableAdapter

    a = ActionCableAdapter(stale_after=6.0)
    a.connection_made(0.0)
    a.receive_text('{"type":"welcome"}', 0.0)
    assert a.next_deadline() == 6.0
    a.pause_reading(1.0)
    a.handle_timer(60.0)
    assert a.close_request() is None  # a minute of silence while paused is not staleness
    a.resume_reading(60.0)
    assert a.next_deadline() == 66.0  # the silence clock restarts when reading resumes
    a.handle_timer(66.0)
    assert a.close_request() is not None


def test_with_the_collector_disabled_one_read_overshoots_high_water_by_at_most_one_slice() -> None:
    """The documented bound (CHANGELOG, _SLICE): with flow control the queue goes beyond
    ``high_water`` by at most a slice (at most max(16, high_water) frames) and the batch being
    delivered (64).  With ``gc.disable()`` (as many services run) slices are otherwise 256
    frames; a read of 300 small frames (24 KB, waiting in the socket while reading was paused,
    so one recv) queued all 300 in a first version."""
    import gc

    def small(start: int, n: int) -> bytes:  # Jifeline ticket snapshots, ~80 bytes each
        return b"".join(
            server_frame(1, json.dumps({"action": "subscribeToTicket", "message": {"id": 1, "state": i}}).encode())
            for i in range(start, start + n)
        )

    gates = {200: threading.Event(), 300: threading.Event()}  # the handler is busy on these ids
    entered = {200: threading.Event(), 300: threading.Event()}
    ids: list[int] = []

    def on_message(event: rs.Event) -> None:
        i = event.data.state
        if i in gates:
            entered[i].set()
            gates[i].wait(T(30))
        ids.append(i)

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with RawServer() as server:
            client = rs.JifelineCustomerClient(server.url, token="t", high_water=8, reconnect=FAST)
            client.subscribe_ticket(1)
            client.on("ticket.updated", on_message)
            try:
                client.start()
                conn = server.wait_for_connection(timeout=T(5))
                conn.wait_text("subscribeToTicket", timeout=T(10))
                conn.send_raw(small(0, 300))  # a long read: its slices are measured (256 from now on)
                assert entered[200].wait(T(10))
                poll_until(lambda: client.stats.reads_paused >= 1, 10, "reading paused (99 events queued)")
                conn.send_raw(small(300, 300))  # 24 KB: waits in the socket, read at once on resuming
                paused = client.stats.reads_paused
                gates[200].set()  # the handler drains, reading resumes: one read of 300 frames
                assert entered[300].wait(T(10))
                poll_until(lambda: client.stats.reads_paused > paused, 10, "reading paused again")
                depth = client.stats.queue_depth
                gates[300].set()
                poll_until(lambda: len(ids) >= 600, 20, "every event delivered")
                assert ids == list(range(600))
                assert depth <= 8 + 16 + 64, f"{depth} events queued with high_water=8"
            finally:
                for g in gates.values():
                    g.set()
                client.close(timeout=T(10))
    finally:
        if was_enabled:
            gc.enable()
