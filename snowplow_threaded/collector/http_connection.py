"""One HTTP/1.1 connection of the collector's server (:mod:`.http11`): an asyncio protocol.

One request at a time: while one is handled, or its client does not take the replies
(flow control), the connection stops reading, so pipelined requests wait in the client's
socket and no reply is buffered without bound. A ``stream`` reply goes piece by piece,
each made on the worker thread once the previous one is in the socket. ``state``: ``open``
(reading; :attr:`RequestReader.state` says where), ``busy`` (handling, or replying),
``drain`` (a closing reply written: half-closed once sent, input discarded for
``linger_seconds``), ``closed``. Everything runs on the loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Iterator
from http import HTTPStatus

from .http_parse import HTTPFailure
from .http_reader import RequestReader
from .http_types import Deferred, Request, Response, ServerSide
from .logtext import loggable

__all__ = ["OVERFLOW", "Connection"]

logger = logging.getLogger("snowplow_threaded.collector.http")

SERVER_NAME = "snowplow-threaded-collector"
_PHRASES = {int(s): s.phrase for s in HTTPStatus}
#: Connections over the cap kept for a moment to deliver their 503 (the rest are closed).
OVERFLOW = 64
_REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 26\r\n"
            b"Content-Type: text/plain\r\nConnection: close\r\n\r\n"
            b"too many open connections\n")
_END = object()
_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a TCP RST
_FILLER = b'{"detail": "this response is cut short on purpose (a fault rule)"}\n'


class Connection(asyncio.Protocol):
    def __init__(self, server: ServerSide) -> None:
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.reader = RequestReader(server.limits)
        self.state = "open"
        self.fresh = True  # no byte received yet
        self.last_seen = self.progress_at = time.monotonic()
        self.sent_left = 0  # reply bytes the transport held at the last check
        self.flushed_at: float | None = None  # since when it holds none (while draining)
        self.peer: str | None = None
        self.held = 0  # request bytes counted in the server's buffered_bytes
        self.handling = 0  # bytes of the request being handled
        self.write_paused = False
        self.reading = True
        self.drained: asyncio.Future[None] | None = None
        self.processing = False  # inside _process (replies written inline re-enter it)
        self.number = 0  # this connection's number (Request.connection)

    # -- asyncio callbacks --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        server, stats = self.server, self.server.stats
        stats.connections += 1
        self.number = stats.connections
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else None
        if not server.listening:  # accepted as the server stopped listening
            self.state = "closed"
            transport.abort()
            return
        if len(server.connections) < stats.max_connections:
            server.connections.add(self)
            stats.open_connections = len(server.connections)
            return
        stats.errors[503] = stats.errors.get(503, 0) + 1
        transport.write(_REFUSED)
        if len(server.refusing) >= server.overflow:
            self.close()
        else:
            server.refusing.add(self)
            self._linger()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = "closed"
        self.server.connections.discard(self)
        self.server.refusing.discard(self)
        self.server.stats.open_connections = len(self.server.connections)
        self.reader.clear()
        self.handling = 0
        self._account()
        self._wake_writer()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writer()
        self._update_reading()
        if self.state == "open" and self.reader.buf:
            self._process()

    def eof_received(self) -> bool:
        return False  # close; a partial request is dropped

    def data_received(self, data: bytes) -> None:
        if self.state in ("drain", "closed"):
            return  # discarded: the reply that closes this connection is on its way
        self.last_seen = time.monotonic()
        self.fresh = False
        if self.server.stats.buffered_bytes + len(data) > self.limits.max_buffered_bytes:
            self._fail(HTTPStatus.SERVICE_UNAVAILABLE, "the collector is busy")
            return
        self.reader.feed(data)
        self._process()

    # -- reading --------------------------------------------------------------------------
    def _process(self) -> None:
        """Handle the requests held, one at a time, while nothing holds us back."""
        if self.processing:  # a reply written inline: the loop below goes on
            return
        self.processing = True
        try:
            while self.state == "open" and not self.write_paused:
                found = self.reader.next_request(self.last_seen)
                if self.reader.expects_continue and self.transport is not None:
                    self.reader.expects_continue = False
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if found is None:
                    break
                head, body = found
                self._dispatch(Request(head.method, head.path, head.query, head.version,
                                       head.headers, head.lines, body, self.peer,
                                       self.number), head.keep_alive)
        except HTTPFailure as failure:
            self._fail(failure.status, str(failure))
        finally:
            self.processing = False
        self._account()

    def _account(self) -> None:
        """Keep the server's count of held request bytes up to date."""
        held = self.reader.held + self.handling
        self.server.stats.buffered_bytes += held - self.held
        self.held = held

    def _update_reading(self) -> None:
        """Read while a request may come in: not while one is handled or replies wait
        (but always while draining: that input is discarded)."""
        transport = self.transport
        want = self.state == "drain" or (self.state == "open" and not self.write_paused)
        if transport is None or transport.is_closing() or want == self.reading:
            return
        self.reading = want
        if want:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def _wake_writer(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    # -- timeouts -----------------------------------------------------------------------
    def check_timeouts(self, now: float) -> None:
        lim = self.limits
        if self.state in ("busy", "drain") and self._reply_stalled(now):
            self.abort()  # the client takes nothing of what we send
        elif self.state == "drain":
            if self.flushed_at is not None and now - self.flushed_at > lim.linger_seconds:
                self.abort()
        elif self.state != "open":
            return
        elif self.reader.state == "idle":
            if now - self.last_seen > (lim.read_timeout if self.fresh else lim.keepalive_timeout):
                self.close()
        elif (now - self.last_seen > lim.read_timeout
              or now - self.reader.started > lim.request_timeout):
            self._fail(HTTPStatus.REQUEST_TIMEOUT, "request not received in time")
            self._account()

    def _reply_stalled(self, now: float) -> bool:
        """True when replies wait to be sent and the client has taken none of them for
        ``read_timeout``; notes since when nothing waits (``flushed_at``)."""
        left = self.transport.get_write_buffer_size() if self.transport is not None else 0
        if left < self.sent_left:
            self.progress_at = now
        self.sent_left = left
        if left:
            self.flushed_at = None
            return now - self.progress_at > self.limits.read_timeout
        if self.flushed_at is None:
            self.flushed_at = now
        return False

    def close(self) -> None:
        self.state = "closed"
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.state = "closed"
        if self.transport is not None:
            self.transport.abort()

    # -- responding ---------------------------------------------------------------------
    def _dispatch(self, request: Request, keep_alive: bool) -> None:
        self.server.stats.requests += 1
        self.state = "busy"
        self.handling = len(request.body) + len(request.query)
        offload = self.server.offload
        result: Response | Deferred | None = None
        if offload is None or not offload(request):
            result = self._handle(request)
            if isinstance(result, Response) and result.stream is None:
                self._reply(request, result, keep_alive)  # no pause: answered at once
                return
        self._update_reading()  # stop reading until this reply is sent
        self.server.track(self._respond(request, result, keep_alive))

    def _handle(self, request: Request, later: Deferred | None = None) -> Response | Deferred:
        """The handler's answer to *request* (or *later*'s), a 500 if it raises."""
        try:
            return self.server.handler(request) if later is None else later.answer()
        except Exception:
            logger.exception("the collector failed on %s %s", request.method,
                             loggable(request.path))
            return Response(500, b"internal error\n", "text/plain", close=True)

    async def _respond(self, request: Request, result: Response | Deferred | None,
                       keep_alive: bool) -> None:
        """Handle *request* on the worker thread (unless *result* is given), wait for a
        deferred answer, then send the reply, streaming its pieces as the client takes
        them."""
        if result is None:
            result = await self.server.run_off_loop(self._handle, request)
        if isinstance(result, Deferred):
            await self.server.wait(result)  # cancelled if the server stops meanwhile
            result = await self.server.run_off_loop(self._handle, request, result)
        assert isinstance(result, Response)
        response = result
        if self.state == "closed":
            return self._done_handling()
        if response.stream is None or request.method == "HEAD":
            if response.stream is not None:  # HEAD: the headers of the streamed reply
                response.stream = None
                response.headers += (("Transfer-Encoding", "chunked"),)
            return self._reply(request, response, keep_alive)
        chunked = request.version == "HTTP/1.1"  # HTTP/1.0: the body ends at the close
        close = response.close or not keep_alive or not chunked
        self._write_head(response, close, ("Transfer-Encoding", "chunked") if chunked else None)
        await self._send_stream(response.stream, chunked)
        if self.state == "closed":
            return self._done_handling()
        if chunked:
            self._write(b"0\r\n\r\n")
        self._finish(close)

    async def _send_stream(self, pieces: Iterator[bytes], chunked: bool) -> None:
        while self.state != "closed":
            piece = await self.server.run_off_loop(_next_piece, pieces)
            if piece is _END:
                return
            if not isinstance(piece, bytes):  # producing it failed: cut the reply short
                self.abort()
                return
            if piece:
                self._write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
            while self.write_paused and self.state != "closed":
                self.drained = asyncio.get_running_loop().create_future()
                await self.drained

    def _reply(self, request: Request, response: Response, keep_alive: bool) -> None:
        if response.cut is not None:
            return self._cut(response)
        body = response.body
        length: int | None = len(body)
        if request.method == "HEAD":  # the headers a GET would get, without the body
            if not any(name.lower() in ("content-length", "transfer-encoding")
                       for name, _ in response.headers):
                response.headers += (("Content-Length", str(len(body))),)
            body, length = b"", None
        close = response.close or not keep_alive
        self._write_head(response, close, length, body)
        self._finish(close)

    def _write_head(self, response: Response, close: bool,
                    framing: int | tuple[str, str] | None, body: bytes = b"") -> None:
        self._write(self._head_bytes(response, close, framing) + body)
        if response.status >= 400:
            errors = self.server.stats.errors
            errors[response.status] = errors.get(response.status, 0) + 1

    def _head_bytes(self, response: Response, close: bool,
                    framing: int | tuple[str, str] | None) -> bytes:
        status = response.status
        parts = [f"HTTP/1.1 {status} {_PHRASES.get(status, 'Status')}\r\n"
                 f"Server: {SERVER_NAME}\r\nDate: {self.server.date}\r\n"]
        if isinstance(framing, int):
            parts.append(f"Content-Length: {framing}\r\n")
        elif framing is not None:
            parts.append(f"{framing[0]}: {framing[1]}\r\n")
        if response.content_type:
            parts.append(f"Content-Type: {response.content_type}\r\n")
        parts.extend(f"{name}: {value}\r\n" for name, value in response.headers)
        parts.append("Connection: close\r\n\r\n" if close else "\r\n")
        return "".join(parts).encode("latin-1")

    def _cut(self, response: Response) -> None:
        """Send *response* broken as its ``cut`` says (a simulated fault)."""
        self._done_handling()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        body = response.body or _FILLER
        if response.cut != "reset":  # a reset sends no status
            head = self._head_bytes(response, True, len(body))
            if response.status >= 400:
                errors = self.server.stats.errors
                errors[response.status] = errors.get(response.status, 0) + 1
            if response.cut == "close-after-head":
                transport.write(head)
                self.close()
                return
            transport.write(head + body[:max(1, len(body) // 2)])
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # the socket is gone already
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        self.abort()

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if not transport.get_write_buffer_size():
                self.progress_at = time.monotonic()  # a stall is counted from here
            transport.write(data)

    def _done_handling(self) -> None:
        self.handling = 0
        self._account()

    def _finish(self, close: bool) -> None:
        """The reply is written: close, or go on with the next request."""
        self._done_handling()
        if close:
            self._linger()
            return
        self.state, self.last_seen = "open", time.monotonic()
        self._update_reading()
        if self.reader.buf:
            self._process()

    def _fail(self, status: int, reason: str) -> None:
        logger.debug("%s from %s: %s", status, self.peer, loggable(reason))
        if self.state == "busy":  # a reply is on its way: nothing else may be written
            self.abort()
            return
        self._write_head(Response(status, content_type="text/plain"), True,
                         len(reason) + 1, (reason + "\n").encode())
        self._linger()

    def _linger(self) -> None:
        """Half-close once the last reply is sent, discarding input meanwhile and for
        ``linger_seconds`` after, so a client still sending its body reads our reply
        rather than a connection reset."""
        self.reader.clear()
        self._account()
        self.state = "drain"
        self.flushed_at = None
        transport = self.transport
        if transport is None:
            return
        self._update_reading()
        if transport.can_write_eof():
            transport.write_eof()  # once the write buffer is flushed
        else:  # pragma: no cover - TCP transports can
            transport.close()


def _next_piece(pieces: Iterator[bytes]) -> object:
    """The next piece of a streamed reply, on the worker thread: ``_END`` at the end, the
    exception (logged) if producing it failed."""
    try:
        return next(pieces, _END)
    except Exception as exc:
        logger.exception("a streamed reply failed")
        return exc


