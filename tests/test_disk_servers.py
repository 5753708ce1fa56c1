"""DiskEventStore under real gunicorn (--max-requests) and a real Celery prefork worker
(--max-tasks-per-child), the collector down while workers are recycled (and one gunicorn
worker SIGKILLed): what the dead workers left is adopted by live ones, and every event
reaches the collector exactly once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests

from snowplow_threaded.collector import Collector
from tests.apps.celery_broker import make_app
from tests.disk_support import labels, wait_labels
from tests.helpers import require
from tests.servers import Server, bin_path, free_port, server_env


@pytest.fixture(autouse=True)
def _servers_installed() -> None:
    require(Path(bin_path("gunicorn")).exists() and Path(bin_path("celery")).exists(),
            "gunicorn and celery (the test extra)")


def test_gunicorn_recycled_and_killed_workers(micro_collector: Collector,
                                              tmp_path: Path) -> None:
    micro_collector.pause(503)
    port = free_port()
    argv = [bin_path("gunicorn"), "-w", "3", "-k", "sync", "-b", f"127.0.0.1:{port}",
            "--max-requests", "8", "--log-level", "warning", "tests.apps.disk_apps:app"]
    env = server_env(micro_collector.endpoint, SNOWPLOW_TEST_SPOOL=str(tmp_path / "spool"))
    server = Server(argv, env, tmp_path / "gunicorn.log")
    pids: set[str] = set()
    first, second = 50, 10
    try:
        server.wait_http(f"http://127.0.0.1:{port}/ping")
        with requests.Session() as http:
            for n in range(first):
                pids.add(http.get(f"http://127.0.0.1:{port}/track", params={"n": n},
                                  timeout=10).text.split()[1])
            victim = int(http.get(f"http://127.0.0.1:{port}/track", params={"n": first},
                                  timeout=10).text.split()[1])
            time.sleep(0.3)  # written
            os.kill(victim, signal.SIGKILL)
            micro_collector.resume()
            for n in range(first + 1, first + 1 + second):  # live workers go on
                pids.add(http.get(f"http://127.0.0.1:{port}/track", params={"n": n},
                                  timeout=10).text.split()[1])
        expected = {str(n) for n in range(first + 1 + second)}
        assert wait_labels(micro_collector, expected, timeout=30), \
            (expected - set(labels(micro_collector)), server.log()[-3000:])
        code = server.stop()
    finally:
        server.kill()
    assert code == 0, server.log()
    got = labels(micro_collector)
    assert set(got) == expected and max(got.values()) == 1, got.most_common(3)
    assert len(pids) > 3  # workers were recycled
    assert sorted(os.listdir(tmp_path / "spool")) == ["FORMAT"]


def test_celery_recycled_children(micro_collector: Collector, tmp_path: Path) -> None:
    micro_collector.pause(503)
    broker = tmp_path / "broker"
    env = server_env(micro_collector.endpoint, CELERY_FS_DIR=str(broker),
                     SNOWPLOW_TEST_SPOOL=str(tmp_path / "spool"), SNOWPLOW_TEST_APP="celery")
    argv = [bin_path("celery"), "-A", "tests.apps.disk_apps", "worker", "--pool", "prefork",
            "--concurrency", "2", "--max-tasks-per-child", "4", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    worker = Server(argv, env, tmp_path / "celery.log")
    first, second = 24, 6
    try:
        worker.wait_log("ready", timeout=60)
        producer = make_app(broker)
        with producer.connection_for_write() as conn:
            for n in range(first):
                producer.send_task("track_one", args=(n,), connection=conn)
        _wait_log_count(worker, "succeeded in", first)
        micro_collector.resume()
        with producer.connection_for_write() as conn:  # children in use adopt the rest
            for n in range(first, first + second):
                producer.send_task("track_one", args=(n,), connection=conn)
        expected = {str(n) for n in range(first + second)}
        assert wait_labels(micro_collector, expected, timeout=30), \
            (expected - set(labels(micro_collector)), worker.log()[-3000:])
        code = worker.stop(signal.SIGTERM, timeout=60)
    finally:
        worker.kill()
    assert code == 0, worker.log()[-3000:]
    got = labels(micro_collector)
    assert set(got) == expected and max(got.values()) == 1, got.most_common(3)
    children = {e["se_property"] for e in micro_collector.events()}
    assert len(children) >= first // 4  # recycled children
    assert sorted(os.listdir(tmp_path / "spool")) == ["FORMAT"]


def _wait_log_count(server: Server, text: str, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.log().count(text) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{count} x {text!r} not seen:\n{server.log()[-3000:]}")
