"""A fast loopback collector ("sink") for the benchmark, run in its own process.

Standard library only: an ``asyncio`` HTTP/1.1 server on 127.0.0.1 with keep-alive and a
hand-written request parser (``http.server`` costs ~100 µs per request in header parsing;
this costs a few µs), so the sink is never what limits a tracker under test. Every tracker
request is answered ``200`` with an empty body.

Routes:

* ``POST .../com.snowplowanalytics.snowplow/tp2`` — ``json.loads`` the body, count its
  events and remember their ``eid`` s.
* ``GET .../i?...`` — one event (the ``eid`` query field).
* ``POST /_reset?expect=N`` — forget everything; note when the N-th event arrives.
* ``GET /_wait?timeout=S[&expect=M]`` — block until the expected count (revised to *M*,
  e.g. when the tracker dropped events) is reached (or *S* seconds),
  then answer JSON: ``events``, ``unique``, ``requests``, ``bad``, ``done_ns`` (the
  ``time.monotonic_ns()`` at which the N-th event was counted: the clock is system-wide
  on Linux, so a tracker process can subtract its own start time), ``last_ns`` (when the
  last request was counted, for runs where not every event arrives), ``sink_cpu_s``.
* ``GET /_stats`` — the same JSON, immediately.
* ``POST /_fault?every=N&status=S&delay=D`` — from now on, every *N*-th tracker request is
  answered *S* (its events not counted) and every answer comes *D* seconds late (the
  connection's later answers wait behind it, as in HTTP/1.1); without parameters, healthy
  again. For ``stress.degraded``.

Run: ``python -m stress.sink [--port 0]``; the first line printed is ``PORT <n>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Fault:
    """What ``/_fault`` set: every *every*-th tracker request answered *status*; every
    answer *delay* seconds late."""

    def __init__(self, every: int = 0, status: int = 503, delay: float = 0.0) -> None:
        self.every, self.status, self.delay = every, status, delay
        self.seen = 0
        self.refused = 0

    def refuses(self) -> bool:
        """Count one tracker request; True if it is refused."""
        self.seen += 1
        if self.every and self.seen % self.every == 0:
            self.refused += 1
            return True
        return False


FAULT = Fault()


class SinkState:
    """Counters of one benchmark run (the sink is single-threaded: no lock)."""

    def __init__(self) -> None:
        self.reset(0)

    def reset(self, expect: int) -> None:
        self.events = 0
        self.requests = 0
        self.bad = 0
        self.eids: set[str] = set()
        self.expect = expect
        self.done_ns: int | None = None
        self.timeline: list[tuple[int, int]] = []  # (events so far, monotonic ns) per request
        self.cpu_start = time.process_time()
        self.done = asyncio.Event()
        if expect <= 0:
            self.done.set()

    def count(self, eids: list[str]) -> None:
        self.requests += 1
        self.events += len(eids)
        self.eids.update(eids)
        now = time.monotonic_ns()
        self.timeline.append((self.events, now))
        if self.done_ns is None and self.expect and self.events >= self.expect:
            self.done_ns = now
            self.done.set()

    def revise(self, expect: int) -> None:
        """Expect *expect* events instead (e.g. the tracker dropped some); if they are here
        already, ``done_ns`` is when the *expect*-th arrived."""
        self.expect = expect
        self.done_ns = next((ns for count, ns in self.timeline if count >= expect), None)
        if self.done_ns is not None or expect <= 0:
            self.done.set()
        else:
            self.done.clear()

    def report(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "unique": len(self.eids),
            "requests": self.requests,
            "bad": self.bad,
            "expect": self.expect,
            "done_ns": self.done_ns,
            "last_ns": self.timeline[-1][1] if self.timeline else None,
            "sink_cpu_s": time.process_time() - self.cpu_start,
            "refused": FAULT.refused,
        }


STATE: SinkState
_TASKS: set[asyncio.Future[None]] = set()  # pending /_wait replies (kept referenced)


class SinkProtocol(asyncio.Protocol):
    """One keep-alive connection: parse pipelined HTTP/1.1 requests from a byte buffer."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            length = 0
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                key = name.strip().lower()
                if key == "content-length":
                    length = int(value.strip())
                elif key == "connection" and value.strip().lower() == "close":
                    close = True
            total = end + 4 + length
            if len(self.buf) < total:
                return
            body = bytes(self.buf[end + 4:total])
            del self.buf[:total]
            self.handle(lines[0], body, close)

    def handle(self, request_line: str, body: bytes, close: bool) -> None:
        global FAULT
        parts = request_line.split(" ")
        method, target = parts[0], parts[1] if len(parts) > 1 else "/"
        url = urlsplit(target)
        if url.path == "/_reset":
            expect = int(parse_qs(url.query).get("expect", ["0"])[0])
            STATE.reset(expect)
            self.reply(json.dumps(STATE.report()).encode(), close)
        elif url.path == "/_fault":
            query = parse_qs(url.query)
            FAULT = Fault(int(query.get("every", ["0"])[0]),
                          int(query.get("status", ["503"])[0]),
                          float(query.get("delay", ["0"])[0]))
            self.reply(b"{}", close)
        elif url.path == "/_stats":
            self.reply(json.dumps(STATE.report()).encode(), close)
        elif url.path == "/_wait":
            query = parse_qs(url.query)
            timeout = float(query.get("timeout", ["60"])[0])
            if "expect" in query:
                STATE.revise(int(query["expect"][0]))
            task = asyncio.ensure_future(self.wait_and_reply(timeout, close))
            _TASKS.add(task)
            task.add_done_callback(_TASKS.discard)
        elif FAULT.refuses():
            answer = f"HTTP/1.1 {FAULT.status} Refused\r\nContent-Length: 0\r\n".encode()
            self.answer(answer + (b"Connection: close\r\n\r\n" if close else b"\r\n"), close)
        elif method == "POST":
            try:
                data = json.loads(body)["data"]
                eids = [event["eid"] for event in data]
            except (ValueError, KeyError, TypeError):
                STATE.bad += 1
            else:
                STATE.count(eids)
            self.answer(_OK_CLOSE if close else _OK, close)
        else:  # GET /i?...
            eid = parse_qs(url.query).get("eid", [""])[0]
            STATE.count([eid])
            self.answer(_OK_CLOSE if close else _OK, close)

    def answer(self, data: bytes, close: bool) -> None:
        """A tracker request's answer, *delay* seconds late if ``/_fault`` says so (the
        answers of a connection keep their order: each waits as long)."""
        if FAULT.delay:
            asyncio.get_running_loop().call_later(FAULT.delay, self.send, data, close)
        else:
            self.send(data, close)

    async def wait_and_reply(self, timeout: float, close: bool) -> None:
        state = STATE
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(state.done.wait(), timeout)
        self.reply(json.dumps(state.report()).encode(), close)

    def reply(self, body: bytes, close: bool) -> None:
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n")
        if close:
            head += "Connection: close\r\n"
        self.send(head.encode() + b"\r\n" + body, close)

    def send(self, data: bytes, close: bool) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            if close:
                self.transport.close()


async def serve(port: int) -> None:
    global STATE
    STATE = SinkState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SinkProtocol, "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="loopback Snowplow sink for benchmarks")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(0)


if __name__ == "__main__":
    main()
