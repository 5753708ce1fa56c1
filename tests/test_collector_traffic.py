"""The embedded collector's record of tracker requests (requests(), in_flight, the wait
helpers, reset) and its outage controls (down()/up()), with plain ``requests`` and raw
sockets over real HTTP."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from snowplow_threaded.collector import Collector
from stress.crew import Crew
from tests.helpers import TP2, accepted_events

PAYLOAD = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def body(*events: dict[str, str]) -> dict[str, object]:
    return {"schema": PAYLOAD, "data": list(events)}


def pv(**extra: str) -> dict[str, str]:
    return {"e": "pv", "p": "srv", "tv": "t", **extra}


def post(s: requests.Session, c: Collector, *events: dict[str, str]) -> int:
    return s.post(c.endpoint + TP2, json=body(*events), timeout=5).status_code


def connections(c: Collector) -> int:
    return int(c.stats()["connections"])


# -- what is recorded --------------------------------------------------------------------------


def test_post_is_recorded_and_parsed(collector: Collector, session: requests.Session) -> None:
    r = session.post(collector.endpoint + TP2, json=body(pv(url="http://x/"), pv(url="2")),
                     headers={"X-Custom": "yes"}, timeout=5)
    assert r.status_code == 200
    (req,) = collector.requests()
    assert (req.method, req.path, req.query, req.status, req.index) == ("POST", TP2, {}, 200, 0)
    assert req.accepted and req.done and req.outcome == "answered" and req.fault is None
    assert req.headers["x-custom"] == "yes"
    assert req.headers["content-type"] == "application/json"
    assert json.loads(req.body)["schema"] == PAYLOAD
    assert req.events == [pv(url="http://x/"), pv(url="2")]
    assert req.received_at <= (req.answered_at or 0) <= time.monotonic()
    assert req.connection == connections(collector)
    assert accepted_events(collector) == req.events


def test_get_is_recorded_and_parsed(collector: Collector, session: requests.Session) -> None:
    params = {**pv(), "url": "http://example.com/a?b=c&d", "refr": ""}
    assert session.get(collector.endpoint + "/i", params=params, timeout=5).status_code == 200
    (req,) = collector.requests()
    assert (req.method, req.path, req.body) == ("GET", "/i", b"")
    assert req.query == params and req.events == [params]


def test_prefixed_routes_are_recorded_and_other_routes_are_not(
        collector: Collector, session: requests.Session) -> None:
    base = collector.endpoint + "/custom/prefix"
    collector.faults(503, after=2)  # a fault rule never touches other routes
    assert session.post(base + TP2, json=body(pv()), timeout=5).status_code == 200
    assert session.get(base + "/i", params=pv(), timeout=5).status_code == 200
    for method, path in (("GET", "/"), ("GET", "/health"), ("POST", "/i"), ("PUT", TP2),
                         ("GET", "/micro/all"), ("GET", TP2 + "x")):
        assert session.request(method, collector.endpoint + path, timeout=5).status_code < 500
    assert [r.path for r in collector.requests()] == ["/custom/prefix" + TP2, "/custom/prefix/i"]
    assert [r.index for r in collector.requests()] == [0, 1]


def test_a_body_that_is_not_a_payload_is_recorded_with_no_events(
        collector: Collector, session: requests.Session) -> None:
    for payload in (b"{not json", b"\xff\xfe", b'{"schema": "x"}', b'{"data": [1, 2]}', b"[]"):
        r = session.post(collector.endpoint + TP2, data=payload, timeout=5,
                         headers={"Content-Type": "application/json"})
        assert r.status_code == 200, payload  # as the Snowplow collector: a bad row, not 400
    reqs = collector.requests()
    assert [r.status for r in reqs] == [200] * 5
    assert all(r.events == [] for r in reqs)
    assert collector.summary().received_bad == 5  # kept as bad events
    assert post(session, collector, pv()) == 200  # the connection is still usable
    assert {r.connection for r in collector.requests()} == {reqs[0].connection}


def test_a_chunked_body_is_recorded_whole(collector: Collector,
                                          session: requests.Session) -> None:
    raw = json.dumps(body(pv(), pv(url="2"))).encode()
    chunks = (raw[i:i + 7] for i in range(0, len(raw), 7))
    r = session.post(collector.endpoint + TP2, data=chunks, timeout=5,
                     headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    (req,) = collector.requests()
    assert req.headers["transfer-encoding"] == "chunked" and req.body == raw
    assert post(session, collector, pv()) == 200  # still in step on that connection


def test_the_oldest_requests_are_forgotten_beyond_max_requests(
        session: requests.Session) -> None:
    with Collector(max_requests=3) as c:
        for i in range(5):
            assert post(session, c, pv(url=str(i))) == 200
        assert [r.index for r in c.requests()] == [2, 3, 4]
        assert c.traffic.received == 5 and c.summary().received_good == 5


# -- connections -------------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(collector: Collector, session: requests.Session) -> None:
    for i in range(5):
        assert post(session, collector, pv(url=str(i))) == 200
        assert session.get(collector.endpoint + "/i", params=pv(), timeout=5).ok
    assert connections(collector) == 1
    assert {r.connection for r in collector.requests()} == {1}
    assert [r.index for r in collector.requests()] == list(range(10))


def test_close_answers_and_client_closes_open_new_connections(
        collector: Collector, session: requests.Session) -> None:
    collector.faults(close="after-response", times=1)
    r = session.post(collector.endpoint + TP2, json=body(pv()), timeout=5)
    assert r.headers["Connection"] == "close"
    assert post(session, collector, pv()) == 200
    assert connections(collector) == 2
    r = session.post(collector.endpoint + TP2, json=body(pv()),
                     headers={"Connection": "close"}, timeout=5)
    assert r.headers["Connection"] == "close"
    assert post(session, collector, pv()) == 200
    assert connections(collector) == 3
    ids = [r.connection for r in collector.requests()]
    assert ids[0] != ids[1] == ids[2] != ids[3]


def test_concurrent_clients(collector: Collector) -> None:
    threads, per_thread, batch = 8, 25, 10

    def client(t: int) -> None:
        with requests.Session() as s:
            for i in range(per_thread):
                events = [pv(url=f"{t}/{i}/{j}") for j in range(batch)]
                assert s.post(collector.endpoint + TP2, json=body(*events), timeout=5).ok

    Crew(client, threads, timeout=60).run()
    total = threads * per_thread * batch
    assert collector.wait_for(total, timeout=10)
    assert len({g.parameters["url"] for g in collector.good()}) == total
    assert sorted(r.index for r in collector.requests()) == list(range(threads * per_thread))
    assert connections(collector) == threads


# -- waiting and reset -------------------------------------------------------------------------


def test_wait_for_requests_and_wait_until(collector: Collector) -> None:
    assert not collector.wait_for_requests(1, timeout=0.05)
    assert not collector.wait_until(lambda: False, timeout=0.05)
    go = threading.Event()

    def later() -> None:
        go.wait(5)
        with requests.Session() as s:
            for i in range(3):
                post(s, collector, pv(url=str(i)), pv())

    threading.Thread(target=later).start()
    go.set()
    assert collector.wait_for_requests(3, timeout=10)
    assert collector.wait_until(lambda: len(collector.good()) == 6, timeout=10)
    assert len(accepted_events(collector)) == 6


def test_a_client_that_gives_up_still_has_its_events_taken(collector: Collector) -> None:
    collector.faults(delay=0.3, times=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(collector.endpoint + TP2, json=body(pv()), timeout=0.05)
    assert collector.wait_for_requests(1, timeout=10)
    # answered 200 (to nobody): a real collector would have kept the event
    assert collector.requests()[0].status == 200 and collector.wait_for(1, timeout=0)
    assert requests.post(collector.endpoint + TP2, json=body(pv()), timeout=5).ok


def test_reset_forgets_requests_but_keeps_the_rules(collector: Collector,
                                                   session: requests.Session) -> None:
    collector.faults(500, every=2)
    assert [post(session, collector, pv()) for _ in range(2)] == [200, 500]
    collector.reset()
    assert collector.requests() == [] and accepted_events(collector) == []
    assert collector.summary().received_good == 0
    assert [post(session, collector, pv()) for _ in range(2)] == [200, 500]
    assert [r.index for r in collector.requests()] == [0, 1]


def test_a_request_in_flight_at_reset_is_not_recorded(collector: Collector,
                                                      session: requests.Session) -> None:
    collector.faults(delay=0.2, times=1)
    client = threading.Thread(target=post, args=(session, collector, pv()))
    client.start()
    assert collector.wait_until(lambda: collector.in_flight == 1, timeout=5)
    collector.reset()
    assert collector.in_flight == 0
    client.join(10)
    assert collector.requests() == []


# -- down and up -------------------------------------------------------------------------------


def assert_refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_down_and_up_on_the_same_port(collector: Collector, session: requests.Session) -> None:
    port = collector.port
    for round_ in range(3):
        assert post(session, collector, pv(url=str(round_))) == 200
        collector.down()
        assert collector.running and collector.port == port
        assert_refused(port)
        with pytest.raises(requests.exceptions.ConnectionError):
            session.post(collector.endpoint + TP2, json=body(pv()), timeout=2)
        collector.up()
        # the pooled keep-alive connection was dropped by down(): the session reconnects
        assert session.get(collector.endpoint + "/i", params=pv(url="get"), timeout=5).ok
    collector.up()  # no-op when up
    assert [e.get("url") for e in accepted_events(collector)] == ["0", "get", "1", "get",
                                                                "2", "get"]
    assert connections(collector) == 4  # one, then a new one after each up()


def test_down_drops_idle_keep_alive_connections(collector: Collector) -> None:
    with socket.create_connection(("127.0.0.1", collector.port), timeout=2) as sock:
        sock.sendall(b"GET /i?e=pv&p=srv&tv=t HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        collector.down()
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(4096) == b""  # closed by the server
    collector.up()
    assert len(collector.good()) == 1


def test_down_or_up_on_a_collector_not_running() -> None:
    c = Collector()
    with pytest.raises(RuntimeError, match="not running"):
        c.down()
    with pytest.raises(RuntimeError, match="not running"):
        c.up()


def test_stop_is_quick_with_idle_and_silent_clients(session: requests.Session) -> None:
    c = Collector().start()
    assert session.get(c.endpoint + "/i", params=pv(), timeout=5).ok  # kept alive
    silent = socket.create_connection(("127.0.0.1", c.port), timeout=2)
    started = time.monotonic()
    c.stop()
    assert time.monotonic() - started < 2.0
    with contextlib.suppress(ConnectionResetError):
        assert silent.recv(10) == b""
    silent.close()
    assert_refused(c.port)
