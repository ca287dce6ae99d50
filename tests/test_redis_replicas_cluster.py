"""Listener replicas on a REAL Redis Cluster: three redis-server masters on 127.0.0.1
(``--cluster-enabled yes``, joined by ``redis-cli --cluster create``), reached through
``redis+cluster://`` (redis-py's ``RedisCluster``).

The replicas' scripts name several keys at once (every lease renewed in one call; the fenced
``XADD`` with its tenant's lease, resume point and delivered ids): Redis Cluster runs them only
when the keys share a slot, which the namespace's hash tag (``{rt}:...``) ensures.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

redis = pytest.importorskip("redis")

from realtime_sync import GapRecovery  # noqa: E402
from realtime_sync.contrib._redis import redis_client  # noqa: E402
from realtime_sync.contrib.redis_replicas import ReplicaListener, Tenant  # noqa: E402
from realtime_sync.contrib.sinks import RedisStreamSink, StreamConsumer  # noqa: E402
from realtime_sync.exceptions import ConfigurationError  # noqa: E402
from realtime_sync.testing import FakeJifelinePartnerServer, FakeJifelineRestServer  # noqa: E402

from .conftest import T, poll_until  # noqa: E402
from .servers.harness import RedisServer, free_port, redis_available, require_servers  # noqa: E402


class ClusterNode(RedisServer):
    """One master of a throw-away Redis Cluster, with a free port for its cluster bus too."""

    name = "redis-cluster"

    def __init__(self, log_dir: Path) -> None:
        super().__init__(log_dir=log_dir, appendonly=False)
        self.bus_port = free_port()

    def _command(self) -> list[str]:
        return [*super()._command(), "--cluster-enabled", "yes", "--cluster-port", str(self.bus_port),
                "--cluster-config-file", f"nodes-{self.port}.conf", "--cluster-node-timeout", "5000"]  # fmt: skip


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[str]:
    ok, why = redis_available()
    if not ok or not shutil.which("redis-cli"):
        if require_servers():
            pytest.fail(f"REALTIME_SYNC_REQUIRE_SERVERS=1 but {why or 'redis-cli is missing'}")
        pytest.skip(why or "redis-cli is missing")
    nodes = [ClusterNode(tmp_path) for _ in range(3)]
    try:
        for node in nodes:
            node.start()
        create = [shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                  *[f"127.0.0.1:{n.port}" for n in nodes], "--cluster-yes"]  # fmt: skip
        done = subprocess.run(create, capture_output=True, text=True, timeout=T(60))
        assert done.returncode == 0, done.stdout + done.stderr
        clients = [redis.Redis(host="127.0.0.1", port=n.port) for n in nodes]

        def ready() -> bool:
            infos = [c.cluster("info") for c in clients]
            return all(i.get("cluster_state") == "ok" and int(i.get("cluster_known_nodes", 0)) == 3 for i in infos)

        poll_until(ready, 30, "the cluster is up (3 masters, every slot served)")
        yield f"redis+cluster://127.0.0.1:{nodes[0].port}"
    finally:
        for node in nodes:
            node.stop()


def test_replicas_share_tenants_and_hand_events_on_through_a_redis_cluster(redis_cluster: str) -> None:
    r = redis_client(redis_cluster, decode_responses=True)
    assert type(r).__name__ == "RedisCluster" and len(r.get_primaries()) == 3
    tokens = [f"tok-{i}" for i in range(6)]
    with (
        FakeJifelinePartnerServer(token=tokens, interval=3600) as partner,
        FakeJifelineRestServer(partner=partner) as rest,
    ):
        gap = GapRecovery(rest_url=rest.url, hold_timeout=30)
        tenants = [Tenant(f"t{i}", vendor="jifeline-partner", url=partner.url, token=tokens[i],
                          subscribe={"event": [f"t{i}.created"]}, options={"gap_recovery": gap})
                   for i in range(6)]  # fmt: skip
        with pytest.raises(ConfigurationError, match=r"hash tag \{rt\}.*\{rt\}:events"):
            ReplicaListener(tenants, redis_cluster, sink=RedisStreamSink(redis_cluster, "events"), namespace="rt")
        sinks = [RedisStreamSink(redis_cluster, "{rt}:events") for _ in range(2)]
        listeners = [
            ReplicaListener(tenants, redis_cluster, sink=sink, namespace="rt", lease_ttl=T(3.0), replica_id=f"c{i}")
            for i, sink in enumerate(sinks)
        ]
        try:
            for listener in listeners:
                listener.start()
            poll_until(lambda: [len(x.owned) for x in listeners] == [3, 3], 30, "3 tenants each")
            partner.wait_until(lambda: sum(bool(partner.subscriptions(c)) for c in partner.live_connections()) == 6,
                               timeout=T(20))  # fmt: skip
            first = [partner.emit_event(f"t{i}.created")["event_id"] for i in range(6)]
            poll_until(lambda: r.xlen("{rt}:events") == 6, 20, "6 events in the stream")
            assert r.get("{rt}:checkpoint:t0") == first[0]  # stored with the event, in the same script

            # c0 leaves (its leases released after its connections closed): c1 takes all six over.
            listeners[0].close()
            poll_until(lambda: len(listeners[1].owned) == 6, 30, "c1 holds every tenant")
            partner.wait_until(lambda: sum(bool(partner.subscriptions(c)) for c in partner.live_connections()) == 6,
                               timeout=T(20))  # fmt: skip
            second = [partner.emit_event(f"t{i}.created")["event_id"] for i in range(6)]
            poll_until(lambda: r.xlen("{rt}:events") == 12, 20, "12 events in the stream")

            consumer = StreamConsumer(redis_cluster, "{rt}:events", group="g")
            got: list[str] = []
            for entry in consumer.read(count=100, block=1.0):
                assert not consumer.seen(entry)
                consumer.ack(entry)  # the dedupe key and the XACK in one transaction: one slot
                got.append(entry.event.data.event_id)
            assert sorted(got) == sorted(first + second)
            keys = {k for node in r.get_primaries() for k in r.keys(target_nodes=node)}
            assert {r.keyslot(k) for k in keys} == {r.keyslot("{rt}")}  # one slot: the group's tag
            # A plain redis:// URL of a node that does not serve the group's slot: a clear error.
            owner = r.get_node_from_key("{rt}:replicas")
            other = next(n for n in r.get_primaries() if n.port != owner.port)
            plain = ReplicaListener([], f"redis://127.0.0.1:{other.port}/0", namespace="rt", lease_ttl=T(2.0))
            try:
                plain.start()
                poll_until(lambda: "use a redis+cluster:// URL" in (plain.stats.last_error or ""), 10, "the hint")
            finally:
                plain.close()
            stats: Any = [x.stats for x in listeners]
            assert stats[1].redis_errors == 0 and sinks[1].stats.fenced == 0
        finally:
            for listener in listeners:
                listener.close()
            for sink in sinks:
                sink.close()
