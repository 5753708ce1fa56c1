"""A degraded collector and a steady stream of events: the highest rate each library
sustains with nothing dropped, ours beside the reference (issue 21).

Run from the repository root::

    python -m stress.degraded                      # every collector, both libraries
    python -m stress.degraded --seconds 90 --only 1-in-3 --rates 3000 --lib ours
    python -m stress.degraded --quick              # short runs, a short ladder (CI size)

Collectors: the loopback sink (:mod:`stress.sink`, its own process) answering 503 to
every 10th, 3rd or 2nd tracker request, or answering every request 200 ms late. For each
collector and library, runs at rising steady rates (the ladder ``--rates``), each in a
fresh process (:mod:`stress.child` mode ``steady``): ``--threads`` threads together track
the rate for ``--seconds`` (each paced, never bursty: ``time.sleep`` to its own
schedule), then the library has ``--drain`` seconds to deliver the rest.

A rate is *sustained* when nothing was dropped, every event arrived (once at least; the
sink counts unique event ids), and the delivery kept pace: when the tracking ended, no
more than ``--lag`` seconds of events were still waiting. The ladder stops at the first
rate a library does not sustain (the next rate up is never easier). The reference never
drops here (its queue of batches is unbounded), so what it can fail is keeping pace.
Libraries at their defaults; the reference's ``AsyncEmitter`` with a
``requests.Session`` (its best non-blocking set-up), as in ``stress.bench``.

Prints a Markdown report (``--out`` also writes it, and the raw runs as JSON beside it).
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from stress.bench_runner import run_child, sink_process
from stress.child import blocking_flush, event_factory, make_tracker, sink_call
from stress.crew import Crew

#: collector label -> the sink's /_fault query
COLLECTORS = {
    "1-in-10": "every=10&status=503",
    "1-in-3": "every=3&status=503",
    "1-in-2": "every=2&status=503",
    "200 ms": "delay=0.2",
}
LIBS = {"ours": "snowplow_threaded (defaults)",
        "ref_async": "snowplow-tracker 1.1.0 AsyncEmitter(session=requests.Session())"}
RATES = [100, 300, 1000, 2000, 3000, 5000, 8000, 12000, 20000, 30000]
QUICK_RATES = [1000, 3000, 8000]


# -- in the child (stress.child mode "steady") ---------------------------------------------------
def run_steady(spec: dict[str, Any]) -> dict[str, Any]:
    """Track ``rate`` events/s on ``threads`` paced threads for ``seconds``; then wait up to
    ``drain`` seconds for the sink to have them all. Counts, lag and latency."""
    port = spec["port"]
    tracker, _emitter = make_tracker({**spec, "workload": "se"}, port)
    make = event_factory(spec["lib"], "se")
    tracker.track(make())  # imports done, sender started, a connection open
    blocking_flush(spec, tracker)
    sink_call(port, "GET", "/_wait?timeout=10&expect=1")
    sink_call(port, "POST", "/_reset?expect=0")
    threads, rate, seconds = int(spec["threads"]), float(spec["rate"]), float(spec["seconds"])
    per_thread = int(rate * seconds) // threads
    total = per_thread * threads
    slowest = [0] * threads
    behind = [0.0] * threads  # how late each thread fell behind its own schedule
    start = time.monotonic() + 0.2

    def body(index: int) -> None:
        clock, longest = time.perf_counter_ns, 0
        interval = threads / rate
        for i in range(per_thread):
            due = start + (i + index / threads) * interval
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            elif -pause > behind[index]:
                behind[index] = -pause
            event = make()
            t = clock()
            tracker.track(event)
            longest = max(longest, clock() - t)
        slowest[index] = longest

    Crew(body, threads, name="steady", timeout=seconds + 120).run()
    tracked_at = time.monotonic()
    at_end = sink_call(port, "GET", "/_stats")
    tracker.flush(is_async=True)  # both: send the tail now
    dropped: dict[str, int] = {}
    if spec["lib"].startswith("ours"):
        dropped = dict(tracker.stats().dropped)
    expect = total - sum(dropped.values())
    sink = sink_call(port, "GET", f"/_wait?timeout={spec['drain']}&expect={expect}")
    done = sink.get("done_ns")
    result: dict[str, Any] = {
        "rate": rate, "tracked": total, "dropped": dropped,
        "unique_at_end": at_end["unique"], "lag_events": total - at_end["unique"],
        "lag_s": (total - at_end["unique"]) / rate,
        "unique": sink["unique"], "copies": sink["events"], "requests": sink["requests"],
        "refused": sink.get("refused", 0),
        "drain_s": (done / 1e9 - tracked_at) if done else None,
        "max_track_ms": max(slowest) / 1e6, "producers_behind_s": max(behind),
    }
    if spec["lib"].startswith("ours"):
        stats = tracker.stats()
        result.update(failed=stats.failed, retried=stats.retried, split=stats.split_requests)
        tracker.close(0.1)
    return result


# -- the runner ---------------------------------------------------------------------------------
def sustained(run: dict[str, Any], lag: float) -> bool:
    return bool(run.get("ok") and not run["dropped"] and run["unique"] == run["tracked"]
                and run["lag_s"] <= lag and run["producers_behind_s"] <= lag)


def verdict(run: dict[str, Any], lag: float) -> str:
    if not run.get("ok"):
        return f"failed: {run.get('error')}"
    parts = []
    if run["dropped"]:
        parts.append(f"dropped {sum(run['dropped'].values()):,}")
    if run["unique"] != run["tracked"]:
        parts.append(f"{run['tracked'] - run['unique']:,} missing after the drain")
    if run["lag_s"] > lag:
        parts.append(f"{run['lag_s']:.1f} s behind")
    if run["producers_behind_s"] > lag:
        parts.append(f"the producers fell {run['producers_behind_s']:.1f} s behind the rate")
    return "; ".join(parts) or "sustained"


def measure(args: argparse.Namespace, port: int) -> dict[str, Any]:
    raw: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "out"},
                           "load_start": os.getloadavg(), "cells": []}
    for label in args.only or list(COLLECTORS):
        for lib in args.lib or list(LIBS):
            sink_call(port, "POST", f"/_fault?{COLLECTORS[label]}")
            runs = []
            for rate in args.rates:
                spec = {"mode": "steady", "lib": lib, "rate": rate, "port": port,
                        "threads": args.threads, "seconds": args.seconds,
                        "drain": args.drain}
                run = run_child(spec, args.seconds + args.drain + 120)
                runs.append(run)
                print(f"  {label:<8} {lib:<9} {rate:>6,}/s: {verdict(run, args.lag)}",
                      file=sys.stderr, flush=True)
                if not sustained(run, args.lag):
                    break
            best = max((r["rate"] for r in runs if sustained(r, args.lag)), default=None)
            raw["cells"].append({"collector": label, "lib": lib, "best": best, "runs": runs})
    sink_call(port, "POST", "/_fault")
    raw["load_end"] = os.getloadavg()
    return raw


def report(raw: dict[str, Any]) -> str:
    args = raw["args"]
    cells = {(c["collector"], c["lib"]): c for c in raw["cells"]}
    labels = list(dict.fromkeys(c["collector"] for c in raw["cells"]))
    libs = list(dict.fromkeys(c["lib"] for c in raw["cells"]))
    lines = [
        "# Steady rate through a degraded collector: the highest rate sustained", "",
        f"`python -m stress.degraded {' '.join(sys.argv[1:])}`".replace(" `", "`"), "",
        f"{args['threads']} threads track a steady rate of StructuredEvents for "
        f"{args['seconds']:g} s against the loopback sink; sustained = nothing dropped, "
        f"every event delivered (the library then has {args['drain']:g} s), and at most "
        f"{args['lag']:g} s of events still waiting when the tracking ended. Rates tried: "
        f"{', '.join(f'{r:,}' for r in args['rates'])} events/s (a library's ladder stops at "
        f"its first miss). Load average {raw['load_start'][0]:.2f} at the start, "
        f"{raw['load_end'][0]:.2f} at the end; {os.cpu_count()} CPUs, shared.", "",
        "| collector | " + " | ".join(f"highest rate sustained: {lib}" for lib in libs)
        + " | " + " | ".join(f"first miss: {lib}" for lib in libs) + " |",
        "| --- |" + " ---: |" * len(libs) + " --- |" * len(libs),
    ]
    for label in labels:
        best = []
        miss = []
        for lib in libs:
            cell = cells.get((label, lib))
            if cell is None:
                best.append("n/a")
                miss.append("")
                continue
            best.append(f"{cell['best']:,.0f}/s" if cell["best"] else
                        f"below {args['rates'][0]:,}/s")
            last = cell["runs"][-1]
            miss.append("none up to the ladder's top" if sustained(last, args["lag"])
                        else f"{last.get('rate', 0):,.0f}/s: {verdict(last, args['lag'])}")
        lines.append(f"| {label} | " + " | ".join(best) + " | " + " | ".join(miss) + " |")
    lines += ["", "Every run:", "",
              "| collector | library | rate /s | tracked | dropped | delivered (unique) "
              "| behind at the end | drain s | requests answered 2xx (refused) "
              "| longest track() ms |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for cell in raw["cells"]:
        for run in cell["runs"]:
            if not run.get("ok"):
                lines.append(f"| {cell['collector']} | {cell['lib']} | | failed | | | | | | |")
                continue
            drain = "—" if run["drain_s"] is None else f"{run['drain_s']:.1f}"
            lines.append(
                f"| {cell['collector']} | {cell['lib']} | {run['rate']:,.0f} "
                f"| {run['tracked']:,} | {sum(run['dropped'].values()):,} | {run['unique']:,} "
                f"| {run['lag_events']:,} ({run['lag_s']:.1f} s) | {drain} "
                f"| {run['requests']:,} ({run['refused']:,}) | {run['max_track_ms']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stress.degraded", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--drain", type=float, default=15.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--lag", type=float, default=2.0,
                        help="most seconds of events still waiting at the end (2)")
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")],
                        help=f"the ladder, events/s (default {','.join(map(str, RATES))})")
    parser.add_argument("--only", type=lambda s: s.split(","), help="collectors, e.g. 1-in-3")
    parser.add_argument("--lib", type=lambda s: s.split(","), help="ours, ref_async")
    parser.add_argument("--quick", action="store_true", help="5 s runs, a short ladder")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.drain = 5.0, 10.0
    args.rates = args.rates or (QUICK_RATES if args.quick else RATES)
    with sink_process() as port:
        raw = measure(args, port)
    text = report(raw)
    sys.stdout.write(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
