"""Real Celery worker, prefork pool, concurrency 2, filesystem broker: N tasks each
tracking one event leave exactly N events at the collector after a warm shutdown, also
when children are recycled by --max-tasks-per-child."""

from __future__ import annotations

import collections
import signal
import time
from pathlib import Path

import pytest

from snowplow_threaded.collector import Collector
from tests.apps.celery_app import make_app
from tests.helpers import accepted_events
from tests.servers import Server, bin_path, server_env

TASKS = 40


@pytest.mark.parametrize("max_tasks", [None, 5], ids=["long-lived", "max-tasks-per-child-5"])
def test_celery_prefork_warm_shutdown(collector: Collector, tmp_path: Path,
                                      max_tasks: int | None) -> None:
    env = server_env(collector.endpoint, CELERY_FS_DIR=str(tmp_path / "broker"))
    argv = [bin_path("celery"), "-A", "tests.apps.celery_app", "worker", "--pool", "prefork",
            "--concurrency", "2", "--loglevel", "INFO", "--without-gossip",
            "--without-mingle", "--without-heartbeat"]
    if max_tasks:
        argv += ["--max-tasks-per-child", str(max_tasks)]
    # every task queued before the worker starts: kombu's filesystem broker creates a
    # message file before it writes it, and a worker polling meanwhile reads it empty
    producer = make_app(tmp_path / "broker")  # the same broker, from this process
    with producer.connection_for_write() as conn:
        for n in range(TASKS):
            producer.send_task("track_one", args=(n,), connection=conn)
    worker = Server(argv, env, tmp_path / "celery.log")
    try:
        worker.wait_log("ready", timeout=60)
        _wait_tasks_done(worker, TASKS)
        code = worker.stop(signal.SIGTERM, timeout=60)   # warm shutdown
    finally:
        worker.kill()
    assert code == 0, worker.log()
    collector.wait_for(TASKS, timeout=20)
    events = accepted_events(collector)
    got = sorted(int(e["se_la"]) for e in events)
    assert len(events) >= TASKS, (f"{len(events)} of {TASKS} events: {got}\n"
                                  + worker.log()[-4000:])
    assert max(collections.Counter(e["eid"] for e in events).values()) == 1
    labels = sorted(int(e["se_la"]) for e in events)
    assert labels == list(range(TASKS)), worker.log()
    if max_tasks:
        assert len({e["se_pr"] for e in events}) >= TASKS // max_tasks  # recycled children


def _wait_tasks_done(worker: Server, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.log().count("succeeded in") >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"tasks not done:\n{worker.log()[-3000:]}")
