"""``python -m snowplow_threaded demo``: a short, real run of the tracker's process model.

1. Start the embedded collector on a free port (with one schema of the demo's own, to show
   user schemas).
2. The parent builds a tracker with ``Snowplow.create_tracker`` and tracks a few events, then
   forks worker processes (``multiprocessing``, ``fork``) while its sender thread runs.
3. In each worker, threads track a mix of events (structured, self-describing with context
   entities, page views, screen views) at a steady pace, timing every ``track()``.
4. Part way through, the collector goes down (answers ``503``) for a few seconds; the
   emitters retry with backoff and catch up when it is back.
5. Workers just return: the library flushes at process exit. Each worker reports the event
   ids it tracked and its emitter's final counters from an exit hook that runs after that
   flush.
6. The parent compares event ids: every tracked event must have arrived exactly once, good.

Progress goes to stderr (one updating line on a terminal), the summary table to stdout.
Exit status 0 only if delivery was exact.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.sharedctypes
import multiprocessing.util
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from . import (
    EmitterConfiguration,
    PageView,
    ScreenView,
    SelfDescribing,
    SelfDescribingJson,
    Snowplow,
    StructuredEvent,
    Subject,
    Tracker,
)
from .collector import Collector
from .events import Event

__all__ = ["add_arguments", "run"]

NAMESPACE = "snowplow-threaded-demo"
APP_ID = "snowplow-threaded-demo"
STEP_SCHEMA = "iglu:com.example.demo/step/jsonschema/1-0-0"
_STEP_SCHEMA_DOC = {
    "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/"
               "jsonschema/1-0-0#",
    "self": {"vendor": "com.example.demo", "name": "step", "format": "jsonschema",
             "version": "1-0-0"},
    "type": "object",
    "properties": {"worker": {"type": "integer", "minimum": 0},
                   "thread": {"type": "integer", "minimum": 0},
                   "seq": {"type": "integer", "minimum": 0},
                   "phase": {"enum": ["warm-up", "steady", "wind-down"]}},
    "required": ["worker", "thread", "seq"],
    "additionalProperties": False,
}
_WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
_LINK_CLICK = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options, on *parser*."""
    parser.add_argument("--processes", type=int, default=4, help="worker processes (4)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (4)")
    parser.add_argument("--events", type=int, default=1500,
                        help="events tracked by each thread (1500)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds the workers spread their events over (10)")
    parser.add_argument("--outage", type=float, default=3.0,
                        help="seconds the collector answers 503, starting at 30%% of the "
                             "run (3; 0 for none)")


def _event(worker: int, thread: int, seq: int, phase: str) -> Event:
    page = SelfDescribingJson(_WEB_PAGE, {"id": str(uuid.uuid4())})
    kind = seq % 5
    if kind == 0:
        return StructuredEvent("demo", "step", label=f"w{worker}t{thread}", value=seq,
                               context=[page])
    if kind == 1:
        return SelfDescribing(SelfDescribingJson(STEP_SCHEMA, {
            "worker": worker, "thread": thread, "seq": seq, "phase": phase}), context=[page])
    if kind == 2:
        return PageView(f"https://shop.example.com/w{worker}/p{seq}?t={thread}", "Demo page")
    if kind == 3:
        return ScreenView(str(uuid.uuid4()), f"screen-{seq % 7}", context=[page])
    return SelfDescribing(SelfDescribingJson(_LINK_CLICK, {
        "targetUrl": f"https://example.com/{seq}", "elementClasses": ["demo", "link"]}))


def _track_paced(tracker: Tracker, worker: int, thread: int, events: int, duration: float,
                 progress: Any) -> tuple[list[str], list[int]]:
    """Track *events* events spread over *duration* seconds; returns their ids and the
    time each ``track()`` took (ns). Each event is counted in the shared *progress*
    before it is tracked, so that it cannot be delivered before it is counted (see
    :func:`_progress_counts`)."""
    eids: list[str] = []
    timings: list[int] = []
    interval = duration / max(events, 1)
    start = time.monotonic()
    for seq in range(events):
        delay = start + seq * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        phase = "warm-up" if seq < events // 10 else "steady"
        event = _event(worker, thread, seq, phase if seq < events - 10 else "wind-down")
        with progress.get_lock():
            progress.value += 1
        t0 = time.perf_counter_ns()
        eids.append(tracker.track(event))
        timings.append(time.perf_counter_ns() - t0)
    return eids, timings


def _progress_counts(collector: Collector, progress: Any, parent_tracked: int
                     ) -> tuple[int, int]:
    """(tracked, delivered) for the progress line, consistent with each other: delivered
    is read first, and every event is counted as tracked before it is tracked, so the line
    never shows more delivered than tracked."""
    delivered = collector.summary().received_good
    return int(progress.value) + parent_tracked, delivered


def _worker(index: int, threads: int, events: int, duration: float, report_dir: str,
            progress: Any) -> None:
    """A forked worker: track from *threads* threads, then return (the library flushes at
    exit; the report is written by an exit hook that runs after that flush)."""
    tracker = Snowplow.get_tracker(NAMESPACE)
    assert tracker is not None, "the tracker is inherited from the parent"
    eids: list[str] = []
    latencies: list[int] = []
    lock = threading.Lock()

    def track_many(thread: int) -> None:
        mine, timings = _track_paced(tracker, index, thread, events, duration, progress)
        with lock:
            eids.extend(mine)
            latencies.extend(timings)

    def report() -> None:
        stats = tracker.stats()
        data = {"worker": index, "pid": os.getpid(), "eids": eids, "latencies_ns": latencies,
                "stats": stats.as_dict()}
        path = Path(report_dir, f"worker-{index}.json")
        path.with_suffix(".tmp").write_text(json.dumps(data))
        path.with_suffix(".tmp").replace(path)

    # exitpriority 0 runs after the library's own exit close (priority 100)
    multiprocessing.util.Finalize(None, report, exitpriority=0)
    workers = [threading.Thread(target=track_many, args=(t,)) for t in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()


class _Progress:
    """One status line on stderr: rewritten in place on a terminal, else every 2 s."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            sys.stderr.write("\r" + text.ljust(100)[:110])
        elif force or now - self.last >= 2.0:
            sys.stderr.write(text + "\n")
            self.last = now
        else:
            return
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _percentile(values: list[int], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def _make_tracker(endpoint: str) -> Tracker:
    Snowplow.remove_tracker_by_namespace(NAMESPACE)
    config = EmitterConfiguration(batch_size=25, buffer_capacity=50_000, flush_interval=0.2,
                                  max_retry_delay_seconds=1.0, shutdown_timeout=15.0,
                                  flush_timeout=30.0)
    return Snowplow.create_tracker(namespace=NAMESPACE, endpoint=endpoint, app_id=APP_ID,
                                   subject=Subject().set_platform("srv"),
                                   emitter_config=config)


def run(args: argparse.Namespace) -> int:
    """Run the demo with parsed *args*; 0 if every event arrived exactly once."""
    if min(args.processes, args.threads, args.events) < 1 or args.duration <= 0:
        sys.stderr.write("processes, threads and events must be >= 1, duration > 0\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="snowplow-demo-") as tmp:
        schema_path = Path(tmp, "schemas", "com.example.demo", "step", "jsonschema", "1-0-0")
        schema_path.parent.mkdir(parents=True)
        schema_path.write_text(json.dumps(_STEP_SCHEMA_DOC))
        reports = Path(tmp, "reports")
        reports.mkdir()
        expected = args.processes * args.threads * args.events
        with Collector(schemas=[schema_path.parents[3]], max_events=2 * expected + 10_000) as c:
            return _run(args, c, str(reports))


def _run(args: argparse.Namespace, collector: Collector, report_dir: str) -> int:
    tracker = _make_tracker(collector.endpoint)
    parent_eids = [tracker.track(StructuredEvent("demo", "parent-start", value=i))
                   for i in range(20)]
    progress_value = multiprocessing.get_context("fork").Value("q", 0)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, name=f"demo-worker-{w}",
                         args=(w, args.threads, args.events, args.duration, report_dir,
                               progress_value)) for w in range(args.processes)]
    outage_from = 0.3 * args.duration
    outage_to = outage_from + args.outage
    sys.stderr.write(f"demo: collector {collector.endpoint}; {args.processes} processes x "
                     f"{args.threads} threads x {args.events} events over ~{args.duration:g} s"
                     + (f"; collector down {outage_from:.1f}-{outage_to:.1f} s\n"
                        if args.outage > 0 else "\n"))
    start = time.monotonic()
    for p in procs:
        p.start()
    line = _Progress()
    next_beat = start
    deadline = start + 3 * args.duration + args.outage + 60
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        elapsed = time.monotonic() - start
        if args.outage > 0 and outage_from <= elapsed < outage_to and not collector.paused:
            collector.pause(503)
            line.show(f"{elapsed:5.1f}s  collector DOWN (503)", force=True)
        elif collector.paused and elapsed >= outage_to:
            collector.resume()
            line.show(f"{elapsed:5.1f}s  collector back up", force=True)
        if time.monotonic() >= next_beat:
            parent_eids.append(tracker.track(StructuredEvent("demo", "parent-heartbeat")))
            next_beat += 1.0
        tracked, delivered = _progress_counts(collector, progress_value, len(parent_eids))
        line.show(f"{elapsed:5.1f}s  tracked {tracked:>7,}  delivered {delivered:>7,} good / "
                  f"{collector.summary().received_bad} bad  "
                  f"collector {'DOWN' if collector.paused else 'up'}")
        time.sleep(0.25)
    collector.resume()
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    tracker.flush(timeout=30)
    return _report(args, collector, tracker, procs, parent_eids, report_dir, start, line)


def _report(args: argparse.Namespace, collector: Collector, tracker: Tracker,
            procs: list[Any], parent_eids: list[str], report_dir: str, start: float,
            line: _Progress) -> int:
    workers = []
    for w in range(args.processes):
        path = Path(report_dir, f"worker-{w}.json")
        workers.append(json.loads(path.read_text()) if path.exists() else None)
    tracked = list(parent_eids)
    latencies: list[int] = []
    retried = tracker.stats().retried
    emitter_dropped = tracker.stats().dropped_total
    for report in workers:
        if report is not None:
            tracked.extend(report["eids"])
            latencies.extend(report["latencies_ns"])
            retried += report["stats"]["retried"]
            emitter_dropped += sum(report["stats"]["dropped"].values())
    # every sender is done: the workers have exited (their exit flush answered) and the
    # parent's emitter is closed, so nothing, not even a late duplicate, can still arrive
    tracker.close(timeout=5)
    collector.wait_for(len(tracked), timeout=15, kind="good")
    elapsed = time.monotonic() - start
    line.show(f"{elapsed:5.1f}s  done", force=True)
    line.end()
    received = Counter(e.parameters.get("eid") for e in collector.good()
                       if e.parameters.get("aid") == APP_ID)
    tracked_set = set(tracked)
    delivered = sum(1 for eid in tracked_set if received[eid] > 0)
    duplicates = sum(n - 1 for n in received.values() if n > 1)
    missing = len(tracked_set) - delivered
    unexpected = sum(n for eid, n in received.items() if eid not in tracked_set)
    bad = collector.summary().received_bad
    failed_workers = [p.name for p in procs if p.exitcode != 0]
    flushed = sum(1 for r in workers if r is not None and r["stats"]["queued"] == 0)
    rows = [
        ("tracked", f"{len(tracked):,}",
         f"{len(tracked) - len(parent_eids):,} by workers, {len(parent_eids)} by the parent"),
        ("delivered", f"{delivered:,}", f"good events at the collector; {bad} bad"),
        ("duplicates", f"{duplicates:,}", "events that arrived more than once"),
        ("dropped", f"{missing:,}", f"tracked but never delivered (emitters counted "
                                    f"{emitter_dropped} dropped)"),
        ("retries", f"{retried:,}", f"events sent again; the collector refused "
                                    f"{collector.stats()['refused_while_paused']} requests "
                                    f"while down"),
        ("track() p50", f"{_percentile(latencies, 0.50):.1f} us", "on the calling thread"),
        ("track() p99", f"{_percentile(latencies, 0.99):.1f} us", ""),
        ("events/s", f"{delivered / elapsed:,.0f}", f"delivered / {elapsed:.1f} s wall time"),
        ("flushed at exit", f"{flushed} of {args.processes}",
         "workers that exited with nothing left to send"),
    ]
    out = [f"snowplow_threaded demo: {args.processes} processes x {args.threads} threads, "
           f"collector outage {args.outage:g} s", ""]
    out += [f"  {name:<16}{value:>12}   {note}".rstrip() for name, value, note in rows]
    ok = not (missing or duplicates or unexpected or bad or failed_workers
              or None in workers)
    if failed_workers or None in workers:
        out.append(f"\nworkers that failed or did not report: {failed_workers or 'some'}")
    if unexpected:
        out.append(f"\n{unexpected} events arrived that nobody tracked")
    out.append("\nOK: every tracked event arrived exactly once" if ok
               else "\nFAILED: delivery was not exact")
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    return 0 if ok else 1
