"""``python -m snowplow_threaded collector``: runs, serves, logs bad events, and stops cleanly
on SIGINT and SIGTERM (in a subprocess, as a user runs it)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "snowplow_threaded", "collector",
                             "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "collector listening on http://127.0.0.1:" in line, (line, proc.stderr)
    return proc, line.split("listening on ")[1].split()[0]


@pytest.fixture
def cli() -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc, endpoint = start()
    yield proc, endpoint
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serves_then_stops_cleanly_on_a_signal(cli: tuple[subprocess.Popen[str], str],
                                               signum: int) -> None:
    proc, endpoint = cli
    good = {"schema": PAYLOAD, "data": [{"e": "pv", "tv": "t", "p": "web"}]}
    bad = {"schema": PAYLOAD, "data": [{"e": "zz", "tv": "t", "p": "web"}]}
    assert requests.post(endpoint + TP2, json=good, timeout=10).ok
    assert requests.post(endpoint + TP2, json=bad, timeout=10).ok
    assert requests.get(endpoint + "/micro/all", timeout=10).json() == {
        "total": 2, "good": 1, "bad": 1}
    keep_alive = socket.create_connection(("127.0.0.1", int(endpoint.rsplit(":", 1)[1])))
    keep_alive.sendall(b"GET /hea")  # a request in progress does not hold up the stop
    started = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=10)
    keep_alive.close()
    assert proc.returncode == 0
    assert time.monotonic() - started < 5
    assert "stopped: 1 good, 1 bad events received" in out
    assert "e: unknown event type 'zz'" in err  # bad events are logged
    with pytest.raises(requests.ConnectionError):
        requests.get(endpoint + "/health", timeout=2)


def test_quiet_does_not_log_bad_events() -> None:
    proc, endpoint = start("--quiet")
    bad = {"schema": PAYLOAD, "data": [{"e": "zz", "tv": "t", "p": "web"}]}
    assert requests.post(endpoint + TP2, json=bad, timeout=10).ok
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "unknown event type" not in err


def test_schemas_and_limits_options(tmp_path: Path) -> None:
    path = tmp_path / "com.acme" / "thing" / "jsonschema" / "1-0-0"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"type": "object", "properties": {"n": {"type": "integer"}}}))
    proc, endpoint = start("--schemas", str(tmp_path), "--max-body-bytes", "2000",
                           "--max-events", "1")
    try:
        event = {"e": "ue", "tv": "t", "p": "web", "ue_pr": json.dumps({
            "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
            "data": {"schema": "iglu:com.acme/thing/jsonschema/1-0-0", "data": {"n": 1}}})}
        for _ in range(2):
            assert requests.post(endpoint + TP2, json={"schema": PAYLOAD, "data": [event]},
                                 timeout=10).ok
        assert requests.get(endpoint + "/micro/all", timeout=10).json()["good"] == 1
        big = {"schema": PAYLOAD, "data": [event] * 20}
        assert requests.post(endpoint + TP2, json=big, timeout=10).status_code == 413
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_a_port_in_use_exits_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "snowplow_threaded", "collector",
                               "--port", str(port)], capture_output=True, text=True,
                              timeout=30)
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_a_missing_schema_directory_is_an_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "snowplow_threaded", "collector", "--port",
                           "0", "--schemas", str(tmp_path / "none")], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_lists_the_commands() -> None:
    done = subprocess.run([sys.executable, "-m", "snowplow_threaded", "--help"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "collector" in done.stdout and "demo" in done.stdout
    none = subprocess.run([sys.executable, "-m", "snowplow_threaded"], capture_output=True,
                          text=True, timeout=30)
    assert none.returncode == 2
