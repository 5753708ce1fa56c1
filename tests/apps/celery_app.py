"""A Celery app whose module builds the tracker at import (in the worker's main process,
before the prefork pool forks its children). Broker: kombu's filesystem transport in
``CELERY_FS_DIR``, so no server is needed. Endpoint from ``SNOWPLOW_TEST_ENDPOINT``."""

from __future__ import annotations

import os
from pathlib import Path

from snowplow_threaded import Emitter, StructuredEvent, Tracker
from tests.apps.celery_broker import make_app

_dir = Path(os.environ.get("CELERY_FS_DIR", "/tmp/snowplow-celery-broker"))

app = make_app(_dir)

tracker = Tracker("celery-app", Emitter(os.environ.get("SNOWPLOW_TEST_ENDPOINT", "http://localhost"),
                                        batch_size=10, flush_interval=0.5,
                                        shutdown_timeout=10))


@app.task(name="track_one")
def track_one(n: int) -> None:
    tracker.track(StructuredEvent("celery", "task", label=str(n), property_=str(os.getpid())))
