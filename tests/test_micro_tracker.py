"""The real snowplow_threaded Tracker against the embedded collector: every event type the
tracker can send arrives good (POST and GET, base64 on and off), with the fields Snowplow
Micro shows; events with unknown schemas or invalid data arrive bad, with the reason."""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from snowplow_threaded import (
    Emitter,
    PagePing,
    PageView,
    ScreenView,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Subject,
    Tracker,
)
from snowplow_threaded.collector import Collector

SP = "iglu:com.snowplowanalytics.snowplow/"
WEB_PAGE = SP + "web_page/jsonschema/1-0-0"
PAGE_CONTEXT = SelfDescribingJson(WEB_PAGE, {"id": "5cea9899-10df-4ccf-bf66-8c36f4a4bba2"})
SESSION = SelfDescribingJson(SP + "client_session/jsonschema/1-0-2", {
    "userId": str(uuid.uuid4()), "sessionId": str(uuid.uuid4()), "sessionIndex": 1,
    "storageMechanism": "SQLITE", "firstEventTimestamp": "2024-05-01T10:00:00.000Z"})


@pytest.fixture
def collector(micro_collector: Collector) -> Collector:
    """Every test here runs against the embedded collector (see conftest)."""
    return micro_collector


@pytest.fixture(params=[("post", True), ("post", False), ("get", True), ("get", False)],
                ids=["post-base64", "post-plain", "get-base64", "get-plain"])
def tracker(request: pytest.FixtureRequest, collector: Collector) -> Iterator[Tracker]:
    method, base64 = request.param
    emitter = Emitter(collector.endpoint + "/some/prefix", method=method, batch_size=5,
                      flush_interval=0.05)
    subject = Subject().set_platform("srv").set_user_id("u1").set_lang("en")
    yield Tracker(f"ns-{uuid.uuid4()}", emitter, subject=subject, app_id="app",
                  encode_base64=base64)
    emitter.close(5)


Ctx = list[SelfDescribingJson] | None
#: name -> (track it with context entities, its e, its schema)
EVENTS: dict[str, tuple[Callable[[Tracker, Ctx], Any], str, str | None]] = {
    "structured": (lambda t, c: t.track(StructuredEvent("shop", "buy", "label", "prop", 2.5,
                                                        context=c)), "se", None),
    "self-describing": (lambda t, c: t.track(SelfDescribing(SelfDescribingJson(
        SP + "link_click/jsonschema/1-0-1", {"targetUrl": "https://e.com", "elementId": "x"}),
        context=c)), "ue", SP + "link_click/jsonschema/1-0-1"),
    "page view": (lambda t, c: t.track(PageView("https://e.com/p?q=1#f", "Title",
                                                "https://ref.e.com", context=c)), "pv", None),
    "page ping": (lambda t, c: t.track(PagePing("https://e.com/p", "T", None, 0, 10, 5, 50,
                                                context=c)), "pp", None),
    "screen view": (lambda t, c: t.track(ScreenView(str(uuid.uuid4()), "home", "feed",
                                                    previous_name="login", context=c)),
                    "ue", "iglu:com.snowplowanalytics.mobile/screen_view/jsonschema/1-0-0"),
    "legacy link click": (lambda t, c: t.track_link_click("https://e.com", "id", ["a", "b"],
                                                          "_blank", "text", context=c),
                          "ue", SP + "link_click/jsonschema/1-0-1"),
    "legacy add to cart": (lambda t, c: t.track_add_to_cart("sku", 2, "n", "c", 9.99, "EUR",
                                                            context=c),
                           "ue", SP + "add_to_cart/jsonschema/1-0-0"),
    "legacy remove from cart": (lambda t, c: t.track_remove_from_cart("sku", 1, context=c),
                                "ue", SP + "remove_from_cart/jsonschema/1-0-0"),
    "legacy form change": (lambda t, c: t.track_form_change("f", "e", "INPUT", "v", "text",
                                                            ["c"], context=c),
                           "ue", SP + "change_form/jsonschema/1-0-0"),
    "legacy form submit": (lambda t, c: t.track_form_submit("f", ["c"], [
        {"name": "n", "value": "v", "nodeName": "INPUT", "type": "text"}], context=c),
        "ue", SP + "submit_form/jsonschema/1-0-0"),
    "legacy site search": (lambda t, c: t.track_site_search(["a", "b"], {"k": True}, 10, 5,
                                                            context=c),
                           "ue", SP + "site_search/jsonschema/1-0-0"),
    "legacy screen view": (lambda t, c: t.track_screen_view("home", "id-1", context=c),
                           "ue", SP + "screen_view/jsonschema/1-0-0"),
    "legacy mobile screen view": (lambda t, c: t.track_mobile_screen_view("home", context=c),
                                  "ue", "iglu:com.snowplowanalytics.mobile/screen_view/"
                                        "jsonschema/1-0-0"),
    "legacy struct event": (lambda t, c: t.track_struct_event("c", "a", value=3, context=c),
                            "se", None),
    "legacy page view": (lambda t, c: t.track_page_view("https://e.com", context=c), "pv",
                         None),
    "legacy page ping": (lambda t, c: t.track_page_ping("https://e.com", min_x=1, context=c),
                         "pp", None),
    "legacy transaction item": (lambda t, c: t.track_ecommerce_transaction_item(
        "o1", "sku", 2.5, 3, "name", "cat", "EUR", context=c), "ti", None),
}


#: e -> Micro's eventType, and the schema Micro gives events that are not self-describing
CANONICAL_TYPES = {"se": "struct", "ue": "unstruct", "pv": "page_view", "pp": "page_ping",
                   "ti": "transaction_item"}
CANONICAL_SCHEMAS = {"se": "iglu:com.google.analytics/event/jsonschema/1-0-0",
                     "pv": SP + "page_view/jsonschema/1-0-0",
                     "pp": SP + "page_ping/jsonschema/1-0-0",
                     "ti": SP + "transaction_item/jsonschema/1-0-0"}


def _track(tracker: Tracker, action: Callable[[Tracker, Ctx], Any], context: Ctx = None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        action(tracker, context)
    assert tracker.flush(timeout=10)


@pytest.mark.parametrize("name", EVENTS)
def test_every_event_type_arrives_good(collector: Collector, tracker: Tracker,
                                       name: str) -> None:
    action, event_type, schema = EVENTS[name]
    _track(tracker, action, [PAGE_CONTEXT, SESSION])
    assert collector.wait_for(1, timeout=10)
    assert collector.bad() == [], collector.bad()[0].errors
    [good] = collector.good()
    assert good.parameters["e"] == event_type
    assert good.event_type == good.event["event"] == CANONICAL_TYPES[event_type]
    assert good.schema == (schema or CANONICAL_SCHEMAS[event_type])
    assert good.contexts == (WEB_PAGE, SP + "client_session/jsonschema/1-0-2")
    assert good.context_entities == [PAGE_CONTEXT.to_json(), SESSION.to_json()]
    assert good.parameters["aid"] == "app" and good.parameters["uid"] == "u1"
    canonical = good.event
    assert canonical["event_id"] == good.parameters["eid"]
    assert canonical["app_id"] == "app" and canonical["platform"] == "srv"
    assert canonical["user_id"] == "u1" and canonical["br_lang"] == "en"
    assert canonical["name_tracker"] == tracker.get_namespace()
    if schema is not None:
        assert canonical["unstruct_event"]["data"]["schema"] == schema
        assert good.data is not None and good.data["schema"] == schema
        assert canonical["event_name"] == schema.split("/")[1]


@pytest.mark.parametrize("name", EVENTS)
def test_every_event_type_arrives_bad_with_an_invalid_context(collector: Collector,
                                                              tracker: Tracker,
                                                              name: str) -> None:
    action, event_type, _ = EVENTS[name]
    _track(tracker, action, [PAGE_CONTEXT, SelfDescribingJson(WEB_PAGE, {"id": "nope"})])
    assert collector.wait_for(1, timeout=10)
    assert collector.good() == []
    [bad] = collector.bad()
    field = "cx" if tracker.encode_base64 else "co"
    assert bad.errors == (f"{field}: context 1 ({WEB_PAGE}) /id: 'nope' does not match "
                          "'^[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-"
                          "[a-fA-F0-9]{12}$'",)
    assert bad.parameters is not None and bad.parameters["e"] == event_type


def test_a_transaction_with_items(collector: Collector, tracker: Tracker) -> None:
    _track(tracker, lambda t, c: t.track_ecommerce_transaction(
        "order-1", 20.0, "shop", 2.0, 3.0, "Paris", "IDF", "FR", "EUR",
        items=[{"sku": "a", "price": 5.0, "quantity": 2}, {"sku": "b", "price": 10.0,
                                                           "quantity": 1}]))
    assert collector.wait_for(3, timeout=10)
    assert collector.bad() == []
    events = sorted((g.event for g in collector.good()), key=lambda e: e["event"])
    assert [e["event"] for e in events] == ["transaction", "transaction_item",
                                            "transaction_item"]
    assert events[0]["tr_total"] == 20.0 and events[0]["tr_country"] == "FR"
    assert {(e["ti_sku"], e["ti_quantity"], e["ti_price"]) for e in events[1:]} == {
        ("a", 2, 5.0), ("b", 1, 10.0)}


def test_canonical_fields_of_a_structured_event(collector: Collector,
                                                tracker: Tracker) -> None:
    _track(tracker, EVENTS["structured"][0], [PAGE_CONTEXT])
    assert collector.wait_for(1, timeout=10)
    event = collector.events()[0]
    assert (event["event"], event["se_category"], event["se_action"], event["se_label"],
            event["se_property"], event["se_value"]) == ("struct", "shop", "buy", "label",
                                                         "prop", 2.5)
    assert event["contexts"]["data"] == [PAGE_CONTEXT.to_json()]
    assert (event["event_vendor"], event["event_name"]) == ("com.google.analytics", "event")
    assert event["v_tracker"].startswith("py-") and event["user_ipaddress"] == "127.0.0.1"
    assert event["dvce_created_tstamp"].endswith("Z") and event["collector_tstamp"]
    assert event["dvce_sent_tstamp"] and event["derived_tstamp"]


def test_page_url_is_split(collector: Collector, tracker: Tracker) -> None:
    _track(tracker, EVENTS["page view"][0])
    assert collector.wait_for(1, timeout=10)
    event = collector.events()[0]
    assert (event["page_urlscheme"], event["page_urlhost"], event["page_urlport"],
            event["page_urlpath"], event["page_urlquery"], event["page_urlfragment"]) == (
        "https", "e.com", 443, "/p", "q=1", "f")
    assert event["page_title"] == "Title" and event["refr_urlhost"] == "ref.e.com"


def test_unknown_schema_and_invalid_data_arrive_bad(collector: Collector,
                                                    tracker: Tracker) -> None:
    tracker.track(SelfDescribing(SelfDescribingJson("iglu:com.acme/checkout/jsonschema/1-0-0",
                                                    {"total": 1})))
    tracker.track(StructuredEvent("c", "a", context=[
        SelfDescribingJson("iglu:com.acme/user/jsonschema/1-0-0", {"tier": "gold"})]))
    tracker.track(SelfDescribing(SelfDescribingJson(SP + "add_to_cart/jsonschema/1-0-0",
                                                    {"sku": "x", "quantity": "2"})))
    assert tracker.flush(timeout=10)
    assert collector.wait_for(3, timeout=10)
    assert collector.good() == []
    errors = sorted(e for bad in collector.bad() for e in bad.errors)
    kind = "ue_px" if tracker.encode_base64 else "ue_pr"
    ctx = "cx" if tracker.encode_base64 else "co"
    assert errors == sorted([
        f"{kind}: event: unknown schema iglu:com.acme/checkout/jsonschema/1-0-0 (neither "
        "bundled nor in a schema directory: none given)",
        f"{ctx}: context 0: unknown schema iglu:com.acme/user/jsonschema/1-0-0 (neither "
        "bundled nor in a schema directory: none given)",
        f"{kind}: event (iglu:com.snowplowanalytics.snowplow/add_to_cart/jsonschema/1-0-0) "
        "/quantity: expected number, got string",
    ])


def test_user_schemas_make_custom_events_good(tmp_path: Path) -> None:
    schema = {"self": {"vendor": "com.acme", "name": "checkout", "format": "jsonschema",
                       "version": "1-0-0"},
              "type": "object", "properties": {"total": {"type": "number", "minimum": 0}},
              "required": ["total"], "additionalProperties": False}
    path = tmp_path / "com.acme" / "checkout" / "jsonschema" / "1-0-0"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(schema))
    with Collector(schemas=[tmp_path]) as collector:
        emitter = Emitter(collector.endpoint, batch_size=1)
        tracker = Tracker("acme", emitter)
        uri = "iglu:com.acme/checkout/jsonschema/1-0-0"
        tracker.track(SelfDescribing(SelfDescribingJson(uri, {"total": 42.5})))
        tracker.track(SelfDescribing(SelfDescribingJson(uri, {"total": -1})))
        assert tracker.flush(timeout=10) and collector.wait_for(2, timeout=10)
        emitter.close(5)
        assert [g.schema for g in collector.good()] == [uri]
        assert collector.bad()[0].errors == (
            f"ue_px: event ({uri}) /total: -1 is not at least 0",)
        served = requests.get(collector.endpoint + "/micro/iglu/com.acme/checkout/jsonschema/"
                              "1-0-0", timeout=10)
        assert served.json() == schema


@pytest.mark.parametrize(("content", "reason"), [
    ("{not json", "cannot be read"),
    ('{"self": {"vendor": "com.acme", "name": "other", "format": "jsonschema", '
     '"version": "1-0-0"}}', "its self block names com.acme/other/jsonschema/1-0-0"),
    ('{"type": "strung"}', "is not a usable schema"),
    ("[1, 2]", "is not a JSON object"),
])
def test_broken_user_schemas_make_events_bad(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "com.acme" / "thing" / "jsonschema" / "1-0-0"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with Collector(schemas=[tmp_path]) as collector:
        emitter = Emitter(collector.endpoint, batch_size=1)
        Tracker("acme", emitter).track(SelfDescribing(SelfDescribingJson(
            "iglu:com.acme/thing/jsonschema/1-0-0", {})))
        assert emitter.flush(10) and collector.wait_for(1, timeout=10)
        emitter.close(5)
        [bad] = collector.bad()
        assert reason in bad.errors[0]  # where, without the absolute path (clients see it)
        assert "com.acme/thing/jsonschema/1-0-0 in schema directory 1" in bad.errors[0]
        assert str(tmp_path) not in bad.errors[0]


def test_a_missing_schema_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Collector(schemas=[tmp_path / "nowhere"])
