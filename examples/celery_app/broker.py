"""The Celery app of the example, shared by the worker (``tasks.py``) and the producer
(``send.py``): a filesystem broker by default, so the example needs no server."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery


def make_celery(name: str) -> Celery:
    """A Celery app on ``CELERY_BROKER_URL``, or on kombu's filesystem transport in
    ``CELERY_FS_DIR`` (default ``/tmp/snowplow-celery-example``)."""
    app = Celery(name)
    url = os.environ.get("CELERY_BROKER_URL")
    if url:
        app.conf.broker_url = url
    else:
        folder = Path(os.environ.get("CELERY_FS_DIR", "/tmp/snowplow-celery-example"))
        for sub in ("queue", "processed"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        app.conf.update(
            broker_url="filesystem://",
            broker_transport_options={
                "data_folder_in": str(folder / "queue"),
                "data_folder_out": str(folder / "queue"),
                "data_folder_processed": str(folder / "processed"),
                "control_folder": str(folder / "control"),  # not in the working directory
                "polling_interval": 0.1,
            },
        )
    app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False,
                    broker_connection_retry_on_startup=True)
    return app
