"""Real uWSGI (master + 2 workers): the Flask app that tracks at import, with
--enable-threads alone, with --py-call-uwsgi-fork-hooks, and with --lazy-apps; a graceful
shutdown (master FIFO 'q') leaves every event at the collector exactly once. Without
threads, one clear warning is logged."""

from __future__ import annotations

import collections
import signal
import subprocess
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


def _start(collector: Collector, tmp_path: Path, extra: list[str],
           processes: int = 2) -> tuple[Server, int, Path]:
    port = free_port()
    fifo = tmp_path / "master.fifo"
    argv = [bin_path("uwsgi"), "--http-socket", f"127.0.0.1:{port}", "--master",
            "--processes", str(processes), "--module", "tests.apps.flask_app:app", "--need-app",
            "--master-fifo", str(fifo), "--disable-logging", *extra]
    server = Server(argv, server_env(collector.endpoint), tmp_path / "uwsgi.log")
    server.wait_log(f"spawned uWSGI worker {processes}", timeout=60)
    return server, port, fifo


def _wait_exit(server: Server, timeout: float = 60) -> int:
    """The server's exit code; on a timeout, fails with its log (a worker that did not exit
    says where it stopped: "Gracefully killing worker N" and no exit line, say)."""
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"uWSGI still runs {timeout} s after 'q':\n{server.log()}") from None



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
        code = _wait_exit(server)
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
        code = _wait_exit(server)
    finally:
        server.kill()
    assert code == 0, server.log()
    assert server.log().count("uWSGI runs without --enable-threads") == 1, server.log()
    collector.wait_for(11, timeout=15)
    events = accepted_events(collector)
    assert len(events) == 11 and len({e["eid"] for e in events}) == 11, events


def test_uwsgi_without_threads_the_stop_signal_is_never_taken_by_a_sender_thread(
    collector: Collector, tmp_path: Path
) -> None:
    """The graceful stop's SIGHUP goes to the worker's main thread, whatever it blocks: with
    the main thread blocking SIGHUP, the signal stays pending until it unblocks. A sender
    thread that took it would run uWSGI's C handler, whose exit() waits for the GIL the main
    thread holds in accept() without --enable-threads: the worker hung until uWSGI's mercy
    and its events were lost (a CI run once met that without any blocking, Python 3.10)."""
    server, port, fifo = _start(collector, tmp_path, [], processes=1)
    try:
        for n in range(5):
            pid = int(requests.get(f"http://127.0.0.1:{port}/track", params={"n": n},
                                   headers={"Connection": "close"}, timeout=10).text.split()[1])
        requests.get(f"http://127.0.0.1:{port}/hold-sighup", params={"block": "1"},
                     headers={"Connection": "close"}, timeout=10)
        fifo.write_text("q")
        server.wait_log("graceful shutdown triggered", timeout=10)
        status = Path(f"/proc/{pid}/status")
        deadline = time.monotonic() + 10
        while not int(next(line.split()[1] for line in status.read_text().splitlines()
                           if line.startswith("ShdPnd:")), 16) & 1 << (signal.SIGHUP - 1):
            assert time.monotonic() < deadline, f"a thread took SIGHUP:\n{server.log()}"
            time.sleep(0.02)
        time.sleep(0.3)  # a thread free to take it would have by now
        assert "Gracefully killing worker" not in server.log(), server.log()
        requests.get(f"http://127.0.0.1:{port}/hold-sighup", params={"block": "0"},
                     headers={"Connection": "close"}, timeout=10)
        code = _wait_exit(server)
    finally:
        server.kill()
    assert code == 0, server.log()
    assert "Gracefully killing worker 1" in server.log()
    collector.wait_for(6, timeout=15)
    events = accepted_events(collector)
    assert len(events) == 6 and len({e["eid"] for e in events}) == 6, events
