"""Tests of the schema helpers (tests/schemas.py), which the tests use to check events
with ``jsonschema`` independently of the embedded collector's own validator."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import requests

from snowplow_threaded.collector import Collector
from tests.helpers import TP2
from tests.schemas import (
    CONTEXTS,
    PAYLOAD_DATA,
    UNSTRUCT_EVENT,
    context_entities,
    decode_self_describing,
    known_schemas,
    schema_is_known,
    unstruct_event,
    validate_event,
    validate_events,
    validate_post_body,
    validate_schema_instance,
)


def b64(obj: object, pad: bool = False) -> str:
    raw = base64.urlsafe_b64encode(json.dumps(obj).encode()).decode()
    return raw if pad else raw.rstrip("=")


LINK_CLICK = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
ACME = "iglu:com.acme/thing/jsonschema/1-0-0"


def make_event(**overrides: str) -> dict[str, str]:
    ev = {
        "e": "ue",
        "eid": str(uuid.uuid4()),
        "tv": "py-0.1.0",
        "p": "srv",
        "dtm": "1714000000000",
        "stm": "1714000000100",
        "aid": "app",
        "ue_px": b64(
            {
                "schema": UNSTRUCT_EVENT,
                "data": {"schema": LINK_CLICK, "data": {"targetUrl": "https://example.com/"}},
            }
        ),
        "cx": b64(
            {
                "schema": CONTEXTS,
                "data": [
                    {"schema": WEB_PAGE, "data": {"id": str(uuid.uuid4())}},
                    {"schema": ACME, "data": {"anything": ["goes", 1]}},
                ],
            },
            pad=True,
        ),
    }
    ev.update(overrides)
    return {k: v for k, v in ev.items() if v != "<drop>"}


def test_schemas_are_loaded() -> None:
    uris = known_schemas()
    assert PAYLOAD_DATA in uris and CONTEXTS in uris and UNSTRUCT_EVENT in uris
    assert len(uris) == 14
    assert all(schema_is_known(u) for u in uris)
    assert not schema_is_known(ACME)
    assert not schema_is_known("not a uri")


def test_valid_event_passes() -> None:
    ev = make_event()
    validate_event(ev)
    validate_events([ev, make_event(e="se", se_ca="c", se_ac="a", ue_px="<drop>")])
    inner = unstruct_event(ev)
    assert inner == {"schema": LINK_CLICK, "data": {"targetUrl": "https://example.com/"}}
    entities = context_entities(ev)
    assert [e["schema"] for e in entities] == [WEB_PAGE, ACME]
    decoded = decode_self_describing(ev, "co", "cx")
    assert decoded is not None and decoded["schema"] == CONTEXTS
    assert decode_self_describing(ev, "nope", "nope64") is None
    # Plain JSON variants.
    plain = make_event(
        ue_px="<drop>",
        cx="<drop>",
        ue_pr=json.dumps({"schema": UNSTRUCT_EVENT, "data": {"schema": ACME, "data": {}}}),
        co=json.dumps({"schema": CONTEXTS, "data": []}),
    )
    validate_event(plain)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"eid": "<drop>"}, "lacks 'eid'"),
        ({"eid": "not-a-uuid"}, "eid is not a UUID"),
        ({"e": "zz"}, "unknown event type"),
        ({"p": "moon"}, "unknown platform"),
        ({"dtm": "12.5"}, "dtm is not a digit string"),
        ({"ttm": "-1"}, "ttm is not a digit string"),
        ({"tv": "<drop>"}, "'tv' is a required property"),
        ({"unknown_key": "x"}, "Additional properties"),
        ({"ue_px": "<drop>"}, "lacks ue_pr/ue_px"),
        ({"e": "se", "se_ca": "c", "se_ac": "a"}, "carries ue_pr/ue_px"),
        ({"e": "se", "ue_px": "<drop>"}, "lacks 'se_ca'"),
        ({"ue_px": "***"}, "not URL-safe base64"),
        ({"ue_px": "a+b/"}, "not URL-safe base64"),
        ({"ue_px": b64([1, 2])}, "not a JSON object"),
        ({"ue_pr": "{}"}, "both ue_pr and ue_px"),
        ({"ue_px": b64({"schema": CONTEXTS, "data": {}})}, "expected iglu:com.snowplow"),
        (
            {"ue_px": b64({"schema": UNSTRUCT_EVENT, "data": {"schema": "x", "data": {}}})},
            "'x' does not match",
        ),
        (
            {"ue_px": b64({"schema": UNSTRUCT_EVENT, "data": {"schema": LINK_CLICK, "data": {}}})},
            "'targetUrl' is a required property",
        ),
        (
            {"cx": b64({"schema": CONTEXTS, "data": [{"schema": WEB_PAGE, "data": {"id": "1"}}]})},
            "context entity 0",
        ),
        ({"cx": b64({"schema": CONTEXTS, "data": [{"schema": ACME}]})}, "'data' is a required"),
        ({"aid": 5}, "5 is not of type 'string'"),
    ],
)
def test_invalid_events_fail(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(AssertionError) as info:
        validate_event(make_event(**overrides))
    assert message in str(info.value), str(info.value)


def test_validate_post_body() -> None:
    events = [make_event(), make_event(e="pv", ue_px="<drop>", url="http://x/")]
    raw = json.dumps({"schema": PAYLOAD_DATA, "data": events})
    assert validate_post_body(raw) == events
    assert validate_post_body(raw.encode()) == events
    cases: list[tuple[bytes | str, str]] = [
        (b"{", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"schema": "iglu:x/y/jsonschema/1-0-0", "data": events}), "expected iglu"),
        (json.dumps({"schema": PAYLOAD_DATA, "data": []}), "should be non-empty"),
        (json.dumps({"schema": PAYLOAD_DATA, "data": [{"e": "pv"}]}), "'tv' is a required"),
        (json.dumps({"schema": PAYLOAD_DATA, "data": events, "x": 1}), "keys must be"),
        (
            json.dumps({"schema": PAYLOAD_DATA, "data": [{"e": "pv", "tv": "t", "p": 1}]}),
            "1 is not of",
        ),
    ]
    for bad, message in cases:
        with pytest.raises(AssertionError) as info:
            validate_post_body(bad)
        assert message in str(info.value), (bad, str(info.value))


def test_validate_schema_instance() -> None:
    validate_schema_instance(LINK_CLICK, {"targetUrl": "https://x/"})
    with pytest.raises(AssertionError, match="unknown schema"):
        validate_schema_instance(ACME, {})
    with pytest.raises(AssertionError, match="not an Iglu schema URI"):
        validate_schema_instance("iglu:nope", {})
    with pytest.raises(AssertionError, match="elementClasses"):
        validate_schema_instance(LINK_CLICK, {"targetUrl": "https://x/", "elementClasses": [1]})
    client_session = "iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/1-0-2"
    good = {
        "userId": str(uuid.uuid4()),
        "sessionId": str(uuid.uuid4()),
        "sessionIndex": 1,
        "storageMechanism": "SQLITE",
    }
    validate_schema_instance(client_session, good)
    with pytest.raises(AssertionError, match="uuid"):  # formats are checked
        validate_schema_instance(client_session, {**good, "sessionId": "nope"})


def test_collected_body_validates(collector: Collector) -> None:
    """A body the helpers pass is what the embedded collector records; it judges the
    events bad only for the com.acme schema it does not hold (the helpers skip those)."""
    events = [make_event() for _ in range(3)]
    requests.post(collector.endpoint + TP2, json={"schema": PAYLOAD_DATA, "data": events},
                  timeout=5)
    (req,) = collector.requests()
    validate_events(validate_post_body(req.body))
    assert req.events == events
    assert [b.parameters for b in collector.bad()] == events
    assert all(len(b.errors) == 1 and "com.acme/thing" in b.errors[0] for b in collector.bad())
