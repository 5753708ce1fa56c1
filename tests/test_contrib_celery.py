"""Celery task instrumentation: the example app under a real worker — prefork (concurrency
2, children recycled by --max-tasks-per-child), threads and solo pools — with kombu's
filesystem broker; tasks queued by the example's ``send.py``; after a warm shutdown the
collector holds exactly one started event and one outcome per run, valid against the
shipped schemas under a custom vendor, with the runtime measured in the worker."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from snowplow_threaded import Emitter, Tracker
from snowplow_threaded.collector import Collector
from snowplow_threaded.contrib.celery import exception_type, instrument
from tests.apps.contrib_support import EXAMPLES, assert_unique, shipped_event
from tests.helpers import accepted_events
from tests.servers import Server, bin_path, server_env

VENDOR = "com.acme.tasks"
TASKS = 15  # send.py: 9 shop.add, 3 shop.charge (fail), 3 shop.flaky (one retry)
EVENTS = 9 * 2 + 3 * 2 + 3 * 4


@pytest.mark.parametrize(
    "pool",
    [["--pool", "prefork", "--concurrency", "2", "--max-tasks-per-child", "3"],
     ["--pool", "threads", "--concurrency", "2"],
     ["--pool", "solo"]],
    ids=["prefork-recycled", "threads", "solo"],
)
def test_example_worker_sends_every_task_event_once(collector: Collector, tmp_path: Path,
                                                    pool: list[str]) -> None:
    env = server_env(collector.endpoint, SNOWPLOW_ENDPOINT=collector.endpoint,
                     CELERY_FS_DIR=str(tmp_path / "broker"), SNOWPLOW_SCHEMA_VENDOR=VENDOR,
                     SNOWPLOW_FLUSH_INTERVAL="30")
    argv = [bin_path("celery"), "--workdir", str(EXAMPLES / "celery_app"), "-A", "tasks",
            "worker", *pool, "--loglevel", "INFO", "--without-gossip", "--without-mingle",
            "--without-heartbeat"]
    # every task queued before the worker starts: kombu's filesystem broker creates a
    # message file before it writes it, and a worker polling meanwhile reads it empty
    sent = subprocess.run([sys.executable, str(EXAMPLES / "celery_app" / "send.py"),
                           str(TASKS)], env=env, capture_output=True, text=True,
                          check=True, timeout=60)
    tasks = {t["id"]: t["name"] for t in map(json.loads, sent.stdout.splitlines())}
    assert len(tasks) == TASKS
    worker = Server(argv, env, tmp_path / "celery.log")
    try:
        worker.wait_log("ready", timeout=60)
        _wait_done(worker, TASKS)
        code = worker.stop(signal.SIGTERM, timeout=60)  # warm shutdown
    finally:
        worker.kill()
    log = worker.log()
    assert code == 0, log[-4000:]
    collector.wait_for(EVENTS, timeout=15)
    events = accepted_events(collector)
    assert len(events) == EVENTS, _what_arrived(collector, events, tasks, log)
    assert_unique(events)
    runs: dict[str, list[tuple[str, dict[str, Any]]]] = collections.defaultdict(list)
    for event in sorted(events, key=lambda e: int(e["dtm"])):
        assert event["aid"] == "celery-example"
        name, data = shipped_event(event, VENDOR)
        assert data["task_name"] == tasks[data["task_id"]]
        assert data["queue"] == "celery"
        runs[data["task_id"]].append((name, data))
    assert set(runs) == set(tasks)
    for task_id, seen in runs.items():
        kinds = [(name, data["retries"]) for name, data in seen]
        task = tasks[task_id]
        if task == "shop.add":
            assert kinds == [("task_started", 0), ("task_succeeded", 0)]
            assert 20 <= seen[1][1]["runtime_ms"] < 10_000  # it sleeps 20 ms
        elif task == "shop.charge":
            assert kinds == [("task_started", 0), ("task_failed", 0)]
            assert seen[1][1]["exception_type"] == "tasks.PaymentDeclined"
            assert 0 <= seen[1][1]["runtime_ms"] < 10_000
        else:
            assert kinds == [("task_started", 0), ("task_retried", 0),
                             ("task_started", 1), ("task_succeeded", 1)]
            assert seen[1][1]["exception_type"] == "ConnectionError"
    if "prefork" in pool:  # 18 runs, 3 per child: the pool replaced its children
        assert "ForkPoolWorker-3" in log, log[-3000:]


def _what_arrived(collector: Collector, events: list[dict[str, Any]], tasks: dict[str, str],
                  log: str) -> str:
    """For a failure: the events each task run sent, the requests, the worker's log."""
    kinds: dict[str, list[str]] = collections.defaultdict(list)
    for event in events:
        name, data = shipped_event(event, VENDOR)
        kinds[data["task_id"]].append(name)
    requests = [(r.index, r.connection, r.status, r.outcome, len(r.events))
                for r in collector.requests()]
    return (f"{len(events)} of {EVENTS} events\n"
            + "\n".join(f"{name} {task_id}: {kinds.get(task_id, [])}"
                         for task_id, name in tasks.items())
            + f"\nrequests (index, connection, status, outcome, events): {requests}\n"
            + log[-12000:])


def _wait_done(worker: Server, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = worker.log()
        if log.count("succeeded in") + log.count("raised unexpected") >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"tasks not done:\n{worker.log()[-3000:]}")


def test_eager_task_events_and_options(collector: Collector) -> None:
    """In-process (``task.apply``): events, ignore patterns, event selection, replacing an
    instrumentation, and disconnecting."""
    from celery import Celery

    app = Celery("eager")
    tracker = Tracker("eager", Emitter(collector.endpoint, batch_size=1), encode_base64=False)

    @app.task(name="eager.ok")
    def ok() -> int:
        return 1

    @app.task(name="eager.bad")
    def bad() -> None:
        raise KeyError("x")

    @app.task(name="celery.internal")
    def internal() -> None:
        return None

    first = instrument(app, tracker=tracker, vendor=VENDOR)
    second = instrument(app, tracker=lambda: tracker, vendor=VENDOR,
                        events=("succeeded", "failed"))  # replaces the first
    try:
        ok.apply()
        bad.apply()
        internal.apply()
        assert tracker.flush(timeout=5)
        got = sorted(shipped_event(e, VENDOR)[0] for e in accepted_events(collector))
        assert got == ["task_failed", "task_succeeded"]
        [failed] = [shipped_event(e, VENDOR)[1] for e in accepted_events(collector)
                    if "task_failed" in e["ue_pr"]]
        assert failed["exception_type"] == "KeyError" and failed["queue"] is None
        second.disconnect()
        ok.apply()
        assert tracker.flush(timeout=5) and len(accepted_events(collector)) == 2
        first.disconnect()  # already replaced: a no-op
    finally:
        second.disconnect()
        tracker.close(2)
    with pytest.raises(ValueError):
        instrument(app, tracker=tracker, events=("finished",))
    with pytest.raises(ValueError):
        instrument(app, tracker=tracker, vendor="not a vendor")
    assert exception_type(ValueError()) == "ValueError"
    assert exception_type(subprocess.TimeoutExpired("x", 1)) == "subprocess.TimeoutExpired"
