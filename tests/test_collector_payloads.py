"""Payload checks that must neither freeze the collector nor let through values that break
its answers: the number fields' pattern (linear, length first), uniqueItems (linear),
non-finite numbers, lone surrogates; and the Micro API still answering valid JSON after
each."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import pytest
import requests

from snowplow_threaded.collector import Collector, EventChecker, Resolver, Validator

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def finishes_within(code: str, seconds: float) -> bool:
    """Run *code* in a fresh interpreter; True if it exits cleanly within *seconds* (a
    pathological case takes minutes to hours, a linear one milliseconds)."""
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], timeout=seconds,
                              capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return False
    assert done.returncode == 0, done.stderr
    return True


@pytest.mark.parametrize("field", ["se_va", "tr_tt", "tr_tx", "tr_sh", "ti_pr"])
def test_number_fields_are_checked_in_linear_time(field: str) -> None:
    assert finishes_within(f"""
        from snowplow_threaded.collector import EventChecker, Resolver
        checker = EventChecker(Resolver())
        for digits in (12_000, 200_000):
            event = {{"e": "se", "p": "web", "tv": "t", "se_ca": "a", "se_ac": "b",
                      "{field}": "1" * digits + "x"}}
            verdict = checker.check(event)
            assert any(e.startswith("{field}:") for e in verdict.errors), verdict.errors
        """, 20)


def strict_json(text: str) -> Any:
    """json.loads that refuses NaN and Infinity, as every JSON parser but Python's does."""
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in an answer")
    return json.loads(text, parse_constant=refuse)


def test_checker_refuses_numbers_beyond_a_double() -> None:
    checker = EventChecker(Resolver())
    base = {"e": "se", "p": "web", "tv": "t", "se_ca": "a", "se_ac": "b"}
    for value in ("1e999", "-1E400", "1" * 400, "9" * 70):
        verdict = checker.check({**base, "se_va": value})
        assert any(e.startswith("se_va:") for e in verdict.errors), (value, verdict.errors)
    for value in ("1", "-2.5", ".5", "3.", "1e10", "1.5E-3", "123456789012345678"):
        assert checker.check({**base, "se_va": value}).errors == [], value


@pytest.fixture(scope="module")
def collector() -> Any:
    with Collector() as c:
        yield c


def post(collector: Collector, body: bytes | str) -> requests.Response:
    return requests.post(collector.endpoint + TP2, data=body, timeout=10,
                         headers={"Content-Type": "application/json"})


def answers(collector: Collector) -> None:
    """Every list route answers 200 with strict JSON."""
    for route in ("good", "bad", "events", "all"):
        response = requests.get(f"{collector.endpoint}/micro/{route}", timeout=10)
        assert response.status_code == 200, (route, response.text[:200])
        strict_json(response.content.decode("utf-8"))
    for route in ("good", "bad"):
        response = requests.post(f"{collector.endpoint}/micro/{route}", json={}, timeout=10)
        assert response.status_code == 200


def test_lone_surrogates_do_not_break_the_api(collector: Collector) -> None:
    collector.reset()
    body = ('{"schema": "PAYLOAD", "data": [{"e": "pv", "p": "web", "tv": "\\ud800", '
            '"eid": "EID"}, {"e": "pv", "p": "web", "tv": "t", "\\udfff": "x"}]}'
            ).replace("PAYLOAD", PAYLOAD).replace("EID", str(uuid.uuid4()))
    assert post(collector, body).status_code == 200
    assert collector.wait_for(2, timeout=5)
    assert collector.good()[0].parameters["tv"] == "\ufffd"
    assert collector.summary().received_bad == 1
    answers(collector)
    get = requests.get(collector.endpoint + "/i?e=pv&p=web&tv=%ED%A0%80", timeout=10)
    assert get.status_code == 200  # a pixel, always; UTF-8 cannot hold a surrogate:
    assert collector.wait_for(3, timeout=5)  # a bad event (the query cannot be decoded)
    assert collector.summary().received_bad == 2
    answers(collector)


@pytest.mark.parametrize("body", [
    '{"schema": "PAYLOAD", "data": [{"e": "pv", "p": "web", "tv": NaN}]}',
    '{"schema": "PAYLOAD", "data": [{"e": "pv", "p": "web", "tv": 1e400}]}',
    '{"schema": "PAYLOAD", "data": [{"e": "pv", "p": "web", "tv": "t", "x": -Infinity}]}',
])
def test_non_finite_json_numbers_are_not_json(collector: Collector, body: str) -> None:
    collector.reset()
    response = post(collector, body.replace("PAYLOAD", PAYLOAD))
    assert response.status_code == 200  # the collector's answer; the body is a bad row
    assert collector.wait_for(1, timeout=5)
    [bad] = collector.bad()
    assert "not valid JSON" in bad.errors[0], bad.errors
    answers(collector)


def test_non_finite_numbers_in_fields_make_the_event_bad(collector: Collector) -> None:
    collector.reset()
    for query in ("e=se&p=web&tv=t&se_ca=a&se_ac=b&se_va=1e999",
                  "e=tr&p=web&tv=t&tr_id=1&tr_tt=-1e400"):
        assert requests.get(f"{collector.endpoint}/i?{query}", timeout=10).status_code == 200
    assert collector.wait_for(2, timeout=5)
    assert collector.summary().received_bad == 2
    answers(collector)


def test_context_numbers_beyond_a_double_make_the_event_bad(collector: Collector) -> None:
    collector.reset()
    contexts = ('{"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",'
                ' "data": [{"schema": "iglu:com.snowplowanalytics.snowplow/geolocation_context/'
                'jsonschema/1-1-0", "data": {"latitude": 1e400, "longitude": 0}}]}')
    event = {"e": "pv", "p": "web", "tv": "t", "co": contexts}
    assert post(collector, json.dumps({"schema": PAYLOAD, "data": [event]})).status_code == 200
    assert collector.wait_for(1, timeout=5)
    [bad] = collector.bad()
    assert "beyond the range of a double" in bad.errors[0]
    answers(collector)


def test_validator_never_raises_on_non_finite_numbers() -> None:
    checks = Validator({"type": "number", "minimum": 0, "maximum": 10, "multipleOf": 0.01})
    for value in (float("nan"), float("inf"), float("-inf")):
        assert checks.errors(value), value  # reported, not raised, not passed
    assert Validator({"multipleOf": 0.5}).errors(10**400) == []  # beyond a float: exact
    assert Validator({"multipleOf": 0.5}).errors(1e308) == []  # the quotient overflows
    assert Validator({"multipleOf": 0.1}).errors(10**400)  # the binary 0.1 does not divide it


def test_unique_items_is_linear() -> None:
    assert finishes_within("""
        from snowplow_threaded.collector import Validator
        check = Validator({"type": "array", "uniqueItems": True})
        items = [{"id": i, "tags": [i, str(i)]} for i in range(60_000)]
        assert check.errors(items) == []
        assert check.errors(items + [{"tags": [59_999, "59999"], "id": 59_999.0}])
        """, 20)


@pytest.mark.parametrize(("items", "unique"), [
    ([1, 1.0], False), ([True, 1], True), ([False, 0], True), ([None, False], True),
    ([{"a": 1, "b": 2}, {"b": 2, "a": 1.0}], False), ([[1], [1.0]], False),
    ([[1, 2], [2, 1]], True), ([{"a": [True]}, {"a": [1]}], True), (["1", 1], True),
    ([{"a": None}, {}], True), ([[], {}], True), ([0.5, 0.5], False),
    ([{"a": {"b": [1, {"c": "x"}]}}, {"a": {"b": [1.0, {"c": "x"}]}}], False),
])
def test_unique_items_semantics(items: list[Any], unique: bool) -> None:
    assert Validator({"uniqueItems": True}).is_valid(items) is unique
