"""Listener replicas through Redis: spread, takeover after SIGKILL, a frozen replica, sink rates.

    python benchmarks/replicas.py                  # 600 tenants, 3 replicas, lease 10 s (~3 min)
    python benchmarks/replicas.py --quick          # 300 tenants, 3 replicas, lease 4 s (~1 min)
    python benchmarks/replicas.py --hub-workers 4  # each replica runs its tenants on one Hub(workers=4)

Needs redis-server (``bash .ci/install-servers.sh``) and the test extra.  Everything runs on
127.0.0.1: a redis-server started here, the fake Jifeline partner websocket + REST servers in this
process, and the replicas as processes of their own (``tests/_replica_worker.py``: one
``ReplicaListener`` with a fenced ``RedisStreamSink``, tenant i = token ``tok-<i>`` subscribed to
system events ``t<i>.created``, gap recovery on).  While events are emitted to random tenants at
``--rate`` per second, one replica is SIGKILLed, then another is SIGSTOPped for 1.5 leases.
Then the same SIGKILL with Voxsig agents (``--voxsig-tenants``; the fake Voxsig cable and the fake
Chatwoot REST API, which keeps every message as Chatwoot does): the new owners catch up from the
resume point stored in Redis.  Then redis-server itself is restarted under load (the broker of
the leases and of the stream).  The load average (1 min) is sampled throughout.  Writes the table to ``results_replicas.md`` (unless ``--no-write``).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from realtime_sync import Event  # noqa: E402
from realtime_sync.contrib.sinks import RedisStreamSink, StreamConsumer  # noqa: E402
from tests.conftest import poll_until  # noqa: E402
from tests.servers.harness import RedisServer  # noqa: E402
from tests.test_redis_replicas import Cluster, _even  # noqa: E402
from tests.test_redis_replicas_voxsig import Load as VoxsigLoad  # noqa: E402
from tests.test_redis_replicas_voxsig import VoxsigCluster  # noqa: E402


def _proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Sampler:
    """Samples the 1-minute load average and each live replica's thread count on a thread."""

    def __init__(self, cluster: Any = None) -> None:
        self.cluster = cluster
        self.loads: list[float] = []
        self.threads: dict[str, int] = {}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_event.wait(1.0):
            self.loads.append(os.getloadavg()[0])
            for name, proc in dict(getattr(self.cluster, "procs", {})).items():
                if proc.poll() is None:
                    try:
                        self.threads[name] = max(self.threads.get(name, 0), _proc_status(proc.pid, "Threads"))
                    except OSError:
                        pass

    def close(self) -> str:
        self.stop_event.set()
        self.thread.join()
        if not self.loads:
            return "n/a"
        return f"{sum(self.loads) / len(self.loads):.1f} mean, {max(self.loads):.1f} peak"


class Load:
    """Emits system events to random tenants at ``rate`` per second on a thread."""

    def __init__(self, cluster: Cluster, rate: float) -> None:
        self.cluster = cluster
        self.rate = rate
        self.times: dict[str, float] = {}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-load", daemon=True)

    def _run(self) -> None:
        n = 0
        start = time.monotonic()
        while not self.stop_event.is_set():
            i = random.randrange(self.cluster.count)
            event_id = self.cluster.partner.emit_event(f"t{i}.created")["event_id"]
            self.cluster.emitted.append(event_id)
            self.times[event_id] = time.monotonic()
            n += 1
            self.stop_event.wait(max(0.0, start + n / self.rate - time.monotonic()))

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()


def sink_rates(url: str, count: int) -> tuple[float, float]:
    """Events/s into a stream through RedisStreamSink, and out through one StreamConsumer."""
    events = [Event("x.created", {"n": i}, entity_id=i, raw={"n": i, "pad": "x" * 300}) for i in range(count)]
    sink = RedisStreamSink(url, "rate", maxlen=count * 2, max_buffer=count)
    t0 = time.perf_counter()
    for e in events:
        sink.put(e)
    sink.flush()
    into = count / (time.perf_counter() - t0)
    sink.close()
    consumer = StreamConsumer(url, "rate", "bench", "c1")
    t0 = time.perf_counter()
    done = 0
    while done < count:
        for entry in consumer.read(count=500, block=1.0):
            if not consumer.seen(entry):
                consumer.ack(entry)
            done += 1
    out = count / (time.perf_counter() - t0)
    return into, out


def kill_one(cluster: Cluster, names: list[str], load: Any) -> tuple[set[str], float, float, list[dict[str, Any]]]:
    """SIGKILL ``names[0]`` while ``load`` runs: (its tenants, seconds until their leases were
    taken, until every connection was back, the stream entries once all events arrived)."""
    with load:
        victims = {k for k, v in cluster.owners().items() if v == names[0]}
        cluster.procs[names[0]].kill()
        killed = time.monotonic()
        poll_until(lambda: not victims & {k for k, v in cluster.owners().items() if v in (names[0], None)},
                   120, "leases taken over", interval=0.05)  # fmt: skip
        leased = time.monotonic() - killed
        poll_until(lambda: _even(cluster, names[1:]), 120, "connections taken over", interval=0.1)
        connected = time.monotonic() - killed
        time.sleep(3)
    return victims, leased, connected, cluster.wait_all_handed_on(120)


def broker_restart(cluster: Cluster, rate: float, down: float) -> str:
    """Stop redis-server (SIGTERM; the append-only file keeps what it accepted) for ``down``
    seconds while events flow, start it again: the result cell."""
    before = len(cluster.emitted)
    with Load(cluster, rate):
        time.sleep(2)
        cluster.redis_srv.stop()
        time.sleep(down)
        cluster.redis_srv.start()
        time.sleep(5)
    deadline = time.monotonic() + 180
    while True:  # the benchmark's own Redis client reconnects on the next command
        try:
            entries = cluster.wait_all_handed_on(max(1.0, deadline - time.monotonic()))
            break
        except (AssertionError, redis.RedisError) as exc:
            if time.monotonic() > deadline:
                missing = set(cluster.emitted) - {e["event_id"] for e in cluster.entries()}
                return f"{len(cluster.emitted) - before} events: {len(missing)} lost ({exc})"[:300]
            time.sleep(1)
    ids = [e["event_id"] for e in entries]
    return (f"{len(cluster.emitted) - before} events during the step: {len(set(cluster.emitted) - set(ids))} lost, "
            f"{len(ids) - len(set(ids))} duplicated")  # fmt: skip


def voxsig_takeover(
    tmp: Path, tenants: int, replicas: int, lease_ttl: float, rate: float, hub_workers: int = 0
) -> tuple[str, str]:
    """SIGKILL one replica of Voxsig agents while messages flow; the row of the table."""
    names = [f"v{i}" for i in range(replicas)]
    with RedisServer(log_dir=tmp) as redis_srv:
        cluster = VoxsigCluster(redis_srv, tenants, lease_ttl, tmp, hub_workers)
        try:
            for name in names:
                cluster.spawn(name)
            poll_until(lambda: _even(cluster, names), 300, "even spread", interval=0.2)
            cluster.emit_round()  # every agent has a resume point
            cluster.wait_all_handed_on(120)
            victims, leased, connected, entries = kill_one(cluster, names, VoxsigLoad(cluster, rate))
        finally:
            cluster.stop()
    ids = [e["event_id"] for e in entries]
    lost = len(set(cluster.emitted) - set(ids))
    dup = len(ids) - len(set(ids))
    fetched = sum(1 for e in entries if e["recovered"])
    return (f"Voxsig: SIGKILL one replica ({tenants} agents, lease {lease_ttl:g} s, {rate:g} messages/s)",
            f"{len(victims)} agents re-leased after {leased:.1f} s, all reconnected after {connected:.1f} s; "
            f"{len(cluster.emitted)} messages: {lost} lost, {dup} duplicated ({fetched} fetched from the "
            f"REST API by the new owners' catch-up)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=600)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--lease-ttl", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="events per second during the faults")
    parser.add_argument("--voxsig-tenants", type=int, default=300)
    parser.add_argument(
        "--hub-workers",
        type=int,
        default=0,
        help="run each replica's tenants on one rs.Hub(workers=N) (default: standalone clients)",
    )
    parser.add_argument("--broker-down", type=float, default=3.0, help="seconds redis-server stays stopped")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--voxsig-only", action="store_true", help="only the Voxsig takeover (printed, not written)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.tenants, args.replicas, args.lease_ttl, args.voxsig_tenants = 300, 3, 4.0, 90
    names = [f"r{i}" for i in range(args.replicas)]
    rows: list[tuple[str, str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="rts-bench-replicas-"))
    if args.voxsig_only:
        row = voxsig_takeover(tmp, args.voxsig_tenants, args.replicas, args.lease_ttl, args.rate, args.hub_workers)
        print(f"| scenario | result |\n| --- | --- |\n| {row[0]} | {row[1]} |")
        return 0
    with RedisServer(log_dir=tmp) as redis_srv:
        cluster = Cluster(redis_srv, args.tenants, args.lease_ttl, tmp, args.hub_workers)
        sampler = Sampler(cluster)
        try:
            t0 = time.monotonic()
            for name in names:
                cluster.spawn(name)
            poll_until(lambda: _even(cluster, names), 300, "even spread", interval=0.2)
            spread = time.monotonic() - t0
            rss = [_proc_status(cluster.procs[n].pid, "VmRSS") / 1024 for n in names]
            threads = [_proc_status(cluster.procs[n].pid, "Threads") for n in names]
            share = args.tenants // args.replicas
            mode = f"one Hub(workers={args.hub_workers}) per replica" if args.hub_workers else "standalone clients"
            rows.append((f"{args.replicas} replicas start, {args.tenants} tenants, {mode}",
                         f"{share} each, one connection per tenant, in {spread:.1f} s; "
                         f"{sum(rss) / len(rss):.0f} MiB and {sum(threads) // len(threads)} threads per replica"))  # fmt: skip
            cluster.emit_round()  # every tenant gets a resume point
            cluster.wait_all_handed_on(120)

            victims, leased, connected, entries = kill_one(cluster, names, Load(cluster, args.rate))
            ids = [e["event_id"] for e in entries]
            lost = len(set(cluster.emitted) - set(ids))
            dup = len(ids) - len(set(ids))
            rows.append((f"SIGKILL one replica (lease {args.lease_ttl:g} s, {args.rate:g} events/s)",
                         f"{len(victims)} tenants re-leased after {leased:.1f} s, all reconnected after "
                         f"{connected:.1f} s; {len(cluster.emitted)} events: {lost} lost, {dup} duplicated"))  # fmt: skip

            frozen = names[1]
            with Load(cluster, args.rate) as load:
                owned = {k for k, v in cluster.owners().items() if v == frozen}
                frozen_leases = {v for v in cluster.leases().values() if v and v.startswith(frozen + "|")}
                cluster.procs[frozen].send_signal(signal.SIGSTOP)
                stopped = time.monotonic()
                poll_until(lambda: not owned & {k for k, v in cluster.owners().items() if v in (frozen, None)},
                           120, "frozen replica's leases taken over", interval=0.05)  # fmt: skip
                taken = time.monotonic() - stopped
                time.sleep(max(0.0, args.lease_ttl * 1.5 - taken))
                cluster.procs[frozen].send_signal(signal.SIGCONT)
                resumed = time.monotonic()
                poll_until(lambda: max(cluster.connections().values()) <= 1, 60, "stale closed", interval=0.02)
                stale = time.monotonic() - resumed
                time.sleep(2)
            entries = cluster.wait_all_handed_on(120)
            awake = [n for n in names[1:] if n != frozen]
            peak = max((sampler.threads.get(n, 0) for n in awake), default=0)
            # Events emitted once it was frozen: it may have received them (its sockets stay open)
            # but must not hand any on (the others own its tenants by the time it wakes).
            stamp = {i for i, t in load.times.items() if t > stopped}
            by_frozen = sum(1 for e in entries if e["lease"] in frozen_leases and e["event_id"] in stamp)
            ids = [e["event_id"] for e in entries]
            lost, dup = len(set(cluster.emitted) - set(ids)), len(ids) - len(set(ids))
            restart = broker_restart(cluster, args.rate, args.broker_down)
            stats = cluster.stop()
            fenced = stats.get(frozen, {}).get("replica", {}).get("fenced_events", "?")
            rows.append((f"SIGSTOP one replica for {args.lease_ttl * 1.5:g} s",
                         f"{len(owned)} tenants re-leased after {taken:.1f} s; on SIGCONT its stale sockets closed in "
                         f"{stale * 1000:.0f} ms; events emitted while it was frozen that it handed on under its old leases: {by_frozen} "
                         f"({fenced} dropped as fenced); {lost} lost, {dup} duplicated; the replica left awake peaked at "
                         f"{peak} threads"))  # fmt: skip
            rows.append((f"redis-server stopped for {args.broker_down:g} s and restarted ({args.rate:g} events/s)",
                         restart))  # fmt: skip
        finally:
            cluster.stop()
            load_avg = sampler.close()
    vx_sampler = Sampler()
    rows.append(voxsig_takeover(tmp, args.voxsig_tenants, args.replicas, args.lease_ttl, args.rate, args.hub_workers))
    rows.append(
        ("load average (1 min) of this 2-CPU machine", f"Jifeline steps: {load_avg}; Voxsig step: {vx_sampler.close()}")
    )
    # The rates without the fsync-per-write of the append-only file the fault scenarios use.
    with RedisServer(log_dir=tmp, appendonly=False) as plain:
        into, out = sink_rates(plain.url, 20_000 if args.quick else 50_000)
        rows.append(("RedisStreamSink, events of ~600 bytes", f"{into:,.0f} events/s into the stream (batches of 100)"))
        rows.append(("StreamConsumer read + dedupe check + ack", f"{out:,.0f} events/s per consumer"))
    table = "| scenario | result |\n| --- | --- |\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)
    print(table)
    if not args.no_write:
        (Path(__file__).parent / "results_replicas.md").write_text(
            "# Replicas through Redis\n\n`python benchmarks/replicas.py" + (" --quick" if args.quick else "")
            + (f" --hub-workers {args.hub_workers}" if args.hub_workers else "")
            + "` on this machine:\n\n" + table
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
