"""The on-disk format, measured: the segment files DiskEventStore uses against SQLite in
WAL mode doing the same work, plus the record encoding (format 2 stores the engine's
record as it is; format 1's NUL-joined dict is measured beside it).

For each candidate, one I/O thread does what the store's I/O thread does for ``--events``
records: write them in batches of 1 000 (one ``write()``; one transaction), read them back
in order in batches of 500, and record each batch as delivered (an ack entry; a
``DELETE``). Meanwhile the main thread appends to a deque in a loop, as ``track()`` does,
timing each append: that shows how much the I/O thread holds the GIL from the caller.
Reported per candidate (median of ``--repeat`` interleaved runs): the I/O thread's CPU per
event (``time.thread_time``), its wall time, the caller's p50/p99 per append while it runs,
and the bytes on disk per event once all is written (SQLite: database + WAL). The caller's
tail (p99.9, max) is where the GIL shows: an append that waits for the I/O thread to
hand the GIL back.

    python -m stress.disk_formats                    # 50 000 events, 5 runs
    python -m stress.disk_formats --events 10000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import timeit
from collections import deque
from collections.abc import Callable
from typing import Any

from snowplow_threaded import StructuredEvent, Tracker
from snowplow_threaded.disk.format import decode_record
from snowplow_threaded.disk.state import Loc
from snowplow_threaded.disk.store import DiskEventStore
from snowplow_threaded.emitters import Emitter
from snowplow_threaded.record import Record, payload_of


def sample_records(count: int) -> list[Record]:
    """Real tracker records: StructuredEvents as Tracker.track builds them."""
    captured: list[Record] = []

    class Capture(Emitter):
        def admit_record(self, record: Record, pid: int = 0) -> bool:
            captured.append(record)
            return True

    tracker = Tracker("bench", Capture("http://localhost"))
    for n in range(count):
        tracker.track(StructuredEvent("shop", "checkout", label=f"order-{n}", value=n))
    return captured


def run_segments(directory: str, records: list[Record]) -> int:
    """The store's own I/O code, driven directly (no emitter)."""
    store = DiskEventStore(directory, read_ahead=1, write_events=1000)
    store._start = lambda: None  # type: ignore[method-assign]  # this thread does the I/O
    for start in range(0, len(records), 1000):
        store._incoming.extend(records[start:start + 1000])
        store._write_batch()
    size = _dir_size(directory)
    store.read_ahead = 500
    while store._unread:
        store._refill_step()
        locs: list[Loc] = list(store._ready_locs)
        store._ready.clear()
        store._ready_locs.clear()
        store._acks.append(locs)
        store._ack_step()
    store._spool.close()
    return size


def run_sqlite(directory: str, records: list[Record]) -> int:
    """The same work with SQLite in WAL mode (synchronous=NORMAL: no fsync per commit, the
    same promise as the segment files' default: a process crash loses nothing written)."""
    db = sqlite3.connect(os.path.join(directory, "events.db"), isolation_level=None,
                         check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, owner INTEGER, body BLOB)")
    for start in range(0, len(records), 1000):
        rows = [(1, b"R" + r) for r in records[start:start + 1000]]
        db.execute("BEGIN")
        db.executemany("INSERT INTO events (owner, body) VALUES (?, ?)", rows)
        db.execute("COMMIT")
    size = _dir_size(directory)
    last = 0
    while True:
        rows = db.execute("SELECT id, body FROM events WHERE id > ? AND owner = 1 "
                          "ORDER BY id LIMIT 500", (last,)).fetchall()
        if not rows:
            break
        for _, body in rows:
            decode_record(body)
        last = rows[-1][0]
        db.execute("DELETE FROM events WHERE id <= ?", (last,))
    db.close()
    return size


def _dir_size(directory: str) -> int:
    return sum(e.stat().st_size for e in os.scandir(directory) if e.is_file())


def measure(name: str, run: Callable[[str, list[Record]], int],
            records: list[Record]) -> dict[str, Any]:
    directory = tempfile.mkdtemp(prefix=f"disk-formats-{name}-")
    result: dict[str, Any] = {}
    done = threading.Event()

    def io() -> None:
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        result["bytes"] = run(directory, records)
        result["cpu"] = time.thread_time() - cpu0
        result["wall"] = time.perf_counter() - wall0
        done.set()

    caller: deque[int] = deque()
    laps: list[int] = []
    thread = threading.Thread(target=io)
    clock = time.perf_counter_ns
    thread.start()
    while not done.is_set():
        t0 = clock()
        caller.append(t0)
        laps.append(clock() - t0)
        if len(caller) > 10_000:
            caller.clear()
    thread.join()
    shutil.rmtree(directory, ignore_errors=True)
    laps.sort()
    n = len(records)
    return {"name": name, "cpu_us": result["cpu"] / n * 1e6, "wall_us": result["wall"] / n * 1e6,
            "bytes_per_event": result["bytes"] / n, "caller_p50_ns": laps[len(laps) // 2],
            "caller_p99_ns": laps[int(len(laps) * 0.99)],
            "caller_p999_us": laps[int(len(laps) * 0.999)] / 1000, "caller_max_us": laps[-1] / 1000}


def codec(records: list[Record]) -> list[str]:
    record = records[0]
    body = b"R" + record
    payload = payload_of(record)
    nul = ("N" + "\0".join([*payload, *payload.values()])).encode()
    rows = []
    for name, fn in (("record frame body (format 2: `R` + the record)", lambda: b"R" + record),
                     ("format 1 body (NUL-joined dict)",
                      lambda: ("N" + "\0".join([*payload, *payload.values()])).encode()),
                     ("format 2 body to record", lambda: decode_record(body)),
                     ("format 1 body to record (read back when adopted)",
                      lambda: decode_record(nul))):
        best = min(timeit.repeat(fn, number=20_000, repeat=5)) / 20_000 * 1e6
        rows.append(f"| {name} | {best:.2f} µs |")
    rows.append(f"| body size (format 2 / format 1) | {len(body)} / {len(nul)} bytes |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default="stress/out/disk_formats.md")
    args = parser.parse_args()
    records = sample_records(args.events)
    load0 = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {"segments": [], "sqlite-wal": []}
    for repeat in range(args.repeat):
        order = [("segments", run_segments), ("sqlite-wal", run_sqlite)]
        for name, run in order if repeat % 2 == 0 else reversed(order):
            runs[name].append(measure(name, run, records))
    lines = [f"# On-disk format: segment files against SQLite WAL ({args.events} events, "
             f"median of {args.repeat} interleaved runs)", "",
             f"`python -m stress.disk_formats --events {args.events} --repeat {args.repeat}` "
             f"on {os.cpu_count()} shared cores, Python {sys.version.split()[0]}, SQLite "
             f"{sqlite3.sqlite_version}; load average {load0[0]:.1f} at the start, "
             f"{os.getloadavg()[0]:.1f} at the end (other jobs ran too).", "",
             "| format | I/O thread CPU per event | I/O wall per event | caller append p50 "
             "| p99 | p99.9 | max | bytes on disk per event |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, rows in runs.items():
        def med(key: str, rows: list[dict[str, Any]] = rows) -> float:
            return statistics.median(r[key] for r in rows)
        lines.append(f"| {name} | {med('cpu_us'):.1f} µs | {med('wall_us'):.1f} µs | "
                     f"{med('caller_p50_ns'):.0f} ns | {med('caller_p99_ns'):.0f} ns | "
                     f"{med('caller_p999_us'):.1f} µs | {med('caller_max_us'):.0f} µs | "
                     f"{med('bytes_per_event'):.0f} B |")
    lines += ["", "Record encoding (one StructuredEvent, best of 5):", "",
              "| operation | time |", "| --- | --- |", *codec(records), ""]
    report = "\n".join(lines)
    print(report)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
