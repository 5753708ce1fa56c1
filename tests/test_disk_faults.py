"""DiskEventStore faults, each with its expected outcome: an unusable directory raises at
construction (or, with ``on_error="memory"``, falls back to memory, logged and counted); a
full disk (a small tmpfs) or a file-size limit (``ulimit -f``) never raises into
``track()``; damaged, truncated and newer-format files cost only what is in them."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from snowplow_threaded import DiskEventStore, DiskStoreError, Emitter, StructuredEvent, Tracker
from snowplow_threaded.collector import Collector
from snowplow_threaded.disk.format import FORMAT_VERSION, FRAME_MAGIC, frame, segment_header
from snowplow_threaded.disk.spool import Segment, Spool
from tests.disk_support import ROOT, adopt_and_send, labels
from tests.helpers import require


def track(tracker: Tracker, prefix: str, count: int) -> None:
    for n in range(count):
        tracker.track(StructuredEvent("disk", "fault", label=f"{prefix}-{n}"))


def leave_behind(collector: Collector, directory: Path, prefix: str, count: int) -> None:
    """Events written to *directory* by an emitter that closed while the collector was
    down: they stay there, unowned, for the next process."""
    collector.pause(503)
    emitter = Emitter(collector.endpoint, event_store=DiskEventStore(directory))
    track(Tracker("ns", emitter), prefix, count)
    assert not emitter.close(0.3)
    collector.resume()


@contextlib.contextmanager
def mounted_tmpfs(options: str) -> Iterator[Path]:
    """A tmpfs mounted with *options* (root only: skipped elsewhere, failed in CI)."""
    require(os.geteuid() == 0 and shutil.which("mount") is not None,
            "root and mount (to mount a small tmpfs)")
    path = Path(tempfile.mkdtemp(prefix="disk-fault-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        path.rmdir()
    require(done.returncode == 0, f"a tmpfs mount ({done.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        path.rmdir()


def test_a_directory_that_cannot_be_made_raises_at_construction(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DiskStoreError, match="cannot create the spool directory"):
        DiskEventStore(blocker / "spool")


def test_a_read_only_directory_raises_at_construction() -> None:
    with mounted_tmpfs("size=1m,ro") as path, pytest.raises(DiskStoreError,
                                                            match="not writable"):
        DiskEventStore(path)


def test_on_error_memory_falls_back_logged_and_counted(micro_collector: Collector,
                                                       tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, "snowplow_threaded.disk"):
        store = DiskEventStore(blocker / "spool", on_error="memory")
    assert "keeping events in memory" in caplog.text
    emitter = Emitter(micro_collector.endpoint, event_store=store)
    track(Tracker("ns", emitter), "m", 300)
    assert emitter.flush(10)
    assert set(labels(micro_collector)) == {f"m-{n}" for n in range(300)}
    disk = emitter.stats().disk
    assert disk is not None and disk["memory_only"] == 300 and disk["disk_errors"] >= 1
    emitter.close(5)


def test_a_newer_format_raises_at_construction(tmp_path: Path) -> None:
    (tmp_path / "FORMAT").write_text(f"snowplow_threaded spool format {FORMAT_VERSION + 1}\n")
    with pytest.raises(DiskStoreError, match="newer snowplow_threaded"):
        DiskEventStore(tmp_path)
    (tmp_path / "FORMAT").write_text("something else entirely\n")
    with pytest.raises(DiskStoreError, match="used by something else"):
        DiskEventStore(tmp_path)


def test_a_newer_segment_is_left_alone(micro_collector: Collector, tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    leave_behind(micro_collector, tmp_path, "old", 100)
    newer = tmp_path / "999-abcd.0.seg"
    version = FORMAT_VERSION.to_bytes(2, "little")
    newer.write_bytes(bytearray(segment_header(time.time_ns())).replace(
        version, (FORMAT_VERSION + 1).to_bytes(2, "little"), 1))
    with caplog.at_level(logging.WARNING, "snowplow_threaded.disk"):
        emitter, delivered = adopt_and_send(micro_collector.endpoint, tmp_path)
        assert delivered and set(labels(micro_collector)) == {f"old-{n}" for n in range(100)}
        emitter.close(5)
    assert f"written in format {FORMAT_VERSION + 1}" in caplog.text
    assert newer.exists()


def test_a_format_1_segment_is_read_and_sent(micro_collector: Collector, tmp_path: Path
                                             ) -> None:
    # format 1 stored a record as its keys and values joined by NUL ("N"), or as JSON
    # ("J") when one held a NUL; format 2 stores the engine's record as it is ("R")
    payloads = [{"e": "se", "se_ca": "c", "se_ac": "a", "se_la": f"v1-{n}", "tv": "py-test",
                 "p": "srv", "eid": str(uuid.uuid4()), "dtm": str(time.time_ns() // 1_000_000)}
                for n in range(20)]
    payloads[7]["se_pr"] = "a\0b"
    bodies = [b"J" + json.dumps(p).encode() if "\0" in "".join(p.values())
              else b"N" + "\0".join([*p, *p.values()]).encode() for p in payloads]
    header = bytearray(segment_header(time.time_ns())).replace(
        FORMAT_VERSION.to_bytes(2, "little"), (1).to_bytes(2, "little"), 1)
    (tmp_path / "FORMAT").write_text("snowplow_threaded spool format 1\n")
    (tmp_path / "998-abcd.0.seg").write_bytes(bytes(header) + b"".join(map(frame, bodies)))
    emitter, delivered = adopt_and_send(micro_collector.endpoint, tmp_path)
    assert delivered and set(labels(micro_collector)) == {f"v1-{n}" for n in range(20)}
    [odd] = [e for e in micro_collector.events() if e.get("se_label") == "v1-7"]
    assert odd["se_property"] == "a\0b"
    emitter.close(5)


def test_a_damaged_record_costs_only_itself(micro_collector: Collector, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    leave_behind(micro_collector, tmp_path, "c", 200)
    [segment] = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    # quoted: b"c-100" alone also occurs inside an event id ("...c-100f-...") now and then
    middle = data.index(b'"c-100"') + 1
    data[middle:middle + 5] = b"XXXXX"  # the crc of that record no longer matches
    segment.write_bytes(bytes(data))
    drops: list[tuple[str, int]] = []
    with caplog.at_level(logging.WARNING, "snowplow_threaded"):
        emitter, delivered = adopt_and_send(micro_collector.endpoint, tmp_path,
                                            on_drop=lambda *call: drops.append(call))
        expected = {f"c-{n}" for n in range(200)} - {"c-100"}
        # the damaged record is lost: counted, said, and the flush says so
        assert not delivered
        stats = emitter.stats()
        emitter.close(5)
    assert "damaged byte(s)" in caplog.text and "corrupt" in caplog.text
    assert stats.dropped == {"corrupt": 1} and drops == [("corrupt", 1)]
    assert stats.disk is not None and 0 < stats.disk["corrupt_bytes"] < 1000
    assert set(labels(micro_collector)) == expected


def test_an_unreadable_segment_is_counted_and_left_for_the_next_process(
        micro_collector: Collector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A read that fails with an I/O error (a failing disk; made here by the one stand-in
    in these tests: this machine has no device-mapper to fail a real read): the events are
    not sent by this process, counted ``unreadable``, said once, and flush() says so; the
    segment stays, and a later process whose reads work sends them all, once."""
    leave_behind(micro_collector, tmp_path, "u", 40)

    def failing_read(self: Spool, seg: Segment, limit: int) -> NoReturn:
        raise OSError(errno.EIO, "Input/output error", seg.path)

    monkeypatch.setattr(Spool, "read", failing_read)
    drops: list[tuple[str, int]] = []
    with caplog.at_level(logging.WARNING, "snowplow_threaded"):
        emitter, delivered = adopt_and_send(micro_collector.endpoint, tmp_path, timeout=5,
                                            on_drop=lambda *call: drops.append(call))
        stats = emitter.stats()
        closed = emitter.close(5)
    assert not delivered and not closed
    assert stats.dropped == {"unreadable": 40} and drops == [("unreadable", 40)]
    assert stats.disk is not None and stats.disk["disk_errors"] == 1
    assert caplog.text.count("Input/output error") == 1, caplog.text
    assert labels(micro_collector) == {}
    assert list(tmp_path.glob("*.seg"))  # left there
    monkeypatch.undo()
    emitter, delivered = adopt_and_send(micro_collector.endpoint, tmp_path)
    emitter.close(5)
    got = labels(micro_collector)
    assert delivered and set(got) == {f"u-{n}" for n in range(40)} and max(got.values()) == 1
    assert sorted(os.listdir(tmp_path)) == ["FORMAT"]


def test_a_truncated_segment_keeps_every_whole_record(micro_collector: Collector,
                                                      tmp_path: Path) -> None:
    leave_behind(micro_collector, tmp_path, "t", 200)
    [segment] = tmp_path.glob("*.seg")
    data = segment.read_bytes()
    last = data.rindex(FRAME_MAGIC)
    segment.write_bytes(data[:last + 20])  # the last record torn in the middle
    emitter, delivered = adopt_and_send(micro_collector.endpoint, tmp_path)
    assert set(labels(micro_collector)) == {f"t-{n}" for n in range(199)}
    assert not delivered and emitter.stats().dropped == {"corrupt": 1}  # the torn one
    emitter.close(5)
    assert "t-199" not in labels(micro_collector)
    assert sorted(os.listdir(tmp_path)) == ["FORMAT"]


def test_a_full_disk_falls_back_to_memory(micro_collector: Collector,
                                          caplog: pytest.LogCaptureFixture) -> None:
    with mounted_tmpfs("size=128k") as path:
        micro_collector.pause(503)
        emitter = Emitter(micro_collector.endpoint, max_retry_delay_seconds=0.3,
                          event_store=DiskEventStore(path, max_bytes=10 * 1024 * 1024))
        tracker = Tracker("ns", emitter)
        with caplog.at_level(logging.WARNING, "snowplow_threaded.disk"):
            track(tracker, "f", 3000)  # about 450 KB: the disk fills, track() never raises
            deadline = time.monotonic() + 10
            while not (disk := emitter.stats().disk or {}).get("memory_only"):
                assert time.monotonic() < deadline, disk
                time.sleep(0.05)
        assert "No space left on device" in caplog.text
        assert disk["writing_to_memory"] and disk["disk_errors"] >= 1
        micro_collector.resume()
        assert emitter.flush(30)
        assert set(labels(micro_collector)) == {f"f-{n}" for n in range(3000)}
        assert emitter.close(5)


def test_a_file_size_limit_starts_new_segments(micro_collector: Collector,
                                               tmp_path: Path) -> None:
    code = ("import resource, sys; from snowplow_threaded import *\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
            f"e = Emitter({micro_collector.endpoint!r},"
            f" event_store=DiskEventStore({str(tmp_path)!r}))\n"
            "t = Tracker('ns', e)\n"
            "for n in range(3000): t.track(StructuredEvent('a', 'b', label=f'u-{n}'))\n"
            "ok = e.flush(30)\n"
            "d = e.stats().disk\n"
            "sys.exit(0 if ok and d['memory_only'] == d['disk_errors'] == 0 else 1)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    got = labels(micro_collector)
    assert set(got) == {f"u-{n}" for n in range(3000)} and max(got.values()) == 1
