"""Throughput of the embedded collector on loopback: requests/s and events/s.

    python -m stress.collector_bench            # all scenarios, 5 s each
    python -m stress.collector_bench --seconds 2 --scenario se-batch10
    python -m stress.collector_bench --server threaded   # the same, on ThreadingHTTPServer

The collector runs in its own process (``python -m snowplow_threaded collector``), as it
would for a test suite; load comes from client processes, each with threads holding one
kept-alive ``http.client`` connection apiece, sending tracker-protocol requests built by the
real :class:`snowplow_threaded.Tracker` (distinct event ids and context entities, so the
collector's decode cache does not flatter it). Every scenario checks that the collector kept
exactly the events sent, all good. Figures depend on the machine: clients and server share
its cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from snowplow_threaded import (
    PageView,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Subject,
    Tracker,
)
from snowplow_threaded.events import Event
from snowplow_threaded.transport import PAYLOAD_DATA_SCHEMA
from stress.crew import Crew

POST_PATH = "/com.snowplowanalytics.snowplow/tp2"
HEADERS = {"Content-Type": "application/json; charset=utf-8"}


class _NullEmitter:
    def input(self, payload: dict[str, Any]) -> None:  # pragma: no cover - never tracked
        pass


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "se", "sdj" (self-describing + 2 contexts), "get"
    batch: int
    processes: int
    threads: int


SCENARIOS = [
    Scenario("se-batch1", "se", 1, 2, 4),
    Scenario("se-batch10", "se", 10, 2, 4),
    Scenario("se-batch100", "se", 100, 2, 2),
    Scenario("sdj2ctx-batch10", "sdj", 10, 2, 4),
    Scenario("get-pixel", "get", 1, 2, 4),
    Scenario("se-batch10-200conns", "se", 10, 4, 50),
]


def _event(kind: str, n: int) -> Event:
    page = SelfDescribingJson("iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
                              {"id": str(uuid.uuid4())})
    if kind == "sdj":
        session = SelfDescribingJson(
            "iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/1-0-2",
            {"userId": str(uuid.uuid4()), "sessionId": str(uuid.uuid4()), "sessionIndex": n,
             "storageMechanism": "COOKIE_1"})
        click = SelfDescribingJson(
            "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1",
            {"targetUrl": f"https://example.com/{n}", "elementClasses": ["a", "b"]})
        return SelfDescribing(click, context=[page, session])
    if kind == "get":
        return PageView(f"https://example.com/page/{n}", "a page", context=[page])
    return StructuredEvent("bench", "click", label=f"l{n}", value=n, context=[page])


def _bodies(kind: str, batch: int, count: int) -> list[tuple[int, bytes | str]]:
    """*count* requests of *batch* events each: (events, POST body or GET query)."""
    tracker = Tracker("bench", _NullEmitter(), subject=Subject().set_platform("srv"),
                      app_id="bench")
    out: list[tuple[int, bytes | str]] = []
    for i in range(count):
        records = []
        for j in range(batch):
            record = tracker.complete_payload(_event(kind, i * batch + j)).nv_pairs
            record["stm"] = str(time.time_ns() // 1_000_000)
            records.append(record)
        if kind == "get":
            out.append((1, urlencode(records[0])))
        else:
            body = json.dumps({"schema": PAYLOAD_DATA_SCHEMA, "data": records},
                              separators=(",", ":"))
            out.append((batch, body.encode()))
    return out


def _client(endpoint: str, scenario: Scenario, seconds: float, start_at: float,
            results: Any) -> None:
    host, port = urlsplit(endpoint).hostname, urlsplit(endpoint).port
    # more distinct events than the collector's decode cache holds: no flattering hits
    pool = _bodies(scenario.kind, scenario.batch, max(64, 6000 // scenario.batch))
    counts = {"requests": 0, "events": 0, "errors": 0}
    lock = threading.Lock()

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection(host or "127.0.0.1", port, timeout=30)
        sent = events = errors = 0
        time.sleep(max(0.0, start_at - time.time()))  # every client starts together
        deadline = start_at + seconds
        i = offset
        while time.time() < deadline:
            n, payload = pool[i % len(pool)]
            i += 1
            try:
                if isinstance(payload, str):
                    conn.request("GET", "/i?" + payload)
                else:
                    conn.request("POST", POST_PATH, body=payload, headers=HEADERS)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
            sent += 1
            if ok:
                events += n
            else:
                errors += 1
        conn.close()
        with lock:
            counts["requests"] += sent
            counts["events"] += events
            counts["errors"] += errors

    # a client thread that raises fails this process at once, with its error (see Crew)
    Crew(lambda k: worker(k * 7), scenario.threads, name="client", timeout=seconds + 120).run()
    results.put(counts)


def _api(endpoint: str, path: str) -> Any:
    split = urlsplit(endpoint)
    conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=60)
    conn.request("GET", path)
    text = conn.getresponse().read()
    conn.close()
    return json.loads(text) if path != "/micro/reset" else text  # Micro: "Reset completed"


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process *pid* (Linux /proc), or None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _gather(procs: list[Any], results: Any, deadline: float) -> list[dict[str, int]]:
    """One count dict from each client process, and the processes joined. A client that
    exits without sending one (its error is on stderr) fails the run within half a
    second; none of this waits past *deadline* (monotonic)."""
    out: list[dict[str, int]] = []
    while len(out) < len(procs):
        try:
            out.append(results.get(timeout=0.5))
            continue
        except queue.Empty:
            pass
        failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
        if failed:
            raise RuntimeError(f"a client process failed (exit code {failed[0]})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(procs) - len(out)} client process(es) sent no counts")
    for p in procs:  # each has sent its counts and is leaving
        p.join(max(1.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            raise TimeoutError(f"client process {p.pid} did not exit")
    return out


def run_scenario(endpoint: str, scenario: Scenario, seconds: float,
                 server_pid: int) -> dict[str, Any]:
    _api(endpoint, "/micro/reset")
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    start_at = time.time() + 3.0  # time for the clients to build their requests
    procs = [ctx.Process(target=_client, args=(endpoint, scenario, seconds, start_at, results))
             for _ in range(scenario.processes)]
    for p in procs:
        p.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu_before = _cpu_seconds(server_pid)
    totals = {"requests": 0, "events": 0, "errors": 0}
    for counts in _gather(procs, results, time.monotonic() + seconds + 120):
        for key, value in counts.items():
            totals[key] += value
    cpu_after = _cpu_seconds(server_pid)
    held = _api(endpoint, "/micro/all")
    cpu = (cpu_after - cpu_before) if cpu_after is not None and cpu_before is not None else None
    return {"scenario": scenario.name, "connections": scenario.processes * scenario.threads,
            "batch": scenario.batch, "requests_per_s": totals["requests"] / seconds,
            "events_per_s": totals["events"] / seconds, "errors": totals["errors"],
            "kept_good": held["good"], "kept_bad": held["bad"],
            "exact": held["good"] == totals["events"] and held["bad"] == 0,
            "cpu_us_per_event": cpu * 1e6 / totals["events"] if cpu and totals["events"] else None}


def serve_threaded() -> None:
    """The same collector (routes, validation, store) behind the standard library's
    ``ThreadingHTTPServer`` (a thread per connection) instead of its asyncio server: the
    comparison behind the choice of asyncio. Prints its endpoint, serves until killed."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from snowplow_threaded.collector import Collector
    from snowplow_threaded.collector.http_types import Request

    collector = Collector(max_events=2_000_000, max_bytes=8192 * 1024 * 1024)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_one(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            headers = {k.lower(): v for k, v in self.headers.items()}
            request = Request(self.command, path, query, self.request_version, headers,
                              tuple(f"{k}: {v}" for k, v in self.headers.items()), body,
                              self.client_address[0])
            response = collector._route(request)
            self.send_response(response.status)
            self.send_header("Content-Length", str(len(response.body)))
            if response.content_type:
                self.send_header("Content-Type", response.content_type)
            self.end_headers()
            self.wfile.write(response.body)

        do_GET = do_POST = handle_one

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    sys.stdout.write(f"collector listening on http://127.0.0.1:{server.server_port}\n")
    sys.stdout.flush()
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--scenario", action="append", choices=[s.name for s in SCENARIOS])
    parser.add_argument("--server", choices=["asyncio", "threaded"], default="asyncio",
                        help="the collector's own asyncio server (default), or the same "
                             "collector behind http.server's ThreadingHTTPServer")
    parser.add_argument("--serve-threaded", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_threaded:
        serve_threaded()
        return 0
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    command = ([sys.executable, "-m", "snowplow_threaded", "collector", "--port", "0",
                "--quiet", "--max-events", "2000000", "--max-memory-mb", "8192"]
               if args.server == "asyncio"
               else [sys.executable, "-m", "stress.collector_bench", "--serve-threaded"])
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        endpoint = line.split("listening on ")[1].split()[0]
        rows = [run_scenario(endpoint, s, args.seconds, server.pid) for s in chosen]
    finally:
        server.terminate()
        server.wait(10)
    sys.stdout.write("| scenario | connections | events/request | requests/s | events/s | "
                     "server CPU per event | kept exactly, all good |\n"
                     "| --- | --- | --- | --- | --- | --- | --- |\n")
    for r in rows:
        cpu = r["cpu_us_per_event"]
        sys.stdout.write(f"| {r['scenario']} | {r['connections']} | {r['batch']} | "
                         f"{r['requests_per_s']:,.0f} | {r['events_per_s']:,.0f} | "
                         f"{f'{cpu:.0f} us' if cpu else 'n/a'} | "
                         f"{'yes' if r['exact'] else 'NO'} |\n")
    return 0 if all(r["exact"] and not r["errors"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
