"""What a DiskEventStore loses, and what it keeps, said as the memory store says it: every
event it drops is counted by reason in ``stats().dropped``, said (the drop WARNING,
``on_drop``) and makes ``flush()``/``close()`` return False; what ``close()`` leaves on disk
is kept for the next process, not counted as lost; and the emitter's ``when_full="block"``
waits for room on disk, never past ``block_timeout``, never while the collector fails.
Against the embedded collector."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from snowplow_threaded import DiskEventStore, Emitter, StructuredEvent, Tracker
from snowplow_threaded.collector import Collector
from tests.disk_support import adopt_and_send, labels


class Drops:
    """An ``on_drop`` that sums what it is told, by reason."""

    def __init__(self) -> None:
        self.told: Counter[str] = Counter()
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, reason: str, count: int) -> None:
        with self._lock:
            self.told[reason] += count
            self.calls += 1


def track(tracker: Tracker, prefix: str, count: int) -> list[float]:
    """Track *count* events; how long each ``track()`` took."""
    took = []
    for n in range(count):
        started = time.monotonic()
        tracker.track(StructuredEvent("disk", "loss", label=f"{prefix}-{n}"))
        took.append(time.monotonic() - started)
    return took


def wait_for(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- drops, each counted, said and making flush()/close() False ------------------------------

def test_a_disk_fault_fallback_that_overflows_is_counted_and_said(
        micro_collector: Collector, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")  # DiskStoreError at construction: memory instead
    store = DiskEventStore(blocker / "spool", on_error="memory", memory_events=100)
    drops = Drops()
    micro_collector.pause(503)
    emitter = Emitter(micro_collector.endpoint, event_store=store, on_drop=drops,
                      max_retry_delay_seconds=0.2)
    with caplog.at_level(logging.WARNING, "snowplow_threaded"):
        track(Tracker("ns", emitter), "m", 1000)
        micro_collector.resume()
        assert not emitter.flush(20)  # events tracked before it were dropped
        dropped = emitter.stats().dropped
    assert set(dropped) == {"buffer_full"} and dropped["buffer_full"] > 0
    assert drops.told == Counter(dropped)
    assert "dropped" in caplog.text and "buffer_full" in caplog.text
    assert len(labels(micro_collector)) + dropped["buffer_full"] == 1000
    emitter.close(5)


def test_events_a_disk_fault_kept_in_memory_are_lost_at_close_counted_and_said(
        micro_collector: Collector, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = DiskEventStore(blocker / "spool", on_error="memory")
    drops = Drops()
    micro_collector.pause(503)
    emitter = Emitter(micro_collector.endpoint, event_store=store, on_drop=drops,
                      max_retry_delay_seconds=0.2)
    track(Tracker("ns", emitter), "u", 50)
    wait_for(lambda: (emitter.stats().disk or {}).get("memory_only") == 50)
    with caplog.at_level(logging.WARNING, "snowplow_threaded"):
        assert not emitter.close(0.3)
    # in memory only (the disk still fails), so not kept for the next process: lost
    assert emitter.stats().dropped == {"disk_unavailable": 50}
    assert drops.told == Counter({"disk_unavailable": 50})
    assert "could not be written" in caplog.text and "disk_unavailable" in caplog.text


@pytest.mark.parametrize("when_full", ["drop_newest", "drop_oldest"])
def test_a_full_directory_drops_are_said_to_on_drop_and_the_log(
        micro_collector: Collector, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        when_full: str) -> None:
    micro_collector.pause(503)
    store = DiskEventStore(tmp_path, max_bytes=300_000, when_full=when_full,
                           segment_bytes=64 * 1024, write_events=100)
    drops = Drops()
    emitter = Emitter(micro_collector.endpoint, event_store=store, on_drop=drops,
                      max_retry_delay_seconds=0.3)
    reason = "buffer_full" if when_full == "drop_newest" else "evicted_oldest"
    with caplog.at_level(logging.WARNING, "snowplow_threaded"):
        tracker = Tracker("ns", emitter)
        for n in range(8):
            track(tracker, f"b{n}", 500)
            time.sleep(0.06)  # the writer applies the bound as the backlog grows
        # said by the store's own thread, without a flush() or a request to wait for
        wait_for(lambda: drops.told[reason] > 0)
        micro_collector.resume()
        assert not emitter.flush(30)
    dropped = emitter.stats().dropped
    assert set(dropped) == {reason} and dropped[reason] > 1000
    assert drops.told == Counter(dropped)
    assert "dropped" in caplog.text and reason in caplog.text
    assert len(labels(micro_collector)) + dropped[reason] == 4000
    emitter.close(5)


# -- close() gave up: what stays on disk is kept, not lost -----------------------------------

def test_a_request_failing_after_the_close_deadline_is_kept_not_lost(
        micro_collector: Collector, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    drops = Drops()
    failures: list[int] = []
    emitter = Emitter(micro_collector.endpoint, event_store=DiskEventStore(tmp_path),
                      on_drop=drops, on_failure=lambda n, failed: failures.append(len(failed)))
    # requests are answered 503 after the close() deadline (within its 2 s grace)
    micro_collector.faults(503, delay=1.0)
    tracker = Tracker("ns", emitter)
    track(tracker, "k", 100)
    wait_for(lambda: emitter.stats().in_flight > 0)
    with caplog.at_level(logging.WARNING, "snowplow_threaded"):
        assert not emitter.close(0.2)  # not delivered: False
    micro_collector.faults.clear()
    stats = emitter.stats()
    assert stats.dropped == {} and drops.calls == 0  # kept on disk is not lost
    assert stats.disk is not None and stats.disk["left_on_close"] == 100
    assert 0 < sum(failures) <= 100  # the failed attempts, as any other
    assert "100 event(s) undelivered (its store keeps them" in caplog.text
    assert "100 event(s) not delivered are kept in" in caplog.text
    assert "dropped" not in caplog.text
    emitter2, delivered = adopt_and_send(micro_collector.endpoint, tmp_path)
    assert delivered and labels(micro_collector) == Counter({f"k-{n}": 1 for n in range(100)})
    emitter2.close(5)


def test_a_request_refused_for_good_after_the_close_deadline_is_not_kept(
        micro_collector: Collector, tmp_path: Path) -> None:
    emitter = Emitter(micro_collector.endpoint, event_store=DiskEventStore(tmp_path))
    micro_collector.faults(400, delay=1.0, times=1)  # 400: refused, never retried
    track(Tracker("ns", emitter), "r", 1)
    wait_for(lambda: emitter.stats().in_flight == 1)
    assert not emitter.close(0.2)
    assert emitter.stats().failed == 1 and emitter.stats().disk["left_on_close"] == 0
    emitter2, delivered = adopt_and_send(micro_collector.endpoint, tmp_path)
    assert delivered and emitter2.stats().disk["adopted"] == 0  # not sent again
    emitter2.close(5)


# -- when_full="block" -------------------------------------------------------------------------

def block_store(directory: Path) -> DiskEventStore:
    return DiskEventStore(directory, max_bytes=300_000, segment_bytes=64 * 1024,
                          write_events=100)


def test_block_waits_for_room_on_disk_and_loses_nothing(micro_collector: Collector,
                                                        tmp_path: Path) -> None:
    # a slow collector: the directory fills faster than it is sent, track() waits
    micro_collector.faults(delay=0.05)
    emitter = Emitter(micro_collector.endpoint, event_store=block_store(tmp_path),
                      when_full="block", block_timeout=30)
    tracker = Tracker("ns", emitter)
    peak = 0
    for n in range(8):
        track(tracker, f"w{n}", 500)  # 4 000 events: about 800 KB written
        peak = max(peak, emitter.stats().disk["bytes_on_disk"])
    assert emitter.flush(30)
    assert emitter.stats().dropped == {}
    assert labels(micro_collector) == Counter(
        {f"w{n}-{i}": 1 for n in range(8) for i in range(500)})
    assert peak <= 300_000
    assert emitter.close(5)


def test_block_does_not_wait_while_the_collector_fails(micro_collector: Collector,
                                                       tmp_path: Path) -> None:
    micro_collector.pause(503)
    drops = Drops()
    emitter = Emitter(micro_collector.endpoint, event_store=block_store(tmp_path),
                      when_full="block", block_timeout=30, on_drop=drops,
                      max_retry_delay_seconds=0.5)
    tracker, took = Tracker("ns", emitter), []
    for n in range(8):
        took += track(tracker, f"d{n}", 500)
        time.sleep(0.06)  # the writer fills the directory as the backlog grows
    assert max(took) < 10  # never the 30 s block_timeout: the sender is failing
    dropped = emitter.stats().dropped
    assert set(dropped) == {"buffer_full"} and dropped["buffer_full"] > 1000
    micro_collector.resume()
    assert not emitter.flush(30)
    assert drops.told == Counter(emitter.stats().dropped) == Counter(dropped)
    assert len(labels(micro_collector)) + dropped["buffer_full"] == 4000
    emitter.close(5)


def test_block_waits_no_longer_than_block_timeout(micro_collector: Collector,
                                                  tmp_path: Path) -> None:
    # the collector holds every request 5 s: the sender is not failing, yet makes no room
    micro_collector.faults(delay=5)
    emitter = Emitter(micro_collector.endpoint, event_store=block_store(tmp_path),
                      when_full="block", block_timeout=0.3)
    tracker, waited = Tracker("ns", emitter), []
    for n in range(20_000):  # until the directory is full (about 1 500), then three more
        took = track(tracker, f"t{n}", 1)[0]
        if n % 200 == 0:
            time.sleep(0.02)  # the writer keeps up
        if took >= 0.25:
            waited.append(took)
            if len(waited) == 3:
                break
    assert len(waited) == 3 and max(waited) < 4  # waited block_timeout, then dropped
    assert emitter.stats().dropped == {"buffer_full": 3}
    micro_collector.faults.clear()
    emitter.close(10)
