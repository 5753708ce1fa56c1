"""``python -m snowplow_threaded spool DIR``: shows what a directory holds without changing
it; with ``--endpoint``, sends what processes that are gone left there (exit status 0 only
if all of it was delivered)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from snowplow_threaded import DiskEventStore, Emitter, StructuredEvent, Tracker
from snowplow_threaded.collector import Collector
from tests.disk_support import ROOT, labels


def spool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snowplow_threaded", "spool", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_spool_shows_then_sends(micro_collector: Collector, tmp_path: Path) -> None:
    micro_collector.pause(503)
    emitter = Emitter(micro_collector.endpoint, event_store=DiskEventStore(tmp_path))
    tracker = Tracker("ns", emitter)
    for n in range(250):
        tracker.track(StructuredEvent("disk", "cli", label=f"l-{n}"))
    assert not emitter.close(0.3)
    before = sorted(os.listdir(tmp_path))
    shown = spool(str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert f"{tmp_path}: 250 event(s) waiting" in shown.stdout
    assert "gone (adopted by the next process" in shown.stdout
    assert sorted(os.listdir(tmp_path)) == before  # showing changes nothing
    refused = spool(str(tmp_path), "--endpoint", micro_collector.endpoint, "--timeout", "2")
    assert refused.returncode == 1  # the collector still answers 503
    assert "left in" in refused.stdout and "left in " + str(tmp_path) + ": 0" not in \
        refused.stdout
    micro_collector.resume()
    sent = spool(str(tmp_path), "--endpoint", micro_collector.endpoint)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "adopted 250 event(s), sent 250" in sent.stdout
    assert set(labels(micro_collector)) == {f"l-{n}" for n in range(250)}
    assert sorted(os.listdir(tmp_path)) == ["FORMAT"]
    assert spool(str(tmp_path / "missing")).returncode == 2
