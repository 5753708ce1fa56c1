"""Flask integration: the :class:`SnowplowFlask` extension.

::

    from snowplow_threaded.contrib.flask import SnowplowFlask

    snowplow = SnowplowFlask()          # or SnowplowFlask(app)

    def create_app():
        app = Flask(__name__)
        app.config["SNOWPLOW_ENDPOINT"] = "https://collector.example.com"
        app.config["SNOWPLOW_REQUEST_EVENTS"] = "request"
        snowplow.init_app(app)
        return app

    @snowplow.user_id_loader
    def user_id():
        return session.get("user")

    snowplow.track(StructuredEvent("shop", "add"))   # in a view: with the request subject

Settings (``app.config``; see :mod:`snowplow_threaded.contrib.config`): ``SNOWPLOW_ENDPOINT``
(required unless ``tracker=`` is given), ``SNOWPLOW_NAMESPACE`` (default ``"flask"``),
``SNOWPLOW_APP_ID``, ``SNOWPLOW_METHOD``, ``SNOWPLOW_PLATFORM`` (``"srv"``),
``SNOWPLOW_ENCODE_BASE64``, ``SNOWPLOW_EMITTER`` (a dict of ``EmitterConfiguration``
settings), ``SNOWPLOW_TRUSTED_PROXIES`` (a number of proxy hops, or trusted networks),
``SNOWPLOW_REQUEST_EVENTS`` (``"off"``, ``"page_view"``, ``"request"``),
``SNOWPLOW_IGNORE_PATHS`` (path prefixes without automatic events) and
``SNOWPLOW_SCHEMA_VENDOR``. An unknown ``SNOWPLOW_*`` key is an error (typos fail loudly).

The tracker is built in ``init_app`` (no thread starts until its first event, so building
it before Gunicorn forks, with ``--preload``, is safe) and is
``current_app.extensions["snowplow"]``. The per-request subject (client IP, user agent, user
id) is applied as each event's own subject, so concurrent requests (gthread workers) never
share it. Tracking errors are logged to ``snowplow_threaded.contrib.flask``, never raised
into a request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, current_app, g, has_app_context, has_request_context, request

from ..events import Event
from ..subject import Subject
from ..tracker import Tracker
from .config import IntegrationConfig, parse_config
from .web import page_view_event, path_ignored, request_event, request_subject, with_subject

__all__ = ["EXTENSION_KEY", "SnowplowFlask", "track", "tracker"]

logger = logging.getLogger("snowplow_threaded.contrib.flask")

#: ``app.extensions[EXTENSION_KEY]`` is the app's :class:`Tracker`.
EXTENSION_KEY = "snowplow"
_STATE_KEY = "snowplow_threaded.flask"
_START = "_snowplow_threaded_start"
_PREFIX = "SNOWPLOW_"

UserIdLoader = Callable[[], "str | int | None"]
F = TypeVar("F", bound=UserIdLoader)


@dataclass(frozen=True)
class _AppState:
    extension: SnowplowFlask
    config: IntegrationConfig
    tracker: Tracker


def settings_from(config: Any) -> dict[str, Any]:
    """The ``SNOWPLOW_*`` entries of a Flask config, keyed in lower case without prefix."""
    return {key[len(_PREFIX):].lower(): value for key, value in config.items()
            if isinstance(key, str) and key.startswith(_PREFIX)}


class SnowplowFlask:
    """Snowplow tracking for one or more Flask apps (``init_app`` pattern).

    :param app: initialise this app now (``SnowplowFlask(app)``)
    :param tracker: use this tracker instead of building one from ``app.config`` (then
        ``SNOWPLOW_ENDPOINT`` and the emitter settings are not needed)
    """

    def __init__(self, app: Flask | None = None, *, tracker: Tracker | None = None) -> None:
        self._tracker = tracker
        self._user_id_loader: UserIdLoader | None = None
        self._app = app
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Parse the app's settings (``ConfigError``, a ``ValueError``, listing every bad
        one), build its tracker and install the request hooks."""
        config = parse_config(
            settings_from(app.config),
            default_namespace="flask",
            spell=lambda key: _PREFIX + key.upper() if key else "SNOWPLOW_* settings",
            require_endpoint=self._tracker is None,
        )
        if _STATE_KEY in app.extensions:
            raise RuntimeError(f"Snowplow tracking is already initialised for app {app.name!r}")
        tracker = self._tracker if self._tracker is not None else config.build_tracker()
        app.extensions[EXTENSION_KEY] = tracker
        app.extensions[_STATE_KEY] = _AppState(self, config, tracker)
        if config.request_events != "off":
            # first before_request, so requests cut short by another hook are timed too
            app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
            app.after_request(_after_request)
            app.teardown_request(_teardown_request)

    def user_id_loader(self, func: F) -> F:
        """Register ``func() -> str | int | None``, called in the request context, as the
        source of the user id (``uid``). Exceptions it raises are logged, the event is sent
        without a user id."""
        self._user_id_loader = func
        return func

    def request_subject(self) -> Subject | None:
        """The current request's subject (client IP per the trusted-proxy setting, user
        agent, user id); None outside a request. A new object on every call."""
        if not has_request_context():
            return None
        state = _state()
        return _subject(state)

    def track(self, event: Event) -> str:
        """Track *event* with the app's tracker; in a request, with the request subject
        under the fields the event's own subject set. *event* is not modified. Returns the
        event id."""
        state = _state(self._app)
        subject = _subject(state) if has_request_context() else None
        return state.tracker.track(with_subject(event, subject))

    @property
    def tracker(self) -> Tracker:
        """The current app's tracker (or the app's given to the constructor)."""
        return _state(self._app).tracker


def tracker() -> Tracker:
    """The current app's tracker (``current_app.extensions["snowplow"]``)."""
    return _state().tracker


def track(event: Event) -> str:
    """Track *event* with the current app's tracker and request subject; see
    :meth:`SnowplowFlask.track`."""
    return _state().extension.track(event)


def _state(fallback: Flask | None = None) -> _AppState:
    app = current_app if has_app_context() or fallback is None else fallback
    try:
        state: _AppState = app.extensions[_STATE_KEY]
    except KeyError:
        raise RuntimeError("SnowplowFlask.init_app() was not called for this app") from None
    return state


def _subject(state: _AppState) -> Subject:
    ip = state.config.trusted_proxies.client_ip(
        request.environ.get("REMOTE_ADDR"), request.headers.get("X-Forwarded-For"))
    user_id = None
    loader = state.extension._user_id_loader
    if loader is not None:
        try:
            value = loader()
            user_id = None if value is None else str(value)
        except Exception:
            logger.exception("the Snowplow user_id_loader raised; event sent without user id")
    return request_subject(ip, request.headers.get("User-Agent"), user_id)


def _start_timer() -> None:
    setattr(g, _START, time.perf_counter())


def _after_request(response: Any) -> Any:
    _record(int(response.status_code))
    return response


def _teardown_request(exc: BaseException | None) -> None:
    # after_request did not run: the exception propagated (debug / PROPAGATE_EXCEPTIONS)
    if exc is not None:
        _record(500)


def _record(status: int) -> None:
    """Track the automatic event of this request once (never raises)."""
    start = g.pop(_START, None)  # popped: after_request and teardown record once between them
    if start is None:
        return
    duration_ms = (time.perf_counter() - start) * 1000.0
    try:
        state = _state()
        config = state.config
        if path_ignored(request.path, config.ignore_paths):
            return
        subject = _subject(state)
        event: Event
        if config.request_events == "request":
            rule = request.url_rule
            event = request_event(request.method, request.path, status, duration_ms,
                                  route=None if rule is None else rule.rule, subject=subject,
                                  vendor=config.schema_vendor)
        elif request.method == "GET" and status < 400:
            event = page_view_event(request.url, request.referrer, subject)
        else:
            return
        state.tracker.track(event)
    except Exception:
        logger.exception("tracking the request event failed")
