"""A small, real HTTP Snowplow collector for tests, with programmable faults.

Standard library only. It serves the two tracker-protocol routes on 127.0.0.1:

* ``POST [/any/prefix]/com.snowplowanalytics.snowplow/tp2`` with a JSON body
  ``{"schema": "iglu:.../payload_data/...", "data": [{event}, ...]}``
* ``GET [/any/prefix]/i?<event fields>`` (one event per request)

Everything else gets a 404. Every request is recorded as a :class:`RecordedRequest`.
What the collector answers to tracker requests is decided by :attr:`Collector.behavior`,
a callable ``(index, request) -> Reply``; ready-made behaviours are :func:`healthy`,
:func:`always`, :func:`every_nth`, :func:`refusing`, :func:`sequence`, :func:`slow` and
:func:`retry_after`.

Example::

    with Collector() as collector:
        collector.behavior = every_nth(3, 503)
        ...  # point a tracker at collector.endpoint
        assert collector.wait_for_events(100)
        events = collector.events()
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar, overload
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "GET_SUFFIX",
    "POST_SUFFIX",
    "Behavior",
    "Collector",
    "Event",
    "Headers",
    "RecordedRequest",
    "Reply",
    "always",
    "every_nth",
    "healthy",
    "refusing",
    "retry_after",
    "sequence",
    "slow",
]

#: Path suffix of the POST route (any prefix in front of it is accepted).
POST_SUFFIX = "/com.snowplowanalytics.snowplow/tp2"
#: Path suffix of the GET route (``/i`` or ``/<prefix>/i``).
GET_SUFFIX = "/i"

#: One tracker-protocol event as received (values are whatever the tracker sent; they
#: should all be strings, see ``tests.schemas.validate_post_body``).
Event = dict[str, str]

_T = TypeVar("_T")

_LINGER_RST = struct.pack("ii", 1, 0)
_STOP_JOIN_SECONDS = 2.0
_REBIND_SECONDS = 2.0
_MAX_CHUNK_LINE = 1024
_MAX_HEADER_LINE = 65536
_MAX_HEADERS = 100


class Headers(dict[str, str]):
    """Request headers. Keys are stored lower-cased; ``[]``, ``get`` and ``in`` ignore case.

    Repeated headers are joined with ``", "``.
    """

    def __missing__(self, key: str) -> str:
        lowered = key.lower()
        if lowered != key:
            return self[lowered]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            return dict.__contains__(self, key.lower())
        return False

    @overload
    def get(self, key: str, default: None = None, /) -> str | None: ...
    @overload
    def get(self, key: str, default: str, /) -> str: ...
    @overload
    def get(self, key: str, default: _T, /) -> str | _T: ...
    def get(self, key: str, default: object = None, /) -> object:
        return dict.get(self, key.lower(), default)

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, Any]]) -> Headers:
        headers = cls()
        for name, value in pairs:
            key = name.lower()
            text = str(value)
            if dict.__contains__(headers, key):
                headers[key] = dict.__getitem__(headers, key) + ", " + text
            else:
                headers[key] = text
        return headers


@dataclass(slots=True)
class RecordedRequest:
    """One HTTP request the collector received.

    ``status`` is what was answered, or ``None`` when no complete response was sent
    (``fault`` then says why: ``"reset"``, ``"partial"`` or ``"aborted"`` — the latter
    when the collector was stopped / taken down during a ``delay``).
    ``index`` is the behaviour index (``None`` for requests to unknown routes).
    ``events`` are the events parsed from the body (POST) or query string (GET); an empty
    list when the body could not be parsed. ``malformed`` is true in that case.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    body: bytes
    events: list[Event]
    received_at: float
    status: int | None = None
    route: str | None = None  # "tp2", "i" or None (unknown route)
    malformed: bool = False
    index: int | None = None
    connection_id: int = 0
    fault: str | None = None
    completed: bool = False
    answered_at: float | None = None
    generation: int = field(default=0, repr=False)

    @property
    def accepted(self) -> bool:
        """True when the collector answered 2xx (a real collector kept the events)."""
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Reply:
    """What to answer to one tracker request.

    * ``status``/``headers``/``body``: the response (``Content-Length`` is always set by
      the collector; a ``Content-Length`` given here is ignored).
    * ``delay``: seconds to wait before answering (in the connection thread; interrupted
      by :meth:`Collector.stop` / :meth:`Collector.down`, which then drop the connection).
    * ``reset``: read the request, then abort the connection with a TCP RST instead of
      answering.
    * ``partial``: send the status line and headers announcing a longer body than is sent,
      a few body bytes, then a TCP RST (connection reset mid-response).
    * ``close``: answer normally, with ``Connection: close``, then close the connection.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    reset: bool = False
    partial: bool = False
    close: bool = False


#: A behaviour: ``(index, request) -> Reply``. ``index`` counts requests to the tracker
#: routes from 0 (reset by :meth:`Collector.reset`). Called concurrently from connection
#: threads, so it must be thread-safe (the stateless ready-made ones are).
Behavior = Callable[[int, RecordedRequest], Reply]

_OK = Reply()


def healthy() -> Behavior:
    """Answer 200 to everything (the default behaviour)."""

    def behavior(index: int, req: RecordedRequest) -> Reply:
        return _OK

    return behavior


def always(status: int, headers: dict[str, str] | None = None) -> Behavior:
    """Answer every tracker request with ``status`` (and ``headers``)."""
    reply = Reply(status=status, headers=dict(headers or {}))

    def behavior(index: int, req: RecordedRequest) -> Reply:
        return reply

    return behavior


def every_nth(n: int, status: int, headers: dict[str, str] | None = None) -> Behavior:
    """Answer every ``n``-th tracker request (indices n-1, 2n-1, ...) with ``status``,
    the others with 200. ``every_nth(1, s)`` is ``always(s)``."""
    if n < 1:
        raise ValueError("n must be >= 1")
    failure = Reply(status=status, headers=dict(headers or {}))

    def behavior(index: int, req: RecordedRequest) -> Reply:
        return failure if (index + 1) % n == 0 else _OK

    return behavior


def refusing(eids: set[str], status: int = 400) -> Behavior:
    """Answer ``status`` to every tracker request that carries an event whose ``eid`` is in
    ``eids`` (a poison event), 200 to the others."""
    refusal = Reply(status=status)

    def behavior(index: int, req: RecordedRequest) -> Reply:
        return refusal if any(e.get("eid") in eids for e in req.events) else _OK

    return behavior


def sequence(replies: list[Reply], then: Reply | None = None) -> Behavior:
    """Answer tracker request ``i`` with ``replies[i]``; after the list is exhausted answer
    ``then`` (default: a plain 200)."""
    scripted = list(replies)
    after = then if then is not None else _OK

    def behavior(index: int, req: RecordedRequest) -> Reply:
        return scripted[index] if index < len(scripted) else after

    return behavior


def slow(seconds: float, status: int = 200) -> Behavior:
    """Wait ``seconds`` before answering every tracker request with ``status``."""
    reply = Reply(status=status, delay=seconds)

    def behavior(index: int, req: RecordedRequest) -> Reply:
        return reply

    return behavior


def retry_after(seconds: float | str, status: int = 429, times: int = 1) -> Behavior:
    """Answer the first ``times`` tracker requests with ``status`` and a
    ``Retry-After: <seconds>`` header, then 200. Integral floats are sent as integers
    (``Retry-After`` is delta-seconds); pass a string to send an HTTP-date or anything else
    verbatim."""
    if isinstance(seconds, str):
        value = seconds
    elif float(seconds).is_integer():
        value = str(int(seconds))
    else:
        value = str(seconds)
    refusal = Reply(status=status, headers={"Retry-After": value})

    def behavior(index: int, req: RecordedRequest) -> Reply:
        return refusal if index < times else _OK

    return behavior


class _BadRequest(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "snowplow-test-collector/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _Server
    connection_id: int = 0
    parsed_headers: Headers
    raw_requestline: bytes

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.connection_id(self.request)

    def parse_request(self) -> bool:
        """A faster parse_request for well-formed HTTP/1.x requests (the stock one runs the
        email package's header parser). Anything unusual goes to the stock parser."""
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0") or words[1][:2] == "//":
            ok = super().parse_request()
            if ok:
                self.parsed_headers = Headers.from_pairs(self.headers.items())
            return ok
        self.requestline = requestline
        self.command, self.path, self.request_version = words
        pairs: list[tuple[str, str]] = []
        readline = self.rfile.readline
        while True:
            line = readline(_MAX_HEADER_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                break
            if len(line) > _MAX_HEADER_LINE or len(pairs) >= _MAX_HEADERS:
                self.close_connection = True
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return False
            if line[:1] in (b" ", b"\t") and pairs:  # obsolete line folding
                name, value = pairs[-1]
                pairs[-1] = (name, value + " " + line.decode("iso-8859-1").strip())
                continue
            name, sep, value = line.decode("iso-8859-1").partition(":")
            if not sep:
                self.close_connection = True
                self.send_error(HTTPStatus.BAD_REQUEST, "Bad header line")
                return False
            pairs.append((name.strip(), value.strip()))
        headers = self.parsed_headers = Headers.from_pairs(pairs)
        connection = headers.get("connection", "").lower()
        if self.request_version == "HTTP/1.0":
            self.close_connection = connection != "keep-alive"
        else:
            self.close_connection = connection == "close"
            if headers.get("expect", "").lower() == "100-continue":
                return self.handle_expect_100()
        return True

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr logging."""

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    # -- request parsing ------------------------------------------------------------------

    def _read_body(self) -> bytes:
        te = self.parsed_headers.get("transfer-encoding")
        if te is not None and "chunked" in te.lower():
            return self._read_chunked()
        length_text = self.parsed_headers.get("content-length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise _BadRequest("bad Content-Length") from None
        if length < 0:
            raise _BadRequest("bad Content-Length")
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise ConnectionResetError("client closed the connection mid-body")
        return body

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(_MAX_CHUNK_LINE)
            if not line:
                raise ConnectionResetError("client closed the connection mid-body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest("bad chunk size") from None
            if size == 0:
                # Trailers, up to the empty line.
                while True:
                    trailer = self.rfile.readline(_MAX_CHUNK_LINE)
                    if trailer in (b"\r\n", b"\n", b""):
                        return b"".join(parts)
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise ConnectionResetError("client closed the connection mid-body")
            parts.append(chunk)
            self.rfile.readline(_MAX_CHUNK_LINE)  # CRLF after the chunk

    # -- serving --------------------------------------------------------------------------

    def _serve(self) -> None:
        collector = self.server.collector
        received_at = time.monotonic()
        split = urlsplit(self.path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True)) if split.query else {}
        headers = self.parsed_headers
        method = self.command
        try:
            body = self._read_body()
        except _BadRequest:
            self.close_connection = True
            record = RecordedRequest(
                method, path, query, headers, b"", [], received_at, malformed=True
            )
            record.connection_id = self.connection_id
            collector._arrive(record)
            collector._complete(record, 400, None)
            self._send(400, {}, b"", close=True)
            return

        route: str | None = None
        if method == "POST" and path.endswith(POST_SUFFIX):
            route = "tp2"
        elif method == "GET" and path.endswith(GET_SUFFIX):
            route = "i"

        events: list[Event] = []
        malformed = False
        if route == "tp2":
            try:
                payload = json.loads(body)
                data = payload["data"]
                if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
                    raise TypeError("data is not a list of objects")
                events = data
            except (ValueError, TypeError, KeyError, RecursionError):
                malformed = True
        elif route == "i" and query:
            events = [query]

        record = RecordedRequest(
            method,
            path,
            query,
            headers,
            body,
            events,
            received_at,
            route=route,
            malformed=malformed,
            connection_id=self.connection_id,
        )
        index, behavior = collector._arrive(record)

        if route is None:
            collector._complete(record, 404, None)
            self._send(404, {}, b"", close=False)
            return

        try:
            reply = behavior(index, record)
        except Exception:
            collector._note_error(traceback.format_exc())
            reply = Reply(status=500)
        if malformed and not (reply.reset or reply.partial) and 200 <= reply.status < 300:
            reply = Reply(status=400, delay=reply.delay, close=reply.close)

        if reply.delay > 0 and self.server.stopping.wait(reply.delay):
            collector._complete(record, None, "aborted")
            self._abort()
            return
        if reply.reset:
            collector._complete(record, None, "reset")
            self._abort()
            return
        if reply.partial:
            collector._complete(record, None, "partial")
            self._send_partial(reply)
            self._abort()
            return
        collector._complete(record, reply.status, None)
        self._send(reply.status, reply.headers, reply.body, close=reply.close)

    def _head(self, status: int, headers: dict[str, str], length: int, close: bool) -> bytearray:
        phrase = self.responses.get(status, ("",))[0]
        out = bytearray(f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1"))
        out += f"Server: {self.server_version}\r\n".encode("latin-1")
        for name, value in headers.items():
            if name.lower() in ("content-length", "connection", "transfer-encoding"):
                continue
            out += f"{name}: {value}\r\n".encode("latin-1")
        out += f"Content-Length: {length}\r\n".encode("latin-1")
        if close or self.close_connection:
            self.close_connection = True
            out += b"Connection: close\r\n"
        else:
            out += b"Connection: keep-alive\r\n"
        out += b"\r\n"
        return out

    def _send(self, status: int, headers: dict[str, str], body: bytes, close: bool) -> None:
        out = self._head(status, headers, len(body), close)
        if self.command != "HEAD":
            out += body
        self.wfile.write(out)

    def _send_partial(self, reply: Reply) -> None:
        full = reply.body or b'{"detail": "this response is cut short by a connection reset"}'
        sent = full[: max(1, len(full) // 2)]
        out = self._head(reply.status, reply.headers, len(full), close=False)
        out += sent
        with contextlib.suppress(OSError):
            self.wfile.write(out)

    def _abort(self) -> None:
        """Close the connection with a TCP RST (SO_LINGER on, timeout 0)."""
        self.close_connection = True
        sock = self.connection
        self.server.forget(sock)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        # rfile (a makefile() of the socket) holds a reference to it: close it too, so
        # that sock.close() really closes the fd now. wfile writes through the socket
        # directly and is closed later by finish().
        self.rfile.close()
        sock.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], collector: Collector) -> None:
        self.collector = collector
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, int] = {}
        self._conn_threads: set[threading.Thread] = set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which may do slow reverse DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        conn_id = self.collector._connection_opened()
        thread = threading.Thread(
            target=self._run_connection,
            args=(request, client_address),
            name=f"collector-conn-{conn_id}",
            daemon=True,
        )
        with self._lock:
            self._connections[request] = conn_id
            self._conn_threads.add(thread)
        thread.start()

    def _run_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._conn_threads.discard(threading.current_thread())

    def connection_id(self, sock: Any) -> int:
        with self._lock:
            return self._connections.get(sock, 0)

    def forget(self, sock: Any) -> None:
        with self._lock:
            self._connections.pop(sock, None)

    def shutdown_request(self, request: Any) -> None:
        self.forget(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or (self.stopping.is_set() and isinstance(exc, ValueError)):
            return  # the client went away, or we are shutting down: expected, stay quiet
        self.collector._note_error(traceback.format_exc())

    def abort_connections(self) -> None:
        """Shut down every open client socket, waking threads blocked on them."""
        with self._lock:
            for sock in self._connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._connections.clear()

    def join_threads(self, deadline: float) -> None:
        with self._lock:
            threads = list(self._conn_threads)
        for thread in threads:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            thread.join(remaining)


class Collector:
    """A real HTTP collector on ``host`` (default 127.0.0.1), serving in daemon threads.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. ``port=0`` picks a free
    port at the first start; :meth:`down` / :meth:`up` stop and resume serving on that same
    port while keeping the records.

    ``keep_records=False`` (for long benchmarks) keeps only the counters
    (:attr:`accepted_event_count`, :meth:`wait_for_events`, ...): ``requests``,
    ``events()`` and ``all_events()`` then stay empty.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, keep_records: bool = True) -> None:
        self.host = host
        self._port = port
        self.keep_records = keep_records
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._lifecycle = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._behavior: Behavior = healthy()
        self._records: list[RecordedRequest] = []
        self._generation = 0
        self._next_index = 0
        self._arrived = 0
        self._completed = 0
        self._accepted_events = 0
        self._connections_opened = 0
        self._last_connection_id = 0
        self._errors: list[str] = []

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Collector:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Collector:
        """Bind (a free port when ``port=0``) and serve in a daemon thread. Returns self."""
        with self._lifecycle:
            if self._server is not None:
                raise RuntimeError("collector already running")
            self._start_locked(retry_bind=False)
        return self

    def _start_locked(self, retry_bind: bool) -> None:
        deadline = time.monotonic() + (_REBIND_SECONDS if retry_bind else 0.0)
        while True:
            try:
                server = _Server((self.host, self._port), self)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)  # port briefly held elsewhere: retry the bind
        self._port = int(server.server_address[1])
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"collector-{self._port}",
            daemon=True,
        )
        self._server = server
        self._thread = thread
        thread.start()

    def stop(self) -> None:
        """Stop serving, close the listening socket and every client connection, and join
        the threads (bounded by ~2 s). Idempotent. Records are kept."""
        with self._lifecycle:
            self._stop_locked()

    def _stop_locked(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = None
        self._thread = None
        deadline = time.monotonic() + _STOP_JOIN_SECONDS
        server.stopping.set()  # interrupts Reply.delay waits
        if thread.is_alive():
            server.shutdown()  # returns within one poll interval
        server.server_close()  # listening socket closed: new connects are refused
        server.abort_connections()
        thread.join(max(0.0, deadline - time.monotonic()))
        server.join_threads(deadline)

    def down(self) -> None:
        """Go down: close the listening socket (connects get ECONNREFUSED) and drop every
        open connection. Records and the port are kept; see :meth:`up`."""
        self.stop()

    def up(self) -> None:
        """Serve again on the same port after :meth:`down` (no-op if already up)."""
        with self._lifecycle:
            if self._server is None:
                self._start_locked(retry_bind=True)

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        """``http://host:port`` (no trailing slash)."""
        return f"http://{self.host}:{self._port}"

    @property
    def post_url(self) -> str:
        return self.endpoint + POST_SUFFIX

    @property
    def get_url(self) -> str:
        return self.endpoint + GET_SUFFIX

    # -- behaviour ------------------------------------------------------------------------

    @property
    def behavior(self) -> Behavior:
        with self._lock:
            return self._behavior

    @behavior.setter
    def behavior(self, behavior: Behavior) -> None:
        with self._lock:
            self._behavior = behavior

    # -- records --------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Completed requests (answered or aborted), in arrival order."""
        with self._lock:
            return [r for r in self._records if r.completed]

    @property
    def in_flight(self) -> int:
        """Requests received but not yet answered (e.g. in a ``delay``)."""
        with self._lock:
            return self._arrived - self._completed

    def events(self) -> list[Event]:
        """Events of every request answered 2xx, in arrival order."""
        with self._lock:
            out: list[Event] = []
            for r in self._records:
                if r.status is not None and 200 <= r.status < 300:
                    out.extend(r.events)
            return out

    def all_events(self) -> list[Event]:
        """Events of every completed request, whatever was answered, in arrival order."""
        with self._lock:
            out: list[Event] = []
            for r in self._records:
                if r.completed:
                    out.extend(r.events)
            return out

    @property
    def accepted_event_count(self) -> int:
        """Number of events in 2xx-answered requests (cheap: a counter)."""
        with self._lock:
            return self._accepted_events

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted since creation / the last :meth:`reset`."""
        with self._lock:
            return self._connections_opened

    @property
    def errors(self) -> list[str]:
        """Tracebacks of unexpected errors in the server (a raising behaviour, ...)."""
        with self._lock:
            return list(self._errors)

    def wait_for_events(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least ``n`` events were accepted (2xx). False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._accepted_events >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least ``n`` requests completed (answered or aborted)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._completed >= n, timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate()`` is true; re-checked whenever a request arrives or
        completes (and on reset). The predicate runs with the collector's (re-entrant) lock
        held, so it may call ``events()`` / ``requests`` but must be quick."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def reset(self) -> None:
        """Forget all records and zero the counters and the behaviour index. Requests in
        flight at the time of the reset are not recorded when they complete."""
        with self._cond:
            self._records = []
            self._generation += 1
            self._next_index = 0
            self._arrived = 0
            self._completed = 0
            self._accepted_events = 0
            self._connections_opened = 0
            self._errors = []
            self._cond.notify_all()

    # -- called from connection threads ---------------------------------------------------

    def _connection_opened(self) -> int:
        with self._lock:
            self._connections_opened += 1
            self._last_connection_id += 1  # ids stay unique across reset()
            return self._last_connection_id

    def _arrive(self, record: RecordedRequest) -> tuple[int, Behavior]:
        with self._cond:
            record.generation = self._generation
            self._arrived += 1
            index = -1
            if record.route is not None:
                index = self._next_index
                self._next_index += 1
                record.index = index
            if self.keep_records:
                self._records.append(record)
            self._cond.notify_all()
            return index, self._behavior

    def _complete(self, record: RecordedRequest, status: int | None, fault: str | None) -> None:
        with self._cond:
            record.status = status
            record.fault = fault
            record.completed = True
            record.answered_at = time.monotonic()
            if record.generation != self._generation:
                return
            self._completed += 1
            if status is not None and 200 <= status < 300:
                self._accepted_events += len(record.events)
            self._cond.notify_all()

    def _note_error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)
