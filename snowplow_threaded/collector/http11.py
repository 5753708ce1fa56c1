"""A small HTTP/1.1 server on asyncio (standard library only), hardened for a collector.

One :class:`_Connection` protocol per TCP connection parses requests incrementally: keep-alive
and pipelining, ``Content-Length`` and ``chunked`` bodies, ``Expect: 100-continue``. Each
complete request is passed to a synchronous handler on the event loop, and its
:class:`Response` written in order.

Limits (:class:`Limits`) keep memory bounded whatever clients send: the request head
(``431``), the number of header lines (``431``), the body (``413``, sent before the body is
read when ``Content-Length`` announces it), the number of connections and the request bytes
buffered over all of them (``503``). A request
that stalls (no byte for ``read_timeout``, or not complete within ``request_timeout``) gets
``408``; an idle keep-alive connection is closed after ``keepalive_timeout``. After an error
reply the connection is half-closed and the rest of the request discarded for up to
``linger_seconds`` so the client reads the reply instead of a reset. Clients that do not read
their responses are paused (flow control). All of it runs on the loop's thread; nothing here
is thread-safe on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import re
import socket
import struct
import time
from http import HTTPStatus

from .http_types import Deferred, Handler, Limits, Request, Response, ServerStats

__all__ = ["HTTPServer"]

logger = logging.getLogger("snowplow_threaded.collector.http")

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_MAX_LINE = 4096
SERVER_NAME = "snowplow-threaded-collector"
_PHRASES = {int(s): s.phrase for s in HTTPStatus}
_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a TCP RST
_FILLER = b'{"detail": "this response is cut short on purpose (a fault rule)"}\n'


class _Fail(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class HTTPServer:
    """Serves *handler* on one asyncio loop. Create, ``await start()``, ``await close()``,
    all on the loop's thread."""

    def __init__(self, handler: Handler, limits: Limits) -> None:
        self.handler = handler
        self.limits = limits
        self.stats = ServerStats()
        self.connections: set[_Connection] = set()
        self.date = email.utils.formatdate(usegmt=True)
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        #: answers scheduled for later (:class:`Deferred`), cancelled if the server closes
        self.deferred: dict[asyncio.TimerHandle, Deferred] = {}
        #: how often timeouts are enforced: often enough for the shortest of them
        self.sweep_interval = max(0.05, min(1.0, limits.read_timeout / 2,
                                            limits.keepalive_timeout / 2,
                                            limits.linger_seconds / 2))

    async def start(self, host: str, port: int) -> int:
        """Listen on *host*:*port* (0: any free port); returns the port. Raises ``OSError``."""
        port = await self.listen(host, port)
        self._sweeper = asyncio.get_running_loop().call_later(self.sweep_interval, self._sweep)
        return port

    async def listen(self, host: str, port: int) -> int:
        """Listen (again, after :meth:`stop_listening`); returns the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port,
                                                reuse_address=True, backlog=1024)
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def stop_listening(self) -> None:
        """Close the listening socket (connects are refused), drop every connection and
        cancel the answers not given yet."""
        server, self._server = self._server, None
        if server is not None:
            # Stop accepting first, and let the accepts under way make their connections
            # (dropped at once: we are not listening): closing the server before they are
            # made fails them inside asyncio (3.11), leaving their sockets open.
            loop = asyncio.get_running_loop()
            with contextlib.suppress(NotImplementedError):
                for sock in server.sockets:
                    loop.remove_reader(sock.fileno())
            for _ in range(3):
                await asyncio.sleep(0)
            server.close()
        for conn in list(self.connections):
            conn.abort()
        for handle, later in list(self.deferred.items()):
            handle.cancel()
            later.cancel()
        self.deferred.clear()
        # an aborted transport closes its socket on the next turn of the loop: take those
        # turns now, in case the loop stops next
        for _ in range(10):
            await asyncio.sleep(0)
            if not self.connections:
                break
        await asyncio.sleep(0)
        if server is not None:
            await server.wait_closed()

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.stop_listening()

    def _sweep(self) -> None:
        """Every ``sweep_interval``: refresh the Date header and enforce the timeouts."""
        now = time.monotonic()
        self.date = email.utils.formatdate(usegmt=True)
        for conn in list(self.connections):
            conn.check_timeouts(now)
        self._sweeper = asyncio.get_running_loop().call_later(self.sweep_interval, self._sweep)


class _Connection(asyncio.Protocol):
    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.state = "idle"  # idle, head, body, chunked, drain, closed
        self.scan_from = 0
        self.started = self.last_seen = time.monotonic()
        self.peer: str | None = None
        self.pending: tuple[str, str, str, str, dict[str, str], tuple[str, ...]] | None = None
        self.remaining = 0
        self.chunk_state = "size"
        self.chunks = bytearray()
        self.held = 0  # bytes of buf + chunks counted in the server's buffered_bytes
        self.keep_alive = True
        self.number = 0  # this connection's number (Request.connection)

    # -- asyncio callbacks --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        stats = self.server.stats
        stats.connections += 1
        self.number = stats.connections
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else None
        if not self.server.listening:  # accepted as the server stopped listening
            self.state = "closed"
            transport.abort()
            return
        if len(self.server.connections) >= self.limits.max_connections:
            self.state = "closed"
            transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                            b"Connection: close\r\n\r\n")
            transport.close()
            stats.errors[503] = stats.errors.get(503, 0) + 1
            return
        self.server.connections.add(self)
        stats.open_connections = len(self.server.connections)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = "closed"
        self.server.connections.discard(self)
        self.server.stats.open_connections = len(self.server.connections)
        self.buf = bytearray()
        self.chunks = bytearray()
        self._account()

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        return False  # close; a partial request is dropped

    def data_received(self, data: bytes) -> None:
        if self.state in ("drain", "closed"):
            return
        self.last_seen = time.monotonic()
        stats = self.server.stats
        try:
            if stats.buffered_bytes + len(data) > self.limits.max_buffered_bytes:
                raise _Fail(HTTPStatus.SERVICE_UNAVAILABLE, "the collector is busy")
            self.buf += data
            self._process()
        except _Fail as failure:
            self._fail(failure.status, str(failure))
        self._account()

    def _account(self) -> None:
        """Keep the server's count of buffered request bytes up to date."""
        held = len(self.buf) + len(self.chunks)
        self.server.stats.buffered_bytes += held - self.held
        self.held = held

    # -- timeouts -----------------------------------------------------------------------
    def check_timeouts(self, now: float) -> None:
        lim = self.limits
        if self.state == "waiting":  # an answer deferred on purpose
            return
        if self.state == "idle":
            if now - self.last_seen > lim.keepalive_timeout:
                self.close()
        elif self.state == "drain":
            if now - self.last_seen > lim.linger_seconds:
                self.abort()
        elif self.state != "closed" and (now - self.last_seen > lim.read_timeout
                                         or now - self.started > lim.request_timeout):
            self._fail(HTTPStatus.REQUEST_TIMEOUT, "request not received in time")

    def close(self) -> None:
        self.state = "closed"
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.state = "closed"
        if self.transport is not None:
            self.transport.abort()

    # -- parsing ------------------------------------------------------------------------
    def _process(self) -> None:
        while self.state not in ("drain", "closed", "waiting"):
            if self.state in ("idle", "head"):
                if not self._read_head():
                    return
            elif self.state == "body":
                if len(self.buf) < self.remaining:
                    return
                body = bytes(self.buf[:self.remaining])
                del self.buf[:self.remaining]
                self._dispatch(body)
            elif not self._read_chunks():
                return

    def _read_head(self) -> bool:
        if self.state == "idle":
            while self.buf[:2] == b"\r\n":  # stray CRLF between requests
                del self.buf[:2]
            if not self.buf:
                return False
            self.state, self.started, self.scan_from = "head", self.last_seen, 0
        end = self.buf.find(b"\r\n\r\n", max(0, self.scan_from - 3))
        if end < 0:
            if len(self.buf) > self.limits.max_header_bytes:
                raise _Fail(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
            self.scan_from = len(self.buf)
            return False
        if end > self.limits.max_header_bytes:
            raise _Fail(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
        head = bytes(self.buf[:end])
        del self.buf[:end + 4]
        self._parse_head(head)
        return True

    def _parse_head(self, head: bytes) -> None:
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
            raise _Fail(HTTPStatus.BAD_REQUEST, "bare CR or LF in the request head")
        words = lines[0].split(" ")
        if len(words) != 3 or _TOKEN.fullmatch(words[0]) is None or not words[1]:
            raise _Fail(HTTPStatus.BAD_REQUEST, "malformed request line")
        method, target, version = words
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _Fail(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and 1.1")
        header_lines = lines[1:]
        if len(header_lines) > self.limits.max_headers:
            raise _Fail(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header lines")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep or _TOKEN.fullmatch(name) is None:
                raise _Fail(HTTPStatus.BAD_REQUEST, "malformed header line")
            key = name.lower()
            value = value.strip(" \t")
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if target.startswith(("http://", "https://")):  # absolute form
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        path, _, query = target.partition("?")
        connection = headers.get("connection", "").lower()
        self.keep_alive = ("close" not in connection if version == "HTTP/1.1"
                           else "keep-alive" in connection)
        self.pending = (method, path, query, version, headers, tuple(header_lines))
        self._frame_body(headers, version)

    def _frame_body(self, headers: dict[str, str], version: str) -> None:
        coding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if coding is not None:
            if length is not None:
                raise _Fail(HTTPStatus.BAD_REQUEST, "both Content-Length and Transfer-Encoding")
            if coding.strip().lower() != "chunked":
                raise _Fail(HTTPStatus.NOT_IMPLEMENTED, f"Transfer-Encoding {coding!r}")
            self.state, self.chunk_state, self.chunks = "chunked", "size", bytearray()
        elif length is not None:
            raw = length.encode("latin-1").strip()
            if _DIGITS.fullmatch(raw) is None:
                raise _Fail(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            self.remaining = int(raw)
            if self.remaining > self.limits.max_body_bytes:
                raise _Fail(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"body over {self.limits.max_body_bytes} bytes")
            self.state = "body"
        else:
            self.remaining, self.state = 0, "body"
        expects = headers.get("expect", "").lower() == "100-continue"
        if expects and version == "HTTP/1.1" and self.transport is not None and (
                self.state == "chunked" or self.remaining):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _read_chunks(self) -> bool:
        """Consume what the buffer holds of a chunked body; True once it is complete."""
        while True:
            if self.chunk_state == "data":
                if len(self.buf) < self.remaining + 2:
                    return False
                if self.buf[self.remaining:self.remaining + 2] != b"\r\n":
                    raise _Fail(HTTPStatus.BAD_REQUEST, "malformed chunk")
                self.chunks += self.buf[:self.remaining]
                del self.buf[:self.remaining + 2]
                self.chunk_state = "size"
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                if len(self.buf) > _MAX_LINE:
                    raise _Fail(HTTPStatus.BAD_REQUEST, "chunk line too long")
                return False
            line = bytes(self.buf[:end])
            del self.buf[:end + 2]
            if self.chunk_state == "trailer":
                if not line:
                    body, self.chunks = bytes(self.chunks), bytearray()
                    self._dispatch(body)
                    return True
                continue  # trailer fields are ignored (bounded by the request timeout)
            size_text = line.split(b";", 1)[0].strip()
            if _HEX.fullmatch(size_text) is None:
                raise _Fail(HTTPStatus.BAD_REQUEST, "bad chunk size")
            self.remaining = int(size_text, 16)
            if len(self.chunks) + self.remaining > self.limits.max_body_bytes:
                raise _Fail(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"body over {self.limits.max_body_bytes} bytes")
            self.chunk_state = "trailer" if self.remaining == 0 else "data"

    # -- responding ---------------------------------------------------------------------
    def _dispatch(self, body: bytes) -> None:
        assert self.pending is not None
        method, path, query, version, headers, lines = self.pending
        self.pending = None
        self.state = "idle"
        request = Request(method, path, query, version, headers, lines, body, self.peer,
                          self.number)
        self.server.stats.requests += 1
        try:
            result = self.server.handler(request)
        except Exception:
            logger.exception("the collector failed on %s %s", method, path)
            result = Response(500, b"internal error\n", "text/plain", close=True)
        if isinstance(result, Deferred):
            self._defer(method, path, result)
        else:
            self._respond(method, result)

    def _defer(self, method: str, path: str, later: Deferred) -> None:
        """Answer *later* after its delay; read no further request until then."""
        self.state = "waiting"
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self.server.deferred.pop(handle, None)
            try:
                response = later.answer()
            except Exception:
                logger.exception("the collector failed on %s %s", method, path)
                response = Response(500, b"internal error\n", "text/plain", close=True)
            if self.state != "waiting":  # the client hung up meanwhile
                return
            self.state = "idle"
            self._respond(method, response)
            self.last_seen = time.monotonic()
            try:
                self._process()  # requests pipelined behind it
            except _Fail as failure:
                self._fail(failure.status, str(failure))
            self._account()

        handle = loop.call_later(later.delay, fire)
        self.server.deferred[handle] = later

    def _respond(self, method: str, response: Response) -> None:
        if method == "HEAD":
            response = Response(response.status, b"", response.content_type,
                                (*response.headers, ("Content-Length", str(len(response.body)))),
                                response.close)
        self._write(response, close=response.close or not self.keep_alive)

    def _write(self, response: Response, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        status = response.status
        body = response.body or (_FILLER if response.cut else b"")
        phrase = _PHRASES.get(status, "Status")
        parts = [f"HTTP/1.1 {status} {phrase}\r\nServer: {SERVER_NAME}\r\n"
                 f"Date: {self.server.date}\r\n"]
        names = {name.lower() for name, _ in response.headers}
        if "content-length" not in names:
            parts.append(f"Content-Length: {len(body)}\r\n")
        if response.content_type:
            parts.append(f"Content-Type: {response.content_type}\r\n")
        parts.extend(f"{name}: {value}\r\n" for name, value in response.headers)
        parts.append("Connection: close\r\n\r\n" if close else "\r\n")
        head = "".join(parts).encode("latin-1")
        if status >= 400 and response.cut != "reset":  # a reset sends no status
            self.server.stats.errors[status] = self.server.stats.errors.get(status, 0) + 1
        if response.cut is not None:
            self._cut(response.cut, head, body)
            return
        self.transport.write(head + body)
        if close:
            self._linger()

    def _cut(self, cut: str, head: bytes, body: bytes) -> None:
        """Send a response broken as *cut* says (see ``Response.cut``)."""
        assert self.transport is not None
        if cut == "close-after-head":
            self.transport.write(head)
            self.close()
            return
        if cut == "reset-mid-response":
            self.transport.write(head + body[:max(1, len(body) // 2)])
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # the socket is gone already
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        self.abort()

    def _fail(self, status: int, reason: str) -> None:
        logger.debug("%s from %s: %s", status, self.peer, reason)
        self.pending = None
        self._write(Response(status, (reason + "\n").encode(), "text/plain"), close=True)

    def _linger(self) -> None:
        """Half-close after the last reply and discard input for a while, so a client still
        sending its body reads our reply rather than a connection reset."""
        self.buf = bytearray()
        self.chunks = bytearray()
        self._account()
        self.state = "drain"
        self.last_seen = time.monotonic()
        transport = self.transport
        if transport is None:
            return
        if transport.can_write_eof():
            transport.write_eof()
        else:  # pragma: no cover - TCP transports can
            transport.close()

