"""Threads that start together and fail together, for ``stress/`` and ``tests/``.

A load of N threads (a benchmark's tracking threads, a test's racing producers) must
never leave the main thread waiting for a thread that died: its error fails the run at
once, and nothing waits without a deadline. :class:`Crew` runs ``body(index)`` on
*count* daemon threads:

* :meth:`Crew.start` starts them; each waits at a barrier until :meth:`Crew.go`.
* :meth:`Crew.go` releases them all at once (the caller's clock starts after it).
* :meth:`Crew.join` waits until every body returned and raises :class:`ThreadFailed`,
  chained to the thread's own exception, as soon as one body raised, or
  :class:`TimeoutError` at the deadline, naming the threads still running.

``run()`` does all three. Nothing here blocks without a timeout; the threads are
daemons, so a crew abandoned by a failed run does not keep the process alive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class ThreadFailed(RuntimeError):
    """A crew thread's body raised; ``__cause__`` is that exception."""


class Crew:
    """*count* threads named ``<name>-<index>`` running ``body(index)``, released
    together by :meth:`go`. *timeout* bounds :meth:`go` (every thread at the barrier)
    and, from :meth:`go` on, :meth:`join` (every body returned)."""

    def __init__(self, body: Callable[[int], object], count: int, *, name: str = "crew",
                 timeout: float = 120.0) -> None:
        if count < 1:
            raise ValueError(f"a crew needs at least one thread, got {count}")
        self.timeout = timeout
        self._body = body
        self._barrier = threading.Barrier(count + 1, timeout=timeout)
        self._state = threading.Condition()  # guards _finished and _failure
        self._finished: set[int] = set()  # indices whose body returned
        self._failure: tuple[str, BaseException] | None = None
        self._deadline = 0.0
        self.threads = [threading.Thread(target=self._run, args=(index,),
                                         name=f"{name}-{index}", daemon=True)
                        for index in range(count)]

    def _run(self, index: int) -> None:
        try:
            self._barrier.wait()
        except threading.BrokenBarrierError:
            return  # another thread failed first, or go() timed out: it reports that
        try:
            self._body(index)
        except BaseException as exc:
            with self._state:
                if self._failure is None:
                    self._failure = (threading.current_thread().name, exc)
                self._state.notify_all()
            return
        with self._state:
            self._finished.add(index)
            self._state.notify_all()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def go(self) -> None:
        """Release every thread at once (they are all at the barrier when this returns).
        Raises :class:`TimeoutError` if they are not all there within ``timeout``."""
        try:
            self._barrier.wait()
        except threading.BrokenBarrierError:
            raise TimeoutError(f"{len(self.threads)} threads did not all start within "
                               f"{self.timeout:g} s") from None
        self._deadline = time.monotonic() + self.timeout

    def join(self) -> None:
        """Wait until every body returned; raise at once when one raised."""
        with self._state:
            while self._failure is None and len(self._finished) < len(self.threads):
                left = self._deadline - time.monotonic()
                if left <= 0:
                    running = [thread.name for index, thread in enumerate(self.threads)
                               if index not in self._finished]
                    raise TimeoutError(f"still running {self.timeout:g} s after go(): "
                                       f"{', '.join(running)}")
                self._state.wait(left)
            failure = self._failure
        if failure is not None:
            name, exc = failure
            raise ThreadFailed(f"{name} failed: {exc!r}") from exc
        for thread in self.threads:  # every body has returned: each join is immediate
            thread.join(max(0.0, self._deadline - time.monotonic()))

    def run(self) -> None:
        """:meth:`start`, :meth:`go` and :meth:`join`."""
        self.start()
        self.go()
        self.join()
