"""What the replicas and the sinks share about Redis: clients from URLs (a single server or a
Redis Cluster), the hash-tagged key layout, and the Lua that stores a tenant's resume point.

Redis Cluster runs a script only when every key it names lives in one hash slot (else
``CROSSSLOT``).  The replicas' scripts name several keys at once (all the leases they renew; a
stream entry, its tenant's lease and resume point), so every key of a replica group carries the
group's *hash tag*: ``{realtime_sync}:lease:acme``, ``{realtime_sync}:checkpoint:acme`` ...  A
fenced stream must carry the same tag (``{realtime_sync}:events``).  The price: one group lives
on one cluster node (its traffic is a few commands per event, far from a node's limit); to
spread several groups, give each its own namespace.

    redis://host:6379/0                  a single server (or a primary)
    redis+cluster://host:7000            a Redis Cluster, any node as the seed (rediss+cluster:// with TLS)
"""

from __future__ import annotations

from typing import Any

from ..exceptions import ConfigurationError

__all__ = ["CLUSTER_SCHEMES", "describe_error", "hash_tag", "is_cluster", "key_prefix", "redis_client", "same_slot"]

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def _module() -> Any:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("this needs redis-py: pip install 'realtime_sync[redis]'") from exc
    return redis


def redis_client(redis: Any, **options: Any) -> Any:
    """A redis-py client for ``redis``: a URL (``redis+cluster://`` for a Redis Cluster) or a
    client already made (``redis.Redis`` or ``redis.cluster.RedisCluster``), returned as is.

    >>> redis_client("redis+cluster://127.0.0.1:7000").__class__.__name__   # doctest: +SKIP
    'RedisCluster'
    """
    if not isinstance(redis, str):
        return redis
    module = _module()
    scheme, sep, rest = redis.partition("://")
    if not sep:
        raise ConfigurationError(f"a Redis URL looks like redis://host:6379/0, got {redis[:40]!r}")
    if scheme.lower() in CLUSTER_SCHEMES:
        from redis.cluster import RedisCluster

        url = f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}"
        options.pop("health_check_interval", None)
        # The nodes are discovered from the seed; a node that fails over is found again.
        return RedisCluster.from_url(url, **options)
    return module.Redis.from_url(redis, **options)


def is_cluster(client: Any) -> bool:
    """True for a ``redis.cluster.RedisCluster`` client."""
    try:
        from redis.cluster import RedisCluster
    except ImportError:  # pragma: no cover
        return False
    return isinstance(client, RedisCluster)


def hash_tag(name: str) -> str | None:
    """The part of ``name`` Redis Cluster hashes (the first non-empty ``{...}``), else None.

    >>> hash_tag("{rt}:lease:a"), hash_tag("events"), hash_tag("{}x{y}")
    ('rt', None, None)
    """
    start = name.find("{")
    if start < 0:
        return None
    end = name.find("}", start + 1)
    if end <= start + 1:
        return None
    return name[start + 1 : end]


def key_prefix(namespace: str) -> str:
    """The prefix of a replica group's keys: the namespace as a hash tag, so that all of them
    share one slot on a Redis Cluster (kept as given when it already holds a tag).

    >>> key_prefix("realtime_sync"), key_prefix("{shop}:rt")
    ('{realtime_sync}', '{shop}:rt')
    """
    if not isinstance(namespace, str) or not namespace:
        raise ConfigurationError(f"namespace must be a non-empty string, got {namespace!r}")
    return namespace if hash_tag(namespace) is not None else f"{{{namespace}}}"


def same_slot(*keys: str) -> bool:
    """True when Redis Cluster puts every key in the same hash slot.

    >>> same_slot("{rt}:lease:a", "{rt}:events"), same_slot("{rt}:lease:a", "events")
    (True, False)
    """
    from redis.crc import key_slot

    return len({key_slot(k.encode()) for k in keys}) <= 1


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of a Redis error, with what to do when a plain client met a cluster.

    >>> describe_error(Exception("MOVED 3999 127.0.0.1:7002"))
    'Exception: MOVED 3999 127.0.0.1:7002 (this Redis is a cluster node: use a redis+cluster:// URL)'
    """
    text = f"{type(exc).__name__}: {exc}"
    # redis-py turns "MOVED <slot> <node>" into MovedError("<slot> <node>").
    redirected = any(c.__name__ in ("AskError", "ClusterDownError") for c in type(exc).__mro__)
    if redirected or str(exc).startswith(("MOVED ", "ASK ", "CLUSTERDOWN")):
        text += " (this Redis is a cluster node: use a redis+cluster:// URL)"
    return text


# Store a tenant's resume point, in a script that has checked the lease already.
# KEYS[c]: the checkpoint (a string: SET; 'NX' in ARGV[nx] sets it only if absent);
# KEYS[d]: the ids delivered (a sorted set of the newest ``keep`` ids; a Voxsig takeover skips
# them).  ARGV[p] = checkpoint ('' none), ARGV[p+1] = delivered id ('' none), ARGV[p+2] = keep.
STORE_POINT = """
local function store_point(ck, dk, point, mid, keep, nx)
  if point ~= '' then
    if nx == 'NX' then redis.call('SET', ck, point, 'NX') else redis.call('SET', ck, point) end
  end
  if mid ~= '' then
    redis.call('ZADD', dk, tonumber(mid), mid)
    redis.call('ZREMRANGEBYRANK', dk, 0, -1 - tonumber(keep))
  end
end
"""
