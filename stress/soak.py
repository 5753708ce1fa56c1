"""Fault soak: real collector faults on loopback, and an exactly-once verdict per scenario.

Run from the repository root::

    python -m stress.soak               # full run (about 2.5 minutes on 2 cores)
    python -m stress.soak --ci          # every scenario shrunk, well under 60 s
    python -m stress.soak --only outage,flap --out /tmp/soak

Each scenario (:mod:`stress.soak_scenarios`) runs the embedded collector (with the
scenario's fault rules; its record of requests is read by :mod:`stress.soak_ledger`) in
this process and
the tracker in a fresh process (:mod:`stress.soak_child`), then compares every eid
``track()`` returned with what the collector took: nothing may be lost unless it was
reported (``on_failure``, ``stats()``), nothing may arrive twice unless the collector cut
the response to the earlier copy. A violation prints the scenario and the eids, and the
exit status is 1. The table goes to stdout and ``<out>/soak.md``; every eid list
(duplicates, missing) and failure to ``<out>/soak.json``. Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from snowplow_threaded.collector import Collector
from stress.soak_ledger import Analysis, analyse, entries, merge_kids
from stress.soak_scenarios import CI, FULL, Run, Scenario, Size, none_missing, scenarios
from stress.tls import TlsFront, TlsUnavailable, make_self_signed

REPO = Path(__file__).resolve().parent.parent
_START_TIMEOUT = 60.0
_SLACK = 120.0  # seconds a child may take beyond its own flush/close deadlines
# a CA bundle in the environment would decide the TLS scenarios: the child gets none
_GONE_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@dataclass
class Row:
    scenario: Scenario
    status: str  # PASS, FAIL or SKIP
    result: dict[str, Any] = field(default_factory=dict)
    analysis: Analysis | None = None
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GONE_VARS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(p for p in (env.get(name), "127.0.0.1", "localhost") if p)
    env.update(extra)
    return env


def _read_phases(run: Run, stream: IO[str]) -> None:
    for line in stream:
        words = line.split()
        if words:
            run.note_phase(words[0])
    run.note_phase("EXIT")


def _budget(spec: dict[str, Any]) -> float:
    tracking = spec["events"] / spec["rate"] if spec["rate"] else 0.0
    return float(tracking + spec["flush_timeout"] + spec["close_timeout"] + _SLACK)


def run_scenario(sc: Scenario, work: Path, tls: tuple[Path, Path] | str) -> Row:
    """Run one scenario end to end and judge it."""
    row = Row(sc, "PASS")
    if sc.tls and isinstance(tls, str):
        row.status = "SKIP"
        row.notes.append(f"no TLS here: {tls}")
        return row
    spec = dict(sc.child, result_file=str(work / f"{sc.key}.json"))
    env: dict[str, str] = {}
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        # every request is kept for the verdict; events only as counters
        collector = stack.enter_context(Collector(max_events=1, max_requests=10**7,
                                                  max_bytes=8 * 1024**3))
        if sc.faults is not None:
            sc.faults(collector)
        run = Run(sc, collector)
        spec["endpoint"] = collector.endpoint
        if sc.tls and not isinstance(tls, str):
            run.front = stack.enter_context(TlsFront(collector.port, *tls))
            spec["endpoint"] = run.front.endpoint
            if sc.tls == "session":
                spec["session_verify"] = str(tls[0])
            elif sc.tls == "env":
                env["REQUESTS_CA_BUNDLE"] = str(tls[0])
        spec_path = work / f"{sc.key}.spec.json"
        spec_path.write_text(json.dumps(spec))
        errors = stack.enter_context(open(work / f"{sc.key}.stderr", "w+"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "stress.soak_child", str(spec_path)], cwd=REPO,
            env=child_env(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        reader = threading.Thread(target=_read_phases, args=(run, proc.stdout), daemon=True)
        reader.start()
        try:
            if not run.wait_phase("READY", _START_TIMEOUT):
                row.failures.append("the tracker process did not start")
            else:
                if sc.before_go is not None:
                    sc.before_go(run)
                proc.stdin.write("GO\n")
                proc.stdin.flush()
                if sc.drive is not None:
                    sc.drive(run)
                proc.wait(timeout=_budget(spec))
        except subprocess.TimeoutExpired:
            row.failures.append(f"HUNG: the tracker process did not finish within "
                                f"{_budget(spec):.0f} s (phases: {sorted(run.phases)})")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(5.0)
            collector.wait_until(lambda: collector.in_flight == 0, timeout=5.0)
        errors.seek(0)
        stderr = errors.read()
    run.entries = entries(collector)
    row.seconds = time.monotonic() - started
    if proc.returncode != 0 or not Path(spec["result_file"]).exists():
        row.failures.append(f"the tracker process exited with {proc.returncode}: "
                            f"{stderr.strip()[-2000:]}")
        row.status = "FAIL"
        return row
    run.result = merge_kids(json.loads(Path(spec["result_file"]).read_text()))
    row.result = run.result
    row.seconds = run.result["total_s"]
    expected = sc.expected_missing(run)
    row.analysis = analyse(run.entries, run.result, expected_missing=expected,
                           cut_duplicates_allowed=sc.cut_duplicates_allowed,
                           read_timeout=sc.read_timeout,
                           ordered=spec["threads"] == 1 and not spec["fork_children"]
                           and spec["emitter"].get("thread_count", 1) == 1)
    row.failures.extend(row.analysis.failures)
    if run.result["flush_ok"] != sc.expect_flush:
        row.failures.append(f"flush() returned {run.result['flush_ok']}, expected "
                            f"{sc.expect_flush}")
    if sc.check is not None:
        notes, failures = sc.check(run, row.analysis)
        row.notes.extend(notes)
        row.failures.extend(failures)
    row.status = "FAIL" if row.failures else "PASS"
    return row


# -- report -------------------------------------------------------------------------------------
HEADER = ("scenario", "result", "tracked", "delivered", "duplicates", "missing",
          "failed / dropped (stats)", "on_failure eids", "retried", "max track()",
          "peak RSS", "time", "what happened")


def _latency(us: float) -> str:
    return f"{us:,.0f} µs" if us < 10_000 else f"{us / 1000:,.0f} ms"


def cells(row: Row) -> list[str]:
    a, r = row.analysis, row.result
    if a is None or not r:
        return [row.scenario.title, row.status, *["—"] * 10, "; ".join(row.notes)]
    stats = r["stats"]
    lost = {"failed": stats["failed"], **stats["dropped"]}
    lost_text = ", ".join(f"{k} {v:,}" for k, v in lost.items() if v) or "0"
    extra = a.copies - a.delivered
    dups = f"{extra:,}" if extra == len(a.duplicate_eids) else \
        f"{extra:,} ({len(a.duplicate_eids):,} eids)"
    expected = row.scenario.expected_missing is not none_missing
    missing = f"{len(a.missing):,}" + (" (expected)" if a.missing and expected else "")
    return [
        row.scenario.title, row.status, f"{a.tracked:,}", f"{a.delivered:,}", dups, missing,
        lost_text, f"{len(r['failure_eids']):,}", f"{stats['retried']:,}",
        _latency(r["max_track_us"]), f"{r['peak_rss_kb'] / 1024:.0f} MB",
        f"{row.seconds:.1f} s", "; ".join(row.notes),
    ]


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells(row)) + " |"
              for row in rows]
    return "\n".join(lines)


def write_report(rows: list[Row], out: Path, command: str, seconds: float) -> str:
    out.mkdir(parents=True, exist_ok=True)
    failed = [row for row in rows if row.status == "FAIL"]
    text = (f"# Fault soak\n\n`{command}`: {len(rows)} scenarios in {seconds:.0f} s, "
            f"{len(failed)} failed ({platform.python_implementation()} "
            f"{platform.python_version()}, {os.cpu_count()} CPUs).\n\n{table(rows)}\n")
    for row in failed:
        text += f"\n**{row.scenario.key} FAILED**\n\n" + "".join(
            f"* {msg}\n" for msg in row.failures)
    (out / "soak.md").write_text(text)
    details = [{
        "scenario": row.scenario.key, "title": row.scenario.title, "status": row.status,
        "failures": row.failures, "notes": row.notes, "seconds": row.seconds,
        "stats": row.result.get("stats"),
        "timeline_s": {k: row.result.get(k) for k in ("track_s", "flush_s", "total_s")},
        "max_track_us": row.result.get("max_track_us"),
        "peak_rss_kb": row.result.get("peak_rss_kb"),
        "warnings_logged": row.result.get("warnings"),
        "warning_samples": row.result.get("warning_samples"),
        "duplicate_eids": row.analysis.duplicate_eids if row.analysis else [],
        "missing_eids": row.analysis.missing if row.analysis else [],
        "requests_by_outcome": dict(row.analysis.outcomes) if row.analysis else {},
    } for row in rows]
    (out / "soak.json").write_text(json.dumps(details, indent=1))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ci", "--quick", action="store_true",
                        help="shrink every scenario (well under 60 s)")
    parser.add_argument("--only", default="", help="comma-separated scenario keys")
    parser.add_argument("--out", type=Path, default=REPO / "stress" / "out")
    args = parser.parse_args(argv)
    size: Size = CI if args.ci else FULL
    chosen = scenarios(size)
    if args.only:
        keys = set(args.only.split(","))
        unknown = keys - {sc.key for sc in chosen}
        if unknown:
            parser.error(f"unknown scenario(s) {sorted(unknown)}; "
                         f"known: {[sc.key for sc in chosen]}")
        chosen = [sc for sc in chosen if sc.key in keys]
    command = "python -m stress.soak" + (" --ci" if args.ci else "") + (
        f" --only {args.only}" if args.only else "")
    began = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        tls: tuple[Path, Path] | str
        try:
            tls = make_self_signed(work)
        except (TlsUnavailable, subprocess.SubprocessError, OSError) as exc:
            tls = str(exc)
        for sc in chosen:
            print(f"[soak] {sc.key}: {sc.title} ...", flush=True)
            row = run_scenario(sc, work, tls)
            rows.append(row)
            print(f"[soak] {sc.key}: {row.status} in {row.seconds:.1f} s", flush=True)
            for msg in row.failures:
                print(f"[soak] FAIL {sc.key} ({sc.title}): {msg}", flush=True)
    text = write_report(rows, args.out, command, time.monotonic() - began)
    print("\n" + text)
    failed = [row.scenario.key for row in rows if row.status == "FAIL"]
    if failed:
        print(f"[soak] FAILED: {', '.join(failed)} (details and every eid: "
              f"{args.out / 'soak.json'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
