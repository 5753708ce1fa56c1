"""A proxy taken from the environment (``HTTP_PROXY``, ``NO_PROXY``): the emitter sends
through it, POST and GET, and past it for the hosts ``NO_PROXY`` names. The proxy is a
real forward proxy on 127.0.0.1, in front of the embedded collector."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from snowplow_threaded import Emitter, StructuredEvent, Tracker
from snowplow_threaded.collector import Collector

VIA = "1.1 test-proxy"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization",
               "te", "trailer", "transfer-encoding", "upgrade"}


class _Forward(BaseHTTPRequestHandler):
    """Relays a request in absolute form (``POST http://host:port/path HTTP/1.1``) to its
    origin, adding ``Via``, and relays the answer back. Plain HTTP only (no CONNECT)."""

    protocol_version = "HTTP/1.1"
    server: ForwardProxy

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _relay(self) -> None:
        target = urlsplit(self.path)
        if target.scheme != "http" or not target.hostname:
            self.send_error(400, "absolute http:// URL expected (a forward proxy)")
            return
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Via"] = VIA
        origin = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=10)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            origin.request(self.command, path or "/", body=body, headers=headers)
            answer = origin.getresponse()
            content = answer.read()
        finally:
            origin.close()
        with self.server.lock:
            self.server.relayed.append(f"{self.command} {self.path}")
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in _HOP_BY_HOP | {"content-length", "server", "date"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = _relay


class ForwardProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.lock = threading.Lock()
        self.relayed: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    server = ForwardProxy()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def _send(collector: Collector, method: str, n: int) -> list[str]:
    emitter = Emitter(collector.endpoint, method=method, batch_size=3)  # type: ignore[arg-type]
    tracker = Tracker("proxied", emitter)
    try:
        eids = [tracker.track(StructuredEvent("c", "a", value=i)) for i in range(n)]
        assert emitter.flush(timeout=10)
    finally:
        emitter.close(5)
    return eids


@pytest.mark.parametrize("method", ["post", "get"])
def test_the_proxy_from_the_environment_carries_every_request(
        collector: Collector, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch,
        method: str) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    eids = _send(collector, method, 6)
    assert sorted(g.parameters["eid"] for g in collector.good()) == sorted(eids)
    requests_seen = collector.requests()
    assert requests_seen and all(r.headers.get("via") == VIA for r in requests_seen)
    assert len(proxy.relayed) == len(requests_seen)
    assert all(line.startswith(("POST http://127.0.0.1:", "GET http://127.0.0.1:"))
               for line in proxy.relayed)


def test_no_proxy_sends_past_it(collector: Collector, proxy: ForwardProxy,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    eids = _send(collector, "post", 4)
    assert sorted(g.parameters["eid"] for g in collector.good()) == sorted(eids)
    assert proxy.relayed == [] and all("via" not in r.headers for r in collector.requests())
