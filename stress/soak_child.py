"""The tracking side of one fault-soak scenario, run in its own process by :mod:`stress.soak`.

``python -m stress.soak_child <spec.json>``. The orchestrator owns the collector and its
faults; this process only tracks, so its peak RSS and ``track()`` latency are the
tracker's own, and a fork storm forks a process that runs no collector threads.

Protocol (one line each on stdout; the orchestrator answers on stdin):

* ``READY`` — the tracker is built; then wait for ``GO`` on stdin (faults set up).
* ``TRACKED`` — every producer thread (and every forked child) is done tracking.
* ``FLUSHED 1|0`` — ``flush(flush_timeout)`` returned True/False.
* ``DONE`` — ``close(close_timeout)`` returned; the result JSON is written.

The result (``spec["result_file"]``): every eid ``track()`` returned, the eids the emitter
refused at admission and those passed to ``on_failure``, ``emitter.stats()`` after close,
max ``track()`` latency, peak RSS, the warnings the library logged, and the same for
every forked child (``kids``).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import requests

from snowplow_threaded import Emitter, StructuredEvent, Tracker
from snowplow_threaded.record import payload_of
from snowplow_threaded.typing import PayloadDict
from stress.crew import Crew

Spec = dict[str, Any]
_PACE_CHUNK = 20  # a paced producer sleeps once per this many events


class SoakEmitter(Emitter):
    """An :class:`Emitter` that remembers the eid of every event it refused at admission
    (``admit_record`` returned False: buffer full, or closed)."""

    rejected: list[str]

    def admit_record(self, record: bytes, pid: int = 0) -> bool:
        admitted = super().admit_record(record, pid)
        if not admitted:
            self.rejected.append(str(payload_of(record).get("eid")))
        return admitted


class Observer:
    """The callbacks, a log handler and the latency maximum of one process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failure_eids: dict[str, None] = {}  # insertion-ordered set
        self.failure_calls = 0
        self.success_events = 0
        self.max_track_ns = 0
        self.warnings: list[str] = []

    def on_success(self, payloads: list[PayloadDict]) -> None:
        with self.lock:
            self.success_events += len(payloads)

    def on_failure(self, success_count: int, payloads: list[PayloadDict]) -> None:
        with self.lock:
            self.failure_calls += 1
            for payload in payloads:
                self.failure_eids[str(payload.get("eid"))] = None

    def note_latency(self, ns: int) -> None:
        with self.lock:
            self.max_track_ns = max(self.max_track_ns, ns)


class _Capture(logging.Handler):
    def __init__(self, observer: Observer) -> None:
        super().__init__(logging.WARNING)
        self.observer = observer

    def emit(self, record: logging.LogRecord) -> None:
        with self.observer.lock:
            self.observer.warnings.append(record.getMessage())


def build(spec: Spec, observer: Observer) -> tuple[Tracker, SoakEmitter]:
    settings = dict(spec["emitter"])
    if "request_timeout" in settings and isinstance(settings["request_timeout"], list):
        settings["request_timeout"] = tuple(settings["request_timeout"])
    if spec.get("session_verify"):
        session = requests.Session()
        session.verify = spec["session_verify"]
        settings["session"] = session
    emitter = SoakEmitter(spec["endpoint"], on_success=observer.on_success,
                          on_failure=observer.on_failure, **settings)
    emitter.rejected = []
    logger = logging.getLogger("snowplow_threaded")
    logger.addHandler(_Capture(observer))
    logger.setLevel(logging.WARNING)
    return Tracker("soak", emitter, app_id="soak"), emitter


def produce(tracker: Tracker, observer: Observer, label: str, count: int,
            rate: float | None) -> list[str]:
    """Track *count* events (paced at *rate* events/s if given); return their eids."""
    eids: list[str] = []
    began = time.perf_counter()
    longest = 0
    clock = time.perf_counter_ns
    for i in range(count):
        event = StructuredEvent("soak", "track", label=label, value=i)
        t0 = clock()
        eids.append(tracker.track(event))
        elapsed = clock() - t0
        if elapsed > longest:
            longest = elapsed
        if rate and i % _PACE_CHUNK == _PACE_CHUNK - 1:
            delay = began + (i + 1) / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    observer.note_latency(longest)
    return eids


def peak_rss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # Linux: KiB


def summary(emitter: SoakEmitter, observer: Observer, eids: list[str]) -> dict[str, Any]:
    with observer.lock:
        return {
            "tracked_eids": eids,
            "rejected_eids": list(emitter.rejected),
            "failure_eids": list(observer.failure_eids),
            "failure_calls": observer.failure_calls,
            "success_events": observer.success_events,
            "max_track_us": observer.max_track_ns / 1000,
            "warnings": len(observer.warnings),
            "warning_samples": sorted(set(observer.warnings))[:3],
            "stats": emitter.stats().as_dict(),
            "peak_rss_kb": peak_rss_kb(),
        }


def run_kid(spec: Spec, tracker: Tracker, emitter: SoakEmitter, observer: Observer,
            index: int, out: Path) -> None:
    """In a forked child: track, flush, write a result, and ``os._exit`` (never returns)."""
    status = 1
    try:
        # a parent thread may have held this lock at fork time: never acquire the copy
        observer.lock = threading.Lock()
        with observer.lock:  # counters of the parent's copy mean nothing here
            observer.failure_eids = {}
            observer.failure_calls = observer.success_events = observer.max_track_ns = 0
            observer.warnings = []
        emitter.rejected = []
        eids = produce(tracker, observer, f"kid-{index}", spec["child_events"], None)
        flushed = tracker.flush(timeout=spec["flush_timeout"])
        result = summary(emitter, observer, eids)
        result["flush_ok"] = flushed
        result["pid"] = os.getpid()
        (out / f"kid-{index}.json").write_text(json.dumps(result))
        status = 0 if flushed else 2
    except BaseException:
        (out / f"kid-{index}.error").write_text(traceback.format_exc())
    finally:
        os._exit(status)


def fork_storm(spec: Spec, tracker: Tracker, emitter: SoakEmitter, observer: Observer
               ) -> list[dict[str, Any]]:
    """Fork ``fork_children`` children (one every ``fork_interval`` s) that each track
    ``child_events`` events; reap them and read their results."""
    out = Path(spec["result_file"]).with_suffix(".kids")
    out.mkdir(exist_ok=True)
    pids: dict[int, int] = {}
    for index in range(spec["fork_children"]):
        pid = os.fork()
        if pid == 0:
            run_kid(spec, tracker, emitter, observer, index, out)
        pids[pid] = index
        time.sleep(spec["fork_interval"])
    kids: list[dict[str, Any]] = []
    for pid, index in pids.items():
        _, status = os.waitpid(pid, 0)
        path = out / f"kid-{index}.json"
        kid: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        error = out / f"kid-{index}.error"
        kid.update(index=index, exit_status=os.waitstatus_to_exitcode(status),
                   error=error.read_text() if error.exists() else None)
        kids.append(kid)
    kid_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    for kid in kids:
        kid["children_peak_rss_kb"] = kid_rss
    return kids


def settle_after_close(emitter: SoakEmitter, spec: Spec) -> None:
    """``close()`` returns by its deadline even with a request under way (it ends, and is
    counted, up to ``request_timeout`` later): wait for that (bounded) before the stats
    are read."""
    timeout = spec["emitter"].get("request_timeout", 10)
    limit = time.monotonic() + 1 + (max(timeout) if isinstance(timeout, list) else timeout)
    while emitter.stats().in_flight and time.monotonic() < limit:
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    spec: Spec = json.loads(Path(argv[1]).read_text())
    observer = Observer()
    tracker, emitter = build(spec, observer)
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 3
    began = time.monotonic()
    threads = spec["threads"]
    results: list[list[str]] = [[] for _ in range(threads)]

    def producer(n: int) -> None:
        results[n] = produce(tracker, observer, f"thread-{n}", spec["events"], spec["rate"])

    # a producer that raises fails the run at once, with its error (see Crew); the limit
    # is a backstop: soak.py ends this process at its own budget, which is shorter
    limit = (spec["events"] / spec["rate"] if spec["rate"] else 0.0) + 300.0
    crew = Crew(producer, threads, name="producer", timeout=limit)
    crew.start()
    crew.go()
    kids = fork_storm(spec, tracker, emitter, observer) if spec["fork_children"] else []
    crew.join()
    tracked_at = time.monotonic()
    print("TRACKED", flush=True)
    flushed = tracker.flush(timeout=spec["flush_timeout"])
    flushed_at = time.monotonic()
    print(f"FLUSHED {int(flushed)}", flush=True)
    closed = tracker.close(timeout=spec["close_timeout"])
    settle_after_close(emitter, spec)
    result = summary(emitter, observer, [eid for chunk in results for eid in chunk])
    result.update(flush_ok=flushed, close_ok=closed, kids=kids,
                  track_s=tracked_at - began, flush_s=flushed_at - tracked_at,
                  total_s=time.monotonic() - began)
    Path(spec["result_file"]).write_text(json.dumps(result))
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
