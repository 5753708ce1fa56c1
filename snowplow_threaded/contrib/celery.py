"""Celery task instrumentation through Celery's signals (opt-in).

::

    from snowplow_threaded.contrib.celery import instrument

    app = Celery("shop")
    tracker = Snowplow.create_tracker("worker", "https://collector.example.com")
    instrument(app, tracker=tracker, vendor="com.acme")

Every run of a task in a worker then sends self-describing events (schemas shipped in
:mod:`snowplow_threaded.contrib.schemas`, under *vendor*; write them to your Iglu registry
with :func:`~snowplow_threaded.contrib.schemas.write_schemas`):

* ``task_started`` at ``task_prerun``;
* ``task_succeeded`` / ``task_failed`` / ``task_retried`` at ``task_success`` /
  ``task_failure`` / ``task_retry``, with ``runtime_ms`` measured in the worker from
  ``task_prerun`` (``time.perf_counter``) and, for the last two, the exception type.

Each carries ``task_name``, ``task_id``, ``queue`` (the delivery routing key) and
``retries``. A run is one started event and one outcome, so a task retried twice and then
successful sends six. The signals fire in the process that runs the task — a prefork
child, a thread of the threads pool, or the solo worker — where the tracker built at import
works unchanged (it is re-initialised after fork by the core library, and flushed when a
pool child exits, including ``--max-tasks-per-child`` recycling, and at warm shutdown).
Tracking errors are logged to ``snowplow_threaded.contrib.celery`` and never fail a task.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from celery import signals  # type: ignore[import-untyped]

from ..events import SelfDescribing
from ..self_describing_json import SelfDescribingJson
from ..tracker import Tracker
from . import schemas

__all__ = ["EVENTS", "TaskInstrumentation", "instrument"]

logger = logging.getLogger("snowplow_threaded.contrib.celery")

#: The event kinds, and their schema names.
EVENTS: dict[str, str] = {
    "started": schemas.TASK_STARTED,
    "succeeded": schemas.TASK_SUCCEEDED,
    "failed": schemas.TASK_FAILED,
    "retried": schemas.TASK_RETRIED,
}
_START = "_snowplow_threaded_started"
_MAX_TEXT = 255

TrackerSource = Tracker | Callable[[], Tracker]

_active: dict[int, TaskInstrumentation] = {}  # id(app) (0: all apps) -> instrumentation
_active_lock = threading.Lock()


class TaskInstrumentation:
    """The signal receivers of one :func:`instrument` call; :meth:`disconnect` stops them."""

    def __init__(
        self,
        app: Any,
        tracker: TrackerSource,
        vendor: str,
        events: Collection[str],
        ignore: Collection[str],
    ) -> None:
        unknown = set(events) - set(EVENTS)
        if unknown:
            raise ValueError(f"unknown task events {sorted(unknown)}; known: {list(EVENTS)}")
        if not isinstance(tracker, Tracker) and not callable(tracker):
            raise TypeError("tracker must be a Tracker or a function returning one")
        self.app = app
        self.vendor = schemas.check_vendor(vendor)
        self.events = frozenset(events)
        self.ignore = tuple(ignore)
        self._tracker = tracker
        self._uris = {kind: schemas.schema_uri(name, self.vendor) for kind, name in EVENTS.items()}
        self._uid = f"snowplow_threaded.contrib.celery:{id(self)}"
        self._receivers: list[tuple[Any, Callable[..., None]]] = [
            (signals.task_prerun, self._on_prerun),
            (signals.task_success, self._on_success),
            (signals.task_failure, self._on_failure),
            (signals.task_retry, self._on_retry),
        ]

    def connect(self) -> None:
        for signal, receiver in self._receivers:
            signal.connect(receiver, weak=False, dispatch_uid=self._uid)

    def disconnect(self) -> None:
        """Stop sending task events (idempotent)."""
        for signal, receiver in self._receivers:
            signal.disconnect(receiver, dispatch_uid=self._uid)
        with _active_lock:
            key = 0 if self.app is None else id(self.app)
            if _active.get(key) is self:
                del _active[key]

    @property
    def tracker(self) -> Tracker:
        source = self._tracker
        return source if isinstance(source, Tracker) else source()

    def _wanted(self, task: Any) -> bool:
        if task is None or (self.app is not None and getattr(task, "app", None) is not self.app):
            return False
        name = str(getattr(task, "name", ""))
        return not any(fnmatch.fnmatchcase(name, pattern) for pattern in self.ignore)

    def _on_prerun(self, sender: Any = None, task: Any = None, **_: Any) -> None:
        task = task or sender
        if not self._wanted(task):
            return
        request = task.request
        try:
            setattr(request, _START, time.perf_counter())
        except Exception:  # pragma: no cover - a request object that takes no attribute
            logger.debug("cannot time task %s", task.name)
        if "started" in self.events:
            self._send("started", task, request, None, None)

    def _on_success(self, sender: Any = None, **_: Any) -> None:
        if "succeeded" in self.events and self._wanted(sender):
            self._outcome("succeeded", sender, sender.request, None)

    def _on_failure(self, sender: Any = None, exception: BaseException | None = None,
                    **_: Any) -> None:
        if "failed" in self.events and self._wanted(sender):
            self._outcome("failed", sender, sender.request, exception)

    def _on_retry(self, sender: Any = None, request: Any = None, reason: Any = None,
                  **_: Any) -> None:
        if "retried" in self.events and self._wanted(sender):
            cause = getattr(reason, "exc", None) or reason
            self._outcome("retried", sender, request or sender.request, cause)

    def _outcome(self, kind: str, task: Any, request: Any, exc: BaseException | None) -> None:
        start = getattr(request, _START, None)
        if start is None:  # the run started before instrument(): no honest runtime
            logger.debug("task %s[%s]: no start time, %s event skipped",
                         task.name, getattr(request, "id", None), kind)
            return
        runtime_ms = round((time.perf_counter() - start) * 1000.0, 3)
        self._send(kind, task, request, runtime_ms, exc)

    def _send(self, kind: str, task: Any, request: Any, runtime_ms: float | None,
              exc: BaseException | None) -> None:
        try:
            delivery = getattr(request, "delivery_info", None) or {}
            queue = delivery.get("routing_key") or delivery.get("queue")
            data: dict[str, Any] = {
                "task_name": str(task.name)[:_MAX_TEXT],
                "task_id": str(getattr(request, "id", None) or "unknown")[:_MAX_TEXT],
                "queue": None if queue is None else str(queue)[:_MAX_TEXT],
                "retries": int(getattr(request, "retries", 0) or 0),
            }
            if runtime_ms is not None:
                data["runtime_ms"] = runtime_ms
            if kind in ("failed", "retried"):
                data["exception_type"] = exception_type(exc)
            self.tracker.track(SelfDescribing(SelfDescribingJson(self._uris[kind], data)))
        except Exception:
            logger.exception("tracking the %s event of task %s failed", kind,
                             getattr(task, "name", "?"))


def exception_type(exc: object) -> str:
    """The qualified class name of *exc* (``ValueError``, ``myapp.errors.PaymentError``);
    for Celery's wrapper of an unpicklable exception, the wrapped class's name."""
    if exc is None:
        return "celery.exceptions.Retry"
    name = getattr(exc, "exc_cls_name", None)
    module = getattr(exc, "exc_module", None)
    if not isinstance(name, str) or not name:
        cls = type(exc)
        name, module = cls.__qualname__, cls.__module__
    text = name if module in (None, "builtins") else f"{module}.{name}"
    return text[:_MAX_TEXT]


def instrument(
    app: Any = None,
    *,
    tracker: TrackerSource,
    vendor: str = schemas.DEFAULT_VENDOR,
    events: Collection[str] = tuple(EVENTS),
    ignore: Collection[str] = ("celery.*",),
) -> TaskInstrumentation:
    """Send task events for the tasks of Celery *app* (None: of every app) run in this
    process.

    :param tracker: the :class:`Tracker`, or a function returning it (called per event,
        e.g. ``snowplow_threaded.contrib.django.get_tracker``)
    :param vendor: the Iglu vendor of the event schemas (default :data:`DEFAULT_VENDOR`)
    :param events: which of ``"started"``, ``"succeeded"``, ``"failed"``, ``"retried"``
    :param ignore: task-name patterns (``fnmatch``) to leave out; default Celery's own tasks

    Call it where the worker imports your tasks (module level is fine: it only connects
    signal receivers). Calling it again for the same *app* replaces the earlier receivers.
    Raises ``ValueError``/``TypeError`` for a bad vendor, event kind or tracker.
    """
    instrumentation = TaskInstrumentation(app, tracker, vendor, events, ignore)
    key = 0 if app is None else id(app)
    with _active_lock:
        previous = _active.get(key)
        _active[key] = instrumentation
    if previous is not None:
        previous.disconnect()
    instrumentation.connect()
    return instrumentation
