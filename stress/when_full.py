"""What each ``when_full`` policy does when the buffer fills, and the bytes an event takes
in the buffer.

Run from the repository root::

    python -m stress.when_full                 # every scenario, each policy, 3 runs each
    python -m stress.when_full --runs 1 --events 10000

Scenarios (one thread tracks ``--events`` StructuredEvents in a loop, a fresh process per
run, the loopback sink of :mod:`stress.sink` in its own process; a 1 MiB buffer, about
3 500 events, so that it fills; the rest at defaults, ``block_timeout`` 1 s):

* **burst**: a healthy collector; the loop outruns one sender thread.
* **slow**: every answer 200 ms late.
* **down**: nothing listens (connections refused).

Reported per policy (the median run): delivered, dropped (by reason), ``flush()``'s
answer, ``track()`` p50 / p99 / max and the loop's wall time (what a caller pays: with
``block`` it waits for room, but never while the collector is failing).

Then the bytes held per buffered event at defaults, per workload: the record's length
(:mod:`snowplow_threaded.record`), the memory ``buffer_max_bytes`` counts for it, the
``tracemalloc`` bytes per record, and, with nothing listening, the process's RSS growth
per event held after tracking 100 000 StructuredEvents (``--down-events``), beside the
reference's.

Prints Markdown (``--out`` also writes it). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from stress.bench_runner import closed_port, run_child, sink_process
from stress.child import event_factory, percentiles, records_of, sink_call

POLICIES = ("drop_newest", "drop_oldest", "block")
SCENARIOS = {"burst": "", "slow": "delay=0.2", "down": None}
BUFFER = 1024 * 1024
WORKLOADS = {"se": "(a) StructuredEvent", "sd": "(b) SelfDescribing+2 ctx, base64",
             "sd_raw": "(b) SelfDescribing+2 ctx, no base64"}


# -- in the child (stress.child mode "when_full") ------------------------------------------------
def run_when_full(spec: dict[str, Any]) -> dict[str, Any]:
    from snowplow_threaded import Emitter, Tracker

    emitter = Emitter(f"http://127.0.0.1:{spec['port']}", buffer_max_bytes=BUFFER,
                      when_full=spec["policy"], block_timeout=1.0)
    tracker = Tracker("when-full", emitters=emitter)
    make = event_factory("ours", "se")
    lat: list[int] = []
    clock = time.perf_counter_ns
    started = time.monotonic()
    for _ in range(int(spec["events"])):
        event = make()
        t = clock()
        tracker.track(event)
        lat.append(clock() - t)
    loop_s = time.monotonic() - started
    flushed = emitter.flush(timeout=float(spec["flush_timeout"]))
    stats = emitter.stats()
    emitter.close(0.1)
    return {"loop_s": loop_s, "flushed": flushed, "sent": stats.sent,
            "dropped": dict(stats.dropped), "queued": stats.queued,
            "latency_us": percentiles(lat)}


def record_sizes(workload: str) -> dict[str, float]:
    """In a fresh process: a record's length, what buffer_max_bytes counts, and the
    tracemalloc bytes per record held (the records of 5 000 events kept in a list)."""
    from snowplow_threaded import Snowplow, TrackerConfiguration
    from snowplow_threaded.event_store import RECORD_OVERHEAD

    tracker = Snowplow.create_tracker(
        f"size-{workload}", "http://127.0.0.1:9", app_id="bench",
        tracker_config=TrackerConfiguration(encode_base64=workload != "sd_raw"))
    make = event_factory("ours", workload)
    records_of(tracker, [make()])  # caches warm
    events = [make() for _ in range(5000)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    records = records_of(tracker, events)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    tracker.close(0)
    return {"length": statistics.mean(map(len, records)),
            "counted": statistics.mean(map(len, records)) + RECORD_OVERHEAD,
            "traced": held / len(records)}


# -- the runner ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    from stress.bench_runner import in_fresh_process

    parser = argparse.ArgumentParser(prog="python -m stress.when_full", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--down-events", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    lines = [f"# when_full policies, and the bytes an event takes (`python -m stress.when_full "
             f"{' '.join(sys.argv[1:] if argv is None else argv)}`)".replace(" `)", "`)"), "",
             f"One thread tracks {args.events:,} StructuredEvents in a loop into a "
             f"{BUFFER // 1024 // 1024} MiB buffer (about 3 500 events), `block_timeout` 1 s; "
             f"the median of {args.runs} run(s), each a fresh process. Load average "
             f"{load:.2f} at the start; 2 shared CPUs.", "",
             "| collector | when_full | delivered | dropped | flush() | track() p50 µs "
             "| p99 µs | max ms | loop s |", "| --- | --- | ---: | --- | --- | ---: | ---: "
             "| ---: | ---: |"]
    with sink_process() as port:
        dead = closed_port()
        for scenario, fault in SCENARIOS.items():
            target = dead if fault is None else port
            if fault is not None:
                sink_call(port, "POST", f"/_fault?{fault}")
            for policy in POLICIES:
                spec = {"mode": "when_full", "policy": policy, "events": args.events,
                        "port": target, "flush_timeout": 1.0 if fault is None else 60.0}
                runs = [run_child(spec, 300) for _ in range(args.runs)]
                ok = sorted((r for r in runs if r.get("ok")), key=lambda r: r["loop_s"])
                if not ok:
                    lines.append(f"| {scenario} | {policy} | failed: {runs[0].get('error')} "
                                 "| | | | | | |")
                    continue
                run = ok[len(ok) // 2]
                lat = run["latency_us"]
                dropped = ", ".join(f"{k} {v:,}" for k, v in run["dropped"].items()) or "0"
                lines.append(
                    f"| {scenario} | `{policy}` | {run['sent']:,} | {dropped} "
                    f"| {run['flushed']} | {lat['p50']:.1f} | {lat['p99']:.1f} "
                    f"| {lat['max'] / 1000:.1f} | {run['loop_s']:.2f} |")
                print(f"  {scenario} {policy}: done", file=sys.stderr, flush=True)
        sink_call(port, "POST", "/_fault")
    lines += ["", "Bytes held per buffered event, at defaults:", "",
              "| workload | record length | counted by buffer_max_bytes | tracemalloc "
              "per record |", "| --- | ---: | ---: | ---: |"]
    for workload, label in WORKLOADS.items():
        size = in_fresh_process(record_sizes, workload)
        lines.append(f"| {label} | {size['length']:.0f} | {size['counted']:.0f} "
                     f"| {size['traced']:.0f} |")
    dead = closed_port()
    lines += ["", f"Nothing listening, {args.down_events:,} StructuredEvents tracked, each "
              "library at its defaults:", "",
              "| library | events held | dropped | RSS growth MB (peak) | RSS bytes per held "
              "event |", "| --- | ---: | ---: | ---: | ---: |"]
    for lib in ("ours", "ref_async"):
        run = run_child({"mode": "down", "lib": lib, "workload": "se",
                         "events": args.down_events, "port": dead, "time_budget": 120}, 300)
        if not run.get("ok"):
            lines.append(f"| {lib} | failed: {run.get('error')} | | | |")
            continue
        dropped = sum(run["dropped"].values())
        lines.append(f"| {lib} | {run['held']:,} | {dropped:,} "
                     f"| {run['rss_growth_mb']:.1f} ({run['peak_rss_growth_mb']:.1f}) "
                     f"| {run['bytes_per_held_event'] or 0:.0f} |")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
