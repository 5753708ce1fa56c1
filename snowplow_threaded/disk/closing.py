"""Starting, closing, adopting and the stats of a :class:`~.store.DiskEventStore` (a layer
of it, over the I/O thread's :class:`~.io_loop.IOLoop`; the fields: :mod:`.state`).

Closing: the emitter calls :meth:`Closing.begin_close` with its deadline before its
dispatcher's close, and :meth:`Closing.finish_close` after it (the process registry does
the same at exit, in either order): from the deadline on, ``take()`` hands out nothing, so
what is not delivered by then stays on disk for the next process instead of being dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..process import UWSGI, start_background
from ..record import Record, payload_of
from .io_loop import IOLoop

logger = logging.getLogger("snowplow_threaded.disk")

#: Least time close() gives the I/O thread to write what is queued, past its deadline.
CLOSE_GRACE = 2.0


class Closing(IOLoop):
    """See the module (its fields: :mod:`.state`)."""

    def _pending_locked(self) -> int:
        writing = self._writing[1] if self._writing else 0
        return (len(self._incoming) + writing + len(self._ready) + self._unread
                + sum(len(lease) for lease in self._retry))

    def _start(self) -> None:
        """Start the I/O thread (not in a uWSGI master, see lifecycle.may_start_threads:
        events wait in memory there, and go to the child that takes them over)."""
        if not UWSGI.may_start_threads():
            return
        with self._lock:
            if self._thread is not None or self._closing:
                return
            thread = threading.Thread(target=self._run, name="snowplow-disk-store",
                                      daemon=True)
            try:
                start_background(thread)  # signals go to the application's threads
            except RuntimeError:  # interpreter shutting down: close() writes inline
                return
            self._thread = thread

    # -- what the emitter uses (see Emitter: attach, close, stats) ----------------------------
    def set_wakeup(self, wakeup: Callable[[], None], shutdown_timeout: float,
                   say: Callable[[bool], None] | None = None, block: bool = False) -> None:
        """Called by the emitter: *wakeup* asks its dispatcher to take records now, and
        wakes a ``track()`` waiting for room (called with no lock held, after a ``take()``
        found none written yet, after adopting events, and when room was made for a
        refused ``put()``); *shutdown_timeout* is the emitter's, for the exit hook; *say*
        reports drops this store made on its own thread (``True``: at close, in full);
        *block*: the emitter's ``when_full="block"`` (a full directory refuses ``put()``,
        and the emitter waits for room)."""
        self._wakeup = wakeup
        self.shutdown_timeout = shutdown_timeout
        self._say = say
        self._block = block

    def ensure_own_process(self, pid: int = 0) -> None:
        """For the process registry: the dispatcher re-initialises this store in a forked
        child (``reset_after_fork``); nothing to do here."""

    def begin_close(self, deadline: float) -> None:
        """The emitter is closing: from *deadline* on (monotonic), hand out nothing more;
        what is not delivered by then stays on disk for the next process."""
        with self._lock:
            if not self._close_deadline or deadline < self._close_deadline:
                self._close_deadline = deadline

    def finish_close(self, deadline: float) -> bool:
        """Wait until every event is delivered or *deadline* passes, then for the requests
        still in flight (at most :data:`CLOSE_GRACE`), and close the store
        (:meth:`close_store`). True if nothing was left on disk (kept there for the next
        process: not lost, but not delivered) and nothing dropped meanwhile. Idempotent."""
        self.begin_close(deadline)
        with self._lock:
            drops = sum(self._drops.values()) + self._spool.damaged
        with self._settled_cond:
            while (self._pending_locked() or self._leased) and not self._held:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._settled_cond.wait(remaining)
            self._held = True
            grace = time.monotonic() + CLOSE_GRACE
            while self._leased and (remaining := grace - time.monotonic()) > 0:
                self._settled_cond.wait(remaining)
        left = self.close_store(max(deadline, time.monotonic()))
        with self._lock:  # dropped meanwhile (a disk fault): said, and not True
            dropped = sum(self._drops.values()) + self._spool.damaged > drops
        return left == 0 and not dropped

    def close_store(self, deadline: float) -> int:
        """Write what is queued, record the acks, close the files and let go of the
        directory. Waits for the I/O thread until *deadline* (monotonic), and at least
        :data:`CLOSE_GRACE` seconds. Returns the events left on disk. Idempotent."""
        with self._lock:
            if self._closing:
                return int(self._stats["left_on_close"])
            self._held = self._closing = True
            self._fallback_until = 0.0  # one more try for what a disk fault kept in memory
            self._incoming.extendleft(reversed(self._drop_memory_only_locked()))
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._kick()
            thread.join(max(deadline - time.monotonic(), CLOSE_GRACE))
            if thread.is_alive():
                logger.error("the disk store could not finish writing to %s in time; events "
                             "not yet written are lost", self.directory)
        elif thread is None or self._stats.get("io_thread_failed"):
            self._write_step(time.monotonic())
            self._ack_step()
            self._finish_close()
        return int(self._stats["left_on_close"])

    def _finish_close(self) -> None:
        """At the end of the I/O thread's last round (or inline): let go of the files."""
        left = self._spool.close()
        with self._lock:
            lost = len(self._incoming) + sum(  # memory only (a disk fault): not kept
                1 for locs in (self._ready_locs, *(x.locs for x in (*self._retry,
                                                                   *self._leased)))
                for loc in locs if loc[1] is None)
            self._stats["left_on_close"] = left
            self._closed = True
            if lost:
                self._drops["disk_unavailable"] = self._drops.get("disk_unavailable", 0) + lost
        if left:
            logger.warning("%d event(s) not delivered are kept in %s: the next process "
                           "using that directory sends them", left, self.directory)
        if lost:
            logger.error("%d event(s) could not be written to %s and are lost", lost,
                         self.directory)
        self._say_drops(final=True)

    def adopt(self, timeout: float = 30.0) -> int:
        """Adopt now what dead processes left in the directory (the I/O thread does so
        every ``scan_interval`` anyway), so that a following ``flush()`` waits for those
        events too. Returns how many events this store has adopted in all."""
        self._adopt_done.clear()
        self._adopt_wanted = True
        self._start()
        if self._io_alive():
            self._kick()
            self._adopt_done.wait(timeout)
        else:
            self._scan_step(time.monotonic())
        return int(self._stats["adopted"])

    def disk_stats(self) -> dict[str, Any]:
        """For ``stats().disk``: see docs/disk-buffer.md."""
        with self._lock:
            on_disk = (sum(seg.live for seg in self._spool.segments)
                       - sum(1 for locs in self._acks for loc in locs if loc[1] is not None))
            memory_only = sum(1 for loc in self._ready_locs if loc[1] is None)
            oldest = self._oldest_dtm_locked()
            return {
                "directory": self.directory,
                "bytes_on_disk": self._spool.dir_bytes,
                "events_on_disk": on_disk,
                "events_waiting_to_be_written": len(self._incoming),
                "events_in_memory_only": memory_only,
                "oldest_event_age": None if oldest is None else max(0.0, time.time() - oldest),
                "writing_to_memory": time.monotonic() < self._fallback_until,
                "adopted": self._stats["adopted"],
                "adopted_in_flight": self._spool.in_flight_adopted,
                "corrupt_bytes": self._spool.corrupt_bytes,
                "bytes_written": self._spool.bytes_written,
                **{k: self._stats[k] for k in ("written", "memory_only", "disk_errors",
                                                "last_disk_error", "durable_timeouts",
                                                "left_on_close")},
            }

    def _oldest_dtm_locked(self) -> float | None:
        """The creation time (``dtm``, seconds) of the oldest event waiting: the first of
        those in a request or a retry, of those read back, or of those not written yet."""
        candidates: list[Record] = [lease.records[0] for lease in (*self._leased,
                                                                     *self._retry)
                                    if lease.records]
        if self._ready:
            candidates.append(self._ready[0])
        if not candidates and self._incoming:
            candidates.append(self._incoming[0])
        times = []
        for record in candidates:
            try:
                times.append(int(payload_of(record).get("dtm", "")) / 1000)
            except (TypeError, ValueError):  # a JSON error is a ValueError
                continue
        return min(times) if times else None

    # -- internals -------------------------------------------------------------------------------
    def _io_alive(self) -> bool:
        thread = self._thread
        return (thread is not None and thread.is_alive()
                and not self._stats.get("io_thread_failed"))
