"""DiskEventStore: the engine's :class:`~..event_store.BatchStore` on disk.

Events survive a crash of the process (SIGKILL, the OOM killer) once written, and a
collector outage as long as ``max_bytes`` holds; processes sharing a directory each send
their own events, and adopt what dead ones left. How it works, and why this format:
``docs/disk-buffer.md``.

Threads and locks: ``put()`` (the caller's thread) appends to ``_incoming`` without a
lock, as :class:`~..event_store.InMemoryEventStore` does, and touches no file. The I/O
thread (:mod:`.io_loop`, started by the first ``put()``, or at construction when dead
processes left events) writes, reads and deletes. ``take()``/``settle()`` (the sender)
hand out records already in memory and queue acks for the I/O thread. ``_lock`` guards
every field below except ``_incoming``'s right end and ``_rejected`` (see ``put``); it is
never held across a system call.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .. import lifecycle
from ..event_store import DROP_NEWEST, DROP_OLDEST, Lease
from ..typing import PayloadDict
from . import owners
from .arguments import check_arguments
from .format import LEASED, UNLEASED
from .io_loop import DiskLease, IOLoop
from .io_read import Loc
from .owners import DiskStoreError
from .spool import Spool

logger = logging.getLogger("snowplow_threaded.disk")

#: Least time close() gives the I/O thread to write what is queued, past its deadline.
CLOSE_GRACE = 2.0
#: Records of a forked child's parent, kept referenced (see InMemoryEventStore).
_INHERITED: list[object] = []


class DiskEventStore(IOLoop):
    """A disk buffer for an emitter: ``Emitter(..., event_store=DiskEventStore(dir))``.

    :param directory: created if missing; may be shared by processes of one app (each
        sends its own events; what a dead one left is adopted by a live one or the next
        to start). Give each app (collector) its own directory.
    :param max_bytes: most bytes the directory may hold (256 MiB); beyond it
        ``when_full`` applies.
    :param when_full: ``"drop_newest"`` (default: new events are dropped) or
        ``"drop_oldest"`` (this process's oldest segment is dropped whole); both counted
        in ``stats().dropped``.
    :param write_interval: an event is written within this many seconds of ``track()``
        (0.05) ...
    :param write_events: ... or as soon as this many wait (1 000). Only written events
        survive a crash.
    :param durable: ``track()`` returns once the event is written and fsynced (it then
        survives a power loss too); costs the caller an fsync (grouped across threads).
    :param durable_timeout: most seconds a durable ``track()`` waits (5).
    :param memory_events: most events held in memory waiting to be written, or, after a
        disk fault, instead of being written (10 000).
    :param read_ahead: most events read back into memory ahead of sending (1 000).
    :param segment_bytes: size at which a new segment file begins (4 MiB).
    :param scan_interval: how often the directory is measured and searched for events of
        dead processes (2 s).
    :param on_error: ``"raise"`` (default): an unusable directory raises
        :class:`DiskStoreError` here; ``"memory"``: it is logged and the store keeps
        events in memory, retrying the disk every few seconds (``stats().disk``).

    A fault later (disk full, a read-only remount, ``ulimit -f``) never raises into
    ``track()``: events are kept in memory (counted) until the disk works again.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int = 256 * 1024 * 1024,
        *,
        when_full: str = DROP_NEWEST,
        write_interval: float = 0.05,
        write_events: int = 1000,
        durable: bool = False,
        durable_timeout: float = 5.0,
        memory_events: int = 10_000,
        read_ahead: int = 1000,
        segment_bytes: int = 4 * 1024 * 1024,
        scan_interval: float = 2.0,
        on_error: str = "raise",
    ) -> None:
        check_arguments(directory, max_bytes, when_full=when_full,
                        write_interval=write_interval, write_events=write_events,
                        durable=durable,
                        durable_timeout=durable_timeout, memory_events=memory_events,
                        read_ahead=read_ahead, segment_bytes=segment_bytes,
                        scan_interval=scan_interval, on_error=on_error)
        self.directory = os.path.abspath(os.fspath(directory))
        self.max_bytes = max_bytes
        self.when_full = when_full
        self.write_interval = write_interval
        self.write_events = write_events
        self.durable = durable
        self.durable_timeout = durable_timeout
        self.memory_events = memory_events
        self.read_ahead = read_ahead
        self.segment_bytes = max(64 * 1024, min(segment_bytes, max_bytes // 8))
        self.scan_interval = scan_interval
        self._wakeup: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._init_state()
        try:
            owners.prepare(self.directory)
        except DiskStoreError as exc:
            if on_error == "raise":
                raise
            logger.warning("%s; keeping events in memory (lost if the process dies)", exc)
            self._disk_failed(exc)
        self._orphans_seen = bool(owners.orphans(self.directory))

    def _init_state(self) -> None:
        self._synced_cond = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._incoming: deque[PayloadDict] = deque()
        self._in_base = 0  # the sequence number of _incoming[0]
        self._writing: tuple[int, int] | None = None  # (first seq, count) being written
        self._ready: deque[PayloadDict] = deque()  # takeable, in sending order ...
        self._ready_locs: deque[Loc] = deque()  # ... and where each is on disk
        self._retry: deque[DiskLease] = deque()
        self._leased: set[DiskLease] = set()
        self._acks: list[list[Loc]] = []  # settled: to record on disk (I/O thread)
        # (LEASED or UNLEASED, locs): in a request, or back from one (I/O thread)
        self._marks: list[tuple[bytes, list[Loc]]] = []
        self._unread = 0  # records on disk not yet read back
        self._adopt_seq = -(1 << 62)  # adopted records come before every own one
        self._drops = {"buffer_full": 0, "evicted_oldest": 0}
        self._rejected = itertools.count()  # memory bound rejections, without the lock
        self._rejected_reads = 0
        self._spool = Spool(self.directory, self.segment_bytes, self.durable, self._lock)
        self._thread: threading.Thread | None = None
        self._closing = self._closed = self._held = False
        self._io_idle = self._io_batching = False
        self._incoming_since: float | None = None
        self._write_now = False  # the sender asked for events none of which is written yet
        self._next_scan = 0.0
        self._fallback_until = 0.0
        self._synced = 0  # durable mode: every seq below this is written (or dropped)
        self._adopt_wanted = False
        self._adopt_done = threading.Event()
        self._warned: set[str] = set()
        self._memory_full_warned = False
        self._stats: dict[str, Any] = {"written": 0, "adopted": 0, "memory_only": 0,
                                       "disk_errors": 0, "last_disk_error": None,
                                       "left_on_close": 0, "durable_timeouts": 0}

    # -- the caller's thread ---------------------------------------------------------------------
    def put(self, record: PayloadDict) -> int:
        """Queue *record* for the I/O thread: an append, no lock, no file touched (unless
        ``durable``). -1 when ``memory_events`` wait already (the disk stalls)."""
        incoming = self._incoming
        if self._thread is None:
            self._start()
        if len(incoming) >= self.memory_events:
            return self._put_full(record)
        if self.durable:
            return self._put_durable(record)
        incoming.append(record)
        waiting = len(incoming)
        if self._io_idle or (self._io_batching and waiting >= self.write_events):
            self._kick()
        elif waiting > self.memory_events // 2:
            # a burst outruns the writer (it waits for the GIL that this thread holds):
            # hand the GIL over, so that it writes instead of events being dropped soon
            time.sleep(0)
        return waiting

    def _put_full(self, record: PayloadDict) -> int:
        """The memory bound is reached (the I/O thread cannot keep up). This is where a
        ``when_full="block"`` policy waits for room (issue 15)."""
        if not self._memory_full_warned:  # once: a drop is never silent, nor per event
            self._memory_full_warned = True
            logger.warning("%d events wait to be written to %s (memory_events): the disk "
                           "is not keeping up; events are dropped (%s), counted in stats()",
                           self.memory_events, self.directory, self.when_full)
        if self.when_full != DROP_OLDEST:
            next(self._rejected)
            return -1
        with self._lock:
            if self._incoming:
                self._incoming.popleft()
                self._in_base += 1
                self._drops["evicted_oldest"] += 1
            self._incoming.append(record)
            return len(self._incoming)

    def _put_durable(self, record: PayloadDict) -> int:
        with self._lock:
            self._incoming.append(record)
            seq = self._in_base + len(self._incoming) - 1
            pending = len(self._incoming)
        self._kick()
        deadline = time.monotonic() + self.durable_timeout
        with self._synced_cond:
            while self._synced <= seq and self._thread is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._stats["durable_timeouts"] += 1
                    break
                self._synced_cond.wait(remaining)
        return pending

    def _start(self) -> None:
        """Start the I/O thread (not in a uWSGI master, see lifecycle.may_start_threads:
        events wait in memory there, and go to the child that takes them over)."""
        if not lifecycle.may_start_threads():
            return
        with self._lock:
            if self._thread is not None or self._closing:
                return
            thread = threading.Thread(target=self._run, name="snowplow-disk-store",
                                      daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: close() writes inline
                return
            self._thread = thread

    # -- the sender's side -----------------------------------------------------------------------
    def take(self, max_events: int) -> Lease | None:
        with self._lock:
            if self._held:
                return None
            if self._retry:
                lease = self._retry.popleft()
                self._leased.add(lease)
                self._marks.append((LEASED, list(lease.locs)))
                return lease
            if not self._ready and self._incoming and not self._io_alive():
                self._to_memory_locked()
            ready = self._ready
            if not ready:
                if self._incoming:  # the sender waits for them: write now, not at the window
                    self._write_now = True
                    self._kick()
                return None
            count = min(max_events, len(ready))
            popleft, pop_loc = ready.popleft, self._ready_locs.popleft
            records = [popleft() for _ in range(count)]
            locs = [pop_loc() for _ in range(count)]
            lease = DiskLease(records, locs)
            self._leased.add(lease)
            self._marks.append((LEASED, locs))
        self._kick()
        return lease

    def settle(self, lease: Lease, retry: bool, done: int = 0) -> None:
        assert isinstance(lease, DiskLease)
        with self._lock:
            self._leased.discard(lease)
            locs = lease.locs
            if done:
                self._acks.append(locs[:done])
            if done < len(locs):
                if retry or self._held:
                    self._marks.append((UNLEASED, locs[done:]))
                if retry:
                    del lease.records[:done], locs[:done]
                    lease.oldest_seq = min(loc[0] for loc in locs)
                    self._retry.append(lease)
                    if len(self._retry) > 1 and self._retry[-2].oldest_seq > lease.oldest_seq:
                        self._retry = deque(sorted(self._retry, key=lambda x: x.oldest_seq))
                elif not self._held:  # failed for good: removed
                    self._acks.append(locs[done:])
                # held (close() gave up): they stay on disk for the next process
        self._kick()

    def pending(self) -> int:
        with self._lock:
            return self._pending_locked()

    def _pending_locked(self) -> int:
        writing = self._writing[1] if self._writing else 0
        return (len(self._incoming) + writing + len(self._ready) + self._unread
                + sum(len(lease) for lease in self._retry))

    def oldest_seq(self) -> int | None:
        with self._lock:
            seqs = [lease.oldest_seq for lease in (*self._leased, *self._retry)]
            if self._ready_locs:
                seqs.append(min(loc[0] for loc in self._ready_locs))
            seqs.extend(seg.runs[0][0] for seg in self._spool.segments if seg.runs)
            if self._writing:
                seqs.append(self._writing[0])
            if self._incoming:
                seqs.append(self._in_base)
            return min(seqs) if seqs else None

    def next_seq(self) -> int:
        with self._lock:
            return self._in_base + len(self._incoming)

    def drop_counts(self) -> dict[str, int]:
        with self._lock:
            rejected = next(self._rejected) - self._rejected_reads
            self._rejected_reads += 1
            drops = dict(self._drops)
            drops["buffer_full"] += rejected
            return {k: v for k, v in drops.items() if v}

    def discard_pending(self) -> int:
        """Drop what is held in memory only (events not written yet, and any kept in
        memory after a disk fault); what is on disk stays. After ``hold()``, nothing is
        dropped: ``close()`` writes it."""
        with self._lock:
            if self._held and not self._closed:
                return 0
            count = len(self._incoming)
            for _ in range(count):
                self._incoming.popleft()
            self._in_base += count
            return count + len(self._drop_memory_only_locked())

    def reset_after_fork(self, keep: bool = False) -> int:
        """In a forked child: the parent's files, locks and thread are not the child's.
        Its descriptors are closed here (this process holds none of the parent's POSIX
        locks, so that releases nothing); it starts with a token of its own on its first
        event. With *keep* (it took over a uWSGI master's buffer) the events the parent
        queued and never wrote are written by this child."""
        old_incoming, old_spool = self._incoming, self._spool
        dropped = len(old_incoming) + len(self._ready) + sum(len(x) for x in self._retry)
        owners.forget_inherited(old_spool.descriptors())
        wakeup = self._wakeup
        self._lock = threading.Lock()
        _INHERITED.append((old_incoming, self._ready, self._retry, self._leased))
        in_base = self._in_base
        self._init_state()
        self._wakeup = wakeup
        if keep:
            self._incoming = old_incoming
            self._in_base = in_base
            return 0
        return dropped

    # -- optional methods the dispatcher uses ----------------------------------------------------
    def set_wakeup(self, wakeup: Callable[[], None]) -> None:
        """The dispatcher's hook, called (no lock held) when records become takeable. If
        dead processes left events here, the I/O thread starts now to adopt them."""
        self._wakeup = wakeup
        if self._orphans_seen:
            self._start()

    def hold_unsent(self) -> int:
        """``close()`` gave up: hand out nothing more; what is not delivered stays on disk
        for the next process. Returns how many events that is."""
        with self._lock:
            self._held = True
            return self._pending_locked() + sum(len(x) for x in self._leased)

    def close_store(self, deadline: float) -> int:
        """Write what is queued, record the acks, close the files and let go of the
        directory. Waits for the I/O thread until *deadline* (monotonic), and at least
        :data:`CLOSE_GRACE` seconds. Returns the events left on disk. Idempotent. (The emitter's
        ``close()`` calls it.)"""
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
            lost = len(self._incoming) + sum(1 for loc in self._ready_locs if loc[1] is None)
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
                                                "last_disk_error", "durable_timeouts")},
            }

    def _oldest_dtm_locked(self) -> float | None:
        """The creation time (``dtm``, seconds) of the oldest event waiting: the first of
        those in a request or a retry, of those read back, or of those not written yet."""
        candidates: list[PayloadDict] = [lease.records[0] for lease in (*self._leased,
                                                                          *self._retry)
                                         if lease.records]
        if self._ready:
            candidates.append(self._ready[0])
        if not candidates and self._incoming:
            candidates.append(self._incoming[0])
        times = []
        for record in candidates:
            try:
                times.append(int(record.get("dtm", "")) / 1000)
            except (TypeError, ValueError):
                continue
        return min(times) if times else None

    # -- internals -------------------------------------------------------------------------------
    def _io_alive(self) -> bool:
        thread = self._thread
        return (thread is not None and thread.is_alive()
                and not self._stats.get("io_thread_failed"))

    def __repr__(self) -> str:
        return f"DiskEventStore({self.directory!r}, max_bytes={self.max_bytes})"
