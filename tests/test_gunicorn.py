"""Real gunicorn: a Flask app that builds its tracker at import, with and without
--preload, sync and gthread workers; graceful shutdown (SIGTERM to the master) must leave
every request event and each import event at the collector exactly once."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import pytest
import requests

from snowplow_threaded.collector import Collector
from tests.helpers import accepted_events, require
from tests.servers import Server, bin_path, free_port, server_env


@pytest.fixture(autouse=True)
def _gunicorn_installed() -> None:
    require(shutil.which(bin_path("gunicorn")) is not None
            or Path(bin_path("gunicorn")).exists(), "gunicorn (in the test extra)")

WORKERS = 4
REQUESTS = 60


@pytest.mark.parametrize("preload", [True, False], ids=["preload", "no-preload"])
@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_gunicorn_graceful_shutdown_delivers_everything_once(
    collector: Collector, tmp_path: Path, preload: bool, worker_class: str
) -> None:
    port = free_port()
    argv = [bin_path("gunicorn"), "-w", str(WORKERS), "-k", worker_class, "-b",
            f"127.0.0.1:{port}", "--graceful-timeout", "20", "--log-level", "warning"]
    if worker_class == "gthread":
        argv += ["--threads", "4"]
    if preload:
        argv.append("--preload")
    argv.append("tests.apps.flask_app:app")
    server = Server(argv, server_env(collector.endpoint), tmp_path / "gunicorn.log")
    try:
        server.wait_http(f"http://127.0.0.1:{port}/ping")
        pids = set()
        with requests.Session() as http:
            for n in range(REQUESTS):
                resp = http.get(f"http://127.0.0.1:{port}/track", params={"n": n}, timeout=10)
                assert resp.status_code == 200
                pids.add(resp.text.split()[1])
        code = server.stop()
    finally:
        server.kill()
    assert code == 0, server.log()
    imports = WORKERS if not preload else 1
    assert collector.wait_for(REQUESTS + imports, timeout=15), server.log()
    events = accepted_events(collector)
    eids = collections.Counter(e["eid"] for e in events)
    assert max(eids.values()) == 1, "an event was delivered twice"
    labels = collections.Counter(e.get("se_la", "") for e in events if e["se_ac"] == "request")
    assert sorted(labels.elements()) == sorted(map(str, range(REQUESTS)))
    import_events = [e for e in events if e["se_ac"] == "import"]
    assert len(import_events) == imports, server.log()
    assert len(events) == REQUESTS + imports
    assert all(e["p"] == "srv" and e["aid"] == "test-app" for e in events)
