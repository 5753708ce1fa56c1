"""The Celery app of the example, shared by the worker (``tasks.py``) and the producer
(``send.py``): a filesystem broker by default, so the example needs no server."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery
from kombu.transport import filesystem
from kombu.utils.json import dumps


class _AtomicChannel(filesystem.Channel):  # type: ignore[misc]
    """kombu's filesystem channel, each message written under a temporary name and renamed
    into the queue. kombu writes a message file in place, so a worker polling meanwhile
    (while a task retries, or a producer sends) can take the file still empty, and its
    consumer dies on a JSON error; a rename is atomic, so a message is seen whole or not
    at all. The temporary name starts with a dot: kombu's reader never takes it."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        temp = os.path.join(self.data_folder_out, f".{name}.tmp")
        with open(temp, "wb") as f:
            f.write(dumps(payload).encode())
        os.replace(temp, os.path.join(self.data_folder_out, name))


class AtomicFilesystemTransport(filesystem.Transport):  # type: ignore[misc]
    """kombu's filesystem transport with :class:`_AtomicChannel`."""

    Channel = _AtomicChannel


def make_celery(name: str, folder: Path | None = None) -> Celery:
    """A Celery app on ``CELERY_BROKER_URL``, or on a filesystem broker in *folder* (default
    ``CELERY_FS_DIR``, else ``/tmp/snowplow-celery-example``)."""
    app = Celery(name)
    url = os.environ.get("CELERY_BROKER_URL")
    if url and folder is None:
        app.conf.broker_url = url
    else:
        folder = folder or Path(os.environ.get("CELERY_FS_DIR", "/tmp/snowplow-celery-example"))
        for sub in ("queue", "processed"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        app.conf.update(
            broker_url="filesystem://",
            broker_transport=AtomicFilesystemTransport,
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
