"""Adapter: uWSGI (no-op unless the ``uwsgi`` module is loaded, i.e. inside uWSGI).

* Under uWSGI, the registry's hooks are chained in front of any callables already there
  (once): ``uwsgi.post_fork_hook`` runs in each worker/mule right after uWSGI forked it,
  even without ``--py-call-uwsgi-fork-hooks``, and re-initialises every dispatcher at once,
  so a worker that won the master's buffer (:mod:`.handover`) sends it without waiting for
  its first event; ``uwsgi.atexit`` runs at a worker's exit where Python's ``atexit`` may
  not.
* Without ``--enable-threads`` uWSGI does not support Python threads: warned once.
* :meth:`UwsgiAdapter.may_start_threads` is False in a master without fork hooks.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

from .registry import ProcessRegistry

logger = logging.getLogger("snowplow_threaded.process")

NO_THREADS = (
    "snowplow_threaded: uWSGI runs without --enable-threads (or --threads): uWSGI does not "
    "support Python threads then, and the emitter sends from a thread, so delivery is not "
    "guaranteed. Start uWSGI with --enable-threads."
)


class UwsgiAdapter:
    def __init__(self) -> None:
        self._wired = False
        self._warned = False

    def on_register(self, registry: ProcessRegistry) -> None:
        uwsgi: Any = sys.modules.get("uwsgi")
        if uwsgi is None:
            return
        self._check_threads(uwsgi)
        if not self._wired:
            self._wired = True
            self._chain(uwsgi, registry)

    def after_fork_in_child(self, registry: ProcessRegistry) -> None:
        """Nothing: uWSGI's own post-fork hook is chained (see on_register)."""

    @staticmethod
    def _chain(uwsgi: Any, registry: ProcessRegistry) -> None:
        previous_exit = getattr(uwsgi, "atexit", None)
        previous_fork = getattr(uwsgi, "post_fork_hook", None)

        def chained_exit() -> None:
            registry.close_all()
            if previous_exit is not None:
                previous_exit()

        def chained_fork() -> None:
            registry.reinit_all()
            if previous_fork is not None:
                previous_fork()

        uwsgi.atexit = chained_exit
        uwsgi.post_fork_hook = chained_fork

    def _check_threads(self, uwsgi: Any) -> None:
        """Warn once when running under uWSGI with Python threads disabled."""
        if self._warned:
            return
        opt = getattr(uwsgi, "opt", {})
        threads = opt.get("threads", b"0")
        try:
            many = int(threads.decode() if isinstance(threads, bytes) else threads) > 1
        except ValueError:
            many = False
        if opt.get("enable-threads") or many:
            return
        self._warned = True
        logger.warning(NO_THREADS)
        warnings.warn(NO_THREADS, RuntimeWarning, stacklevel=5)

    @staticmethod
    def may_start_threads() -> bool:
        """False in a uWSGI master process (not a worker, mule or spooler: e.g. while it
        imports the app before forking the workers) unless ``--py-call-uwsgi-fork-hooks``
        is on. uWSGI then forks without Python's fork hooks, so a thread holding the GIL at
        that moment leaves the worker waiting forever (seen in tests). Events tracked there
        stay buffered and are handed to exactly one forked child (:mod:`.handover`)."""
        uwsgi: Any = sys.modules.get("uwsgi")
        if uwsgi is None or getattr(uwsgi, "opt", {}).get("py-call-uwsgi-fork-hooks"):
            return True
        try:
            if uwsgi.worker_id() != 0 or getattr(uwsgi, "mule_id", lambda: 0)() != 0:
                return True
            return bool(getattr(uwsgi, "i_am_the_spooler", lambda: False)())
        except Exception:  # pragma: no cover - an uwsgi module without worker_id
            return True
