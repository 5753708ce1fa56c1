"""The Flask extension: in-process (Flask's test client, a real collector) for the subject,
proxy, user id, request/page-view events and settings; and the example app under real
Gunicorn with ``--preload`` (sync and gthread workers), concurrent requests, SIGTERM to the
master: exactly the expected events, each with its own request's subject."""

from __future__ import annotations

import collections
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, session

from snowplow_threaded import Emitter, StructuredEvent, Subject, Tracker
from snowplow_threaded.collector import Collector
from snowplow_threaded.contrib import flask as sp_flask
from snowplow_threaded.contrib.config import ConfigError
from snowplow_threaded.contrib.flask import SnowplowFlask
from tests.apps.contrib_support import EXAMPLES, assert_unique, shipped_event
from tests.helpers import accepted_events
from tests.schemas import validate_event
from tests.servers import Server, bin_path, free_port, server_env

Events = list[dict[str, str]]


def make_app(collector: Collector, **config: Any) -> tuple[Flask, SnowplowFlask]:
    app = Flask("contrib_test")
    app.config.update(SECRET_KEY="test", SNOWPLOW_ENDPOINT=collector.endpoint,
                      SNOWPLOW_EMITTER={"batch_size": 1}, SNOWPLOW_REQUEST_EVENTS="request",
                      SNOWPLOW_APP_ID="flask-test")
    app.config.update({f"SNOWPLOW_{k.upper()}": v for k, v in config.items()})
    ext = SnowplowFlask()

    @ext.user_id_loader
    def user() -> str | None:
        return session.get("user")

    ext.init_app(app)

    @app.get("/items/<int:n>")
    def item(n: int) -> str:
        return str(n)

    @app.get("/login/<name>")
    def login(name: str) -> str:
        session["user"] = name
        return "in"

    @app.post("/buy")
    def buy() -> str:
        return ext.track(StructuredEvent("shop", "buy", event_subject=Subject().set_lang("fr")))

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/health")
    def health() -> str:
        return "ok"

    return app, ext


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        app.extensions["snowplow"].close(2)


def flushed(app: Flask, collector: Collector) -> Events:
    assert app.extensions["snowplow"].flush(timeout=5)
    return accepted_events(collector)


def test_request_event_subject_and_fields(collector: Collector, apps: list[Flask]) -> None:
    app, _ = make_app(collector)
    apps.append(app)
    client = app.test_client()
    client.get("/items/7?q=1", headers={"User-Agent": "UA/7", "X-Forwarded-For": "6.6.6.6"},
               environ_base={"REMOTE_ADDR": "192.0.2.1"})
    client.get("/login/alice")
    client.get("/nope")
    [item, login, missing] = sorted(flushed(app, collector), key=lambda e: e["dtm"])
    name, data = shipped_event(item)
    assert name == "request"
    assert data["method"] == "GET" and data["path"] == "/items/7"
    assert data["route"] == "/items/<int:n>" and data["status"] == 200
    assert 0 <= data["duration_ms"] < 5000
    assert (item["ip"], item["ua"], item["aid"], item["p"]) == ("192.0.2.1", "UA/7",
                                                                 "flask-test", "srv")
    assert "uid" not in item  # the session had no user yet
    assert login["uid"] == "alice"  # the user id is read when the event is built
    assert shipped_event(missing)[1]["status"] == 404 and "route" not in shipped_event(
        missing)[1]


def test_trusted_proxy_hops_and_networks(collector: Collector, apps: list[Flask]) -> None:
    hops, _ = make_app(collector, trusted_proxies=1, namespace="hops")
    nets, _ = make_app(collector, trusted_proxies=["10.0.0.0/8"], namespace="nets")
    apps.extend([hops, nets])
    xff = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    hops.test_client().get("/items/1", headers=xff, environ_base={"REMOTE_ADDR": "10.1.1.1"})
    nets.test_client().get("/items/2", headers=xff, environ_base={"REMOTE_ADDR": "10.1.1.1"})
    nets.test_client().get("/items/3", headers=xff, environ_base={"REMOTE_ADDR": "8.8.8.8"})
    assert hops.extensions["snowplow"].flush(timeout=5)
    ips = {shipped_event(e)[1]["path"]: e["ip"] for e in flushed(nets, collector)}
    assert ips == {"/items/1": "203.0.113.9", "/items/2": "203.0.113.9",
                   "/items/3": "8.8.8.8"}


def test_errors_give_status_500_once(collector: Collector, apps: list[Flask]) -> None:
    app, _ = make_app(collector)
    apps.append(app)
    app.test_client().get("/boom")  # handled: Flask answers 500
    app.testing = True  # now the exception propagates: only teardown_request runs
    with pytest.raises(RuntimeError):
        app.test_client().get("/boom")
    events = flushed(app, collector)
    assert [shipped_event(e)[1]["status"] for e in events] == [500, 500]


def test_track_applies_the_request_subject(collector: Collector, apps: list[Flask]) -> None:
    app, ext = make_app(collector, request_events="off")
    apps.append(app)
    client = app.test_client()
    client.get("/login/bob")
    eid = client.post("/buy", headers={"User-Agent": "UA/b"},
                      environ_base={"REMOTE_ADDR": "192.0.2.2"}).text
    with app.app_context():  # outside a request: no request subject
        assert sp_flask.tracker() is app.extensions["snowplow"]
        sp_flask.track(StructuredEvent("batch", "job"))
    [job, bought] = sorted(flushed(app, collector), key=lambda e: e["se_ca"])
    validate_event(bought)
    assert bought["eid"] == eid and bought["se_ac"] == "buy"
    assert (bought["uid"], bought["ip"], bought["ua"], bought["lang"]) == (
        "bob", "192.0.2.2", "UA/b", "fr")
    assert job["se_ca"] == "batch" and "ip" not in job and "uid" not in job
    with app.app_context():
        assert ext.tracker is app.extensions["snowplow"]
    with pytest.raises(RuntimeError):  # no app context, no app given to the constructor
        ext.track(StructuredEvent("no", "app"))


def test_page_views_and_ignored_paths(collector: Collector, apps: list[Flask]) -> None:
    app, _ = make_app(collector, request_events="page_view", ignore_paths=["/health"])
    apps.append(app)
    client = app.test_client()
    client.get("/items/1?x=2", headers={"Referer": "https://example.com/"})
    client.get("/health")
    client.post("/buy")  # not a page view, but the tracked structured event
    client.get("/nope")  # 404: not a page view
    events = flushed(app, collector)
    views = [e for e in events if e["e"] == "pv"]
    assert len(views) == 1 and len(events) == 2
    validate_event(views[0])
    assert views[0]["url"] == "http://localhost/items/1?x=2"
    assert views[0]["refr"] == "https://example.com/"


def test_bad_settings_fail_init_app(collector: Collector) -> None:
    app = Flask("bad")
    app.config.update(SNOWPLOW_ENDPOINT="not a url", SNOWPLOW_REQUEST_EVENT="request")
    with pytest.raises(ConfigError) as info:
        SnowplowFlask(app)
    assert {p.key for p in info.value.problems} == {"SNOWPLOW_ENDPOINT",
                                                    "SNOWPLOW_REQUEST_EVENT"}
    given = Tracker("given", Emitter(collector.endpoint))
    try:
        other = Flask("given")  # a supplied tracker needs no endpoint
        ext = SnowplowFlask(other, tracker=given)
        assert other.extensions["snowplow"] is given and ext.tracker is given
        with pytest.raises(RuntimeError):
            ext.init_app(other)
    finally:
        given.close(1)


# -- the example under real Gunicorn -----------------------------------------------------

VENDOR = "com.acme.test"
ITEMS = 40


@pytest.mark.parametrize(("worker_class", "hops"), [("sync", 0), ("gthread", 1)],
                         ids=["sync-no-proxy", "gthread-trusted-proxy"])
def test_example_under_gunicorn_preload(collector: Collector, tmp_path: Path,
                                        worker_class: str, hops: int) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [bin_path("gunicorn"), "--preload", "-w", "2", "-k", worker_class,
            "-b", f"127.0.0.1:{port}", "--chdir", str(EXAMPLES / "flask_app"),
            "--graceful-timeout", "20", "--log-level", "warning"]
    if worker_class == "gthread":
        argv += ["--threads", "4"]
    env = server_env(collector.endpoint, SNOWPLOW_ENDPOINT=collector.endpoint,
                     SNOWPLOW_TRUSTED_PROXIES=str(hops), SNOWPLOW_SCHEMA_VENDOR=VENDOR,
                     SNOWPLOW_FLUSH_INTERVAL="30")
    server = Server([*argv, "app:app"], env, tmp_path / "gunicorn.log")
    alice = requests.Session()
    try:
        server.wait_http(f"{base}/health")
        assert alice.get(f"{base}/login?user=alice", allow_redirects=False).status_code == 302

        def get(n: int) -> int:
            http = alice if n % 2 else requests
            return http.get(f"{base}/items/{n}", timeout=10, headers={
                "User-Agent": f"agent/{n}", "X-Forwarded-For": f"6.6.6.6, 198.51.100.{n}",
            }).status_code

        with ThreadPoolExecutor(8) as pool:  # concurrent requests: subjects must not mix
            assert list(pool.map(get, range(ITEMS))) == [200] * ITEMS
        basket = alice.post(f"{base}/basket", data={"sku": "42"}, timeout=10)
        assert requests.get(f"{base}/boom", timeout=10).status_code == 500
        assert requests.get(f"{base}/items/5000", timeout=10).status_code == 404
        code = server.stop(signal.SIGTERM)
    finally:
        alice.close()
        server.kill()
    assert code == 0, server.log()
    expected = 1 + ITEMS + 1 + 1 + 1 + 1  # login, items, basket request + its event, boom, 404
    collector.wait_for(expected, timeout=15)
    events = accepted_events(collector)
    assert len(events) == expected, (len(events), server.log()[-3000:])
    assert_unique(events)
    assert all(e["aid"] == "flask-example" and e["p"] == "srv" for e in events)
    [added] = [e for e in events if e["e"] == "se"]
    validate_event(added)
    assert (added["eid"], added["se_la"], added["uid"]) == (basket.text.strip(), "42", "alice")
    requests_by_path = {}
    for event in events:
        if event["e"] == "ue":
            _, data = shipped_event(event, VENDOR)
            requests_by_path[data["path"]] = (data, event)
    statuses = collections.Counter(d["status"] for d, _ in requests_by_path.values())
    assert statuses == {200: ITEMS + 1, 302: 1, 500: 1, 404: 1}
    assert "/health" not in requests_by_path
    for n in range(ITEMS):
        data, event = requests_by_path[f"/items/{n}"]
        assert data["route"] == "/items/<int:item_id>"
        assert event["ua"] == f"agent/{n}"
        assert event["ip"] == (f"198.51.100.{n}" if hops else "127.0.0.1")
        assert event.get("uid") == ("alice" if n % 2 else None)
