"""The ``SNOWPLOW`` settings of the Django app, and the process's tracker built from them.

Settings are parsed once and cached; the tracker is built lazily, on the first call to
:func:`get_tracker` (so under ``gunicorn --preload`` or a uWSGI master each worker builds
its own after the fork, and one built before a fork is re-initialised by the core library).
Both are dropped when ``SNOWPLOW`` changes through Django's ``setting_changed`` signal
(``override_settings`` in tests); the dropped tracker is closed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.functional import LazyObject, empty
from django.utils.module_loading import import_string

from ...tracker import Tracker
from ..config import E_VALUE, ConfigError, IntegrationConfig, Problem, parse_config

logger = logging.getLogger("snowplow_threaded.contrib.django")

SETTING = "SNOWPLOW"
MIDDLEWARE = "snowplow_threaded.contrib.django.middleware.SnowplowMiddleware"
#: Keys only the Django app knows, on top of :data:`snowplow_threaded.contrib.config.KEYS`.
DJANGO_KEYS = ("user_id",)

UserIdFunction = Callable[[Any], "str | None"]


@dataclass(frozen=True, eq=False)
class DjangoConfig:
    """:attr:`integration`: the shared settings; :attr:`user_id`: ``request -> str | None``."""

    integration: IntegrationConfig
    user_id: UserIdFunction


_lock = threading.Lock()
_config: DjangoConfig | None = None
_tracker: Tracker | None = None


def spell(key: str) -> str:
    return f'{SETTING}["{key}"]' if key else f"settings.{SETTING}"


def load(raw: object) -> DjangoConfig:
    """Parse a ``SNOWPLOW`` settings value; :class:`ConfigError` lists every problem."""
    problems: list[Problem] = []
    user_id: UserIdFunction = _user_pk
    shared: object = raw
    if isinstance(raw, Mapping):
        shared = {k: v for k, v in raw.items() if k not in DJANGO_KEYS}
        try:
            user_id = _user_id_function(raw.get("user_id", "pk"))
        except (ImportError, TypeError, ValueError) as exc:
            problems.append(Problem(E_VALUE, spell("user_id"), str(exc)))
    try:
        integration = parse_config(shared if isinstance(shared, Mapping) else None,
                                   default_namespace="django", spell=spell)
    except ConfigError as exc:
        raise ConfigError(exc.problems + problems) from None
    if problems:
        raise ConfigError(problems)
    return DjangoConfig(integration, user_id)


def get_config() -> DjangoConfig:
    """The parsed ``settings.SNOWPLOW`` (cached); :class:`ConfigError` if invalid."""
    global _config
    config = _config
    if config is None:
        config = load(getattr(settings, SETTING, None))
        with _lock:
            if _config is None:
                _config = config
            config = _config
    return config


def get_tracker() -> Tracker:
    """This process's tracker, built from the settings on first use (thread-safe)."""
    global _tracker
    tracker = _tracker
    if tracker is not None:
        return tracker
    config = get_config()
    with _lock:
        if _tracker is None:
            _tracker = config.integration.build_tracker()
        return _tracker


def reset(timeout: float = 2.0) -> None:
    """Forget the cached settings and tracker; close that tracker within *timeout*."""
    global _config, _tracker
    with _lock:
        old, _config, _tracker = _tracker, None, None
    if old is not None and not old.close(timeout):
        logger.warning("the replaced Snowplow tracker did not deliver everything")


def on_setting_changed(*, setting: str, **_: Any) -> None:
    """``setting_changed`` receiver: a new ``SNOWPLOW`` value means a new tracker."""
    if setting == SETTING:
        reset()


def _user_id_function(value: object) -> UserIdFunction:
    if value == "pk":
        return _user_pk
    if value == "username":
        return _user_name
    if not isinstance(value, str) or "." not in value:
        raise ValueError("must be 'pk', 'username' or the dotted path of a function "
                         f"request -> str | None, got {value!r}")
    func = import_string(value)
    if not callable(func):
        raise TypeError(f"{value} is not callable")
    custom: UserIdFunction = func
    return custom


def authenticated_user(request: Any) -> Any:
    """``request.user`` if it is an authenticated user, else None — without a database
    query for a request with no session cookie: a user not loaded yet is only loaded
    when the request carries one (anonymous requests then cost nothing)."""
    user = getattr(request, "user", None)
    if user is None:
        return None
    if isinstance(user, LazyObject) and user._wrapped is empty:
        cookie = getattr(settings, "SESSION_COOKIE_NAME", "sessionid")
        if cookie not in getattr(request, "COOKIES", {}):
            return None
    return user if getattr(user, "is_authenticated", False) else None


def _user_pk(request: Any) -> str | None:
    user = authenticated_user(request)
    return None if user is None or user.pk is None else str(user.pk)


def _user_name(request: Any) -> str | None:
    user = authenticated_user(request)
    return None if user is None else str(user.get_username()) or None
