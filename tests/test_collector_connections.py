"""Connections the collector must bound: replies to pipelined requests a client does not
read, sockets that never send a byte, more connections than descriptors, clients over the
cap, and slow readers of a reply that closes the connection."""

from __future__ import annotations

import contextlib
import json
import re
import resource
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import requests

from snowplow_threaded.collector import Collector, Limits
from tests.test_micro_http import closed_by_server, read_response

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def fill(collector: Collector, count: int) -> None:
    events = [{"e": "pv", "p": "web", "tv": "t", "eid": str(uuid.uuid4()), "url": "http://x/"}
              for _ in range(count)]
    response = requests.post(collector.endpoint + TP2, json={"schema": PAYLOAD,
                                                             "data": events}, timeout=30)
    assert response.status_code == 200
    assert collector.wait_for(count, timeout=10, kind="good")


def settled(value: Callable[[], int], quiet: float = 1.0, deadline: float = 20.0) -> int:
    """Poll *value()* until it has not changed for *quiet* seconds; its value then."""
    last, since, end = value(), time.monotonic(), time.monotonic() + deadline
    while time.monotonic() < end:
        time.sleep(0.05)
        now = value()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def test_pipelined_replies_wait_for_the_client_to_read() -> None:
    with Collector() as collector:
        fill(collector, 200)  # each /micro/good answer: about 0.8 MB
        count = 100
        with socket.create_connection(("127.0.0.1", collector.port), timeout=30) as sock, \
                sock.makefile("rb") as stream:
            sock.sendall(b"GET /micro/good HTTP/1.1\r\nHost: localhost\r\n\r\n" * count)
            handled = settled(lambda: int(collector.stats()["requests"]))
            # the client reads nothing: a few answers fill the socket buffers, then the
            # server waits (before: all 100 answers, 80 MB, were built and held)
            assert handled - 1 < count // 2, handled
            for _ in range(count):
                status, _, body = read_chunked(stream)
                assert status == 200 and len(json.loads(body)) == 200
        assert collector.stats()["requests"] == count + 1


def read_chunked(stream: object) -> tuple[int, dict[str, str], bytes]:
    """A response with a Content-Length or chunked body (read_response reads only the
    first kind)."""
    status_line = stream.readline()  # type: ignore[attr-defined]
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = stream.readline()  # type: ignore[attr-defined]
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") != "chunked":
        return status, headers, stream.read(int(headers.get("content-length", "0")))  # type: ignore[attr-defined]
    body = bytearray()
    while True:
        size = int(stream.readline().split(b";")[0], 16)  # type: ignore[attr-defined]
        body += stream.read(size)  # type: ignore[attr-defined]
        stream.readline()  # type: ignore[attr-defined]
        if size == 0:
            return status, headers, bytes(body)


def test_a_connection_that_never_sends_is_closed_after_the_read_timeout() -> None:
    with Collector(limits=Limits(read_timeout=0.5, keepalive_timeout=60)) as collector, \
            socket.create_connection(("127.0.0.1", collector.port), timeout=10) as sock:
        started = time.monotonic()
        assert closed_by_server(sock, within=15)  # before: held for the keep-alive 60 s
        assert time.monotonic() - started < 10


def test_over_the_cap_a_client_sending_a_body_reads_its_503() -> None:
    with Collector(limits=Limits(max_connections=2)) as collector:
        held = [socket.create_connection(("127.0.0.1", collector.port)) for _ in range(2)]
        try:
            deadline = time.monotonic() + 5
            while collector.stats()["open_connections"] < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            body = b"x" * 300_000
            with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as extra:
                extra.sendall(f"POST {TP2} HTTP/1.1\r\nHost: x\r\nContent-Length: "
                              f"{len(body)}\r\n\r\n".encode() + body)
                with extra.makefile("rb") as stream:
                    status, headers, text = read_response(stream)
            assert (status, headers["connection"]) == (503, "close")
            assert text == b"too many open connections\n"
        finally:
            for sock in held:
                sock.close()


def test_connection_close_does_not_cut_a_slow_reader() -> None:
    with Collector(limits=Limits(linger_seconds=0.3)) as collector:
        fill(collector, 2_000)  # about 7 MB: more than the socket buffers take
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # the reply waits
            sock.connect(("127.0.0.1", collector.port))  # with the server, not the kernel
            sock.sendall(b"GET /micro/good HTTP/1.0\r\nHost: localhost\r\n\r\n")
            received = bytearray()
            started = time.monotonic()
            sock.settimeout(30)
            while chunk := sock.recv(16384):
                received += chunk
                if time.monotonic() - started < 2:
                    time.sleep(0.02)  # a slow reader for 2 s: well past linger_seconds
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
        assert len(json.loads(body)) == 2_000  # all of it (before: cut 0.3 s after writing)


FLOOD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
from snowplow_threaded.__main__ import main
sys.exit(main(["collector", "--port", "0"]))
"""


def test_the_connection_cap_fits_the_descriptor_limit() -> None:
    """Under ``ulimit -n 256`` (the default cap is 1024): connections past the fitted cap
    get a 503 rather than no answer, and asyncio logs no traceback per failed accept()."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024 <= hard:  # this process opens 400 connections
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    proc = subprocess.Popen([sys.executable, "-c", FLOOD], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(re.search(r":(\d+) ", proc.stdout.readline()).group(1))  # type: ignore[union-attr]
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(400)]
        for sock in socks:
            with contextlib.suppress(OSError):  # refused ones may be closed already
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answers: dict[str, int] = {}
        deadline = time.monotonic() + 30
        for sock in socks:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                key = sock.recv(100)[:12].decode("latin-1") or "closed"
            except ConnectionResetError:  # refused once the lingering ones are too many
                key = "reset"
            except TimeoutError:  # before: the connections past the descriptor limit
                key = "no answer"
            answers[key] = answers.get(key, 0) + 1
        for sock in socks:
            sock.close()
        assert "no answer" not in answers and "closed" not in answers, answers
        assert answers.get("HTTP/1.1 503", 0) >= 100, answers
        assert answers.get("HTTP/1.1 200", 0) >= 100, answers
        with socket.create_connection(("127.0.0.1", port), timeout=10) as again:
            again.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert again.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "Traceback" not in err, err[:2000]
