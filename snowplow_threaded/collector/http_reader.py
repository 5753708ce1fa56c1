"""The request side of one HTTP/1.1 connection: bytes in, complete requests out.

:class:`RequestReader` buffers what a client sends and cuts it into requests (head, then a
``Content-Length`` or ``chunked`` body), enforcing the head and body limits as the bytes
arrive. It does no I/O: the connection (:mod:`.http_connection`) feeds it and writes the
replies. Not thread-safe (one connection, on the loop's thread).
"""

from __future__ import annotations

from http import HTTPStatus

from .http_parse import Head, HTTPFailure, chunk_size, parse_head
from .http_types import Limits

__all__ = ["RequestReader"]

_MAX_LINE = 4096


class RequestReader:
    """Incremental parser of the requests on one connection.

    ``state``: ``idle`` (between requests), ``head``, ``body`` or ``chunked``. ``started``:
    when the request in progress began (``feed``'s *now* of its first byte).
    ``expects_continue`` is set when a head asking ``Expect: 100-continue`` was read (the
    connection answers it and clears it).
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.buf = bytearray()
        self.state = "idle"
        self.started = 0.0
        self.expects_continue = False
        self._scan_from = 0
        self._head: Head | None = None
        self._remaining = 0
        self._chunk_state = "size"
        self._chunks = bytearray()
        self._trailers = 0

    @property
    def held(self) -> int:
        """Request bytes held (buffered input and the chunked body so far)."""
        return len(self.buf) + len(self._chunks)

    def clear(self) -> None:
        """Drop everything held (the connection is closing)."""
        self.buf = bytearray()
        self._chunks = bytearray()
        self._head = None

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next_request(self, now: float) -> tuple[Head, bytes] | None:
        """The next complete request held, or None until more bytes come. Raises
        :class:`.HTTPFailure` for a request that must be refused."""
        while True:
            if self.state in ("idle", "head"):
                if not self._read_head(now):
                    return None
            elif self.state == "body":
                if len(self.buf) < self._remaining:
                    return None
                body = bytes(self.buf[:self._remaining])
                del self.buf[:self._remaining]
                return self._complete(body)
            else:
                body_or_none = self._read_chunks()
                if body_or_none is None:
                    return None
                return self._complete(body_or_none)

    def _complete(self, body: bytes) -> tuple[Head, bytes]:
        head = self._head
        assert head is not None
        self._head, self.state = None, "idle"
        return head, body

    def _read_head(self, now: float) -> bool:
        buf = self.buf
        if self.state == "idle":
            while buf[:2] == b"\r\n":  # stray CRLF between requests
                del buf[:2]
            if not buf:
                return False
            self.state, self.started, self._scan_from = "head", now, 0
        end = buf.find(b"\r\n\r\n", max(0, self._scan_from - 3))
        too_large = end > self.limits.max_header_bytes
        if end < 0:
            too_large = len(buf) > self.limits.max_header_bytes
            self._scan_from = len(buf)
        if too_large:
            raise HTTPFailure(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                              "request head too large")
        if end < 0:
            return False
        raw = bytes(buf[:end])
        del buf[:end + 4]
        head = self._head = parse_head(raw, self.limits)
        if head.length < 0:
            self.state, self._chunk_state, self._trailers = "chunked", "size", 0
            self._chunks = bytearray()
        else:
            self.state, self._remaining = "body", head.length
        self.expects_continue = head.expect_continue and head.length != 0
        return True

    def _read_chunks(self) -> bytes | None:
        """Consume what the buffer holds of a chunked body; the body once complete."""
        buf = self.buf
        while True:
            if self._chunk_state == "data":
                if len(buf) < self._remaining + 2:
                    return None
                if buf[self._remaining:self._remaining + 2] != b"\r\n":
                    raise HTTPFailure(HTTPStatus.BAD_REQUEST, "malformed chunk")
                self._chunks += buf[:self._remaining]
                del buf[:self._remaining + 2]
                self._chunk_state = "size"
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > _MAX_LINE:
                    raise HTTPFailure(HTTPStatus.BAD_REQUEST, "chunk line too long")
                return None
            line = bytes(buf[:end])
            del buf[:end + 2]
            if self._chunk_state == "trailer":
                if not line:
                    body, self._chunks = bytes(self._chunks), bytearray()
                    return body
                self._trailers += 1  # trailer fields are ignored, but counted
                if self._trailers > self.limits.max_headers:
                    raise HTTPFailure(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                                      "too many trailer lines")
                continue
            self._remaining = chunk_size(line)
            if len(self._chunks) + self._remaining > self.limits.max_body_bytes:
                raise HTTPFailure(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                  f"body over {self.limits.max_body_bytes} bytes")
            self._chunk_state = "trailer" if self._remaining == 0 else "data"
