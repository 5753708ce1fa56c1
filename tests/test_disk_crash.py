"""DiskEventStore under SIGKILL, in real processes against the embedded collector: what
was written survives, a dead process's events are adopted and sent, and the duplicates a
kill mid-request causes are counted (never hidden). The full-size runs of issue 16 are
``python -m stress.disk_crash`` (stress/results/disk.md); these are small versions."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from snowplow_threaded.collector import Collector
from snowplow_threaded.disk import owners
from tests.disk_support import Child, HoldingRelay, adopt_and_send, labels, wait_labels

#: How long before a kill an event must have been tracked to be owed: the store writes
#: within write_interval (0.05 s); the rest is slack for a loaded 2-core machine.
WINDOW = 0.5


def test_collector_down_then_sigkill_then_a_new_process_sends_everything(
        micro_collector: Collector, tmp_path: Path) -> None:
    count = 5000
    micro_collector.pause(503)
    first = Child(tmp_path, micro_collector.endpoint, "a", count, "--hold")
    try:
        rss_before = int(first.wait_line("rss ").split()[1])
        first.wait_line("done")
        time.sleep(0.3)
        rss_peak = _peak_rss_kb(first.proc.pid)
        first.proc.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        first.kill()
    assert any(name.endswith(".seg") for name in os.listdir(tmp_path))
    micro_collector.resume()
    second = Child(tmp_path, micro_collector.endpoint, "b", 0, "--send")
    assert second.wait() == 0, second.stderr()
    stats = second.stats()
    got = labels(micro_collector)
    assert set(got) == {f"a-{n}" for n in range(count)}, (len(got), stats)
    duplicates = sum(got.values()) - len(got)
    assert duplicates == 0  # nothing was ever delivered before the kill
    assert stats["disk"]["adopted"] == count and stats["sent"] == count
    assert stats["flushed"] is True
    assert rss_peak - rss_before < 15 * 1024, (rss_before, rss_peak)
    assert sorted(os.listdir(tmp_path)) == ["FORMAT"]  # all settled: nothing left behind


def test_sigkill_at_random_moments_loses_nothing_written(
        micro_collector: Collector, tmp_path: Path) -> None:
    rng = random.Random(16)
    kills = 6
    owed: dict[str, int] = {}
    for round_ in range(kills):
        child = Child(tmp_path, micro_collector.endpoint, f"k{round_}", 100_000,
                      "--rate", "4000")
        try:
            child.wait_line("tracked")
            time.sleep(rng.uniform(0.6, 1.2))
            killed_at = time.time()
            child.proc.send_signal(signal.SIGKILL)
            child.wait()
        finally:
            child.kill()
        safe = [n for n, at in child.tracked() if at <= killed_at - WINDOW]
        owed[child.prefix] = max(safe, default=-1)
    last = Child(tmp_path, micro_collector.endpoint, "end", 0, "--send")
    assert last.wait() == 0, last.stderr()
    expected = {f"{p}-{n}" for p, top in owed.items() for n in range(top + 1)}
    assert sum(owed.values()) > kills * 100  # each round tracked for a while
    assert wait_labels(micro_collector, expected, timeout=30)
    got = labels(micro_collector)
    duplicates = sum(got.values()) - len(got)
    # at most one request per kill was in flight: those events may arrive twice
    assert duplicates <= kills * 500, duplicates
    assert sorted(os.listdir(tmp_path)) == ["FORMAT"]


def test_four_processes_one_killed_mid_request(micro_collector: Collector,
                                               tmp_path: Path) -> None:
    relay = HoldingRelay(micro_collector.port)
    relay.hold.set()
    count = 1500
    victim = Child(tmp_path, relay.endpoint, "dead", count, "--hold")
    others = [Child(tmp_path, micro_collector.endpoint, f"live{i}", count, "--rate", "3000",
                    "--hold") for i in range(3)]
    try:
        assert relay.holding.wait(30), "the victim never sent a request"
        victim.wait_line("done")
        time.sleep(WINDOW)  # all written
        victim.proc.send_signal(signal.SIGKILL)  # its request reached the collector
        victim.wait()
        relay.release.set()
        expected = {f"{c.prefix}-{n}" for c in [victim, *others] for n in range(count)}
        assert wait_labels(micro_collector, expected, timeout=60), \
            len(expected - set(labels(micro_collector)))
        for child in others:
            child.proc.send_signal(signal.SIGTERM)
        stats = [child.stats() for child in others]
        for child in others:
            assert child.wait() == 0, child.stderr()
    finally:
        relay.close()
        for child in [victim, *others]:
            child.kill()
    got = labels(micro_collector)
    assert set(got) == expected
    twice = {label for label, n in got.items() if n > 1}
    assert all(label.startswith("dead-") for label in twice), sorted(twice)[:5]
    assert twice, "the victim's request in flight was delivered, so it is sent again"
    adopted = sum(s["disk"]["adopted"] for s in stats)
    in_flight = sum(s["disk"]["adopted_in_flight"] for s in stats)
    assert adopted >= len(twice)
    assert len(twice) <= in_flight  # the duplicates were counted as possible ones
    assert sorted(os.listdir(tmp_path)) == ["FORMAT"]


def test_delivered_events_are_not_sent_again_after_a_kill(micro_collector: Collector,
                                                          tmp_path: Path) -> None:
    count = 2000
    first = Child(tmp_path, micro_collector.endpoint, "sent", count, "--hold")
    try:
        first.wait_line("done")
        assert wait_labels(micro_collector, {f"sent-{n}" for n in range(count)})
        time.sleep(WINDOW)  # the acks written
        first.proc.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        first.kill()
    assert any(name.endswith(".seg") for name in os.listdir(tmp_path))  # its open segment
    second = Child(tmp_path, micro_collector.endpoint, "b", 0, "--send")
    assert second.wait() == 0, second.stderr()
    assert second.stats()["disk"]["adopted"] == 0
    got = labels(micro_collector)
    assert len(got) == count and max(got.values()) == 1
    assert sorted(os.listdir(tmp_path)) == ["FORMAT"]


def test_what_another_process_settled_meanwhile_leaves_no_lock_file(
        micro_collector: Collector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two live processes find one dead owner: the other adopts and settles it all between
    this one's listing and its try. This one then holds a fresh, empty lock file of that
    token, and must remove it (a leftover was seen under gunicorn, issue 16)."""
    count = 50
    micro_collector.pause(503)
    dead = Child(tmp_path, micro_collector.endpoint, "dead", count, "--hold")
    try:
        dead.wait_line("done")
        time.sleep(WINDOW)
        dead.proc.send_signal(signal.SIGKILL)
        dead.wait()
    finally:
        dead.kill()
    micro_collector.resume()
    real, tries = owners.try_adopt, []

    def other_process_first(directory: str, token: str) -> owners.Owner | None:
        if not tries:  # a real process adopts, sends and settles everything first
            other = Child(tmp_path, micro_collector.endpoint, "other", 0, "--send")
            tries.append(other.wait())
            assert other.stats()["disk"]["adopted"] == count, other.stderr()
        return real(directory, token)

    monkeypatch.setattr(owners, "try_adopt", other_process_first)
    emitter, delivered = adopt_and_send(micro_collector.endpoint, tmp_path)
    try:
        assert tries == [0] and delivered
        assert emitter.stats().as_dict()["disk"]["adopted"] == 0
    finally:
        emitter.close(5)
    got = labels(micro_collector)
    assert len(got) == count and max(got.values()) == 1
    assert sorted(os.listdir(tmp_path)) == ["FORMAT"]


def test_live_processes_never_take_each_others_events(micro_collector: Collector,
                                                      tmp_path: Path) -> None:
    micro_collector.pause(503)
    children = [Child(tmp_path, micro_collector.endpoint, f"p{i}", 500, "--hold")
                for i in range(2)]
    try:
        for child in children:
            child.wait_line("done")
        time.sleep(1.0)  # five scans each, with events of the other on disk
        micro_collector.resume()
        expected = {f"p{i}-{n}" for i in range(2) for n in range(500)}
        assert wait_labels(micro_collector, expected)
        for child in children:
            child.proc.send_signal(signal.SIGTERM)
        stats = [child.stats() for child in children]
    finally:
        for child in children:
            child.kill()
    assert [s["disk"]["adopted"] for s in stats] == [0, 0]
    got = labels(micro_collector)
    assert set(got) == expected and max(got.values()) == 1


def _peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")
