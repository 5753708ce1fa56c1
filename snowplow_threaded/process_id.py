"""This process's id without a system call per event, and a fork check that needs no hook.

Every ``track()`` needs the pid: a forked child must re-initialise the emitters it
inherited (fresh locks, its parent's buffer dropped) and must not repeat its parent's
event ids, even when it was forked without Python's fork hooks (uWSGI by default, a C
extension). ``os.getpid()`` is a system call, several times what this check costs
(``python -m stress.fork_cost`` times both; the figures are in docs/process-model.md).
Instead:

* :data:`FORK_MARK` is one private anonymous page with ``MADV_WIPEONFORK`` (Linux 4.14+):
  the kernel hands every forked child that page zeroed, however it was forked.
* :func:`pid_now` calls ``os.getpid()``, keeps it in ``KNOWN_PID[0]`` and then sets
  ``FORK_MARK[0]`` to 1.

So ``KNOWN_PID[0] if FORK_MARK[0] else pid_now()`` (:func:`current_pid`, inlined on the
hot path) is the pid: while the mark is set, no fork happened since ``KNOWN_PID`` was
taken in this process. Where the mark cannot be made (another OS, an older kernel), it
stays 0 and every call is an ``os.getpid()``, as before.

Thread-safety: the two values are written in this order, under the GIL, and a fork
only ever clears the mark; threads racing in a new child each call ``os.getpid()`` and
write the same values. Nothing here starts a thread or takes a lock.
"""

from __future__ import annotations

import mmap
import os
import sys

_MADV_WIPEONFORK = 18  # <linux/mman.h>; not exported by the mmap module


def _make_mark() -> tuple[mmap.mmap | bytearray, bool]:
    if not sys.platform.startswith("linux"):  # the advice number is Linux's
        return bytearray(1), False
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (AttributeError, OSError, ValueError):  # pragma: no cover - no private mmap
        return bytearray(1), False
    try:
        page.madvise(_MADV_WIPEONFORK)
    except (AttributeError, OSError, ValueError):  # pragma: no cover - kernel < 4.14
        page.close()
        return bytearray(1), False
    return page, True


#: ``FORK_MARK[0]`` is 1 while ``KNOWN_PID[0]`` is this process's id (see the module doc).
FORK_MARK, MARK_WORKS = _make_mark()
KNOWN_PID: list[int] = [0]


def pid_now() -> int:
    """``os.getpid()``, remembered for :func:`current_pid`."""
    pid = os.getpid()
    KNOWN_PID[0] = pid
    if MARK_WORKS:
        FORK_MARK[0] = 1
    return pid


def current_pid() -> int:
    """This process's id: a memory read unless the process forked since it was last
    taken (then ``os.getpid()``)."""
    return KNOWN_PID[0] if FORK_MARK[0] else pid_now()
