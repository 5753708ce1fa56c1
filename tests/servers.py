"""Helpers to run real servers (gunicorn, uWSGI, celery) as subprocesses in tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_env(endpoint: str, **extra: str) -> dict[str, str]:
    # faulthandler in every server process: a server that does not stop in time is sent
    # SIGABRT, and each of its processes writes every thread's traceback into the log
    return {**os.environ, "PYTHONPATH": str(ROOT), "SNOWPLOW_TEST_ENDPOINT": endpoint,
            "PYTHONFAULTHANDLER": "1", **extra}


class Server:
    """A server subprocess in its own process group; stopped by signal, killed at the end."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(list(argv), cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        """Wait until *url* answers (the server is up), or fail with its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log()}")
            try:
                requests.get(url, timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError(f"server did not answer within {timeout}s:\n{self.log()}")

    def wait_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not seen within {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send *sig* to the main process and wait for it to exit; then kill what is left
        of the group. A server that does not exit in time fails the test with the
        tracebacks of all its processes' threads (SIGABRT to the group, faulthandler)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pids = group_pids(self.proc.pid)
            table = "\n".join(describe_process(pid) for pid in pids)
            for pid in pids:  # one by one, each gone before the next: tracebacks apart
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGABRT)
                    wait_gone(pid, timeout=5)
            raise AssertionError(f"{self.proc.args[0]} did not stop within {timeout}s of "
                                 f"signal {sig}; its processes then:\n{table}\n"
                                 f"the log, with each process's threads:\n"
                                 f"{self.log()[-20000:]}") from None
        finally:
            self.kill()
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(10)
        self._log.close()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


def group_pids(pgid: int) -> list[int]:
    """The processes of process group *pgid* (from /proc), leader first."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid:  # state, ppid, pgrp, ...
                pids.append(int(stat.parent.name))
    return sorted(pids, key=lambda pid: pid != pgid)


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until process *pid* has exited (gone, or a zombie not yet reaped); False if it
    still runs after *timeout* seconds."""
    stat = Path("/proc") / str(pid) / "stat"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if stat.read_text().rpartition(")")[2].split()[0] in ("Z", "X"):
                return True
        except OSError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def describe_process(pid: int) -> str:
    """One line on process *pid*: state, parent, what the kernel has it wait in, command."""
    proc = Path("/proc") / str(pid)
    try:
        fields = (proc / "stat").read_text().rpartition(")")[2].split()
        wchan = (proc / "wchan").read_text() if (proc / "wchan").exists() else "?"
        command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError as exc:
        return f"pid {pid}: gone ({exc.strerror})"
    return f"pid {pid} state {fields[0]} ppid {fields[1]} wchan {wchan or '-'}: {command[:200]}"


def bin_path(name: str) -> str:
    """The console script *name* installed beside this interpreter."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name
