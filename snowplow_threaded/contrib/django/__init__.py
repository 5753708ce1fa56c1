"""Django integration: an app with a middleware, system checks and a per-process tracker.

::

    INSTALLED_APPS += ["snowplow_threaded.contrib.django"]
    MIDDLEWARE += ["snowplow_threaded.contrib.django.middleware.SnowplowMiddleware"]
    SNOWPLOW = {
        "endpoint": "https://collector.example.com",
        "app_id": "shop",
        "request_events": "request",        # "off" (default), "page_view" or "request"
        "trusted_proxies": 1,               # proxy hops in front of Django, or networks
        "emitter": {"batch_size": 50},      # any EmitterConfiguration setting
    }

    from snowplow_threaded.contrib.django import track
    track(StructuredEvent("shop", "add"), request)   # in a view: with the request subject

Keys: those of :mod:`snowplow_threaded.contrib.config` (``namespace`` defaults to
``"django"``) plus ``user_id``: ``"pk"`` (default), ``"username"`` or the dotted path of a
function ``request -> str | None``. ``manage.py check`` reports bad settings as
``snowplow_threaded.E001``...``E005`` (see :mod:`.checks`); the middleware refuses to load
with them (``ImproperlyConfigured``), so a server never starts half-configured.
"""

from __future__ import annotations

from typing import Any

from ...events import Event
from ...subject import Subject
from ...tracker import Tracker

__all__ = ["get_tracker", "request_subject", "track"]


def get_tracker() -> Tracker:
    """This process's tracker, built from ``settings.SNOWPLOW`` on first use."""
    from .conf import get_tracker as build

    return build()


def request_subject(request: Any) -> Subject:
    """The subject of *request*: client IP (per ``trusted_proxies``), user agent, user id of
    an authenticated user. A new object on every call."""
    from .middleware import subject_for

    return subject_for(request)


def track(event: Event, request: Any = None) -> str:
    """Track *event* with this process's tracker; with *request*, under the request subject
    (the event's own subject fields win). *event* is not modified. Returns the event id."""
    from ..web import with_subject

    subject = None if request is None else request_subject(request)
    return get_tracker().track(with_subject(event, subject))
