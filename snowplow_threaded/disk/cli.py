"""``python -m snowplow_threaded spool DIR [--endpoint URL]``: what a spool directory
holds, and (with an endpoint) send what its dead owners left, for the buffer of an app
that is gone. Showing changes nothing in the directory (it works on a read-only one)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from ..record import payload_of
from ..typing import Method
from . import owners
from .format import (
    SEGMENT_HEADER_SIZE,
    FormatError,
    covered,
    decode_record,
    read_acks,
    read_segment_header,
)
from .spool import read_frames


@dataclass
class SegmentReport:
    name: str
    size: int
    events: int = 0
    damaged_bytes: int = 0
    oldest_dtm: int | None = None
    error: str | None = None


@dataclass
class OwnerReport:
    token: str
    alive: bool
    info: dict[str, object]
    segments: list[SegmentReport] = field(default_factory=list)


def inspect(directory: str) -> list[OwnerReport]:
    """Every owner in *directory* with its segments' waiting events (read-only)."""
    listing = owners.tokens(os.listdir(directory))
    reports = []
    for token, names in sorted(listing.items()):
        lock = os.path.join(directory, token + owners.LOCK_SUFFIX)
        report = OwnerReport(token, owners.is_alive(lock), owners.owner_info(lock))
        report.segments = [_segment(os.path.join(directory, name)) for name in names]
        reports.append(report)
    return reports


def _segment(path: str) -> SegmentReport:
    report = SegmentReport(os.path.basename(path), 0)
    try:
        with open(path, "rb") as f:
            fd = f.fileno()
            report.size = os.fstat(fd).st_size
            read_segment_header(os.pread(fd, SEGMENT_HEADER_SIZE, 0))
            try:
                with open(path[:-len(owners.SEGMENT_SUFFIX)] + owners.ACK_SUFFIX, "rb") as a:
                    acked, _ = read_acks(a.read())
            except FileNotFoundError:
                acked = []
            for start, end, body in read_frames(fd, SEGMENT_HEADER_SIZE, report.size):
                if body is None:
                    report.damaged_bytes += end - start
                elif not covered(acked, start, end):
                    report.events += 1
                    if report.oldest_dtm is None:
                        report.oldest_dtm = _dtm(body)
    except (OSError, FormatError) as exc:
        report.error = str(exc)
    return report


def _dtm(body: bytes) -> int | None:
    try:
        return int(payload_of(decode_record(body)).get("dtm", ""))
    except (FormatError, ValueError, UnicodeDecodeError):
        return None


def show(directory: str, out: TextIO | None = None) -> int:
    """Print what *directory* holds; returns the events waiting in it."""
    write = (out or sys.stdout).write
    reports = inspect(directory)
    total_events = sum(s.events for r in reports for s in r.segments)
    total_bytes = sum(e.stat().st_size for e in os.scandir(directory) if e.is_file())
    write(f"{directory}: {total_events} event(s) waiting, {total_bytes} bytes, "
          f"{len(reports)} owner(s)\n")
    for report in reports:
        state = "alive (it sends these)" if report.alive else "gone (adopted by the next " \
                                                              "process, or sent with --endpoint)"
        pid, host = report.info.get("pid", "?"), report.info.get("host", "?")
        write(f"  {report.token}: pid {pid} on {host}, {state}\n")
        for seg in report.segments:
            line = f"    {seg.name}: {seg.events} event(s), {seg.size} bytes"
            if seg.oldest_dtm is not None:
                line += f", oldest tracked {_when(seg.oldest_dtm / 1000)}"
            if seg.damaged_bytes:
                line += f", {seg.damaged_bytes} damaged bytes (skipped)"
            if seg.error:
                line += f", left alone: {seg.error}"
            write(line + "\n")
    return total_events


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def send(directory: str, endpoint: str, method: Method, timeout: float,
         out: TextIO | None = None) -> bool:
    """Adopt and send what the dead owners of *directory* left; True if all went."""
    from ..emitters import Emitter
    from .store import DiskEventStore

    write = (out or sys.stdout).write
    store = DiskEventStore(directory)
    emitter = Emitter(endpoint, method=method, event_store=store,
                      max_retry_delay_seconds=min(10.0, timeout / 4))
    adopted = store.adopt()
    delivered = emitter.flush(timeout)
    emitter.close(min(5.0, timeout))
    stats = emitter.stats()
    disk = stats.disk or {}
    write(f"adopted {adopted} event(s), sent {stats.sent}, failed for good {stats.failed}; "
          f"{disk.get('adopted_in_flight', 0)} were in a request when their process died "
          f"(the collector may have them twice); left in {directory}: "
          f"{store.close_store(0)}\n")
    return delivered and stats.failed == 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="the DiskEventStore directory")
    parser.add_argument("--endpoint", help="send what dead processes left to this collector")
    parser.add_argument("--method", choices=("post", "get"), default="post")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="most seconds to spend sending (60)")


def run(args: argparse.Namespace) -> int:
    directory = os.path.abspath(args.directory)
    if not os.path.isdir(directory):
        sys.stderr.write(f"{directory}: not a directory\n")
        return 2
    try:
        if args.endpoint is None:
            show(directory)
            return 0
        return 0 if send(directory, args.endpoint, args.method, args.timeout) else 1
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
