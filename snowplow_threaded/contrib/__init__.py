"""Framework integrations of snowplow_threaded: Flask, Django and Celery.

Each integration lives in its own module and imports its framework only there, so
``import snowplow_threaded`` never needs Flask, Django or Celery:

* :mod:`snowplow_threaded.contrib.flask` — the ``SnowplowFlask`` extension (``init_app``).
* :mod:`snowplow_threaded.contrib.django` — a Django app with a middleware and system checks.
* :mod:`snowplow_threaded.contrib.celery` — task events from Celery signals (``instrument``).

Shared pieces: :mod:`~snowplow_threaded.contrib.config` (settings parsing),
:mod:`~snowplow_threaded.contrib.web` (proxy-aware client IP, per-request subject, request
events) and :mod:`~snowplow_threaded.contrib.schemas` (the shipped Iglu schemas). Nothing
here starts a thread at import.
"""
