"""The Django app config of ``snowplow_threaded.contrib.django``."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed


class SnowplowConfig(AppConfig):  # type: ignore[misc]  # untyped base
    """Registers the system checks and the ``setting_changed`` receiver. Builds nothing:
    the tracker is built on first use in each process."""

    name = "snowplow_threaded.contrib.django"
    label = "snowplow_threaded"
    verbose_name = "Snowplow tracking (snowplow_threaded)"

    def ready(self) -> None:
        from . import checks, conf

        checks.register()
        setting_changed.connect(conf.on_setting_changed, dispatch_uid="snowplow_threaded")
