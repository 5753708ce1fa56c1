"""Where our library's CPU goes: ``--profile`` of :mod:`stress.bench`, and the buckets the
benchmark's floor section names the next bottleneck from.

One child process (:mod:`stress.child`, mode ``profile``) tracks with one thread under
yappi, one profiler for the process that keeps a profile per thread (cProfile cannot:
since Python 3.12 only one may be enabled, and it sees every thread's calls on one
stack). The self time of each profiled function is put in a bucket by its file and name
(or, for builtins and stdlib helpers, by its callers).
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
from pathlib import Path
from typing import Any

from stress.bench_runner import WORKLOADS, run_child, sink_process

BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("JSON encoding", ("json/", "_json", "encode_json", "encode_basestring",
                       "snowplow_threaded/record.py")),
    ("base64", ("base64", "b2a_base64", "b64encode")),
    ("id generation (uuid/random bytes)", ("uuid", "urandom", "RAND_bytes", "new_event_id",
                                           "_fresh_ids", "method 'hex' of 'bytearray'",
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
IDLE_WAITERS = ("threading.py", "Condition.wait")


OTHER = "other (interpreter, gc, ...)"


def direct_bucket(func: tuple[str, int, str]) -> str | None:
    filename, line, name = func
    # a builtin is (module, 0, name): "posix.stat", "_thread.allocate_lock"
    text = f"{filename}.{name}" if line == 0 else f"{filename}:{name}"
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


def thread_buckets(prefix: str) -> dict[str, tuple[dict[str, float], float]]:
    """``{"caller"|"worker": (seconds per bucket, idle seconds)}`` of a profile run."""
    out: dict[str, tuple[dict[str, float], float]] = {}
    for group in ("caller", "worker"):
        path = f"{prefix}.{group}.prof"
        if os.path.exists(path):
            out[group] = buckets(pstats.Stats(path))
    return out


def all_threads(groups: dict[str, tuple[dict[str, float], float]]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for by_bucket, _idle in groups.values():
        for key, value in by_bucket.items():
            totals[key] = totals.get(key, 0.0) + value
    return totals


HARNESS = "bench harness (event objects, timing)"


def top_buckets(totals: dict[str, float], count: int = 3) -> list[tuple[str, float]]:
    """The largest buckets of the library's own work, as (bucket, share of all profiled
    CPU): the harness (building the event objects, timing) is left out of the ranking."""
    busy = sum(totals.values())
    if not busy:
        return []
    ranked = sorted(((k, v / busy) for k, v in totals.items() if k != HARNESS),
                    key=lambda kv: -kv[1])
    return ranked[:count]


def profile_report(prefix: str, result: dict[str, Any], clock: str, top: int,
                   workload: str) -> str:
    lines = [f"# profile: ours, workload {workload} = {WORKLOADS.get(workload, workload)}, "
             f"{result.get('events')} events, 1 thread (yappi, clock={clock})", ""]
    if not result.get("ok"):
        return "\n".join([*lines, f"profile run failed: {result.get('error')}"])
    lines.append(f"track() p50 {result['latency_us']['p50']:.1f} µs (under the profiler), "
                 f"process CPU {result['cpu_us_per_event']:.1f} µs/event "
                 f"(tracking thread {result['tracking_cpu_us_per_event']:.1f}, "
                 f"sender/other {result['other_cpu_us_per_event']:.1f})")
    groups = thread_buckets(prefix)
    for group, (by_bucket, idle) in groups.items():
        path = f"{prefix}.{group}.prof"
        busy = sum(by_bucket.values())
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
    totals = all_threads(groups)
    busy = sum(totals.values())
    if busy:
        lines += ["", "## all threads", "", "| bucket | s | share |", "| --- | ---: | ---: |"]
        for key, value in sorted(totals.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {key} | {value:.3f} | {value / busy:.1%} |")
        ranked = top_buckets(totals, 1)
        if ranked:
            lines += ["", f"Largest bucket of the library's own work (the next bottleneck): "
                          f"{ranked[0][0]}, {ranked[0][1]:.0%} of profiled CPU."]
    return "\n".join(lines)


def pstats_text(path: str, sort: str, top: int) -> str:
    buffer = io.StringIO()
    stats = pstats.Stats(path, stream=buffer)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    text = buffer.getvalue()
    start = text.find("   ncalls")
    return text[start:].rstrip() if start >= 0 else text.rstrip()


def profile_spec(workload: str, events: int, port: int, prefix: str,
                 clock: str) -> dict[str, Any]:
    return {"mode": "profile", "lib": "ours", "workload": workload, "threads": 1,
            "events": events, "port": port, "profile_prefix": prefix,
            "profile_clock": clock, "timeout": 120}


def run_profile(args: argparse.Namespace, out: Path) -> None:
    """``--profile``: one workload under yappi; the report on stdout and in
    ``<out>/profile.md``, the ``.prof`` files next to it."""
    events = args.events or (5_000 if args.quick else 20_000)
    with sink_process() as port:
        prefix = str(out / "profile")
        result = run_child(profile_spec(args.workload, events, port, prefix,
                                        args.profile_clock), 180)
    report = profile_report(prefix, result, args.profile_clock, args.top, args.workload)
    print(report)
    (out / "profile.md").write_text(report + "\n")
