"""The Celery application of the Celery hand-off tests (a real worker imports it).

The broker is the test's redis-server (``RT_CELERY_BROKER``).  The task rebuilds each event with
``Event.from_dict`` and records what it got in the Redis list ``received``.
"""

from __future__ import annotations

import json
import os

import redis
from celery import Celery

from realtime_sync import Event

BROKER = os.environ.get("RT_CELERY_BROKER", "redis://127.0.0.1:6379/0")

app = Celery("rt_test", broker=BROKER)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_acks_late=True,
)


@app.task(name="rt_test.record_event")
def record_event(event_dict: dict, tenant: str | None = None) -> None:
    event = Event.from_dict(event_dict)
    record = {
        "name": event.name,
        "key": event_dict["key"],
        "model": type(event.data).__name__,
        "event_id": getattr(event.data, "event_id", None),
        "tenant": tenant,
    }
    redis.Redis.from_url(app.conf.broker_url).rpush("received", json.dumps(record))
