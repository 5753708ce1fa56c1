"""Starting the library's background threads with asynchronous signals blocked.

A signal sent to a process (``kill(pid, SIGHUP)``) is handled by one of its threads that
does not block it; Linux picks the main thread, but not when that thread blocks the signal
or already has one pending. Python-level handlers always run on the main thread whichever
thread took the signal, but a server's C-level handler runs on the thread that took it.
uWSGI's worker handles the master's graceful-stop SIGHUP in C by calling ``exit()``, whose
Python ``atexit`` step takes the GIL: on a sender thread of a worker started without
``--enable-threads``, whose main thread holds the GIL while it waits in ``accept()``, that
waits for ever, and the worker is killed by uWSGI's 60 s mercy with its events.

So every thread this library starts (senders, the disk writer, the embedded collector)
blocks the asynchronous signals (it inherits the mask of the thread that starts it, set for
the length of ``start()``): they go to the application's threads, as a server expects. The
synchronous ones (a fault in the thread itself: SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP,
SIGSYS) cannot be deferred and stay open.
Where ``signal.pthread_sigmask`` does not exist (Windows), threads start as they are.
"""

from __future__ import annotations

import signal
import threading

_SYNCHRONOUS = {getattr(signal, name) for name in
                ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS")
                if hasattr(signal, name)}

#: What a library thread blocks; None where threads cannot block signals.
BLOCKED: frozenset[signal.Signals] | None = (
    frozenset(signal.valid_signals() - _SYNCHRONOUS)
    if hasattr(signal, "pthread_sigmask") else None)


def start_background(thread: threading.Thread) -> None:
    """``thread.start()`` with :data:`BLOCKED` blocked in the new thread.

    The calling thread's mask is changed for the length of the call and restored after, so
    a signal that arrives meanwhile is delivered then. Raises what ``Thread.start`` raises
    (``RuntimeError`` while the interpreter shuts down). Thread-safe: the mask is per
    thread.
    """
    if BLOCKED is None:
        thread.start()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
