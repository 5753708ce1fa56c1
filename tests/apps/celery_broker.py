"""A Celery app on a filesystem broker (no broker server), for the test apps and the tests'
producers: the example's (``examples/celery_app/broker.py``, whose transport writes each
message atomically), loaded from its file; importing this builds nothing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from celery import Celery

_NAME = "snowplow_threaded_example_celery_broker"
_FILE = Path(__file__).resolve().parents[2] / "examples" / "celery_app" / "broker.py"


def _example() -> ModuleType:
    module = sys.modules.get(_NAME)
    if module is None:
        spec = importlib.util.spec_from_file_location(_NAME, _FILE)
        assert spec is not None and spec.loader is not None, _FILE
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module  # kombu resolves the transport class by its module
        spec.loader.exec_module(module)
    return module


def make_app(broker_dir: Path, name: str = "celery_app") -> Celery:
    """The app *name*, with its filesystem broker in *broker_dir* (tests build a producer
    too)."""
    app: Celery = _example().make_celery(name, broker_dir)
    return app
