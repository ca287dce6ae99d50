"""Listener replicas that share the connections through leases in Redis.

Run the same listener in several processes (containers, hosts): each *tenant* (one connection:
an agent's pubsub token, a partner account, a customer) is held by exactly one live replica at
a time, the tenants are spread evenly over the live replicas, and the tenants of a replica that
dies or is cut off are taken over by the others within a bounded time.  Needs the ``redis``
extra (``pip install 'realtime_sync[redis]'``): Redis is the only coordinator; there is no
home-made consensus, only the well-known primitives (keys with an expiry set with ``SET NX PX``,
renewed and released by token-checked Lua scripts, as redis-py's ``Lock`` does).

    from realtime_sync.contrib.redis_replicas import ReplicaListener, Tenant
    from realtime_sync.contrib.sinks import RedisStreamSink

    tenants = [
        Tenant("acme", vendor="jifeline-partner", token=acme_token,
               subscribe={"event": ["tickets.ticket.created"]}, options={"gap_recovery": True}),
        Tenant("globex", vendor="voxsig", token=globex_pubsub_token, url="wss://app.voxsig.com/cable",
               options={"account_id": 3, "user_id": 12}),
    ]
    sink = RedisStreamSink("redis://redis:6379/0", stream="realtime-events")
    with ReplicaListener(tenants, "redis://redis:6379/0", sink=sink) as listener:
        listener.run_forever()          # SIGTERM / Ctrl-C: release the leases, close, exit

Theory of operation (one coordinator thread per replica, ``realtime_sync-replicas-<id>``):

* **Heartbeat.** Every ``renew_interval`` the replica adds itself to the sorted set
  ``{ns}:replicas`` with an expiry ``heartbeat_ttl`` ahead (Redis' own clock), prunes expired
  members and reads the live ones, in one script.
* **Leases.** ``{ns}:lease:<tenant>`` holds ``<replica id>|<nonce>`` with a ``PX`` expiry of
  ``lease_ttl``.  It is taken with ``SET NX PX``, renewed by a script that extends it only if it
  still holds our token, and released by one that deletes it only then.  All owned leases are
  renewed in one round trip.
* **No two owners.** A lease renewed by a request sent at monotonic time *t* cannot expire before
  *t + lease_ttl*.  A replica that has not renewed a lease by *t + lease_ttl - safety margin*
  (Redis unreachable, the process frozen by SIGSTOP or a long GC pause, a partition) stops
  handing that tenant's events on at once and closes the connection, before anyone else can take
  the lease.  A renew that finds the lease gone or taken closes at once too.  Events handed on
  through :class:`~realtime_sync.contrib.sinks.RedisStreamSink` are additionally *fenced*: the
  ``XADD`` runs in a script that checks the lease token first, so a replica that wakes up from a
  freeze cannot append for a tenant another replica owns, even for the events it had buffered.
  A frozen replica's sockets stay open until it wakes (nothing runs to close them); on waking,
  its dispatchers refuse every event of a lease past its deadline (``stats.fenced_events``)
  and the coordinator's first act, before any further Redis command (the deadlines are checked
  before each round trip), is to give those leases up and close their connections.
* **Balance.** With *N* tenants and *L* live replicas each replica holds at most ``ceil(N/L)``:
  it releases the excess (closing the connection first, then deleting the lease) and takes free
  tenants up to that bound, its rendezvous-hash favourites first, so that the assignment is
  stable and a joining replica takes its share without a reshuffle of everything.
* **Takeover and gap recovery.** The newest resume point of each tenant is kept in
  ``{ns}:checkpoint:<tenant>``, written only while the lease is ours (atomically with the fenced
  ``XADD`` for the stream sink): for the Jifeline partner the ``event_id`` of the last system
  event handed on; for Voxsig a :class:`~realtime_sync.VoxsigResumePoint` (the receipt time of
  the last live event), with the newest ``delivered_kept`` ``message.created`` ids handed on in
  the sorted set ``{ns}:delivered:<tenant>``.  The replica that takes a tenant over builds its
  client with that resume point (``GapRecovery(after_id=...)``;
  ``VoxsigCatchUp(resume_from=...)``, which catches up on the first connect and skips the ids
  handed on), so the events missed while nobody held the connection are fetched from the
  vendor's REST API: none lost where the vendor allows it.  Genesys (no history) loses what
  happened during the takeover; duplicates are possible around a takeover and carry the same
  ``event.key``: consumers deduplicate by it.
* **Redis Cluster** (``redis+cluster://host:port``): every key of a group carries the namespace as
  its hash tag (``{realtime_sync}:lease:acme``), so the multi-key scripts run in one slot; a
  fenced stream must carry the same tag (``{realtime_sync}:events``; refused at construction
  otherwise).

Takeover time after a crash is at most ``lease_ttl + renew_interval`` plus the time to connect.
The client-creation step is pluggable (``client_factory(tenant, resume_point)``): today each
tenant is a standalone client (two threads); a hub can supply clients that share an I/O loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import attrs

from .._redact import redact
from .._validate import seconds
from ..client import Client
from ..events import LIFECYCLE_EVENTS, Event
from ..exceptions import ClientClosedError, ConfigurationError
from ..hub import Hub
from ._common import import_string, make_client, normalise_vendor
from ._redis import STORE_POINT, describe_error, key_prefix, redis_client

try:
    import redis as _redis
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "realtime_sync.contrib.redis_replicas needs redis-py: pip install 'realtime_sync[redis]'"
    ) from exc

__all__ = [
    "Fence",
    "ReplicaListener",
    "ReplicaStats",
    "Tenant",
    "default_client_factory",
    "default_delivered_id",
    "default_resume_point",
    "load_tenants",
    "run_replica",
    "with_resume_point",
]

log = logging.getLogger("realtime_sync.replicas")

#: ``start()`` and ``with ... as x`` return the instance with its own type (a subclass keeps it).
_S = TypeVar("_S", bound="ReplicaListener")

Handler = Callable[[Event], Any]


# -- tenants ------------------------------------------------------------------------------------


def _key(value: Any) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
        raise ConfigurationError(f"a tenant needs a key (a non-empty string such as 'acme'), got {value!r:.40}")
    return str(value).strip()


@attrs.frozen(repr=False)
class Tenant:
    """One connection a group of replicas must hold: who, to which vendor, subscribed to what.

    ``key`` identifies the tenant across replicas (it names its lease and resume point in
    Redis: use a stable id such as the account's primary key, never a secret).  ``token`` is the
    vendor secret (a string or a callable called on every connect; never written to Redis, not
    in the repr).  ``subscribe`` and ``options`` are as for
    :func:`~realtime_sync.contrib._common.make_client`.

    >>> Tenant("acme", vendor="jifeline-partner", token="s3cret", subscribe={"event": ["tickets.ticket.created"]})
    Tenant('acme', vendor='jifeline-partner')
    """

    key: str = attrs.field(converter=_key)
    vendor: str | None = None
    url: str | None = None
    token: Any = None
    subscribe: Mapping[str, Sequence[Any]] = attrs.field(factory=dict)
    options: Mapping[str, Any] = attrs.field(factory=dict)

    def __repr__(self) -> str:
        # The token and the options (client secrets, passwords) stay out of every repr.
        return redact(f"Tenant({self.key!r}, vendor={self.vendor!r})")

    @classmethod
    def from_config(cls, item: Tenant | Mapping[str, Any], vendor: str | None = None) -> Tenant:
        """A tenant from a settings entry: ``{"key": ..., "vendor": ..., "url": ..., "token": ...,
        "subscribe": {...}, "options": {...}}`` (``vendor`` defaults to the given one)."""
        if isinstance(item, Tenant):
            return item if item.vendor or vendor is None else attrs.evolve(item, vendor=vendor)
        if not isinstance(item, Mapping):
            raise ConfigurationError(f"a tenant is a Tenant or a mapping with a 'key', got {type(item).__name__}")
        known = {"key", "vendor", "url", "token", "subscribe", "options"}
        unknown = set(item) - known
        if unknown:
            raise ConfigurationError(f"unknown tenant field(s) {sorted(unknown)}; valid: {sorted(known)}")
        if "key" not in item:
            raise ConfigurationError("every tenant needs a 'key' (a stable id such as the account id)")
        return cls(
            key=item["key"],
            vendor=item.get("vendor") or vendor,
            url=item.get("url"),
            token=item.get("token"),
            subscribe=dict(item.get("subscribe") or {}),
            options=dict(item.get("options") or {}),
        )


def load_tenants(source: Any, vendor: str | None = None) -> list[Tenant]:
    """The tenants of ``source``: a list of :class:`Tenant` or mappings, a callable returning one
    (called again on every refresh: read them from your database there), the dotted path of such
    a callable (``"myapp.tenants:all_tenants"``), or the path of a JSON file holding the list.

    >>> [t.key for t in load_tenants([{"key": "a", "vendor": "voxsig"}, Tenant("b", vendor="voxsig")])]
    ['a', 'b']
    """
    if isinstance(source, str):
        if source.endswith(".json") or os.path.sep in source or os.path.exists(source):
            try:
                with open(source, encoding="utf-8") as fh:
                    source = json.load(fh)
            except (OSError, ValueError) as exc:
                raise ConfigurationError(f"cannot read the tenants file {source!r}: {exc}") from exc
        else:
            source = import_string(source)
    if callable(source):
        source = source()
    if isinstance(source, (str, bytes, Mapping)) or not isinstance(source, Iterable):
        raise ConfigurationError("tenants must be a list of Tenant or mappings (or a callable returning one)")
    tenants = [Tenant.from_config(item, vendor) for item in source]
    seen: set[str] = set()
    for t in tenants:
        if t.key in seen:
            raise ConfigurationError(f"two tenants have the key {t.key!r}: keys must be unique")
        seen.add(t.key)
    return tenants


# -- clients ------------------------------------------------------------------------------------


def with_resume_point(options: Mapping[str, Any], resume_point: str | None) -> dict[str, Any]:
    """``options`` of a client with the resume point applied, so that the new owner of a tenant
    fetches what was missed: a ``gap_recovery`` option (True or a
    :class:`~realtime_sync.GapRecovery`) becomes ``GapRecovery(after_id=resume_point)``; a
    Voxsig ``catch_up`` option (a :class:`~realtime_sync.VoxsigCatchUp`, or a mapping of its
    fields from a settings file) gets ``resume_from=VoxsigResumePoint.from_json(resume_point)``.
    Other options are returned unchanged.

    >>> with_resume_point({"gap_recovery": True}, "01J8").get("gap_recovery").after_id
    '01J8'
    >>> opts = with_resume_point({"catch_up": {"api_url": "https://x", "api_access_token": "t"}},
    ...                          '{"voxsig":1,"at":1764000000.0,"delivered":[41,42]}')
    >>> opts["catch_up"].resume_from
    VoxsigResumePoint(at=1764000000.0, delivered=(41, 42))
    """
    out = dict(options)
    gap = out.get("gap_recovery")
    if resume_point is not None and gap:
        from ..jifeline import GapRecovery

        out["gap_recovery"] = attrs.evolve(
            gap if isinstance(gap, GapRecovery) else GapRecovery(), after_id=resume_point
        )
    catch_up = out.get("catch_up")
    if catch_up:
        from ..voxsig import VoxsigCatchUp, VoxsigResumePoint

        if isinstance(catch_up, Mapping):
            catch_up = VoxsigCatchUp(**catch_up)
        point = VoxsigResumePoint.from_json(resume_point)
        if isinstance(catch_up, VoxsigCatchUp) and point is not None:
            catch_up = attrs.evolve(catch_up, resume_from=point)
        out["catch_up"] = catch_up
    return out


def default_client_factory(tenant: Tenant, resume_point: str | None) -> Client:
    """Build a tenant's client with :func:`~realtime_sync.contrib._common.make_client`.

    For a Jifeline partner tenant with ``gap_recovery`` in its options, the resume point becomes
    ``GapRecovery(after_id=resume_point)``; for a Voxsig tenant with ``catch_up``, the catch-up's
    ``resume_from`` (:func:`with_resume_point`).
    """
    if not tenant.vendor:
        raise ConfigurationError(f"tenant {tenant.key!r} has no vendor")
    options = with_resume_point(tenant.options, resume_point)
    options.setdefault("name", f"tenant-{tenant.key}")
    return make_client(tenant.vendor, tenant.url, tenant.token, subscribe=tenant.subscribe, **options)


def default_resume_point(event: Event) -> str | None:
    """The resume point an event carries: the Jifeline partner system event's ``event_id``; for
    a live Voxsig event (it has an ``account_id``), a :class:`~realtime_sync.VoxsigResumePoint`
    at its receipt time (fetched events do not move it: the live ones held meanwhile may be
    older).

    >>> default_resume_point(Event("message.created", {}, account_id=1, received_at=1764000000.5))
    '{"voxsig":1,"at":1764000000.5,"delivered":[]}'
    """
    value = getattr(event.data, "event_id", None)
    if isinstance(value, str) and value:
        return value
    if event.account_id is not None and not event.recovered and event.received_at:
        from ..voxsig import VoxsigResumePoint

        return VoxsigResumePoint(event.received_at).to_json()
    return None


def default_delivered_id(event: Event) -> int | None:
    """The id remembered as handed on, so that a Voxsig takeover's catch-up skips it: the
    ``message.created`` id (live or fetched) of a Voxsig event.

    >>> from realtime_sync.models.voxsig import Message
    >>> default_delivered_id(Event("message.created", Message(id=9), account_id=1))
    9
    """
    if event.name != "message.created" or event.account_id is None:
        return None
    value = getattr(event.data, "id", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# -- Redis scripts ------------------------------------------------------------------------------

# Heartbeat: KEYS[1] = the replicas zset; ARGV = id, ttl ms.  Scores are expiry times in Redis'
# own clock (TIME), so the replicas' clocks never matter.  Returns the live ids.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# Renew many leases: KEYS = lease keys; ARGV[1] = ttl ms, ARGV[i+1] = the token for KEYS[i].
_RENEW = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

# Release one lease if it is still ours.  KEYS[1] = lease; ARGV[1] = token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Write a resume point only while the lease is ours.  KEYS = lease, checkpoint, delivered ids;
# ARGV = token, checkpoint ('' none), delivered id ('' none), ids kept, 'NX' (only if absent) or ''.
_CHECKPOINT = (
    STORE_POINT
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
store_point(KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return 1
"""
)


@attrs.frozen
class Fence:
    """What a sink needs to hand an event on only while its tenant's lease is ours.

    ``lease_key`` must still hold ``token`` when the event is appended (else the event is refused:
    another replica owns the tenant now and fetches it itself from the resume point);
    ``checkpoint_key``/``checkpoint`` is the resume point to store with it, if the event has one;
    ``delivered`` an id to add to the sorted set ``delivered_key`` (its newest ``keep`` ids are
    kept: a Voxsig takeover skips them).
    """

    tenant: str
    lease_key: str
    token: str
    checkpoint_key: str
    checkpoint: str | None = None
    replica: str = ""
    delivered_key: str = ""
    delivered: int | None = None
    keep: int = 200

    @property
    def stores_point(self) -> bool:
        """True when handing the event on must store something (a checkpoint or an id)."""
        return self.checkpoint is not None or self.delivered is not None

    def point_args(self) -> list[Any]:
        """The checkpoint, delivered id and ``keep`` arguments of the scripts."""
        return [self.checkpoint or "", "" if self.delivered is None else self.delivered, self.keep]


@attrs.frozen
class ReplicaStats:
    """A snapshot of a replica's coordination counters (``listener.stats``)."""

    replica_id: str
    live_replicas: int
    tenants: int
    owned: int
    acquired: int
    released: int
    lost: int
    fenced_events: int
    redis_errors: int
    last_error: str | None


@attrs.define
class _Owned:
    tenant: Tenant
    token: str
    client: Client | None
    # monotonic time before which the lease cannot have expired (send time of the last good
    # renew + lease_ttl); events are handed on only before ``valid_until - margin``.
    valid_until: float
    releasing: bool = False
    #: No resume point was stored for the tenant: store one when its subscription is confirmed
    #: (a Voxsig tenant), so that even a takeover before its first event catches up.
    seed_point: bool = False


def _same_tenant(a: Tenant, b: Tenant) -> bool:
    # A token callable is rebuilt by every read of the tenant source: the same callable for us.
    same_token = a.token == b.token or (callable(a.token) and callable(b.token))
    return same_token and (a.vendor, a.url, a.subscribe, a.options) == (b.vendor, b.url, b.subscribe, b.options)


def _catches_up(tenant: Tenant) -> bool:
    """A Voxsig tenant with a catch-up: it needs a resume point from its first subscription."""
    if not tenant.options.get("catch_up") or not tenant.vendor:
        return False
    try:
        return normalise_vendor(tenant.vendor) == "voxsig"
    except ConfigurationError:
        return False


def _rendezvous(tenant: str, replica: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{tenant}\0{replica}".encode(), digest_size=8).digest(), "big")


class ReplicaListener:
    """One replica of a listener group: holds its share of ``tenants`` through leases in Redis.

    Args:
        tenants: the tenant set (see :func:`load_tenants`); a callable is called again every
            ``tenant_refresh`` seconds, so tenants added to or removed from your database are
            picked up (a removed tenant's connection is closed and its lease released).
        redis: a Redis URL (``redis://host:6379/0``; ``redis+cluster://host:7000`` for a Redis
            Cluster) or a ``redis.Redis`` / ``redis.cluster.RedisCluster`` client.
        sink: where events go (a :class:`~realtime_sync.contrib.sinks.RedisStreamSink`,
            :class:`~realtime_sync.contrib.sinks.CelerySink`...); events are fenced by the lease.
        client_factory: ``factory(tenant, resume_point) -> Client`` (unstarted); default
            :func:`default_client_factory`.  The hook for a hub that runs many clients per loop.
        setup: ``setup(client, tenant)`` called on each new client before it starts (attach your
            own handlers; wrap them with :meth:`guard` to fence them too).
        namespace: prefix of every Redis key (one group of replicas per namespace), used as the
            keys' hash tag (``{realtime_sync}:lease:<tenant>``) so that a Redis Cluster keeps a
            group's keys in one slot (its scripts name several at once).
        lease_ttl: seconds a lease lives without renewal; a dead replica's tenants are taken over
            within about ``lease_ttl + renew_interval``.
        renew_interval: seconds between heartbeats/renewals (default ``lease_ttl / 4``).
        safety_margin: a lease not renewed by ``lease_ttl - safety_margin`` after the last good
            renewal is given up: events stop at once, the connection is closed (default
            ``lease_ttl * 0.3``; must exceed ``renew_interval``'s worth of one missed renewal).
        resume_point: ``fn(event) -> str | None``, the resume point an event carries.
        delivered_id: ``fn(event) -> int | None``, an id to remember as handed on (the newest
            ``delivered_kept`` per tenant; a Voxsig takeover skips them).
        replica_id: this replica's id in Redis (default ``host-pid-random``).
        retry_stopped: seconds before this replica takes again a tenant whose client stopped for
            good here (credentials refused...): the lease is released at once for the others.
        max_tenants: the most tenants this replica holds, whatever its share (its capacity:
            each standalone client has two threads and a few file descriptors).
        hub: a :class:`~realtime_sync.Hub` to run every tenant's client on (``hub.add(client)``
            before it starts): the replica's thread count then stays fixed however many tenants
            it holds.  The listener does not close it: close it after ``listener.close()``.

    >>> listener = ReplicaListener([Tenant("a", vendor="voxsig", token="t")], "redis://127.0.0.1:6379/0")  # doctest: +SKIP
    >>> listener.start(); listener.stats.owned                                                              # doctest: +SKIP
    """

    def __init__(
        self,
        tenants: Any,
        redis: str | Any,
        *,
        sink: Any = None,
        client_factory: Callable[[Tenant, str | None], Client] | None = None,
        setup: Callable[[Client, Tenant], Any] | None = None,
        namespace: str = "realtime_sync",
        lease_ttl: float = 10.0,
        renew_interval: float | None = None,
        safety_margin: float | None = None,
        heartbeat_ttl: float | None = None,
        tenant_refresh: float = 60.0,
        resume_point: Callable[[Event], str | None] = default_resume_point,
        delivered_id: Callable[[Event], int | None] = default_delivered_id,
        delivered_kept: int = 200,
        replica_id: str | None = None,
        vendor: str | None = None,
        close_timeout: float = 5.0,
        retry_stopped: float = 60.0,
        max_tenants: int | None = None,
        hub: Hub | None = None,
    ) -> None:
        self.hub = hub
        try:
            lease_ttl = float(lease_ttl)
        except (TypeError, ValueError):
            raise ConfigurationError(f"lease_ttl must be a number of seconds, got {lease_ttl!r}") from None
        if not lease_ttl >= 0.5:
            raise ConfigurationError(f"lease_ttl must be at least 0.5 s, got {lease_ttl!r}")
        self.lease_ttl = lease_ttl
        self.renew_interval = float(renew_interval) if renew_interval is not None else lease_ttl / 4
        self.safety_margin = float(safety_margin) if safety_margin is not None else lease_ttl * 0.3
        if not 0 < self.renew_interval < lease_ttl - self.safety_margin:
            raise ConfigurationError(
                f"renew_interval ({self.renew_interval:g}s) must be > 0 and shorter than lease_ttl - safety_margin "
                f"({lease_ttl - self.safety_margin:g}s): a replica must get a chance to renew before it gives a lease up"
            )
        if not 0 < self.safety_margin < lease_ttl:
            raise ConfigurationError(f"safety_margin must be between 0 and lease_ttl, got {self.safety_margin!r}")
        self.heartbeat_ttl = float(heartbeat_ttl) if heartbeat_ttl is not None else lease_ttl
        self.tenant_refresh = float(tenant_refresh)
        self._tenant_source = tenants
        self._vendor = vendor
        self._tenants: dict[str, Tenant] = {t.key: t for t in load_tenants(tenants, vendor)}
        self._tenants_loaded = time.monotonic()
        # Short socket timeouts: a renewal must fail fast rather than hang past the deadline.
        timeout = max(0.2, min(2.0, self.renew_interval))
        self.redis = redis_client(
            redis, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=0
        )
        self.sink = sink
        self.client_factory = client_factory or default_client_factory
        self.setup = setup
        self.namespace = namespace
        self._prefix = key_prefix(namespace)
        self.resume_point = resume_point
        self.delivered_id = delivered_id
        if not isinstance(delivered_kept, int) or isinstance(delivered_kept, bool) or delivered_kept < 1:
            raise ConfigurationError(f"delivered_kept must be a positive integer, got {delivered_kept!r}")
        self.delivered_kept = delivered_kept
        self.replica_id = replica_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        if "|" in self.replica_id:
            raise ConfigurationError("replica_id must not contain '|'")
        self.close_timeout = close_timeout
        self.retry_stopped = float(retry_stopped)
        if max_tenants is not None and (not isinstance(max_tenants, int) or max_tenants < 1):
            raise ConfigurationError(f"max_tenants must be a positive integer or None, got {max_tenants!r}")
        self.max_tenants = max_tenants
        self._handlers: list[tuple[str, Handler]] = []
        self._lock = threading.RLock()
        self._owned: dict[str, _Owned] = {}
        self._seen_free: set[str] = set()
        self._backoff: dict[str, float] = {}  # tenant -> monotonic time before which we do not take it
        self._live: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closer: ThreadPoolExecutor | None = None
        self._counts = {"acquired": 0, "released": 0, "lost": 0, "fenced_events": 0, "redis_errors": 0}
        self._last_error: str | None = None
        if sink is not None and hasattr(sink, "bind"):
            sink.bind(self)  # a sink that cannot be fenced here says so now
        self._heartbeat = self.redis.register_script(_HEARTBEAT)
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)
        self._checkpoint = self.redis.register_script(_CHECKPOINT)

    # -- keys ----------------------------------------------------------------------------------

    def lease_key(self, tenant: str) -> str:
        """``{<namespace>}:lease:<tenant>``: ``<replica id>|<nonce>`` of the owner, with an expiry."""
        return f"{self._prefix}:lease:{tenant}"

    def checkpoint_key(self, tenant: str) -> str:
        """``{<namespace>}:checkpoint:<tenant>``: the tenant's resume point."""
        return f"{self._prefix}:checkpoint:{tenant}"

    def delivered_key(self, tenant: str) -> str:
        """``{<namespace>}:delivered:<tenant>``: the newest ids handed on (a sorted set)."""
        return f"{self._prefix}:delivered:{tenant}"

    @property
    def replicas_key(self) -> str:
        """``{<namespace>}:replicas``: the live replicas and their heartbeat expiry."""
        return f"{self._prefix}:replicas"

    # -- handlers ------------------------------------------------------------------------------

    def on(self, pattern: str, handler: Handler) -> Handler:
        """Register ``handler`` on every tenant's client (now and later), fenced by the lease.

        >>> listener.on("tickets.*", lambda event: print(event.name))    # doctest: +SKIP
        """
        if not callable(handler):
            raise ConfigurationError(f"handler must be callable, got {type(handler).__name__}")
        with self._lock:
            self._handlers.append((pattern, handler))
            clients = [(o.tenant.key, o.client) for o in self._owned.values() if o.client is not None]
        for key, client in clients:
            try:
                client.on(pattern, self.guard(key, handler))
            except ClientClosedError:
                # Closing, or stopped for good: the tenant's next client gets every handler.
                pass
        return handler

    def guard(self, tenant: str, handler: Handler) -> Handler:
        """``handler`` wrapped so that it runs only while this replica safely holds ``tenant``'s
        lease (events arriving after that are counted in ``stats.fenced_events`` and dropped:
        the next owner fetches them from the resume point where the vendor allows)."""

        def guarded(event: Event) -> Any:
            if not self.holds(tenant):
                self._fenced(tenant, event)
                return None
            return handler(event)

        guarded.__qualname__ = getattr(handler, "__qualname__", "handler")
        guarded.__module__ = getattr(handler, "__module__", __name__)
        return guarded

    def holds(self, tenant: str) -> bool:
        """True while this replica holds ``tenant``'s lease with the safety margin to spare."""
        owned = self._owned.get(tenant)
        return owned is not None and time.monotonic() < owned.valid_until - self.safety_margin

    def _fenced(self, tenant: str, event: Event) -> None:
        with self._lock:
            self._counts["fenced_events"] += 1
        log.debug(
            "%s: event %s of tenant %s dropped: the lease is not safely ours", self.replica_id, event.name, tenant
        )

    def _deliver(self, tenant: str) -> Handler:
        """The handler that hands a tenant's events to the sink, with the fence."""

        def deliver(event: Event) -> None:
            if event.name in LIFECYCLE_EVENTS or event.name == "handshake":
                owned = self._owned.get(tenant)
                if event.name == "subscribed" and owned is not None and owned.seed_point and self.holds(tenant):
                    # No resume point yet: "caught up until the subscription" (only if absent).
                    from ..voxsig import VoxsigResumePoint

                    owned.seed_point = False
                    point = VoxsigResumePoint(event.received_at or time.time()).to_json()
                    self.commit(self._fence(tenant, owned, point, None), only_if_absent=True)
                return
            owned = self._owned.get(tenant)
            if owned is None or time.monotonic() >= owned.valid_until - self.safety_margin:
                self._fenced(tenant, event)
                return
            fence = self._fence(tenant, owned, self.resume_point(event), self.delivered_id(event))
            if self.sink is not None:
                self.sink.put(event, tenant=tenant, fence=fence)
            elif fence.stores_point:
                self.commit(fence)

        return deliver

    def _fence(self, tenant: str, owned: _Owned, point: str | None, delivered: int | None) -> Fence:
        return Fence(
            tenant,
            self.lease_key(tenant),
            owned.token,
            self.checkpoint_key(tenant),
            point,
            self.replica_id,
            self.delivered_key(tenant),
            delivered,
            self.delivered_kept,
        )

    def commit(self, fence: Fence, *, only_if_absent: bool = False) -> bool:
        """Store ``fence.checkpoint`` as the tenant's resume point (and ``fence.delivered`` among
        its delivered ids) if the lease is still ours (sinks call it once the broker accepted the
        event)."""
        if not fence.stores_point:
            return False
        try:
            keys = [fence.lease_key, fence.checkpoint_key, fence.delivered_key]
            args = [fence.token, *fence.point_args(), "NX" if only_if_absent else ""]
            return bool(self._checkpoint(keys=keys, args=args))
        except _redis.RedisError as exc:
            log.warning("could not store the resume point of %s: %s", fence.tenant, redact(exc))
            return False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self: _S) -> _S:
        """Start the coordinator thread (idempotent); the replica joins the group at once."""
        with self._lock:
            if self._thread is not None:
                return self
            if self.sink is not None and hasattr(self.sink, "bind"):
                self.sink.bind(self)
            self._closer = ThreadPoolExecutor(
                max_workers=4, thread_name_prefix=f"realtime_sync-replicas-close-{self.replica_id}"
            )
            self._thread = threading.Thread(
                target=self._run, name=f"realtime_sync-replicas-{self.replica_id}", daemon=True
            )
            self._thread.start()
        return self

    def close(self, timeout: float | None = 10.0) -> None:
        """Close every connection, release the leases (the others take over at once) and stop.

        Idempotent.  Events still buffered by the sink are flushed by the sink's own ``close()``.
        """
        timeout = seconds(timeout)
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        try:  # leave the group first: the others' share grows, they take our tenants as we release
            self.redis.zrem(self.replicas_key, self.replica_id)
        except _redis.RedisError:
            pass
        with self._lock:
            owned = list(self._owned.values())
            self._owned.clear()
        closer = self._closer
        if closer is not None:
            futures = [closer.submit(self._close_and_release, o) for o in owned]
            for f in futures:
                f.result()
            closer.shutdown(wait=True)
            self._closer = None
        else:
            for o in owned:
                self._close_and_release(o)

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> None:
        """Make :meth:`run_forever` return (and close); safe from a handler or a signal handler."""
        self._stop.set()

    def run_forever(self, duration: float | None = None) -> None:
        """Start and block until SIGINT/SIGTERM (in the main thread), :meth:`stop`, :meth:`close`
        or ``duration`` seconds; then close (the leases are released: the others take over)."""
        import signal

        self.start()
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: self._stop.set())
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while not self._stop.wait(1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))):
                if deadline is not None and time.monotonic() >= deadline:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.close()

    # -- state ---------------------------------------------------------------------------------

    @property
    def owned(self) -> list[str]:
        """The keys of the tenants this replica holds now, sorted."""
        with self._lock:
            return sorted(k for k, o in self._owned.items() if not o.releasing)

    def client(self, tenant: str) -> Client | None:
        """The client of a tenant this replica holds, else None."""
        owned = self._owned.get(tenant)
        return owned.client if owned is not None else None

    @property
    def stats(self) -> ReplicaStats:
        with self._lock:
            return ReplicaStats(
                replica_id=self.replica_id,
                live_replicas=len(self._live),
                tenants=len(self._tenants),
                owned=sum(1 for o in self._owned.values() if not o.releasing),
                last_error=self._last_error,
                **self._counts,
            )

    # -- the coordinator -----------------------------------------------------------------------

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._tick(join_only=first)
                first = False
            except _redis.RedisError as exc:
                with self._lock:
                    self._counts["redis_errors"] += 1
                    self._last_error = redact(describe_error(exc))
                log.warning("%s: Redis: %s", self.replica_id, self._last_error)
            except Exception:  # never let the coordinator die: it is what gives leases up in time
                log.exception("%s: coordinator tick failed", self.replica_id)
            self._give_up_overdue()
            self._stop.wait(max(0.0, self.renew_interval - (time.monotonic() - started)))

    def _tick(self, *, join_only: bool) -> None:
        # The deadlines are checked before each round trip and after the renewals: a replica
        # frozen (SIGSTOP, a pause) anywhere in a round gives its overdue leases up (and closes
        # their connections) as soon as it wakes, before any further Redis command.
        self._give_up_overdue()
        members = self._heartbeat(keys=[self.replicas_key], args=[self.replica_id, int(self.heartbeat_ttl * 1000)])
        live = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        with self._lock:
            self._live = live
        self._give_up_overdue()
        self._renew_all()
        self._give_up_overdue()
        self._release_stopped()
        self._refresh_tenants()
        if join_only:
            return  # one round first: replicas started together see each other before taking
        self._rebalance(live)

    def _release_stopped(self) -> None:
        """A client that stopped for good (credentials refused, the server said not to come
        back) serves nobody: give its tenant up, and do not take it again here for
        ``retry_stopped`` seconds (another replica may try meanwhile; each backs off alike)."""
        with self._lock:
            stopped = [o for o in self._owned.values() if not o.releasing and o.client is not None and o.client.closed]
        for o in stopped:
            assert o.client is not None
            last = o.client.snapshot.last_error
            why = f": {last.kind}: {last.message}" if last is not None else ""
            # For ReplicaStats.last_error too: an operator sees why nothing is held.
            self._last_error = redact(f"tenant {o.tenant.key}: its client stopped by itself{why}")
            log.error(
                "%s: %s; releasing it, not retrying here for %gs",
                self.replica_id,
                self._last_error,
                self.retry_stopped,
            )
            self._backoff[o.tenant.key] = time.monotonic() + self.retry_stopped
            self._drop(o, release=True)

    def _renew_all(self) -> None:
        with self._lock:
            owned = list(self._owned.values())  # the ones being released too: ours until deleted
        if not owned:
            return
        sent = time.monotonic()
        results = self._renew(
            keys=[self.lease_key(o.tenant.key) for o in owned],
            args=[int(self.lease_ttl * 1000), *[o.token for o in owned]],
        )
        for o, ok in zip(owned, results, strict=True):
            if int(ok):
                o.valid_until = max(o.valid_until, sent + self.lease_ttl)
            else:
                log.warning("%s: lost the lease of %s (expired or taken): closing it", self.replica_id, o.tenant.key)
                self._drop(o, release=False)

    def _give_up_overdue(self) -> None:
        now = time.monotonic()
        with self._lock:
            overdue = [o for o in self._owned.values() if now >= o.valid_until - self.safety_margin]
        for o in overdue:
            log.warning(
                "%s: could not renew the lease of %s in time: closing the connection before the lease expires",
                self.replica_id,
                o.tenant.key,
            )
            self._drop(o, release=False)

    def _drop(self, owned: _Owned, *, release: bool) -> None:
        """Stop holding a tenant.  ``release=False`` (the lease is lost or overdue): forget it at
        once, so its events are fenced from now on, and close the client in the background.
        ``release=True`` (rebalance, shutdown): keep handing events on and renewing until the
        client is closed, then delete the lease."""
        key = owned.tenant.key
        with self._lock:
            current = self._owned.get(key) is owned
            if not release:
                owned.valid_until = 0.0
                if current:
                    del self._owned[key]
                    self._counts["lost"] += 1
            elif not current or owned.releasing:
                return
            else:
                owned.releasing = True
        closer = self._closer
        if closer is None:
            self._close_and_release(owned, release)
        else:
            try:
                closer.submit(self._close_and_release, owned, release)
            except RuntimeError:  # shut down meanwhile (close()): do it here
                self._close_and_release(owned, release)

    def _close_and_release(self, owned: _Owned, release: bool = True) -> None:
        client, owned.client = owned.client, None
        if client is not None:
            try:
                client.close(timeout=self.close_timeout)
            except Exception:
                log.exception("%s: closing the client of %s failed", self.replica_id, owned.tenant.key)
        if release:
            # Only once the connection is closed: no instant with two connections for one tenant.
            try:
                self._release(keys=[self.lease_key(owned.tenant.key)], args=[owned.token])
            except _redis.RedisError as exc:
                log.warning(
                    "%s: could not release %s (it expires by itself): %s",
                    self.replica_id,
                    owned.tenant.key,
                    redact(exc),
                )
            with self._lock:
                if self._owned.get(owned.tenant.key) is owned:
                    del self._owned[owned.tenant.key]
                    self._counts["released"] += 1

    def _refresh_tenants(self) -> None:
        if not callable(self._tenant_source) and not isinstance(self._tenant_source, str):
            return
        if time.monotonic() - self._tenants_loaded < self.tenant_refresh:
            return
        self._tenants_loaded = time.monotonic()
        try:
            tenants = {t.key: t for t in load_tenants(self._tenant_source, self._vendor)}
        except Exception:
            log.exception("%s: reading the tenants failed; keeping the previous set", self.replica_id)
            return
        with self._lock:
            self._tenants = tenants
            gone = [o for k, o in self._owned.items() if k not in tenants or not _same_tenant(tenants[k], o.tenant)]
        for o in gone:  # removed, or changed (a new token): reconnect with the new settings
            self._drop(o, release=True)

    def _rebalance(self, live: list[str]) -> None:
        with self._lock:
            tenants = dict(self._tenants)
            mine = {k for k, o in self._owned.items() if not o.releasing}
            busy = set(self._owned)  # held or being released
        if not tenants:
            return
        peers = live if self.replica_id in live else [*live, self.replica_id]
        target = math.ceil(len(tenants) / len(peers))
        if self.max_tenants is not None:
            target = min(target, self.max_tenants)

        def favourite(key: str) -> str:
            return max(peers, key=lambda r: _rendezvous(key, r))

        if len(mine) > target:
            excess = sorted(mine, key=lambda k: (favourite(k) == self.replica_id, k))[: len(mine) - target]
            for key in excess:
                owned = self._owned.get(key)
                if owned is not None:
                    log.info(
                        "%s: releasing %s to rebalance (%d held, target %d)", self.replica_id, key, len(mine), target
                    )
                    self._drop(owned, release=True)
            return
        room = target - len(mine)
        if room <= 0:
            return
        keys = sorted(tenants)
        holders = self.redis.mget([self.lease_key(k) for k in keys])
        now = time.monotonic()
        free = [
            k
            for k, h in zip(keys, holders, strict=True)
            if h is None and k not in busy and self._backoff.get(k, 0.0) <= now
        ]
        seen_before, self._seen_free = self._seen_free, set(free)
        # Our favourites at once; another replica's favourite only if it stayed free a round.
        wanted = [k for k in free if favourite(k) == self.replica_id]
        wanted += [k for k in free if k in seen_before and favourite(k) != self.replica_id]
        wanted = wanted[:room]
        if not wanted:
            return
        token = f"{self.replica_id}|{secrets.token_hex(8)}"
        sent = time.monotonic()
        pipe = self.redis.pipeline(transaction=False)
        for k in wanted:
            pipe.set(self.lease_key(k), token, nx=True, px=int(self.lease_ttl * 1000))
        won = [k for k, ok in zip(wanted, pipe.execute(), strict=True) if ok]
        if not won:
            return
        for key, resume in zip(won, self._resume_points(won), strict=True):
            self._take(tenants[key], token, sent + self.lease_ttl, resume)

    def _resume_points(self, keys: list[str]) -> list[str | None]:
        """The stored resume points of ``keys``, with the delivered ids of Voxsig ones."""
        from ..voxsig import VoxsigResumePoint

        pipe = self.redis.pipeline(transaction=False)
        for k in keys:
            pipe.get(self.checkpoint_key(k))
            pipe.zrange(self.delivered_key(k), 0, -1)
        answers = pipe.execute()
        out: list[str | None] = []
        for i in range(len(keys)):
            raw, ids = answers[2 * i], answers[2 * i + 1]
            point = raw.decode() if isinstance(raw, bytes) else raw
            voxsig = VoxsigResumePoint.from_json(point)
            if voxsig is not None and ids:
                point = attrs.evolve(voxsig, delivered=[int(m) for m in ids]).to_json()
            out.append(point)
        return out

    def _take(self, tenant: Tenant, token: str, valid_until: float, resume: str | None) -> None:
        owned = _Owned(tenant, token, None, valid_until, seed_point=resume is None and _catches_up(tenant))
        with self._lock:
            self._owned[tenant.key] = owned
            self._counts["acquired"] += 1
            handlers = list(self._handlers)
        try:
            client = self.client_factory(tenant, resume)
            if self.hub is not None:
                self.hub.add(client)  # idempotent for a client the factory already put on this hub
            client.on("*", self._deliver(tenant.key))
            for pattern, handler in handlers:
                client.on(pattern, self.guard(tenant.key, handler))
            if self.setup is not None:
                self.setup(client, tenant)
            owned.client = client
            client.start()
        except Exception as exc:
            log.error("%s: cannot start the client of tenant %s: %s", self.replica_id, tenant.key, redact(exc))
            with self._lock:
                self._last_error = redact(f"tenant {tenant.key}: {type(exc).__name__}: {exc}")
            self._drop(owned, release=True)
            return
        log.info("%s: took tenant %s (resume point %s)", self.replica_id, tenant.key, resume)


def run_replica(
    tenants: Any,
    redis_url: str,
    *,
    stream: str | None = None,
    maxlen: int = 100_000,
    client_factory: Callable[[Tenant, str | None], Client] | None = None,
    setup: Callable[[ReplicaListener, Client, Tenant], Any] | None = None,
    namespace: str = "realtime_sync",
    lease_ttl: float = 10.0,
    vendor: str | None = None,
    duration: float | None = None,
    on_started: Callable[[ReplicaListener], Any] | None = None,
    hub_workers: int | None = None,
) -> ReplicaListener:
    """Run one replica until SIGINT/SIGTERM or ``duration``: what ``realtime-sync listen --redis``,
    ``manage.py realtime_listen --redis`` and ``flask realtime listen --redis`` run.

    ``stream``: hand every event on to this Redis stream (:class:`~realtime_sync.contrib.sinks.RedisStreamSink`).
    ``setup(listener, client, tenant)`` attaches handlers to each new client (wrap them with
    ``listener.guard(tenant.key, handler)``).  ``hub_workers``: run the tenants' clients on a
    :class:`~realtime_sync.Hub` with that many workers (a fixed thread count), closed at the end.
    Returns the (closed) listener, for its stats.
    """
    from .sinks import RedisStreamSink

    sink = RedisStreamSink(redis_url, stream, maxlen=maxlen) if stream else None
    holder: list[ReplicaListener] = []

    def setup_client(client: Client, tenant: Tenant) -> None:
        if setup is not None:
            setup(holder[0], client, tenant)

    hub = None
    if hub_workers:
        hub = Hub(workers=hub_workers, name="replica-hub")
    listener = ReplicaListener(
        tenants,
        redis_url,
        sink=sink,
        client_factory=client_factory,
        setup=setup_client,
        namespace=namespace,
        lease_ttl=lease_ttl,
        vendor=vendor,
        hub=hub,
    )
    holder.append(listener)
    try:
        listener.start()
        if on_started is not None:
            on_started(listener)
        listener.run_forever(duration=duration)
    finally:
        listener.close()
        if hub is not None:
            hub.close()
        if sink is not None:
            sink.close()
    return listener
