"""Helpers for the disk store's tests: child processes that track to a directory, and a
TCP relay that holds the collector's answers back (so that a process can be killed while
its request is in flight, after the collector kept the events)."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from snowplow_threaded import DiskEventStore, Emitter
from snowplow_threaded.collector import Collector

ROOT = Path(__file__).resolve().parent.parent


class Child:
    """``tests.apps.disk_child`` in a subprocess; its output lines are read on a thread."""

    def __init__(self, directory: Path, endpoint: str, prefix: str, count: int,
                 *options: str) -> None:
        argv = [sys.executable, "-m", "tests.apps.disk_child", str(directory), endpoint,
                prefix, str(count), *options]
        self.prefix = prefix
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for the child
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,),
                                        daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            with self._changed:
                self.lines.append(line.strip())
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_line(self, startswith: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if line.startswith(startswith):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None
                                      and not self._reader.is_alive()):
                    raise AssertionError(f"no {startswith!r} line from {self.prefix}: "
                                         f"{self.lines[-5:]}\n{self.stderr()}")
                self._changed.wait(remaining)

    def tracked(self) -> list[tuple[int, float]]:
        """``(last label number, time.time())`` of each progress line so far."""
        with self._changed:
            return [(int(p[1]), float(p[2])) for p in (x.split() for x in self.lines)
                    if p[0] == "tracked"]

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace")[-4000:]

    def stats(self) -> dict[str, Any]:
        """The stats the child printed at its exit."""
        line = self.wait_line("stats ")
        value: dict[str, Any] = json.loads(line[len("stats "):])
        return value

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(10)


def adopt_and_send(endpoint: str, directory: Path, timeout: float = 20.0, **settings: Any
                   ) -> tuple[Emitter, bool]:
    """What a new process on *directory* does to send what dead processes left there now:
    adopt it, then flush (it would also go with its first tracked event). The emitter
    (with *settings*), and whether the flush saw it all delivered."""
    store = DiskEventStore(directory)
    emitter = Emitter(endpoint, event_store=store, **settings)
    store.adopt()
    return emitter, emitter.flush(timeout)


def labels(collector: Collector) -> collections.Counter[str]:
    """How many times each structured event label reached *collector*."""
    return collections.Counter(str(e["se_label"]) for e in collector.events())


def wait_labels(collector: Collector, expected: set[str], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if expected <= set(labels(collector)):
            return True
        time.sleep(0.1)
    return False


class HoldingRelay:
    """A TCP relay to *target*: requests go through at once, answers wait while
    :attr:`hold` is set (:attr:`holding` is set while one waits; :meth:`held_ports` are
    the client ports whose answer waits, :func:`socket_owner` finds their process)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.hold = threading.Event()
        self.holding = threading.Event()
        self.release = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = False
        self._held: set[int] = set()
        self._held_lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True),
                             daemon=True).start()

    def held_ports(self) -> set[int]:
        with self._held_lock:
            return set(self._held)

    def _pipe(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if answers and self.hold.is_set() and not self.release.is_set():
                    peer = sink.getpeername()[1]
                    with self._held_lock:
                        self._held.add(peer)
                    self.holding.set()
                    self.release.wait(30)
                    with self._held_lock:
                        self._held.discard(peer)
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop = True
        self.release.set()
        self._server.close()


def socket_owner(local_port: int) -> int | None:
    """The pid of the process holding the TCP socket bound to 127.0.0.1:*local_port* (read
    from /proc), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return int(pid)
    return None
