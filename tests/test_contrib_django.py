"""The Django app: system checks, the middleware and ``track()`` in-process (the example
project's settings, an in-memory SQLite database, Django's test client, a real collector),
and the example project under real Gunicorn (``--preload``, gthread) and real uWSGI
(``--master --enable-threads``), with a graceful stop: exactly the expected events with
each request's own subject (IP with and without a trusted proxy, user agent, user id)."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from snowplow_threaded import StructuredEvent
from snowplow_threaded.collector import Collector
from tests.apps.contrib_support import EXAMPLES, assert_unique, shipped_event, tail
from tests.helpers import accepted_events
from tests.schemas import validate_event
from tests.servers import Server, bin_path, free_port, server_env

PROJECT = EXAMPLES / "django_project"
MIDDLEWARE = "snowplow_threaded.contrib.django.middleware.SnowplowMiddleware"
Events = list[dict[str, str]]


@pytest.fixture(scope="module")
def django_ready() -> Iterator[Any]:
    """The example project's settings, loaded in this process, with an in-memory DB."""
    import django
    from django.core.management import call_command
    from django.test.utils import setup_test_environment, teardown_test_environment

    saved = {k: os.environ.get(k) for k in ("DJANGO_SETTINGS_MODULE", "DJANGO_DB")}
    os.environ.update(DJANGO_SETTINGS_MODULE="shop.settings", DJANGO_DB=":memory:")
    sys.path.insert(0, str(PROJECT))
    try:
        django.setup()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    setup_test_environment()
    call_command("migrate", verbosity=0)
    from django.contrib.auth.models import User

    user = User.objects.create_user("alice")  # unusable password: no hashing cost
    yield user
    teardown_test_environment()


@contextlib.contextmanager
def snowplow(collector: Collector, **extra: Any) -> Iterator[Callable[[], Events]]:
    """Override ``settings.SNOWPLOW``; yields a function that flushes and returns the
    collector's events."""
    from django.test import override_settings

    from snowplow_threaded.contrib.django import get_tracker

    value = {"endpoint": collector.endpoint, "app_id": "dj", "request_events": "request",
             "emitter": {"batch_size": 1}, "ignore_paths": ["/health/"], **extra}
    with override_settings(SNOWPLOW=value):
        def events() -> Events:
            assert get_tracker().flush(timeout=5)
            return accepted_events(collector)

        yield events


def client() -> Any:
    from django.test import Client

    return Client(raise_request_exception=False)


def test_request_events_subject_and_no_needless_query(django_ready: Any,
                                                      collector: Collector) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with snowplow(collector, trusted_proxies=1) as events:
        anonymous, alice = client(), client()
        alice.force_login(django_ready)
        headers = {"HTTP_USER_AGENT": "UA/x", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.5",
                   "REMOTE_ADDR": "10.0.0.1"}
        with CaptureQueriesContext(connection) as queries:
            assert anonymous.get("/items/3/", **headers).status_code == 200
        assert len(queries) == 0  # no session cookie: the user is never loaded
        with CaptureQueriesContext(connection) as queries:
            assert alice.get("/items/4/", **headers).status_code == 200
        assert len(queries) == 1  # the user, once (signed-cookie sessions)
        assert anonymous.get("/items/5000/").status_code == 404
        assert anonymous.get("/nowhere").status_code == 404
        assert anonymous.get("/boom/").status_code == 500
        assert anonymous.get("/health/").status_code == 200
        got = {shipped_event(e)[1]["path"]: (shipped_event(e)[1], e) for e in events()}
    assert sorted(got) == ["/boom/", "/items/3/", "/items/4/", "/items/5000/", "/nowhere"]
    data, event = got["/items/3/"]
    assert (data["method"], data["status"], data["route"]) == ("GET", 200,
                                                               "items/<int:item_id>/")
    assert (event["ip"], event["ua"], event["aid"], event["p"]) == ("203.0.113.5", "UA/x",
                                                                    "dj", "srv")
    assert "uid" not in event
    assert got["/items/4/"][1]["uid"] == str(django_ready.pk)
    assert got["/items/5000/"][0]["status"] == 404
    assert got["/nowhere"][0]["status"] == 404 and "route" not in got["/nowhere"][0]
    assert got["/boom/"][0]["status"] == 500
    assert got["/nowhere"][1]["ip"] == "127.0.0.1"  # the test client's peer, no XFF


def test_track_helper_page_views_and_custom_user_id(django_ready: Any,
                                                    collector: Collector) -> None:
    with snowplow(collector, request_events="page_view", trusted_proxies=["10.0.0.0/8"],
                  user_id="tests.apps.contrib_support.header_user_id") as events:
        c = client()
        c.get("/items/1/?a=b", HTTP_REFERER="https://example.com/", HTTP_X_USER="u-7",
              REMOTE_ADDR="10.2.3.4", HTTP_X_FORWARDED_FOR="198.51.100.1")
        eid = c.post("/basket/", {"sku": "99"}, HTTP_X_USER="u-8").content.decode().strip()
        c.get("/items/5000/")  # 404: no page view
        [view, added] = sorted(events(), key=lambda e: e["e"])
    validate_event(view)
    validate_event(added)
    assert (view["e"], view["url"], view["refr"]) == ("pv", "http://testserver/items/1/?a=b",
                                                      "https://example.com/")
    assert (view["uid"], view["ip"]) == ("u-7", "198.51.100.1")
    assert (added["eid"], added["se_la"], added["uid"]) == (eid, "99", "u-8")


def test_track_outside_a_request(django_ready: Any, collector: Collector) -> None:
    from snowplow_threaded.contrib.django import track

    with snowplow(collector) as events:
        track(StructuredEvent("cron", "ran"))
        [event] = events()
    assert event["se_ca"] == "cron" and "ip" not in event and event["aid"] == "dj"


def test_system_checks_report_bad_settings(django_ready: Any) -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError
    from django.test import override_settings

    from snowplow_threaded.contrib.django.checks import check_settings

    def ids(value: object, **settings: Any) -> list[str]:
        with override_settings(SNOWPLOW=value, **settings):
            return sorted(m.id for m in check_settings())

    assert ids({"endpoint": "http://c.example.com"}) == []
    assert ids(None) == ["snowplow_threaded.E001"]
    assert ids(["endpoint"]) == ["snowplow_threaded.E001"]
    assert ids({"endpoint": "http://c", "colour": 1}) == ["snowplow_threaded.E002"]
    assert ids({"endpoint": "http://c:99999"}) == ["snowplow_threaded.E003"]
    assert ids({}) == ["snowplow_threaded.E003"]
    assert ids({"endpoint": "c", "emitter": {"thread_count": 0}}) == ["snowplow_threaded.E004"]
    assert ids({"endpoint": "c", "emitter": {"batchsize": 1}}) == ["snowplow_threaded.E004"]
    assert ids({"endpoint": "c", "user_id": "nowhere.function"}) == ["snowplow_threaded.E005"]
    assert ids({"endpoint": "c", "trusted_proxies": "x"}) == ["snowplow_threaded.E005"]
    assert ids({"endpoint": "c", "request_events": "request"},
               MIDDLEWARE=[]) == ["snowplow_threaded.W001"]
    assert ids({"endpoint": "c", "request_events": "off"}, MIDDLEWARE=[]) == []
    with override_settings(SNOWPLOW={"endpoint": "ftp://c"}), pytest.raises(SystemCheckError,
                                                                         match="E003"):
        call_command("check")


def test_middleware_refuses_to_load_with_bad_settings(django_ready: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from snowplow_threaded.contrib.django.middleware import SnowplowMiddleware

    with override_settings(SNOWPLOW={"endpoint": "c", "method": "put"}), pytest.raises(
            ImproperlyConfigured, match="method"):
        SnowplowMiddleware(lambda request: None)


def test_manage_py_check_fails_at_start_up() -> None:
    env = {**server_env("unused"), "SNOWPLOW_ENDPOINT": "http://collector.example.com:0"}
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    assert "(snowplow_threaded.E003)" in done.stderr


# -- the example under real servers ------------------------------------------------------

VENDOR = "com.acme.django"
ITEMS = 30


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database with user ``alice`` (password ``pw-alice``)."""
    db = tmp_path_factory.mktemp("django") / "db.sqlite3"
    env = {**server_env("unused"), "DJANGO_DB": str(db), "DJANGO_SUPERUSER_PASSWORD": "pw-alice"}
    for argv in (["migrate", "-v0"], ["createsuperuser", "--noinput", "--username", "alice",
                                      "--email", "alice@example.com"]):
        subprocess.run([sys.executable, "manage.py", *argv], cwd=PROJECT, env=env, check=True,
                       capture_output=True, timeout=120)
    return db


def drive(base: str, concurrency: int, close: bool) -> tuple[str, str]:
    """Log alice in, send ITEMS item requests (odd ones as alice) and the others; returns
    (alice's user id, the basket event id). A new connection per request (uWSGI's
    http-socket does not keep connections alive)."""
    extra = {"Connection": "close"} if close else {}
    login = requests.post(f"{base}/login/", data={"username": "alice", "password": "pw-alice"},
                          headers=extra, timeout=30)
    assert login.status_code == 200, login.text
    user_id, alice = login.text.split()[-1], login.cookies

    def get(n: int) -> int:
        return requests.get(f"{base}/items/{n}/", timeout=10, cookies=alice if n % 2 else None,
                            headers={**extra, "User-Agent": f"agent/{n}",
                                     "X-Forwarded-For": f"6.6.6.6, 198.51.100.{n}"}).status_code

    with ThreadPoolExecutor(concurrency) as pool:
        assert list(pool.map(get, range(ITEMS))) == [200] * ITEMS
    eid = requests.post(f"{base}/basket/", data={"sku": "7"}, cookies=alice, headers=extra,
                        timeout=10).text
    for path, status in (("/boom/", 500), ("/items/5000/", 404), ("/health/", 200)):
        assert requests.get(base + path, headers=extra, timeout=10).status_code == status
    return user_id, eid.strip()


def verify(events: Events, user_id: str, eid: str, hops: int) -> None:
    expected = 1 + ITEMS + 2 + 1 + 1  # login, items, basket request + its event, boom, 404
    assert len(events) == expected, len(events)
    assert_unique(events)
    assert all(e["aid"] == "django-example" and e["p"] == "srv" for e in events)
    [added] = [e for e in events if e["e"] == "se"]
    validate_event(added)
    assert (added["eid"], added["se_la"], added["uid"]) == (eid, "7", user_id)
    by_path = {}
    for event in events:
        if event["e"] == "ue":
            _, data = shipped_event(event, VENDOR)
            by_path[data["path"]] = (data, event)
    assert collections.Counter(d["status"] for d, _ in by_path.values()) == {
        200: ITEMS + 2, 500: 1, 404: 1}
    for n in range(ITEMS):
        data, event = by_path[f"/items/{n}/"]
        assert data["route"] == "items/<int:item_id>/"
        assert event["ua"] == f"agent/{n}"
        assert event["ip"] == (f"198.51.100.{n}" if hops else "127.0.0.1")
        assert event.get("uid") == (user_id if n % 2 else None)


def _env(collector: Collector, database: Path, hops: int) -> dict[str, str]:
    return server_env(collector.endpoint, SNOWPLOW_ENDPOINT=collector.endpoint,
                      DJANGO_DB=str(database), SNOWPLOW_TRUSTED_PROXIES=str(hops),
                      SNOWPLOW_SCHEMA_VENDOR=VENDOR, DJANGO_SETTINGS_MODULE="shop.settings",
                      SNOWPLOW_FLUSH_INTERVAL="30")


def test_example_under_gunicorn(collector: Collector, database: Path, tmp_path: Path) -> None:
    port = free_port()
    argv = [bin_path("gunicorn"), "--preload", "-w", "2", "-k", "gthread", "--threads", "4",
            "-b", f"127.0.0.1:{port}", "--chdir", str(PROJECT), "--graceful-timeout", "20",
            "--log-level", "warning", "shop.wsgi"]
    server = Server(argv, _env(collector, database, 1), tmp_path / "gunicorn.log")
    try:
        server.wait_http(f"http://127.0.0.1:{port}/health/")
        user_id, eid = drive(f"http://127.0.0.1:{port}", 8, close=False)
        code = server.stop(signal.SIGTERM)
    finally:
        server.kill()
    assert code == 0, server.log()
    collector.wait_for(ITEMS + 5, timeout=15)
    verify(accepted_events(collector), user_id, eid, hops=1)


@pytest.mark.parametrize("stop", ["fifo-q", "sigterm-graceful"])
def test_example_under_uwsgi(collector: Collector, database: Path, tmp_path: Path,
                             stop: str) -> None:
    port = free_port()
    fifo = tmp_path / "master.fifo"
    argv = [bin_path("uwsgi"), "--http-socket", f"127.0.0.1:{port}", "--master",
            "--processes", "2", "--enable-threads", "--chdir", str(PROJECT),
            "--module", "shop.wsgi:application", "--need-app", "--master-fifo", str(fifo),
            "--disable-logging"]
    if stop == "sigterm-graceful":  # uWSGI's recipe for a graceful SIGTERM (not --die-on-term)
        argv += ["--hook-master-start", "unix_signal:15 gracefully_kill_them_all"]
    server = Server(argv, _env(collector, database, 0), tmp_path / "uwsgi.log")
    try:
        server.wait_log("spawned uWSGI worker 2", timeout=60)
        server.wait_http(f"http://127.0.0.1:{port}/health/")
        user_id, eid = drive(f"http://127.0.0.1:{port}", 2, close=True)
        if stop == "fifo-q":
            fifo.write_text("q")  # graceful shutdown
        else:
            server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(60)
    finally:
        server.kill()
    assert code == 0, tail(tmp_path / "uwsgi.log")
    collector.wait_for(ITEMS + 5, timeout=15)
    verify(accepted_events(collector), user_id, eid, hops=0)
