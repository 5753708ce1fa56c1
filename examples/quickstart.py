"""Quick start: track events from several threads to a collector on this machine.

Runs a minimal stdlib HTTP collector on 127.0.0.1 (the embedded Snowplow-Micro-like
collector comes with ``python -m snowplow_threaded collector``), tracks 4 x 2 500 events
from 4 threads, flushes, and checks that every event arrived exactly once.
Exit status 0 only if so.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from snowplow_threaded import EmitterConfiguration, SelfDescribingJson, Snowplow, StructuredEvent

received: list[str] = []
lock = threading.Lock()


class Collector(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        events = json.loads(body)["data"]
        with lock:
            received.extend(e["eid"] for e in events)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}"

    tracker = Snowplow.create_tracker(
        namespace="quickstart",
        endpoint=endpoint,
        app_id="demo",
        emitter_config=EmitterConfiguration(batch_size=10),
    )
    context = SelfDescribingJson("iglu:com.acme/thread/jsonschema/1-0-0", {"n": 0})
    sent: list[str] = []

    def work(n: int) -> None:
        ids = [tracker.track(StructuredEvent("demo", "click", value=i, context=[context]))
               for i in range(2_500)]
        with lock:
            sent.extend(ids)

    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tracked = time.perf_counter() - start
    flushed = tracker.flush(timeout=30)
    elapsed = time.perf_counter() - start
    stats = tracker.stats()
    server.shutdown()
    unique = len(set(received))
    sys.stdout.write(
        f"tracked {len(sent)} events in {tracked:.2f}s, flushed={flushed}, "
        f"delivered {len(received)} ({unique} unique) in {elapsed:.2f}s; "
        f"{stats.requests} requests, dropped {stats.dropped_total}\n"
    )
    ok = flushed and len(received) == unique == len(sent) and set(received) == set(sent)
    sys.stdout.write("OK: every event arrived exactly once\n" if ok else "FAILED\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
