"""``python -m snowplow_threaded demo`` end to end, in a subprocess as a user runs it: forked
workers and threads track through a collector outage; every event arrives exactly once."""

from __future__ import annotations

import re
import subprocess
import sys


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
