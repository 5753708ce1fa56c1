"""Values passed between the HTTP layer (:mod:`.http11`) and the collector's handlers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = ["Handler", "Limits", "Request", "Response", "ServerStats"]


@dataclass(frozen=True)
class Limits:
    """Resource limits of the HTTP server.

    * ``max_body_bytes``: larger request bodies get ``413`` (before they are read, when
      ``Content-Length`` announces them).
    * ``max_header_bytes`` / ``max_headers``: a larger request head, or more header lines,
      get ``431``.
    * ``read_timeout``: a request in progress that sends nothing for this long gets ``408``;
      ``request_timeout``: so does one not complete this long after its first byte.
      A connection that has not sent its first byte for ``read_timeout`` is closed, and so
      is one whose client reads nothing of a reply for that long.
    * ``keepalive_timeout``: an idle kept-alive connection is closed after this long.
    * ``max_connections``: connections beyond this are answered ``503`` and closed. The
      server lowers it to fit the process's file descriptor limit (``RLIMIT_NOFILE``).
    * ``linger_seconds``: after a reply that closes the connection has been sent, how long
      the rest of the request is read and discarded before the connection is dropped.
    * ``max_buffered_bytes``: request bytes held at once over all connections (requests in
      progress); a request that would go over it gets ``503`` (retry later).
    """

    max_body_bytes: int = 10 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    read_timeout: float = 10.0
    request_timeout: float = 60.0
    keepalive_timeout: float = 300.0
    max_connections: int = 1024
    linger_seconds: float = 2.0
    max_buffered_bytes: int = 256 * 1024 * 1024


@dataclass(slots=True)
class Request:
    """One complete request. ``headers`` has lower-case names (repeats joined by ``, ``);
    ``header_lines`` the lines as received; ``peer`` the client's IP address."""

    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    header_lines: tuple[str, ...]
    body: bytes
    peer: str | None


@dataclass(slots=True)
class Response:
    """A reply. ``Content-Length`` is added by the server; ``close`` ends the connection.

    ``stream``, when given, is the body instead of ``body``: an iterator of pieces, each
    produced on the server's worker thread when the client has taken the previous ones
    (sent chunked to HTTP/1.1 clients, to the close for HTTP/1.0), so a long answer holds
    one piece in memory at a time and never runs on the event loop."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False
    stream: Iterator[bytes] | None = None


#: Turns a request into a response: on the server's event loop, or on its worker thread
#: for the requests the server's *offload* predicate picks (see :class:`.http11.HTTPServer`).
Handler = Callable[[Request], Response]


@dataclass
class ServerStats:
    """Counters of one server (written by its loop thread; read elsewhere without a lock,
    so approximate while it runs). ``errors``: replies by status, for statuses >= 400;
    ``buffered_bytes``: request bytes held, those of requests being handled included."""

    connections: int = 0
    open_connections: int = 0
    requests: int = 0
    buffered_bytes: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    max_connections: int = 0  # the cap in force (``Limits.max_connections``, or lower)
    loop_lag_max: float = 0.0  # the longest the loop was late for the sweep, in seconds
