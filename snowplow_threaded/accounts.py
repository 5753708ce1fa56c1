"""What an emitter lost, and saying so: never silently.

An event is *dropped* when it never reaches a request: the buffer was full
(``buffer_full``, ``evicted_oldest``), it was tracked after ``close()`` (``closed``), or
``close()`` ran out of time (``shutdown_timeout``); it *failed* when the collector refused
it, or it was given up after ``max_retries``. :class:`Accounts` is an emitter's account of
what became of its events: the counts of ``stats()``, the drops by reason, and
(:class:`LossLedger`) which events were lost, for ``flush()`` and ``close()`` to say
whether everything since the previous call was delivered. Its :class:`DropReport` turns
the drops into:

* one WARNING at the first drop in a process, naming the count, the reason and the
  setting to change;
* then at most one summary WARNING per :data:`SUMMARY_INTERVAL` while drops continue
  (and one more for the drops after the last summary, at the next report);
* ``on_drop(reason, count)`` calls with the count since the previous call, at most about
  once per :data:`CALLBACK_INTERVAL` while drops continue, and at every ``flush()`` and
  ``close()``.

:meth:`DropReport.report` is called with the totals by the thread that drops (when
:meth:`due`), by the sender threads after each request and by ``flush()``/``close()``.
Thread-safe: one lock (``_lock``) guards the counts and times; it is never held while
logging or calling ``on_drop``, and ``_report_lock`` keeps two reports from interleaving (a
re-entrant lock: an ``on_drop`` or a log handler that tracks, and drops, reports within).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .stats import EmitterStats
from .typing import DropCallback

if TYPE_CHECKING:
    from .event_store import BatchStore, Lease
    from .settings import EmitterSettings
    from .worker import Verdict

logger = logging.getLogger("snowplow_threaded.accounts")

#: Most seconds between two summary warnings while drops continue.
SUMMARY_INTERVAL = 60.0
#: Most seconds between two on_drop calls while drops continue.
CALLBACK_INTERVAL = 1.0

#: What to change, per reason.
ADVICE = {
    "buffer_full": "the buffer was full: raise buffer_max_bytes or buffer_capacity, add "
                   "thread_count, or set when_full='block' (see docs/settings.md)",
    "evicted_oldest": "the buffer was full and when_full='drop_oldest' made room: raise "
                      "buffer_max_bytes or buffer_capacity, or add thread_count",
    "closed": "tracked after close(): close the emitter after the last track()",
    "shutdown_timeout": "close() (or the exit flush) ran out of time: raise "
                        "shutdown_timeout, or flush() earlier",
    # a DiskEventStore's (docs/disk-buffer.md)
    "corrupt": "a damaged record on disk could not be read (a torn write or a bad block): "
               "check the disk; stats().disk['corrupt_bytes']",
    "unreadable": "a segment file could not be read (an I/O error): check the disk",
    "disk_unavailable": "events kept in memory after a disk fault were not written by the "
                        "end: check the directory (stats().disk['last_disk_error'])",
}

#: The process that logged its first-drop warning (a forked child logs its own).
_warned_pid = [0]


class DropReport:
    """One emitter's drop accounting (see the module docstring). *name* says which
    emitter in the log; *settings* are quoted in the first warning."""

    def __init__(self, name: str, settings: Mapping[str, object],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.settings = dict(settings)
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget everything (in a forked child: new locks, nothing to say yet)."""
        self._lock = threading.Lock()
        self._report_lock = threading.RLock()
        self._told_callback: dict[str, int] = {}  # totals passed to on_drop so far
        self._told_log: dict[str, int] = {}  # totals logged so far
        self._next_call = 0.0  # monotonic time from which on_drop may be called again
        self._next_summary = 0.0  # ... a summary may be logged
        self.due_at = 0.0  # the dropping thread reports from then on (see due())

    def due(self) -> bool:
        """Whether the thread that just dropped an event should :meth:`report` (cheap)."""
        return self._clock() >= self.due_at

    def report(self, totals: Mapping[str, int], on_drop: DropCallback | None,
               final: bool = False) -> None:
        """Say what was dropped since the last report, given the *totals* by reason so
        far. *final* (``flush()``, ``close()``): call ``on_drop`` with everything not yet
        passed to it, whatever the time. Never raises."""
        now = self._clock()
        with self._report_lock:
            with self._lock:
                log_delta = _delta(totals, self._told_log)
                call_delta = _delta(totals, self._told_callback)
                first = bool(log_delta) and _warned_pid[0] != os.getpid()
                summary = bool(log_delta) and not first and now >= self._next_summary
                if first:
                    _warned_pid[0] = os.getpid()
                if first or summary:
                    self._told_log = dict(totals)
                    self._next_summary = now + SUMMARY_INTERVAL
                call = bool(call_delta) and on_drop is not None and (
                    final or now >= self._next_call)
                if call:
                    self._told_callback = dict(totals)
                    self._next_call = now + CALLBACK_INTERVAL
                elif on_drop is None:
                    self._told_callback = dict(totals)
                # the next drop reports when a summary or a call can be made
                self.due_at = min(self._next_summary,
                                  self._next_call if on_drop is not None else self._next_summary)
            if first:
                self._log_first(log_delta)
            elif summary:
                self._log_summary(log_delta, totals)
            if call and on_drop is not None:
                for reason, count in call_delta.items():
                    try:
                        on_drop(reason, count)
                    except Exception:
                        logger.exception("on_drop callback raised; the emitter goes on")

    def _log_first(self, delta: Mapping[str, int]) -> None:
        for reason, count in delta.items():
            logger.warning(
                "snowplow emitter %s dropped %d event(s) (%s): %s. Settings: %s. Dropped "
                "events are counted in stats().dropped and passed to on_drop; further drops "
                "are summed up at most once a minute", self.name, count, reason,
                ADVICE.get(reason, "see docs/settings.md"),
                ", ".join(f"{k}={v!r}" for k, v in self.settings.items()))

    def _log_summary(self, delta: Mapping[str, int], totals: Mapping[str, int]) -> None:
        logger.warning(
            "snowplow emitter %s dropped %d more event(s) (%s); %d since it started. %s",
            self.name, sum(delta.values()),
            ", ".join(f"{reason}: {count}" for reason, count in delta.items()),
            sum(totals.values()),
            "; ".join(ADVICE.get(reason, reason) for reason in delta))


def _delta(totals: Mapping[str, int], told: Mapping[str, int]) -> dict[str, int]:
    return {reason: count - told.get(reason, 0) for reason, count in totals.items()
            if count > told.get(reason, 0)}


class LossLedger:
    """What ``flush()`` and ``close()`` need to say whether every event tracked since the
    previous ``flush()``/``close()`` call (or the start) and before theirs was delivered.

    Events lost at admission (refused when full, tracked after close) are counted when
    tracked, so a count read at each call says how many of them fell between two calls.
    Events lost after admission (refused by the collector, given up after
    ``max_retries``) are recorded by sequence number, as merged ``[lo, hi)`` ranges (at
    most :data:`MAX_RANGES`: beyond, the two closest merge, which can only make a call
    say False where True was due). What the store drops itself (``drop_oldest``
    evictions, which take the oldest events first; a disk store's full directory or
    unreadable segment) is known by count only, so any such drop from the previous call
    to the end of this one counts.

    Not locked: used under its dispatcher's lock.
    """

    MAX_RANGES = 64

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []
        #: (sequence number, admission drops, the store's drops) at the previous call
        self.mark = (0, 0, 0)
        self._open: list[int] = []  # the first seq of every window still waited on

    def lost(self, lo: int, hi: int) -> None:
        """Events with sequence numbers in ``[lo, hi)`` were lost."""
        if hi <= lo:
            return
        ranges = self.ranges
        ranges.append([lo, hi])
        ranges.sort()
        merged = [ranges[0]]
        for item in ranges[1:]:
            if item[0] <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], item[1])
            else:
                merged.append(item)
        while len(merged) > self.MAX_RANGES:
            gaps = [merged[i + 1][0] - merged[i][1] for i in range(len(merged) - 1)]
            i = gaps.index(min(gaps))
            merged[i:i + 2] = [[merged[i][0], merged[i + 1][1]]]
        self.ranges = merged

    def begin(self, seq: int, admission_drops: int, store_drops: int) -> tuple[int, ...]:
        """A flush()/close() call: its window, from the previous call's mark to now."""
        start = self.mark
        self.mark = (seq, admission_drops, store_drops)
        self._open.append(start[0])
        return (start[0], seq, admission_drops - start[1], start[2])

    def end(self, window: tuple[int, ...], store_drops: int) -> bool:
        """Whether nothing tracked in *window* (from :meth:`begin`) was lost."""
        lo, hi, refused, store_before = window
        clean = (refused == 0 and store_drops == store_before
                 and not any(r[0] < hi and lo < r[1] for r in self.ranges))
        self._open.remove(lo)
        floor = min([*self._open, self.mark[0]])
        self.ranges = [r for r in self.ranges if r[1] > floor]
        return clean


class Accounts:
    """One emitter's account of what became of its events: the counts of
    :class:`~.stats.EmitterStats`, the drops by reason, which events were lost
    (:class:`LossLedger`) and the reports (:class:`DropReport`). Plain bookkeeping: the
    dispatcher decides, this counts.

    Lock: ``_lock`` guards everything here; it may be taken under the dispatcher's lock,
    and the store's lock may be taken under it (never the reverse). :meth:`refused` takes
    none: the events refused when the buffer is full are counted with ``next()`` on an
    ``itertools.count``, one C call, atomic under the GIL (producers that outrun the sender
    all come there, and a lock made them convoy). :meth:`say` must run with no lock held:
    it logs and calls ``on_drop``."""

    def __init__(self, name: str, store: BatchStore, settings: EmitterSettings,
                 on_drop: Callable[[], DropCallback | None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._on_drop = on_drop  # the emitter's on_drop as it is now
        self.reports = DropReport(name, {
            "buffer_capacity": getattr(store, "buffer_capacity", None),
            "buffer_max_bytes": getattr(store, "max_bytes", None),
            "when_full": settings.when_full, "thread_count": settings.thread_count}, clock)
        self.reset()

    def reset(self) -> None:
        """Forget everything: at init, and in a forked child (no lock taken)."""
        self._lock = threading.Lock()
        self.counts = {"sent": 0, "failed": 0, "retried": 0, "requests": 0, "bytes": 0,
                       "split_requests": 0}
        self.last_error: str | None = None
        self.dropped: dict[str, int] = {}
        self._rejections = itertools.count()
        self._rejection_reads = 0  # each read takes one from the count too
        self.ledger = LossLedger()
        self.reports.reset()

    def refused(self) -> None:
        """An event refused when the buffer was full (no lock: see the class)."""
        next(self._rejections)

    def drop(self, reason: str, count: int) -> None:
        """*count* events dropped for *reason* (see :meth:`say`)."""
        if count:
            with self._lock:
                self.dropped[reason] = self.dropped.get(reason, 0) + count

    def attempt(self, lease: Lease, verdict: Verdict, retry: bool) -> None:
        """Count an attempt at *lease* (*retry*: what is left goes back), before the store
        settles it: what was sent, refused, retried, given up or dropped, and which events
        were lost (by sequence number: :meth:`.event_store.Lease.seq_at`)."""
        result, counts = verdict.result, self.counts
        rest = len(lease) - verdict.done
        if rest and verdict.retry and not retry:  # close() gave up meanwhile
            self.drop("shutdown_timeout", rest)
        with self._lock:
            counts["requests"] += result.requests
            counts["bytes"] += result.nbytes
            counts["split_requests"] += result.split_requests
            counts["sent"] += verdict.delivered
            counts["failed"] += verdict.failed
            counts["retried"] += rest if retry else 0
            if result.error is not None:
                self.last_error = result.error
            seq_at = lease.seq_at
            for index in result.refused:
                self.ledger.lost(seq_at(index), seq_at(index) + 1)
            if rest and not verdict.retry:  # a gap in between was lost anyway
                self.ledger.lost(seq_at(verdict.done), seq_at(len(lease) - 1) + 1)
            if lease.unsendable:  # from a user's store, whose sequence numbers are counts
                base = lease.oldest_seq
                self.ledger.lost(base, base + len(lease) + len(lease.unsendable))

    def dropped_by_reason(self) -> dict[str, int]:
        """Every event dropped so far, by reason (the store's evictions included)."""
        with self._lock:
            return self._dropped_locked()

    def _dropped_locked(self) -> dict[str, int]:
        counts = self._own_drops_locked()
        for reason, count in self._store.drop_counts().items():
            counts[reason] = counts.get(reason, 0) + count
        return counts

    def _own_drops_locked(self) -> dict[str, int]:
        """The drops counted here (not the store's own)."""
        counts = dict(self.dropped)
        rejected = next(self._rejections) - self._rejection_reads
        self._rejection_reads += 1
        if rejected:
            counts["buffer_full"] = counts.get("buffer_full", 0) + rejected
        return counts

    def _admission_drops_locked(self) -> int:
        own = self._own_drops_locked()
        return own.get("buffer_full", 0) + own.get("closed", 0)

    def begin(self, target: int) -> tuple[int, ...]:
        """A flush()/close() call for the events before sequence number *target*."""
        with self._lock:
            return self.ledger.begin(target, self._admission_drops_locked(),
                                     sum(self._store.drop_counts().values()))

    def end(self, window: tuple[int, ...]) -> bool:
        """Whether every event of *window* (:meth:`begin`) was delivered."""
        with self._lock:
            return self.ledger.end(window, sum(self._store.drop_counts().values()))

    def snapshot(self, tracked: int, pending: int, in_flight: int) -> EmitterStats:
        with self._lock:
            return EmitterStats.snapshot(tracked=tracked, pending=pending,
                                         in_flight=in_flight, counts=self.counts,
                                         dropped=[self._dropped_locked()],
                                         last_error=self.last_error)

    def warn_undelivered(self, count: int, kept: bool) -> None:
        """close() ran out of time with *count* events not delivered (in flight or given
        up) besides those its store still holds; a store that *kept* them (on disk) holds
        them for the next process: they are not lost. No lock held."""
        count += self._store.pending()
        where = ("its store keeps them for the next process" if kept
                 else "collector unreachable or too slow within the deadline")
        logger.warning("emitter %s closed with %d event(s) undelivered (%s; last error: "
                       "%s)", self.reports.name, count, where, self.last_error)

    def say(self, final: bool = False) -> None:
        """Say what was dropped (:meth:`DropReport.report`): by the thread that dropped an
        event, when a report :meth:`DropReport.due` (cheap to ask); after each request;
        and (*final*) at flush()/close(). No lock may be held."""
        if final or self.reports.due():
            self.reports.report(self.dropped_by_reason(), self._on_drop(), final)
