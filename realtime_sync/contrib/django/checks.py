"""``manage.py check`` validates ``settings.REALTIME_SYNC`` without connecting anywhere."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

from ..._redact import redact


@register()
def check_realtime_sync_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.core.exceptions import ImproperlyConfigured

    from . import client_configs

    try:
        for config in client_configs().values():
            config.validate()  # builds (never starts) each client: OPTIONS and SUBSCRIBE checked too
    except ImproperlyConfigured as exc:
        return [Error(redact(str(exc)), hint="See the 'Django' section of the realtime_sync README.", id="realtime_sync.E001")]
    return []
