"""Settings of the example shop. Snowplow is configured in ``SNOWPLOW`` (bottom), from the
environment: ``SNOWPLOW_ENDPOINT``, ``SNOWPLOW_REQUEST_EVENTS`` (``request`` by default),
``SNOWPLOW_TRUSTED_PROXIES`` (proxy hops, 0 by default), ``SNOWPLOW_SCHEMA_VENDOR``.
The database is SQLite (``DJANGO_DB``, default ``db.sqlite3`` beside ``manage.py``);
sessions are signed cookies, so only logging in and loading a user touch the database.
"""

from __future__ import annotations

import os
from pathlib import Path

from snowplow_threaded.contrib.schemas import DEFAULT_VENDOR

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret-0123456789abcdef")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "snowplow_threaded.contrib.django",
]

MIDDLEWARE = [
    # first: it times the whole stack and sees the final status; request.user, set by
    # AuthenticationMiddleware below, is read after the response
    "snowplow_threaded.contrib.django.middleware.SnowplowMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB", str(BASE_DIR / "db.sqlite3")),
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"snowplow_threaded": {"handlers": ["console"], "level": "WARNING"}},
}

SNOWPLOW = {
    "endpoint": os.environ.get("SNOWPLOW_ENDPOINT", "http://127.0.0.1:9090"),
    "namespace": "django-example",
    "app_id": "django-example",
    "request_events": os.environ.get("SNOWPLOW_REQUEST_EVENTS", "request"),
    "trusted_proxies": int(os.environ.get("SNOWPLOW_TRUSTED_PROXIES", "0")),
    "schema_vendor": os.environ.get("SNOWPLOW_SCHEMA_VENDOR", DEFAULT_VENDOR),
    "emitter": {"batch_size": 10, "shutdown_timeout": 10,
                "flush_interval": float(os.environ.get("SNOWPLOW_FLUSH_INTERVAL", "0.5"))},
    "ignore_paths": ["/health/"],
    "user_id": "pk",
}
