"""RFC 9112 framing, strictly: what a proxy in front of the collector could read otherwise
is refused (400, or 501 for an unknown transfer coding) and the connection closed. And raw
UTF-8 in the URL reads as its %-escaped form does."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests

from snowplow_threaded.collector import Collector
from tests.test_micro_http import closed_by_server, read_response

TP2 = "/com.snowplowanalytics.snowplow/tp2"
BODY = (b'{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",'
        b'"data":[{"e":"pv","p":"web","tv":"t"}]}')


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


def post(head: bytes, body: bytes = b"") -> bytes:
    return (b"POST " + TP2.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n" + head + b"\r\n" + body)


def chunked(size_line: bytes) -> bytes:
    return post(b"Transfer-Encoding: chunked\r\n", size_line + b"\r\n" + BODY[:5] + b"\r\n"
                + b"0\r\n\r\n")


REFUSED = [
    pytest.param(post(b"Content-Length: \x0b5\r\n", b"{}{}{}"), 400, id="CL-vtab"),
    pytest.param(post(b"Content-Length: 5\x0b\r\n", b"{}{}{}"), 400, id="CL-vtab-after"),
    pytest.param(post(b"Content-Length: +5\r\n", b"{}{}{}"), 400, id="CL-plus"),
    pytest.param(post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"{}{}{}"), 400,
                 id="CL-twice"),
    pytest.param(post(b"Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"), 400, id="TE-vtab"),
    pytest.param(post(b"Transfer-Encoding: chunked\xa0\r\n", b"0\r\n\r\n"), 501, id="TE-nbsp"),
    pytest.param(post(b"Transfer-Encoding: chunked\x1f\r\n", b"0\r\n\r\n"), 400, id="TE-x1f"),
    pytest.param(post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), 501, id="TE-other"),
    pytest.param(chunked(b" 5"), 400, id="chunk-space-before"),
    pytest.param(chunked(b"5 "), 400, id="chunk-space-after"),
    pytest.param(chunked(b"\x0b5"), 400, id="chunk-vtab-before"),
    pytest.param(chunked(b"5\x0b"), 400, id="chunk-vtab-after"),
    pytest.param(chunked(b"5\t"), 400, id="chunk-tab-after"),
    pytest.param(chunked(b"0x5"), 400, id="chunk-0x"),
    pytest.param(post(b"Transfer-Encoding: chunked\r\n").replace(b"HTTP/1.1", b"HTTP/1.0")
                 + b"0\r\n\r\n", 400, id="chunked-http10"),
    pytest.param(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, id="NUL"),
    pytest.param(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x07b\r\n\r\n", 400, id="BEL"),
    pytest.param(b"GET /health HTTP/1.1\r\n\r\n", 400, id="no-Host"),
    pytest.param(b"GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, id="two-Hosts"),
    pytest.param(b"GET /health HTTP/1.1\r\nHost: a b\r\n\r\n", 400, id="bad-Host"),
    pytest.param(b"GET /health HTTP/1.1\r\nHost: x/y\r\n\r\n", 400, id="Host-slash"),
    pytest.param(b"GET /he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="NUL-in-target"),
    pytest.param(b"GET /he\talth HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="tab-in-target"),
    pytest.param(b"GET /health HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, id="obs-fold"),
]


@pytest.mark.parametrize(("raw", "status"), REFUSED)
def test_lenient_framing_is_refused(collector: Collector, raw: bytes, status: int) -> None:
    before = collector.summary().received_good + collector.summary().received_bad
    with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as sock, \
            sock.makefile("rb") as stream:
        sock.sendall(raw)
        got, headers, _ = read_response(stream)
        assert (got, headers.get("connection")) == (status, "close")
        assert closed_by_server(sock, within=5)
    after = collector.summary().received_good + collector.summary().received_bad
    assert after == before  # nothing of it was taken as events


@pytest.mark.parametrize("raw", [
    chunked(b"5"), chunked(b"5;ext=1"), chunked(b"5 ;ext"), chunked(b"5\t; e=\"q\""),
    chunked(b"00005"),
    post(b"Content-Length: 5  \r\n", b"{}{}{"), post(b"Content-Length:5\r\n", b"{}{}{"),
    post(b"transfer-encoding: CHUNKED\r\n", b"0\r\n\r\n"),
    b"GET /health HTTP/1.1\r\nHost: \r\n\r\n",  # empty Host: allowed (RFC 9112 3.2)
    b"GET /health HTTP/1.1\r\nHost: [::1]:9090\r\n\r\n",
    b"GET /health HTTP/1.0\r\n\r\n",  # HTTP/1.0 needs no Host
])
def test_strict_framing_still_takes_valid_requests(collector: Collector, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as sock, \
            sock.makefile("rb") as stream:
        sock.sendall(raw)
        status, _, _ = read_response(stream)
        assert status in (200, 400)  # framed fine (the body may be a bad payload: 400)
        if b"tp2" not in raw:
            assert status == 200


def test_raw_utf8_in_the_url_reads_like_its_escaped_form(collector: Collector) -> None:
    collector.reset()
    page = "caf\u00e9 \u65e5\u672c \U0001f600"
    for send in ("raw", "escaped"):
        eid = str(uuid.uuid4())
        text = page if send == "raw" else quote(page)
        target = f"/i?e=pv&p=web&tv=t&eid={eid}&page={text.replace(' ', '%20')}"
        with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as sock, \
                sock.makefile("rb") as stream:
            sock.sendall(b"GET " + target.encode("utf-8") + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(stream)[0] == 200
    assert collector.wait_for(2, timeout=5)
    assert [g.parameters["page"] for g in collector.good()] == [page, page]
    api = requests.get(collector.endpoint + "/micro/good", timeout=10).json()
    assert [g["event"]["page_title"] for g in api] == [page, page]


def test_raw_bytes_that_are_not_utf8_make_a_bad_request(collector: Collector) -> None:
    collector.reset()
    with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as sock, \
            sock.makefile("rb") as stream:
        sock.sendall(b"GET /i?e=pv&p=web&tv=t&page=caf\xe9 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(stream)[0] == 200  # a pixel, always (the collector's answer)
    assert collector.wait_for(1, timeout=5)
    [bad] = collector.bad()
    assert "cannot be decoded" in bad.errors[0]
    assert requests.get(collector.endpoint + "/micro/bad", timeout=10).status_code == 200
