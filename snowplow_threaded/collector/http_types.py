"""Values passed between the HTTP layer (:mod:`.http11`) and the collector's handlers."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["CUTS", "Deferred", "Handler", "Limits", "Request", "Response", "ServerSide",
           "ServerStats"]


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
    ``header_lines`` the lines as received; ``peer`` the client's IP address;
    ``connection`` numbers the TCP connection it came on (1, 2, ... per server)."""

    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    header_lines: tuple[str, ...]
    body: bytes
    peer: str | None
    connection: int = 0


@dataclass(slots=True)
class Response:
    """A reply. ``Content-Length`` is added by the server; ``close`` ends the connection.

    ``stream``, when given, is the body instead of ``body``: an iterator of pieces, each
    produced on the server's worker thread when the client has taken the previous ones
    (sent chunked to HTTP/1.1 clients, to the close for HTTP/1.0), so a long answer holds
    one piece in memory at a time and never runs on the event loop.

    ``cut`` (one of :data:`CUTS`, for simulated faults) sends it broken: ``"reset"``
    sends nothing and resets the connection (TCP RST); ``"reset-mid-response"`` sends the
    head and half the body, then resets; ``"close-after-head"`` sends the head alone and
    closes the connection (FIN). A cut response with no body announces a filler one, so
    that the cut shows."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False
    stream: Iterator[bytes] | None = None
    cut: str | None = None


#: The ways a :class:`Response` can be cut (see :attr:`Response.cut`).
CUTS = ("reset", "reset-mid-response", "close-after-head")


@dataclass(frozen=True, slots=True)
class Deferred:
    """A reply given later: the server calls ``answer()`` *delay* seconds on (on its
    worker thread) and sends what it returns; meanwhile the connection reads no further
    request. A client that hangs up meanwhile does not stop it (the answer is made, and
    dropped), as with a real server; if the server closes first, ``cancel()`` is called
    instead."""

    delay: float
    answer: Callable[[], Response]
    cancel: Callable[[], None]


#: Turns a request into a response (or a :class:`Deferred` one): on the server's event
#: loop, or on its worker thread for the requests the server's *offload* predicate picks
#: (see :class:`.http11.HTTPServer`).
Handler = Callable[[Request], "Response | Deferred"]


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


class ServerSide(Protocol):
    """What a connection (:mod:`.http_connection`) uses of its server (:mod:`.http11`)."""

    handler: Handler
    limits: Limits
    offload: Callable[[Request], bool] | None
    stats: ServerStats
    date: str
    overflow: int
    connections: set[Any]
    refusing: set[Any]

    @property
    def listening(self) -> bool: ...

    def run_off_loop(self, function: Callable[..., Any], *args: Any) -> Any: ...

    def track(self, reply: Coroutine[Any, Any, None]) -> None: ...

    async def wait(self, later: Deferred) -> None: ...
