"""Snowplow: a process-wide registry of trackers by namespace."""

from __future__ import annotations

import threading
import time
from typing import Any

from .contracts import non_empty_string
from .emitter_configuration import EmitterConfiguration
from .emitters import Emitter
from .process import REGISTRY
from .subject import Subject
from .tracker import Tracker
from .tracker_configuration import TrackerConfiguration
from .typing import Method


class DuplicateNamespaceError(ValueError, TypeError):
    """A tracker with this namespace is registered already. (A ``TypeError`` too, which is
    what the reference raises, so existing ``except TypeError`` code still works.)"""


def _sort_by_type(values: tuple[Any, ...]) -> dict[str, Any]:
    """Assign create_tracker's optional arguments by type, whatever their position.

    The reference's order is (app_id, subject, tracker_config, emitter_config); the
    documented order is (emitter_config, app_id, subject, tracker_config). Their types
    differ, so both positional forms mean the same thing.
    """
    slots: dict[str, Any] = {}
    kinds = (("app_id", str), ("subject", Subject), ("tracker_config", TrackerConfiguration),
             ("emitter_config", EmitterConfiguration))
    for value in values:
        if value is None:
            continue
        for name, kind in kinds:
            if isinstance(value, kind):
                if name in slots:
                    raise TypeError(f"create_tracker got two values for {name}")
                slots[name] = value
                break
        else:
            raise TypeError(f"create_tracker: unexpected argument {value!r}")
    return slots


class Snowplow:
    """Create, find and remove trackers by namespace. All methods are thread-safe
    (``_lock`` guards ``_trackers``)."""

    _trackers: dict[str, Tracker] = {}
    _lock = threading.Lock()

    @staticmethod
    def create_tracker(
        namespace: str,
        endpoint: str,
        method: Method = "post",
        emitter_config: EmitterConfiguration | None = None,
        app_id: str | None = None,
        subject: Subject | None = None,
        tracker_config: TrackerConfiguration | None = None,
    ) -> Tracker:
        """Build an :class:`Emitter` from *emitter_config* (every field is honoured) and a
        :class:`Tracker` from *tracker_config*, and register the tracker.

        Raises :class:`DuplicateNamespaceError` if *namespace* is taken (before anything
        is built), ``ValueError``/``TypeError`` for a bad endpoint or setting.
        """
        if endpoint is None:
            raise TypeError("endpoint (the collector URL) must be provided")
        non_empty_string(namespace, "namespace")
        slots = _sort_by_type((emitter_config, app_id, subject, tracker_config))
        emitter_cfg = slots.get("emitter_config") or EmitterConfiguration()
        tracker_cfg = slots.get("tracker_config") or TrackerConfiguration()
        with Snowplow._lock:
            if namespace in Snowplow._trackers:
                raise DuplicateNamespaceError(f"a tracker with namespace {namespace!r} exists")
        emitter = Emitter(endpoint, method=method, **emitter_cfg.as_kwargs())
        try:
            tracker = Tracker(namespace, emitter, subject=slots.get("subject"),
                              app_id=slots.get("app_id"),
                              encode_base64=tracker_cfg.encode_base64,
                              json_encoder=tracker_cfg.json_encoder)
            return Snowplow.add_tracker(tracker)
        except BaseException:
            # e.g. the namespace was taken by another thread meanwhile: keep nothing
            emitter.close(0.0)
            raise

    @classmethod
    def add_tracker(cls, tracker: Tracker) -> Tracker:
        if not isinstance(tracker, Tracker):
            raise TypeError(f"add_tracker takes a Tracker, got {type(tracker).__name__}")
        namespace = tracker.get_namespace()
        with cls._lock:
            if namespace in cls._trackers:
                raise DuplicateNamespaceError(f"a tracker with namespace {namespace!r} exists")
            cls._trackers[namespace] = tracker
        return tracker

    @classmethod
    def remove_tracker(cls, tracker: Tracker) -> None:
        cls.remove_tracker_by_namespace(tracker.get_namespace())

    @classmethod
    def remove_tracker_by_namespace(cls, namespace: str) -> None:
        """Forget the tracker (its emitters keep running and still flush at exit)."""
        with cls._lock:
            cls._trackers.pop(namespace, None)

    @classmethod
    def reset(cls) -> None:
        """Forget every tracker (emitters are not closed; see :meth:`shutdown`)."""
        with cls._lock:
            cls._trackers = {}

    @classmethod
    def get_tracker(cls, namespace: str) -> Tracker | None:
        with cls._lock:
            return cls._trackers.get(namespace)

    @classmethod
    def shutdown(cls, timeout: float | None = None) -> bool:
        """Close every registered tracker's emitters within one *timeout* (default: the
        largest ``shutdown_timeout``); True if nothing was lost. Registry is kept."""
        with cls._lock:
            trackers = list(cls._trackers.values())
        emitters = [e for t in trackers for e in t.emitters if isinstance(e, Emitter)]
        if not emitters:
            return True
        if timeout is None:
            timeout = max(e.shutdown_timeout for e in emitters)
        deadline = time.monotonic() + timeout
        ok = True
        for emitter in emitters:
            ok = emitter.close(max(0.0, deadline - time.monotonic())) and ok
        return ok

    @staticmethod
    def shutdown_all(timeout: float | None = None) -> bool:
        """Close every live emitter of the process, registered or not."""
        return REGISTRY.close_all(timeout)
