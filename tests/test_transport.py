"""Transport: post_bodies splitting (no network) and Transport.send against the embedded
collector and its fault rules."""

from __future__ import annotations

import json
import time
import types

import pytest

from snowplow_threaded.collector import Collector
from snowplow_threaded.record import Record, payload_of, record_of
from snowplow_threaded.retry import NO_RESPONSE
from snowplow_threaded.transport import (
    PAYLOAD_DATA_SCHEMA,
    USER_AGENT,
    Transport,
    post_bodies,
    sent_timestamp,
)
from tests.helpers import TP2


def records(n: int, pad: int = 0) -> list[Record]:
    return [record_of({"e": "se", "eid": f"id-{i}", "se_la": str(i) + "x" * (i % 7) * pad})
            for i in range(n)]


def decode(body: bytes) -> list[str]:
    doc = json.loads(body)
    assert doc["schema"] == PAYLOAD_DATA_SCHEMA
    return [event["eid"] for event in doc["data"]]


# -- post_bodies (no network) ----------------------------------------------------------------


@pytest.mark.parametrize("max_bytes", [1, 200, 333, 1000, 5000, 10**9])
@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_post_bodies_split_keeps_order_and_every_event_once(max_bytes: int, n: int) -> None:
    recs = records(n, pad=9)
    bodies = post_bodies(recs, "123", max_bytes)
    eids = [eid for _, body in bodies for eid in decode(body)]
    assert eids == [payload_of(r)["eid"] for r in recs]
    assert [count for count, _ in bodies] == [len(decode(body)) for _, body in bodies]
    for count, body in bodies:
        assert len(body) <= max_bytes or count == 1
        assert all(e["stm"] == "123" for e in json.loads(body)["data"])


def test_post_bodies_one_body_when_it_fits() -> None:
    recs = records(10)
    bodies = post_bodies(recs, "1", 10**6)
    assert len(bodies) == 1 and bodies[0][0] == 10
    doc = json.loads(bodies[0][1])
    assert doc["data"] == [{**payload_of(r), "stm": "1"} for r in recs]


def test_post_bodies_are_utf8_and_limited_in_bytes() -> None:
    """Non-ASCII text goes out as UTF-8 (shorter than \\u escapes); the size limit counts
    bytes, not characters."""
    recs = [record_of({"e": "se", "eid": "a", "se_la": "café ☕ 🚀"})]
    (_count, body), = post_bodies(recs, "1", 10**6)
    assert "café ☕ 🚀".encode() in body
    assert json.loads(body)["data"][0]["se_la"] == "café ☕ 🚀"
    wide = [record_of({"e": "se", "eid": str(i), "se_la": "☕" * 100})  # 300 bytes each
            for i in range(4)]
    one = len(post_bodies(wide[:1], "1", 10**6)[0][1])
    bodies = post_bodies(wide, "1", 2 * one)  # fits two events by bytes, not by characters
    assert [count for count, _ in bodies] == [2, 2]
    assert all(len(body) <= 2 * one for _, body in bodies)


def test_sent_timestamp_is_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    before = time.time() * 1000
    stm = int(sent_timestamp())
    assert before - 1 <= stm <= time.time() * 1000 + 1
    # not truncated to seconds, as the reference's is (a fixed clock: the real one may
    # land on a whole second)
    import snowplow_threaded.transport as transport_module

    clock = types.SimpleNamespace(time_ns=lambda: 1_700_000_000_123_456_789)
    monkeypatch.setattr(transport_module, "_time_ns", clock.time_ns)
    assert sent_timestamp() == "1700000000123"


# -- Transport.send over real HTTP -----------------------------------------------------------


def post_transport(c: Collector, max_bytes: int = 10**6) -> Transport:
    return Transport(c.endpoint + TP2, "post", 0.5, max_request_bytes=max_bytes)


def test_post_success(collector: Collector) -> None:
    t = post_transport(collector)
    try:
        result = t.send(records(5), "42")
    finally:
        t.close()
    assert result.status == 200 and result.delivered == result.done == 5
    assert not result.refused
    assert result.requests == 1 and result.nbytes == len(collector.requests()[0].body)
    req = collector.requests()[0]
    assert req.headers["content-type"] == "application/json; charset=utf-8"
    assert req.headers["user-agent"] == USER_AGENT
    assert [e["stm"] for e in req.events] == ["42"] * 5


def test_post_split_stops_at_first_failure(collector: Collector) -> None:
    collector.faults(503, retry_after=7, after=1, times=1)
    t = post_transport(collector, max_bytes=400)
    recs = records(8)
    try:
        result = t.send(recs, "1")
    finally:
        t.close()
    first = collector.requests()[0].events
    assert len(collector.requests()) == 2  # nothing more after the failure
    assert result.status == 503 and result.retry_after == 7.0 and result.error == "HTTP 503"
    assert result.delivered == result.done == len(first) < 8


def test_post_no_response(collector: Collector) -> None:
    collector.down()
    t = post_transport(collector)
    try:
        result = t.send(records(2), "1")
    finally:
        t.close()
    assert result.status == NO_RESPONSE and result.done == 0
    assert result.error is not None and "ConnectionError" in result.error


def test_redirect_is_not_followed(collector: Collector) -> None:
    collector.faults(302, headers={"Location": collector.endpoint + "/elsewhere" + TP2})
    t = post_transport(collector)
    try:
        result = t.send(records(2), "1")
    finally:
        t.close()
    assert result.status == 302 and result.done == 0
    assert [r.path for r in collector.requests()] == [TP2]


def test_garbage_retry_after_does_not_raise(collector: Collector) -> None:
    collector.faults(503, retry_after="\u00b2")
    t = post_transport(collector)
    try:
        result = t.send(records(1), "1")
    finally:
        t.close()
    assert result.status == 503 and result.retry_after is None


def test_get_one_request_per_event_and_partial_failure(collector: Collector) -> None:
    collector.faults(500, after=2, times=1)
    t = Transport(collector.endpoint + "/i", "get", 0.5)
    recs = records(5)
    try:
        result = t.send(recs, "9")
    finally:
        t.close()
    reqs = collector.requests()
    assert [r.method for r in reqs] == ["GET"] * 3  # stops at the failure
    assert [r.query["eid"] for r in reqs] == ["id-0", "id-1", "id-2"]
    assert all(r.query["stm"] == "9" for r in reqs)
    assert result.delivered == result.done == 2 and result.status == 500
    assert result.requests == 3


def test_get_connection_error(collector: Collector) -> None:
    collector.down()
    t = Transport(collector.endpoint + "/i", "get", 0.5)
    try:
        result = t.send(records(3), "9")
    finally:
        t.close()
    assert result.status == NO_RESPONSE and result.done == 0


def test_sessions_keep_no_cookies(collector: Collector) -> None:
    collector.faults(headers={"Set-Cookie": "sp=abc; Path=/"})
    t = post_transport(collector)
    try:
        t.send(records(1), "1")
        t.send(records(1), "1")
    finally:
        t.close()
    assert "cookie" not in collector.requests()[1].headers


@pytest.mark.parametrize("idle", [0.05, 1.2])
def test_idle_connection_closed_by_the_collector_is_replaced(collector: Collector,
                                                             idle: float) -> None:
    """A keep-alive connection the collector dropped is detected before reuse, right after
    a request (from the TCP state) or after a longer idleness (by a poll): the next send
    goes out on a new connection and succeeds (no failure, no retry)."""
    t = post_transport(collector)
    try:
        assert t.send(records(1), "1").delivered == 1
        collector.down()  # drops every open connection
        collector.up()
        time.sleep(idle)
        result = t.send(records(2), "2")
    finally:
        t.close()
    assert result.error is None and result.delivered == 2
    assert len(collector.requests()) == 2


@pytest.mark.parametrize("method", ["post", "get"])
def test_connection_close_and_bodies_are_handled(collector: Collector, method: str) -> None:
    """Replies with a body, and replies that close the connection: each request still gets
    its own answer and the next one opens a new connection when needed."""
    collector.faults(body=b"ok" * 100, times=1)
    collector.faults(close="after-response", after=1, times=1)
    collector.faults(body=b"x", after=2, times=1)
    collector.faults(close="after-response", after=3)
    url = collector.endpoint + TP2 if method == "post" else collector.endpoint + "/i"
    t = Transport(url, method, 0.5)
    try:
        results = [t.send(records(1), str(n)) for n in range(5)]
    finally:
        t.close()
    assert [r.delivered for r in results] == [1] * 5 and all(r.error is None for r in results)
    assert len(collector.requests()) == 5


def test_connect_failure_is_known_not_received(collector: Collector) -> None:
    collector.down()
    t = post_transport(collector)
    try:
        result = t.send(records(1), "1")
    finally:
        t.close()
    assert result.status == NO_RESPONSE and not result.maybe_received
    assert result.error is not None and result.error.startswith("ConnectionError")
