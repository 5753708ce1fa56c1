"""The on-disk format of a spool directory: segment files of checksummed records, and the
ack files beside them. Pure functions: no state, no locks, no threads.

A directory holds, per owner (a process, named by its *token*):

* ``<token>.lock``: held with a POSIX lock while the owner lives (see :mod:`.owners`);
* ``<token>.<n>.seg``: a segment. A :data:`SEGMENT_HEADER` (magic, format version,
  creation time), then frames appended in order: ``magic (2 bytes) | length (u32) |
  crc32 (u32) | body``. The crc covers the body and is seeded with the length, so a torn
  or corrupt length is caught too. The body is one record: ``R`` then the record as the
  engine holds it (:data:`..record.Record`: the event's JSON object without its closing
  brace; format 2). Format 1 wrote ``N`` then the keys and values joined by NUL, or ``J``
  then a JSON object; those are still read (and made records);
* ``<token>.<n>.ack``: what became of the segment's records, as 13-byte entries ``kind
  | start (u32) | end (u32) | crc32`` over byte ranges of frames: A, acknowledged by the
  collector or dropped for good; L, handed to a request; U, back from a request without
  a verdict (a retry). A range marked L and never A or U was in a request when its owner
  died: the collector may have those events already.

A reader stops trusting a segment at a frame whose magic, length or crc is wrong, and looks
for the next magic from there (:func:`frames`): a torn tail (a write cut short by a crash)
or a damaged block costs only the records in it.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator

from ..record import Record, record_of

#: The one file that says which format a directory holds (its text: ``FORMAT_TEXT``).
FORMAT_FILE = "FORMAT"
#: 2: records are stored as the engine holds them (``R``); 1 (``N``/``J`` bodies) is read too
FORMAT_VERSION = 2
FORMAT_TEXT = f"snowplow_threaded spool format {FORMAT_VERSION}\n"

SEGMENT_MAGIC = b"SPLTSEG1"
_SEG_HEAD = struct.Struct("<8sHQ")  # magic, format version, created (ns since the epoch)
SEGMENT_HEADER_SIZE = _SEG_HEAD.size

FRAME_MAGIC = b"\xd5\x5d"
_FRAME = struct.Struct("<2sII")  # magic, body length, crc32(body, seed=length)
FRAME_HEADER = _FRAME.size
#: A frame longer than this is taken for corruption (a record is a few KB at most).
MAX_BODY = 64 * 1024 * 1024

ACK = b"A"
LEASED = b"L"
UNLEASED = b"U"
_ACK = struct.Struct("<cII")
ACK_SIZE = _ACK.size + 4


class FormatError(ValueError):
    """A file this version cannot read (not a segment, or a newer format)."""


def segment_header(created_ns: int) -> bytes:
    return _SEG_HEAD.pack(SEGMENT_MAGIC, FORMAT_VERSION, created_ns)


def read_segment_header(head: bytes) -> int:
    """The creation time of a segment from its first bytes; :class:`FormatError` if they
    are not a segment header of a version this code reads."""
    if len(head) < SEGMENT_HEADER_SIZE:
        raise FormatError("shorter than a segment header")
    magic, version, created = _SEG_HEAD.unpack_from(head)
    if magic != SEGMENT_MAGIC:
        raise FormatError("not a segment file")
    if version > FORMAT_VERSION:
        raise FormatError(f"written in format {version}; this version reads format "
                          f"{FORMAT_VERSION} (upgrade snowplow_threaded to send it)")
    return int(created)


# -- records -------------------------------------------------------------------------------
def encode_frames(records: list[Record]) -> tuple[list[bytes], list[int]]:
    """The frames of *records* as alternating header and body parts (join them to write)
    and each frame's size. A record is already bytes: its body is ``R`` and the record,
    nothing to encode (this runs once per event on the I/O thread, which shares the GIL
    with the application)."""
    parts: list[bytes] = []
    sizes: list[int] = []
    pack, crc32 = _FRAME.pack, zlib.crc32
    for record in records:
        body = b"R" + record
        size = len(body)
        parts.append(pack(FRAME_MAGIC, size, crc32(body, size)))
        parts.append(body)
        sizes.append(FRAME_HEADER + size)
    return parts, sizes


def decode_record(body: bytes) -> Record:
    """The record in a frame *body* (format 2's ``R``, or format 1's ``N``/``J``)."""
    kind = body[:1]
    if kind == b"R" and len(body) > 2 and body[1:2] == b"{":
        return body[1:]
    if kind == b"N":
        parts = body[1:].decode("utf-8", "surrogatepass").split("\0")
        half = len(parts) // 2
        return record_of(dict(zip(parts[:half], parts[half:], strict=False)))
    if kind == b"J":
        value = json.loads(body[1:].decode("utf-8", "surrogatepass"))
        if isinstance(value, dict) and value:
            return record_of(value)
    raise FormatError("not a record")


def frame(body: bytes) -> bytes:
    size = len(body)
    return _FRAME.pack(FRAME_MAGIC, size, zlib.crc32(body, size)) + body


def frames(data: bytes, base: int, final: bool) -> Iterator[tuple[int, int, bytes | None]]:
    """The frames in *data* (read at file offset *base*), as ``(start, end, body)`` with
    file offsets. A damaged stretch comes out as one ``(start, end, None)`` covering it up
    to the next good frame. An incomplete frame at the end of *data* ends the iteration
    (the caller reads on from its start), unless *final* (*data* reaches the end of a file
    nobody writes any more): then it is damage too (a torn tail)."""
    pos, size = 0, len(data)
    bad_from = -1
    while pos < size:
        if pos + FRAME_HEADER <= size:
            magic, length, crc = _FRAME.unpack_from(data, pos)
            end = pos + FRAME_HEADER + length
            if magic == FRAME_MAGIC and length <= MAX_BODY:
                if end > size and not final:
                    break  # goes on past this read
                body = data[pos + FRAME_HEADER:end]
                if end <= size and zlib.crc32(body, length) == crc:
                    if bad_from >= 0:
                        yield base + bad_from, base + pos, None
                        bad_from = -1
                    yield base + pos, base + end, body
                    pos = end
                    continue
        elif not final:
            break
        if bad_from < 0:
            bad_from = pos
        found = data.find(FRAME_MAGIC, pos + 1)
        # not found: a magic may begin in the last byte, read on from there
        pos = found if found >= 0 else (size if final else max(pos + 1, size - 1))
    if bad_from >= 0:
        yield base + bad_from, base + pos, None


# -- ack files -----------------------------------------------------------------------------
def ack_entry(kind: bytes, start: int, end: int) -> bytes:
    entry = _ACK.pack(kind, start, end)
    return entry + struct.pack("<I", zlib.crc32(entry))


def read_acks(data: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """``(acknowledged, in_flight)`` byte ranges from an ack file, each merged and sorted;
    entries that fail their crc (a torn last write) are ignored. A lease only ever loses
    records at its front, so an L range and the U range that ends it share their end."""
    acked: list[tuple[int, int]] = []
    leased: dict[int, int] = {}
    for pos in range(0, len(data) - ACK_SIZE + 1, ACK_SIZE):
        entry = data[pos:pos + _ACK.size]
        (crc,) = struct.unpack_from("<I", data, pos + _ACK.size)
        if zlib.crc32(entry) != crc:
            continue
        kind, start, end = _ACK.unpack(entry)
        if kind == ACK:
            acked.append((start, end))
        elif kind == LEASED:
            leased[end] = min(start, leased.get(end, start))
        else:
            leased.pop(end, None)
    return merge_ranges(acked), merge_ranges([(s, e) for e, s in leased.items()])


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def covered(ranges: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether [start, end) lies inside one of the merged, sorted *ranges*."""
    lo, hi = 0, len(ranges)
    while lo < hi:
        mid = (lo + hi) // 2
        if ranges[mid][1] <= start:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(ranges) and ranges[lo][0] <= start and end <= ranges[lo][1]
