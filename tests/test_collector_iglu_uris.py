"""Iglu schema URIs from clients: one strict parser (``parse_schema_uri``) guards both the
resolver and ``GET /micro/iglu/...``. Nothing a client names reads a file outside the schema
directories, an over-long or odd URI makes that event bad (never the request a 500), the
URI caches stay bounded, and no error message shows where schemas live on disk."""

from __future__ import annotations

import gc
import http.client
import json
import uuid
import weakref
from pathlib import Path

import pytest
import requests

from snowplow_threaded.collector import (
    Collector,
    InvalidSchemaURI,
    Resolver,
    SchemaKey,
    SchemaUnavailable,
    parse_schema_uri,
)
from snowplow_threaded.collector import iglu as iglu_module

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
UNSTRUCT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
SECRET = {"self": {"vendor": "..", "name": "outside", "format": "jsonschema",
                   "version": "1-0-0"}, "type": "object"}

BAD_URIS = [
    "iglu:../outside/jsonschema/1-0-0",
    "iglu:./outside/jsonschema/1-0-0",
    "iglu:com..acme/outside/jsonschema/1-0-0",
    "iglu:.acme/outside/jsonschema/1-0-0",
    "iglu:acme./outside/jsonschema/1-0-0",
    "iglu:/etc/outside/jsonschema/1-0-0",
    "iglu:%2e%2e/outside/jsonschema/1-0-0",
    "iglu:com.acme/%2e%2e/jsonschema/1-0-0",
    "iglu:com.acme/a\x00b/jsonschema/1-0-0",
    "iglu:com.acme\\..\\x/jsonschema/1-0-0",
    "iglu:com.acme/x/jsonschema/1-0-0\n",
    "iglu:com.acme/x/jsonschema/1-0-0/../../y",
    "iglu:com.acme/x/jsonschema/0-0-0",
    "iglu:com.acme/x/jsonschema/01-0-0",
    "iglu:com.acme/x/jsonschema/1-0",
    "iglu:com.acme/x/jsonschema/\u0661-0-0",  # an Arabic-Indic digit
    "iglu:" + "v" * 256 + "/x/jsonschema/1-0-0",
    "iglu:com.acme/x/jsonschema/" + "1" * 5000 + "-0-0",
    "iglu:com.acme/" + "n" * 300 + "/jsonschema/1-0-0",
    "iglu:com.acme/x/jsonschema/1-0-0" + "x" * 2_000_000,
]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A schema directory, with a schema file next to (outside) it that `..` would reach."""
    schemas = tmp_path / "schemas"
    (schemas / "com.acme" / "ok" / "jsonschema").mkdir(parents=True)
    (schemas / "com.acme" / "ok" / "jsonschema" / "1-0-0").write_text(json.dumps(
        {"self": {"vendor": "com.acme", "name": "ok", "format": "jsonschema",
                  "version": "1-0-0"}, "type": "object"}))
    (tmp_path / "outside" / "jsonschema").mkdir(parents=True)
    (tmp_path / "outside" / "jsonschema" / "1-0-0").write_text(json.dumps(SECRET))
    return schemas


@pytest.mark.parametrize("uri", BAD_URIS)
def test_strict_parser_rejects(uri: str) -> None:
    with pytest.raises(InvalidSchemaURI) as caught:
        parse_schema_uri(uri)
    assert len(str(caught.value)) < 400  # the reason names the URI, cut
    assert "\x00" not in str(caught.value) and "\n" not in str(caught.value)
    assert SchemaKey.parse(uri) is None


@pytest.mark.parametrize("uri", [
    "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
    "iglu:com.acme_inc-2/my_Event-x/jsonschema/10-20-300",
    "iglu:a/b/c/1-0-0",
])
def test_strict_parser_accepts(uri: str) -> None:
    key = parse_schema_uri(uri)
    assert key.uri == uri


def test_resolver_never_reads_outside_its_directories(outside: Path) -> None:
    resolver = Resolver([outside])
    assert resolver.validator("iglu:com.acme/ok/jsonschema/1-0-0").is_valid({})
    for uri in BAD_URIS:
        with pytest.raises(SchemaUnavailable) as caught:
            resolver.validator(uri)
        assert str(outside) not in str(caught.value)
        assert "outside" not in str(caught.value) or "not a valid Iglu" in str(caught.value)


def test_resolver_messages_show_no_absolute_paths(outside: Path) -> None:
    broken = outside / "com.acme" / "broken" / "jsonschema"
    broken.mkdir(parents=True)
    (broken / "1-0-0").write_text("{not json")
    (broken / "1-0-1").write_text(json.dumps({"self": {"vendor": "x", "name": "y",
                                                       "format": "jsonschema",
                                                       "version": "1-0-0"}}))
    (broken / "1-0-2").write_text(json.dumps({"type": "nonsense"}))
    resolver = Resolver([outside])
    for uri in ("iglu:com.acme/broken/jsonschema/1-0-0", "iglu:com.acme/broken/jsonschema/1-0-1",
                "iglu:com.acme/broken/jsonschema/1-0-2", "iglu:com.acme/missing/jsonschema/1-0-0"):
        with pytest.raises(SchemaUnavailable) as caught:
            resolver.validator(uri)
        message = str(caught.value)
        assert str(outside.parent) not in message, message
        assert str(iglu_module.BUNDLED_DIR) not in message, message
        assert uri in message


def test_micro_iglu_route_rejects_traversal(outside: Path) -> None:
    with Collector(schemas=[outside]) as collector:
        ok = requests.get(collector.endpoint + "/micro/iglu/com.acme/ok/jsonschema/1-0-0",
                          timeout=5)
        assert ok.status_code == 200 and ok.json()["self"]["name"] == "ok"
        for tail in ("../outside/jsonschema/1-0-0", "%2e%2e/outside/jsonschema/1-0-0",
                     "%2E%2E/outside/jsonschema/1-0-0", "com.acme/ok%00/jsonschema/1-0-0",
                     "v" * 300 + "/x/jsonschema/1-0-0",
                     "com.acme/x/jsonschema/" + "9" * 5000 + "-0-0"):
            status, text = _raw_get(collector, f"/micro/iglu/{tail}")  # `..` as sent
            assert status == 400, (tail, status)
            assert "not a valid Iglu schema URI" in text
            assert str(outside.parent) not in text
        assert collector.stats()["errors"].get(500) is None


def _raw_get(collector: Collector, target: str) -> tuple[int, str]:
    """GET *target* exactly as given (HTTP clients would normalise ``..`` away)."""
    connection = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=5)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def _post(collector: Collector, events: list[dict[str, str]]) -> requests.Response:
    return requests.post(collector.endpoint + TP2, json={"schema": PAYLOAD, "data": events},
                         timeout=10)


def _ue(schema: str) -> dict[str, str]:
    envelope = {"schema": UNSTRUCT, "data": {"schema": schema, "data": {}}}
    return {"e": "ue", "p": "web", "tv": "t", "eid": str(uuid.uuid4()),
            "ue_pr": json.dumps(envelope)}


def test_invalid_schema_uris_make_that_event_bad_never_the_request_a_500(
        outside: Path) -> None:
    with Collector(schemas=[outside]) as collector:
        valid = {"e": "pv", "p": "web", "tv": "t", "eid": str(uuid.uuid4())}
        events = [valid, *(_ue(uri) for uri in BAD_URIS)]
        response = _post(collector, events)
        assert response.status_code == 200
        summary = collector.summary()
        assert (summary.received_good, summary.received_bad) == (1, len(BAD_URIS))
        for bad in collector.bad():  # the wrapper's own pattern, or the strict parser
            assert ("not a valid Iglu schema URI" in bad.errors[0]
                    or ("/schema: " in bad.errors[0] and "does not match" in bad.errors[0]))
            assert str(outside.parent) not in bad.errors[0]
        assert requests.get(collector.endpoint + "/micro/bad", timeout=10).status_code == 200


def test_schema_uri_caches_stay_small() -> None:
    """Clients choose schema strings: at most a bounded number of short ones is cached."""
    iglu_module._parse.cache_clear()
    for i in range(50):
        SchemaKey.parse(f"iglu:com.acme/x/jsonschema/1-0-{i}" + "x" * 1_000_000)
    assert iglu_module._parse.cache_info().currsize == 0
    resolver = Resolver()
    for i in range(3000):
        with pytest.raises(SchemaUnavailable):
            resolver.validator(f"iglu:com.acme/unknown/jsonschema/1-0-{i}")
    assert len(resolver._cache) <= 1024 + len(resolver.known())


def test_a_cached_miss_keeps_no_frames_alive() -> None:
    """The resolver caches its misses; raising the cached exception again set its
    traceback, so up to 1 024 of them kept the frames that asked (and the request being
    judged there) alive."""
    resolver = Resolver()

    class Big:
        pass

    def ask() -> weakref.ref[Big]:
        held = Big()  # a local of the asking frame, like the request being judged
        with pytest.raises(SchemaUnavailable):
            resolver.validator("iglu:com.acme/missing/jsonschema/1-0-0")
        return weakref.ref(held)

    first, second = ask(), ask()
    gc.collect()
    assert first() is None and second() is None
