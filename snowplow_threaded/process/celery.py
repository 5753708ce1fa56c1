"""Adapter: Celery's prefork children, which call ``os._exit`` straight after the
``worker_process_shutdown`` signal: when Celery is loaded, the registry's close is
connected to that signal (this never imports Celery itself)."""

from __future__ import annotations

import sys
from typing import Any

from .registry import ProcessRegistry


class CeleryAdapter:
    def __init__(self) -> None:
        self._wired = False

    def on_register(self, registry: ProcessRegistry) -> None:
        self._wire(registry)

    def after_fork_in_child(self, registry: ProcessRegistry) -> None:
        """Celery may have been imported since the last registration (a pool child)."""
        self._wire(registry)

    def _wire(self, registry: ProcessRegistry) -> None:
        if self._wired or "celery" not in sys.modules:
            return
        try:
            from celery import signals  # type: ignore[import-untyped]
        except Exception:  # pragma: no cover - a broken Celery install
            return

        def on_child_exit(**_: Any) -> None:
            registry.close_all()

        signals.worker_process_shutdown.connect(on_child_exit, weak=False)
        self._wired = True
