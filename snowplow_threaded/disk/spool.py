"""The files of one :class:`~.store.DiskEventStore`: the segments it writes and those it
adopted from processes that are gone, in the order they are to be sent.

Used by the store's I/O thread only (and by the store's ``close()`` once that thread has
stopped). The fields the store reads from other threads (``segments``, and each
segment's ``runs``, ``unread`` and ``live``) change only under the store's lock, passed
in as *lock*. Raw descriptors (``os.write``/``os.pread``), never buffered file objects:
a forked child that dropped a buffered object would write its parent's buffer again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import threading
import time
from collections import deque
from collections.abc import Iterator

from . import owners
from .format import (
    MAX_BODY,
    SEGMENT_HEADER_SIZE,
    FormatError,
    covered,
    frames,
    read_acks,
    read_segment_header,
    segment_header,
)
from .owners import ACK_SUFFIX, SEGMENT_SUFFIX, Owner

logger = logging.getLogger("snowplow_threaded.disk")

READ_CHUNK = 256 * 1024


class Segment:
    """One segment file. ``read_offset``: where its unread records begin; ``runs``: the
    sequence numbers of those records, as ``[first, count]`` runs in file order;
    ``live``: records neither acknowledged nor dropped; ``acked``: byte ranges a
    previous owner acknowledged (skipped when read)."""

    __slots__ = ("ack_fd", "acked", "created", "deleted", "fd", "live", "number", "owner",
                 "path", "read_offset", "runs", "sealed", "size", "unread")

    def __init__(self, owner: Owner, number: int, path: str, fd: int, created: int,
                 size: int) -> None:
        self.owner = owner
        self.number = number
        self.path = path
        self.fd = fd
        self.ack_fd: int | None = None
        self.created = created
        self.size = size
        self.read_offset = SEGMENT_HEADER_SIZE
        self.runs: deque[list[int]] = deque()
        self.unread = 0
        self.live = 0
        self.sealed = owner.adopted
        self.deleted = False
        self.acked: list[tuple[int, int]] = []

    @property
    def ack_path(self) -> str:
        return self.path[:-len(SEGMENT_SUFFIX)] + ACK_SUFFIX

    def add_unread(self, first: int, count: int) -> None:
        runs = self.runs
        if runs and runs[-1][0] + runs[-1][1] == first:
            runs[-1][1] += count
        else:
            runs.append([first, count])
        self.unread += count

    def take_seqs(self, count: int) -> list[int]:
        """The sequence numbers of the next *count* unread records (fewer if it has fewer)."""
        seqs: list[int] = []
        runs = self.runs
        while count and runs:
            first, n = runs[0]
            k = min(n, count)
            seqs.extend(range(first, first + k))
            if k == n:
                runs.popleft()
            else:
                runs[0] = [first + k, n - k]
            count -= k
        self.unread -= len(seqs)
        return seqs


def _file_limit() -> int:
    """The soft file-size limit of this process (``ulimit -f``), or a very large number."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (OSError, ValueError):  # pragma: no cover - no such limit here
        return 1 << 62
    return 1 << 62 if soft == resource.RLIM_INFINITY or soft < 0 else int(soft)


def read_frames(fd: int, offset: int, size: int) -> Iterator[tuple[int, int, bytes | None]]:
    """The frames of a segment from *offset* to *size* (see :func:`.format.frames`)."""
    chunk = READ_CHUNK
    while offset < size:
        data = os.pread(fd, min(chunk, size - offset), offset)
        if not data:
            return
        final = offset + len(data) >= size
        last = offset
        for item in frames(data, offset, final):
            yield item
            last = item[1]
        if last == offset:  # one frame longer than the chunk
            if final or chunk > MAX_BODY:
                return
            chunk *= 4
        offset = last


class Spool:
    def __init__(self, directory: str, segment_bytes: int, durable: bool,
                 lock: threading.Lock) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.durable = durable
        self._lock = lock
        self.owner: Owner | None = None
        self.segments: list[Segment] = []  # owned, in sending order
        self.current: Segment | None = None
        self.dir_bytes = 0
        self.corrupt_bytes = 0
        self.damaged = 0  # damaged stretches skipped (each lost one record or more)
        self.bytes_written = 0  # records written, framing included
        self.in_flight_adopted = 0  # adopted records a dead owner had in a request
        self.left_alone: set[str] = set()  # segment files that cannot be read: not retried
        self._number = 0

    # -- writing -----------------------------------------------------------------------------
    @property
    def max_write(self) -> int:
        """The most bytes of records one :meth:`append` should get: a segment's worth, and
        under a file-size limit (``ulimit -f``), what fits in a new segment."""
        return max(1, min(self.segment_bytes, _file_limit() - SEGMENT_HEADER_SIZE))

    def append(self, data: bytes) -> tuple[Segment, int]:
        """Append *data* (whole frames) to the current segment, starting a new one when it
        is full or would pass the file-size limit; returns the segment and the offset
        written at. On ``OSError`` nothing of *data* stays in the file (it is cut back),
        and the error is raised; ``EFBIG`` once more with a fresh segment."""
        seg = self.current
        if (seg is None or seg.size >= self.segment_bytes
                or seg.size + len(data) > _file_limit()):
            seg = self._new_segment()
        try:
            return seg, self._write(seg, data)
        except OSError as exc:
            if exc.errno != errno.EFBIG or seg.size <= SEGMENT_HEADER_SIZE:
                raise
        seg = self._new_segment()
        return seg, self._write(seg, data)

    def _write(self, seg: Segment, data: bytes) -> int:
        start = seg.size
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(seg.fd, view):]
            if self.durable:
                os.fsync(seg.fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(seg.fd, start)
            raise
        seg.size += len(data)
        self.dir_bytes += len(data)
        self.bytes_written += len(data)
        return start

    def _new_segment(self) -> Segment:
        if self.owner is None:
            self.owner = owners.create(self.directory)
            self._sync_directory()
        token = self.owner.token
        path = os.path.join(self.directory, f"{token}.{self._number}{SEGMENT_SUFFIX}")
        self._number += 1
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        created = time.time_ns()
        try:
            os.write(fd, segment_header(created))
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        self._sync_directory()
        seg = Segment(self.owner, self._number - 1, path, fd, created, SEGMENT_HEADER_SIZE)
        self.dir_bytes += SEGMENT_HEADER_SIZE
        with self._lock:
            if self.current is not None:
                self.current.sealed = True
            self.segments.append(seg)
            self.current = seg
        return seg

    def _sync_directory(self) -> None:
        """Durable mode: make a new file's name survive a power loss too."""
        if not self.durable:
            return
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def seal_current(self) -> None:
        with self._lock:
            if self.current is not None:
                self.current.sealed = True
                self.current = None

    def write_acks(self, seg: Segment, entries: bytes) -> None:
        if seg.deleted:
            return
        if seg.ack_fd is None:
            seg.ack_fd = os.open(seg.ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(seg.ack_fd, entries)
        self.dir_bytes += len(entries)

    # -- reading -----------------------------------------------------------------------------
    def read(self, seg: Segment, limit: int) -> tuple[list[tuple[int, int, bytes]], int]:
        """Up to *limit* unread records of *seg* from its ``read_offset``, as ``(start,
        end, body)``, and the offset after the last one looked at. Damaged stretches are
        skipped and counted; records a previous owner acknowledged are skipped."""
        got: list[tuple[int, int, bytes]] = []
        offset = seg.read_offset
        for start, end, body in read_frames(seg.fd, offset, seg.size):
            if len(got) >= limit:
                break
            offset = end
            if body is None:
                self._damaged(seg, start, end)
            elif not (seg.acked and covered(seg.acked, start, end)):
                got.append((start, end, body))
        else:
            offset = max(offset, seg.size) if seg.sealed else offset
        return got, offset

    def _damaged(self, seg: Segment, start: int, end: int) -> None:
        """A damaged stretch, skipped: counted once (``damaged``: the store's ``corrupt``
        drops; how many records it held cannot be known, so it counts as one)."""
        self.corrupt_bytes += end - start
        self.damaged += 1
        logger.warning("%s: %d damaged byte(s) at offset %d skipped (a torn write or a "
                       "corrupt file; the events in them are lost)", seg.path, end - start,
                       start)

    # -- removing ----------------------------------------------------------------------------
    def delete(self, seg: Segment, release: bool = True) -> None:
        """Remove a segment's files (every record in it is settled or dropped), and let
        go of an adopted owner left with nothing (unless not *release*)."""
        for fd in (seg.fd, seg.ack_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        freed = seg.size
        with contextlib.suppress(OSError):
            freed += os.stat(seg.ack_path).st_size
            os.unlink(seg.ack_path)
        with contextlib.suppress(OSError):
            os.unlink(seg.path)
        self.dir_bytes = max(0, self.dir_bytes - freed)
        with self._lock:
            seg.deleted = True
            seg.runs.clear()
            seg.unread = 0
            if seg in self.segments:
                self.segments.remove(seg)
            if seg is self.current:
                self.current = None
        owner = seg.owner
        if release and owner.adopted and not any(s.owner is owner for s in self.segments):
            owners.release(owner, remove=True)

    def rescan_bytes(self) -> None:
        """The directory's size, from the files in it (other processes' included)."""
        total = 0
        with contextlib.suppress(OSError), os.scandir(self.directory) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    total += entry.stat(follow_symlinks=False).st_size
        self.dir_bytes = total

    # -- adopting ----------------------------------------------------------------------------
    def adopt_orphans(self) -> list[Segment]:
        """Take over the segments of every owner that is gone, each scanned (its records
        counted, damage skipped); returns those holding records, oldest first. The caller
        numbers their records and adds them to ``segments``."""
        found: list[Segment] = []
        listing = owners.tokens(os.listdir(self.directory))
        for token in owners.orphans(self.directory):
            names = [n for n in listing.get(token, []) if n not in self.left_alone]
            if listing.get(token) and not names:
                continue  # only files this version cannot read: not tried again
            owner = owners.try_adopt(self.directory, token)
            if owner is None:
                continue
            # listed again under the token's lock: another process may have adopted and
            # settled it since the listing (then try_adopt made a new, empty lock file)
            names = [n for n in owners.tokens(os.listdir(self.directory)).get(token, [])
                     if n not in self.left_alone]
            segs = [s for s in (self._scan(owner, n) for n in names) if s is not None]
            found.extend(s for s in segs if s.live)
            for seg in segs:
                if not seg.live:
                    self.delete(seg, release=False)
            if not any(s.live for s in segs):
                owners.release(owner, remove=len(segs) == len(names))
        found.sort(key=lambda s: (s.created, s.number))
        return found

    def _scan(self, owner: Owner, name: str) -> Segment | None:
        path = os.path.join(self.directory, name)
        try:
            number = int(name.split(".")[1])
            fd = os.open(path, os.O_RDONLY)
        except (OSError, ValueError):
            return None
        try:
            size = os.fstat(fd).st_size
            created = read_segment_header(os.pread(fd, SEGMENT_HEADER_SIZE, 0))
            seg = Segment(owner, number, path, fd, created, size)
            try:
                with open(seg.ack_path, "rb") as f:
                    acked, in_flight = read_acks(f.read())
            except FileNotFoundError:
                acked, in_flight = [], []
            seg.acked = acked
            first = -1
            for start, end, body in read_frames(fd, SEGMENT_HEADER_SIZE, size):
                if body is None:
                    if first < 0:  # after the first record: read (and counted) later
                        self._damaged(seg, start, end)
                elif not covered(acked, start, end):
                    seg.live += 1
                    first = start if first < 0 else first
                    self.in_flight_adopted += covered(in_flight, start, end)
            seg.read_offset = first if first >= 0 else size
            return seg
        except (OSError, FormatError) as exc:
            os.close(fd)
            self.left_alone.add(name)
            level = logging.WARNING if isinstance(exc, FormatError) else logging.ERROR
            logger.log(level, "%s left as it is: %s", path, exc)
            return None

    # -- closing -----------------------------------------------------------------------------
    def close(self) -> int:
        """Remove what is all settled, close every file, let go of every owner (their
        lock files stay while they own records: the next process adopts those). Returns
        the records left."""
        left = 0
        for seg in list(self.segments):
            if seg.live:
                left += seg.live
                for fd in (seg.fd, seg.ack_fd):
                    if fd is not None:
                        with contextlib.suppress(OSError):
                            os.close(fd)
            else:
                self.delete(seg)
        held = {seg.owner.lock_path: seg.owner for seg in self.segments}
        if self.owner is not None:
            held.setdefault(self.owner.lock_path, self.owner)
        for owner in held.values():
            owners.release(owner, remove=not any(s.owner is owner for s in self.segments))
        with self._lock:
            self.segments = []
            self.current = None
        self.owner = None
        return left

    def descriptors(self) -> list[int]:
        """Every descriptor this spool holds (for a forked child to close)."""
        fds = [fd for seg in self.segments for fd in (seg.fd, seg.ack_fd) if fd is not None]
        if self.owner is not None:
            fds.append(self.owner.fd)
        fds.extend({seg.owner.fd for seg in self.segments})
        return fds
