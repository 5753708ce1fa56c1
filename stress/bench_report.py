"""The markdown report of :mod:`stress.bench`: a summary, the detailed table (ours, the
reference, ratio ours/ref, target met or not) and the floor section."""

from __future__ import annotations

import sys
from typing import Any

from snowplow_threaded.event_store import DEFAULT_BUFFER_CAPACITY, DEFAULT_BUFFER_MAX_BYTES
from stress.bench_runner import FORK_LABEL, WORKLOADS

#: the default bounds of ours, as the header states them
_BUFFER = (f"{DEFAULT_BUFFER_MAX_BYTES / 2**20:g} MiB, "
           + f"{DEFAULT_BUFFER_CAPACITY:,}".replace(",", " ") + " events")

LIB_NAMES = {
    "ours": "snowplow_threaded (create_tracker defaults)",
    "ref_async": "snowplow-tracker 1.1.0 AsyncEmitter(session=requests.Session())",
    "ref_sync": "snowplow-tracker 1.1.0 Snowplow.create_tracker (sync Emitter)",
}
# metric key -> (target ratio ours/ref, "le" = ratio must be <=, "ge" = >=)
TARGETS: dict[str, tuple[float, str]] = {
    "p50": (0.5, "le"),
    "p99": (0.2, "le"),
    "events_per_s": (5.0, "ge"),
    "cpu_us_per_event": (0.2, "le"),
}
LATENCY_KEYS = (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max"))


# -- formatting -------------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def met(metric: str, ratio: float | None) -> bool | None:
    target = TARGETS.get(metric)
    if ratio is None or target is None:
        return None
    bound, how = target
    return ratio <= bound if how == "le" else ratio >= bound


def verdict(metric: str, ratio: float | None) -> str:
    ok = met(metric, ratio)
    if ok is None:
        return ""
    bound, how = TARGETS[metric]
    return f"{'meets' if ok else 'MISSES'} ({'≤' if how == 'le' else '≥'} {bound:g}x)"


def ratio_of(ours: float | None, ref: float | None) -> float | None:
    if ours is None or ref is None or ref == 0:
        return None
    return ours / ref


def ratio_text(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


#: per-run figures kept for --repeat (median per figure, median of paired ratios)
REPEAT_KEYS = ("p50", "p99", "p999", "max", "events_per_s", "cpu_us_per_event",
               "tracking_cpu_us_per_event", "other_cpu_us_per_event", "drain_s", "track_s")


def direct(result: dict[str, Any], key: str) -> float | None:
    """One run's figure: a latency percentile or a top-level number."""
    if key in ("p50", "p99", "p999", "max"):
        value = result.get("latency_us", {}).get(key)
    else:
        value = result.get(key)
    return None if value is None else float(value)


def figures(result: dict[str, Any]) -> dict[str, float | None] | None:
    """The :data:`REPEAT_KEYS` of one run (None for a failed run)."""
    if not result.get("ok"):
        return None
    return {key: direct(result, key) for key in REPEAT_KEYS}


def with_repeats(chosen: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """*chosen* (the run whose counts are shown) with every run's figures attached."""
    return {**chosen, "repeats": [figures(r) for r in results]}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def metric(result: dict[str, Any], key: str) -> float | None:
    """The median of *key* over the repeated runs (the run's own figure without them)."""
    values = [r[key] for r in result.get("repeats") or [] if r and r.get(key) is not None]
    return _median(values) if values else direct(result, key)


def paired(ours: dict[str, Any], ref: dict[str, Any], key: str) -> float | None:
    """The median of the per-run ratios ours/ref (run i of each library ran next to each
    other), else the ratio of the medians."""
    a, b = ours.get("repeats") or [], ref.get("repeats") or []
    ratios = [x[key] / y[key] for x, y in zip(a, b, strict=False)
              if x and y and x.get(key) is not None and y.get(key)]
    return _median(ratios) if ratios else ratio_of(metric(ours, key), metric(ref, key))


def compare(name: str, label: str, ours: dict[str, Any], ref: dict[str, Any], key: str,
            digits: int = 1, judge: str | None = None) -> str:
    """A table row of one figure: both medians, the paired ratio, the verdict."""
    r = paired(ours, ref, key)
    return row(name, label, fmt(metric(ours, key), digits), fmt(metric(ref, key), digits), r,
               verdict(judge or key, r) if judge != "" else "")


def row(workload: str, metric: str, ours: str, ref: str, ratio: float | None,
        note: str) -> str:
    return f"| {workload} | {metric} | {ours} | {ref} | {ratio_text(ratio)} | {note} |"


def lookup(raw: dict[str, Any], lib: str, workload: str, threads: int) -> dict[str, Any] | None:
    for run in raw["runs"]:
        if (run["lib"], run["workload"], run["threads"]) == (lib, workload, threads):
            result: dict[str, Any] = run["result"]
            return result if result.get("ok") else None
    return None


def ok_result(group: dict[str, Any], lib: str) -> dict[str, Any] | None:
    result = group.get(lib)
    return result if result and result.get("ok") else None


def sink_busy(result: dict[str, Any]) -> float | None:
    e2e = result.get("e2e_s")
    return 100.0 * result["sink_cpu_s"] / e2e if e2e else None


def delivery(result: dict[str, Any]) -> str:
    text = f"{result['delivered']:,} / {result['unique']:,} / {result['events']:,}"
    if result.get("dropped"):
        text += f" ({result['dropped']:,} dropped)"
    if result.get("killed"):
        text += f" ({result['killed']} killed)"
    return text


def short(result: dict[str, Any]) -> str:
    """One progress line for stderr."""
    if not result.get("ok"):
        return f"FAILED: {result.get('error')}"
    if "drain_s" in result:
        return (f"exit {result['drain_s']:.2f} s after the last track(), "
                f"{result['delivered']:,} / {result['events']:,} arrived")
    if "latency_us" in result and "delivered" in result:
        eps, cpu = result.get("events_per_s"), result.get("cpu_us_per_event")
        return (f"p50 {result['latency_us'].get('p50', 0):.1f} µs, "
                f"{(eps or 0):,.0f} ev/s, {fmt(cpu, 0)} µs CPU/ev, "
                f"{delivery(result)} ({result['child_wall_s']:.1f} s)")
    return (f"held {result['held']}, RSS +{result['rss_growth_mb']:.1f} MB, "
            f"{result['track_s']:.1f} s")


# -- summary ----------------------------------------------------------------------------------
SHORT = {"p50": "p50", "p99": "p99", "events_per_s": "events/s", "cpu_us_per_event": "CPU"}


def pair(ours: dict[str, Any], ref: dict[str, Any], key: str,
         digits: int = 1) -> tuple[str, bool | None]:
    r = paired(ours, ref, key)
    ok = met(key, r)
    mark = "" if ok is None else (" ✓" if ok else " ✗")
    return (f"{fmt(metric(ours, key), digits)} / {fmt(metric(ref, key), digits)} "
            f"({ratio_text(r)}{mark})", ok)


def summary_row(name: str, ours: dict[str, Any], ref: dict[str, Any]) -> str:
    """One workload's row. A run that dropped events meets no throughput or CPU target,
    however fast it looks: what it did not deliver, it did not have to send."""
    cells, missed, judged = [], [], 0
    lost = dropped_count(ours)
    for key, digits in (("p50", 1), ("p99", 1), ("events_per_s", 0),
                        ("cpu_us_per_event", 1)):
        text, ok = pair(ours, ref, key, digits)
        if lost and key in ("events_per_s", "cpu_us_per_event"):
            text = text.replace(" ✓)", " ✗)") + f" ({lost:,} dropped)"
            ok = False if ok is not None else None
        cells.append(text)
        if ok is not None:
            judged += 1
            if not ok:
                missed.append(SHORT[key])
    targets = f"{judged - len(missed)}/{judged} met" + (
        f"; MISSES {', '.join(missed)}" if missed else "")
    dl = f"{delivered_pct(ours)} · {delivered_pct(ref)}"
    if lost:
        dl += f" ({lost:,} dropped)"
    return f"| {name} | {' | '.join(cells)} | {dl} | {targets} |"


def dropped_count(result: dict[str, Any]) -> int:
    """Events the library itself dropped in the run (ours counts them; the reference
    never drops, its queue is unbounded)."""
    dropped = result.get("dropped") or 0
    return sum(dropped.values()) if isinstance(dropped, dict) else int(dropped)


def delivered_pct(result: dict[str, Any]) -> str:
    events = result.get("events") or 0
    return f"{100.0 * result['delivered'] / events:.0f} %" if events else "n/a"


def all_runs(result: dict[str, Any]) -> str:
    """"; every run: a, b, c" when --repeat gave more than one run."""
    runs = result.get("delivered_all_runs") or []
    if len(runs) < 2:
        return ""
    return "; every run: " + ", ".join("failed" if n is None else f"{n:,}" for n in runs)


def summary(raw: dict[str, Any], plan: Any) -> str:
    lines = [
        "## Summary: ours / reference AsyncEmitter (ratio; ✓ target met, ✗ missed)", "",
        "| workload, tracking threads | track() p50 µs | track() p99 µs "
        "| delivered events/s | CPU µs / delivered event | delivered: ours · ref | targets |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for workload in plan.workloads:
        for threads in plan.threads:
            ours = lookup(raw, "ours", workload, threads)
            ref = lookup(raw, "ref_async", workload, threads)
            if ours and ref:
                lines.append(summary_row(f"{WORKLOADS[workload]}, {threads}", ours, ref))
    fork = raw.get("fork", {})
    ours, ref = ok_result(fork, "ours"), ok_result(fork, "ref_async")
    if ours and ref:
        lines.append(summary_row(f"{FORK_LABEL}, 1 each", ours, ref))
    lines += ["", *process_summary(raw, plan)]
    return "\n".join(lines)


def process_summary(raw: dict[str, Any], plan: Any) -> list[str]:
    lines = ["| scenario | ours | reference AsyncEmitter | reference sync Emitter |",
             "| --- | --- | --- | --- |"]
    exits = raw.get("exit", {})
    cells = []
    for lib in ("ours", "ref_async", "ref_sync"):
        r = ok_result(exits, lib)
        cells.append("n/a" if r is None else
                     f"{fmt(metric(r, 'drain_s'), 2)} s; {r['delivered']:,} / {r['events']:,} "
                     "arrived"
                     f" ({delivered_pct(r)}{all_runs(r)})")
    lines.append(f"| script tracks {plan.exit_events:,} events and ends: last track() → "
                 f"exit; delivered | {' | '.join(cells)} |")
    fork = raw.get("fork", {})
    cells = []
    for lib in ("ours", "ref_async", "ref_sync"):
        r = ok_result(fork, lib)
        cells.append("n/a" if r is None else
                     f"{delivery(r)}; {fmt(metric(r, 'events_per_s'), 0)} ev/s{all_runs(r)}")
    lines.append(f"| {FORK_LABEL}: delivered / unique / tracked; events/s | "
                 f"{' | '.join(cells)} |")
    costs = raw.get("fork_cost", {})
    ours, ref = ok_result(costs, "ours"), ok_result(costs, "ref")
    if ours and ref:
        for count in ("1", "10"):
            lines.append(
                f"| os.fork() with {count} live emitter(s): child-side µs (added vs none) | "
                f"{fmt(ours[count]['child_p50'], 0)} ({ours[count]['added_child_us']:+,.0f})"
                f" | {fmt(ref[count]['child_p50'], 0)} ({ref[count]['added_child_us']:+,.0f})"
                " | — |")
    down = {d["lib"]: d["result"] for d in raw.get("down", [])}
    o, r = down.get("ours"), down.get("ref_async")
    if o and r and o.get("ok") and r.get("ok"):
        lines.append(f"| sink down, {plan.down_events:,} events: held (dropped); peak RSS "
                     f"growth | {o['held']:,} ({dropped_count(o):,}); "
                     f"{fmt(o['peak_rss_growth_mb'])} MB | {r['held']:,} (0); "
                     f"{fmt(r['peak_rss_growth_mb'])} MB | — |")
    return lines


# -- detailed table ---------------------------------------------------------------------------
def latency_rows(name: str, ours: dict[str, Any], other: dict[str, Any], vs: str) -> list[str]:
    return [compare(name, f"track() {label} µs vs {vs}", ours, other, key)
            for key, label in LATENCY_KEYS]


def cell_rows(raw: dict[str, Any], workload: str, threads: int) -> list[str]:
    name = f"{WORKLOADS[workload]}, {threads} thr"
    ours = lookup(raw, "ours", workload, threads)
    ref = lookup(raw, "ref_async", workload, threads)
    sync = lookup(raw, "ref_sync", workload, threads)
    if ours is None or ref is None:
        return [row(name, "(run failed)", "", "", None, "")]
    lines = latency_rows(name, ours, ref, "async")
    if sync is not None:
        lines += latency_rows(name, ours, sync, "sync Emitter")
    lines.append(compare(name, "delivered events/s (end to end)", ours, ref, "events_per_s", 0))
    lines.append(compare(name, "process CPU µs / delivered event", ours, ref,
                         "cpu_us_per_event"))
    for key, label in (("tracking_cpu_us_per_event", "… of which tracking threads µs/event"),
                       ("other_cpu_us_per_event", "… of which senders/other µs/event")):
        lines.append(compare(name, label, ours, ref, key, judge=""))
    lines.append(row(name, "sink process busy % of e2e (not the bottleneck)",
                     fmt(sink_busy(ours), 0), fmt(sink_busy(ref), 0), None, ""))
    lines.append(row(
        name, "delivered / unique eids / tracked", delivery(ours), delivery(ref), None,
        "all delivered once" if ours["complete"] and ref["complete"] else
        f"ours DROPPED {dropped_count(ours):,} (buffer full): throughput and CPU targets "
        "missed, each sent once" if ours["all_accounted"] and ref["complete"] else "CHECK"))
    return lines


def fork_rows(raw: dict[str, Any], plan: Any) -> list[str]:
    group = raw.get("fork", {})
    ours, ref, sync = (ok_result(group, "ours"), ok_result(group, "ref_async"),
                       ok_result(group, "ref_sync"))
    name = f"{FORK_LABEL}, {plan.fork_events:,} events"
    if ours is None or ref is None:
        return [row(name, "(run failed)", "", "", None, "")]
    lines = latency_rows(name, ours, ref, "async")
    if sync is not None:
        lines += latency_rows(name, ours, sync, "sync Emitter")
    for other, vs in ((ref, "async"), (sync, "sync Emitter")):
        if other is None:
            continue
        lines.append(compare(name, f"delivered events/s (first fork → last event) vs {vs}",
                             ours, other, "events_per_s", 0))
        lines.append(compare(name, f"CPU µs / delivered event, all processes, vs {vs}",
                             ours, other, "cpu_us_per_event"))
        lines.append(row(name, f"delivered / unique / tracked vs {vs}", delivery(ours),
                         delivery(other), None,
                         "ours all delivered once" if ours["complete"] else "ours: CHECK"))
        lines.append(row(name, f"children: exit codes; killed at deadline, vs {vs}",
                         f"{ours['exit_codes']}; {ours['killed']}",
                         f"{other['exit_codes']}; {other['killed']}", None, ""))
        a, b = median(ours["exit_drain_s"]), median(other["exit_drain_s"])
        lines.append(row(name, f"child last track() → exit s, median, vs {vs}",
                         fmt(a, 2), fmt(b, 2), ratio_of(a, b), ""))
    return lines


def median(values: list[float]) -> float | None:
    return values[len(values) // 2] if values else None


def exit_rows(raw: dict[str, Any], plan: Any) -> list[str]:
    group = raw.get("exit", {})
    ours = ok_result(group, "ours")
    name = f"script exit, {plan.exit_events:,} x (a), 1 thr"
    if ours is None:
        return [row(name, "(run failed)", "", "", None, "")]
    lines = []
    for lib, vs in (("ref_async", "async"), ("ref_sync", "sync Emitter")):
        other = ok_result(group, lib)
        if other is None:
            continue
        lines.append(compare(name, f"last track() → process exit s vs {vs}", ours, other,
                             "drain_s", 3, judge=""))
        lines.append(row(name, f"delivered / unique / tracked (arrived %) vs {vs}",
                         f"{delivery(ours)} ({delivered_pct(ours)})",
                         f"{delivery(other)} ({delivered_pct(other)})", None,
                         "ours all delivered once" if ours["complete"] else "ours: CHECK"))
        lines.append(compare(name, f"tracking took s vs {vs}", ours, other, "track_s", 2,
                             judge=""))
    return lines


def fork_cost_rows(raw: dict[str, Any]) -> list[str]:
    costs = raw.get("fork_cost", {})
    ours, ref = ok_result(costs, "ours"), ok_result(costs, "ref")
    name = "os.fork() cost (emitters hold 100 events each)"
    if ours is None or ref is None:
        return [row(name, "(run failed)", "", "", None, "")] if costs else []
    lines = [row(name, "no emitter (library imported): child-side µs p50",
                 fmt(ours["0"]["child_p50"], 0), fmt(ref["0"]["child_p50"], 0),
                 ratio_of(ours["0"]["child_p50"], ref["0"]["child_p50"]), "")]
    for count in ("1", "10"):
        a, b = ours[count], ref[count]
        lines.append(row(name, f"{count} live emitter(s): child-side µs p50 (fork → first line)",
                         fmt(a["child_p50"], 0), fmt(b["child_p50"], 0),
                         ratio_of(a["child_p50"], b["child_p50"]), ""))
        lines.append(row(name, f"{count} live emitter(s): added vs none, child / parent µs",
                         f"{fmt(a['added_child_us'], 0)} / {fmt(a['added_parent_us'], 0)}",
                         f"{fmt(b['added_child_us'], 0)} / {fmt(b['added_parent_us'], 0)}",
                         None, ""))
    if "hook_us_per_emitter" in ours:
        lines.append(row(name, "our after-fork hook alone (warm, in-process) µs / emitter",
                         fmt(ours["hook_us_per_emitter"]), "no hook", None, ""))
    return lines


def down_rows(raw: dict[str, Any], plan: Any) -> list[str]:
    down = {d["lib"]: d["result"] for d in raw.get("down", [])}
    n = plan.down_events
    ours, ref = down.get("ours"), down.get("ref_async")
    name = f"sink DOWN, {n:,} x (a), 1 thr, defaults"
    lines: list[str] = []
    if not (ours and ref and ours.get("ok") and ref.get("ok")):
        return lines
    held_mb = (ours.get("held_bytes") or 0) / 2**20
    bounded = held_mb <= (ours.get("buffer_max_bytes") or 0) / 2**20
    lines.append(row(name, "events held at end", f"{ours['held']:,}", f"{ref['held']:,}", None,
                     "meets (bounded by buffer_max_bytes)" if bounded else "MISSES"))
    lines.append(row(name, "events dropped (counted, logged)",
                     f"{dropped_count(ours):,}", "0 (unbounded queue)", None, ""))
    r = ratio_of(ours["peak_rss_growth_mb"], ref["peak_rss_growth_mb"])
    lines.append(row(name, "peak RSS growth MB", fmt(ours["peak_rss_growth_mb"]),
                     fmt(ref["peak_rss_growth_mb"]), r,
                     "meets (≤ 0.25x)" if r is not None and r <= 0.25 else "MISSES (≤ 0.25x)"))
    a, b = ours["bytes_per_held_event"], ref["bytes_per_held_event"]
    lines.append(row(name, "bytes per buffered event (RSS growth / held)", fmt(a, 0),
                     fmt(b, 0), ratio_of(a, b), f"ours counts {held_mb:.1f} MB held"))
    lines.append(row(name, f"tracking {n:,} events took s", fmt(ours["track_s"], 2),
                     fmt(ref["track_s"], 2), ratio_of(ours["track_s"], ref["track_s"]),
                     "" if ref["completed"] else "ref stopped at time budget"))
    return lines


def table(raw: dict[str, Any], plan: Any) -> str:
    lines = [
        "## Detail", "",
        "| workload | metric | ours | reference | ratio ours/ref | target |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for workload in plan.workloads:
        for threads in plan.threads:
            lines += cell_rows(raw, workload, threads)
    lines += fork_rows(raw, plan)
    lines += exit_rows(raw, plan)
    lines += fork_cost_rows(raw)
    lines += down_rows(raw, plan)
    return "\n".join(lines)


# -- floor ------------------------------------------------------------------------------------
def floor_section(raw: dict[str, Any]) -> str:
    floor = raw.get("floor") or {}
    if not floor.get("ok"):
        return "## How close to the floor\n\nfloor run failed: " + str(floor.get("error"))
    lines = [
        "## How close to the floor (ours, 1 tracking thread, defaults)", "",
        "Floor per event = building the event object + the payload build "
        "(`track()` with a no-op admission: the event's record, its JSON included) + what "
        "is left of the JSON for the sender + one "
        "keep-alive `http.client` POST of a batch of the observed events-per-request to the "
        "sink ÷ its events: thread CPU, best of 7 timeit-style loops in a fresh process, "
        f"each part the minimum over {floor.get('runs', 1)} such process(es); sender JSON: "
        "the cheaper of one `json.dumps` of the payload dict (the transport's compact "
        "separators, its encoder built once) and the request body made of a batch's "
        "records ÷ its events. Measured: process "
        "CPU per delivered event of the 1-thread run (median). Buckets: share of "
        "profiled CPU (yappi, all threads, the bench harness left out).", "",
        "| workload | event object µs | payload build µs | sender JSON µs "
        "| HTTP µs / event (events per POST; µs per POST) | floor µs | measured CPU µs / event "
        "| measured / floor | largest profile buckets |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    profiles = raw.get("profiles", {})
    for workload, f in floor["workloads"].items():
        measured = lookup(raw, "ours", workload, 1)
        cpu = metric(measured, "cpu_us_per_event") if measured else None
        tops = profiles.get(workload, {}).get("top", [])
        top_text = "; ".join(f"{k} {share:.0%}" for k, share in tops) or "n/a"
        lines.append(
            f"| {WORKLOADS[workload]} | {fmt(f['construct_us'], 2)} | {fmt(f['build_us'], 2)} "
            f"| {fmt(f['dumps_us'], 2)} | {fmt(f['http_us'], 2)} ({f['batch']}; "
            f"{fmt(f['post_us'], 0)}) | {fmt(f['floor_us'], 2)} | {fmt(cpu)} "
            f"| {ratio_text(ratio_of(cpu, f['floor_us']))} | {top_text} |")
    se = profiles.get("se", {}).get("top") or next(
        (p.get("top") for p in profiles.values() if p.get("top")), None)
    if se:
        lines += ["", f"Next bottleneck (largest bucket of our own work): **{se[0][0]}**, "
                      f"{se[0][1]:.0%} of profiled CPU"
                      + (f"; then {se[1][0]} ({se[1][1]:.0%})" if len(se) > 1 else "") + "."]
    return "\n".join(lines)


# -- header ------------------------------------------------------------------------------------
def header(plan: Any, raw: dict[str, Any], elapsed: float) -> str:
    load0, load1 = raw.get("load_start"), raw.get("load_end")
    load = (f"load average {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f} at the start, "
            f"{load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f} at the end" if load0 and load1
            else "load average unknown")
    return "\n".join([
        "# snowplow_threaded vs snowplow-tracker 1.1.0",
        "",
        f"* ours: {LIB_NAMES['ours']}; reference: {LIB_NAMES['ref_async']} (the 'vs async' "
        f"rows and all throughput/CPU/memory rows); {LIB_NAMES['ref_sync']} for the "
        "'vs sync Emitter' rows.",
        f"* {plan.events:,} events per run (after a 200-event warm-up), batch_size 10 "
        "(defaults); threads track at once; each run is a fresh child process; one "
        f"loopback sink process (asyncio, json.loads of every body). Python "
        f"{sys.version.split()[0]}, {raw['cpus']} CPUs, shared and noisy; {load}.",
        f"* {plan.repeat} run(s) per cell, the libraries interleaved (ours, ref, ours, ref, "
        "…): each figure is the median over the runs, each ratio the median of the per-run "
        "ratios ours/ref (runs side by side in time); counts (delivered, dropped) and the "
        "chart's percentile curves come from the run with the median end-to-end time.",
        "* events/s: delivered / (first track() → the sink has counted every event not "
        f"dropped by the tracker; ours drops when its buffer ({_BUFFER}) is "
        "full, and a run that dropped meets no throughput or CPU target; the reference's "
        "queue is unbounded); the tail is flushed with "
        "flush(is_async=True) in both. CPU: process_time of the child over the same span "
        "(includes building the event objects in the loop).",
        f"* {FORK_LABEL}: the tracker is built and warmed up in a parent, which forks "
        f"{plan.fork_workers} children; each tracks {plan.fork_events // plan.fork_workers:,} "
        "events on one thread and exits normally (no explicit flush: the library's exit "
        f"handling, if any, delivers); a child alive after {plan.fork_timeout:g} s is killed "
        "and counted. CPU: the parent plus every child (os.wait4 rusage).",
        f"* script exit: a fresh process tracks {plan.exit_events:,} events and ends normally; "
        "time from its last track() to the process's exit, and what reached the sink.",
        "* The reference calls logging.basicConfig() and sets its emitters' logger to INFO "
        "(a line per request): both its loggers are set to WARNING in the children "
        "(CRITICAL in the sink-down run).",
        f"* total benchmark wall time {elapsed:.0f} s.",
        "",
        "",
    ])
