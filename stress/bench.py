"""Side-by-side benchmark: ``snowplow_threaded`` ("ours") vs ``snowplow-tracker`` 1.1.0.

Run from the repository root::

    python -m stress.bench                 # full run (default size)
    python -m stress.bench --quick         # CI-sized, < 30 s
    python -m stress.bench --events 50000 --out /tmp/bench
    python -m stress.bench --profile       # our workload (a) under cProfile, CPU buckets

Only loopback traffic: a sink (:mod:`stress.sink`) in its own process on 127.0.0.1 and,
for the collector-down scenario, a closed 127.0.0.1 port. Every measurement runs in a
fresh child process (:mod:`stress.child`) that imports one library only. Results: a
markdown table on stdout and in ``<out>/bench.md``, raw numbers in ``<out>/bench.json``.
Nothing is asserted: this is a report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = {
    "se": "(a) StructuredEvent",
    "sd_b64": "(b) SelfDescribing+2 ctx, base64",
    "sd_raw": "(b) SelfDescribing+2 ctx, no base64",
}
LIB_NAMES = {
    "ours": "snowplow_threaded (create_tracker defaults)",
    "ref_async": "snowplow-tracker 1.1.0 AsyncEmitter(session=requests.Session())",
    "ref_sync": "snowplow-tracker 1.1.0 Snowplow.create_tracker (sync Emitter)",
    "ours_nodrop": "snowplow_threaded, buffer_capacity = 2 x events (nothing dropped)",
}
# (metric key, label, target ratio ours/ref, "le" = ratio must be <=, "ge" = >=)
TARGETS: dict[str, tuple[float, str]] = {
    "p50": (0.5, "le"),
    "p99": (0.2, "le"),
    "events_per_s": (5.0, "ge"),
    "cpu_us_per_event": (0.2, "le"),
}


@dataclass
class Plan:
    events: int
    threads: list[int]
    workloads: list[str]
    sync_threads: list[int]
    down_events: int
    child_timeout: float
    repeat: int = 1
    notes: list[str] = field(default_factory=list)


# -- processes ----------------------------------------------------------------------------------
@contextlib.contextmanager
def sink_process() -> Iterator[int]:
    """Start :mod:`stress.sink` in its own process; yield its port; stop it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "stress.sink", "--port", "0"],
        cwd=REPO, env=child_env(), stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("PORT "):
            raise RuntimeError(f"sink did not start: {line!r}")
        yield int(line.split()[1])
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (connections are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its JSON result (or the failure)."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as fh:
        result_file = fh.name
    spec = {**spec, "result_file": result_file}
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "stress.child", json.dumps(spec)], cwd=REPO,
            env=child_env(), timeout=timeout, capture_output=True, text=True,
        )
        text = Path(result_file).read_text()
        result: dict[str, Any] = json.loads(text) if text else {
            "ok": False, "error": f"no result (exit {proc.returncode})",
            "stderr": proc.stderr[-2000:]}
    except subprocess.TimeoutExpired:
        result = {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    finally:
        with contextlib.suppress(OSError):
            os.unlink(result_file)
    result["child_wall_s"] = time.monotonic() - started
    if not result.get("ok"):
        print(f"  !! {spec['lib']} {spec['mode']} {spec.get('workload')}: "
              f"{result.get('error')}\n{result.get('traceback', result.get('stderr', ''))}",
              file=sys.stderr)
    return result


def best_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """With --repeat > 1: the run with the median end-to-end time (numbers stay coherent)."""
    ok = [r for r in results if r.get("ok")]
    if not ok:
        return results[0]
    ok.sort(key=lambda r: r.get("e2e_s") or float("inf"))
    return ok[len(ok) // 2]


# -- the benchmark ------------------------------------------------------------------------------
def measure(plan: Plan) -> dict[str, Any]:
    raw: dict[str, Any] = {"plan": plan.__dict__, "runs": [], "down": [],
                           "python": sys.version, "cpus": os.cpu_count()}
    with sink_process() as port:
        for workload in plan.workloads:
            for threads in plan.threads:
                libs = ["ours", "ours_nodrop", "ref_async"]
                if threads in plan.sync_threads:
                    libs.append("ref_sync")
                for lib in libs:
                    spec = {"mode": "run", "lib": lib, "workload": workload,
                            "threads": threads, "events": plan.events, "port": port,
                            "timeout": plan.child_timeout,
                            # ours_nodrop: a buffer big enough that nothing is dropped
                            "capacity": 2 * plan.events if lib == "ours_nodrop" else None}
                    results = [run_child(spec, plan.child_timeout + 30)
                               for _ in range(plan.repeat)]
                    result = best_of(results)
                    raw["runs"].append({"lib": lib, "workload": workload, "threads": threads,
                                        "result": result})
                    print(f"  {WORKLOADS[workload]:<38} x{threads:<2} {lib:<9} "
                          f"{short(result)}", file=sys.stderr)
    dead = closed_port()
    for lib, capacity in (("ours", None), ("ours", 100_000), ("ref_async", None)):
        spec = {"mode": "down", "lib": lib, "workload": "se", "events": plan.down_events,
                "port": dead, "capacity": capacity, "time_budget": plan.child_timeout}
        result = run_child(spec, plan.child_timeout + 30)
        raw["down"].append({"lib": lib, "capacity": capacity or 10_000, "result": result})
        print(f"  sink down, {plan.down_events} SE, {lib} cap={capacity or 10_000}: "
              f"{short(result)}", file=sys.stderr)
    return raw


def short(result: dict[str, Any]) -> str:
    if not result.get("ok"):
        return f"FAILED: {result.get('error')}"
    if "latency_us" in result:
        eps = result.get("events_per_s")
        return (f"p50 {result['latency_us'].get('p50', 0):.1f} µs, "
                f"{(eps or 0):,.0f} ev/s, {result['cpu_us_per_event']:.0f} µs CPU/ev, "
                f"{delivery(result)} ({result['child_wall_s']:.1f} s)")
    return (f"held {result['held']}, RSS +{result['rss_growth_mb']:.1f} MB, "
            f"{result['track_s']:.1f} s")


# -- report ---------------------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def verdict(metric: str, ratio: float | None) -> str:
    if ratio is None:
        return ""
    target = TARGETS.get(metric)
    if target is None:
        return ""
    bound, how = target
    ok = ratio <= bound if how == "le" else ratio >= bound
    sign = "≤" if how == "le" else "≥"
    return f"{'meets' if ok else 'MISSES'} ({sign} {bound:g}x)"


def ratio_of(ours: float | None, ref: float | None) -> float | None:
    if ours is None or ref is None or ref == 0:
        return None
    return ours / ref


def row(workload: str, metric: str, ours: str, ref: str, ratio: float | None,
        note: str) -> str:
    ratio_text = "n/a" if ratio is None else f"{ratio:.2f}x"
    return f"| {workload} | {metric} | {ours} | {ref} | {ratio_text} | {note} |"


def lookup(raw: dict[str, Any], lib: str, workload: str, threads: int) -> dict[str, Any] | None:
    for run in raw["runs"]:
        if (run["lib"], run["workload"], run["threads"]) == (lib, workload, threads):
            result: dict[str, Any] = run["result"]
            return result if result.get("ok") else None
    return None


def table(raw: dict[str, Any], plan: Plan) -> str:
    lines = [
        "| workload | metric | ours | reference | ratio ours/ref | target |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for workload in plan.workloads:
        for threads in plan.threads:
            name = f"{WORKLOADS[workload]}, {threads} thr"
            ours = lookup(raw, "ours", workload, threads)
            ref = lookup(raw, "ref_async", workload, threads)
            sync = lookup(raw, "ref_sync", workload, threads)
            if ours is None or ref is None:
                lines.append(row(name, "(run failed)", "", "", None, ""))
                continue
            for key, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"),
                               ("max", "max")):
                a, b = ours["latency_us"][key], ref["latency_us"][key]
                r = ratio_of(a, b)
                lines.append(row(name, f"track() {label} µs vs async", fmt(a), fmt(b), r,
                                 verdict(key, r)))
            if sync is not None:
                for key, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"),
                                   ("max", "max")):
                    a, b = ours["latency_us"][key], sync["latency_us"][key]
                    r = ratio_of(a, b)
                    lines.append(row(name, f"track() {label} µs vs sync Emitter", fmt(a),
                                     fmt(b), r, verdict(key, r)))
            a, b = ours["events_per_s"], ref["events_per_s"]
            r = ratio_of(a, b)
            lines.append(row(name, "delivered events/s (end to end)", fmt(a, 0), fmt(b, 0),
                             r, verdict("events_per_s", r)))
            a, b = ours["cpu_us_per_event"], ref["cpu_us_per_event"]
            r = ratio_of(a, b)
            lines.append(row(name, "process CPU µs / delivered event", fmt(a), fmt(b), r,
                             verdict("cpu_us_per_event", r)))
            nodrop = lookup(raw, "ours_nodrop", workload, threads)
            if nodrop is not None:
                a, b = nodrop["events_per_s"], ref["events_per_s"]
                r = ratio_of(a, b)
                lines.append(row(name, "delivered events/s, ours buffer 2xN (no drops)",
                                 fmt(a, 0), fmt(b, 0), r, verdict("events_per_s", r)))
                a, b = nodrop["cpu_us_per_event"], ref["cpu_us_per_event"]
                r = ratio_of(a, b)
                lines.append(row(name, "CPU µs / delivered event, ours buffer 2xN", fmt(a),
                                 fmt(b), r, verdict("cpu_us_per_event", r)))
                lines.append(row(name, "delivered / unique / tracked, ours buffer 2xN",
                                 delivery(nodrop), delivery(ref), None,
                                 "all delivered once" if nodrop["complete"] else "CHECK"))
            a, b = ours["tracking_cpu_us_per_event"], ref["tracking_cpu_us_per_event"]
            lines.append(row(name, "… of which tracking threads µs/event", fmt(a), fmt(b),
                             ratio_of(a, b), ""))
            a, b = ours["other_cpu_us_per_event"], ref["other_cpu_us_per_event"]
            lines.append(row(name, "… of which senders/other µs/event", fmt(a), fmt(b),
                             ratio_of(a, b), ""))
            a, b = sink_busy(ours), sink_busy(ref)
            lines.append(row(name, "sink process busy % of e2e (not the bottleneck)",
                             fmt(a, 0), fmt(b, 0), None, ""))
            lines.append(row(
                name, "delivered / unique eids / tracked", delivery(ours), delivery(ref), None,
                "all delivered once" if ours["complete"] and ref["complete"] else
                "ours dropped (buffer full), each sent once" if ours["all_accounted"]
                and ref["complete"] else "CHECK"))
    down = {(d["lib"], d["capacity"]): d["result"] for d in raw["down"]}
    n = plan.down_events
    ours10, ours100, ref10 = (down.get(("ours", 10_000)), down.get(("ours", 100_000)),
                              down.get(("ref_async", 10_000)))
    name = f"sink DOWN, {n:,} x (a), 1 thr"
    if ours10 and ref10 and ours10.get("ok") and ref10.get("ok"):
        bounded = ours10["held"] <= ours10["capacity"]
        lines.append(row(name, "events held at end (capacity 10 000)", f"{ours10['held']:,}",
                         f"{ref10['held']:,}", None,
                         "meets (bounded by capacity)" if bounded else "MISSES (unbounded)"))
        r = ratio_of(ours10["peak_rss_growth_mb"], ref10["peak_rss_growth_mb"])
        lines.append(row(name, "peak RSS growth MB (capacity 10 000)",
                         fmt(ours10["peak_rss_growth_mb"]), fmt(ref10["peak_rss_growth_mb"]),
                         r, "meets (bounded)" if bounded else "MISSES"))
        lines.append(row(name, f"tracking {n:,} events took s", fmt(ours10["track_s"], 2),
                         fmt(ref10["track_s"], 2), ratio_of(ours10["track_s"], ref10["track_s"]),
                         "" if ref10["completed"] else "ref stopped at time budget"))
    if ours100 and ours100.get("ok") and ref10 and ref10.get("ok"):
        lines.append(row(name, "ours capacity 100 000: held / RSS growth MB",
                         f"{ours100['held']:,} / {fmt(ours100['rss_growth_mb'])}",
                         f"{ref10['held']:,} / {fmt(ref10['rss_growth_mb'])}", None,
                         "ref at its default 10 000"))
        a, b = ours100["bytes_per_held_event"], ref10["bytes_per_held_event"]
        lines.append(row(name, "bytes per buffered event (RSS growth / held)", fmt(a, 0),
                         fmt(b, 0), ratio_of(a, b), ""))
    return "\n".join(lines)


def sink_busy(result: dict[str, Any]) -> float | None:
    e2e = result.get("e2e_s")
    return 100.0 * result["sink_cpu_s"] / e2e if e2e else None


def delivery(result: dict[str, Any]) -> str:
    text = f"{result['delivered']:,} / {result['unique']:,} / {result['events']:,}"
    if result.get("dropped"):
        text += f" ({result['dropped']:,} dropped)"
    return text


def header(plan: Plan, raw: dict[str, Any], elapsed: float) -> str:
    return "\n".join([
        "# snowplow_threaded vs snowplow-tracker 1.1.0",
        "",
        f"* ours: {LIB_NAMES['ours']}; reference: {LIB_NAMES['ref_async']} (the 'vs async' "
        f"rows and all throughput/CPU/memory rows); {LIB_NAMES['ref_sync']} for the "
        "'vs sync Emitter' latency rows only.",
        f"* {plan.events:,} events per run (after a {200}-event warm-up), batch_size 10 "
        "(defaults); threads track at once; each run is a fresh child process; one "
        f"loopback sink process (asyncio, json.loads of every body). Python "
        f"{sys.version.split()[0]}, {raw['cpus']} CPUs (shared, noisy: single runs, "
        f"repeat={plan.repeat}).",
        "* events/s: delivered / (first track() → the sink has counted every event not "
        "dropped by the tracker; ours drops when its 10 000-event buffer is full, the "
        "reference's queue is unbounded); the tail is flushed with "
        "flush(is_async=True) in both. CPU: process_time of the child over the same span "
        "(includes building the event objects in the loop).",
        "* The reference calls logging.basicConfig() and logs INFO per request: its logger "
        "'snowplow_tracker' is set to WARNING in the child (CRITICAL in the sink-down run, "
        "where it logs a WARNING per failed request and an ERROR per dropped event).",
        f"* total benchmark wall time {elapsed:.0f} s.",
        "",
        "",
    ])


# -- profile mode ----------------------------------------------------------------------------------
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("JSON encoding", ("json/", "_json", "encode_json", "encode_basestring")),
    ("base64", ("base64", "b2a_base64", "b64encode")),
    ("id generation (uuid/urandom)", ("uuid", "urandom", "new_event_id",
                                      "method 'hex' of 'bytes'")),
    ("HTTP (requests/urllib3/http.client/socket)", (
        "posix.stat", "genericpath", "getproxies",
        "requests/", "urllib3/", "http/client", "socket", "ssl", "selectors", "email/",
        "urllib/parse", "http/cookiejar", "select.", "_socket", "idna", "encodings/idna",
        "urllib/request", "http/__init__")),
    ("locking (threading)", ("threading.py", "_thread.", "lock' objects", "acquire",
                             "release")),
    ("payload build (events/tracker/payload/subject)", (
        "snowplow_threaded/events/", "snowplow_threaded/tracker.py",
        "snowplow_threaded/payload.py", "snowplow_threaded/subject.py",
        "snowplow_threaded/self_describing_json.py", "snowplow_threaded/contracts.py")),
    ("engine/store/worker/transport", ("snowplow_threaded/",)),
    ("bench harness (event objects, timing)", ("stress/",)),
]
IDLE_WAITERS = ("threading.py", "wait")


OTHER = "other (interpreter, gc, ...)"


def direct_bucket(func: tuple[str, int, str]) -> str | None:
    filename, _line, name = func
    text = f"{filename}:{name}"
    for bucket, needles in BUCKETS:
        if any(needle in text for needle in needles):
            return bucket
    return None


def bucket_shares(stats_table: dict[Any, Any]) -> Any:
    """A function mapping a profiled function to ``{bucket: share}``: its own bucket if its
    file/name says so, else its callers' buckets weighted by the time spent under each
    (so ``posix.stat`` called by requests counts as HTTP, ``os.environ`` iteration by
    ``getproxies`` too)."""
    memo: dict[Any, dict[str, float]] = {}

    def resolve(func: Any, depth: int) -> dict[str, float]:
        if func in memo:
            return memo[func]
        direct = direct_bucket(func)
        if direct is not None:
            return {direct: 1.0}
        entry = stats_table.get(func)
        callers = entry[4] if entry else {}
        weights = {caller: value[3] for caller, value in callers.items() if caller != func}
        total = sum(weights.values())
        if depth > 12 or not total:
            return {OTHER: 1.0}
        memo[func] = {OTHER: 1.0}  # cycle guard
        shares: dict[str, float] = {}
        for caller, weight in weights.items():
            for key, share in resolve(caller, depth + 1).items():
                shares[key] = shares.get(key, 0.0) + share * weight / total
        memo[func] = shares
        return shares

    return lambda func: resolve(func, 0)


def buckets(stats: pstats.Stats) -> tuple[dict[str, float], float]:
    """Self time per bucket. Lock acquires called from ``Condition.wait`` (an idle worker
    waiting for work) are a separate bucket, excluded from the shares."""
    out: dict[str, float] = {}
    idle = 0.0
    table_ = stats.stats  # type: ignore[attr-defined]
    shares_of = bucket_shares(table_)
    for func, (_cc, _nc, tt, _ct, callers) in table_.items():
        if "acquire" in func[2] and "lock" in func[2]:
            waited = sum(v[2] for caller, v in callers.items()
                         if caller[0].endswith(IDLE_WAITERS[0]) and caller[2] == IDLE_WAITERS[1])
            idle += waited
            tt -= waited
        for key, share in shares_of(func).items():
            out[key] = out.get(key, 0.0) + tt * share
    return out, idle


def profile_report(prefix: str, result: dict[str, Any], clock: str, top: int) -> str:
    lines = [f"# profile: ours, workload (a), {result.get('events')} events, 1 thread "
             f"(cProfile, clock={clock})", ""]
    if not result.get("ok"):
        return "\n".join([*lines, f"profile run failed: {result.get('error')}"])
    lines.append(f"track() p50 {result['latency_us']['p50']:.1f} µs (under the profiler), "
                 f"process CPU {result['cpu_us_per_event']:.1f} µs/event "
                 f"(tracking thread {result['tracking_cpu_us_per_event']:.1f}, "
                 f"sender/other {result['other_cpu_us_per_event']:.1f})")
    totals: dict[str, float] = {}
    for group in ("caller", "worker"):
        path = f"{prefix}.{group}.prof"
        if not os.path.exists(path):
            continue
        stats = pstats.Stats(path)
        by_bucket, idle = buckets(stats)
        busy = sum(by_bucket.values())
        for key, value in by_bucket.items():
            totals[key] = totals.get(key, 0.0) + value
        title = "tracking thread (track())" if group == "caller" else "sender thread(s)"
        lines += ["", f"## {title}: {busy:.3f} s profiled"
                  + (f" (+{idle:.3f} s idle in Condition.wait, excluded)" if idle else ""),
                  "", "| bucket | s | share |", "| --- | ---: | ---: |"]
        for key, value in sorted(by_bucket.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {key} | {value:.3f} | {value / busy:.1%} |")
        for sort in ("cumulative", "tottime"):
            lines += ["", f"### {title}: top {top} by {sort}", "", "```"]
            lines.append(pstats_text(path, sort, top))
            lines.append("```")
    busy = sum(totals.values())
    if busy:
        lines += ["", "## all threads", "", "| bucket | s | share |", "| --- | ---: | ---: |"]
        for key, value in sorted(totals.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {key} | {value:.3f} | {value / busy:.1%} |")
    return "\n".join(lines)


def pstats_text(path: str, sort: str, top: int) -> str:
    import io
    buffer = io.StringIO()
    stats = pstats.Stats(path, stream=buffer)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    text = buffer.getvalue()
    start = text.find("   ncalls")
    return text[start:].rstrip() if start >= 0 else text.rstrip()


def run_profile(args: argparse.Namespace, out: Path) -> None:
    events = args.events or (5_000 if args.quick else 20_000)
    with sink_process() as port:
        prefix = str(out / "profile")
        spec = {"mode": "profile", "lib": "ours", "workload": args.workload, "threads": 1,
                "events": events, "port": port, "profile_prefix": prefix,
                "profile_clock": args.profile_clock, "timeout": 120}
        result = run_child(spec, 180)
    report = profile_report(prefix, result, args.profile_clock, args.top)
    print(report)
    (out / "profile.md").write_text(report + "\n")


# -- main -----------------------------------------------------------------------------------------
def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        return Plan(events=args.events or 2_000, threads=[1, 4], workloads=["se", "sd_b64"],
                    sync_threads=[1, 4], down_events=args.down_events or 30_000,
                    child_timeout=20, repeat=args.repeat)
    return Plan(events=args.events or 20_000, threads=[1, 4, 16],
                workloads=list(WORKLOADS), sync_threads=[1, 4, 16],
                down_events=args.down_events or 100_000, child_timeout=120,
                repeat=args.repeat)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stress.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=None,
                        help="events per run (default 20 000; --quick 2 000)")
    parser.add_argument("--quick", action="store_true", help="CI-sized run (< 30 s)")
    parser.add_argument("--out", type=Path, default=REPO / "stress" / "out",
                        help="output directory (default stress/out)")
    parser.add_argument("--down-events", type=int, default=None,
                        help="events tracked with the sink down (default 100 000; "
                             "--quick 30 000)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per cell; the median (by end-to-end time) is reported")
    parser.add_argument("--profile", action="store_true",
                        help="profile our library on workload (a) instead")
    parser.add_argument("--profile-clock", choices=("wall", "cpu"), default="wall",
                        help="cProfile timer: wall (default, cheap) or per-thread CPU")
    parser.add_argument("--top", type=int, default=25, help="functions listed per profile")
    parser.add_argument("--workload", choices=("se", "sd", "sd_raw"), default="se",
                        help="workload profiled by --profile (default se)")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.profile:
        run_profile(args, out)
        return
    plan = make_plan(args)
    started = time.monotonic()
    raw = measure(plan)
    elapsed = time.monotonic() - started
    raw["elapsed_s"] = elapsed
    report = header(plan, raw, elapsed) + table(raw, plan)
    print(report)
    (out / "bench.md").write_text(report + "\n")
    (out / "bench.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    print(f"\nwritten: {out / 'bench.md'}, {out / 'bench.json'} ({elapsed:.1f} s)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
