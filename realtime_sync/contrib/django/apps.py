"""The Django app configuration of realtime_sync (``INSTALLED_APPS += ["realtime_sync.contrib.django"]``)."""

from __future__ import annotations

from django.apps import AppConfig


class RealtimeSyncConfig(AppConfig):
    """Registers the settings check and the ``realtime_listen`` management command.

    ``ready()`` deliberately starts no client: it runs in every process that loads Django (each
    web worker, ``runserver``'s autoreloader parent *and* its child, every management command,
    the test runner), so a client started there would connect many times over and be restarted
    or orphaned on the web server's schedule.  Run ``python manage.py realtime_listen`` instead.
    """

    name = "realtime_sync.contrib.django"
    label = "realtime_sync"
    verbose_name = "realtime_sync"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the settings check)
