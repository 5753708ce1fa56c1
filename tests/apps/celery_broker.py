"""A Celery app on kombu's filesystem transport (no broker server), for the test apps and
the tests' producers; importing this builds nothing."""

from __future__ import annotations

from pathlib import Path

from celery import Celery


def make_app(broker_dir: Path, name: str = "celery_app") -> Celery:
    """The app *name*, with its filesystem broker in *broker_dir* (tests build a producer
    too)."""
    for sub in ("queue", "processed"):
        (broker_dir / sub).mkdir(parents=True, exist_ok=True)
    celery_app = Celery(name)
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
