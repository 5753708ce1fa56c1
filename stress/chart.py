"""The PNG chart of :mod:`stress.bench` (``<out>/bench.png``), drawn from its raw numbers.

Top row: ``track()`` latency by percentile (log scale), one panel per workload, ours
(solid) vs the reference's ``AsyncEmitter`` (dashed), one colour per number of tracking
threads (the run with the median end-to-end time). Bottom row: delivered events/s per
workload and thread count (median over --repeat runs), ours vs both reference set-ups.
Needs matplotlib (the ``bench`` extra); drawn with the Agg backend.

``python -m stress.chart <out>/bench.json [bench.png]`` redraws it from a saved run.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from stress.bench_report import metric
from stress.bench_runner import FORK_LABEL, WORKLOADS

SHORT = {"se": "StructuredEvent", "sd_b64": "SD+2 ctx, b64", "sd_raw": "SD+2 ctx, raw"}
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
LIBS = (("ours", "ours", "#1f77b4"), ("ref_async", "ref AsyncEmitter", "#ff7f0e"),
        ("ref_sync", "ref sync Emitter", "#7f7f7f"))


def nines(q: float) -> float:
    """x position of quantile *q*: 0.9 → 1, 0.99 → 2, ...; the max (q = 1) at 4.5."""
    return 4.5 if q >= 1.0 else -math.log10(1.0 - q)


def ladder_line(result: dict[str, Any] | None) -> tuple[list[float], list[float]] | None:
    if not result or not result.get("ok"):
        return None
    ladder = result.get("latency_us", {}).get("ladder")
    if not ladder:
        return None
    return [nines(q) for q, _ in ladder], [max(v, 0.1) for _, v in ladder]


def cells(raw: dict[str, Any]) -> dict[tuple[str, int], dict[str, dict[str, Any]]]:
    out: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for run in raw.get("runs", []):
        out.setdefault((run["workload"], run["threads"]), {})[run["lib"]] = run["result"]
    return out


def write_chart(raw: dict[str, Any], path: Path) -> str:
    """Draw the chart to *path*; a one-line note of what happened (never raises for a
    missing matplotlib: the chart is skipped and the note says so)."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed: chart skipped (pip install -e '.[bench]')"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_cell = cells(raw)
    workloads = [w for w in WORKLOADS if any(k[0] == w for k in by_cell)]
    threads = sorted({k[1] for k in by_cell})
    fork = raw.get("fork", {})
    panels = len(workloads) + (1 if fork else 0)
    fig = plt.figure(figsize=(max(12, 4.2 * panels), 9.5), dpi=100)
    grid = fig.add_gridspec(2, panels, height_ratios=(1.15, 1))
    ticks = [nines(q) for q in (0.5, 0.9, 0.99, 0.999, 0.9999, 1.0)]
    labels = ["p50", "p90", "p99", "p99.9", "p99.99", "max"]
    for index, workload in enumerate(workloads):
        ax = fig.add_subplot(grid[0, index])
        for colour, count in zip(COLOURS, threads, strict=False):
            group = by_cell.get((workload, count), {})
            for lib, style in (("ours", "-"), ("ref_async", "--")):
                line = ladder_line(group.get(lib))
                if line:
                    ax.plot(*line, style, color=colour, marker="." if lib == "ours" else None,
                            label=f"{'ours' if lib == 'ours' else 'ref async'}, {count} thr")
        latency_axes(ax, WORKLOADS[workload], ticks, labels)
    if fork:
        ax = fig.add_subplot(grid[0, panels - 1])
        for lib, label, colour in LIBS:
            line = ladder_line(fork.get(lib))
            if line:
                ax.plot(*line, "-" if lib == "ours" else "--", color=colour, label=label)
        latency_axes(ax, f"{FORK_LABEL} (children)", ticks, labels)
    throughput(fig.add_subplot(grid[1, :]), by_cell, workloads, threads, fork)
    load = raw.get("load_start")
    fig.suptitle("snowplow_threaded vs snowplow-tracker 1.1.0 — "
                 f"{raw.get('plan', {}).get('events', '?')} events per run"
                 + (f", load average {load[0]:.1f} on {raw.get('cpus')} CPUs" if load else ""),
                 fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path)
    plt.close(fig)
    return f"chart written: {path}"


def latency_axes(ax: Any, title: str, ticks: list[float], labels: list[str]) -> None:
    ax.set_yscale("log")
    ax.set_xticks(ticks, labels)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("track() latency µs (log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def throughput(ax: Any, by_cell: dict[tuple[str, int], dict[str, dict[str, Any]]],
               workloads: list[str], threads: list[int], fork: dict[str, Any]) -> None:
    names: list[str] = []
    groups: list[dict[str, Any]] = []
    for workload in workloads:
        for count in threads:
            if (workload, count) in by_cell:
                names.append(f"{SHORT.get(workload, workload)}\n{count} thr")
                groups.append(by_cell[(workload, count)])
    if fork:
        names.append("4 forked\nworkers")
        groups.append(fork)
    width = 0.8 / len(LIBS)
    for offset, (lib, label, colour) in enumerate(LIBS):
        xs, values = [], []
        for index, group in enumerate(groups):
            result = group.get(lib)
            value = metric(result, "events_per_s") if result and result.get("ok") else None
            xs.append(index + (offset - (len(LIBS) - 1) / 2) * width)
            values.append(value or 0.0)
        bars = ax.bar(xs, values, width, label=label, color=colour)
        for bar, value in zip(bars, values, strict=True):
            ax.annotate(f"{value / 1000:.1f}k" if value else "0", (bar.get_x()
                        + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=6)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("delivered events/s (end to end)")
    ax.set_title("Throughput: ours (create_tracker defaults) vs the reference", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else Path("stress/out/bench.json")
    target = Path(argv[1]) if len(argv) > 1 else source.with_suffix(".png")
    print(write_chart(json.loads(source.read_text()), target))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
