"""An example Celery app with task instrumentation (``snowplow_threaded.contrib.celery``).

The tracker is built at import, in the worker's main process, before the prefork pool
forks its children; each child sends its own events and flushes them when it exits
(``--max-tasks-per-child`` recycling, warm shutdown). Run, from the repository root:

    SNOWPLOW_ENDPOINT=http://127.0.0.1:9090 celery --workdir examples/celery_app -A tasks \
        worker --pool prefork --concurrency 2 --loglevel INFO

then ``python examples/celery_app/send.py 20`` to queue 20 tasks. The broker is kombu's
filesystem transport in ``CELERY_FS_DIR`` (default ``/tmp/snowplow-celery-example``), so
nothing else needs to run; set ``CELERY_BROKER_URL`` to use a real broker instead.
``SNOWPLOW_SCHEMA_VENDOR`` sets the Iglu vendor of the task events.
"""

from __future__ import annotations

import os
import time
from typing import Any

from broker import make_celery

from snowplow_threaded import EmitterConfiguration, Snowplow
from snowplow_threaded.contrib.celery import instrument
from snowplow_threaded.contrib.schemas import DEFAULT_VENDOR

app = make_celery("tasks")

tracker = Snowplow.create_tracker(
    namespace="celery-example",
    endpoint=os.environ.get("SNOWPLOW_ENDPOINT", "http://127.0.0.1:9090"),
    app_id="celery-example",
    emitter_config=EmitterConfiguration(
        batch_size=10, shutdown_timeout=10,
        flush_interval=float(os.environ.get("SNOWPLOW_FLUSH_INTERVAL", "0.5"))),
)
instrument(app, tracker=tracker, vendor=os.environ.get("SNOWPLOW_SCHEMA_VENDOR", DEFAULT_VENDOR))


class PaymentDeclined(Exception):
    """The failure the ``charge`` task raises."""


@app.task(name="shop.add")
def add(x: int, y: int, sleep_ms: int = 0) -> int:
    """Succeeds (after *sleep_ms*)."""
    time.sleep(sleep_ms / 1000)
    return x + y


@app.task(name="shop.charge")
def charge(amount: int) -> None:
    """Fails: one ``task_failed`` event with ``exception_type`` ``tasks.PaymentDeclined``."""
    raise PaymentDeclined(f"declined: {amount}")


@app.task(name="shop.flaky", bind=True, max_retries=3)
def flaky(self: Any, failures: int) -> str:
    """Retries itself *failures* times (``task_retried`` events), then succeeds."""
    if self.request.retries < failures:
        raise self.retry(exc=ConnectionError("upstream down"), countdown=0)
    return "ok"
