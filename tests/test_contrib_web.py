"""Unit tests of the framework-independent contrib pieces: the trusted-proxy client IP,
settings parsing, the request subject applied as an event subject, the request event, and
the shipped schemas (package data, custom vendor written out)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from snowplow_threaded import Emitter, StructuredEvent, Subject, Tracker
from snowplow_threaded.collector import Collector
from snowplow_threaded.contrib import schemas
from snowplow_threaded.contrib.config import (
    E_EMITTER,
    E_ENDPOINT,
    E_MISSING,
    E_UNKNOWN_KEY,
    E_VALUE,
    ConfigError,
    parse_config,
)
from snowplow_threaded.contrib.web import (
    TrustedProxies,
    parse_ip,
    request_event,
    request_subject,
    with_subject,
)
from tests.helpers import accepted_events
from tests.schemas import unstruct_event

# -- client IP ---------------------------------------------------------------------------


def test_no_trusted_proxy_ignores_forwarded_for() -> None:
    proxies = TrustedProxies()
    assert proxies.client_ip("10.0.0.5", "6.6.6.6") == "10.0.0.5"
    assert proxies.client_ip("10.0.0.5", None) == "10.0.0.5"
    assert proxies.client_ip(None, "6.6.6.6") is None
    assert proxies.client_ip("", None) is None


@pytest.mark.parametrize(
    ("hops", "xff", "expected"),
    [
        (1, "1.2.3.4", "1.2.3.4"),
        (1, "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # the client's spoofed entry is left of ours
        (2, "6.6.6.6, 1.2.3.4, 10.0.0.1", "1.2.3.4"),
        (2, "1.2.3.4", "10.0.0.9"),  # fewer entries than hops: header not trusted
        (1, "garbage", "10.0.0.9"),  # our proxy's entry is not an IP: the peer
        (2, "1.2.3.4, unknown", "1.2.3.4"),  # the inner proxy could not name the outer
        (2, "unknown, 10.0.0.1", "10.0.0.1"),  # nearest valid address right of the client
        (1, "1.2.3.4:5678", "1.2.3.4"),
        (1, "[2001:db8::1]:443", "2001:db8::1"),
        (1, "::ffff:1.2.3.4", "1.2.3.4"),
        (1, " 1.2.3.4 ", "1.2.3.4"),
    ],
)
def test_hops(hops: int, xff: str, expected: str) -> None:
    assert TrustedProxies(hops=hops).client_ip("10.0.0.9", xff) == expected


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("10.0.0.9", "1.2.3.4", "1.2.3.4"),
        ("10.0.0.9", "6.6.6.6, 1.2.3.4, 10.0.0.1", "1.2.3.4"),  # walks our proxies only
        ("10.0.0.9", "10.0.0.3, 10.0.0.1", "10.0.0.3"),  # all trusted: the leftmost
        ("8.8.8.8", "1.2.3.4", "8.8.8.8"),  # untrusted peer: header ignored
        ("10.0.0.9", "junk, 10.0.0.1", "10.0.0.1"),
        ("::1", "2001:db8::7", "2001:db8::7"),
        ("::ffff:10.0.0.9", "1.2.3.4", "1.2.3.4"),
    ],
)
def test_networks(peer: str, xff: str, expected: str) -> None:
    proxies = TrustedProxies.parse(["10.0.0.0/8", "::1"])
    assert proxies.client_ip(peer, xff) == expected


def test_trusted_proxies_parse() -> None:
    assert TrustedProxies.parse(None) == TrustedProxies()
    assert TrustedProxies.parse(2) == TrustedProxies(hops=2)
    assert TrustedProxies.parse("10.0.0.0/8, 127.0.0.1").networks[1].num_addresses == 1
    for bad in (-1, "not-a-net", ["10.0.0.0/8", 3], 1.5, True):
        with pytest.raises((TypeError, ValueError)):
            TrustedProxies.parse(bad)


def test_parse_ip() -> None:
    assert str(parse_ip("1.2.3.4")) == "1.2.3.4"
    assert parse_ip("1.2.3") is None
    assert parse_ip("unix:/tmp/sock") is None
    assert parse_ip(None) is None


# -- settings ----------------------------------------------------------------------------


def test_parse_defaults_and_values() -> None:
    config = parse_config({"endpoint": "http://127.0.0.1:9"}, default_namespace="ns")
    assert (config.namespace, config.method, config.platform) == ("ns", "post", "srv")
    assert config.request_events == "off" and config.trusted_proxies == TrustedProxies()
    config = parse_config({
        "endpoint": "collector.example.com", "namespace": "web", "app_id": "a",
        "method": "get", "platform": "web", "encode_base64": False,
        "emitter": {"batch_size": 5, "flush_interval": 0.2, "custom_retry_codes": {500: False}},
        "trusted_proxies": 1, "request_events": "page_view", "ignore_paths": ["/health"],
        "schema_vendor": "com.acme",
    }, default_namespace="ns")
    assert config.emitter.batch_size == 5 and config.emitter.custom_retry_codes == {500: False}
    assert (config.method, config.request_events, config.ignore_paths) == (
        "get", "page_view", ("/health",))
    assert config.trusted_proxies.hops == 1 and config.schema_vendor == "com.acme"


def test_parse_reports_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({
            "endpoint": "ftp://x", "namespace": "", "emitter": {"batch_size": 0, "nope": 1},
            "request_events": "all", "trusted_proxies": "x/99", "colour": "red",
            "schema_vendor": "bad vendor", "ignore_paths": ["health"],
        }, default_namespace="ns", spell=lambda k: f"SNOWPLOW_{k.upper()}")
    codes = sorted((p.code, p.key) for p in info.value.problems)
    assert codes == sorted([
        (E_UNKNOWN_KEY, "SNOWPLOW_COLOUR"), (E_ENDPOINT, "SNOWPLOW_ENDPOINT"),
        (E_VALUE, "SNOWPLOW_NAMESPACE"), (E_EMITTER, "SNOWPLOW_EMITTER"),
        (E_EMITTER, "SNOWPLOW_EMITTER"), (E_VALUE, "SNOWPLOW_REQUEST_EVENTS"),
        (E_VALUE, "SNOWPLOW_TRUSTED_PROXIES"), (E_VALUE, "SNOWPLOW_SCHEMA_VENDOR"),
        (E_VALUE, "SNOWPLOW_IGNORE_PATHS"),
    ])
    assert "batch_size" in str(info.value) and "nope" in str(info.value)


def test_parse_missing_settings_and_endpoint() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(None, default_namespace="ns")
    assert [p.code for p in info.value.problems] == [E_MISSING]
    with pytest.raises(ConfigError) as info:
        parse_config({}, default_namespace="ns")
    assert [p.code for p in info.value.problems] == [E_ENDPOINT]
    assert parse_config({}, default_namespace="ns", require_endpoint=False).endpoint == ""


def test_build_tracker_honours_settings(collector: Collector) -> None:
    config = parse_config({"endpoint": collector.endpoint, "app_id": "a", "platform": "web",
                           "encode_base64": False, "emitter": {"batch_size": 1}},
                          default_namespace="ns")
    tracker = config.build_tracker()
    try:
        tracker.track(StructuredEvent("c", "a"))
        assert tracker.flush(timeout=5)
    finally:
        tracker.close(2)
    [event] = accepted_events(collector)
    assert (event["tna"], event["aid"], event["p"]) == ("ns", "a", "web")


# -- subject and events ------------------------------------------------------------------


def test_with_subject_is_request_local_and_does_not_modify_the_event(
        collector: Collector) -> None:
    tracker = Tracker("t", Emitter(collector.endpoint, batch_size=1),
                      subject=Subject().set_platform("srv").set_lang("en"))
    own = Subject().set_user_id("explicit")
    event = StructuredEvent("c", "a", event_subject=own)
    try:
        tracker.track(with_subject(event, request_subject("1.2.3.4", "UA/1", "alice")))
        tracker.track(with_subject(StructuredEvent("c", "b"),
                                   request_subject("5.6.7.8", None, None)))
        assert tracker.flush(timeout=5)
    finally:
        tracker.close(2)
    assert event.event_subject is own and own.explicit_nv_pairs == {"uid": "explicit"}
    first, second = sorted(accepted_events(collector), key=lambda e: e["se_ac"])
    assert (first["ip"], first["ua"], first["uid"], first["p"], first["lang"]) == (
        "1.2.3.4", "UA/1", "explicit", "srv", "en")
    assert second["ip"] == "5.6.7.8" and "ua" not in second and "uid" not in second
    assert tracker.subject is not None and "ip" not in tracker.subject.explicit_nv_pairs
    assert with_subject(event, None) is event


def test_request_event_payload() -> None:
    tracker = Tracker("t", Emitter("http://localhost"), encode_base64=False)
    event = request_event("GET", "/x" * 3000, 200, -1.0, route="/x", vendor="com.acme")
    payload = tracker.complete_payload(event).nv_pairs
    inner = unstruct_event(payload)
    assert inner is not None
    assert inner["schema"] == "iglu:com.acme/request/jsonschema/1-0-0"
    data = inner["data"]
    assert len(data["path"]) == 2048 and data["duration_ms"] == 0.0
    assert (data["method"], data["status"], data["route"]) == ("GET", 200, "/x")
    Draft4Validator(schemas.load_schema("request", "com.acme")).validate(data)


# -- schemas -----------------------------------------------------------------------------


def test_shipped_schemas_are_valid_iglu_documents() -> None:
    for name in schemas.NAMES:
        document = schemas.load_schema(name)
        Draft4Validator.check_schema(document)
        assert document["self"] == {"vendor": schemas.DEFAULT_VENDOR, "name": name,
                                    "format": "jsonschema", "version": "1-0-0"}
        assert document["additionalProperties"] is False
        assert schemas.schema_uri(name) == (
            f"iglu:{schemas.DEFAULT_VENDOR}/{name}/jsonschema/1-0-0")


def test_write_schemas_under_a_custom_vendor(tmp_path: Path) -> None:
    written = schemas.write_schemas(tmp_path, vendor="com.acme")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(
        f"com.acme/{n}/jsonschema/1-0-0" for n in schemas.NAMES)
    doc = json.loads((tmp_path / "com.acme/task_failed/jsonschema/1-0-0").read_text())
    assert doc["self"]["vendor"] == "com.acme"
    assert "exception_type" in doc["required"]
    with pytest.raises(ValueError):
        schemas.write_schemas(tmp_path, vendor="../etc")
    with pytest.raises(ValueError):
        schemas.schema_uri("nope")


def test_core_and_shared_contrib_modules_import_no_framework() -> None:
    code = ("import sys, threading, snowplow_threaded, snowplow_threaded.contrib.config, "
            "snowplow_threaded.contrib.web, snowplow_threaded.contrib.schemas, "
            "snowplow_threaded.contrib.django\n"
            "loaded = {'flask', 'django', 'celery'} & set(sys.modules)\n"
            "assert not loaded, loaded\n"
            "assert threading.active_count() == 1, threading.enumerate()\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
