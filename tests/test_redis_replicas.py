"""Listener replicas sharing connections through leases in a REAL redis-server.

Three listener processes (tests/_replica_worker.py) share the Jifeline partner connections of
many tenants, served by the fake partner websocket and REST servers in this process; events go
to a Redis stream through the fenced sink.  SIGKILL one: its tenants are taken over and gap
recovery fetches what was missed (none lost).  SIGSTOP one past its lease: it never hands on an
event for a tenant another replica owns, and closes its stale connections when it wakes up.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

redis = pytest.importorskip("redis")

from realtime_sync.contrib.redis_replicas import ReplicaListener, Tenant, load_tenants  # noqa: E402
from realtime_sync.exceptions import ConfigurationError  # noqa: E402
from realtime_sync.testing import FakeJifelinePartnerServer, FakeJifelineRestServer  # noqa: E402

from .conftest import T, poll_until  # noqa: E402
from .servers.harness import RedisServer  # noqa: E402
from .servers.harness import redis_server as redis_server  # noqa: E402  (the fixture)

ROOT = Path(__file__).resolve().parent.parent
NS = "rt"
#: The lease of these tests: the library's default.  A replica gives a lease up when it could not
#: renew it for 70% of the lease (safety_margin): with 4 s, a coordinator thread kept off the CPU
#: for 2.8 s on a loaded 2-core machine (hundreds of threads in each replica) lost its leases, and
#: the takeovers that followed loaded the machine more.  A graceful release (shutdown, rebalance)
#: hands a tenant over at once whatever the lease; only a dead replica's wait grows with it.
LEASE_TTL = 10.0


def _token(conn: Any) -> str | None:
    for k, v in conn.headers.items():
        if k.lower() == "authorization":
            return str(v).split(" ", 1)[1]
    return None


class Cluster:
    """The fake vendor servers, the replica processes, and what the stream received."""

    def __init__(self, redis_srv: RedisServer, tenants: int, lease_ttl: float, tmp: Path, hub_workers: int = 0) -> None:
        self.redis_srv = redis_srv
        self.hub_workers = hub_workers
        self.count = tenants
        self.lease_ttl = lease_ttl
        self.tmp = tmp
        self.partner, self.rest = self.start_servers()
        self.r = redis.Redis.from_url(redis_srv.url, decode_responses=True)
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.emitted: list[str] = []
        self.stats: dict[str, Any] | None = None

    def start_servers(self) -> tuple[Any, Any]:
        """The vendor's websocket server and REST server."""
        self.tokens = [f"tok-{i}" for i in range(self.count)]
        partner = FakeJifelinePartnerServer(token=self.tokens, interval=3600).start()
        return partner, FakeJifelineRestServer(partner=partner).start()

    def worker_args(self) -> list[str]:
        """The vendor's part of the worker's command line."""
        return ["--partner", self.partner.url, "--rest", self.rest.url]

    def spawn(self, *replicas: str) -> None:
        """Start the replica processes together: each builds its listener and says READY, and
        all start at once when every one is ready.  (One after the other, the first held all the
        tenants while the next interpreter was still starting on a loaded machine, and the
        rebalancing that followed closed and opened hundreds of connections.)"""
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for replica in replicas:
            cmd = [sys.executable, "-m", "tests._replica_worker", "--redis", self.redis_srv.url,
                   *self.worker_args(), "--tenants", str(self.count),
                   "--stream", "events", "--replica-id", replica, "--namespace", NS,
                   "--lease-ttl", f"{self.lease_ttl:g}", "--wait-go",
                   "--hub-workers", str(self.hub_workers)]  # fmt: skip
            log = open(self.tmp / f"{replica}.log", "w")
            self.procs[replica] = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
            )
            log.close()
        for replica in replicas:
            proc = self.procs[replica]
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "READY", f"{replica} did not start: {line!r}\n{self.log(replica)}"
        for replica in replicas:
            stdin = self.procs[replica].stdin
            assert stdin is not None
            stdin.write("go\n")
            stdin.flush()

    def log(self, replica: str) -> str:
        return (self.tmp / f"{replica}.log").read_text()[-3000:]

    def leases(self) -> dict[str, str | None]:
        """tenant -> the lease token (``replica|nonce``) holding it now."""
        keys = [f"t{i}" for i in range(self.count)]
        return dict(zip(keys, self.r.mget([f"{{{NS}}}:lease:{k}" for k in keys]), strict=True))

    def owners(self) -> dict[str, str | None]:
        return {k: (v.split("|")[0] if v else None) for k, v in self.leases().items()}

    def per_replica(self) -> collections.Counter[str | None]:
        return collections.Counter(self.owners().values())

    def connections(self) -> collections.Counter[str | None]:
        """Live, subscribed connections per token, as the vendor's server sees them."""
        return collections.Counter(_token(c) for c in self.partner.live_connections() if self.partner.subscriptions(c))

    def all_connected_once(self) -> bool:
        conns = self.connections()
        return len(conns) == self.count and all(n == 1 for n in conns.values())

    def emit_round(self) -> None:
        for i in range(self.count):
            self.emitted.append(self.partner.emit_event(f"t{i}.created")["event_id"])

    def entries(self) -> list[dict[str, Any]]:
        out = []
        for entry_id, fields in self.r.xrange("events"):
            event = json.loads(fields["event"])
            out.append({"id": entry_id, "replica": fields["replica"], "tenant": fields["tenant"],
                        "lease": fields["lease"], "key": fields["key"],
                        "event_id": event["data"]["event_id"]})  # fmt: skip
        return out

    def wait_all_handed_on(self, timeout: float) -> list[dict[str, Any]]:
        want = set(self.emitted)
        try:
            return poll_until(
                lambda: (lambda e: e if want <= {x["event_id"] for x in e} else None)(self.entries()),
                timeout,
                f"all {len(want)} events in the stream",
                interval=0.2,
            )
        except AssertionError as exc:
            missing = want - {x["event_id"] for x in self.entries()}
            raise AssertionError(f"{exc}: {len(missing)} missing: {self.describe(missing)}") from None

    def describe(self, missing: set[str]) -> list[Any]:
        """(event id, type, owner now) of some missing events, for a failure message."""
        types = {e["event_id"]: e["event_type"] for e in self.partner.events}
        owners = self.owners()
        return [(i, types.get(i), owners.get(str(types.get(i, "")).split(".")[0])) for i in sorted(missing)[:20]]

    def stop(self) -> dict[str, Any]:
        if self.stats is not None:
            return self.stats
        self.stats = stats = {}
        for name, proc in self.procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            lines = [line for line in (out or "").splitlines() if line.startswith("{")]
            if lines:
                stats[name] = json.loads(lines[-1])
        self.rest.stop()
        self.partner.stop()
        return stats


@pytest.fixture
def cluster_factory(redis_server: RedisServer, tmp_path: Path) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(tenants: int, lease_ttl: float, cls: type[Cluster] = Cluster) -> Cluster:
        c = cls(redis_server, tenants, lease_ttl, tmp_path)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def _even(cluster: Cluster, replicas: list[str]) -> bool:
    counts = cluster.per_replica()
    share = cluster.count // len(replicas)
    return all(counts[r] == share for r in replicas) and cluster.all_connected_once()


# Three interpreters, 300 connections and their takeover: minutes on a loaded 2-core machine.
@pytest.mark.timeout(600)
def test_three_replicas_share_300_connections_and_take_over_after_sigkill(cluster_factory: Any) -> None:
    cluster: Cluster = cluster_factory(300, LEASE_TTL)
    cluster.spawn("r0", "r1", "r2")
    t0 = time.monotonic()
    poll_until(lambda: _even(cluster, ["r0", "r1", "r2"]), 60, "300 tenants spread 100/100/100, one connection each")
    spread_s = time.monotonic() - t0
    cluster.emit_round()  # every tenant has a resume point from now on
    cluster.wait_all_handed_on(30)

    victims = [k for k, v in cluster.owners().items() if v == "r0"]
    cluster.procs["r0"].kill()
    killed = time.monotonic()
    cluster.emit_round()  # r0's tenants: nobody listens; gap recovery must fetch these
    poll_until(lambda: _even(cluster, ["r1", "r2"]), 60, "r0's tenants taken over, 150/150")
    takeover_s = time.monotonic() - killed
    cluster.emit_round()
    entries = cluster.wait_all_handed_on(60)

    ids = [e["event_id"] for e in entries]
    lost = set(cluster.emitted) - set(ids)
    duplicated = len(ids) - len(set(ids))
    print(f"\n300 tenants: spread over 3 replicas in {spread_s:.1f}s; SIGKILL of one: {len(victims)} tenants taken "
          f"over in {takeover_s:.1f}s (lease {cluster.lease_ttl:g}s); events: {len(cluster.emitted)} emitted, "
          f"{len(lost)} lost, {duplicated} duplicated")  # fmt: skip
    assert not lost
    # The fenced XADD stores the resume point atomically with the event: no event is fetched
    # again by the new owner, so there are no duplicates either.
    assert duplicated == 0
    assert takeover_s < cluster.lease_ttl + 30
    assert all(e["replica"] != "r0" for e in entries if e["event_id"] in set(cluster.emitted[300:]))


@pytest.mark.timeout(600)
def test_a_frozen_replica_never_hands_on_for_a_tenant_another_replica_owns(cluster_factory: Any) -> None:
    cluster: Cluster = cluster_factory(30, LEASE_TTL)
    cluster.spawn("r0", "r1", "r2")
    poll_until(lambda: _even(cluster, ["r0", "r1", "r2"]), 60, "10/10/10")
    cluster.emit_round()
    cluster.wait_all_handed_on(20)
    frozen_leases = {v for v in cluster.leases().values() if v and v.startswith("r0|")}
    frozen_tenants = {k for k, v in cluster.owners().items() if v == "r0"}

    cluster.procs["r0"].send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    poll_until(lambda: cluster.per_replica()["r0"] == 0 and cluster.per_replica()[None] == 0, 60, "takeover")
    takeover_s = time.monotonic() - stopped
    # The frozen process' sockets stay open (the kernel keeps them): the fake pushes each event to
    # both, the new owner's and the frozen one's.
    poll_until(lambda: sum(cluster.connections().values()) == 40, 30, "new connections for r0's tenants")
    cluster.emit_round()
    cluster.wait_all_handed_on(20)

    cluster.procs["r0"].send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    poll_until(lambda: max(cluster.connections().values()) <= 1, 20, "the woken replica closed its stale connections")
    stale_closed_s = time.monotonic() - resumed
    poll_until(cluster.all_connected_once, 60, "every tenant connected once")
    cluster.emit_round()
    entries = cluster.wait_all_handed_on(60)
    stats = cluster.stop()

    # Under the leases it held when frozen, r0 handed on nothing that happened after the freeze
    # (it may legitimately get tenants back later, under new leases, once it has rejoined).
    after_freeze = set(cluster.emitted[30:])
    by_r0 = [e for e in entries if e["lease"] in frozen_leases and e["event_id"] in after_freeze]
    ids = [e["event_id"] for e in entries]
    print(f"\nSIGSTOP of one replica of 3 (30 tenants, lease {cluster.lease_ttl:g}s): taken over in {takeover_s:.1f}s; "
          f"after SIGCONT its stale connections closed in {stale_closed_s:.2f}s; events it handed on under its old "
          f"leases: {len(by_r0)}; events it dropped as fenced: {stats['r0']['replica']['fenced_events']}; "
          f"lost {len(set(cluster.emitted) - set(ids))}, duplicated {len(ids) - len(set(ids))}")  # fmt: skip
    assert not by_r0
    assert stats["r0"]["replica"]["lost"] == len(frozen_tenants)
    # On waking, the deadline check gave each of them up (and closed it) before any Redis
    # command: none was found lost by a renewal.
    r0_log = (cluster.tmp / "r0.log").read_text()
    assert all(f"could not renew the lease of {t} in time" in r0_log for t in frozen_tenants), r0_log[-2000:]
    assert stats["r0"]["replica"]["fenced_events"] + stats["r0"]["sink"]["fenced"] >= 1  # it did see them
    assert set(cluster.emitted) <= set(ids)
    assert len(ids) == len(set(ids))


# -- in-process: configuration and the lease protocol -------------------------------------------


def test_tenants_from_settings_callables_and_files(tmp_path: Path) -> None:
    file = tmp_path / "tenants.json"
    file.write_text(json.dumps([{"key": "a", "token": "s3cret-a"}, {"key": 7, "vendor": "voxsig"}]))
    tenants = load_tenants(str(file), vendor="jifeline-partner")
    assert [(t.key, t.vendor) for t in tenants] == [("a", "jifeline-partner"), ("7", "voxsig")]
    assert "s3cret" not in repr(tenants)
    assert [t.key for t in load_tenants(lambda: [Tenant("x", vendor="voxsig")])] == ["x"]
    with pytest.raises(ConfigurationError, match="unique"):
        load_tenants([{"key": "a"}, {"key": "a"}])
    with pytest.raises(ConfigurationError, match="key"):
        load_tenants([{"vendor": "voxsig"}])
    with pytest.raises(ConfigurationError, match="renew_interval"):
        ReplicaListener([], "redis://127.0.0.1:1/0", lease_ttl=2, renew_interval=2)


def test_a_lease_taken_by_another_replica_closes_the_connection_at_once(redis_server: RedisServer) -> None:
    """The renew script finds another token: the client is closed on that round, and the fenced
    sink refuses its events meanwhile (driven through the real Redis)."""
    from realtime_sync.contrib.sinks import RedisStreamSink

    tokens = ["tok-a"]
    with FakeJifelinePartnerServer(token=tokens, interval=3600) as partner:
        sink = RedisStreamSink(redis_server.url, "events")
        tenant = Tenant(
            "a", vendor="jifeline-partner", url=partner.url, token="tok-a", subscribe={"event": ["a.created"]}
        )
        listener = ReplicaListener([tenant], redis_server.url, sink=sink, namespace="one", lease_ttl=LEASE_TTL)
        try:
            listener.start()
            poll_until(lambda: listener.owned == ["a"] and partner.live_connections(), 10, "lease + connection")
            partner.wait_until(lambda: bool(partner.subscriptions()), timeout=T(5))
            r = redis.Redis.from_url(redis_server.url, decode_responses=True)
            r.set(listener.lease_key("a"), "intruder|x", px=60_000)  # someone else owns it now
            poll_until(lambda: not partner.live_connections(), 10, "the connection closed")
            assert listener.stats.lost == 1
            assert listener.owned == []
            partner.emit_event("a.created")
            sink.flush(T(2))
            assert r.xlen("events") == 0
        finally:
            listener.close()
            sink.close()


# -- the CLI as replicas ----------------------------------------------------------------------------


def _cli(redis_url: str, url: str, tmp: Path, name: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), JIFELINE_TOKEN="tok-cli")
    cmd = [sys.executable, "-m", "realtime_sync", "listen", "jifeline-partner", "--url", url,
           "--system-event", "x.created", "--redis", redis_url, "--to-stream", "cli-events",
           "--lease-ttl", f"{LEASE_TTL:g}", "--json"]  # fmt: skip
    err = open(tmp / f"{name}.err", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
    err.close()
    return proc


def test_cli_listeners_with_redis_hold_one_connection_and_take_over(redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    with FakeJifelinePartnerServer(token="tok-cli", interval=3600) as partner:
        procs = [_cli(redis_server.url, partner.url, tmp_path, f"cli{i}") for i in range(2)]
        try:
            partner.wait_until(
                lambda: len([c for c in partner.live_connections() if partner.subscriptions(c)]) == 1, T(30)
            )
            first = partner.emit_event("x.created")["event_id"]
            poll_until(lambda: r.xlen("cli-events") == 1, 10, "the event in the stream")
            owner = r.get(next(iter(r.scan_iter("{realtime_sync}:lease:*"))))
            (holder,) = [p for p in procs if f"-{p.pid}-" in owner]  # replica ids are host-pid-random
            holder.terminate()  # a graceful stop releases the lease: the other takes over at once
            holder.wait(30)
            partner.wait_until(lambda: any(partner.subscriptions(c) for c in partner.live_connections()), T(30))
            poll_until(lambda: len(partner.live_connections()) == 1, 10, "one connection")
            second = partner.emit_event("x.created")["event_id"]
            got = poll_until(
                lambda: (lambda ids: ids if second in ids else None)(
                    [json.loads(f["event"])["data"]["event_id"] for _i, f in r.xrange("cli-events")]
                ),
                20,
                "the second event in the stream",
            )
            assert got.count(first) == 1
            assert len(partner.live_connections()) == 1
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                    p.wait(30)
    assert all("replica" in (tmp_path / f"cli{i}.err").read_text() for i in range(2))


def test_cli_stream_needs_redis() -> None:
    from realtime_sync.cli import main

    assert (
        main(["listen", "jifeline-partner", "--url", "ws://127.0.0.1:9/", "--system-event", "x", "--to-stream", "s"])
        == 2
    )


def test_a_tenant_whose_client_stopped_for_good_is_released_and_not_retried_at_once(
    redis_server: RedisServer,
) -> None:
    from realtime_sync import ReconnectPolicy

    policy = ReconnectPolicy(instant_retries=0, interval=0.1, max_interval=0.1, stop_on_auth_failure=True)
    with FakeJifelinePartnerServer(token="right", interval=3600) as partner:
        bad = Tenant("bad", vendor="jifeline-partner", url=partner.url, token="wrong",
                     subscribe={"event": ["a.created"]}, options={"reconnect": policy})  # fmt: skip
        listener = ReplicaListener([bad], redis_server.url, namespace="stop", lease_ttl=T(2.0))
        r = redis.Redis.from_url(redis_server.url)
        try:
            listener.start()
            poll_until(lambda: listener.stats.acquired == 1, 10, "taken once")
            poll_until(lambda: listener.stats.released == 1 and not r.exists(listener.lease_key("bad")), 10, "released")
            refused = len(partner.handshakes)
            # Three more coordinator rounds (each renews the heartbeat): it must not take it again.
            beats: set[float] = set()
            poll_until(
                lambda: beats.add(r.zscore(listener.replicas_key, listener.replica_id) or 0) or len(beats) > 3,
                20,
                "rounds",
            )
            assert listener.stats.acquired == 1 and len(partner.handshakes) == refused
            # The operator sees why nothing is held (the token itself never).
            last = listener.stats.last_error or ""
            assert last.startswith("tenant bad: its client stopped by itself: auth: "), last
            assert "HTTP 401" in last and "wrong" not in last
        finally:
            listener.close()


def test_a_replica_on_a_hub_holds_many_tenants_on_a_fixed_number_of_threads(redis_server: RedisServer) -> None:
    """``ReplicaListener(hub=...)``: the tenants' clients share the hub's loop and workers, so the
    replica's threads do not grow with its tenants (standalone: two per tenant)."""
    import threading

    from realtime_sync import Hub
    from realtime_sync.contrib.sinks import RedisStreamSink

    n = 40
    with FakeJifelinePartnerServer(token=["tok-a"], interval=3600) as partner:
        sink = RedisStreamSink(redis_server.url, "hub-events")
        tenants = [
            Tenant(
                f"t{i}", vendor="jifeline-partner", url=partner.url, token="tok-a", subscribe={"event": ["a.created"]}
            )
            for i in range(n)
        ]

        def ours() -> list[str]:  # the library's threads (the fake server has two per connection)
            return [
                t.name
                for t in threading.enumerate()
                if t.name.startswith("realtime_sync-") and not t.name.startswith("realtime_sync-fake")
            ]

        hub = Hub(workers=2, handshake_workers=2)
        listener = ReplicaListener(tenants, redis_server.url, sink=sink, namespace="hub", lease_ttl=LEASE_TTL, hub=hub)
        try:
            listener.start()
            poll_until(lambda: len(listener.owned) == n, 20, "every lease taken")
            partner.wait_until(
                lambda: sum(bool(partner.subscriptions(c)) for c in partner.live_connections()) >= n, timeout=T(20)
            )
            # The hub's loop, 2 workers, 2 handshake workers; the listener's coordinator and
            # renewal threads.  Standalone, the same replica runs 2 per tenant: 80 more.
            assert len(ours()) <= 10, ours()
            assert all(c.name for c in hub.clients) and len(hub.clients) == n
            partner.emit_event("a.created")
            r = redis.Redis.from_url(redis_server.url, decode_responses=True)
            poll_until(lambda: r.xlen("hub-events") >= n, 20, "one stream entry per tenant")
        finally:
            listener.close()
            sink.close()
            assert hub.close(timeout=T(10))
