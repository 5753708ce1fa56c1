"""The pytest plugin installed with the package, used by a test suite run in a pytest
subprocess (pytester): the ``snowplow_collector`` fixture, its options, and no cost for
tests that do not ask for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

USER_SUITE = '''
import socket
import sys
import threading

import pytest
import requests

from snowplow_threaded import Emitter, SelfDescribing, SelfDescribingJson, StructuredEvent
from snowplow_threaded import Tracker

PORT_FILE = "port.txt"


def test_no_collector_without_the_fixture():
    assert "snowplow_threaded.collector.server" not in sys.modules
    assert not [t for t in threading.enumerate() if t.name == "snowplow-collector"]


def test_tracking_is_checked(snowplow_collector):
    emitter = Emitter(snowplow_collector.endpoint, batch_size=2)
    tracker = Tracker("suite", emitter, app_id="shop")
    tracker.track(StructuredEvent("shop", "checkout", value=3))
    tracker.track(SelfDescribing(SelfDescribingJson("iglu:com.acme/unknown/jsonschema/1-0-0", {})))
    assert emitter.flush(10)
    assert snowplow_collector.wait_for(2, timeout=10)
    [event] = snowplow_collector.events()
    assert (event["se_action"], event["se_value"], event["app_id"]) == ("checkout", 3.0, "shop")
    assert [g.event_type for g in snowplow_collector.good()] == ["struct"]
    [bad] = snowplow_collector.bad()
    assert "unknown schema iglu:com.acme/unknown/jsonschema/1-0-0" in bad.errors[0]
    snowplow_collector.reset()
    assert snowplow_collector.good() == [] and snowplow_collector.events() == []
    emitter.close(5)
    open(PORT_FILE, "w").write(str(snowplow_collector.port))


def test_the_collector_is_stopped_after_its_test():
    port = int(open(PORT_FILE).read())
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_each_test_gets_its_own(snowplow_collector):
    assert snowplow_collector.summary().received_good == 0
    assert snowplow_collector.port != int(open(PORT_FILE).read())


def test_tracking_that_should_fail(snowplow_collector):
    tracker = Tracker("bad", Emitter(snowplow_collector.endpoint, batch_size=1))
    tracker.track(StructuredEvent("c", "a", context=[
        SelfDescribingJson("iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
                           {"id": "not-a-uuid"})]))
    assert snowplow_collector.wait_for(1, timeout=10)
    assert snowplow_collector.bad() == [], snowplow_collector.bad()[0].errors
'''

SCHEMA = {"type": "object", "properties": {"total": {"type": "number"}},
          "required": ["total"], "additionalProperties": False}

SCHEMA_SUITE = '''
import pytest
from snowplow_threaded import Emitter, SelfDescribing, SelfDescribingJson, Tracker

def track(collector, schema):
    emitter = Emitter(collector.endpoint, batch_size=1)
    Tracker("s", emitter).track(SelfDescribing(SelfDescribingJson(schema, {"total": 1})))
    assert emitter.flush(10) and collector.wait_for(1, timeout=10)
    emitter.close(5)
    return collector

def test_ini_or_command_line_schemas(snowplow_collector):
    assert track(snowplow_collector, "iglu:com.acme/order/jsonschema/1-0-0").bad() == []

@pytest.mark.snowplow_collector(schemas=["marked"], max_events=1)
def test_marker_schemas(snowplow_collector):
    assert track(snowplow_collector, "iglu:com.acme/refund/jsonschema/1-0-0").bad() == []
    assert snowplow_collector.store.max_events == 1
'''


def write_schema(root: Path, name: str) -> None:
    path = root / "com.acme" / name / "jsonschema" / "1-0-0"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(SCHEMA))


def test_the_fixture_in_a_user_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*test_tracking_that_should_fail*",
                                 "*cx: context 0 (iglu:com.snowplowanalytics.snowplow/"
                                 "web_page/jsonschema/1-0-0) /id: 'not-a-uuid' does not match*"])


def test_schemas_from_ini_command_line_and_marker(pytester: pytest.Pytester) -> None:
    write_schema(pytester.path / "ini", "order")
    write_schema(pytester.path / "cli", "order")
    write_schema(pytester.path / "marked", "refund")
    pytester.makeini("[pytest]\nsnowplow_schemas = ini\n")
    pytester.makepyfile(test_schemas=SCHEMA_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--snowplow-schemas",
                                           str(pytester.path / "cli"))
    result.assert_outcomes(passed=2)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)  # without the directory: unknown schema


def test_the_plugin_is_registered_by_the_package(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*snowplow_collector*", "*A running collector for this test*"])
    markers = pytester.runpytest_subprocess("--markers", "-p", "no:cacheprovider")
    markers.stdout.fnmatch_lines(["*@pytest.mark.snowplow_collector(schemas=None*"])
