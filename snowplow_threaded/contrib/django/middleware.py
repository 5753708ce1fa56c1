"""The middleware: automatic request events with the per-request subject.

Put ``"snowplow_threaded.contrib.django.middleware.SnowplowMiddleware"`` first in
``MIDDLEWARE``: there it times the whole stack and sees the final status; ``request.user``
(set further down by ``AuthenticationMiddleware``) is read after the response. With
``SNOWPLOW["request_events"]`` at ``"request"`` every response gets one self-describing
``request`` event (method, path, route, status, duration); at ``"page_view"`` every ``GET``
answered below 400 gets a page view; at ``"off"`` nothing is tracked here. Tracking errors
are logged to ``snowplow_threaded.contrib.django``, never raised into a request.
Synchronous (WSGI) only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ...events import Event
from ...subject import Subject
from ..config import ConfigError
from ..web import page_view_event, path_ignored, request_event, request_subject
from .conf import DjangoConfig, get_config, get_tracker

logger = logging.getLogger("snowplow_threaded.contrib.django")


def subject_for(request: Any, config: DjangoConfig | None = None) -> Subject:
    """A new subject for *request*: client IP per ``trusted_proxies``, user agent, user id
    (a failing ``user_id`` function is logged and gives no user id)."""
    config = config or get_config()
    meta = request.META
    ip = config.integration.trusted_proxies.client_ip(
        meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"))
    try:
        user_id = config.user_id(request)
    except Exception:
        logger.exception("the Snowplow user_id function raised; event sent without user id")
        user_id = None
    return request_subject(ip, meta.get("HTTP_USER_AGENT"), user_id)


class SnowplowMiddleware:
    """Times each request and tracks its automatic event after the response is built.

    Raises ``ImproperlyConfigured`` when the server loads it with bad ``SNOWPLOW`` settings.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        try:
            get_config()
        except ConfigError as exc:
            raise ImproperlyConfigured(str(exc)) from exc

    def __call__(self, request: Any) -> Any:
        start = time.perf_counter()
        response = self.get_response(request)
        self.record(request, int(response.status_code), (time.perf_counter() - start) * 1e3)
        return response

    def record(self, request: Any, status: int, duration_ms: float) -> None:
        """Track the automatic event of *request* (never raises)."""
        try:
            config = get_config()
            integration = config.integration
            mode = integration.request_events
            if mode == "off" or path_ignored(request.path, integration.ignore_paths):
                return
            event: Event
            if mode == "request":
                match = getattr(request, "resolver_match", None)
                route = getattr(match, "route", None) if match is not None else None
                event = request_event(request.method or "GET", request.path, status,
                                      duration_ms, route=route or None,
                                      subject=subject_for(request, config),
                                      vendor=integration.schema_vendor)
            elif request.method == "GET" and status < 400:
                event = page_view_event(request.build_absolute_uri(),
                                        request.META.get("HTTP_REFERER"),
                                        subject_for(request, config))
            else:
                return
            get_tracker().track(event)
        except Exception:
            logger.exception("tracking the request event failed")
