"""Tests of the test collector (tests/collector.py) and the schema helpers (tests/schemas.py),
with plain ``requests`` over real HTTP."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from stress.crew import Crew
from tests.collector import (
    Collector,
    RecordedRequest,
    Reply,
    always,
    every_nth,
    healthy,
    retry_after,
    sequence,
    slow,
)
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

TP2 = "/com.snowplowanalytics.snowplow/tp2"


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c
    assert not c.errors, c.errors


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def is_running(c: Collector) -> bool:
    return c.running  # a function, so that mypy does not narrow the property


def body(*events: dict[str, str]) -> dict[str, object]:
    return {"schema": PAYLOAD_DATA, "data": list(events)}


def post(s: requests.Session, c: Collector, *events: dict[str, str]) -> int:
    return s.post(c.post_url, json=body(*events), timeout=5).status_code


# -- basics -------------------------------------------------------------------------------


def test_endpoint_and_port() -> None:
    c = Collector()
    c.start()
    try:
        assert c.port > 0
        assert c.endpoint == f"http://127.0.0.1:{c.port}"
        assert c.post_url == c.endpoint + TP2
        assert c.running
        with pytest.raises(RuntimeError):
            c.start()
    finally:
        c.stop()
    assert not is_running(c)
    c.stop()  # idempotent


def test_post_is_recorded_and_parsed(collector: Collector, session: requests.Session) -> None:
    r = session.post(
        collector.post_url,
        json=body({"e": "pv", "url": "http://x/"}, {"e": "se", "se_ca": "c"}),
        headers={"X-Custom": "yes"},
        timeout=5,
    )
    assert r.status_code == 200
    assert r.headers["Content-Length"] == "0"
    assert r.content == b""
    (req,) = collector.requests
    assert req.method == "POST"
    assert req.path == TP2
    assert req.query == {}
    assert req.status == 200
    assert req.route == "tp2"
    assert req.index == 0
    assert req.accepted
    assert req.headers["x-custom"] == "yes"
    assert req.headers["X-Custom"] == "yes"  # case-insensitive
    assert req.headers.get("CONTENT-TYPE") == "application/json"
    assert "Content-Type" in req.headers
    assert json.loads(req.body)["schema"] == PAYLOAD_DATA
    assert req.events == [{"e": "pv", "url": "http://x/"}, {"e": "se", "se_ca": "c"}]
    assert req.received_at <= time.monotonic()
    assert collector.events() == req.events
    assert collector.accepted_event_count == 2


def test_get_is_recorded_and_parsed(collector: Collector, session: requests.Session) -> None:
    params = {"e": "pv", "url": "http://example.com/a?b=c&d", "empty": ""}
    r = session.get(collector.get_url, params=params, timeout=5)
    assert r.status_code == 200
    (req,) = collector.requests
    assert req.method == "GET"
    assert req.path == "/i"
    assert req.query == params
    assert req.events == [params]
    assert req.body == b""
    assert collector.events() == [params]


def test_prefix_routes(collector: Collector, session: requests.Session) -> None:
    base = collector.endpoint + "/custom/prefix"
    assert session.post(base + TP2, json=body({"e": "pv"}), timeout=5).status_code == 200
    assert session.get(base + "/i", params={"e": "se"}, timeout=5).status_code == 200
    assert [r.path for r in collector.requests] == ["/custom/prefix" + TP2, "/custom/prefix/i"]
    assert collector.events() == [{"e": "pv"}, {"e": "se"}]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", TP2),
        ("POST", "/i"),
        ("POST", "/com.snowplowanalytics.snowplow/tp2x"),
        ("GET", "/xi"),
        ("PUT", TP2),
        ("HEAD", "/i"),
        ("DELETE", "/i"),
    ],
)
def test_unknown_routes_get_404(
    collector: Collector, session: requests.Session, method: str, path: str
) -> None:
    collector.behavior = always(503)
    r = session.request(method, collector.endpoint + path, data=b"{}", timeout=5)
    assert r.status_code == 404
    (req,) = collector.requests
    assert req.status == 404
    assert req.route is None
    assert req.index is None  # does not consume a behaviour index
    assert collector.events() == []


def test_bad_json_gets_400(collector: Collector, session: requests.Session) -> None:
    for payload in (b"{not json", b"\xff\xfe", b'{"schema": "x"}', b'{"data": [1, 2]}', b"[]"):
        r = session.post(collector.post_url, data=payload, timeout=5)
        assert r.status_code == 400, payload
    reqs = collector.requests
    assert [r.status for r in reqs] == [400] * 5
    assert all(r.malformed and r.events == [] for r in reqs)
    assert collector.events() == collector.all_events() == []
    # The connection is still usable afterwards.
    assert post(session, collector, {"e": "pv"}) == 200
    assert collector.connections_opened == 1


def test_chunked_request_body(collector: Collector, session: requests.Session) -> None:
    raw = json.dumps(body({"e": "pv"}, {"e": "se"})).encode()
    chunks = (raw[i : i + 7] for i in range(0, len(raw), 7))
    r = session.post(collector.post_url, data=chunks, timeout=5)  # generator => chunked
    assert r.status_code == 200
    (req,) = collector.requests
    assert req.headers["transfer-encoding"] == "chunked"
    assert req.body == raw
    assert req.events == [{"e": "pv"}, {"e": "se"}]
    assert post(session, collector, {"e": "tr"}) == 200  # still in sync on that connection


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_raw_http_edge_cases(collector: Collector) -> None:
    # Bad header line -> 400.
    assert raw_exchange(collector.port, b"GET /i?e=pv HTTP/1.1\r\nno colon\r\n\r\n").startswith(
        b"HTTP/1.1 400"
    )
    # HTTP/1.0 without keep-alive: answered, then closed.
    reply = raw_exchange(collector.port, b"GET /i?e=pv HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200") and b"Connection: close" in reply
    # Two pipelined requests on one connection.
    content = json.dumps(body({"e": "se"})).encode()
    one = (
        f"POST {TP2} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(content)}\r\n\r\n".encode()
        + content
    )
    reply = raw_exchange(collector.port, one + one)
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    assert collector.events() == [{"e": "pv"}, {"e": "se"}, {"e": "se"}]


# -- keep-alive and connection accounting ------------------------------------------------


def test_keep_alive_reuses_one_connection(collector: Collector, session: requests.Session) -> None:
    for i in range(5):
        assert post(session, collector, {"e": "pv", "n": str(i)}) == 200
        assert session.get(collector.get_url, params={"e": "pv"}, timeout=5).ok
    assert collector.connections_opened == 1
    assert {r.connection_id for r in collector.requests} == {collector.requests[0].connection_id}
    assert [r.index for r in collector.requests] == list(range(10))


def test_close_reply_and_client_close_open_new_connections(
    collector: Collector, session: requests.Session
) -> None:
    collector.behavior = sequence([Reply(close=True)])
    r = session.post(collector.post_url, json=body({"e": "pv"}), timeout=5)
    assert r.headers["Connection"] == "close"
    assert post(session, collector, {"e": "pv"}) == 200
    assert collector.connections_opened == 2
    r = session.post(
        collector.post_url, json=body({"e": "pv"}), headers={"Connection": "close"}, timeout=5
    )
    assert r.headers["Connection"] == "close"
    assert post(session, collector, {"e": "pv"}) == 200
    assert collector.connections_opened == 3
    ids = [r.connection_id for r in collector.requests]
    assert ids[0] != ids[1] == ids[2] != ids[3]


def test_concurrent_clients(collector: Collector) -> None:
    threads, per_thread, batch = 8, 25, 10

    def client(t: int) -> None:
        with requests.Session() as s:
            for i in range(per_thread):
                events = [{"e": "se", "t": str(t), "i": str(i), "j": str(j)} for j in range(batch)]
                assert s.post(collector.post_url, json=body(*events), timeout=5).ok

    Crew(client, threads, timeout=60).run()
    total = threads * per_thread * batch
    assert collector.wait_for_events(total, timeout=1)
    assert collector.accepted_event_count == total
    events = collector.events()
    assert len(events) == total
    assert len({(e["t"], e["i"], e["j"]) for e in events}) == total
    assert sorted(r.index for r in collector.requests if r.index is not None) == list(
        range(threads * per_thread)
    )
    assert collector.connections_opened == threads


# -- behaviours ---------------------------------------------------------------------------


def test_every_nth(collector: Collector, session: requests.Session) -> None:
    collector.behavior = every_nth(3, 503, {"X-Why": "flaky"})
    statuses = [post(session, collector, {"e": "pv", "n": str(i)}) for i in range(9)]
    assert statuses == [200, 200, 503] * 3
    assert [r.status for r in collector.requests] == statuses
    assert collector.requests[2].status == 503
    assert [e["n"] for e in collector.events()] == ["0", "1", "3", "4", "6", "7"]
    assert len(collector.all_events()) == 9
    r = session.post(collector.post_url, json=body({"e": "pv"}), timeout=5)
    r = session.post(collector.post_url, json=body({"e": "pv"}), timeout=5)
    r = session.post(collector.post_url, json=body({"e": "pv"}), timeout=5)
    assert r.status_code == 503 and r.headers["X-Why"] == "flaky"


def test_always_healthy_sequence(collector: Collector, session: requests.Session) -> None:
    collector.behavior = always(500, {"X-A": "b"})
    r = session.get(collector.get_url, params={"e": "pv"}, timeout=5)
    assert (r.status_code, r.headers["X-A"]) == (500, "b")
    collector.behavior = healthy()
    assert session.get(collector.get_url, params={"e": "pv"}, timeout=5).status_code == 200
    collector.reset()
    collector.behavior = sequence(
        [
            Reply(status=502),
            Reply(status=201, body=b"made", headers={"Content-Type": "text/plain"}),
        ],
        then=Reply(status=204),
    )
    r1 = session.post(collector.post_url, json=body({"e": "pv"}), timeout=5)
    r2 = session.post(collector.post_url, json=body({"e": "pv"}), timeout=5)
    r3 = session.post(collector.post_url, json=body({"e": "pv"}), timeout=5)
    r4 = session.post(collector.post_url, json=body({"e": "pv"}), timeout=5)
    assert [r.status_code for r in (r1, r2, r3, r4)] == [502, 201, 204, 204]
    assert r2.content == b"made" and r2.headers["Content-Length"] == "4"
    assert len(collector.events()) == 3  # 2xx only


def test_retry_after(collector: Collector, session: requests.Session) -> None:
    collector.behavior = retry_after(2)
    r = session.post(collector.post_url, json=body({"e": "pv"}), timeout=5)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "2"
    assert post(session, collector, {"e": "pv"}) == 200
    assert post(session, collector, {"e": "pv"}) == 200
    collector.reset()
    collector.behavior = retry_after(1.5, status=503, times=2)
    responses = [session.post(collector.post_url, json=body(), timeout=5) for _ in range(3)]
    assert [r.status_code for r in responses] == [503, 503, 200]
    assert responses[0].headers["Retry-After"] == "1.5"
    assert "Retry-After" not in responses[2].headers


def test_behavior_sees_index_and_request(collector: Collector, session: requests.Session) -> None:
    seen: list[tuple[int, str, int]] = []

    def spy(index: int, req: RecordedRequest) -> Reply:
        seen.append((index, req.method, len(req.events)))
        return Reply(status=200 if req.method == "GET" else 202)

    collector.behavior = spy
    session.get(collector.get_url, params={"e": "pv"}, timeout=5)
    assert post(session, collector, {"e": "pv"}, {"e": "se"}) == 202
    assert seen == [(0, "GET", 1), (1, "POST", 2)]
    assert len(collector.events()) == 3


def test_raising_behavior_gives_500_and_is_reported(session: requests.Session) -> None:
    def broken(index: int, req: RecordedRequest) -> Reply:
        raise RuntimeError("boom")

    with Collector() as c:
        c.behavior = broken
        assert post(session, c, {"e": "pv"}) == 500
        assert len(c.errors) == 1 and "boom" in c.errors[0]


def test_slow_times_out_on_the_client(collector: Collector) -> None:
    collector.behavior = slow(0.3)
    t0 = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(collector.post_url, json=body({"e": "pv"}), timeout=0.1)
    assert time.monotonic() - t0 < 0.3
    assert collector.wait_for_requests(1, timeout=2)
    # The server still answered 200 (to nobody), so a real collector would keep the event.
    assert collector.requests[0].status == 200
    assert collector.wait_for_events(1, timeout=0)
    # With a long enough timeout the same behaviour succeeds.
    r = requests.post(collector.post_url, json=body({"e": "pv"}), timeout=5)
    assert r.status_code == 200


def test_reset_gives_connection_error(collector: Collector, session: requests.Session) -> None:
    collector.behavior = sequence([Reply(reset=True)])
    with pytest.raises(requests.exceptions.ConnectionError) as info:
        session.post(collector.post_url, json=body({"e": "pv"}), timeout=5)
    assert isinstance(info.value.__context__ or info.value.args[0], Exception)
    assert "reset" in str(info.value).lower()
    (req,) = collector.requests
    assert (req.status, req.fault, req.events) == (None, "reset", [{"e": "pv"}])
    assert collector.events() == []
    assert collector.all_events() == [{"e": "pv"}]
    assert post(session, collector, {"e": "se"}) == 200  # the session reconnects
    assert collector.events() == [{"e": "se"}]


def test_partial_response_gives_error(collector: Collector, session: requests.Session) -> None:
    collector.behavior = sequence([Reply(partial=True, body=b'{"ok": true, "padding": "xxxx"}')])
    with pytest.raises(
        (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
    ):
        session.post(collector.post_url, json=body({"e": "pv"}), timeout=5)
    (req,) = collector.requests
    assert (req.status, req.fault) == (None, "partial")
    assert collector.events() == []
    assert post(session, collector, {"e": "se"}) == 200


# -- down / up / stop ---------------------------------------------------------------------


def assert_refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_down_up_same_port(collector: Collector, session: requests.Session) -> None:
    port = collector.port
    for round_ in range(3):
        assert post(session, collector, {"e": "pv", "round": str(round_)}) == 200
        collector.down()
        assert not is_running(collector)
        assert_refused(port)
        with pytest.raises(requests.exceptions.ConnectionError):
            session.post(collector.post_url, json=body({"e": "pv"}), timeout=2)
        collector.up()
        assert collector.running and collector.port == port
        # The pooled keep-alive connection was dropped by down(): the session reconnects.
        assert session.get(collector.get_url, params={"e": "se"}, timeout=5).ok
    collector.up()  # no-op when up
    assert [e.get("round") for e in collector.events()] == ["0", None, "1", None, "2", None]
    assert collector.connections_opened == 4  # one, then a new one after each up()


def test_down_drops_idle_keep_alive_connections(collector: Collector) -> None:
    with socket.create_connection(("127.0.0.1", collector.port), timeout=2) as sock:
        sock.sendall(b"GET /i?e=pv HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        collector.down()
        assert sock.recv(4096) == b""  # closed by the server
    collector.up()
    assert collector.events() == [{"e": "pv"}]


def test_stop_is_quick_during_a_slow_request(session: requests.Session) -> None:
    c = Collector().start()
    c.behavior = slow(30)
    errors: list[BaseException] = []

    def client() -> None:
        try:
            session.post(c.post_url, json=body({"e": "pv"}), timeout=10)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=client)
    t.start()
    assert c.wait_until(lambda: c.in_flight == 1, timeout=5)
    # An idle keep-alive client and a connected-but-silent client too.
    idle = requests.Session()
    c.behavior = healthy()
    assert idle.get(c.get_url, params={"e": "pv"}, timeout=5).ok
    silent = socket.create_connection(("127.0.0.1", c.port), timeout=2)
    t0 = time.monotonic()
    c.stop()
    assert time.monotonic() - t0 < 1.0
    t.join(timeout=5)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], requests.exceptions.ConnectionError)
    slow_req = next(r for r in c.requests if r.method == "POST")
    assert (slow_req.status, slow_req.fault) == (None, "aborted")
    assert c.in_flight == 0
    # Closed (FIN), or reset when stop() came before the server accepted the connection.
    with contextlib.suppress(ConnectionResetError):
        assert silent.recv(10) == b""
    silent.close()
    idle.close()
    assert_refused(c.port)


# -- waiting and reset --------------------------------------------------------------------


def test_wait_for_events_and_requests(collector: Collector) -> None:
    t0 = time.monotonic()
    assert not collector.wait_for_events(1, timeout=0.1)
    assert not collector.wait_for_requests(1, timeout=0.05)
    assert time.monotonic() - t0 < 1.0

    def later() -> None:
        time.sleep(0.05)
        with requests.Session() as s:
            for i in range(3):
                post(s, collector, {"e": "pv", "i": str(i)}, {"e": "pv"})

    crew = Crew(lambda _: later(), 1, timeout=10)
    crew.start()
    crew.go()
    assert collector.wait_for_events(6, timeout=5)
    assert collector.wait_for_requests(3, timeout=5)
    crew.join()
    assert len(collector.events()) == 6


def test_reset_clears_everything(collector: Collector, session: requests.Session) -> None:
    collector.behavior = every_nth(2, 500)
    post(session, collector, {"e": "pv"})
    post(session, collector, {"e": "pv"})
    collector.reset()
    assert collector.requests == []
    assert collector.events() == collector.all_events() == []
    assert collector.accepted_event_count == 0
    assert collector.connections_opened == 0
    # The behaviour index restarts at 0, so the second request fails again.
    assert post(session, collector, {"e": "pv"}) == 200
    assert post(session, collector, {"e": "pv"}) == 500
    assert [r.index for r in collector.requests] == [0, 1]


def test_keep_records_false_only_counts() -> None:
    with Collector(keep_records=False) as c, requests.Session() as s:
        post(s, c, {"e": "pv"}, {"e": "se"})
        assert c.wait_for_events(2, timeout=1)
        assert c.accepted_event_count == 2
        assert c.requests == [] and c.events() == []


# -- schemas ------------------------------------------------------------------------------


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


def test_collected_body_validates(collector: Collector, session: requests.Session) -> None:
    events = [make_event() for _ in range(3)]
    session.post(collector.post_url, json={"schema": PAYLOAD_DATA, "data": events}, timeout=5)
    (req,) = collector.requests
    validate_events(validate_post_body(req.body))
    assert collector.events() == events
