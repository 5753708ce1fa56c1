"""Side-by-side benchmark: ``snowplow_threaded`` ("ours") vs ``snowplow-tracker`` 1.1.0.

Run from the repository root::

    python -m stress.bench                 # full run (default size)
    python -m stress.bench --quick         # CI-sized, < 60 s on 2 cores
    python -m stress.bench --repeat 3      # the median of 3 runs per cell (quote these)
    python -m stress.bench --events 50000 --out /tmp/bench
    python -m stress.bench --profile --workload sd_b64   # one workload under yappi

Only loopback traffic: a sink (:mod:`stress.sink`) in its own process on 127.0.0.1 and,
for the collector-down scenario, a closed 127.0.0.1 port. Every measurement runs in a
fresh child process (:mod:`stress.child`) that imports one library only. Results: a
markdown report on stdout and in ``<out>/bench.md``, raw numbers in ``<out>/bench.json``,
a chart in ``<out>/bench.png`` (with matplotlib). Nothing is asserted: this is a report.

Module map: :mod:`stress.bench_runner` (processes), :mod:`stress.child` and
:mod:`stress.bench_procs` (what runs in them), :mod:`stress.bench_report` (the tables),
:mod:`stress.bench_profile` (profile buckets), :mod:`stress.chart` (the PNG),
:mod:`stress.fork_cost` (the fork() timings).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stress import bench_profile, bench_report, chart
from stress.bench_runner import (
    REPO,
    WORKLOADS,
    closed_port,
    median_run,
    merge_fork_costs,
    run_child,
    run_exit_script,
    run_fork_cost,
    sink_process,
)

FORK_LIBS = ("ours", "ref_async", "ref_sync")


@dataclass
class Plan:
    events: int
    threads: list[int]
    workloads: list[str]
    sync_threads: list[int]
    down_events: int
    child_timeout: float
    repeat: int = 1
    fork_workers: int = 4
    fork_events: int = 20_000
    fork_timeout: float = 60.0  # per forked child, from the first fork
    exit_events: int = 10_000
    forks: int = 200  # fork() calls per emitter count in the fork-cost runs
    profile_events: int = 5_000
    profile_workloads: list[str] = field(default_factory=list)
    floor_runs: int = 3  # floor children; each component's minimum over them is kept


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the benchmark ------------------------------------------------------------------------------
def measure(plan: Plan) -> dict[str, Any]:
    raw: dict[str, Any] = {"plan": plan.__dict__, "runs": [], "down": [], "fork": {},
                           "exit": {}, "python": sys.version, "cpus": os.cpu_count(),
                           "load_start": os.getloadavg()}
    with sink_process() as port:
        measure_cells(plan, port, raw)
        measure_fork(plan, port, raw)
        measure_exit(plan, port, raw)
        measure_floor(plan, port, raw)
    measure_down(plan, raw)
    measure_fork_cost(plan, raw)
    raw["load_end"] = os.getloadavg()
    return raw


def measure_cells(plan: Plan, port: int, raw: dict[str, Any]) -> None:
    """Every workload x thread count, each library in its own child; with --repeat the
    libraries are interleaved (ours, ref, ours, ref, ...) so a noisy moment hits both."""
    for workload in plan.workloads:
        for threads in plan.threads:
            libs = ["ours", "ref_async"]
            if threads in plan.sync_threads:
                libs.append("ref_sync")
            results: dict[str, list[dict[str, Any]]] = {lib: [] for lib in libs}
            for _ in range(plan.repeat):
                for lib in libs:
                    spec = {"mode": "run", "lib": lib, "workload": workload,
                            "threads": threads, "events": plan.events, "port": port,
                            "timeout": plan.child_timeout}
                    results[lib].append(run_child(spec, plan.child_timeout + 30))
            for lib in libs:
                result = bench_report.with_repeats(median_run(results[lib]), results[lib])
                raw["runs"].append({"lib": lib, "workload": workload, "threads": threads,
                                    "result": result})
                progress(f"  {WORKLOADS[workload]:<38} x{threads:<2} {lib:<11} "
                         f"{bench_report.short(result)}")


def measure_fork(plan: Plan, port: int, raw: dict[str, Any]) -> None:
    results: dict[str, list[dict[str, Any]]] = {lib: [] for lib in FORK_LIBS}
    for _ in range(plan.repeat):
        for lib in FORK_LIBS:
            spec = {"mode": "fork", "lib": lib, "workers": plan.fork_workers,
                    "events": plan.fork_events, "port": port,
                    "child_timeout": plan.fork_timeout}
            results[lib].append(run_child(spec, plan.fork_timeout + 60))
    for lib in FORK_LIBS:
        raw["fork"][lib] = {**bench_report.with_repeats(median_run(results[lib]), results[lib]),
                            "delivered_all_runs": [r.get("delivered") for r in results[lib]]}
        progress(f"  {'(c) 4 forked workers':<38} x1  {lib:<11} "
                 f"{bench_report.short(raw['fork'][lib])}")


def measure_exit(plan: Plan, port: int, raw: dict[str, Any]) -> None:
    results: dict[str, list[dict[str, Any]]] = {lib: [] for lib in FORK_LIBS}
    for _ in range(plan.repeat):
        for lib in FORK_LIBS:
            spec = {"lib": lib, "events": plan.exit_events, "port": port}
            results[lib].append(run_exit_script(spec, plan.child_timeout + 30))
    for lib in FORK_LIBS:
        chosen = median_run(results[lib], "drain_s")
        raw["exit"][lib] = {**bench_report.with_repeats(chosen, results[lib]),
                            "delivered_all_runs": [r.get("delivered") for r in results[lib]]}
        progress(f"  {'script exit':<38} x1  {lib:<11} {bench_report.short(raw['exit'][lib])}")


def measure_floor(plan: Plan, port: int, raw: dict[str, Any]) -> None:
    """The per-event floor of each workload (batch = the events per request observed in
    our 1-thread run) and, for the workloads profiled, the CPU buckets."""
    batches = {}
    for workload in plan.workloads:
        run = bench_report.lookup(raw, "ours", workload, 1)
        if run and run.get("requests"):
            batches[workload] = max(1, round(run["delivered"] / run["requests"]))
    spec = {"mode": "floor", "lib": "ours", "workloads": plan.workloads, "batches": batches,
            "port": port}
    raw["floor"] = lowest_floor([run_child(spec, 300) for _ in range(plan.floor_runs)])
    progress(f"  floor: {'ok' if raw['floor'].get('ok') else raw['floor'].get('error')}")
    raw["profiles"] = {}
    with tempfile.TemporaryDirectory(prefix="bench-prof-") as folder:
        for workload in plan.profile_workloads:
            prefix = os.path.join(folder, workload)
            result = run_child(bench_profile.profile_spec(
                workload, plan.profile_events, port, prefix, "cpu"), 300)
            if not result.get("ok"):
                continue
            totals = bench_profile.all_threads(bench_profile.thread_buckets(prefix))
            top = bench_profile.top_buckets(totals, 3)
            raw["profiles"][workload] = {"top": top, "totals_s": totals}
            progress(f"  profile {workload}: " + ", ".join(f"{k} {v:.0%}" for k, v in top))


def lowest_floor(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several floor runs (fresh processes, moments apart): a floor is a lower bound, so
    each component keeps its minimum (a co-running process on a sibling hyper-thread
    inflates even CPU time)."""
    ok = [r for r in results if r.get("ok")]
    if not ok:
        return results[0]
    merged: dict[str, Any] = {"ok": True, "runs": len(ok), "workloads": {}}
    for workload, first in ok[0]["workloads"].items():
        parts = {key: min(r["workloads"][workload][key] for r in ok)
                 for key in ("construct_us", "build_us", "dumps_us", "post_us")}
        parts["http_us"] = parts["post_us"] / first["batch"]
        parts["floor_us"] = (parts["construct_us"] + parts["build_us"] + parts["dumps_us"]
                             + parts["http_us"])
        merged["workloads"][workload] = {**first, **parts}
    return merged


def measure_down(plan: Plan, raw: dict[str, Any]) -> None:
    """The sink down, each library at its defaults: what is held, and what it costs."""
    dead = closed_port()
    for lib in ("ours", "ref_async"):
        spec = {"mode": "down", "lib": lib, "workload": "se", "events": plan.down_events,
                "port": dead, "time_budget": plan.child_timeout}
        result = run_child(spec, plan.child_timeout + 30)
        raw["down"].append({"lib": lib, "result": result})
        progress(f"  sink down, {plan.down_events} SE, {lib}: {bench_report.short(result)}")


def measure_fork_cost(plan: Plan, raw: dict[str, Any]) -> None:
    results: dict[str, list[dict[str, Any]]] = {"ours": [], "ref": []}
    for _ in range(plan.repeat):
        for lib in results:
            results[lib].append(run_fork_cost(lib, plan.forks, 120))
    raw["fork_cost"] = {lib: merge_fork_costs(runs) for lib, runs in results.items()}
    for lib, result in raw["fork_cost"].items():
        if result.get("ok"):
            progress(f"  fork cost {lib}: child-side p50 " + ", ".join(
                f"{k} emitters {result[k]['child_p50']:.0f} µs" for k in ("0", "1", "10")))


# -- main -----------------------------------------------------------------------------------------
def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        events = args.events or 2_000
        return Plan(events=events, threads=[1, 4], workloads=list(WORKLOADS),
                    sync_threads=[1, 4], down_events=args.down_events or 30_000,
                    child_timeout=20, repeat=args.repeat, fork_events=events,
                    fork_timeout=15, exit_events=min(events, 10_000), forks=40,
                    profile_events=events, profile_workloads=["se"], floor_runs=1)
    events = args.events or 20_000
    return Plan(events=events, threads=[1, 4, 16], workloads=list(WORKLOADS),
                sync_threads=[1, 4, 16], down_events=args.down_events or 100_000,
                child_timeout=120, repeat=args.repeat, fork_events=events,
                fork_timeout=60, exit_events=min(events, 10_000), forks=200,
                profile_events=min(events, 5_000), profile_workloads=list(WORKLOADS))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stress.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=None,
                        help="events per run (default 20 000; --quick 2 000)")
    parser.add_argument("--quick", action="store_true", help="CI-sized run (< 60 s)")
    parser.add_argument("--out", type=Path, default=REPO / "stress" / "out",
                        help="output directory (default stress/out)")
    parser.add_argument("--down-events", type=int, default=None,
                        help="events tracked with the sink down (default 100 000; "
                             "--quick 30 000)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per cell, libraries interleaved; the run with the median "
                             "end-to-end time is reported")
    parser.add_argument("--profile", action="store_true",
                        help="profile our library on --workload instead")
    parser.add_argument("--profile-clock", choices=("wall", "cpu"), default="wall",
                        help="profiler clock: wall (default) or per-thread CPU")
    parser.add_argument("--top", type=int, default=25, help="functions listed per profile")
    parser.add_argument("--workload", choices=list(WORKLOADS), default="se",
                        help="workload profiled by --profile (default se): "
                             + ", ".join(f"{k} = {v}" for k, v in WORKLOADS.items()))
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.profile:
        bench_profile.run_profile(args, out)
        return
    plan = make_plan(args)
    started = time.monotonic()
    raw = measure(plan)
    elapsed = time.monotonic() - started
    raw["elapsed_s"] = elapsed
    note = chart.write_chart(raw, out / "bench.png")
    report = "\n\n".join([
        bench_report.header(plan, raw, elapsed).rstrip(),
        bench_report.summary(raw, plan),
        bench_report.floor_section(raw),
        bench_report.table(raw, plan),
        f"Chart: {out / 'bench.png'}" if note.startswith("chart written") else note,
    ])
    print(report)
    (out / "bench.md").write_text(report + "\n")
    (out / "bench.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    progress(f"\nwritten: {out / 'bench.md'}, {out / 'bench.json'}; {note} "
             f"({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
