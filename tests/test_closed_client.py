"""``on()``, ``wait_for()`` and ``events()`` on a closed client (after ``close()``, or once it
stopped for good by itself) raise :class:`~realtime_sync.ClientClosedError` saying to create a
new client: a closed client cannot be started again, so a handler registered on it would never
run.  ``on()`` before ``start()`` and while the client runs keeps working, ``off()`` works on a
closed client, an ``events()`` loop in progress ends when the client closes, and a ``wait_for()``
in progress raises.  Against the fake servers of realtime_sync.testing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.testing.actioncable import FakeVoxsigServer
from realtime_sync.testing.bayeux import FakeGenesysServer
from realtime_sync.testing.jifeline import FakeJifelineCustomerServer, FakeJifelinePartnerServer

from .conftest import Recorder, T, poll_until

CLOSED = r"on a closed client: this {} is closed{} and cannot be started again; {}create a new client"
#: What a client that stopped by itself on a refusal adds: the cause, and to fix it first.
REFUSED = (r" \(it stopped by itself: auth: .*unauthorized.*\)", "fix that, then ")


def assert_refused(client: Any, why: tuple[str, str] = ("", "")) -> None:
    """Every way to register, start or wait on ``client`` raises, naming it, why it closed (when
    it stopped by itself) and what to do."""
    closed = CLOSED.format(type(client).__name__, *why)
    with pytest.raises(rs.ClientClosedError, match=r"^on\(\) " + closed + " and register the handler"):
        client.on("connected", print)
    with pytest.raises(rs.ClientClosedError, match=r"^on\(\) " + closed):
        client.on("connected")  # the decorator form: at once, not when it decorates
    with pytest.raises(rs.ClientClosedError, match=r"^wait_for\(\) " + closed + "$"):
        client.wait_for("connected", timeout=T(5))
    with pytest.raises(rs.ClientClosedError, match=r"^events\(\) " + closed + "$"):
        client.events("connected", timeout=T(5))
    with pytest.raises(rs.ClientClosedError, match=r"^start\(\) " + closed + "$"):
        client.start()
    with pytest.raises(rs.ClientClosedError):
        iter(client)


def test_on_before_start_and_while_running_works_and_a_closed_client_refuses_it(clients: Any) -> None:
    with FakeJifelineCustomerServer(interval=0.1) as server:
        client: rs.JifelineCustomerClient = clients(rs.JifelineCustomerClient, server.url)
        before = Recorder(client, "ticket.updated")  # before start()
        client.subscribe_ticket(1)
        client.start()
        before.wait("ticket.updated")
        running = Recorder(client, "ticket.updated")  # while it runs
        running.wait("ticket.updated")
        changed = Recorder(client, "connector.updated")
        client.close()
        assert_refused(client)
        with pytest.raises(rs.ClientClosedError, match=r"^on\(\) on a closed client"):
            client.on("ticket.updated", print, changes_only=True)
        with pytest.raises(rs.ClientClosedError, match=r"^on\(\) on a closed client"):
            client.on("ticket.updated", changes_only=True)
        # off() still works: cleaning up after a closed client is no misuse.
        assert client.off("ticket.updated") == 2 and client.off(handler=changed._record) == 1


@pytest.mark.parametrize("vendor", ["jifeline-partner", "genesys", "voxsig"])
def test_every_vendor_client_refuses_on_wait_for_and_events_once_closed(vendor: str, clients: Any) -> None:
    servers: dict[str, Callable[[], Any]] = {
        "jifeline-partner": lambda: FakeJifelinePartnerServer(interval=0.1),
        "genesys": lambda: FakeGenesysServer(timeout=1.0),
        "voxsig": FakeVoxsigServer,
    }
    with servers[vendor]() as server:
        if vendor == "jifeline-partner":
            client = clients(rs.JifelinePartnerClient, server.url, token="token")
        elif vendor == "genesys":
            client = clients(rs.GenesysChatClient, server.http_url)
        else:
            client = clients(rs.VoxsigClient, server.url, "user-token-1", account_id=1, user_id=7)
        client.start(wait=True, timeout=T(10))
        client.close()
        assert_refused(client)


def test_a_client_stopped_for_good_by_itself_refuses_on(clients: Any) -> None:
    with FakeVoxsigServer() as server:
        server.reject_connections = True  # {"type":"disconnect","reason":"unauthorized","reconnect":false}
        client: rs.VoxsigClient = clients(rs.VoxsigClient, server.url, "user-token-1", account_id=1, user_id=7)
        rec = Recorder(client, "disconnected")
        client.start()
        assert rec.wait("disconnected").data.will_reconnect is False
        poll_until(lambda: client.closed, what="the client stopped for good")
        assert_refused(client, REFUSED)  # a new client with the same token would fail the same way
        client.close()
        assert_refused(client, REFUSED)  # closing it afterwards does not hide why it stopped


def test_a_wait_for_in_progress_says_why_the_client_stopped(clients: Any) -> None:
    with FakeVoxsigServer() as server:
        server.reject_connections = True
        client: rs.VoxsigClient = clients(rs.VoxsigClient, server.url, "user-token-2", account_id=1, user_id=7)
        with pytest.raises(rs.ClientClosedError, match=r"closed while waiting for 'message\.created'" + REFUSED[0]):
            client.wait_for("message.created", timeout=T(10))  # starts the client, which is refused
        assert "user-token-2" not in repr(client.snapshot)


def test_an_events_loop_ends_and_a_wait_for_raises_when_the_client_closes_meanwhile(clients: Any) -> None:
    with FakeJifelineCustomerServer(interval=0.1) as server:
        client: rs.JifelineCustomerClient = clients(rs.JifelineCustomerClient, server.url)
        client.subscribe_ticket(1)
        snapshots = client.events("ticket.updated", timeout=T(10))
        assert next(snapshots).data.ticket_id == 1  # started by the iteration
        client.close()
        assert all(e.name == "ticket.updated" for e in snapshots)  # what came meanwhile, then the end

    with FakeJifelineCustomerServer(interval=0.1) as server:
        client = clients(rs.JifelineCustomerClient, server.url)
        client.subscribe_ticket(1)
        client.on("ticket.updated", lambda event: client.close())  # close() is safe in a handler
        with pytest.raises(rs.ClientClosedError, match=r"closed while waiting for 'connector\.updated'"):
            client.wait_for("connector.updated", timeout=T(10))  # never pushed: not subscribed


def test_an_events_loop_raises_why_when_the_client_stops_by_itself(clients: Any) -> None:
    # A script's `for event in client.events(...)` must not end as if all were well when the
    # server refuses the credentials: the events that came first are delivered, then the loop
    # raises, saying why.  (After close() the loop ends quietly: see the test above.)
    with FakeVoxsigServer() as server:
        server.reject_connections = True  # {"type":"disconnect","reason":"unauthorized","reconnect":false}
        client: rs.VoxsigClient = clients(rs.VoxsigClient, server.url, "user-token-3", account_id=1, user_id=7)
        seen: list[str] = []
        with pytest.raises(
            rs.ClientClosedError, match=r"^the client stopped while iterating events\('\*'\)" + REFUSED[0]
        ) as info:
            for event in client.events(timeout=T(10)):  # starts the client, which is refused
                seen.append(event.name)
        assert "disconnected" in seen and "error" in seen  # delivered before the loop raised
        assert "user-token-3" not in str(info.value)
        # A loop that asks only for other names gets no event, and the same error.
        with pytest.raises(rs.ClientClosedError, match=r"^events\(\) on a closed client: " + ".*" + REFUSED[0]):
            list(client.events("message.created", timeout=T(10)))

    with FakeVoxsigServer() as server:
        server.reject_connections = True
        client = clients(rs.VoxsigClient, server.url, "user-token-4", account_id=1, user_id=7)
        messages = client.events("message.created", timeout=T(10))
        with pytest.raises(
            rs.ClientClosedError, match=r"^the client stopped while iterating events\('message\.created'\)" + REFUSED[0]
        ):
            next(messages)


def test_an_events_loop_raises_why_when_the_reconnect_policy_gives_up(clients: Any) -> None:
    # Nothing listens on the port: each attempt is refused; after max_attempts the client
    # stops by itself and the loop says so, with the connect error.
    with FakeJifelineCustomerServer(interval=0.1) as server:
        url = server.url  # a port that was just served, then closed
    policy = rs.ReconnectPolicy(max_attempts=2, instant_retries=2, interval=0.01, jitter=0)
    client: rs.JifelineCustomerClient = clients(rs.JifelineCustomerClient, url, reconnect=policy)
    with pytest.raises(
        rs.ClientClosedError,
        match=r"^the client stopped while iterating events\('ticket\.\*'\) \(it stopped by itself: connect: ",
    ) as info:
        list(client.events("ticket.*", timeout=T(20)))
    assert "giving up after" in str(info.value) and "Connection refused" in str(info.value)


def test_an_events_loop_raises_why_when_reconnect_is_disabled_and_the_server_drops_it(clients: Any) -> None:
    with FakeJifelineCustomerServer(interval=0.1) as server:
        client: rs.JifelineCustomerClient = clients(rs.JifelineCustomerClient, server.url, reconnect=False)
        client.start(wait=True, timeout=T(10))
        events = client.events(timeout=T(20))
        server.close_all(1000, "bye")
        with pytest.raises(rs.ClientClosedError, match=r"\(it stopped by itself: connect: reconnect disabled") as info:
            for _event in events:
                pass
        assert "the connection ended" in str(info.value)
        last = client.snapshot.last_error
        assert last is not None and last.kind == "connect" and last.message.startswith("reconnect disabled")


def test_closing_a_hub_ends_its_clients_events_loops_quietly(clients: Any) -> None:
    # hub.close() is the user's own close: every loop ends quietly, none says "stopped by
    # itself" (the hub stops every engine before it closes each client: the decision must not
    # depend on which comes first).
    with FakeVoxsigServer(users={f"user-token-h{i}": 7 for i in range(12)}) as server:
        hub = rs.Hub()
        try:
            group = [
                clients(rs.VoxsigClient, server.url, f"user-token-h{i}", account_id=1, user_id=7, hub=hub, name=f"h{i}")
                for i in range(12)
            ]
            for c in group:
                c.start(wait=True, timeout=T(20))
            raised: list[BaseException] = []
            ended = threading.Barrier(len(group) + 1, timeout=T(30))

            def drain(c: rs.VoxsigClient) -> None:
                try:
                    for _event in c.events(timeout=T(30)):
                        pass
                except BaseException as exc:  # recorded for the assertion below
                    raised.append(exc)
                ended.wait()

            loops = [threading.Thread(target=drain, args=(c,), name=f"test-drain-{i}") for i, c in enumerate(group)]
            for t in loops:
                t.start()
        finally:
            hub.close(timeout=T(10))
        ended.wait()
        assert raised == []
        for c in group:
            with pytest.raises(
                rs.ClientClosedError, match=r"is closed and cannot be started again; create a new client"
            ):
                c.on("connected", print)
