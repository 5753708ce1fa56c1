"""Snowplow Micro's REST API on the embedded collector: every route, its JSON shape and its
filters; plus /health, CORS, the simulated outage and the bounded store."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest
import requests

from snowplow_threaded import Emitter, SelfDescribing, SelfDescribingJson, StructuredEvent
from snowplow_threaded import Tracker as SnowplowTracker
from snowplow_threaded.collector import Collector
from tests.helpers import eventually
from tests.helpers import micro_api as api

SP = "iglu:com.snowplowanalytics.snowplow/"
TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD = SP + "payload_data/jsonschema/1-0-4"
LINK = SP + "link_click/jsonschema/1-0-1"
CART = SP + "add_to_cart/jsonschema/1-0-0"
WEB_PAGE = SP + "web_page/jsonschema/1-0-0"
PAGE = SelfDescribingJson(WEB_PAGE, {"id": str(uuid.uuid4())})


@pytest.fixture
def collector(micro_collector: Collector) -> Collector:
    """Every test here runs against the embedded collector (see conftest)."""
    return micro_collector



def track_mix(collector: Collector) -> list[str]:
    """Track 3 structured events, 2 link clicks (one with a context), 1 add_to_cart and
    2 bad events, in that order; returns the eids."""
    emitter = Emitter(collector.endpoint, batch_size=1)
    tracker = SnowplowTracker("api", emitter, app_id="api-test")
    eids = [tracker.track(StructuredEvent("c", f"a{i}")) for i in range(3)]
    eids.append(tracker.track(SelfDescribing(SelfDescribingJson(LINK, {"targetUrl": "x"}))))
    eids.append(tracker.track(SelfDescribing(SelfDescribingJson(LINK, {"targetUrl": "y"}),
                                             context=[PAGE])))
    eids.append(tracker.track(SelfDescribing(SelfDescribingJson(CART, {"sku": "s",
                                                                       "quantity": 1}))))
    eids.append(tracker.track(SelfDescribing(SelfDescribingJson(LINK, {}))))
    eids.append(tracker.track(StructuredEvent("c", "a", context=[
        SelfDescribingJson("iglu:com.acme/unknown/jsonschema/1-0-0", {})])))
    assert emitter.flush(10)
    emitter.close(5)
    assert collector.wait_for(8, timeout=10)
    return eids


def test_all_counts_what_is_held(collector: Collector) -> None:
    assert api(collector, "all") == {"total": 0, "good": 0, "bad": 0}
    track_mix(collector)
    assert api(collector, "all") == {"total": 8, "good": 6, "bad": 2}
    assert api(collector, "all", body={}) == {"total": 8, "good": 6, "bad": 2}


def test_good_lists_most_recent_first_in_micro_shape(collector: Collector) -> None:
    eids = track_mix(collector)
    good = api(collector, "good")
    assert [g["rawEvent"]["parameters"]["eid"] for g in good] == eids[5::-1]
    first = good[-1]
    assert set(first) == {"rawEvent", "eventType", "schema", "contexts", "event", "incomplete"}
    raw = first["rawEvent"]
    assert raw["api"] == {"vendor": "com.snowplowanalytics.snowplow", "version": "tp2"}
    assert raw["contentType"].startswith("application/json")
    assert raw["source"]["name"] == "snowplow-threaded-collector"
    assert raw["context"]["ipAddress"] == "127.0.0.1"
    assert raw["context"]["useragent"].startswith("snowplow-threaded/")
    assert any(h.lower().startswith("content-type:") for h in raw["context"]["headers"])
    assert (first["eventType"], first["schema"], first["contexts"]) == (
        "struct", "iglu:com.google.analytics/event/jsonschema/1-0-0", [])
    assert first["incomplete"] is False and first["event"]["contexts"] == {}
    assert first["event"]["se_action"] == "a0" and first["event"]["event_id"] == eids[0]
    with_context = good[1]
    assert with_context["schema"] == LINK and with_context["contexts"] == [WEB_PAGE]
    assert with_context["event"]["unstruct_event"]["data"] == {"schema": LINK,
                                                               "data": {"targetUrl": "y"}}


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, [5, 4, 3, 2, 1, 0]),
    ({"event_type": "struct"}, [2, 1, 0]),
    ({"event_type": "unstruct"}, [5, 4, 3]),
    ({"event_type": "se"}, []),
    ({"schema": LINK}, [4, 3]),
    ({"schema": CART, "event_type": "unstruct"}, [5]),
    ({"contexts": [WEB_PAGE]}, [4]),
    ({"contexts": [WEB_PAGE, SP + "client_session/jsonschema/1-0-2"]}, []),
    ({"limit": 2}, [5, 4]),
    ({"event_type": "struct", "limit": 1}, [2]),
    ({"limit": 0}, []),
    ({"limit": -1}, []),
    ({"schema": None, "unknown_key": 1}, [5, 4, 3, 2, 1, 0]),
])
def test_good_filters(collector: Collector, filters: dict[str, Any],
                      expected: list[int]) -> None:
    eids = track_mix(collector)
    good = api(collector, "good", body=filters)
    assert [g["rawEvent"]["parameters"]["eid"] for g in good] == [eids[i] for i in expected]


def test_bad_lists_errors_and_raw_events(collector: Collector) -> None:
    eids = track_mix(collector)
    bad = api(collector, "bad")
    assert [b["rawEvent"]["parameters"]["eid"] for b in bad] == [eids[7], eids[6]]
    assert set(bad[0]) == {"collectorPayload", "rawEvent", "errors"}
    assert bad[0]["errors"][0] == "Error while validating the event."
    [message] = json.loads(bad[0]["errors"][1])["data"]["failure"]["messages"]
    assert message["schemaKey"] == "iglu:com.acme/unknown/jsonschema/1-0-0"
    assert message["error"]["error"] == "ResolutionError"
    assert collector.bad()[1].errors == ("cx: context 0: unknown schema iglu:com.acme/"
                                         "unknown/jsonschema/1-0-0 (neither bundled nor in "
                                         "a schema directory: none given)",)
    assert "required property 'targetUrl' is missing" in bad[1]["errors"][1]
    payload = bad[0]["collectorPayload"]
    assert payload["api"]["version"] == "tp2"
    assert eids[7] in [e["eid"] for e in json.loads(payload["body"])["data"]]
    assert api(collector, "bad", body={"limit": 1}) == bad[:1]
    assert api(collector, "bad", body={"version": "tp2"}) == bad
    assert api(collector, "bad", body={"version": "tp1"}) == []
    assert api(collector, "bad", body={"vendor": "com.snowplowanalytics.snowplow"}) == bad


def test_reset_forgets_everything(collector: Collector) -> None:
    track_mix(collector)
    reset = requests.get(collector.endpoint + "/micro/reset", timeout=10)
    assert (reset.status_code, reset.text) == (200, "Reset completed")  # as Micro answers
    assert api(collector, "good") == [] and api(collector, "bad") == []
    assert api(collector, "all") == {"total": 0, "good": 0, "bad": 0}
    track_mix(collector)
    reset = requests.post(collector.endpoint + "/micro/reset", json={}, timeout=10)
    assert (reset.status_code, reset.text) == (200, "Reset completed")
    assert collector.summary().received_good == 0


def test_events_lists_canonical_events(collector: Collector) -> None:
    eids = track_mix(collector)
    events = api(collector, "events")
    assert [e["event_id"] for e in events] == eids[5::-1]
    assert events[0]["event"] == "unstruct" and events[-1]["event"] == "struct"


def test_iglu_serves_known_schemas(collector: Collector) -> None:
    schema = api(collector, "iglu/com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1")
    assert schema["self"]["name"] == "link_click"
    missing = requests.get(collector.endpoint + "/micro/iglu/com.acme/x/jsonschema/1-0-0",
                           timeout=10)
    assert missing.status_code == 404 and "unknown schema" in missing.text


@pytest.mark.parametrize(("method", "route", "body"), [
    ("GET", "/micro/nothing", None), ("GET", "/micro", None), ("DELETE", "/micro/good", None),
    ("PUT", "/micro/events", None), ("GET", "/micro/good/extra", None),
    ("GET", "/elsewhere", None), ("DELETE", TP2, None), ("POST", "/i", b"x"),
])
def test_unknown_routes(collector: Collector, method: str, route: str,
                        body: bytes | None) -> None:
    response = requests.request(method, collector.endpoint + route, data=body, timeout=10)
    assert response.status_code in (404, 405)
    if route.startswith("/micro"):
        assert "supported: /micro/all" in response.text


@pytest.mark.parametrize(("body", "reason"), [
    (b"{nope", "the filters are not valid JSON"), (b"[]", "must be a JSON object"),
    (b"", "got an empty body"), (b'{"limit": 1.5}', "limit must be an integer"),
    (b'{"limit": "2"}', "limit must be an integer"),
    (b'{"contexts": "x"}', "contexts must be a list of strings"),
    (b'{"event_type": 3}', "event_type must be a string"),
])
def test_bad_filters_get_400(collector: Collector, body: bytes, reason: str) -> None:
    response = requests.post(collector.endpoint + "/micro/good", data=body, timeout=10)
    assert response.status_code == 400 and reason in response.text


def test_health(collector: Collector) -> None:
    ok = requests.get(collector.endpoint + "/health", timeout=10)
    assert (ok.status_code, ok.text) == (200, "ok")
    collector.pause()
    assert requests.get(collector.endpoint + "/health", timeout=10).status_code == 503


def test_cors(collector: Collector) -> None:
    origin = "https://shop.example"
    preflight = requests.options(collector.endpoint + TP2, timeout=10,
                                 headers={"Origin": origin,
                                          "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    body = {"schema": PAYLOAD, "data": [{"e": "pv", "tv": "js", "p": "web"}]}
    response = requests.post(collector.endpoint + TP2, json=body, timeout=10,
                             headers={"Origin": origin})
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert response.headers["Access-Control-Allow-Credentials"] == "true"


def test_pause_answers_503_keeps_nothing_and_the_api_still_works(collector: Collector) -> None:
    collector.pause(503, retry_after=2)
    body = {"schema": PAYLOAD, "data": [{"e": "pv", "tv": "js", "p": "web"}]}
    refused = requests.post(collector.endpoint + TP2, json=body, timeout=10)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"
    assert requests.get(collector.endpoint + "/i?e=pv&tv=t&p=web", timeout=10).status_code == 503
    assert api(collector, "all") == {"total": 0, "good": 0, "bad": 0}
    assert collector.stats()["refused_while_paused"] >= 2
    collector.resume()
    assert requests.post(collector.endpoint + TP2, json=body, timeout=10).status_code == 200
    assert api(collector, "all")["good"] == 1
    with pytest.raises(ValueError):
        collector.pause(200)


def test_a_tracker_rides_out_a_pause(collector: Collector) -> None:
    collector.pause(503)
    emitter = Emitter(collector.endpoint, batch_size=10, max_retry_delay_seconds=0.2)
    tracker = SnowplowTracker("outage", emitter)
    eids = [tracker.track(StructuredEvent("c", "a", value=i)) for i in range(50)]
    assert eventually(lambda: emitter.stats().retried > 0)  # refused, and retried
    assert collector.summary().received_good == 0
    collector.resume()
    assert emitter.flush(10)
    emitter.close(5)
    assert sorted(g.parameters["eid"] for g in collector.good()) == sorted(eids)


def test_the_store_is_bounded_and_counts_evictions() -> None:
    with Collector(max_events=5) as collector:
        body = {"schema": PAYLOAD, "data": [{"e": "pv", "tv": "t", "p": "web",
                                             "eid": str(uuid.uuid4())} for _ in range(8)]}
        assert requests.post(collector.endpoint + TP2, json=body, timeout=10).ok
        bad = {"schema": PAYLOAD, "data": [{"e": "xx", "tv": "t", "p": "web"}] * 7}
        assert requests.post(collector.endpoint + TP2, json=bad, timeout=10).ok
        summary = collector.summary()
        assert (summary.good, summary.received_good, summary.evicted_good) == (5, 8, 3)
        assert (summary.bad, summary.received_bad, summary.evicted_bad) == (5, 7, 2)
        kept = [g.parameters["eid"] for g in collector.good()]
        assert kept == [e["eid"] for e in body["data"][3:]]  # the oldest went first
        assert api(collector, "all") == {"total": 10, "good": 5, "bad": 5}


def test_the_store_is_bounded_in_bytes_too() -> None:
    with Collector(max_bytes=20_000) as collector:
        big = "x" * 4000
        for i in range(10):
            body = {"schema": PAYLOAD, "data": [{"e": "se", "se_ca": "c", "se_ac": "a",
                                                 "se_la": big, "tv": str(i), "p": "web"}]}
            assert requests.post(collector.endpoint + TP2, json=body, timeout=10).ok
        summary = collector.summary()
        assert summary.received_good == 10 and 3 <= summary.good <= 5
        assert summary.evicted_good == 10 - summary.good
        assert collector.good()[-1].parameters["tv"] == "9"  # the newest are kept
        bad = {"schema": PAYLOAD, "data": [{"e": "zz", "tv": "t", "p": "web",
                                            "se_la": "y" * 30_000}]}
        assert requests.post(collector.endpoint + TP2, json=bad, timeout=10).ok
        assert collector.summary().bad == 1  # one event over the budget is still kept


def test_unknown_schemas_are_remembered_within_bounds(collector: Collector) -> None:
    events = [{"e": "ue", "tv": "t", "p": "web", "ue_pr": json.dumps({
        "schema": SP + "unstruct_event/jsonschema/1-0-0",
        "data": {"schema": f"iglu:com.acme/e{i}/jsonschema/1-0-0", "data": {}}})}
        for i in range(3000)]
    body = {"schema": PAYLOAD, "data": events}
    assert requests.post(collector.endpoint + TP2, json=body, timeout=30).ok
    assert collector.summary().received_bad == 3000
    assert len(collector.resolver._cache) <= 1100


def test_wait_for_blocks_until_events_arrive(collector: Collector) -> None:
    assert collector.wait_for(1, timeout=0.2) is False
    body = {"schema": PAYLOAD, "data": [{"e": "pv", "tv": "t", "p": "web"}]}
    timer = threading.Timer(0.3, lambda: requests.post(collector.endpoint + TP2, json=body,
                                                       timeout=10))
    timer.start()
    assert collector.wait_for(1, timeout=10, kind="good")
    timer.join(10)
    assert not timer.is_alive()
    assert collector.wait_for(1, timeout=0.1, kind="bad") is False
    with pytest.raises(ValueError):
        collector.wait_for(1, kind="other")  # type: ignore[arg-type]


def test_python_api_mirrors_the_rest_api(collector: Collector) -> None:
    eids = track_mix(collector)
    assert [g.parameters["eid"] for g in collector.good()] == eids[:6]  # oldest first
    assert [g.to_micro() for g in collector.good()[::-1]] == json.loads(json.dumps(
        api(collector, "good")))
    assert [b.to_micro() for b in collector.bad()[::-1]] == api(collector, "bad")
    assert collector.events()[0]["event_id"] == eids[0]
    assert collector.good()[4].context_entities == [PAGE.to_json()]
    collector.reset()
    assert collector.good() == [] and collector.bad() == []


def test_lifecycle() -> None:
    collector = Collector()
    assert collector.port == 0 and not collector.running
    collector.start()
    try:
        assert collector.running and collector.port > 0
        assert collector.endpoint == f"http://127.0.0.1:{collector.port}"
        with pytest.raises(RuntimeError):
            collector.start()
        taken = Collector(port=collector.port)
        with pytest.raises(OSError):
            taken.start()
    finally:
        collector.stop()
    collector.stop()  # idempotent
    assert not collector.running
    with pytest.raises(requests.ConnectionError):
        requests.get(collector.endpoint + "/health", timeout=2)
