"""``python -m snowplow_threaded demo`` end to end, in a subprocess as a user runs it: forked
workers and threads track through a collector outage; every event arrives exactly once."""

from __future__ import annotations

import json
import multiprocessing
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from snowplow_threaded import Snowplow, demo
from snowplow_threaded.collector import Collector


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snowplow_threaded", "demo", *args],
                          capture_output=True, text=True, timeout=120)


def row(out: str, name: str) -> str:
    match = re.search(rf"^  {re.escape(name)}\s+(\S+(?: \S+)?)", out, re.MULTILINE)
    assert match, (name, out)
    return match.group(1)


def test_demo_delivers_every_event_exactly_once_through_an_outage() -> None:
    done = run_demo("--processes", "3", "--threads", "2", "--events", "300",
                    "--duration", "3", "--outage", "1.2")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "OK: every tracked event arrived exactly once" in out
    tracked = int(row(out, "tracked").replace(",", ""))
    assert tracked >= 3 * 2 * 300 + 20  # workers' events, plus the parent's
    assert row(out, "delivered") == row(out, "tracked")
    assert row(out, "duplicates") == "0" and row(out, "dropped") == "0"
    assert int(row(out, "retries").replace(",", "")) > 0  # the outage was ridden out
    assert re.search(r"refused [1-9]\d* requests while down", out)
    assert row(out, "track() p50").endswith("us") and row(out, "track() p99").endswith("us")
    assert float(row(out, "events/s").replace(",", "")) > 0
    assert row(out, "flushed at exit") == "3 of"
    assert "collector DOWN (503)" in done.stderr and "collector back up" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_without_outage() -> None:
    done = run_demo("--processes", "1", "--threads", "1", "--events", "50",
                    "--duration", "0.5", "--outage", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert row(done.stdout, "retries") == "0"
    assert "collector DOWN" not in done.stderr


def test_demo_rejects_nonsense_options() -> None:
    done = run_demo("--processes", "0")
    assert done.returncode == 2 and "must be >= 1" in done.stderr


def test_progress_never_shows_more_delivered_than_tracked(tmp_path: Path) -> None:
    """The progress line reads two counters at different moments; it must never show more
    events delivered than tracked. Threads track as the demo's workers do while the line's
    counts are read again and again."""
    schema = tmp_path / "com.example.demo" / "step" / "jsonschema" / "1-0-0"
    schema.parent.mkdir(parents=True)
    schema.write_text(json.dumps(demo._STEP_SCHEMA_DOC))
    progress = multiprocessing.get_context("fork").Value("q", 0)
    with Collector(schemas=[tmp_path]) as collector:
        tracker = demo._make_tracker(collector.endpoint)
        try:
            threads = [threading.Thread(target=demo._track_paced,
                                        args=(tracker, 0, t, 300, 0.5, progress))
                       for t in range(4)]
            for t in threads:
                t.start()
            shown: list[tuple[int, int]] = []
            while any(t.is_alive() for t in threads) or len(shown) < 10:
                shown.append(demo._progress_counts(collector, progress, 0))
                time.sleep(0.001)
            for t in threads:
                t.join(30)
            assert tracker.flush(timeout=10)
            final = demo._progress_counts(collector, progress, 0)
        finally:
            Snowplow.remove_tracker_by_namespace(demo.NAMESPACE)
            tracker.close(5)
    assert final == (1200, 1200) and collector.summary().received_bad == 0
    over = [(tracked, delivered) for tracked, delivered in shown if delivered > tracked]
    assert not over, over[:5]
    assert any(0 < delivered < tracked for tracked, delivered in shown)  # it did run along
