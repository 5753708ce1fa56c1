"""Processes of :mod:`stress.bench`: the sink, the measurement children, the exit script
and the fork-cost runs (each in a fresh interpreter that imports one library only)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from stress.bench_procs import reap
from stress.child import sink_call

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = {
    "se": "(a) StructuredEvent",
    "sd_b64": "(b) SelfDescribing+2 ctx, base64",
    "sd_raw": "(b) SelfDescribing+2 ctx, no base64",
}
FORK_LABEL = "(c) 4 forked workers x (a)"


def child_env(root: Path = REPO) -> dict[str, str]:
    """The environment of a measurement child: *root* (a folder holding ``stress`` and the
    ``snowplow_threaded`` under test; this repository by default) first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONHASHSEED", "0")
    return env


@contextlib.contextmanager
def sink_process() -> Iterator[int]:
    """Start :mod:`stress.sink` in its own process; yield its port; stop it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "stress.sink", "--port", "0"],
        cwd=REPO, env=child_env(), stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("PORT "):
            raise RuntimeError(f"sink did not start: {line!r}")
        yield int(line.split()[1])
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (connections are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _result_file() -> str:
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as fh:
        return fh.name


def _read_result(path: str) -> dict[str, Any] | None:
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return json.loads(text) if text else None


def report_failure(spec: dict[str, Any], result: dict[str, Any]) -> None:
    if not result.get("ok"):
        print(f"  !! {spec.get('lib')} {spec.get('mode')} {spec.get('workload', '')}: "
              f"{result.get('error')}\n{result.get('traceback', result.get('stderr', ''))}",
              file=sys.stderr)


def run_child(spec: dict[str, Any], timeout: float, root: Path = REPO,
              prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its JSON result (or the failure).
    *root*: see :func:`child_env`; *prefix*: a command the interpreter runs under (e.g.
    valgrind)."""
    result_file = _result_file()
    spec = {**spec, "result_file": result_file}
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "stress.child", json.dumps(spec)], cwd=root,
            env=child_env(root), timeout=timeout, capture_output=True, text=True,
        )
        result = _read_result(result_file) or {
            "ok": False, "error": f"no result (exit {proc.returncode})",
            "stderr": proc.stderr[-2000:]}
    except subprocess.TimeoutExpired:
        _read_result(result_file)
        result = {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    result["child_wall_s"] = time.monotonic() - started
    report_failure(spec, result)
    return result


def median_run(results: list[dict[str, Any]], key: str = "e2e_s") -> dict[str, Any]:
    """With --repeat > 1: the run with the median *key* (its numbers stay coherent);
    runs without a value for *key* sort last."""
    ok = [r for r in results if r.get("ok")]
    if not ok:
        return results[0]

    def value(result: dict[str, Any]) -> float:
        found = result.get(key)
        return float("inf") if found is None else float(found)

    ok.sort(key=value)
    return ok[len(ok) // 2]


# -- a script that ends normally ---------------------------------------------------------------
def run_exit_script(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``stress.child`` in mode ``exit`` (track N events, end normally) and time the
    interpreter's exit from its last ``track()``; then ask the sink what arrived."""
    port, events = spec["port"], int(spec["events"])
    result_file = _result_file()
    spec = {**spec, "mode": "exit", "result_file": result_file}
    sink_call(port, "POST", f"/_reset?expect={events}")
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen([sys.executable, "-m", "stress.child", json.dumps(spec)],
                                cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL,
                                stderr=errors)
        waited = reap([proc.pid], time.monotonic_ns() + int(timeout * 1e9))[proc.pid]
        proc.returncode = os.waitstatus_to_exitcode(waited["status"])  # reaped: tell Popen
        errors.seek(0)
        stderr = errors.read()[-2000:]
    result = _read_result(result_file) or {"ok": False, "error": "no result",
                                           "stderr": stderr}
    if result.get("ok"):
        sink = sink_call(port, "GET", f"/_wait?timeout=1&expect={events}")
        result.update({
            "killed": waited["killed"], "exit_code": proc.returncode,
            "process_cpu_s": waited["cpu_s"],
            "drain_s": (waited["exit_ns"] - result["last_track_ns"]) / 1e9,
            "delivered": int(sink["events"]), "unique": int(sink["unique"]),
            "complete": sink["unique"] == events == int(sink["events"]),
            "tail_s": ((sink["done_ns"] or sink["last_ns"]) - result["last_track_ns"]) / 1e9
            if (sink["done_ns"] or sink["last_ns"]) else None,
        })
    report_failure(spec, result)
    return result


# -- fork cost ----------------------------------------------------------------------------------
def run_fork_cost(lib: str, forks: int, timeout: float) -> dict[str, Any]:
    """``python -m stress.fork_cost --lib <lib> --json``: its raw numbers."""
    path = _result_file()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "stress.fork_cost", "--forks", str(forks), "--lib",
             "ours" if lib == "ours" else "ref", "--json", path],
            cwd=REPO, env=child_env(), timeout=timeout, capture_output=True, text=True)
        result = _read_result(path) or {"ok": False, "error": f"exit {proc.returncode}",
                                        "stderr": proc.stderr[-2000:]}
        result.setdefault("ok", True)
    except subprocess.TimeoutExpired:
        _read_result(path)
        result = {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    report_failure({"lib": lib, "mode": "fork_cost"}, result)
    return result


def merge_fork_costs(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several fork-cost runs of one library: the median of every figure."""
    ok = [r for r in results if r.get("ok")]
    if not ok:
        return results[0]
    merged: dict[str, Any] = {**ok[0], "runs": len(ok)}
    for key, value in ok[0].items():
        if isinstance(value, dict):
            merged[key] = {k: statistics.median(r[key][k] for r in ok) for k in value}
        elif isinstance(value, float):
            merged[key] = statistics.median(r[key] for r in ok)
    return merged


def in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` run in a forked child (a fresh heap and no other threads), its
    JSON-serialisable result read back through a pipe."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_fd)
        try:
            os.write(write_fd, json.dumps(function(*args)).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))
