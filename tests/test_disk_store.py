"""DiskEventStore in one process against the embedded collector: delivery, the stats, the
byte bound and its policies, the write window and durable mode, fork, settings."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from snowplow_threaded import (
    DiskEventStore,
    Emitter,
    EmitterConfiguration,
    Snowplow,
    StructuredEvent,
    Tracker,
)
from snowplow_threaded.collector import Collector
from snowplow_threaded.record import record_of
from tests.disk_support import ROOT, adopt_and_send, labels


def track(tracker: Tracker, prefix: str, count: int) -> None:
    for n in range(count):
        tracker.track(StructuredEvent("disk", "test", label=f"{prefix}-{n}"))


def segment_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.glob("*.seg")))


def test_delivers_everything_and_leaves_the_directory_clean(micro_collector: Collector,
                                                           tmp_path: Path) -> None:
    store = DiskEventStore(tmp_path)
    emitter = Emitter(micro_collector.endpoint, event_store=store)
    tracker = Tracker("ns", emitter)
    track(tracker, "e", 3000)
    assert emitter.flush(20)
    assert set(labels(micro_collector)) == {f"e-{n}" for n in range(3000)}
    stats = emitter.stats()
    assert stats.sent == 3000 and stats.tracked == 3000 and stats.dropped == {}
    assert stats.disk is not None and stats.disk["written"] == 3000
    assert emitter.close(5)
    assert sorted(os.listdir(tmp_path)) == ["FORMAT"]


def test_stats_show_what_waits_on_disk(micro_collector: Collector, tmp_path: Path) -> None:
    micro_collector.pause(503)
    emitter = Emitter(micro_collector.endpoint, event_store=DiskEventStore(tmp_path),
                      max_retry_delay_seconds=0.5)
    tracker = Tracker("ns", emitter)
    track(tracker, "s", 2000)
    deadline = time.monotonic() + 10
    while (disk := emitter.stats().disk) and disk["events_on_disk"] < 2000:
        assert time.monotonic() < deadline, disk
        time.sleep(0.05)
    time.sleep(0.2)
    disk = emitter.stats().disk
    assert disk is not None
    assert disk["events_on_disk"] == 2000
    assert disk["bytes_on_disk"] >= 2000 * 100  # about 150 bytes per structured event
    assert 0.2 <= disk["oldest_event_age"] < 30
    assert emitter.stats().queued == 2000
    assert not emitter.close(0.5)  # not delivered: kept on disk
    assert emitter.stats().dropped == {}  # ... so not dropped
    assert any(p.suffix == ".seg" for p in tmp_path.iterdir())
    micro_collector.resume()
    emitter2, delivered = adopt_and_send(micro_collector.endpoint, tmp_path)
    assert delivered
    assert set(labels(micro_collector)) == {f"s-{n}" for n in range(2000)}
    emitter2.close(5)


@pytest.mark.parametrize("when_full", ["drop_newest", "drop_oldest"])
def test_the_byte_bound_drops_and_counts(micro_collector: Collector, tmp_path: Path,
                                         when_full: str) -> None:
    micro_collector.pause(503)
    store = DiskEventStore(tmp_path, max_bytes=600_000, when_full=when_full,
                           segment_bytes=64 * 1024, write_events=100)
    emitter = Emitter(micro_collector.endpoint, event_store=store, max_retry_delay_seconds=0.3)
    tracker = Tracker("ns", emitter)
    count = 8000  # about 1.2 MB: twice what fits
    for n in range(count):
        tracker.track(StructuredEvent("disk", "bound", label=f"b-{n}"))
        if n % 500 == 0:
            time.sleep(0.06)  # let the writer apply the bound as the backlog grows
    time.sleep(0.3)
    disk = emitter.stats().disk
    assert disk is not None and disk["bytes_on_disk"] <= 600_000
    dropped = emitter.stats().dropped
    reason = "buffer_full" if when_full == "drop_newest" else "evicted_oldest"
    assert dropped.get(reason, 0) > 1000, dropped
    micro_collector.resume()
    assert not emitter.flush(30)  # it says that events tracked before it were dropped
    assert emitter.flush(5)  # and nothing since
    got = labels(micro_collector)
    assert len(got) + sum(dropped.values()) == count, (len(got), dropped)
    numbers = sorted(int(label.split("-")[1]) for label in got)
    if when_full == "drop_newest":
        assert numbers[0] == 0 and numbers[-1] < count - 1000  # the newest went
    else:
        assert numbers[-1] == count - 1  # the newest stayed, the oldest went
        assert len([n for n in numbers if n < 2000]) < 2000
    emitter.close(5)


def test_an_event_is_on_disk_within_the_write_window(micro_collector: Collector,
                                                     tmp_path: Path) -> None:
    micro_collector.pause(503)
    emitter = Emitter(micro_collector.endpoint, event_store=DiskEventStore(tmp_path))
    tracker = Tracker("ns", emitter)
    tracker.track(StructuredEvent("disk", "window", label="first-event"))
    deadline = time.monotonic() + 5
    while b"first-event" not in segment_bytes(tmp_path):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    emitter.close(0.2)


def test_durable_mode_writes_before_track_returns(micro_collector: Collector,
                                                  tmp_path: Path) -> None:
    micro_collector.pause(503)
    emitter = Emitter(micro_collector.endpoint,
                      event_store=DiskEventStore(tmp_path, durable=True))
    tracker = Tracker("ns", emitter)
    for n in range(20):
        tracker.track(StructuredEvent("disk", "durable", label=f"d-{n}"))
        assert f"d-{n}".encode() in segment_bytes(tmp_path)  # no waiting
    emitter.close(0.2)
    micro_collector.resume()


# the fork is made with threads running on purpose (a preload server does so): 3.12+ warns
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_writes_its_own_files(micro_collector: Collector,
                                             tmp_path: Path) -> None:
    micro_collector.pause(503)  # the parent's events wait (on disk, some read back) at fork
    emitter = Emitter(micro_collector.endpoint, event_store=DiskEventStore(tmp_path),
                      max_retry_delay_seconds=0.3)
    tracker = Tracker("ns", emitter)
    track(tracker, "parent", 100)
    time.sleep(0.2)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            track(tracker, "child", 100)
            code = 0 if emitter.flush(10) and emitter.close(5) else 2
        finally:
            os._exit(code)
    micro_collector.resume()
    track(tracker, "parent2", 100)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert emitter.flush(10)
    expected = {f"{p}-{n}" for p in ("parent", "child", "parent2") for n in range(100)}
    got = labels(micro_collector)
    assert set(got) == expected and max(got.values()) == 1, got.most_common(2)
    locks = [p for p in tmp_path.iterdir() if p.suffix == ".lock"]
    assert len(locks) == 1 and locks[0].name.startswith(f"{os.getpid()}-")
    emitter.close(5)


def test_two_stores_of_one_process_on_one_directory_stay_apart(micro_collector: Collector,
                                                               tmp_path: Path) -> None:
    micro_collector.pause(503)
    first = Emitter(micro_collector.endpoint, event_store=DiskEventStore(tmp_path,
                                                                         scan_interval=0.1))
    second = Emitter(micro_collector.endpoint, event_store=DiskEventStore(tmp_path,
                                                                          scan_interval=0.1))
    track(Tracker("a", first), "one", 50)
    track(Tracker("b", second), "two", 50)
    time.sleep(0.5)  # several scans: neither takes the other's events
    for emitter in (first, second):
        disk = emitter.stats().disk
        assert disk is not None and disk["adopted"] == 0 and disk["events_on_disk"] == 50
    micro_collector.resume()
    assert first.flush(10) and second.flush(10)
    got = labels(micro_collector)
    assert len(got) == 100 and max(got.values()) == 1
    first.close(5)
    second.close(5)


def test_settings(micro_collector: Collector, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="when_full"):
        DiskEventStore(tmp_path, when_full="block")
    with pytest.raises(ValueError, match="max_bytes"):
        DiskEventStore(tmp_path, max_bytes=0)
    with pytest.raises(ValueError, match="write_interval"):
        DiskEventStore(tmp_path, write_interval=-1)
    config = EmitterConfiguration(event_store=DiskEventStore(tmp_path))
    tracker = Snowplow.create_tracker("disk-settings", micro_collector.endpoint,
                                      emitter_config=config)
    try:
        tracker.track(StructuredEvent("disk", "config", label="c"))
        assert tracker.flush(timeout=10)
        assert set(labels(micro_collector)) == {"c"}
    finally:
        Snowplow.remove_tracker(tracker)


def test_exit_with_the_collector_down_does_not_hang(micro_collector: Collector,
                                                    tmp_path: Path) -> None:
    micro_collector.pause(503)
    code = ("import sys; from snowplow_threaded import *\n"
            f"e = Emitter({micro_collector.endpoint!r}, shutdown_timeout=1,"
            f" event_store=DiskEventStore({str(tmp_path)!r}))\n"
            "t = Tracker('ns', e)\n"
            "for n in range(500): t.track(StructuredEvent('a', 'b', label=f'x-{n}'))\n")
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=30)
    assert time.monotonic() - started < 10
    micro_collector.resume()
    emitter, delivered = adopt_and_send(micro_collector.endpoint, tmp_path)
    assert delivered and set(labels(micro_collector)) == {f"x-{n}" for n in range(500)}
    emitter.close(5)


def test_the_integrations_disk_buffer_setting(micro_collector: Collector,
                                             tmp_path: Path) -> None:
    from snowplow_threaded.contrib.config import ConfigError, parse_config

    config = parse_config({"endpoint": micro_collector.endpoint,
                           "disk_buffer": {"directory": str(tmp_path), "max_bytes": 10**7}},
                          default_namespace="web")
    tracker = config.build_tracker()
    store = tracker.emitters[0].event_store
    assert isinstance(store, DiskEventStore) and store.max_bytes == 10**7
    tracker.track(StructuredEvent("disk", "integration", label="i"))
    assert tracker.flush(timeout=10)
    assert set(labels(micro_collector)) == {"i"}
    assert any(p.suffix == ".seg" for p in tmp_path.iterdir())
    tracker.emitters[0].close(5)
    assert parse_config({"endpoint": "localhost", "disk_buffer": str(tmp_path)},
                        default_namespace="web").disk_buffer == {"directory": str(tmp_path)}
    for bad, message in (({"max_bytes": 1}, "directory"),
                         ({"directory": "x", "max_bytes": -1}, "max_bytes"),
                         ({"directory": "x", "colour": "red"}, "colour")):
        with pytest.raises(ConfigError, match=message) as caught:
            parse_config({"endpoint": "localhost", "disk_buffer": bad},
                         default_namespace="web")
        assert caught.value.problems[0].code == "E005"
    with pytest.raises(ConfigError, match="cannot be set together"):
        parse_config({"endpoint": "localhost", "disk_buffer": "x",
                      "emitter": {"event_store": DiskEventStore(tmp_path)}},
                     default_namespace="web")


def test_the_memory_bound_drops_counted_and_logged_once(micro_collector: Collector,
                                                        tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    # the store alone (no sender asking for events): its writer waits 10 s before writing,
    # so 100 events may wait for it, no more
    store = DiskEventStore(tmp_path, write_interval=10, write_events=1000, memory_events=100)
    with caplog.at_level(logging.WARNING, "snowplow_threaded.disk"):
        results = [store.put(record_of({
            "e": "se", "se_ca": "c", "se_ac": "a", "se_la": f"m-{n}", "tv": "py-test",
            "p": "srv", "eid": str(uuid.uuid4()), "dtm": str(time.time_ns() // 1_000_000)}))
                   for n in range(150)]
    # refused, not dropped by the store: the emitter counts what it drops (it may wait
    # for room instead, with when_full="block")
    assert results.count(-1) == 50 and store.drop_counts() == {}
    assert caplog.text.count("the disk is not keeping up") == 1
    store.close_store(time.monotonic() + 5)  # writes the 100 it admitted
    emitter, delivered = adopt_and_send(micro_collector.endpoint, tmp_path)
    assert delivered and set(labels(micro_collector)) == {f"m-{n}" for n in range(100)}
    emitter.close(5)
