"""The read side of a :class:`~.store.DiskEventStore`'s I/O thread (see :mod:`.io_loop`):
recording acks and in-flight marks, deleting settled segments, reading records back into
the ready window, and adopting what dead processes left. Runs on the I/O thread only;
the store's ``_lock`` is taken for queue and counter updates, never across a system call.
"""

from __future__ import annotations

import bisect
import logging
from typing import TYPE_CHECKING

from .format import ACK as ACK_KIND
from .format import FormatError, ack_entry, decode_record
from .spool import Segment
from .state import Loc, StoreState

if TYPE_CHECKING:
    from ..record import Record

logger = logging.getLogger("snowplow_threaded.disk")

class ReadSide(StoreState):
    """The read side of :class:`~.store.DiskEventStore` (its fields: :mod:`.state`)."""

    # -- acks ----------------------------------------------------------------------------------
    def _ack_step(self) -> None:
        with self._lock:
            acks, self._acks = self._acks, []
            marks, self._marks = self._marks, []
        if not acks and not marks:
            return
        settled: dict[Segment, int] = {}
        entries: dict[Segment, list[bytes]] = {}
        for kind, locs in (*marks, *((ACK_KIND, locs) for locs in acks)):
            for seg, start, end, n in _ranges(locs):
                entries.setdefault(seg, []).append(ack_entry(kind, start, end))
                if kind == ACK_KIND:
                    settled[seg] = settled.get(seg, 0) + n
        for seg, parts in entries.items():
            try:
                self._spool.write_acks(seg, b"".join(parts))
            except OSError as exc:  # the records stay: sent again by the next owner
                self._warn_once("ack", "cannot record deliveries in %s (%s): a restart may "
                                "send those events again", self.directory, exc)
        with self._lock:
            for seg, n in settled.items():
                seg.live -= n
        for seg in list(self._spool.segments):
            if seg.live <= 0 and not seg.unread and (
                    seg.sealed or seg.size >= self._spool.segment_bytes):
                self._spool.delete(seg)

    # -- reading -------------------------------------------------------------------------------
    def _refill_due(self) -> bool:
        return bool(self._unread) and len(self._ready) <= self.read_ahead // 2

    def _refill_step(self) -> None:
        with self._lock:
            if not self._refill_due():
                return
            room = self.read_ahead - len(self._ready)
            seg = next((s for s in self._spool.segments if s.unread), None)
            if seg is None:  # cannot happen; never spin on it
                self._unread = 0
                return
        try:
            got, offset = self._spool.read(seg, room)
        except OSError as exc:
            self._stats["disk_errors"] += 1
            logger.error("cannot read %s (%s): its %d event(s) are left there, unsent (the "
                         "next process on this directory tries them again)", seg.path, exc,
                         seg.unread)
            with self._lock:
                self._unread -= seg.unread
                self._drops["unreadable"] = self._drops.get("unreadable", 0) + seg.unread
                seg.runs.clear()
                seg.unread = 0
            return
        decoded: list[Record | None] = []
        for _, _, body in got:  # outside the lock: the sender may take meanwhile
            try:
                decoded.append(decode_record(body))
            except (FormatError, UnicodeDecodeError, ValueError):
                decoded.append(None)
        records: list[Record] = []
        locs: list[Loc] = []
        bad: list[Loc] = []
        with self._lock:
            if seg.deleted:
                return
            seqs = seg.take_seqs(len(got))
            for seq, (start, end, _), record in zip(seqs, got, decoded, strict=False):
                if record is None:
                    bad.append((seq, seg, start, end))
                else:
                    records.append(record)
                    locs.append((seq, seg, start, end))
            self._ready.extend(records)
            self._ready_locs.extend(locs)
            self._unread -= len(seqs)
            seg.read_offset = offset
            if seg.sealed and offset >= seg.size and seg.unread:  # fewer than counted
                self._unread -= seg.unread
                seg.live -= seg.unread
                seg.runs.clear()
                seg.unread = 0
            if bad:
                self._acks.append(bad)
                self._spool.corrupt_bytes += sum(loc[3] - loc[2] for loc in bad)
                self._drops["corrupt"] = self._drops.get("corrupt", 0) + len(bad)
        if records:
            self._ready_now()

    # -- adopting ------------------------------------------------------------------------------
    def _scan_step(self, now: float) -> None:
        self._next_scan = now + self.scan_interval
        spool = self._spool
        spool.rescan_bytes()
        if not self._closing:
            try:
                found = spool.adopt_orphans()
            except OSError as exc:
                found = []
                self._warn_once("adopt", "cannot look for events of dead processes in %s "
                                "(%s)", self.directory, exc)
            if found:
                with self._lock:
                    for seg in found:
                        seg.add_unread(self._adopt_seq, seg.live)
                        self._adopt_seq += seg.live
                        self._unread += seg.live
                        self._stats["adopted"] += seg.live
                        bisect.insort(spool.segments, seg, key=lambda s: s.created)
                logger.info("adopted %d event(s) left in %s by processes that are gone (%d "
                            "of them were in a request then: the collector may have those "
                            "already)", sum(s.live for s in found), self.directory,
                            spool.in_flight_adopted)
        self._adopt_wanted = False
        self._adopt_done.set()

    def _ready_now(self) -> None:
        """Records became takeable: if a ``take()`` found none before, the sender may be
        asleep for up to ``flush_interval``; ask the emitter to take now (no lock held)."""
        wakeup = self._wakeup
        if self._starved and wakeup is not None:
            self._starved = False
            wakeup()


def _ranges(locs: list[Loc]) -> list[tuple[Segment, int, int, int]]:
    """*locs* as ``(segment, start, end, records)`` runs of adjacent frames."""
    out: list[tuple[Segment, int, int, int]] = []
    for _, seg, start, end in locs:
        if seg is None:
            continue
        if out and out[-1][0] is seg and out[-1][2] == start:
            last = out[-1]
            out[-1] = (seg, last[1], end, last[3] + 1)
        else:
            out.append((seg, start, end, 1))
    return out
