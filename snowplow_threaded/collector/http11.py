"""A small HTTP/1.1 server on asyncio (standard library only), hardened for a collector.

:class:`HTTPServer` listens and owns the connections (:mod:`.http_connection`, one asyncio
protocol each, parsing with :mod:`.http_reader` and :mod:`.http_parse`): keep-alive and
pipelining, ``Content-Length`` and ``chunked`` bodies, ``Expect: 100-continue``, strict
framing. Cheap requests are handled on the event loop; those the *offload* predicate
picks, and every streamed reply body (:attr:`.Response.stream`), run on one worker thread,
so heavy work (a 10 MiB batch, a list of every event held) never stalls the loop: the loop
only moves bytes.

Limits (:class:`.Limits`) keep memory bounded whatever clients send: the request head
(``431``), the number of header lines (``431``), the body (``413``, sent before the body is
read when ``Content-Length`` announces it), the request bytes held over all connections,
those being handled included (``503``), and the connections (``503`` beyond the cap, which
is lowered to fit the descriptor limit; up to ``OVERFLOW`` of those linger to deliver it,
the rest are closed at once). A request that stalls (no byte for ``read_timeout``, or not
complete within ``request_timeout``) gets ``408``; a connection that sends nothing for
``read_timeout`` after connecting, or takes nothing of a reply for that long, is closed;
an idle keep-alive connection after ``keepalive_timeout``. A connection handles one request
at a time and stops reading while its client does not take the replies, so neither
pipelined requests nor their replies pile up in memory. After a reply that closes the
connection has been sent, the rest of the request is read and discarded for
``linger_seconds`` so the client reads the reply rather than a reset. All of it runs on the
loop's thread; nothing here is thread-safe on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .http_connection import OVERFLOW, Connection
from .http_types import Deferred, Handler, Limits, Request, ServerStats

__all__ = ["HTTPServer", "connection_cap"]

logger = logging.getLogger("snowplow_threaded.collector.http")


def connection_cap(wanted: int) -> tuple[int, int]:
    """The connections to serve and, over that, to refuse with a 503 that lingers:
    *wanted* and ``OVERFLOW``, lowered so that both and a reserve (an eighth of the limit,
    at least 16) for the rest of the process fit under ``RLIMIT_NOFILE``. Past it,
    ``accept()`` fails and no client gets an answer."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # pragma: no cover - not on POSIX
        return wanted, OVERFLOW
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return wanted, OVERFLOW
    overflow = min(OVERFLOW, soft // 8)
    return max(1, min(wanted, soft - max(16, soft // 8) - overflow)), overflow


class HTTPServer:
    """Serves *handler* on one asyncio loop; requests for which *offload* is true are
    handled on the worker thread. Create, ``await start()``, ``await close()``, all on the
    loop's thread."""

    def __init__(self, handler: Handler, limits: Limits,
                 offload: Callable[[Request], bool] | None = None) -> None:
        self.handler = handler
        self.limits = limits
        self.offload = offload
        self.stats = ServerStats(max_connections=limits.max_connections)
        self.connections: set[Connection] = set()
        self.refusing: set[Connection] = set()  # over the cap, delivering their 503
        self.overflow = OVERFLOW  # most of those
        self.date = email.utils.formatdate(usegmt=True)
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._pool: ThreadPoolExecutor | None = None
        #: answers scheduled for later (:class:`.Deferred`), cancelled if the server closes
        self.deferred: dict[asyncio.TimerHandle, Deferred] = {}
        self.waiting: dict[asyncio.TimerHandle, asyncio.Future[None]] = {}
        self.tasks: set[asyncio.Task[None]] = set()  # replies under way (see track())
        self._last_sweep = 0.0
        #: how often timeouts are enforced: often enough for the shortest of them
        self.sweep_interval = max(0.05, min(1.0, limits.read_timeout / 2,
                                            limits.keepalive_timeout / 2,
                                            limits.linger_seconds / 2))

    async def start(self, host: str, port: int) -> int:
        """Listen on *host*:*port* (0: any free port); returns the port. Raises ``OSError``."""
        loop = asyncio.get_running_loop()
        self.stats.max_connections, self.overflow = connection_cap(self.limits.max_connections)
        loop.set_exception_handler(_quiet_socket_errors)
        port = await self.listen(host, port)
        self._last_sweep = time.monotonic()
        self._sweeper = loop.call_later(self.sweep_interval, self._sweep)
        return port

    async def listen(self, host: str, port: int) -> int:
        """Listen (again, after :meth:`stop_listening`); returns the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(self), host, port,
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
        for conn in list(self.connections | self.refusing):
            conn.abort()
        for handle, later in list(self.deferred.items()):
            handle.cancel()
            later.cancel()
            self.waiting[handle].cancel()
        self.deferred.clear()
        # an aborted transport closes its socket on the next turn of the loop: take those
        # turns now, in case the loop stops next
        for _ in range(10):
            await asyncio.sleep(0)
            if not self.connections and not self.refusing:
                break
        await asyncio.sleep(0)
        if server is not None:
            await server.wait_closed()

    async def close(self) -> None:
        """Stop listening, drop every connection and stop the worker thread (a request it
        is judging is finished, its answer dropped)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.stop_listening()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=1)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def track(self, reply: Coroutine[Any, Any, None]) -> None:
        """Run *reply* (a connection's) as a task, cancelled if the server closes."""
        task = asyncio.get_running_loop().create_task(reply)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a reply failed: %r", task.exception())

    async def wait(self, later: Deferred) -> None:
        """Sleep *later*'s delay; ``CancelledError`` (and ``later.cancel()``) if the server
        stops listening meanwhile."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(later.delay, _settle, done)
        self.deferred[handle] = later
        self.waiting[handle] = done
        try:
            await done
        finally:
            self.deferred.pop(handle, None)
            self.waiting.pop(handle, None)

    def run_off_loop(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """``function(*args)`` on the worker thread (started on first use)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="snowplow-collector-work")
        return asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    def _sweep(self) -> None:
        """Every ``sweep_interval``: refresh the Date header, enforce the timeouts, note
        how late the loop was. The next sweep is planned first and a connection that fails
        its check is dropped alone: the timeouts (the defence against idle and slow
        clients) never stop for the whole server."""
        self._sweeper = asyncio.get_running_loop().call_later(self.sweep_interval, self._sweep)
        now = time.monotonic()
        lag = now - self._last_sweep - self.sweep_interval
        self.stats.loop_lag_max = max(self.stats.loop_lag_max, lag)
        self._last_sweep = now
        self.date = email.utils.formatdate(usegmt=True)
        for conn in list(self.connections | self.refusing):
            try:
                conn.check_timeouts(now)
            except Exception as exc:  # a bug, or a socket error closing it: drop it alone
                _log_limited("a connection failed its timeout check, dropped", exc)
                with contextlib.suppress(Exception):
                    conn.abort()


#: when _log_limited last logged; touched only on the event loop's thread
_last_warning = [0.0]


def _quiet_socket_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's socket errors as one warning a minute without a traceback: out of
    descriptors, ``accept()`` fails on every try (thousands of tracebacks a second)."""
    exc = context.get("exception")
    callback = getattr(context.get("handle"), "_callback", None)
    if isinstance(exc, ValueError) and getattr(callback, "__name__", "") == "_start_serving":
        # after accept() ran out of descriptors asyncio retries it on a timer that closing
        # the server does not cancel; once closed, the retry finds no socket: nothing to do
        logger.debug("a retry of accept() after the server closed: %s", exc)
        return
    if not isinstance(exc, OSError):
        loop.default_exception_handler(context)
        return
    _log_limited(str(context.get("message", "socket error")), exc)


def _log_limited(message: str, exc: BaseException) -> None:
    """*message* and *exc* as a warning, at most one a minute (of all such messages)."""
    now = time.monotonic()
    if now - _last_warning[0] >= 60:
        _last_warning[0] = now
        logger.warning("%s: %r (such errors are not logged again for a minute)", message, exc)


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
