"""The hand-over: a process that may not send gives its buffered events to exactly one child.

A uWSGI master without fork hooks may start no sender thread (:mod:`.uwsgi`), so events it
tracks (at app import) stay buffered. It then :meth:`~Handover.arm`\\ s a pipe holding one
byte. Every forked child inherits the pipe; the one whose non-blocking read gets the byte
(:meth:`~Handover.claim`) owns the inherited buffers and sends them, the others drop theirs
(their parent's copy is not theirs to send). Children forked after the byte was taken find
the pipe empty. Events tracked in the master after its first child claimed the byte are not
handed over (a documented limitation).

Thread-safe: :meth:`~Handover.arm` takes a lock made anew in each process; :meth:`~Handover.claim`
takes none (it may run right after fork).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading

from .registry import ProcessLock

logger = logging.getLogger("snowplow_threaded.process")


class Handover:
    def __init__(self) -> None:
        self._lock = ProcessLock(threading.Lock)
        #: (owner pid, read fd, write fd) of the armed pipe, in the process that armed it
        #: and (inherited) in its children
        self._baton: tuple[int, int, int] | None = None
        #: (pid, won): the answer of :meth:`claim` in that process
        self._claimed: tuple[int, bool] = (0, False)

    def arm(self) -> None:
        """In a process that buffers events it cannot send: offer them to the first child.
        Idempotent per process; never raises."""
        pid = os.getpid()
        if self._baton is not None and self._baton[0] == pid:
            return
        with self._lock.get():
            if self._baton is not None and self._baton[0] == pid:
                return
            try:
                read_fd, write_fd = os.pipe()
                os.set_blocking(read_fd, False)
                os.write(write_fd, b"1")
            except OSError:  # pragma: no cover - out of file descriptors
                logger.warning("cannot hand buffered events over to a child process",
                               exc_info=True)
                return
            self._baton = (pid, read_fd, write_fd)

    def claim(self) -> bool:
        """In a forked child: True if this process won its parent's buffered events. The
        first call in a process decides (one non-blocking read, no lock) and closes the
        inherited pipe; later calls return the same answer."""
        pid = os.getpid()
        if self._claimed[0] == pid:
            return self._claimed[1]
        baton = self._baton
        won = baton is not None and baton[0] != pid and self._take(baton)
        self._claimed = (pid, won)
        if won:
            logger.debug("process %d took over the events its parent buffered", pid)
        return won

    def take_back(self) -> bool:
        """In the process that armed the hand-over, before it sends on its own thread (e.g.
        ``flush()``): True if no child has taken its buffer (it may send, and re-arms on its
        next event), False if a child owns it now (sending too would duplicate)."""
        baton = self._baton
        if baton is None or baton[0] != os.getpid():
            return True
        return self._take(baton)

    def _take(self, baton: tuple[int, int, int]) -> bool:
        """One non-blocking read of the pipe (True: this process got the byte), then the
        pipe is closed here and forgotten."""
        try:
            got = os.read(baton[1], 1) == b"1"
        except OSError:  # BlockingIOError: another process took it
            got = False
        for fd in baton[1:]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._baton = None
        return got
