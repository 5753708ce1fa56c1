"""Schemas from static Iglu registries over HTTP (``--iglu URL``), as Snowplow Micro resolves
them: real registries served on 127.0.0.1 (one that answers, one that hangs, one that is
down); cached; a registry that fails makes the event bad with its name and the error, within
the lookup's timeout, never a hang."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from snowplow_threaded import Emitter, SelfDescribing, SelfDescribingJson, Tracker
from snowplow_threaded.__main__ import main
from snowplow_threaded.collector import Collector, Resolver, SchemaUnavailable
from snowplow_threaded.collector.registry import LookupFailed, Registry

CHECKOUT = "iglu:com.acme/checkout/jsonschema/1-0-0"
SCHEMA = {"self": {"vendor": "com.acme", "name": "checkout", "format": "jsonschema",
                   "version": "1-0-0"},
          "type": "object", "properties": {"total": {"type": "number", "minimum": 0}},
          "required": ["total"], "additionalProperties": False}


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        server: _Registry = self.server  # type: ignore[assignment]
        with server.lock:
            server.requests.append(self.path)
        if server.status is not None:
            self.send_error(server.status)
            return
        super().do_GET()


class _Registry(http.server.ThreadingHTTPServer):
    requests: list[str]
    status: int | None
    lock: threading.Lock


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[_Registry]:
    """A static Iglu registry on 127.0.0.1 holding com.acme/checkout 1-0-0."""
    path = tmp_path / "schemas" / "com.acme" / "checkout" / "jsonschema" / "1-0-0"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(SCHEMA))

    def handler(*args: Any) -> _Handler:
        return _Handler(*args, directory=str(tmp_path))

    server = _Registry(("127.0.0.1", 0), handler)
    server.requests, server.status, server.lock = [], None, threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def url(server: _Registry) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def silent() -> Iterator[str]:
    """A registry that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@pytest.fixture
def down() -> str:
    """A registry address nothing listens on."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


def send(collector: Collector, data: dict[str, Any], count: int = 1) -> None:
    emitter = Emitter(collector.endpoint, batch_size=count)
    tracker = Tracker("iglu", emitter)
    for _ in range(count):
        tracker.track(SelfDescribing(SelfDescribingJson(CHECKOUT, data)))
    assert emitter.flush(10)
    emitter.close(5)
    assert collector.wait_for(count, timeout=10)


def test_a_schema_from_a_registry_makes_the_event_good_and_is_fetched_once(
        registry: _Registry) -> None:
    with Collector(iglu=[url(registry) + "/"]) as collector:
        send(collector, {"total": 3}, count=3)
        send(collector, {"total": -1})
        assert [g.schema for g in collector.good()] == [CHECKOUT] * 3
        [bad] = collector.bad()
        assert bad.errors == (f"ue_px: event ({CHECKOUT}) /total: -1 is not at least 0",)
        assert registry.requests == ["/schemas/com.acme/checkout/jsonschema/1-0-0"]
        served = requests.get(collector.endpoint + "/micro/iglu/com.acme/checkout/"
                              "jsonschema/1-0-0", timeout=10)
        assert served.json() == SCHEMA


def test_registries_are_asked_in_order(registry: _Registry, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with Collector(schemas=[empty], iglu=[url(registry) + "/nothing-here",
                                          url(registry)]) as collector:
        send(collector, {"total": 1})
        assert len(collector.good()) == 1
        assert registry.requests == ["/nothing-here/schemas/com.acme/checkout/jsonschema/1-0-0",
                                     "/schemas/com.acme/checkout/jsonschema/1-0-0"]


def test_a_schema_no_registry_has_is_bad_naming_each_place(registry: _Registry,
                                                         tmp_path: Path) -> None:
    with Collector(schemas=[tmp_path], iglu=[url(registry)]) as collector:
        emitter = Emitter(collector.endpoint)
        Tracker("iglu", emitter).track(SelfDescribing(SelfDescribingJson(
            "iglu:com.acme/other/jsonschema/1-0-0", {})))
        assert emitter.flush(10) and collector.wait_for(1, timeout=10)
        emitter.close(5)
        [bad] = collector.bad()
        assert bad.errors == (
            f"ue_px: event: unknown schema iglu:com.acme/other/jsonschema/1-0-0 (neither "
            f"bundled nor in a schema directory: 1 given; registry {url(registry)}: "
            f"not found)",)  # how many directories, never where (clients read this)


@pytest.mark.parametrize(("status", "kind", "said"), [
    (500, "RepoFailure", "answered 500"), (403, "ClientFailure", "answered 403")])
def test_a_registry_error_is_named(registry: _Registry, status: int, kind: str,
                                   said: str) -> None:
    registry.status = status
    resolver = Resolver(registries=[url(registry)])
    with pytest.raises(SchemaUnavailable) as caught:
        resolver.validator(CHECKOUT)
    assert f"registry {url(registry)}: {said}" in str(caught.value)
    assert [(lk.repository, lk.error) for lk in caught.value.lookups] == [
        ("Iglu Central (bundled)", "NotFound"), (url(registry), kind)]


def test_an_unreachable_registry_makes_the_event_bad_and_is_asked_again_later(
        down: str, registry: _Registry) -> None:
    resolver = Resolver(registries=[down], retry_after=0)
    with pytest.raises(SchemaUnavailable) as caught:
        resolver.validator(CHECKOUT)
    assert f"registry {down}: cannot be reached (" in str(caught.value)
    assert "Connection refused" in str(caught.value)
    registry.status = 503
    cached = Resolver(registries=[url(registry)], retry_after=3600)
    for _ in range(3):  # a failure is remembered for retry_after...
        with pytest.raises(SchemaUnavailable):
            cached.validator(CHECKOUT)
    assert len(registry.requests) == 1
    again = Resolver(registries=[url(registry)], retry_after=0)
    with pytest.raises(SchemaUnavailable):
        again.validator(CHECKOUT)
    registry.status = None  # ...then asked again: the registry is back
    assert again.validator(CHECKOUT).errors({"total": 1}) == []
    assert len(registry.requests) == 3


def test_a_registry_that_never_answers_costs_one_timeout_then_nothing(silent: str) -> None:
    with Collector(iglu=[silent, silent + "/second"], iglu_timeout=0.3) as collector:
        send(collector, {"total": 1})
        [bad] = collector.bad()
        assert re.search(f"registry {silent}: no answer within 0\\.[23][0-9]* s;",
                         bad.errors[0]), bad.errors[0]  # what was left of the 0.3 s
        assert (f"registry {silent}/second: not asked, the lookup's 0.3 s were spent"
                in bad.errors[0])
        health = requests.get(collector.endpoint + "/health", timeout=5)
        assert health.status_code == 200
        send(collector, {"total": 2})  # remembered: no second wait
        assert len(collector.bad()) == 2


def test_health_answers_while_a_registry_lookup_waits() -> None:
    """The lookup waits on the collector's worker thread, not its event loop: /health and
    new connections are served while a registry holds the lookup."""
    asked = threading.Event()
    held: list[socket.socket] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)

        def hold() -> None:  # accept the lookup's connection and never answer it
            conn, _ = listener.accept()
            held.append(conn)
            asked.set()

        threading.Thread(target=hold, daemon=True).start()
        registry = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with Collector(iglu=[registry], iglu_timeout=3.0) as collector:
            sender = threading.Thread(target=send, args=(collector, {"total": 1}),
                                      daemon=True)
            sender.start()
            assert asked.wait(5)
            with requests.Session() as session:
                for _ in range(5):  # each well inside the lookup's 3 s
                    health = session.get(collector.endpoint + "/health", timeout=0.5)
                    assert health.status_code == 200
            assert not collector.bad()  # the lookup was still waiting meanwhile
            sender.join(10)
            assert not sender.is_alive()
            assert len(collector.bad()) == 1
        for conn in held:
            conn.close()


def test_registry_answers_that_are_not_schemas(registry: _Registry, tmp_path: Path) -> None:
    target = tmp_path / "schemas" / "com.acme" / "checkout" / "jsonschema" / "1-0-0"
    target.write_text("{not json")
    with pytest.raises(LookupFailed, match="the schema is not JSON") as caught:
        Registry(url(registry)).fetch("com.acme", "checkout", "jsonschema", "1-0-0")
    assert caught.value.kind == "ClientFailure"
    target.write_text(json.dumps({**SCHEMA, "self": {**SCHEMA["self"], "name": "x"}}))
    with pytest.raises(SchemaUnavailable, match=r"its self block names com\.acme/x"):
        Resolver(registries=[url(registry)]).validator(CHECKOUT)


@pytest.mark.parametrize("bad_url", ["ftp://registry", "registry.example", "http://", ""])
def test_registry_urls_must_be_http(bad_url: str) -> None:
    with pytest.raises(ValueError, match="must be an http:// or https:// URL"):
        Collector(iglu=[bad_url])


def test_the_cli_refuses_a_bad_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collector", "--port", "0", "--iglu", "ftp://x"]) == 2
    assert "must be an http:// or https:// URL" in capsys.readouterr().err


def test_a_registry_is_never_asked_for_a_path_outside_its_schemas(registry: _Registry) -> None:
    for key in (("..", "x", "jsonschema", "1-0-0"), ("com.acme", "..", "jsonschema", "1-0-0"),
                ("com.acme", "checkout", ".", "1-0-0")):
        with pytest.raises(LookupFailed, match="not asked") as caught:
            Registry(url(registry)).fetch(*key)
        assert caught.value.kind == "ClientFailure"
    assert registry.requests == []
