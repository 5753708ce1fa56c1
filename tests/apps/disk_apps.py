"""A Flask app and a Celery app that buffer events in a DiskEventStore, for the real
gunicorn and celery tests (tests/test_disk_servers.py). Each builds its tracker at import,
as real applications do. Endpoint from ``SNOWPLOW_TEST_ENDPOINT``, directory from
``SNOWPLOW_TEST_SPOOL``, the emitter's shutdown_timeout from ``SNOWPLOW_TEST_SHUTDOWN``
(default 1 s), Celery's filesystem broker in ``CELERY_FS_DIR``."""

from __future__ import annotations

import os
import time
from pathlib import Path

from snowplow_threaded import DiskEventStore, Emitter, StructuredEvent, Tracker


def make_tracker(namespace: str) -> Tracker:
    store = DiskEventStore(os.environ["SNOWPLOW_TEST_SPOOL"], scan_interval=0.3)
    emitter = Emitter(os.environ["SNOWPLOW_TEST_ENDPOINT"], event_store=store, batch_size=5,
                      flush_interval=0.2, max_retry_delay_seconds=0.5,
                      shutdown_timeout=float(os.environ.get("SNOWPLOW_TEST_SHUTDOWN", "1.0")))
    return Tracker(namespace, emitter)


if os.environ.get("SNOWPLOW_TEST_APP") == "celery":
    from tests.apps.celery_broker import make_app

    tracker = make_tracker("celery-disk")
    app = make_app(Path(os.environ["CELERY_FS_DIR"]), name="celery_disk")

    @app.task(name="track_one")
    def track_one(n: int) -> None:
        tracker.track(StructuredEvent("celery", "task", label=str(n),
                                      property_=str(os.getpid())))

    @app.task(name="track_then_sleep")
    def track_then_sleep(n: int, seconds: float) -> None:
        """Keeps its child busy (a test kills it meanwhile)."""
        track_one(n)
        time.sleep(seconds)
else:
    from flask import Flask, request

    tracker = make_tracker("flask-disk")
    app = Flask(__name__)

    @app.route("/track")
    def track() -> str:
        n = request.args.get("n", "")
        tracker.track(StructuredEvent("app", "request", label=n, property_=str(os.getpid())))
        return f"ok {os.getpid()}\n"

    @app.route("/ping")
    def ping() -> str:
        return "pong\n"
