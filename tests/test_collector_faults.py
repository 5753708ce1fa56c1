"""Fault rules of the embedded collector (snowplow_threaded/collector/faults.py): which
request a rule picks (no network), what each fault does over real HTTP, the command-line
option and the pytest plugin's marker."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from snowplow_threaded import Emitter, StructuredEvent, Tracker
from snowplow_threaded.collector import Collector, Fault, Faults
from snowplow_threaded.collector.faults import parse_fault
from tests.helpers import docs_block

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def body(n: int = 1, tag: str = "x") -> dict[str, Any]:
    return {"schema": PAYLOAD, "data": [{"e": "pv", "p": "srv", "tv": "t", "url": f"{tag}{i}"}
                                        for i in range(n)]}


def post(session: requests.Session, c: Collector, n: int = 1, tag: str = "x",
         timeout: float = 5) -> requests.Response:
    return session.post(c.endpoint + TP2, json=body(n, tag), timeout=timeout)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


# -- which request gets which fault (no network) -----------------------------------------------


def pick(faults: Faults, n: int) -> list[int | None]:
    """The status of the fault each of *n* requests would get (0: a fault with no status)."""
    out: list[int | None] = []
    for _ in range(n):
        fault = faults.next_fault()
        out.append(None if fault is None else fault.status or 0)
    return out


def test_times_every_and_after() -> None:
    faults = Faults()
    faults(503, times=2)
    assert pick(faults, 4) == [503, 503, None, None]
    assert faults.rules == []  # used up: dropped
    faults(500, every=3)
    assert pick(faults, 7) == [None, None, 500, None, None, 500, None]
    faults.clear()
    faults(429, after=2, every=2, times=2)
    assert pick(faults, 9) == [None, None, None, 429, None, 429, None, None, None]


def test_the_first_rule_due_applies_and_the_others_keep_their_times() -> None:
    faults = Faults()
    first = faults(500, every=2)
    second = faults(503, times=2)
    assert pick(faults, 5) == [503, 500, 503, 500, None]
    assert (first.applied, second.applied, second.done) == (2, 2, True)
    faults.remove(first)
    faults.remove(first)  # no-op
    assert pick(faults, 2) == [None, None]


def test_a_sequence_of_answers_is_a_rule_per_request() -> None:
    faults = Faults()
    faults(500, times=1)
    faults(delay=0.5, after=1, times=1)
    faults(503, after=3, times=1)
    assert pick(faults, 5) == [500, 0, None, 503, None]


@pytest.mark.parametrize("kwargs", [
    {"status": 199}, {"status": 600}, {"status": True}, {"status": "503"},
    {"delay": -1}, {"delay": float("nan")}, {"reset": "after"}, {"close": "before"},
    {"reset": "before", "close": "after-head"}, {"reset": "before", "status": 500},
    {"retry_after": -1}, {"headers": (("X-A", "b\r\nInjected: 1"),)},
])
def test_a_fault_that_makes_no_sense_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Fault(**kwargs)


@pytest.mark.parametrize("kwargs", [{"times": 0}, {"every": 0}, {"after": -1},
                                    {"times": 1.5}, {"carrying": {}},
                                    {"carrying": {"url": 7}}])
def test_a_schedule_that_makes_no_sense_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Faults()(503, **kwargs)


def test_command_line_rules_are_parsed_and_checked() -> None:
    assert parse_fault("status=503, times=3") == {"status": 503, "times": 3}
    assert parse_fault("status=429,retry-after=2,every=5") == {
        "status": 429, "retry_after": 2.0, "every": 5}
    assert parse_fault("retry_after=Wed, status=503") == {"retry_after": "Wed",
                                                          "status": 503}
    assert parse_fault("delay=1.5,after=2") == {"delay": 1.5, "after": 2}
    assert parse_fault("reset=mid-response") == {"reset": "mid-response"}
    assert parse_fault("close=after-head,body=hi") == {"close": "after-head", "body": b"hi"}
    for bad in ("", "status", "status=abc", "colour=red", "reset=sometimes", "times=0"):
        with pytest.raises(ValueError):
            parse_fault(bad)


# -- what each fault does, over HTTP -----------------------------------------------------------


def test_status_retry_after_headers_and_body(collector: Collector,
                                             session: requests.Session) -> None:
    collector.faults(503, retry_after=2.0, headers={"X-Why": "flaky"}, times=1)
    collector.faults(429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT", times=1)
    collector.faults(202, body=b"fine", times=1)
    first, second, third, fourth = (post(session, collector, tag=str(i)) for i in range(4))
    assert (first.status_code, first.headers["Retry-After"]) == (503, "2")
    assert first.headers["X-Why"] == "flaky"
    assert (second.status_code, second.headers["Retry-After"]) == (
        429, "Wed, 21 Oct 2015 07:28:00 GMT")
    assert (third.status_code, third.content) == (202, b"fine")
    assert fourth.status_code == 200 and "Retry-After" not in fourth.headers
    # 3xx-5xx: the events are not taken; a 2xx status: they are
    assert [g.parameters["url"] for g in collector.good()] == ["20", "30"]
    assert [(r.status, r.accepted) for r in collector.requests()] == [
        (503, False), (429, False), (202, True), (200, True)]
    assert collector.requests()[0].fault == Fault(503, 2.0, (("X-Why", "flaky"),))
    assert session.get(collector.endpoint + "/micro/all", timeout=5).ok  # the API is spared


def test_a_rule_carrying_an_event_refuses_only_the_requests_that_carry_it(
        collector: Collector, session: requests.Session) -> None:
    """A poison event: every request that carries an event with those fields is refused
    (POST of several events or GET), the others are served; ``times`` and ``every``
    count the requests that carry it."""
    collector.faults(400, carrying={"url": "x1"})
    collector.faults(503, carrying={"url": "y0", "e": "pv"}, times=1)
    statuses = [post(session, collector, n=3).status_code,  # x0 x1 x2
                post(session, collector, n=1).status_code,  # x0
                post(session, collector, n=2, tag="y").status_code,  # y0 y1: once
                post(session, collector, n=2, tag="y").status_code,
                session.get(collector.endpoint + "/i", params={
                    "e": "pv", "p": "web", "tv": "t", "url": "x1"}, timeout=5).status_code]
    assert statuses == [400, 200, 503, 200, 400]
    assert [g.parameters["url"] for g in collector.good()] == ["x0", "y0", "y1"]


def test_every_nth_on_get_requests(collector: Collector, session: requests.Session) -> None:
    collector.faults(500, every=3)
    statuses = [session.get(collector.endpoint + "/i", params={"e": "pv", "p": "web",
                                                               "tv": "t", "url": str(i)},
                            timeout=5).status_code for i in range(6)]
    assert statuses == [200, 200, 500, 200, 200, 500]
    assert [g.parameters["url"] for g in collector.good()] == ["0", "1", "3", "4"]


def test_a_delayed_answer_takes_the_events_when_it_is_sent(
        collector: Collector, session: requests.Session) -> None:
    collector.faults(delay=0.4, times=1)
    answers: list[requests.Response] = []
    client = threading.Thread(target=lambda: answers.append(post(session, collector)))
    started = time.monotonic()
    client.start()
    assert collector.wait_until(lambda: collector.in_flight == 1, timeout=5)
    assert collector.summary().received_good == 0 and collector.requests() == []
    client.join(10)
    assert answers[0].status_code == 200 and time.monotonic() - started >= 0.4
    assert collector.in_flight == 0 and collector.summary().received_good == 1
    [record] = collector.requests()
    assert record.answered_at is not None and record.answered_at - record.received_at >= 0.4


def test_requests_pipelined_behind_a_delayed_one_wait_their_turn(collector: Collector) -> None:
    collector.faults(delay=0.3, times=1)
    content = json.dumps(body()).encode()
    one = (f"POST {TP2} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(content)}\r\n\r\n").encode() + content
    with socket.create_connection(("127.0.0.1", collector.port), timeout=5) as sock:
        sock.sendall(one * 3)
        reply = b""
        while reply.count(b"HTTP/1.1 200 OK") < 3:
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
    records = collector.requests()
    assert [r.index for r in records] == [0, 1, 2]
    assert records[0].answered_at is not None and records[1].answered_at is not None
    assert records[1].answered_at >= records[0].answered_at
    assert {r.connection for r in records} == {records[0].connection}


def test_reset_before_the_answer(collector: Collector, session: requests.Session) -> None:
    collector.faults(reset="before", times=1)
    with pytest.raises(requests.exceptions.ConnectionError, match="reset"):
        post(session, collector)
    assert post(session, collector, tag="y").status_code == 200  # the session reconnects
    first, second = collector.requests()
    assert (first.status, first.outcome, first.accepted) == (None, "reset", False)
    assert first.events[0]["url"] == "x0"  # what was sent is recorded all the same
    assert [g.parameters["url"] for g in collector.good()] == ["y0"]
    assert second.connection != first.connection
    assert 503 not in collector.stats()["errors"]  # a reset sends no status


@pytest.mark.parametrize("status", [None, 503])
def test_reset_in_the_middle_of_the_answer(collector: Collector, session: requests.Session,
                                           status: int | None) -> None:
    collector.faults(status, reset="mid-response", times=1)
    with pytest.raises((requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ConnectionError)):
        post(session, collector)
    [record] = collector.requests()
    assert record.outcome == "reset-mid-response" and record.status == (status or 200)
    # the collector took the events (it was answering 200) unless it was refusing them
    assert collector.summary().received_good == (0 if status else 1)


def test_close_after_the_head(collector: Collector) -> None:
    collector.faults(close="after-head", times=1)
    conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=5)
    conn.request("POST", TP2, json.dumps(body()), {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200 and int(response.headers["Content-Length"]) > 0
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    conn.close()
    [record] = collector.requests()
    assert record.outcome == "close-after-head" and record.accepted
    assert collector.summary().received_good == 1


def test_close_after_the_answer(collector: Collector, session: requests.Session) -> None:
    collector.faults(close="after-response", times=1)
    assert post(session, collector).headers["Connection"] == "close"
    assert post(session, collector).status_code == 200
    first, second = collector.requests()
    assert first.outcome == "answered" and first.connection != second.connection
    assert collector.summary().received_good == 2


@pytest.mark.parametrize("how", ["stop", "down"])
def test_stopping_during_a_delay_aborts_the_answer_and_takes_nothing(
        session: requests.Session, how: str) -> None:
    c = Collector().start()
    try:
        c.faults(delay=30)
        errors: list[BaseException] = []

        def client() -> None:
            try:
                post(session, c, timeout=10)
            except requests.RequestException as exc:
                errors.append(exc)

        t = threading.Thread(target=client)
        t.start()
        assert c.wait_until(lambda: c.in_flight == 1, timeout=5)
        started = time.monotonic()
        c.stop() if how == "stop" else c.down()
        assert time.monotonic() - started < 2.0
        t.join(5)
        assert not t.is_alive() and len(errors) == 1
        [record] = c.requests()
        assert (record.status, record.outcome, record.accepted) == (None, "aborted", False)
        assert c.in_flight == 0 and c.summary().received_good == 0
    finally:
        c.stop()


# -- a tracker through an outage, as a user would test their app -------------------------------


def test_a_tracker_rides_out_every_kind_of_fault(collector: Collector) -> None:
    collector.faults(503, times=2)
    collector.faults(429, retry_after=0, times=1)
    collector.faults(reset="before", times=1)
    collector.faults(delay=0.3, times=1)
    collector.faults(close="after-head", times=1)
    emitter = Emitter(collector.endpoint, batch_size=5, max_events_per_request=5,
                      max_retry_delay_seconds=0.05, request_timeout=5)
    tracker = Tracker("outage", emitter)
    eids = [tracker.track(StructuredEvent("c", "a", value=i)) for i in range(40)]
    try:
        assert emitter.flush(timeout=20)
    finally:
        emitter.close(5)
    got = [g.parameters["eid"] for g in collector.good()]
    assert set(got) == set(eids) and collector.bad() == []
    # only the batch whose answer was cut after the head may arrive twice
    assert len(got) - len(set(got)) in (0, 5)
    outcomes = [r.outcome for r in collector.requests()]
    assert outcomes.count("reset") == 1 and outcomes.count("close-after-head") == 1
    assert [r.status for r in collector.requests()][:3] == [503, 503, 429]
    assert emitter.stats().retried > 0


# -- the command line and the pytest plugin ----------------------------------------------------


def test_the_command_line_takes_fault_rules() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "snowplow_threaded", "collector", "--port",
                             "0", "--fault", "status=503,retry-after=1,times=1", "--fault",
                             "reset=before,after=1,times=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        endpoint = line.split("listening on ")[1].split()[0]
        assert "fault rule: FaultRule(Fault(status=503" in proc.stdout.readline()
        with requests.Session() as s:
            first = s.post(endpoint + TP2, json=body(), timeout=5)
            assert (first.status_code, first.headers["Retry-After"]) == (503, "1")
            with pytest.raises(requests.exceptions.ConnectionError):
                s.post(endpoint + TP2, json=body(), timeout=5)
            assert s.post(endpoint + TP2, json=body(), timeout=5).status_code == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "stopped: 1 good, 0 bad events received" in out


def test_the_command_line_refuses_a_bad_rule() -> None:
    done = subprocess.run([sys.executable, "-m", "snowplow_threaded", "collector", "--port", "0",
                           "--fault", "status=42"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "status must be an int from 200 to 599" in done.stderr


EXAMPLE_MARK = "<!-- the fault-rules example: run by tests/test_collector_faults.py -->"


def docs_example() -> str:
    return docs_block("testing.md", EXAMPLE_MARK)


def test_the_docs_example_runs_as_written(pytester: pytest.Pytester) -> None:
    """The plugin's marker and fixture with fault rules, as a user's suite uses them."""
    pytester.makepyfile(test_outage=docs_example())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_the_docs_example_fails_without_the_faults(pytester: pytest.Pytester) -> None:
    """Its assertions depend on the faults: without the rules, the two tests that count
    what the faults did fail."""
    example = docs_example().replace('faults=[{"status": 503, "times": 2}]', "faults=[]")
    example = example.replace('snowplow_collector.faults(reset="mid-response", times=1)',
                              "pass")
    pytester.makepyfile(test_outage=example)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
