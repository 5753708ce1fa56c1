"""No request stalls the collector's event loop: while a 10 MiB batch is judged, a full
store is listed or a pathological filter runs, ``/health`` still answers at once. List
answers are streamed (chunked) and page with offset/limit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from snowplow_threaded.collector import Collector

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
#: /health answers within 100 ms while heavy work runs (issue 20): the loop only hands it
#: to the worker thread. On this shared 2-core machine a probe is sometimes late for other
#: reasons (another process scheduled, a full garbage collection: 30-80 ms with 300 000
#: events held), so 9 probes in 10 must be on time and none may wait half a second; a
#: stalled loop (as before) made every probe during the work wait seconds.
HEALTH_WITHIN = 0.1


def assert_responsive(latencies: list[float]) -> None:
    late = sorted(latencies)[-5:]
    assert max(latencies) < 0.5, late
    assert sum(t < HEALTH_WITHIN for t in latencies) >= 0.9 * len(latencies), late


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector(max_events=200_000) as c:
        yield c


PROBE = """
import http.client, json, select, sys, time
latencies = []
while not select.select([sys.stdin], [], [], 0)[0] or len(latencies) < 3:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
    connection.request("GET", "/health")
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200, response.status
    latencies.append(time.monotonic() - started)
    time.sleep(0.02)
print(json.dumps(latencies))
"""


def while_probing(collector: Collector, action: Callable[[], Any]) -> tuple[Any, list[float]]:
    """Run *action*, probing ``/health`` meanwhile from another process (so that neither
    this process's threads nor its work weigh on the probe); its result and the latencies
    of the probes."""
    probe = subprocess.Popen([sys.executable, "-c", PROBE, str(collector.port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # the probe is running
        result = action()
    finally:
        output, _ = probe.communicate("stop\n", timeout=120)
    assert probe.returncode == 0
    return result, json.loads(output)


def payload(events: list[dict[str, str]]) -> bytes:
    return json.dumps({"schema": PAYLOAD, "data": events}, separators=(",", ":")).encode()


def post(collector: Collector, body: bytes) -> int:
    response = requests.post(collector.endpoint + TP2, data=body, timeout=120,
                             headers={"Content-Type": "application/json"})
    return response.status_code


def context(schema: str = WEB_PAGE) -> str:
    return json.dumps({"schema": CONTEXTS, "data": [{"schema": schema,
                                                     "data": {"id": str(uuid.uuid4())}}]})


# The collector runs in this process: the tests' own heavy work (building a body, parsing
# an answer) would hold the interpreter too, so it is done outside the probed windows.


def test_a_10_mib_batch_does_not_stall_the_loop(collector: Collector) -> None:
    collector.reset()
    body = payload([{"e": "pv", "p": "web", "tv": "t"}] * 300_000)  # 9 MB of tiny events
    status, latencies = while_probing(collector, lambda: post(collector, body))
    assert status == 200 and collector.summary().received_good == 300_000
    assert_responsive(latencies)  # before: 2 s and more


def test_listing_a_full_store_is_streamed_without_stalling(collector: Collector) -> None:
    collector.reset()
    for _ in range(10):
        assert post(collector, payload([{"e": "pv", "p": "web", "tv": "t", "co": context(),
                                         "eid": str(uuid.uuid4())} for _ in range(2_000)]))

    def listing() -> tuple[dict[str, str], bytes]:
        response = requests.get(collector.endpoint + "/micro/good", timeout=120)
        return dict(response.headers), response.content

    (headers, content), latencies = while_probing(collector, listing)
    assert len(json.loads(content)) == 20_000
    assert headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in headers
    assert_responsive(latencies)  # before: seconds


def test_a_long_contexts_filter_costs_nothing_per_repeat(collector: Collector) -> None:
    collector.reset()
    assert post(collector, payload([{"e": "pv", "p": "web", "tv": "t", "co": context()}
                                    for _ in range(2_000)])) == 200
    filters = json.dumps({"contexts": [WEB_PAGE] * 100_000})  # before: 2e8 comparisons

    def filtering() -> bytes:
        return requests.post(collector.endpoint + "/micro/good", data=filters,
                             timeout=300).content

    content, latencies = while_probing(collector, filtering)
    assert len(json.loads(content)) == 2_000
    assert_responsive(latencies)


def test_list_answers_page(collector: Collector) -> None:
    collector.reset()
    eids = [str(uuid.uuid4()) for _ in range(10)]
    assert post(collector, payload([{"e": "pv", "p": "web", "tv": "t", "eid": eid}
                                    for eid in eids])) == 200
    newest_first = eids[::-1]

    def ids(route: str, body: Any = None) -> list[str]:
        url = collector.endpoint + route
        response = (requests.get(url, timeout=10) if body is None
                    else requests.post(url, json=body, timeout=10))
        assert response.status_code == 200, response.text
        return [item["event"]["event_id"] if "rawEvent" in item else item["event_id"]
                for item in response.json()]

    assert ids("/micro/good?offset=2&limit=3") == newest_first[2:5]
    assert ids("/micro/good?limit=4") == newest_first[:4]
    assert ids("/micro/good?offset=8") == newest_first[8:]
    assert ids("/micro/events?offset=1&limit=2") == newest_first[1:3]
    assert ids("/micro/good", {"offset": 3, "limit": 2}) == newest_first[3:5]
    assert ids("/micro/good?offset=20") == []
    for query in ("limit=-1", "offset=x", "limit=" + "9" * 20):
        assert requests.get(f"{collector.endpoint}/micro/good?{query}",
                            timeout=10).status_code == 400
