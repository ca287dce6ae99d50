"""One listener replica, as a process of its own, for the replica tests and benchmarks.

    python -m tests._replica_worker --redis URL --partner WS_URL --rest HTTP_URL --tenants 300 \
        --stream events --replica-id r0 [--lease-ttl 4] [--hub-workers 4]

    python -m tests._replica_worker --vendor voxsig --redis URL --partner CABLE_URL --rest CHATWOOT_URL ...

Tenant i (``t<i>``) is a Jifeline partner connection with token ``tok-<i>``, subscribed to system
events of type ``t<i>.created``, with gap recovery from the REST fake.  With ``--vendor voxsig``,
tenant i is the Voxsig agent ``vx-<i>`` (user ``1000+i``, account ``100+i``) with the catch-up
from the Chatwoot REST fake (access token ``VOXSIG_API_TOKEN``).  Prints ``READY`` once
started (with ``--wait-go``: once built, and starts at the next line on stdin, so that replicas
whose interpreters start at different speeds start together); on SIGTERM it closes (releasing its
leases) and prints its stats as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import attrs

from realtime_sync import GapRecovery, Hub, ReconnectPolicy, VoxsigCatchUp
from realtime_sync.contrib.redis_replicas import ReplicaListener, Tenant
from realtime_sync.contrib.sinks import RedisStreamSink


def tenants(partner_url: str, rest_url: str, count: int) -> list[Tenant]:
    policy = ReconnectPolicy(instant_retries=3, interval=0.3, max_interval=1.0, jitter=0.0)
    gap = GapRecovery(rest_url=rest_url, limit=500, max_pages=40, http_timeout=10, hold_timeout=30)
    return [
        Tenant(
            f"t{i}",
            vendor="jifeline-partner",
            url=partner_url,
            token=f"tok-{i}",
            subscribe={"event": [f"t{i}.created"]},
            options={"gap_recovery": gap, "reconnect": policy},
        )
        for i in range(count)
    ]


VOXSIG_API_TOKEN = "replicas-chatwoot-api-token"


def voxsig_tenants(cable_url: str, rest_url: str, count: int) -> list[Tenant]:
    policy = ReconnectPolicy(instant_retries=3, interval=0.3, max_interval=1.0, jitter=0.0)
    catch_up = VoxsigCatchUp(api_url=rest_url, api_access_token=VOXSIG_API_TOKEN, http_timeout=10, hold_timeout=30)
    return [
        Tenant(
            f"t{i}",
            vendor="voxsig",
            url=cable_url,
            token=f"vx-{i}",
            options={
                "account_id": 100 + i,
                "user_id": 1000 + i,
                "presence_interval": None,
                "catch_up": catch_up,
                "reconnect": policy,
            },
        )
        for i in range(count)
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vendor", default="jifeline-partner", choices=["jifeline-partner", "voxsig"])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--partner", required=True)
    parser.add_argument("--rest", required=True)
    parser.add_argument("--tenants", type=int, required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--replica-id", required=True)
    parser.add_argument("--namespace", default="rt")
    parser.add_argument("--lease-ttl", type=float, default=4.0)
    parser.add_argument(
        "--wait-go",
        action="store_true",
        help="print READY once built, then start when a line arrives on stdin (replicas started together)",
    )
    parser.add_argument("--hub-workers", type=int, default=0, help="run the tenants on one Hub(workers=N)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format=f"%(asctime)s {args.replica_id} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    sink = RedisStreamSink(args.redis, args.stream, name=args.replica_id)
    make = voxsig_tenants if args.vendor == "voxsig" else tenants
    hub = Hub(workers=args.hub_workers, name="replica-hub") if args.hub_workers else None
    listener = ReplicaListener(
        make(args.partner, args.rest, args.tenants),
        args.redis,
        sink=sink,
        namespace=args.namespace,
        lease_ttl=args.lease_ttl,
        replica_id=args.replica_id,
        hub=hub,
    )
    if args.wait_go:
        print("READY", flush=True)
        sys.stdin.readline()
        listener.start()
    else:
        listener.start()
        print("READY", flush=True)
    listener.run_forever()
    sink.close(timeout=10)
    if hub is not None:
        hub.close()
    print(json.dumps({"replica": attrs.asdict(listener.stats), "sink": attrs.asdict(sink.stats)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
