"""Integrations: Django (:mod:`realtime_sync.contrib.django`), Flask (:mod:`realtime_sync.contrib.flask`);
beyond one process: listener replicas sharing connections through Redis
(:mod:`realtime_sync.contrib.redis_replicas`) and sinks to Redis Streams and Celery
(:mod:`realtime_sync.contrib.sinks`).

Both follow the same deployment rule: **the client runs in a process of its own**
(``python manage.py realtime_listen``, ``flask realtime listen``), next to the web workers, never
inside them.  Web workers are started, forked, reloaded and killed on the web server's schedule;
a websocket client inside them would connect once per worker, stop on every reload, and die
with its threads when a ``--preload`` master forks.

The framework-neutral pieces (building a client from configuration, a handler registry, a
per-process client, the listening loop) live in :mod:`realtime_sync.contrib._common`.
"""

from ._common import VENDORS, HandlerRegistry, ProcessLocalClient, RunResult, make_client, run_clients

__all__ = ["VENDORS", "HandlerRegistry", "ProcessLocalClient", "RunResult", "make_client", "run_clients"]
