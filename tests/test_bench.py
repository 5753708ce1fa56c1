"""The side-by-side benchmark (``stress/bench.py``) in its CI size, as part of the test run.

It runs ``python -m stress.bench --quick --out <tmp>`` in a subprocess (our library and
the reference ``snowplow-tracker`` against a loopback sink) and checks behaviour only:
the exit status, a report row for every workload and scenario, the raw JSON, and the
chart when matplotlib is importable. No timing assertions: the figures are a report.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from stress.bench_runner import FORK_LABEL, WORKLOADS
from tests.helpers import require

REPO = Path(__file__).resolve().parent.parent
QUICK_THREADS = (1, 4)



@pytest.fixture(autouse=True)
def _reference_installed() -> None:
    require(importlib.util.find_spec("snowplow_tracker") is not None,
            "the reference snowplow-tracker 1.1.0 (in the test extra)")


def test_quick_benchmark_reports_every_workload(tmp_path: Path) -> None:
    proc = subprocess.run(
        # the shape of the report is checked, not its figures: the smallest useful sizes
        [sys.executable, "-m", "stress.bench", "--quick", "--events", "400",
         "--down-events", "4000", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, (
        f"bench failed (exit {proc.returncode})\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    report = (tmp_path / "bench.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    assert "(run failed)" not in report, report
    for label in WORKLOADS.values():
        for threads in QUICK_THREADS:
            name = f"| {label}, {threads} thr |"
            assert any(row.startswith(name) for row in rows), f"no row {name!r}:\n{report}"
    for prefix in (f"| {FORK_LABEL},", "| script exit,", "| os.fork() cost", "| sink DOWN,"):
        assert any(row.startswith(prefix) for row in rows), f"no {prefix!r} rows:\n{report}"
    assert "## How close to the floor" in report
    assert "Next bottleneck" in report
    assert "meets" in report or "MISSES" in report  # targets are judged

    raw = json.loads((tmp_path / "bench.json").read_text())
    assert all(run["result"].get("ok") for run in raw["runs"]), "a measurement child failed"
    assert {"ours", "ref_async", "ref_sync"} <= set(raw["fork"])
    assert raw["fork"]["ours"]["tracked"] == raw["fork"]["ours"]["events"]
    assert raw["exit"]["ours"]["ok"] and raw["floor"]["ok"]

    chart = tmp_path / "bench.png"
    if importlib.util.find_spec("matplotlib") is not None:
        assert chart.exists() and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "matplotlib is not installed" in report


def test_profile_reports_the_tracking_and_the_sender_threads(tmp_path: Path) -> None:
    """``--profile`` profiles every thread with one profiler for the process, on every
    Python from 3.10 (one ``cProfile.Profile`` per thread fails since 3.12, and the
    tracking thread that died left the run waiting until its deadline)."""
    proc = subprocess.run(
        [sys.executable, "-m", "stress.bench", "--profile", "--quick", "--events", "2000",
         "--profile-clock", "cpu", "--top", "5", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = (tmp_path / "profile.md").read_text()
    assert "profile run failed" not in report, report
    for section in ("## tracking thread (track())", "## sender thread(s)"):
        line = next((x for x in report.splitlines() if x.startswith(section)), None)
        assert line is not None, f"no {section!r} section:\n{report}"
        profiled = float(line.split(": ")[1].split(" s profiled")[0])
        assert profiled > 0, line
    assert (tmp_path / "profile.caller.prof").exists()
    assert (tmp_path / "profile.worker.prof").exists()
    assert "Largest bucket of the library's own work" in report


@pytest.mark.parametrize("command, rows", [
    (["stress.jitter", "--runs", "1", "--events", "2000"],
     ["sending", "idle", "plain work", "SD JSON parts only"]),
    (["stress.sender_gil", "--runs", "1", "--requests", "3"],
     ["nothing", "spin", "track", "track, ids from os.urandom (256 per call)",
      "track, 4 threads", "track, 16 threads"]),
    (["stress.encode_cost", "--runs", "1", "--batch", "100"],
     ["(a) StructuredEvent", "(b) SelfDescribing+2 ctx, base64",
      "(b) SelfDescribing+2 ctx, no base64", "(b) SelfDescribing+2 ctx: data and contexts"]),
])
def test_diagnostic_tools_report_every_set_up(command: list[str], rows: list[str]) -> None:
    """``stress.jitter``, ``stress.sender_gil`` and ``stress.encode_cost`` run and print a
    row per set-up, each with a number (what they measure is a report, not asserted)."""
    proc = subprocess.run([sys.executable, "-m", *command], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = {line.split(" | ")[0].strip("| "): line for line in proc.stdout.splitlines()
             if line.startswith("| ") and not line.startswith("| ---")}
    for row in rows:
        assert row in table, proc.stdout
        assert any(cell.strip().replace(",", "").replace(".", "").isdigit()
                   for cell in table[row].split("|")[2:]), table[row]
