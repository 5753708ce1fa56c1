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
every field (declared, with who touches it, in :mod:`.state`) except ``_incoming``'s right
end (see ``put``) and the I/O thread's own flags; it is never held across a system call.

Records are the engine's (:data:`~..record.Record`, bytes) and are written as they are
(format 2, :mod:`.format`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..event_store import DROP_NEWEST, DROP_OLDEST, Lease
from ..record import BODY_HEAD_SIZE, STM_SIZE, Record
from . import owners
from .arguments import check_arguments
from .closing import Closing
from .format import LEASED, UNLEASED
from .owners import DiskStoreError
from .spool import Spool
from .state import DiskLease, Loc

logger = logging.getLogger("snowplow_threaded.disk")

#: Records of a forked child's parent, kept referenced (see InMemoryEventStore).
_INHERITED: list[object] = []


class DiskEventStore(Closing):
    """A disk buffer for an emitter: ``Emitter(..., event_store=DiskEventStore(dir))``.

    :param directory: created if missing; may be shared by processes of one app (each
        sends its own events; what a dead one left is adopted by a live one or the next
        to start). Give each app (collector) its own directory.
    :param max_bytes: most bytes the directory may hold (256 MiB); beyond it
        ``when_full`` applies.
    :param when_full: ``"drop_newest"`` (default: new events are dropped) or
        ``"drop_oldest"`` (this process's oldest segment is dropped whole); both counted
        in ``stats().dropped``. (The emitter's ``when_full="block"`` makes ``track()``
        wait for room instead: see docs/disk-buffer.md.)
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

    #: What ``close()`` does not deliver stays on disk for the next process: the emitter
    #: neither gives it up nor counts it as dropped (see ``Dispatcher``).
    keeps_unsent = True

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
        self._say: Callable[[bool], None] | None = None
        self._block = False  # the emitter's when_full="block" (set_wakeup)
        self.shutdown_timeout = 5.0  # the emitter's (set_wakeup), for the exit hook
        self._lock = threading.Lock()
        self._init_state()
        try:
            owners.prepare(self.directory)
        except DiskStoreError as exc:
            if on_error == "raise":
                raise
            logger.warning("%s; keeping events in memory (lost if the process dies)", exc)
            self._disk_failed(exc)

    def _init_state(self) -> None:
        self._synced_cond = threading.Condition(self._lock)
        self._settled_cond = threading.Condition(self._lock)  # settle() notifies it
        self._close_deadline = 0.0  # from then on (monotonic) take() hands out nothing
        self._starved = False  # a take() found nothing takeable: wake the sender after
        self._wake = threading.Event()
        self._incoming: deque[Record] = deque()
        self._in_base = 0  # the sequence number of _incoming[0]
        self._writing: tuple[int, int] | None = None  # (first seq, count) being written
        self._ready: deque[Record] = deque()  # takeable, in sending order ...
        self._ready_locs: deque[Loc] = deque()  # ... and where each is on disk
        self._retry: deque[DiskLease] = deque()
        self._leased: set[DiskLease] = set()
        self._acks: list[list[Loc]] = []  # settled: to record on disk (I/O thread)
        # (LEASED or UNLEASED, locs): in a request, or back from one (I/O thread)
        self._marks: list[tuple[bytes, list[Loc]]] = []
        self._unread = 0  # records on disk not yet read back
        self._adopt_seq = -(1 << 62)  # adopted records come before every own one
        self._drops = {"buffer_full": 0, "evicted_oldest": 0}
        self._drops_said = 0  # the drops' total when last said (see IOLoop._say_drops)
        self._full = False  # block: the directory cannot take the next write (I/O thread)
        self._last_write = 0  # block: the bytes of the last write (I/O thread)
        self._refused = False  # block: a put() was refused; wake the waiters on room
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
    def put(self, record: Record) -> int:
        """Queue *record* for the I/O thread: an append, no lock, no file touched (unless
        ``durable``). -1 when ``memory_events`` wait already (the disk stalls)."""
        incoming = self._incoming
        if self._thread is None:
            self._start()
        if len(incoming) >= self.memory_events or (self._block and self._full):
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

    def _put_full(self, record: Record) -> int:
        """The memory bound is reached (the I/O thread cannot keep up), or with the
        emitter's ``when_full="block"`` the directory is full: *record* is refused (-1: the
        emitter drops and counts it, or with ``block`` waits until :meth:`_room_now` and
        puts it again), or under ``drop_oldest`` the oldest waiting one is dropped (counted
        here)."""
        if self._block:
            self._refused = True
            return -1
        if not self._memory_full_warned:  # once, and not per event
            self._memory_full_warned = True
            logger.warning("%d events wait to be written to %s (memory_events): the disk "
                           "is not keeping up; new events meet when_full (%s)",
                           self.memory_events, self.directory, self.when_full)
        if self.when_full != DROP_OLDEST:
            return -1
        with self._lock:
            if self._incoming:
                self._incoming.popleft()
                self._in_base += 1
                self._drops["evicted_oldest"] += 1
            self._incoming.append(record)
            return len(self._incoming)

    def _put_durable(self, record: Record) -> int:
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

    # -- the sender's side -----------------------------------------------------------------------
    def take(self, max_events: int, max_bytes: int | None = None) -> Lease | None:
        with self._lock:
            if self._held or (self._close_deadline
                              and time.monotonic() >= self._close_deadline):
                self._held = True  # close() gave up: the rest stays for the next process
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
                if self._incoming or self._unread:  # the sender waits: write (or read) now,
                    self._write_now = self._starved = True  # and wake it when done
                    self._kick()
                return None
            count = min(max_events, len(ready))
            if max_bytes is not None:  # about max_bytes of body, the first record always
                room = max_bytes - BODY_HEAD_SIZE - len(ready[0]) - STM_SIZE
                for index in range(1, count):
                    room -= len(ready[index]) + STM_SIZE
                    if room < 0:
                        count = index
                        break
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
                if retry:  # to send again; after close() gave up, kept for the next process
                    self._marks.append((UNLEASED, locs[done:]))
                    del lease.records[:done], locs[:done]
                    lease.oldest_seq = min(loc[0] for loc in locs)
                    self._retry.append(lease)
                    if len(self._retry) > 1 and self._retry[-2].oldest_seq > lease.oldest_seq:
                        self._retry = deque(sorted(self._retry, key=lambda x: x.oldest_seq))
                else:  # failed for good (refused by the collector): removed
                    self._acks.append(locs[done:])
            self._settled_cond.notify_all()
        self._kick()

    def pending(self) -> int:
        with self._lock:
            return self._pending_locked()

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
        """What this store dropped itself: a full directory or memory bound after a disk
        fault (``buffer_full``), ``drop_oldest`` evictions (``evicted_oldest``), damaged
        records (``corrupt``), unreadable segments (``unreadable``), events kept in memory
        after a disk fault and not written by the end (``disk_unavailable``). Events it
        refused in ``put()`` are the emitter's to count."""
        with self._lock:
            drops = {k: v for k, v in self._drops.items() if v}
        if self._spool.damaged:
            drops["corrupt"] = drops.get("corrupt", 0) + self._spool.damaged
        return drops

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

    def __repr__(self) -> str:
        return f"DiskEventStore({self.directory!r}, max_bytes={self.max_bytes})"
