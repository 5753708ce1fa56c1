"""Other web sites cannot use the Micro API through a browser: HEAD changes nothing, the
routes that change state refuse cross-site requests, and the Host must be this collector's
(against DNS rebinding); and client text in the log cannot forge or flood lines."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator

import pytest
import requests

from snowplow_threaded.collector import Collector
from tests.test_micro_http import read_response

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


def one_event(collector: Collector) -> None:
    collector.reset()
    assert requests.get(f"{collector.endpoint}/i?e=pv&p=web&tv=t", timeout=10).ok
    assert collector.wait_for(1, timeout=5)


def raw(collector: Collector, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as sock, \
            sock.makefile("rb") as stream:
        sock.sendall(request)
        status, _, body = read_response(stream)
    return status, body


def test_head_does_not_reset(collector: Collector) -> None:
    one_event(collector)
    response = requests.head(collector.endpoint + "/micro/reset", timeout=10)
    assert response.status_code == 405 and response.headers["Allow"] == "GET, POST"
    assert collector.summary().good == 1  # before: HEAD wiped the store


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "https://evil.example:9090"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},  # an <img> or a navigation from another site
])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_cross_site_requests_cannot_reset(collector: Collector, headers: dict[str, str],
                                          method: str) -> None:
    one_event(collector)
    response = requests.request(method, collector.endpoint + "/micro/reset", headers=headers,
                                timeout=10)
    assert response.status_code == 403 and "other web sites" in response.text
    assert collector.summary().good == 1


@pytest.mark.parametrize("headers", [
    {},  # curl, tests, tools: no browser headers
    {"Origin": "http://localhost:3000"},  # your app, on a loopback name
    {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
])
def test_same_site_and_non_browser_resets_work(collector: Collector,
                                               headers: dict[str, str]) -> None:
    one_event(collector)
    response = requests.get(collector.endpoint + "/micro/reset", headers=headers, timeout=10)
    assert response.status_code == 200
    assert collector.summary().good == 0


@pytest.mark.parametrize("route", ["good", "all", "events", "bad", "reset",
                                   "iglu/com.snowplowanalytics.snowplow/web_page/"
                                   "jsonschema/1-0-0"])
def test_dns_rebinding_cannot_read_or_reset(collector: Collector, route: str) -> None:
    one_event(collector)
    status, body = raw(collector, f"GET /micro/{route} HTTP/1.1\r\n"
                                  f"Host: rebind.evil.example:{collector.port}\r\n\r\n".encode())
    assert status == 403 and b"--allow-host rebind.evil.example" in body
    assert collector.summary().good == 1


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:9090", "127.0.0.1", "[::1]:80",
                                  "app.localhost", "10.1.2.3:9090", "[2001:db8::1]"])
def test_ip_addresses_and_localhost_are_this_collector(collector: Collector, host: str) -> None:
    status, _ = raw(collector, f"GET /micro/all HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert status == 200


def test_tracker_routes_take_events_whatever_the_host(collector: Collector) -> None:
    collector.reset()
    status, _ = raw(collector, b"GET /i?e=pv&p=web&tv=t HTTP/1.1\r\n"
                               b"Host: collector.example.com\r\nOrigin: https://shop.example\r\n"
                               b"Sec-Fetch-Site: cross-site\r\n\r\n")
    assert status == 200 and collector.wait_for(1, timeout=5)


def test_allowed_hosts_for_remote_use() -> None:
    with Collector(allowed_hosts=["micro.internal"]) as named, \
            Collector(allowed_hosts=["*"]) as anything:
        for collector, host, expected in ((named, "micro.internal:9090", 200),
                                          (named, "MICRO.internal.", 200),
                                          (named, "other.internal", 403),
                                          (anything, "whatever.example", 200)):
            status, _ = raw(collector, f"GET /micro/all HTTP/1.1\r\nHost: {host}\r\n\r\n"
                            .encode())
            assert status == expected, (host, status)


def test_client_text_in_the_log_is_escaped_and_cut(collector: Collector,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    collector.reset()
    forged = "x\n2024-01-01 00:00:00 ERROR forged line\x1b[31m"
    events = [{"e": "pv", "p": "web", "tv": "t", forged: "1"},
              {"e": "pv", "p": "web", "tv": "t", "k" * 2_000_000: "1"}]
    with caplog.at_level(logging.INFO, logger="snowplow_threaded.collector"):
        for event in events:
            assert requests.post(collector.endpoint + TP2, timeout=30,
                                 json={"schema": PAYLOAD, "data": [event]}).ok
        assert requests.get(f"{collector.endpoint}/i?e=pv&p=web&tv=t&eid=%0Aforged%1B",
                            timeout=10).ok
        assert collector.wait_for(3, timeout=10)
    messages = [r.getMessage() for r in caplog.records if "bad event" in r.getMessage()]
    assert len(messages) == 3
    for message in messages:
        assert "\n" not in message and "\x1b" not in message, message[:300]
        assert len(message) < 1_000  # before: a 2 MB line
    assert "\\x0a" in messages[0] and "forged line" in messages[0]


def test_error_rows_cut_what_a_client_sent(collector: Collector) -> None:
    collector.reset()
    event = {"e": "pv", "p": "web", "tv": "t", "k" * 2_000_000: "1", "eid": str(uuid.uuid4())}
    assert requests.post(collector.endpoint + TP2, timeout=30,
                         json={"schema": PAYLOAD, "data": [event]}).ok
    assert collector.wait_for(1, timeout=10)
    [bad] = collector.bad()
    assert all(len(error) <= 1_100 for error in bad.errors), [len(e) for e in bad.errors]
