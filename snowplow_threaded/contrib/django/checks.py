"""System checks (``manage.py check``, ``runserver``, ``migrate``) of the Django app.

Errors ``snowplow_threaded.E001``...``E005`` are the settings problems of
:mod:`snowplow_threaded.contrib.config` (missing settings, unknown key, bad endpoint, bad
emitter setting, other bad value). Warning ``snowplow_threaded.W001``: automatic request
events are configured but the middleware is not in ``MIDDLEWARE``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from ..config import ConfigError
from .conf import MIDDLEWARE, SETTING, load

W_NO_MIDDLEWARE = "snowplow_threaded.W001"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every problem of ``settings.SNOWPLOW``, as check messages."""
    try:
        config = load(getattr(settings, SETTING, None))
    except ConfigError as exc:
        return [
            checks.Error(f"{problem.key}: {problem.message}", obj=f"settings.{SETTING}",
                         id=f"snowplow_threaded.{problem.code}")
            for problem in exc.problems
        ]
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    if config.integration.request_events != "off" and MIDDLEWARE not in middleware:
        return [checks.Warning(
            f'{SETTING}["request_events"] is {config.integration.request_events!r} but the '
            "middleware is not installed, so no request event is sent",
            hint=f"add {MIDDLEWARE!r} to MIDDLEWARE",
            obj=f"settings.{SETTING}", id=W_NO_MIDDLEWARE)]
    return []


def register() -> None:
    """Register :func:`check_settings` (idempotent: the registry keeps a set)."""
    checks.register(check_settings)
