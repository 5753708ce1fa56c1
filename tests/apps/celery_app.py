"""A Celery app whose module builds the tracker at import (in the worker's main process,
before the prefork pool forks its children). Broker: kombu's filesystem transport in
``CELERY_FS_DIR``, so no server is needed. Endpoint from ``SNOWPLOW_TEST_ENDPOINT``."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

from snowplow_threaded import Emitter, StructuredEvent, Tracker

_dir = Path(os.environ.get("CELERY_FS_DIR", "/tmp/snowplow-celery-broker"))



def make_app(broker_dir: Path) -> Celery:
    """The app, with its filesystem broker in *broker_dir* (tests build a producer too)."""
    for sub in ("queue", "processed"):
        (broker_dir / sub).mkdir(parents=True, exist_ok=True)
    celery_app = Celery("celery_app")
    celery_app.conf.update(
        broker_url="filesystem://",
        broker_transport_options={
            "data_folder_in": str(broker_dir / "queue"),
            "data_folder_out": str(broker_dir / "queue"),
            "data_folder_processed": str(broker_dir / "processed"),
            "control_folder": str(broker_dir / "control"),  # not the working directory
            "polling_interval": 0.1,
        },
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return celery_app


app = make_app(_dir)

tracker = Tracker("celery-app", Emitter(os.environ.get("SNOWPLOW_TEST_ENDPOINT", "http://localhost"),
                                        batch_size=10, flush_interval=0.5,
                                        shutdown_timeout=10))


@app.task(name="track_one")
def track_one(n: int) -> None:
    tracker.track(StructuredEvent("celery", "task", label=str(n), property_=str(os.getpid())))
