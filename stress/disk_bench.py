"""The disk store beside the memory store: caller ``track()`` p50/p99, delivered events/s,
CPU per delivered event and bytes written to disk per event, in interleaved A/B runs.

Each run is a fresh interpreter (``--child``) that builds a tracker on one store, tracks
``--events`` ``StructuredEvent`` s from ``--threads`` threads against the fast sink
(:mod:`stress.sink`, its own process), and waits at the sink until every event arrived.
Delivered/s counts from the first ``track()`` to the last event at the sink; CPU is the
tracker process's (user + system) over that span, divided by the events delivered. Runs
alternate store order (A B, B A, ...) so a change of load on the shared machine hits both;
the table shows the median of ``--repeat`` runs.

    python -m stress.disk_bench                         # 20 000 events, 1 and 4 threads, 5 runs
    python -m stress.disk_bench --events 5000 --repeat 3 --out /tmp/disk_bench.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

STORES = ("memory", "disk", "disk-durable")


def child(store_kind: str, events: int, threads: int, endpoint: str) -> dict[str, Any]:
    from snowplow_threaded import (
        DiskEventStore,
        Emitter,
        InMemoryEventStore,
        StructuredEvent,
        Tracker,
    )

    directory = tempfile.mkdtemp(prefix="disk-bench-")
    store: Any
    if store_kind == "memory":  # big enough not to drop: issue 15 changes the default
        store = InMemoryEventStore(buffer_capacity=events + 1)
    else:
        store = DiskEventStore(directory, durable=store_kind == "disk-durable",
                               memory_events=events + 1)
    emitter = Emitter(endpoint, event_store=store)
    tracker = Tracker("bench", emitter)
    tracker.track(StructuredEvent("warm", "up"))
    emitter.flush(10)
    _get(f"{endpoint}/_reset?expect={events}", method="POST")
    per_thread = events // threads
    latencies: list[list[int]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def work(index: int) -> None:
        lat = latencies[index]
        clock = time.perf_counter_ns
        barrier.wait()
        for n in range(per_thread):
            t0 = clock()
            tracker.track(StructuredEvent("bench", "disk", label=str(n), value=n))
            lat.append(clock() - t0)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    cpu0 = _cpu()
    start_ns = time.monotonic_ns()
    barrier.wait()
    for w in workers:
        w.join()
    result = json.loads(_get(f"{endpoint}/_wait?timeout=120"))
    cpu = _cpu() - cpu0
    stats = emitter.stats()
    emitter.close(10)
    all_lat = sorted(x for lat in latencies for x in lat)
    delivered = result["unique"]
    done_ns = result["done_ns"] or result["last_ns"]
    disk = stats.disk or {}
    return {
        "store": store_kind, "threads": threads, "events": events, "delivered": delivered,
        "dropped": stats.dropped,
        "p50_us": all_lat[len(all_lat) // 2] / 1000,
        "p99_us": all_lat[int(len(all_lat) * 0.99)] / 1000,
        "events_per_s": delivered / ((done_ns - start_ns) / 1e9),
        "cpu_us_per_event": cpu / max(delivered, 1) * 1e6,
        "disk_bytes_per_event": (disk["bytes_written"] / disk["written"]
                                 if disk.get("written") else None),
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _get(url: str, method: str = "GET") -> str:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=180) as response:
        return str(response.read().decode())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stores", nargs="+", default=list(STORES), choices=STORES)
    parser.add_argument("--out", default="stress/out/disk_bench.md")
    parser.add_argument("--child", nargs=4, metavar=("STORE", "EVENTS", "THREADS", "URL"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, events, threads, url = args.child
        print(json.dumps(child(kind, int(events), int(threads), url)))
        return 0
    sink = subprocess.Popen([sys.executable, "-m", "stress.sink", "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline().split()[1])
        endpoint = f"http://127.0.0.1:{port}"
        load = os.getloadavg()
        started = time.monotonic()
        runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for repeat in range(args.repeat):
            for threads in args.threads:
                order = args.stores if repeat % 2 == 0 else list(reversed(args.stores))
                for kind in order:
                    out = subprocess.run(
                        [sys.executable, "-m", "stress.disk_bench", "--child", kind,
                         str(args.events), str(threads), endpoint],
                        capture_output=True, text=True, check=True)
                    runs.setdefault((kind, threads), []).append(json.loads(out.stdout))
        report = _report(args, runs, load, os.getloadavg(), time.monotonic() - started)
    finally:
        sink.terminate()
        sink.wait(10)
    print(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    return 0


def _report(args: argparse.Namespace, runs: dict[tuple[str, int], list[dict[str, Any]]],
            load0: tuple[float, float, float], load1: tuple[float, float, float],
            wall: float) -> str:
    lines = [
        f"# Disk store beside the memory store ({args.events} events, median of "
        f"{args.repeat} interleaved runs)",
        "",
        f"`python -m stress.disk_bench --events {args.events} --repeat {args.repeat}` "
        f"on {os.cpu_count()} shared cores, Python {sys.version.split()[0]}; load average "
        f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end (other developers' jobs "
        f"ran too); {wall:.0f} s.",
        "",
        "| store | threads | track() p50 | p99 | delivered/s | CPU per delivered event "
        "| bytes written per event | delivered / dropped |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for threads in args.threads:
        for kind in args.stores:
            rows = runs[(kind, threads)]

            def med(key: str, rows: list[dict[str, Any]] = rows) -> float:
                return statistics.median(r[key] for r in rows)

            per_event = ("—" if rows[0]["disk_bytes_per_event"] is None
                         else f"{med('disk_bytes_per_event'):.0f} B")
            dropped = sum(sum(r["dropped"].values()) for r in rows)
            lines.append(
                f"| {kind} | {threads} | {med('p50_us'):.1f} µs | {med('p99_us'):.1f} µs | "
                f"{med('events_per_s'):,.0f} | {med('cpu_us_per_event'):.1f} µs | "
                f"{per_event} | {min(r['delivered'] for r in rows)} / {dropped} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
