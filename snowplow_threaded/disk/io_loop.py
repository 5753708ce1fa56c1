"""The I/O thread of a :class:`~.store.DiskEventStore`: every read, write and fsync of the
store happens here, never on a thread that tracks or sends.

One loop (:meth:`IOLoop._run`): write what ``put()`` queued (after ``write_interval``, or
at once when ``write_events`` wait, in durable mode, or when closing), write the acks and
in-flight marks that ``settle()``/``take()`` queued, delete segments that are all
settled, read the next records from disk when the ready window runs low, and every
``scan_interval`` measure the directory and adopt what dead processes left. It sleeps on
an Event between rounds; producers wake it only when it may be asleep (see ``put``).

State (declared in :mod:`.state`) is the store's, guarded by the store's ``_lock`` (taken
here only for queue and counter updates, never across a system call).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from itertools import repeat
from typing import TYPE_CHECKING

from .format import encode_frames
from .io_read import ReadSide

if TYPE_CHECKING:
    from ..record import Record

logger = logging.getLogger("snowplow_threaded.disk")


#: Most records written with one system call.
WRITE_MAX = 20_000
#: How long the store keeps events in memory after a disk fault before trying again.
RETRY_DISK = 5.0


class IOLoop(ReadSide):
    """The I/O side of :class:`~.store.DiskEventStore`: the loop and the write path (its
    fields: :mod:`.state`). Acks, reading back and adopting are in
    :class:`~.io_read.ReadSide`."""

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                now = time.monotonic()
                # not while a burst waits to be written: the scan's system calls each hand
                # the GIL to the tracking threads, which could fill memory_events meanwhile
                if self._adopt_wanted or (now >= self._next_scan and (
                        len(self._incoming) < self.write_events or self._blocked())):
                    self._scan_step(now)
                self._write_step(now)
                self._ack_step()
                self._refill_step()
                self._room_now()
                self._say_drops()
                if self._closing and not self._incoming and not self._acks:
                    break
                self._sleep(now)
        except BaseException:
            self._stats["io_thread_failed"] = True
            logger.exception("the disk store's I/O thread failed: events are kept in memory "
                             "from now on (lost if the process dies)")
            self._fallback_until = float("inf")
            raise
        finally:
            self._adopt_done.set()
            with self._lock:
                self._synced = 1 << 62
                self._synced_cond.notify_all()
        self._finish_close()

    def _sleep(self, now: float) -> None:
        waiting = bool(self._incoming) and not self._blocked()
        if waiting:
            since = self._incoming_since if self._incoming_since is not None else now
            timeout = since + self.write_interval - now
            self._io_batching = True
        else:
            timeout = self._next_scan - now
            self._io_idle = True
        # the flag is published before this last look: a put() after it sees the flag and
        # wakes this thread, so no wake-up is lost
        if (timeout <= 0 or self._acks or self._marks or self._closing or self._adopt_wanted
                or self._write_now or self._refill_due()
                or (not waiting and self._incoming and not self._blocked())):
            self._io_idle = self._io_batching = False
            return
        self._wake.wait(timeout)
        self._wake.clear()
        self._io_idle = self._io_batching = False

    def _room_now(self) -> None:
        """With the emitter's ``when_full="block"``: the directory is no longer full once
        the last write fits again (segments were deleted); a ``put()`` was refused: wake
        the ``track()`` calls waiting for room (no lock held)."""
        if self._full and self._spool.dir_bytes + self._last_write <= data_limit(
                self.max_bytes):
            self._full = False
        if self._refused and not self._full and len(self._incoming) < self.memory_events:
            self._refused = False
            if self._wakeup is not None:
                self._wakeup()

    def _say_drops(self, final: bool = False) -> None:
        """Events were dropped on this thread (a full directory, damage, a disk fault):
        have the emitter say so now (``stats().dropped``, the WARNING, ``on_drop``), not
        at its next request or flush. No lock held."""
        total = sum(self._drops.values()) + self._spool.damaged
        if (total != self._drops_said or final) and self._say is not None:
            self._drops_said = total
            self._say(final)

    def _kick(self) -> None:
        self._io_idle = self._io_batching = False
        self._wake.set()

    # -- writing -------------------------------------------------------------------------------
    def _write_step(self, now: float) -> None:
        incoming = self._incoming
        if not incoming or self._blocked():
            self._incoming_since = None
            self._write_now = False  # (full: asked again by the next take())
            return
        if self._incoming_since is None:
            self._incoming_since = now
        if not (self._closing or self.durable or self._write_now
                or len(incoming) >= self.write_events
                or now >= self._incoming_since + self.write_interval):
            return
        self._incoming_since = None
        self._write_now = False
        for _ in range(-(-len(incoming) // WRITE_MAX)):
            self._write_batch()

    def _write_batch(self) -> None:
        with self._lock:
            count = min(len(self._incoming), WRITE_MAX)
            popleft = self._incoming.popleft
            records = [popleft() for _ in range(count)]
            first = self._in_base
            self._in_base += count
            self._writing = (first, count)
        back: list[Record] = []
        try:
            placed = self._persist(records, first, back)
        finally:
            with self._lock:
                self._writing = None
                if back:  # block: no room on disk; they wait in memory, first in line
                    self._incoming.extendleft(reversed(back))
                    self._in_base -= len(back)
                self._synced = first + count - len(back)
                self._synced_cond.notify_all()
        if placed:
            self._ready_now()

    def _blocked(self) -> bool:
        """With the emitter's ``when_full="block"``, the directory is full: nothing is
        written (what waits stays in memory, and ``put()`` refuses) until there is room
        (:meth:`_room_now`), or the store closes (then what does not fit is dropped)."""
        return self._block and self._full and not self._closing

    def _persist(self, records: list[Record], first: int, back: list[Record]) -> bool:
        """Write *records* (sequence numbers from *first*) and make them takeable now or
        later; True if some became takeable now. What does not fit goes to *back* when
        :meth:`_blocked`, else is dropped (counted)."""
        seqs = list(range(first, first + len(records)))
        if time.monotonic() < self._fallback_until:
            return self._to_memory(records, seqs)
        placed = False
        parts, sizes = encode_frames(records)
        keep = self._fit(sizes)
        if self._blocked():
            back.extend(records[keep:])
        del records[keep:], seqs[keep:], sizes[keep:], parts[2 * keep:]
        start, limit = 0, self._spool.max_write
        while start < len(records):  # one append (one segment) per chunk of max_write
            end, size = start, 0
            while end < len(records) and (end == start or size + sizes[end] <= limit):
                size += sizes[end]
                end += 1
            placed = self._append(records[start:end], seqs[start:end], sizes[start:end],
                                  parts[2 * start:2 * end]) or placed
            start = end
        return placed

    def _append(self, records: list[Record], seqs: list[int], sizes: list[int],
                parts: list[bytes]) -> bool:
        """Write *records* into one segment (or keep them in memory on a disk fault)."""
        try:
            seg, start = self._spool.append(b"".join(parts))
        except OSError as exc:
            self._disk_failed(exc)
            return self._to_memory(records, seqs)
        if self._fallback_until:
            self._fallback_until = 0.0
            logger.warning("writing events to %s again", self.directory)
        starts, ends = [], []
        pos = start
        for size in sizes:
            starts.append(pos)
            pos += size
            ends.append(pos)
        with self._lock:
            self._stats["written"] += len(records)
            seg.live += len(records)
            # what fits in the ready window goes there at once (nothing older is unread);
            # the rest is read back from the file later
            fits = 0 if self._unread else max(0, self.read_ahead - len(self._ready))
            fits = min(fits, len(records))
            if fits:
                self._ready.extend(records[:fits])
                self._ready_locs.extend(zip(seqs[:fits], repeat(seg), starts, ends,
                                            strict=False))
                seg.read_offset = ends[fits - 1]
            rest = seqs[fits:]
            if rest and rest[-1] - rest[0] == len(rest) - 1:
                seg.add_unread(rest[0], len(rest))
            else:
                for seq in rest:
                    seg.add_unread(seq, 1)
            self._unread += len(rest)
        return fits > 0

    def _to_memory(self, records: list[Record], seqs: list[int]) -> bool:
        """Keep *records* in memory only (after a disk fault): takeable at once, at most
        ``memory_events`` of them, counted in ``stats()``."""
        with self._lock:
            room = max(0, self.memory_events - len(self._ready))
            kept = min(room, len(records))
            self._ready.extend(records[:kept])
            self._ready_locs.extend((seq, None, 0, 0) for seq in seqs[:kept])
            self._stats["memory_only"] += kept
            if kept < len(records):
                self._drops["buffer_full"] += len(records) - kept
        return kept > 0

    def _drop_memory_only_locked(self) -> list[Record]:
        """Take the records held in memory only (after a disk fault) out of the ready
        window; returns them in order."""
        dropped = [r for r, loc in zip(self._ready, self._ready_locs, strict=True)
                   if loc[1] is None]
        if dropped:
            keep = [(r, loc) for r, loc in zip(self._ready, self._ready_locs, strict=True)
                    if loc[1] is not None]
            self._ready = deque(r for r, _ in keep)
            self._ready_locs = deque(loc for _, loc in keep)
        return dropped

    def _to_memory_locked(self) -> None:
        """No I/O thread (it failed, or may not start here): serve from memory."""
        while self._incoming and len(self._ready) < self.memory_events:
            self._ready.append(self._incoming.popleft())
            self._ready_locs.append((self._in_base, None, 0, 0))
            self._in_base += 1

    def _disk_failed(self, exc: OSError) -> None:
        self._stats["disk_errors"] += 1
        self._stats["last_disk_error"] = f"{type(exc).__name__}: {exc}"
        if not self._fallback_until:
            logger.warning("cannot write events to %s (%s): keeping them in memory (lost if "
                           "the process dies) and trying the disk again every %g s",
                           self.directory, exc, RETRY_DISK)
        self._fallback_until = time.monotonic() + RETRY_DISK
        self._spool.seal_current()

    def _fit(self, sizes: list[int]) -> int:
        """How many frames of *sizes* may be written under ``max_bytes`` (the newest dropped, or
        the oldest segments evicted first under ``drop_oldest``). Records stop at
        :func:`data_limit`; the rest is left for ack files and segment headers."""
        total = sum(sizes)
        spool = self._spool
        limit = data_limit(self.max_bytes)
        if self._block:  # no room for one more write like this: put() refuses (block)
            self._last_write = min(total, limit // 4)  # (a backlog: room for a part)
            self._full = spool.dir_bytes + total + self._last_write > limit
        if spool.dir_bytes + total <= limit:
            return len(sizes)
        keep = self._fit_count(sizes, limit - spool.dir_bytes)
        if self._blocked():
            return keep  # the rest waits in memory for room, never dropped
        if self.when_full == "drop_oldest" and not self._block:
            self._evict(total, limit)
            if spool.dir_bytes + total <= limit:
                return len(sizes)
        keep = self._fit_count(sizes, limit - spool.dir_bytes)
        with self._lock:
            self._drops["buffer_full"] += len(sizes) - keep
        self._warn_once("full", "the spool directory %s is full (max_bytes=%d): events are "
                        "dropped (%s); raise max_bytes or check the collector", self.directory,
                        self.max_bytes, self.when_full)
        return keep

    @staticmethod
    def _fit_count(sizes: list[int], room: int) -> int:
        """How many of *sizes*, from the first, fit in *room* bytes."""
        keep = 0
        for size in sizes:
            room -= size
            if room < 0:
                break
            keep += 1
        return keep

    def _evict(self, need: int, limit: int) -> None:
        """Drop this process's oldest segments, whole, until *need* bytes fit under
        *limit*; never one with records in a request or waiting for a retry."""
        spool = self._spool
        for seg in list(spool.segments):
            if spool.dir_bytes + need <= limit:
                return
            with self._lock:
                busy = {id(loc[1]) for lease in (*self._leased, *self._retry)
                        for loc in lease.locs}
                if id(seg) in busy:
                    continue
                keep = [(r, loc) for r, loc in zip(self._ready, self._ready_locs, strict=False)
                        if loc[1] is not seg]
                if len(keep) != len(self._ready):
                    self._ready = deque(r for r, _ in keep)
                    self._ready_locs = deque(loc for _, loc in keep)
                self._unread -= seg.unread
                self._drops["evicted_oldest"] += seg.live
                seg.live = 0
            if seg is spool.current:
                spool.seal_current()
            spool.delete(seg)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)


def data_limit(max_bytes: int) -> int:
    """Where records stop under *max_bytes*: 1 % (at least 4 KiB) is left for ack files
    and segment headers, so that the directory stays within *max_bytes*."""
    return max_bytes - max(4096, max_bytes // 100)
