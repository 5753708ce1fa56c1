"""Adapter: children of ``multiprocessing`` and ``billiard`` (Celery's prefork pool).

They leave through ``os._exit`` and skip ``atexit``, but their exit path runs
``multiprocessing.util``'s finalizers: the registry's close is registered there, in the
child's after-fork step for fork children and at registration in spawn/forkserver children.
"""

from __future__ import annotations

import multiprocessing.process
import multiprocessing.util
import os

from .registry import ProcessRegistry


class MultiprocessingAdapter:
    def __init__(self) -> None:
        self._hooked = False
        self._finalizer_pid = 0  # the process whose finalizer is registered

    def on_register(self, registry: ProcessRegistry) -> None:
        if not self._hooked:
            self._hooked = True
            # the key must be weak-referenceable and live as long as the hook: this object
            multiprocessing.util.register_after_fork(self, lambda _: self._in_child(registry))
        if multiprocessing.process.parent_process() is not None:
            self._in_child(registry)

    def after_fork_in_child(self, registry: ProcessRegistry) -> None:
        """Nothing: ``multiprocessing`` runs its own after-fork step (see on_register)."""

    def _in_child(self, registry: ProcessRegistry) -> None:
        """In a multiprocessing/billiard child: close every emitter on its exit path."""
        if self._finalizer_pid == os.getpid():
            return
        self._finalizer_pid = os.getpid()
        multiprocessing.util.Finalize(None, registry.close_all, exitpriority=100)

    def __repr__(self) -> str:
        return f"MultiprocessingAdapter(hooked={self._hooked})"


