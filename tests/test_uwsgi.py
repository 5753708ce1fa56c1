"""Real uWSGI (master + 2 workers): the Flask app that tracks at import, with
--enable-threads alone, with --py-call-uwsgi-fork-hooks, and with --lazy-apps; a graceful
shutdown (master FIFO 'q') leaves every event at the collector exactly once. Without
threads, one clear warning is logged."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest
import requests

from snowplow_threaded.collector import Collector
from tests.helpers import accepted_events
from tests.servers import Server, bin_path, free_port, server_env

REQUESTS = 40
#: workers recycled (and re-forked from the master) every 2 s while requests come in
RECYCLED = ["--enable-threads", "--max-worker-lifetime", "2", "--min-worker-lifetime", "1"]


def _start(collector: Collector, tmp_path: Path, extra: list[str]) -> tuple[Server, int, Path]:
    port = free_port()
    fifo = tmp_path / "master.fifo"
    argv = [bin_path("uwsgi"), "--http-socket", f"127.0.0.1:{port}", "--master",
            "--processes", "2", "--module", "tests.apps.flask_app:app", "--need-app",
            "--master-fifo", str(fifo), "--disable-logging", *extra]
    server = Server(argv, server_env(collector.endpoint), tmp_path / "uwsgi.log")
    server.wait_log("spawned uWSGI worker 2", timeout=60)
    return server, port, fifo



@pytest.mark.parametrize(
    "extra",
    [["--enable-threads"], ["--enable-threads", "--py-call-uwsgi-fork-hooks"],
     ["--enable-threads", "--lazy-apps"], RECYCLED],
    ids=["threads", "fork-hooks", "lazy-apps", "threads-recycled"],
)
def test_uwsgi_graceful_shutdown_delivers_everything_once(
    collector: Collector, tmp_path: Path, extra: list[str]
) -> None:
    server, port, fifo = _start(collector, tmp_path, extra)
    try:
        for n in range(REQUESTS):  # uWSGI's http-socket does not keep connections alive
            if extra is RECYCLED:
                time.sleep(0.15)
            resp = requests.get(f"http://127.0.0.1:{port}/track", params={"n": n},
                                headers={"Connection": "close"}, timeout=10)
            assert resp.status_code == 200
        if "--lazy-apps" in extra:
            # a graceful shutdown that starts while a worker still imports the app: the
            # master never signals that worker ("Gracefully killing" only the other), which
            # then sits in uWSGI's accept loop (no Python frame on its main thread, our
            # sender idle) until the 60 s mercy. A uWSGI race; stop once both have loaded
            deadline = time.monotonic() + 30
            while server.log().count("(default app)") < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        fifo.write_text("q")
        code = server.proc.wait(60)
    finally:
        server.kill()
    assert code == 0, server.log()
    if extra is RECYCLED:
        assert "Respawned uWSGI worker" in server.log()
    # lazy-apps: each worker imports the app. Otherwise the master does, once; without
    # fork hooks it starts no sender and exactly one worker takes its buffer over, even
    # when workers are recycled (--max-requests) and re-forked from the master.
    imports = 2 if "--lazy-apps" in extra else 1
    collector.wait_for(REQUESTS + imports, timeout=15)
    got = collections.Counter(e["se_ac"] for e in accepted_events(collector))
    assert sum(got.values()) == REQUESTS + imports, (got, server.log()[-2000:])
    events = accepted_events(collector)
    assert max(collections.Counter(e["eid"] for e in events).values()) == 1
    labels = sorted(int(e["se_la"]) for e in events if e["se_ac"] == "request")
    assert labels == list(range(REQUESTS))
    assert sum(e["se_ac"] == "import" for e in events) == imports, events
    assert "uWSGI runs without --enable-threads" not in server.log()


def test_uwsgi_without_threads_warns_once_and_still_delivers(
    collector: Collector, tmp_path: Path
) -> None:
    """Without --enable-threads uWSGI gives no guarantee for Python threads: the library
    warns once. With uWSGI 2.0 on Python >= 3.7 the sender thread still runs (the GIL
    always exists), so the graceful shutdown delivers everything; checked here so that a
    regression shows."""
    server, port, fifo = _start(collector, tmp_path, [])
    try:
        for n in range(10):
            requests.get(f"http://127.0.0.1:{port}/track", params={"n": n},
                         headers={"Connection": "close"}, timeout=10)
        fifo.write_text("q")
        code = server.proc.wait(60)
    finally:
        server.kill()
    assert code == 0, server.log()
    assert server.log().count("uWSGI runs without --enable-threads") == 1, server.log()
    collector.wait_for(11, timeout=15)
    events = accepted_events(collector)
    assert len(events) == 11 and len({e["eid"] for e in events}) == 11, events
