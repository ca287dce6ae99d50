"""Voxsig tenants shared by listener replicas: a takeover catches up from the stored point.

ActionCable keeps no history, Chatwoot's REST API does.  Three listener processes
(tests/_replica_worker.py --vendor voxsig) share the agents of 30 accounts, served by the fake
Voxsig cable and the fake Chatwoot REST API in this process (every message is stored in the REST
fake, as Chatwoot stores it, and broadcast to whoever listens).  SIGKILL one replica while
messages flow: the new owners start from the resume point the dead one stored in Redis with each
hand-on (the receipt time and the newest message ids) and fetch what nobody handed on: none lost,
and no message handed on twice.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from typing import Any

import pytest

redis = pytest.importorskip("redis")

import realtime_sync as rs  # noqa: E402
from realtime_sync.testing.actioncable import FakeVoxsigServer, message_payload  # noqa: E402
from realtime_sync.testing.chatwoot import FakeChatwootRestServer  # noqa: E402

from ._replica_worker import VOXSIG_API_TOKEN  # noqa: E402
from .conftest import T, poll_until  # noqa: E402
from .servers.harness import redis_server as redis_server  # noqa: E402  (the fixture)
from .test_redis_replicas import LEASE_TTL, Cluster, _even  # noqa: E402
from .test_redis_replicas import cluster_factory as cluster_factory  # noqa: E402  (the fixture)


class _TenantCable(FakeVoxsigServer):
    """Each agent listens to its own stream only (one account per tenant): a broadcast costs
    one lookup per connection, however many accounts the fake serves."""

    def streams_for(self, identifier: str, params: dict[str, Any]) -> list[str]:
        return [str(params.get("pubsub_token"))]


class VoxsigCluster(Cluster):
    """Tenant i: agent ``vx-<i>`` (user 1000+i) of account 100+i, three conversations each."""

    def start_servers(self) -> tuple[Any, Any]:
        self.tokens = [f"vx-{i}" for i in range(self.count)]
        accounts = tuple(100 + i for i in range(self.count))
        users = {t: 1000 + i for i, t in enumerate(self.tokens)}
        cable = _TenantCable(users=users, user_accounts=accounts, ping_interval=1.0).start()
        rest = FakeChatwootRestServer(VOXSIG_API_TOKEN, account_id=accounts[0], accounts=accounts).start()
        self._ids = iter(range(1, 10**9))
        self._emit_lock = threading.Lock()
        self.tenant_of: dict[str, int] = {}
        return cable, rest

    def worker_args(self) -> list[str]:
        return ["--vendor", "voxsig", "--partner", self.partner.url, "--rest", self.rest.url]

    def connections(self) -> collections.Counter[str | None]:
        return collections.Counter(json.loads(ident).get("pubsub_token") for _c, ident in self.partner.subscriptions())

    def emit(self, i: int) -> str:
        """A new message for tenant i: stored in the REST fake, then broadcast (as Chatwoot does)."""
        with self._emit_lock:  # ids grow with creation, as Chatwoot's do
            mid = next(self._ids)
            message = {**message_payload(mid, 1 + mid % 3, f"m{mid}"), "account_id": 100 + i}
            self.rest.add_message(message, account_id=100 + i)
        self.partner.send_event(self.tokens[i], "message.created", message)
        self.tenant_of[str(mid)] = i
        self.emitted.append(str(mid))
        return str(mid)

    def emit_round(self) -> None:
        for i in range(self.count):
            self.emit(i)

    def entries(self) -> list[dict[str, Any]]:
        out = []
        for entry_id, fields in self.r.xrange("events"):
            event = json.loads(fields["event"])
            if event["name"] != "message.created":
                continue
            out.append({"id": entry_id, "replica": fields["replica"], "tenant": fields["tenant"],
                        "lease": fields["lease"], "key": fields["key"], "recovered": event.get("recovered"),
                        "event_id": str(event["data"]["id"])})  # fmt: skip
        return out

    def describe(self, missing: set[str]) -> list[Any]:
        owners = self.owners()
        return [(m, self.tenant_of.get(m), owners.get(f"t{self.tenant_of.get(m)}")) for m in sorted(missing)[:20]]


class Load:
    """Messages to random tenants at ``rate`` per second, on a thread."""

    def __init__(self, cluster: VoxsigCluster, rate: float) -> None:
        self.cluster = cluster
        self.rate = rate
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="test-voxsig-load", daemon=True)

    def _run(self) -> None:
        n, start = 0, time.monotonic()
        while not self.stop.is_set():
            self.cluster.emit(n % self.cluster.count)
            n += 1
            self.stop.wait(max(0.0, start + n / self.rate - time.monotonic()))

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.mark.timeout(600)  # three processes and a takeover: on a loaded machine, past the default 120 s
def test_a_voxsig_takeover_after_sigkill_catches_up_from_the_stored_point(cluster_factory: Any) -> None:
    # The library's default lease, and the three replicas started together: with a 3 s lease, or
    # one replica started before the others, a loaded machine churns leases before the test begins.
    cluster: VoxsigCluster = cluster_factory(30, LEASE_TTL, VoxsigCluster)
    cluster.spawn("r0", "r1", "r2")
    poll_until(lambda: _even(cluster, ["r0", "r1", "r2"]), 60, "30 agents spread 10/10/10, one connection each")
    cluster.emit_round()
    cluster.wait_all_handed_on(30)
    victims = {k for k, v in cluster.owners().items() if v == "r0"}

    with Load(cluster, 40.0):
        time.sleep(0.5)  # load reaches r0's tenants too (a wait for traffic, not for a result)
        cluster.procs["r0"].kill()
        killed = time.monotonic()
        poll_until(lambda: _even(cluster, ["r1", "r2"]), 60, "r0's agents taken over, 15/15")
        takeover_s = time.monotonic() - killed
        after = len(cluster.emitted)
        poll_until(lambda: len(cluster.emitted) >= after + 40, 30, "live messages after the takeover")
    cluster.emit_round()
    entries = cluster.wait_all_handed_on(60)

    ids = [e["event_id"] for e in entries]
    lost = set(cluster.emitted) - set(ids)
    duplicated = len(ids) - len(set(ids))
    recovered = [e for e in entries if e["recovered"] and cluster.owners().get(e["tenant"]) != "r0"]
    print(f"\nVoxsig, 30 agents over 3 replicas: SIGKILL of one: {len(victims)} agents taken over in {takeover_s:.1f}s "
          f"(lease {cluster.lease_ttl:g}s); {len(cluster.emitted)} messages: {len(lost)} lost, {duplicated} "
          f"duplicated, {len(recovered)} fetched from the REST API by the new owners")  # fmt: skip
    assert not lost, cluster.describe(lost)
    assert duplicated == 0, [i for i, n in collections.Counter(ids).items() if n > 1][:20]
    assert recovered, "the takeover fetched nothing: the load did not reach r0's agents while nobody held them"
    assert {e["tenant"] for e in recovered} <= victims


# -- one client: the catch-up from a stored point, on the first connect ------------------------------


def test_a_catch_up_from_a_stored_point_runs_on_the_first_connect() -> None:
    """``VoxsigCatchUp(resume_from=...)``: messages above the smallest delivered id are fetched,
    the delivered ids skipped, and the rest arrives first, once, before live messages."""
    token, account = "user-token-1", 1
    with FakeVoxsigServer(ping_interval=0.5) as cable, FakeChatwootRestServer(VOXSIG_API_TOKEN) as rest:
        for mid, cid in ((1, 42), (2, 42), (3, 43), (4, 42), (5, 43)):
            rest.add_message(message_payload(mid, cid, f"m{mid}"))
        # The previous owner handed on 2 and 4 (and 1 long ago: below the kept ids).
        point = rs.VoxsigResumePoint(time.time() - 30, (2, 4))
        catch_up = rs.VoxsigCatchUp(api_url=rest.url, api_access_token=VOXSIG_API_TOKEN, resume_from=point)
        client = rs.VoxsigClient(cable.url, token, account_id=account, user_id=7, presence_interval=None,
                                 catch_up=catch_up)  # fmt: skip
        got: list[rs.Event] = []
        client.on("message.created", got.append)
        rest.delay = 0.3  # live messages arrive while the fetch runs: they wait
        with client:
            cable.wait_for_subscription("RoomChannel", timeout=T(10))
            live = message_payload(6, 42, "live")
            rest.add_message(live)
            cable.send_event(token, "message.created", live)
            cable.send_event(token, "message.created", message_payload(5, 43, "m5"))  # fetched too: once
            poll_until(lambda: any(e.data.id == 6 for e in got), 10, "the live message")
        assert [e.data.id for e in got] == [3, 5, 6]
        assert got[0].recovered and got[1].recovered  # (6: fetched or live, depending on timing)
        assert any("/conversations/42/messages?after=2" in p for p in rest.message_requests())
