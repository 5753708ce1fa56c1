"""Every validation rule of the embedded collector, through its real HTTP interface.

Each case sends one crafted tracker-protocol event (POST, and for some also GET) and checks
the verdict: good, or bad with the expected reason in ``/micro/bad``. Every request is
answered ``200``, as by the Snowplow collector: body-level problems make one bad record.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from jsonschema import Draft4Validator, FormatChecker

from snowplow_threaded.collector import Collector
from snowplow_threaded.collector.iglu import BUNDLED_DIR

TP2 = "/com.snowplowanalytics.snowplow/tp2"
SP = "iglu:com.snowplowanalytics.snowplow/"
PAYLOAD = SP + "payload_data/jsonschema/1-0-4"
UE = SP + "unstruct_event/jsonschema/1-0-0"
CONTEXTS = SP + "contexts/jsonschema/1-0-1"
LINK_CLICK = SP + "link_click/jsonschema/1-0-1"
WEB_PAGE = SP + "web_page/jsonschema/1-0-0"


@pytest.fixture
def collector(micro_collector: Collector) -> Collector:
    """Every test here runs against the embedded collector (see conftest)."""
    return micro_collector


def event(**fields: Any) -> dict[str, Any]:
    """A good structured event, with *fields* set (None removes a field)."""
    ev: dict[str, Any] = {"e": "se", "se_ca": "shop", "se_ac": "buy", "tv": "py-test",
                          "p": "srv", "eid": str(uuid.uuid4()), "dtm": "1700000000000",
                          "aid": "app", "tna": "ns"}
    for key, value in fields.items():
        if value is None:
            ev.pop(key, None)
        else:
            ev[key] = value
    return ev


def b64(value: Any, padding: bool = True) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    encoded = base64.urlsafe_b64encode(text.encode()).decode()
    return encoded if padding else encoded.rstrip("=")


def sdj(schema: str, data: Any) -> dict[str, Any]:
    return {"schema": schema, "data": data}


def ue(inner: Any, wrapper: str = UE) -> str:
    return json.dumps(sdj(wrapper, inner))


def co(*entities: Any, wrapper: str = CONTEXTS) -> str:
    return json.dumps(sdj(wrapper, list(entities)))


def post(collector: Collector, events: list[Any], schema: str = PAYLOAD) -> requests.Response:
    return requests.post(collector.endpoint + TP2, json={"schema": schema, "data": events},
                         timeout=10)


def verdict(collector: Collector, ev: Any) -> tuple[int, list[str]]:
    """Send *ev* alone; (good count, errors of the bad event)."""
    response = post(collector, [ev])
    assert response.status_code == 200, response.text
    assert collector.wait_for(1, timeout=5)
    bad = collector.bad()
    return len(collector.good()), list(bad[0].errors) if bad else []


GOOD_CASES: dict[str, dict[str, Any]] = {
    "structured": {},
    "all numeric fields": {"se_va": "1.5e3", "vid": "3", "tid": "42", "cd": "24",
                           "stm": "1700000000001", "ttm": "1700000000002",
                           "res": "1920x1080", "vp": "800x600", "ds": "1000x2000"},
    "page view": {"e": "pv", "url": "https://example.com/a?b=c#d", "page": "Title",
                  "refr": "https://ref.example/"},
    "page ping": {"e": "pp", "url": "https://example.com", "pp_mix": "0", "pp_max": "-10",
                  "pp_miy": "5", "pp_may": "100"},
    "transaction": {"e": "tr", "tr_id": "o1", "tr_tt": "10.50", "tr_tx": "1", "tr_sh": "0",
                    "tr_cu": "EUR"},
    "transaction item": {"e": "ti", "ti_id": "o1", "ti_sk": "sku", "ti_pr": "2.5",
                         "ti_qu": "3", "ti_nm": "name"},
    "self-describing plain": {"e": "ue", "ue_pr": ue(sdj(LINK_CLICK, {"targetUrl": "x"}))},
    "self-describing base64 padded": {
        "e": "ue", "ue_px": b64(ue(sdj(LINK_CLICK, {"targetUrl": "https://a"})))},
    "self-describing base64 unpadded": {
        "e": "ue", "ue_px": b64(ue(sdj(LINK_CLICK, {"targetUrl": "https://ab"})), False)},
    "contexts plain": {"co": co(sdj(WEB_PAGE, {"id": str(uuid.uuid4())}))},
    "contexts base64 unpadded": {"cx": b64(co(sdj(WEB_PAGE, {"id": str(uuid.uuid4())})),
                                           False)},
    "contexts 1-0-0 wrapper": {"co": co(sdj(WEB_PAGE, {"id": str(uuid.uuid4())}),
                                        wrapper=SP + "contexts/jsonschema/1-0-0")},
    "empty contexts": {"co": co()},
    "every platform": {"p": "mob"},
    "no eid (the pipeline makes one)": {"eid": None},
}


@pytest.mark.parametrize("name", GOOD_CASES)
def test_good_events(collector: Collector, name: str) -> None:
    good, errors = verdict(collector, event(**GOOD_CASES[name]))
    assert (good, errors) == (1, [])


BAD_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("no e", {"e": None}, "required property 'e' is missing"),
    ("unknown e", {"e": "xx"}, "e: unknown event type 'xx'"),
    ("no tv", {"tv": None}, "required property 'tv' is missing"),
    ("empty tv", {"tv": ""}, "tv: must not be empty"),
    ("no p", {"p": None}, "required property 'p' is missing"),
    ("unknown p", {"p": "desktop"}, "p: unknown platform 'desktop'"),
    ("eid not a uuid", {"eid": "123"}, "eid: '123' is not a UUID"),
    ("dtm not digits", {"dtm": "yesterday"}, "dtm: 'yesterday' is not a timestamp"),
    ("stm negative", {"stm": "-1"}, "stm: '-1' is not a timestamp"),
    ("ttm fraction", {"ttm": "1.5"}, "ttm: '1.5' is not a timestamp"),
    ("vid not integer", {"vid": "x"}, "vid: 'x' is not an integer"),
    ("tid not integer", {"tid": "1e3"}, "tid: '1e3' is not an integer"),
    ("se_va not number", {"se_va": "ten"}, "se_va: 'ten' is not a number"),
    ("res not dimensions", {"res": "1920"}, "res: '1920' is not WIDTHxHEIGHT"),
    ("aid too long", {"aid": "a" * 256}, "aid: longer than 255 characters"),
    ("value not a string", {"se_va": 5}, "se_va: expected string, got integer"),
    ("null value", {"se_la": None, "uid": [1]}, "uid: expected string, got array"),
    ("unknown field", {"foo": "bar"}, "foo: property not allowed"),
    ("se without category", {"se_ca": None}, "se_ca: required for e=se events"),
    ("se with empty action", {"se_ac": ""}, "se_ac: required for e=se events"),
    ("tr without total", {"e": "tr", "tr_id": "o"}, "tr_tt: required for e=tr events"),
    ("ti without sku", {"e": "ti", "ti_id": "o", "ti_pr": "1", "ti_qu": "1"},
     "ti_sk: required for e=ti events"),
    ("ue without event", {"e": "ue"}, "ue_pr/ue_px: required for e=ue events"),
    ("ue with both", {"e": "ue", "ue_pr": ue(sdj(LINK_CLICK, {"targetUrl": "x"})),
                      "ue_px": b64(ue(sdj(LINK_CLICK, {"targetUrl": "x"})))},
     "ue_pr, ue_px: an event carries one or the other"),
    ("se carrying ue_pr", {"ue_pr": ue(sdj(LINK_CLICK, {"targetUrl": "x"}))},
     "ue_pr: only e=ue events carry"),
    ("ue_px not base64url", {"e": "ue", "ue_px": "a+b/"}, "ue_px: not URL-safe base64"),
    ("ue_px bad length", {"e": "ue", "ue_px": "abcde"}, "ue_px: not valid base64"),
    ("ue_px not utf-8", {"e": "ue", "ue_px": base64.urlsafe_b64encode(b"\xff\xfe").decode()},
     "ue_px: does not decode to UTF-8"),
    ("ue_px not json", {"e": "ue", "ue_px": b64("{nope")}, "ue_px: not valid JSON"),
    ("ue_pr not json", {"e": "ue", "ue_pr": "{"}, "ue_pr: not valid JSON"),
    ("ue_pr an array", {"e": "ue", "ue_pr": "[]"}, "ue_pr: not a self-describing JSON"),
    ("ue_pr extra key", {"e": "ue", "ue_pr": json.dumps({"schema": UE, "data": {}, "x": 1})},
     "ue_pr: not a self-describing JSON"),
    ("ue_pr wrong wrapper", {"e": "ue", "ue_pr": ue(sdj(LINK_CLICK, {"targetUrl": "x"}),
                                                    wrapper=CONTEXTS)},
     "ue_pr: schema is 'iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1', "
     "expected iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"),
    ("inner event without data", {"e": "ue", "ue_pr": ue({"schema": LINK_CLICK})},
     "required property 'data' is missing"),
    ("inner schema not an iglu uri", {"e": "ue", "ue_pr": ue(sdj("com.acme/x", {}))},
     "/schema: 'com.acme/x' does not match"),
    ("inner schema unknown", {"e": "ue", "ue_pr": ue(sdj("iglu:com.acme/x/jsonschema/1-0-0",
                                                         {}))},
     "ue_pr: event: unknown schema iglu:com.acme/x/jsonschema/1-0-0"),
    ("inner data invalid", {"e": "ue", "ue_pr": ue(sdj(LINK_CLICK, {"targetUrl": ""}))},
     "(iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1) /targetUrl: "
     "shorter than 1 characters"),
    ("inner data extra field", {"e": "ue", "ue_pr": ue(sdj(LINK_CLICK, {"targetUrl": "x",
                                                                       "y": 1}))},
     "/y: property not allowed"),
    ("co and cx", {"co": co(), "cx": b64(co())}, "co, cx: an event carries one or the other"),
    ("co wrong wrapper", {"co": json.dumps(sdj(UE, []))}, "co: schema is"),
    ("co data not a list", {"co": json.dumps(sdj(CONTEXTS, {}))},
     "(iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1) /: expected array"),
    ("context entity unknown", {"co": co(sdj("iglu:com.acme/user/jsonschema/1-0-0", {}))},
     "co: context 0: unknown schema iglu:com.acme/user/jsonschema/1-0-0"),
    ("context entity invalid", {"cx": b64(co(sdj(WEB_PAGE, {"id": "nope"})))},
     "cx: context 0 (iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0) /id: "
     "'nope' does not match"),
    ("second context entity invalid", {"co": co(sdj(WEB_PAGE, {"id": str(uuid.uuid4())}),
                                                sdj(WEB_PAGE, {}))},
     "co: context 1 (iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0) /: "
     "required property 'id' is missing"),
    ("context entity not self-describing", {"co": co({"data": {}})},
     "required property 'schema' is missing"),
]


@pytest.mark.parametrize(("name", "fields", "reason"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_events(collector: Collector, name: str, fields: dict[str, Any],
                    reason: str) -> None:
    good, errors = verdict(collector, event(**fields))
    assert good == 0
    assert any(reason in e for e in errors), errors


def test_an_event_that_is_not_an_object(collector: Collector) -> None:
    good, errors = verdict(collector, "e=pv")
    assert (good, errors) == (0, ["an event must be a JSON object, got str"])


def test_one_bad_event_does_not_spoil_its_batch(collector: Collector) -> None:
    events = [event(), event(e="xx"), event(e="pv")]
    assert post(collector, events).status_code == 200
    assert collector.wait_for(3, timeout=5)
    assert [g.parameters["eid"] for g in collector.good()] == [events[0]["eid"],
                                                               events[2]["eid"]]
    [bad] = collector.bad()
    assert bad.parameters is not None and bad.parameters["eid"] == events[1]["eid"]


@pytest.mark.parametrize("version", ["1-0-0", "1-0-1", "1-0-2", "1-0-3", "1-0-4"])
def test_every_payload_data_revision_is_accepted(collector: Collector, version: str) -> None:
    assert post(collector, [event()], SP + f"payload_data/jsonschema/{version}").ok
    assert collector.wait_for(1, timeout=5) and len(collector.good()) == 1


def test_get_events_are_judged_the_same(collector: Collector) -> None:
    ok = requests.get(collector.endpoint + "/i?" + urlencode(event(e="pv", url="https://x")),
                      timeout=10)
    assert ok.status_code == 200 and ok.headers["Content-Type"] == "image/gif"
    assert ok.content.startswith(b"GIF89a")
    wrong = requests.get(collector.endpoint + "/i?" + urlencode(event(p="phone")), timeout=10)
    assert wrong.status_code == 200  # a pixel is always served; the event is bad
    assert collector.wait_for(2, timeout=5)
    assert [g.parameters["e"] for g in collector.good()] == ["pv"]
    assert [b.errors for b in collector.bad()] == [("p: unknown platform 'phone'",)]
    assert collector.good()[0].to_micro()["rawEvent"]["api"]["version"] == "tp1"


BODY_CASES: list[tuple[str, dict[str, str], bytes, str]] = [
    ("text/plain", {"Content-Type": "text/plain"}, b"{}",
     "Content-Type must be application/json, got 'text/plain'"),
    ("no content type", {}, b'{"schema":"x","data":[]}', "got 'none'"),
    ("not json", {"Content-Type": "application/json"}, b"{nope", "the body is not valid JSON"),
    ("not utf-8", {"Content-Type": "application/json"}, b'{"a":"\xff"}', "not UTF-8"),
    ("a json array", {"Content-Type": "application/json"}, b"[]",
     "not a self-describing JSON"),
    ("another schema", {"Content-Type": "application/json"},
     json.dumps({"schema": SP + "contexts/jsonschema/1-0-1", "data": [{}]}).encode(),
     "the body's schema is"),
    ("payload_data 1-0-5", {"Content-Type": "application/json"},
     json.dumps({"schema": SP + "payload_data/jsonschema/1-0-5", "data": [{}]}).encode(),
     "expected iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-0 to 1-0-4"),
    ("no events", {"Content-Type": "application/json"},
     json.dumps({"schema": PAYLOAD, "data": []}).encode(), "non-empty list of events"),
    ("data not a list", {"Content-Type": "application/json"},
     json.dumps({"schema": PAYLOAD, "data": {"e": "pv"}}).encode(), "non-empty list"),
    ("nested too deeply", {"Content-Type": "application/json"}, b"[" * 200_000,
     "JSON nested too deeply"),
    ("empty body", {"Content-Type": "application/json"}, b"", "not valid JSON"),
]


def bad_row_of(micro_bad: dict[str, Any], heading: str, schema: str) -> dict[str, Any]:
    """The bad row in a /micro/bad item's errors, checked against its Iglu Central schema."""
    assert micro_bad["errors"][0] == heading and len(micro_bad["errors"]) == 2
    row = json.loads(micro_bad["errors"][1])
    assert row["schema"] == "iglu:com.snowplowanalytics.snowplow.badrows/" + schema
    path = BUNDLED_DIR.joinpath("com.snowplowanalytics.snowplow.badrows", *schema.split("/"))
    validator = Draft4Validator(json.loads(path.read_text()), format_checker=FormatChecker())
    assert list(validator.iter_errors(row["data"])) == []
    return row


@pytest.mark.parametrize(("name", "headers", "body", "reason"), BODY_CASES,
                         ids=[c[0] for c in BODY_CASES])
def test_malformed_bodies_get_200_and_a_bad_row(collector: Collector, name: str,
                                                headers: dict[str, str], body: bytes,
                                                reason: str) -> None:
    """The collector does not read bodies: it answers 200 and the pipeline records a
    tracker_protocol_violations bad row with the body."""
    response = requests.post(collector.endpoint + "/p" + TP2 + "?x=1", data=body,
                             headers=headers, timeout=10)
    assert (response.status_code, response.text) == (200, "ok")
    assert collector.wait_for(1, kind="bad", timeout=5)
    [bad] = collector.bad()
    assert bad.parameters is None and reason in bad.errors[0]
    micro = requests.get(collector.endpoint + "/micro/bad", timeout=10).json()
    assert micro[0]["rawEvent"] is None
    assert micro[0]["collectorPayload"]["api"]["version"] == "tp2"
    assert micro[0]["collectorPayload"]["querystring"] == ["x=1"]
    assert micro[0]["collectorPayload"]["body"] == (body.decode("utf-8", "replace")[:16384]
                                                    or None)
    row = bad_row_of(micro[0], "Error while extracting event(s) from collector payload and "
                               "validating it/them.",
                     "tracker_protocol_violations/jsonschema/1-0-0")
    [message] = row["data"]["failure"]["messages"]
    assert reason in message.get("expectation", "") or message["error"] in bad.errors[0]
    assert collector.good() == []


@pytest.mark.parametrize(("query", "reason"), [
    ("", "no event fields in the query string"),
    ("e=pv&url=%ff", "the query string cannot be decoded"),
])
def test_malformed_get_requests(collector: Collector, query: str, reason: str) -> None:
    response = requests.get(collector.endpoint + "/i?" + query, timeout=10)
    assert response.status_code == 200 and response.content.startswith(b"GIF89a")
    assert collector.wait_for(1, kind="bad", timeout=5)
    assert reason in collector.bad()[0].errors[0]


def test_bad_request_bodies_are_kept_cut_short(collector: Collector) -> None:
    body = b'{"not": "json"' + b" " * 100_000
    response = requests.post(collector.endpoint + TP2, data=body,
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 200
    assert collector.wait_for(1, kind="bad", timeout=5)
    kept = collector.bad()[0].request.body
    assert kept is not None and kept.startswith('{"not": "json"') and len(kept) == 16384
