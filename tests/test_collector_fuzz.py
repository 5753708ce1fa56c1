"""A bounded, seeded fuzz run against the embedded collector (issue 20): malformed HTTP,
hostile payloads and odd Micro API requests, one after another. After every input: the
server is alive, ``/health`` answers within 100 ms, a valid event is still accepted (and
listed by the Micro API), and the process's memory stays within the bound docs/collector.md
gives for its limits; at the end, nothing was logged as a traceback.

The collector runs in its own process (``python -m snowplow_threaded collector``, small
limits), so that its memory is measured alone and its log is its own. ``FUZZ_SEED`` and
``FUZZ_INPUTS`` in the environment change the run (the defaults take a few seconds).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SEED = int(os.environ.get("FUZZ_SEED", "20"))
INPUTS = int(os.environ.get("FUZZ_INPUTS", "500"))
TP2 = "/com.snowplowanalytics.snowplow/tp2"
SP = "iglu:com.snowplowanalytics.snowplow/"
PAYLOAD = SP + "payload_data/jsonschema/1-0-4"
MAX_MEMORY_MB = 4
MAX_BODY = 256 * 1024
HEALTH_WITHIN = 0.1


def memory_bound_mb(baseline_mb: float) -> float:
    """The bound of docs/collector.md ("Memory") for these limits: the good events, the bad
    events and the request record (one ``--max-memory-mb`` each), a request being judged
    (up to 25 times its body), the caches (8 MB of decoded values, 1 024 schema URIs)
    and the compiled schemas in use, over what the process took once started."""
    return baseline_mb + 3 * MAX_MEMORY_MB + 25 * MAX_BODY / 2**20 + 8 + 16


class Server:
    def __init__(self, tmp: Path) -> None:
        self.log = (tmp / "collector.log").open("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "snowplow_threaded", "collector", "--port", "0",
             "--max-memory-mb", str(MAX_MEMORY_MB), "--max-events", "2000",
             "--max-body-bytes", str(MAX_BODY), "--read-timeout", "1"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found, line
        self.port = int(found.group(1))

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        assert found
        return int(found.group(1)) / 1024

    def log_text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.proc.poll() is None:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    started = Server(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def exchange(port: int, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send *raw*, end our side, and read what comes back until the server closes."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may refuse it early
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + timeout
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
    return bytes(received)


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, data, time.monotonic() - started
    finally:
        connection.close()


# -- inputs --------------------------------------------------------------------------------
def good_event(rng: random.Random) -> dict[str, str]:
    return {"e": "pv", "p": "web", "tv": "fuzz", "eid": str(uuid.UUID(int=rng.getrandbits(128)))}


TEXTS = ["", "a", "\u00e9", "\U0001f600", "\\ud800", "\x00", "\n\r", "%00", "..", "../..",
         "iglu:../x/jsonschema/1-0-0", "1e400", "NaN", "-1", "9" * 400, "x" * 5000,
         "\u2028", "\x1b[31m", "{}", "[]", "null", '"', "\\", "/etc/passwd", "%2e%2e"]


def hostile_value(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth > 3 or roll < 0.45:
        return rng.choice([*TEXTS, rng.randint(-10**20, 10**20), rng.random(), True, None])
    if roll < 0.7:
        return [hostile_value(rng, depth + 1) for _ in range(rng.randint(0, 6))]
    return {rng.choice([*TEXTS, "schema", "data", "e", "id"]): hostile_value(rng, depth + 1)
            for _ in range(rng.randint(0, 5))}


def self_describing(rng: random.Random) -> str:
    schema = rng.choice([SP + "web_page/jsonschema/1-0-0", SP + "link_click/jsonschema/1-0-1",
                         "iglu:com.acme/x/jsonschema/1-0-0", "iglu:../x/jsonschema/1-0-0",
                         "iglu:" + "v" * 300 + "/x/jsonschema/1-0-0", "not a uri",
                         SP + "web_page/jsonschema/" + "9" * 50 + "-0-0"])
    entity = {"schema": schema, "data": hostile_value(rng)}
    if rng.random() < 0.3:
        entity = {"schema": schema, "data": {"id": str(uuid.uuid4())}}
    return json.dumps({"schema": SP + "contexts/jsonschema/1-0-1", "data": [entity]})


def payload_input(rng: random.Random) -> bytes:
    events: list[object] = []
    for _ in range(rng.randint(1, 30)):
        event: dict[str, object] = dict(good_event(rng))
        for _ in range(rng.randint(0, 4)):
            key = rng.choice(["se_va", "tr_tt", "ti_pr", "co", "cx", "ue_pr", "ue_px", "res",
                              "dtm", "eid", "e", "p", "tv", "url", "page",
                              *TEXTS[:8]])
            if key in ("co", "ue_pr"):
                event[key] = self_describing(rng)
            elif key in ("cx", "ue_px"):
                event[key] = base64.urlsafe_b64encode(self_describing(rng).encode()).decode()
            elif key in ("se_va", "tr_tt", "ti_pr") and rng.random() < 0.5:
                event[key] = "1" * rng.randint(1, 20_000) + rng.choice(["", "x", ".5", "e999"])
            else:
                event[key] = hostile_value(rng)
        events.append(event if rng.random() > 0.05 else hostile_value(rng))
    text = json.dumps({"schema": PAYLOAD, "data": events})
    if rng.random() < 0.3:  # JSON that the json module writes but no parser should take
        text = text.replace('"1e400"', "1e400").replace('"NaN"', "NaN")
    if rng.random() < 0.3:  # lone surrogates, in values and keys, as JSON escapes
        text = text.replace('"fuzz"', '"\\ud800"', 1).replace('"\\\\ud800"', '"\\udfff"')
    if rng.random() < 0.2:
        cut = rng.randrange(len(text))
        text = text[:cut] + rng.choice(["", "\\ud800", "]", ",", "\x00"]) + text[cut:]
    body = text.encode("utf-8", "surrogatepass")[:MAX_BODY]
    return (f"POST {TP2} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def get_input(rng: random.Random) -> bytes:
    names = ["e", "p", "tv", "se_va", "co", "page", "url", "%0A", "%FF"]
    values = ["pv", "web", "t", "1e999", "%ED%A0%80", "%C3%A9", "caf\xe9", ".."]
    pairs = [f"{rng.choice(names)}={rng.choice(values)}" for _ in range(rng.randint(0, 8))]
    target = "/i?" + "&".join(pairs)
    return (f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").encode("latin-1")


def micro_input(rng: random.Random) -> bytes:
    route = rng.choice([
        "/micro/good", "/micro/bad", "/micro/events", "/micro/all", "/micro/reset",
        "/micro/iglu/com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
        "/micro/iglu/../outside/jsonschema/1-0-0", "/micro/iglu/%2e%2e/x/jsonschema/1-0-0",
        "/micro/iglu/" + "v" * 300 + "/x/jsonschema/1-0-0", "/micro/iglu/a/b", "/micro/x",
        "/micro/good?limit=" + rng.choice(["1", "-1", "x", "9" * 30]) + "&offset=2",
        "/micro/iglu/com.acme/x/jsonschema/" + "9" * 5000 + "-0-0",
    ])
    if route == "/micro/reset" and rng.random() < 0.8:
        route = "/micro/all"  # keep the events the checks look for, mostly
    method = rng.choice(["GET", "GET", "POST", "HEAD", "DELETE", "OPTIONS"])
    body = b""
    if method == "POST":
        body = json.dumps(rng.choice([
            {}, {"limit": rng.randint(-5, 5)}, {"contexts": ["x"] * rng.randint(0, 1000)},
            {"event_type": hostile_value(rng)}, hostile_value(rng), [1, 2],
        ])).encode()[:MAX_BODY]
    host = rng.choice(["localhost", "127.0.0.1", "[::1]", "evil.example", "", "a" * 300])
    extra = rng.choice(["", "Origin: http://evil.example\r\n", "Sec-Fetch-Site: cross-site\r\n",
                        "Origin: null\r\n"])
    return (f"{method} {route} HTTP/1.1\r\nHost: {host}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def http_input(rng: random.Random) -> bytes:
    """A valid request, then broken at random: bytes flipped or inserted, framing
    changed, pipelined, cut."""
    raw = bytearray(rng.choice([payload_input, get_input, micro_input])(rng))
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        at = rng.randrange(len(raw) + 1)
        if roll < 0.3:
            raw[at:at] = rng.choice([b"\r", b"\n", b"\x00", b"\x0b", b" ", b"\r\n", b":",
                                     b"\xa0", b"\r\n\r\n", b"%", b"\xff"])
        elif roll < 0.45 and raw:
            raw[min(at, len(raw) - 1)] = rng.randrange(256)
        elif roll < 0.6:
            raw = raw[:at]
        elif roll < 0.7:
            head_end = raw.find(b"\r\n")
            if head_end > 0:
                raw[head_end:head_end] = rng.choice([
                    b"\r\nTransfer-Encoding: chunked", b"\r\nTransfer-Encoding: \x0bchunked",
                    b"\r\nContent-Length: 99999999999", b"\r\nContent-Length: 5",
                    b"\r\nHost: two", b"\r\nExpect: 100-continue", b"\r\nConnection: close",
                    b"\r\nX-" + b"h" * 70_000 + b": 1"])
        elif roll < 0.8:
            raw += bytes(http_input(rng)) if rng.random() < 0.3 else bytes(raw)  # pipelined
        else:
            size = rng.choice([b"5", b" 5", b"5 ", b"fffffffffffffff", b"-1", b"0x5", b"5;e"])
            raw += size + b"\r\nhello\r\n0\r\n\r\n"
    return bytes(raw)


KINDS: list[Callable[[random.Random], bytes]] = [http_input, payload_input, get_input,
                                                 micro_input]


# -- the run -------------------------------------------------------------------------------
def check_still_fine(server: Server, rng: random.Random, index: int) -> None:
    assert server.proc.poll() is None, f"the collector died at input {index}"
    status, _, took = request(server.port, "GET", "/health")
    if took >= HEALTH_WITHIN:  # late once: the machine is shared; a stalled server is
        status, _, took = request(server.port, "GET", "/health")  # late twice running
    assert status == 200 and took < HEALTH_WITHIN, (index, status, took)
    eid = str(uuid.UUID(int=rng.getrandbits(128)))
    status, _, _ = request(server.port, "GET", f"/i?e=pv&p=web&tv=fuzz&eid={eid}")
    assert status == 200, index
    status, body, _ = request(server.port, "GET", "/micro/events?limit=1")
    assert status == 200, (index, body[:200])
    newest = strict_json(body)[0]  # most recent first
    assert newest["event_id"] == eid, (index, "the valid event was not kept")
    for route in ("/micro/good?limit=3", "/micro/bad?limit=3"):
        status, body, _ = request(server.port, "GET", route)
        assert status == 200, (index, route, body[:200])
        strict_json(body)


def strict_json(body: bytes) -> object:
    """JSON as every parser but Python's reads it: no NaN or Infinity, UTF-8."""
    def refuse(name: str) -> object:
        raise AssertionError(f"{name} in an answer")
    return json.loads(body.decode("utf-8"), parse_constant=refuse)


def test_fuzz(server: Server) -> None:
    rng = random.Random(SEED)
    check_still_fine(server, rng, -1)
    baseline = server.rss_mb()
    bound = memory_bound_mb(baseline)
    peak = baseline
    started = time.monotonic()
    answers: dict[str, int] = {}
    for index in range(INPUTS):
        sent = time.monotonic()
        reply = exchange(server.port, rng.choice(KINDS)(rng))
        assert time.monotonic() - sent < 2, (index, "an input took seconds")  # no freeze
        status = reply[9:12].decode("latin-1") if reply.startswith(b"HTTP/1.1 ") else "none"
        answers[status] = answers.get(status, 0) + 1
        check_still_fine(server, rng, index)
        peak = max(peak, server.rss_mb())
        assert peak <= bound, (index, peak, bound)
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 500:][:3000]
    assert time.monotonic() - started < 120  # bounded: seconds, not minutes
    assert "500" not in answers, answers
    print(f"fuzz: {INPUTS} inputs (seed {SEED}) in {time.monotonic() - started:.1f} s, "
          f"first answers {dict(sorted(answers.items()))}; RSS {baseline:.0f} MB at start, "
          f"{peak:.0f} MB at most (bound {bound:.0f} MB)")
