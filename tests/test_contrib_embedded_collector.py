"""The integrations' events through the embedded collector (``snowplow_threaded.collector``),
which validates every event against its Iglu schemas: with the shipped schemas written out
under a custom vendor (``write_schemas``, the collector's ``schemas=`` / ``--schemas DIR``)
the Flask request events, page views and Celery task events are all good; without them, or
with data the schema forbids, they are bad (so the check is real)."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from snowplow_threaded import Emitter, SelfDescribing, SelfDescribingJson, Tracker
from snowplow_threaded import collector as embedded
from snowplow_threaded.contrib import schemas
from snowplow_threaded.contrib.celery import instrument
from snowplow_threaded.contrib.flask import SnowplowFlask
from snowplow_threaded.contrib.web import request_event

VENDOR = "com.acme.embedded"


def _generate(endpoint: str) -> int:
    """Send Flask request events and a page view, and Celery task events; return how many."""
    from celery import Celery

    for mode, path in (("request", "/items/1"), ("page_view", "/items/2")):
        app = Flask(f"embedded-{mode}")
        app.config.update(SNOWPLOW_ENDPOINT=endpoint, SNOWPLOW_REQUEST_EVENTS=mode,
                          SNOWPLOW_SCHEMA_VENDOR=VENDOR, SNOWPLOW_EMITTER={"batch_size": 1})
        SnowplowFlask(app)
        app.add_url_rule("/items/<int:n>", "item", lambda n: str(n))
        app.add_url_rule("/boom", "boom", lambda: 1 / 0)
        client = app.test_client()
        client.get(path, headers={"User-Agent": "UA"})
        client.get("/boom")
        assert app.extensions["snowplow"].close(5)
    celery = Celery("embedded")
    tracker = Tracker("celery", Emitter(endpoint, batch_size=1))

    @celery.task(name="embedded.ok")
    def ok() -> int:
        return 1

    @celery.task(name="embedded.bad")
    def bad() -> None:
        raise ValueError("x")

    instrumentation = instrument(celery, tracker=tracker, vendor=VENDOR)
    try:
        ok.apply()
        bad.apply()
    finally:
        instrumentation.disconnect()
    assert tracker.close(5)
    return 2 + 1 + 4  # request 200 + 500, one page view (the 500 is none), 2 x 2 task events


def test_events_are_good_with_the_written_schemas(tmp_path: Path) -> None:
    schemas.write_schemas(tmp_path, vendor=VENDOR)
    with embedded.Collector(schemas=[tmp_path]) as collector:
        count = _generate(collector.endpoint)
        assert collector.wait_for(count, timeout=10)
        bad = collector.bad()
        assert not bad, [b.errors for b in bad]
        good = collector.good()
    assert sorted(str(e.schema) for e in good if e.event_type == "unstruct") == sorted(
        schemas.schema_uri(name, VENDOR) for name in
        ["request", "request", "task_started", "task_succeeded", "task_started", "task_failed"])
    assert sum(e.event_type == "page_view" for e in good) == 1


def test_events_are_bad_without_the_schemas_or_with_invalid_data(tmp_path: Path) -> None:
    with embedded.Collector() as collector:  # no --schemas: the vendor is unknown
        count = _generate(collector.endpoint)
        assert collector.wait_for(count, timeout=10)
        assert len(collector.bad()) == count - 1  # the page view needs no schema
    schemas.write_schemas(tmp_path, vendor=VENDOR)
    with embedded.Collector(schemas=[tmp_path]) as collector:
        tracker = Tracker("t", Emitter(collector.endpoint, batch_size=1))
        tracker.track(request_event("GET", "/", 200, 1.0, vendor=VENDOR))
        uri = schemas.schema_uri("request", VENDOR)
        tracker.track(SelfDescribing(SelfDescribingJson(
            uri, {"method": "GET", "path": "/", "status": 999, "duration_ms": 1})))
        assert tracker.close(5)
        assert collector.wait_for(2, timeout=10)
        assert len(collector.good()) == 1 and len(collector.bad()) == 1
