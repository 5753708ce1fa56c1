"""Values passed between the HTTP layer (:mod:`.http11`) and the collector's handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["CUTS", "Deferred", "Handler", "Limits", "Request", "Response", "ServerStats"]


@dataclass(frozen=True)
class Limits:
    """Resource limits of the HTTP server.

    * ``max_body_bytes``: larger request bodies get ``413`` (before they are read, when
      ``Content-Length`` announces them).
    * ``max_header_bytes`` / ``max_headers``: a larger request head, or more header lines,
      get ``431``.
    * ``read_timeout``: a request in progress that sends nothing for this long gets ``408``;
      ``request_timeout``: so does one not complete this long after its first byte.
    * ``keepalive_timeout``: an idle kept-alive connection is closed after this long.
    * ``max_connections``: connections beyond this are answered ``503`` and closed.
    * ``linger_seconds``: after an error reply, how long the rest of the request is read and
      discarded before the connection is dropped.
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
    cut: str | None = None


#: The ways a :class:`Response` can be cut (see :attr:`Response.cut`).
CUTS = ("reset", "reset-mid-response", "close-after-head")


@dataclass(frozen=True, slots=True)
class Deferred:
    """A reply given later: the server calls ``answer()`` *delay* seconds on (on its loop)
    and sends what it returns; meanwhile the connection reads no further request. A client
    that hangs up meanwhile does not stop it (the answer is made, and dropped), as with a
    real server; if the server closes first, ``cancel()`` is called instead."""

    delay: float
    answer: Callable[[], Response]
    cancel: Callable[[], None]


#: Turns a request into a response, on the server's event loop (must not block).
Handler = Callable[[Request], "Response | Deferred"]


@dataclass
class ServerStats:
    """Counters of one server (written by its loop thread; read elsewhere without a lock,
    so approximate while it runs). ``errors``: replies by status, for statuses >= 400."""

    connections: int = 0
    open_connections: int = 0
    requests: int = 0
    buffered_bytes: int = 0
    errors: dict[int, int] = field(default_factory=dict)
