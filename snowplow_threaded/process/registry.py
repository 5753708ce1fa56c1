"""The process registry: every live dispatcher of this process, and the fork and exit hooks
that serve them.

* Fork: each dispatcher re-initialises itself on its first use in a forked child (its one
  fork check, ``Dispatcher.ensure_own_process``), which covers forks that bypass Python's
  hooks too and costs nothing for emitters a child never uses. The ``os.register_at_fork``
  hook (installed once) only tells the adapters; uWSGI's post-fork hook re-initialises
  every dispatcher at once (:meth:`ProcessRegistry.reinit_all`).
* Exit: one ``atexit`` handler closes every live dispatcher within one shared deadline (the
  largest ``shutdown_timeout`` among them); it starts no thread (a dispatcher whose workers
  are gone drains on the exiting thread). Processes that leave without ``atexit`` are the
  adapters' business (:mod:`.mp_children`, :mod:`.celery`, :mod:`.uwsgi`).

Dispatchers are held weakly: a garbage-collected emitter costs nothing at fork or exit.
Thread-safe: registration and re-initialisation take locks made anew in each process
(:class:`ProcessLock`), so a forked child never waits for a lock its parent's threads held.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

logger = logging.getLogger("snowplow_threaded.process")

Lock = AbstractContextManager[Any]


class ProcessLock:
    """A lock that no forked child inherits: :meth:`get` makes a new one on its first call
    in each process (one ``os.getpid()``; for rare paths only)."""

    def __init__(self, make: Callable[[], Lock]) -> None:
        self._make = make
        self._owner: tuple[int, Lock] = (os.getpid(), make())

    def get(self) -> Lock:
        owner = self._owner
        if owner[0] != os.getpid():
            owner = self._owner = (os.getpid(), self._make())
        return owner[1]


class Managed(Protocol):
    """What the registry needs of a dispatcher."""

    shutdown_timeout: float

    def ensure_own_process(self, pid: int = 0) -> None: ...

    def begin_close(self, deadline: float) -> None: ...

    def finish_close(self, deadline: float) -> bool: ...


class Adapter(Protocol):
    """One kind of server or process pool: wires its own hooks to the registry's."""

    def on_register(self, registry: ProcessRegistry) -> None:
        """A dispatcher was registered in this process (wire hooks once; idempotent)."""

    def after_fork_in_child(self, registry: ProcessRegistry) -> None:
        """In a child forked through Python's hooks (no lock may be taken)."""


class ProcessRegistry:
    """The live dispatchers of this process and its fork and exit hooks (see the module)."""

    def __init__(self, adapters: Sequence[Adapter] = ()) -> None:
        self.adapters = tuple(adapters)
        self._live: weakref.WeakSet[Managed] = weakref.WeakSet()
        self._lock = ProcessLock(threading.Lock)
        #: serialises dispatchers' re-initialisation in a child: two of its threads must
        #: not both reset the same dispatcher (the second would drop what the first admitted)
        self.reinit_lock = ProcessLock(threading.RLock)
        self._installed = False

    def register(self, obj: Managed) -> None:
        """Track *obj* for fork and exit handling (installs the hooks once)."""
        with self._lock.get():
            self._live.add(obj)
            install = not self._installed
            self._installed = True
        if install:
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=self._after_fork_in_child)
            atexit.register(self.close_all)
        for adapter in self.adapters:
            adapter.on_register(self)

    def unregister(self, obj: Managed) -> None:
        with self._lock.get():
            self._live.discard(obj)

    def live(self) -> list[Managed]:
        return list(self._live)

    def _after_fork_in_child(self) -> None:
        """``os.register_at_fork`` hook: dispatchers re-initialise on first use, so only the
        adapters hear of it here."""
        for adapter in self.adapters:
            adapter.after_fork_in_child(self)

    def reinit_all(self) -> None:
        """Re-initialise every live dispatcher now (in a forked child)."""
        self._after_fork_in_child()
        for obj in self.live():
            try:
                obj.ensure_own_process()
            except Exception:  # pragma: no cover - must never break the user's fork
                logger.exception("re-initialising an emitter after fork failed")

    def close_all(self, timeout: float | None = None) -> bool:
        """Close every live dispatcher within one deadline (by default the largest
        ``shutdown_timeout``); True if nothing was lost. The exit hook."""
        objs = self.live()
        if not objs:
            return True
        if timeout is None:
            timeout = max(obj.shutdown_timeout for obj in objs)
        deadline = time.monotonic() + timeout
        for obj in objs:
            obj.begin_close(deadline)
        ok = True
        for obj in objs:
            try:
                ok = obj.finish_close(deadline) and ok
            except Exception:  # pragma: no cover - keep closing the others
                logger.exception("closing an emitter failed")
                ok = False
        return ok
