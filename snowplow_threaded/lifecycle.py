"""Process lifecycle: fork and exit hooks for every live emitter.

* Fork: every dispatcher entry point (``admit``, ``flush``, ``close``, ``stats``) checks
  the pid and re-initialises the dispatcher on its first use in a forked child (fresh
  locks and sessions, inherited buffer dropped: the parent sends those events), without
  acquiring anything the parent's threads may hold. That covers forks that bypass
  Python's hooks too, and costs nothing for emitters a child never uses. The
  ``os.register_at_fork`` hook (installed once) only renews this module's lock; uWSGI's
  post-fork hook re-initialises eagerly (see the hand-over below).
* Exit: one ``atexit`` handler closes every live emitter within one shared deadline (the
  largest ``shutdown_timeout`` among them); it starts no thread (a dispatcher whose
  workers are gone drains on the exiting thread).
* Children of ``multiprocessing`` and ``billiard`` (Celery's prefork pool) leave through
  ``os._exit`` and skip ``atexit``; their exit path runs ``multiprocessing.util``'s
  finalizers, so the same close is registered there: in the child's after-fork step for
  fork children, and at registration in spawn/forkserver children. Celery's prefork
  children call ``os._exit`` straight after the ``worker_process_shutdown`` signal, so
  when Celery is loaded the same close is connected to that signal.

The registry holds dispatchers weakly: a garbage-collected emitter costs nothing at fork
or exit. ``_lock`` guards registration; the child replaces it without acquiring it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing.process
import multiprocessing.util
import os
import sys
import threading
import time
import warnings
import weakref
from typing import Any, Protocol

logger = logging.getLogger("snowplow_threaded.lifecycle")


class Managed(Protocol):
    shutdown_timeout: float

    def reinit_after_fork(self) -> None: ...

    def begin_close(self, deadline: float) -> None: ...

    def finish_close(self, deadline: float) -> bool: ...


_live: weakref.WeakSet[Managed] = weakref.WeakSet()
_lock = threading.Lock()
_installed = False
_mp_finalizer_pid = 0  # the pid whose multiprocessing finalizer is registered


class _Anchor:
    """A weak-referenceable key for ``multiprocessing.util.register_after_fork``."""


_anchor = _Anchor()


def register(obj: Managed) -> None:
    """Track *obj* for fork and exit handling (installs the hooks once)."""
    global _installed
    with _lock:
        _live.add(obj)
        if not _installed:
            _installed = True
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_after_fork_in_child)
            atexit.register(_at_exit)
            multiprocessing.util.register_after_fork(_anchor, _in_mp_child)
    if multiprocessing.process.parent_process() is not None:
        _in_mp_child(None)
    _wire_celery()
    _check_uwsgi_threads()
    _wire_uwsgi()


def _wire_uwsgi() -> None:
    """Under uWSGI, chain our hooks in front of any callables already there (once):

    * ``uwsgi.post_fork_hook`` runs in each worker/mule right after uWSGI forked it,
      even without ``--py-call-uwsgi-fork-hooks``: re-initialise there at once, so a child
      that won the master's buffer (:func:`claim_handover`) sends it without waiting for
      its first event.
    * ``uwsgi.atexit`` runs at a worker's exit where Python's ``atexit`` may not.
    """
    global _uwsgi_wired
    uwsgi: Any = sys.modules.get("uwsgi")
    if uwsgi is None or _uwsgi_wired:
        return
    _uwsgi_wired = True
    previous_exit = getattr(uwsgi, "atexit", None)
    previous_fork = getattr(uwsgi, "post_fork_hook", None)

    def chained_exit() -> None:
        _at_exit()
        if previous_exit is not None:
            previous_exit()

    def chained_fork() -> None:
        _reinit_all_in_child()
        if previous_fork is not None:
            previous_fork()

    uwsgi.atexit = chained_exit
    uwsgi.post_fork_hook = chained_fork


_uwsgi_wired = False


_uwsgi_warned = False
UWSGI_NO_THREADS = (
    "snowplow_threaded: uWSGI runs without --enable-threads (or --threads): uWSGI does not "
    "support Python threads then, and the emitter sends from a thread, so delivery is not "
    "guaranteed. Start uWSGI with --enable-threads."
)


def _check_uwsgi_threads() -> None:
    """Warn once when running under uWSGI with Python threads disabled."""
    global _uwsgi_warned
    uwsgi = sys.modules.get("uwsgi")
    if _uwsgi_warned or uwsgi is None:
        return
    opt = getattr(uwsgi, "opt", {})
    threads = opt.get("threads", b"0")
    try:
        many = int(threads.decode() if isinstance(threads, bytes) else threads) > 1
    except ValueError:
        many = False
    if opt.get("enable-threads") or many:
        return
    _uwsgi_warned = True
    logger.warning(UWSGI_NO_THREADS)
    warnings.warn(UWSGI_NO_THREADS, RuntimeWarning, stacklevel=3)


_celery_wired = False


def _wire_celery() -> None:
    """Close every emitter in a Celery pool child before it ``os._exit``s (no-op unless
    Celery is already imported: this never imports it)."""
    global _celery_wired
    if _celery_wired or "celery" not in sys.modules:
        return
    try:
        from celery import signals  # type: ignore[import-untyped]
    except Exception:  # pragma: no cover - a broken Celery install
        return
    signals.worker_process_shutdown.connect(_on_celery_child_exit, weak=False)
    _celery_wired = True


def _on_celery_child_exit(**_: Any) -> None:
    _at_exit()


def _in_mp_child(_: Any) -> None:
    """In a multiprocessing/billiard child: close every emitter on its exit path."""
    global _mp_finalizer_pid
    if _mp_finalizer_pid == os.getpid():
        return
    _mp_finalizer_pid = os.getpid()
    multiprocessing.util.Finalize(None, _at_exit, exitpriority=100)


def unregister(obj: Managed) -> None:
    with _lock:
        _live.discard(obj)


def live() -> list[Managed]:
    return list(_live)


def _after_fork_in_child() -> None:
    """``os.register_at_fork`` hook: only this module's own lock is replaced here. Each
    emitter re-initialises on its first use in the child (every entry point checks the
    pid), so a fork costs nothing for emitters the child never uses (no copy-on-write
    faults for them) and the same path serves forks that bypass Python's hooks."""
    global _lock
    _lock = threading.Lock()
    _reinit_lock()
    _wire_celery()


_reinit: tuple[int, threading.RLock] = (os.getpid(), threading.RLock())


def _reinit_lock() -> threading.RLock:
    """The lock that serialises emitters' re-initialisation in this process: made fresh
    in a forked child (by the fork hook, or on first use after a fork without hooks), so
    it is never one the parent's threads held."""
    global _reinit
    pid = os.getpid()
    if _reinit[0] != pid:
        _reinit = (pid, threading.RLock())
    return _reinit[1]


def reinit_guard() -> threading.RLock:
    """For ``Dispatcher.reinit_after_fork``: two threads of a child must not both reset
    the same emitter (the second would drop what the first admitted)."""
    return _reinit_lock()


def _reinit_all_in_child() -> None:
    """Re-initialise every live emitter now (uWSGI's post-fork hook: a worker that takes
    over its master's buffer starts sending at once)."""
    _after_fork_in_child()
    for obj in list(_live):
        try:
            obj.reinit_after_fork()
        except Exception:  # pragma: no cover - must never break the user's fork
            logger.exception("re-initialising an emitter after fork failed")


def close_all(timeout: float | None = None) -> bool:
    """Close every live emitter within one deadline; True if nothing was lost."""
    objs = live()
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


def _at_exit() -> None:
    close_all()


def reset_session_pools(session: Any) -> None:
    """Give a user's ``requests.Session`` fresh connection pools in a forked child, so the
    child never writes on a keep-alive socket it shares with its parent (the old pools are
    dropped unclosed: closing could disturb the parent's connections)."""
    from requests.adapters import HTTPAdapter

    for adapter in list(getattr(session, "adapters", {}).values()):
        if isinstance(adapter, HTTPAdapter):
            adapter.proxy_manager = {}
            settings: Any = adapter  # private settings, stable since requests 2.0
            adapter.init_poolmanager(
                settings._pool_connections, settings._pool_maxsize, block=settings._pool_block
            )


def may_start_threads() -> bool:
    """False in a uWSGI master process (not a worker, mule or spooler: e.g. while it
    imports the app before forking the workers) unless ``--py-call-uwsgi-fork-hooks`` is
    on. uWSGI then forks without Python's fork hooks, so a thread holding the GIL at that
    moment leaves the worker waiting forever (seen in tests). Events tracked there stay
    buffered and are handed to exactly one forked child (:func:`arm_handover`)."""
    uwsgi: Any = sys.modules.get("uwsgi")
    if uwsgi is None or getattr(uwsgi, "opt", {}).get("py-call-uwsgi-fork-hooks"):
        return True
    try:
        if uwsgi.worker_id() != 0 or getattr(uwsgi, "mule_id", lambda: 0)() != 0:
            return True
        return bool(getattr(uwsgi, "i_am_the_spooler", lambda: False)())
    except Exception:  # pragma: no cover - an uwsgi module without worker_id
        return True


# -- hand-over: a process that may not send gives its buffer to exactly one child ----------
# A pipe holding one byte, created by the process that buffered events without a sender
# (a uWSGI master without fork hooks). Every child inherits it; the one whose non-blocking
# read gets the byte owns the inherited buffers and sends them, the others drop theirs
# (their parent's copy is not theirs to send). Children forked after the byte was taken
# find the pipe empty. Events tracked in the master after its first child claimed the
# byte are not handed over (documented limitation). ``_handover`` = (owner pid, read fd,
# write fd); ``_claimed`` = (pid, won) caches the answer for every emitter of a child.
_handover: tuple[int, int, int] | None = None
_claimed: tuple[int, bool] = (0, False)


def arm_handover() -> None:
    """In a process that buffers events it cannot send: offer them to the first child.
    Idempotent per process; never raises."""
    global _handover
    pid = os.getpid()
    if _handover is not None and _handover[0] == pid:
        return
    with _lock:
        if _handover is not None and _handover[0] == pid:
            return
        try:
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            os.write(write_fd, b"1")
        except OSError:  # pragma: no cover - out of file descriptors
            logger.warning("cannot hand buffered events over to a child process", exc_info=True)
            return
        _handover = (pid, read_fd, write_fd)


def claim_handover() -> bool:
    """In a forked child: True if this process won its parent's buffered events. The
    first call in a process decides (one non-blocking read, no lock: it may run right
    after fork) and closes the inherited pipe; later calls return the same answer."""
    global _claimed
    pid = os.getpid()
    if _claimed[0] == pid:
        return _claimed[1]
    baton = _handover
    won = baton is not None and baton[0] != pid and _take_baton(baton)
    _claimed = (pid, won)
    if won:
        logger.debug("process %d took over the events its parent buffered", pid)
    return won


def take_back_handover() -> bool:
    """In the process that armed the hand-over, before it sends on its own thread (e.g.
    ``flush()``): True if no child has taken its buffer (it may send, and re-arms on its
    next event), False if a child owns it now (sending too would duplicate)."""
    baton = _handover
    if baton is None or baton[0] != os.getpid():
        return True
    return _take_baton(baton)


def _take_baton(baton: tuple[int, int, int]) -> bool:
    """One non-blocking read of the hand-over pipe (True: this process got the byte),
    then the pipe is closed here and forgotten."""
    global _handover
    try:
        got = os.read(baton[1], 1) == b"1"
    except OSError:  # BlockingIOError: another process took it
        got = False
    for fd in baton[1:]:
        with contextlib.suppress(OSError):
            os.close(fd)
    _handover = None
    return got
