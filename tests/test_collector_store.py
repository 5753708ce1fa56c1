"""The collector's event log (collector/store.py): its name, its memory estimate and its
bounds."""

from __future__ import annotations

import json
import time
import tracemalloc
import uuid

import requests

import snowplow_threaded
import snowplow_threaded.collector as collector_package
from snowplow_threaded.collector import (
    Collector,
    EventChecker,
    EventLog,
    GoodEvent,
    RequestInfo,
    Resolver,
)

CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"


def test_the_collectors_store_is_not_named_like_the_event_store_protocol() -> None:
    assert hasattr(snowplow_threaded, "EventStore")  # the tracker's store protocol
    assert not hasattr(collector_package, "EventStore")
    assert "EventLog" in collector_package.__all__ and EventLog.__module__.endswith(".event_log")


def test_the_memory_bound_counts_headers_and_query_strings() -> None:
    """Before, a request's headers and query string were not counted: 1 500 GET /i with a
    60 KB header added 83 MB under a 1 MB bound."""
    limit = 1024 * 1024
    with Collector(max_bytes=limit) as collector, requests.Session() as session:
        header = {"X-Padding": "p" * 60_000}
        for i in range(60):
            response = session.get(f"{collector.endpoint}/i?e=pv&p=web&tv=t&url=" + "q" * 3000
                                   + f"&eid={uuid.UUID(int=i)}", headers=header, timeout=10)
            assert response.ok
        assert collector.wait_for(60, timeout=10)
        good_bytes, _ = collector.store.held_bytes()
        assert good_bytes <= limit
        summary = collector.summary()
        assert summary.evicted_good > 0 and summary.good < 20  # about 64 KB each


def test_the_estimate_is_close_to_the_memory_taken() -> None:
    """The store's estimate, against what tracemalloc sees the events take."""
    log = EventLog(max_events=100_000, max_bytes=1 << 40)
    checker = EventChecker(Resolver())
    request = RequestInfo("tp2", "POST", "/com.snowplowanalytics.snowplow/tp2", "",
                          "application/json", "127.0.0.1", "ua/1.0", None, "localhost",
                          tuple(f"X-Header-{i}: {'v' * 40}" for i in range(12)), time.time())
    def page() -> str:
        entity = {"schema": WEB_PAGE, "data": {"id": str(uuid.uuid4())}}
        return json.dumps({"schema": CONTEXTS, "data": [entity]})

    events = [{"e": "se", "p": "web", "tv": "py-1.0", "eid": str(uuid.uuid4()),
               "se_ca": "shop", "se_ac": "buy" * (1 + i % 7), "dtm": str(1700000000000 + i),
               "co": page()} for i in range(2_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for start in range(0, len(events), 100):
            good = []
            for raw in events[start:start + 100]:
                verdict = checker.check(json.loads(json.dumps(raw)))
                assert not verdict.errors, verdict.errors
                assert verdict.parameters is not None
                good.append(GoodEvent(verdict.parameters, "struct", None, verdict.contexts,
                                      request))
            log.add(good)
            del good, verdict
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    estimated, _ = log.held_bytes()
    assert 0.7 * taken <= estimated <= 2 * taken, (estimated, taken)
