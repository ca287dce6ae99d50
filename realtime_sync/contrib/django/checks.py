"""``manage.py check`` validates ``settings.REALTIME_SYNC`` without connecting anywhere, imports
every app's ``realtime.py`` (an import error is reported here, not in the listener at 3 a.m.), and
warns about handlers for event names no configured client sends (``mesage.created``)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register

from ..._redact import redact


@register()
def check_realtime_sync_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.core.exceptions import ImproperlyConfigured

    from . import client_configs

    try:
        configs = client_configs()
        # Builds (never starts) each client: OPTIONS and SUBSCRIBE checked too; the built client
        # knows the events of the topics it subscribes (a Genesys client's call.* and device.*).
        known = {name: config.validate() for name, config in configs.items()}
    except ImproperlyConfigured as exc:
        return [
            Error(
                redact(str(exc)), hint="See the 'Django' section of the realtime_sync README.", id="realtime_sync.E001"
            )
        ]
    return _check_handlers({name: config.vendor for name, config in configs.items()}, known)


def _check_handlers(vendors: dict[str, str], known: dict[str, frozenset[str] | None]) -> list[CheckMessage]:
    from ..._validate import closest_event, unknown_event_message
    from .._common import client_class
    from . import autodiscover, realtime

    try:
        autodiscover()
    except Exception as exc:
        return [
            Error(
                redact(f"importing the apps' realtime modules failed: {type(exc).__name__}: {exc}"),
                hint="Fix the module named in the traceback (python -c 'import <app>.realtime' shows it).",
                id="realtime_sync.E002",
            )
        ]
    messages: list[CheckMessage] = []
    for reg in realtime.registrations:
        targets = [n for n in vendors if reg.client is None or reg.client == n]
        if reg.client is not None and not targets:
            messages.append(
                Warning(
                    f"handler {_name(reg.handler)} is registered for client {reg.client!r}, which REALTIME_SYNC "
                    "does not configure",
                    hint=_hint_for(reg.client, list(vendors), closest_event),
                    obj=reg.handler,
                    id="realtime_sync.W002",
                )
            )
            continue
        problems = []
        for name in targets:
            cls = client_class(vendors[name])
            problem = unknown_event_message(reg.pattern, known[name], f"{cls.__name__} ({name!r})")
            if problem is None:
                break
            problems.append(problem)
        else:
            if problems:
                messages.append(
                    Warning(
                        f"handler {_name(reg.handler)} will never run: " + "; ".join(problems),
                        hint="Check the event name against the README's event table.",
                        obj=reg.handler,
                        id="realtime_sync.W001",
                    )
                )
    return messages


def _name(handler: Any) -> str:
    return f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', repr(handler))}"


def _hint_for(name: str, names: list[str], closest: Any) -> str:
    nearest = closest(name, names)
    return f"Did you mean client={nearest!r}?" if nearest else f"Configured clients: {names}."
