"""Fork and exit behaviour in real processes: os.fork, multiprocessing, script exit.

The collector runs in this (the test) process; the tracked code runs in subprocesses so
that each scenario forks and exits for real, through the interpreter's normal exit path
or ``os._exit``. Every scenario checks exactly-once delivery by event id.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from snowplow_threaded.collector import Collector
from tests.helpers import accepted_events

ROOT = Path(__file__).resolve().parent.parent


def run_script(code: str, endpoint: str, timeout: float = 60.0,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "SNOWPLOW_TEST_ENDPOINT": endpoint,
                **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), endpoint],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def assert_exactly_once(collector: Collector, expected: dict[str, int]) -> None:
    """*expected* maps a structured-event action to its count; eids must be unique."""
    assert collector.wait_for(sum(expected.values()), timeout=20)
    events = accepted_events(collector)
    eids = [e["eid"] for e in events]
    dupes = [eid for eid, n in collections.Counter(eids).items() if n > 1]
    assert not dupes, f"{len(dupes)} event ids delivered more than once"
    counts = collections.Counter(e.get("se_ac") for e in events)
    assert dict(counts) == expected


PRELUDE = """
import os, sys, gc, threading, time
from snowplow_threaded import Emitter, Tracker, StructuredEvent
endpoint = sys.argv[1]
emitter = Emitter(endpoint, batch_size=1000, flush_interval=60.0, shutdown_timeout=10.0)
tracker = Tracker("fork", emitter)
def track(action, n):
    for i in range(n):
        tracker.track(StructuredEvent("fork", action, value=i))
def wait_children(pids):
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
"""


def test_children_exit_normally_and_parent_buffer_is_not_resent(collector: Collector) -> None:
    # The parent's 30 events are still buffered at fork (batch 1000, interval 60 s): if a
    # child re-sent its inherited copy they would arrive 5 times.
    code = PRELUDE + """
track("parent", 30)
pids = []
for n in range(4):
    pid = os.fork()
    if pid == 0:
        track("child", 25)
        sys.exit(0)          # normal interpreter exit: atexit flushes the child's events
    pids.append(pid)
wait_children(pids)
"""
    proc = run_script(code, collector.endpoint)
    assert proc.returncode == 0, proc.stderr
    assert_exactly_once(collector, {"parent": 30, "child": 100})


def test_children_os_exit_after_explicit_flush(collector: Collector) -> None:
    code = PRELUDE + """
track("parent", 10)
pids = []
for n in range(3):
    pid = os.fork()
    if pid == 0:
        track("child", 20)
        ok = tracker.flush(timeout=10)
        os._exit(0 if ok else 3)
    pids.append(pid)
wait_children(pids)
assert tracker.flush(timeout=10)
"""
    proc = run_script(code, collector.endpoint)
    assert proc.returncode == 0, proc.stderr
    assert_exactly_once(collector, {"parent": 10, "child": 60})


def test_fork_while_another_thread_holds_the_store_lock(collector: Collector) -> None:
    code = PRELUDE + """
track("parent", 5)
store = emitter.event_store
held = threading.Event(); release = threading.Event()
def hog():
    with store._lock:
        held.set()
        release.wait(5)
threading.Thread(target=hog, daemon=True).start()
held.wait(5)
pid = os.fork()
if pid == 0:
    track("child", 7)                    # must not deadlock on the inherited lock
    os._exit(0 if tracker.flush(timeout=10) else 3)
release.set()
wait_children([pid])
"""
    proc = run_script(code, collector.endpoint, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert_exactly_once(collector, {"parent": 5, "child": 7})


#: run first in a script: the kernel refuses MADV_WIPEONFORK (as before Linux 4.14)
NO_WIPEONFORK = """
import mmap
class _NoWipeOnFork(mmap.mmap):
    def madvise(self, *args):
        raise OSError(22, "Invalid argument")
mmap.mmap = _NoWipeOnFork
"""


@pytest.mark.parametrize("mark", ["wipeonfork", "no-wipeonfork"])
def test_fork_without_python_hooks(collector: Collector, mark: str) -> None:
    """libc's fork() called directly (through ctypes.PyDLL, which keeps the GIL), as uWSGI
    does by default: none of Python's at-fork hooks run. The child must still see that
    it forked (the kernel wipes the pid mark page; without MADV_WIPEONFORK, every pid is
    asked of the kernel), re-initialise the inherited emitter (the parent's sender thread
    is gone), not hand out the ids left in the inherited id pool, and send only its own
    events."""
    works = mark == "wipeonfork"
    code = ("" if works else NO_WIPEONFORK) + PRELUDE + f"MARK = {works}\n" + """
import ctypes
import snowplow_threaded.tracker as tracker_module
from snowplow_threaded import process_id
track("parent", 5)
assert tracker.flush(timeout=10)
assert process_id.MARK_WORKS is MARK and process_id.FORK_MARK[0] == int(MARK)
# fork only once the sender is parked in its condition wait: a fork without
# PyOS_AfterFork_Child copies the GIL's own state as it is, and one taken while another
# thread is mid-hand-off can deadlock the child inside CPython (no library can repair
# that). _deciding counts a worker inside next_lease; taking _cond then succeeds only
# while that worker waits (it holds _cond otherwise).
dispatcher = emitter._dispatcher
deadline = time.monotonic() + 10
while not dispatcher._deciding and time.monotonic() < deadline:
    time.sleep(0.001)
with dispatcher._cond:
    assert dispatcher._deciding == 1
pid = ctypes.PyDLL(None).fork()
if pid == 0:
    stale = set(tracker_module._pool.ids[-7:])  # what the inherited pool would give next
    code = 0 if process_id.FORK_MARK[0] == 0 else 4
    eids = {tracker.track(StructuredEvent("fork", "child")) for _ in range(7)}
    code = code or (5 if eids & stale else 0)
    code = code or (0 if process_id.KNOWN_PID[0] == os.getpid() else 6)
    # os._exit: no atexit or threading shutdown with the parent's threads still listed
    os._exit(code or (0 if tracker.flush(timeout=10) else 3))
wait_children([pid])
track("parent", 3)
assert tracker.flush(timeout=10)
"""
    proc = run_script(code, collector.endpoint, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert_exactly_once(collector, {"parent": 8, "child": 7})


def test_a_users_session_after_fork(collector: Collector) -> None:
    """An emitter given the user's ``requests.Session``: the child sends with that session
    (its headers), on a connection of its own, never on the keep-alive socket its parent
    holds; both deliver exactly once."""
    code = PRELUDE + """
import requests
session = requests.Session()
session.headers["X-User-Session"] = "yes"
emitter = Emitter(endpoint, batch_size=5, session=session)
tracker = Tracker("fork", emitter)
track("parent", 5)
assert tracker.flush(timeout=10)        # the parent's pooled connection is open now
pid = os.fork()
if pid == 0:
    track("child", 5)
    os._exit(0 if tracker.flush(timeout=10) else 3)
wait_children([pid])
track("parent-after", 5)
assert tracker.flush(timeout=10)
"""
    proc = run_script(code, collector.endpoint, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert_exactly_once(collector, {"parent": 5, "child": 5, "parent-after": 5})
    by_action: dict[str, set[int]] = collections.defaultdict(set)
    for request in collector.requests():
        assert request.headers.get("x-user-session") == "yes"
        for event in request.events:
            by_action[event["se_ac"]].add(request.connection)
    parent = by_action["parent"] | by_action["parent-after"]
    assert by_action["child"] and not by_action["child"] & parent, dict(by_action)


def test_fork_while_a_request_is_in_flight(collector: Collector) -> None:
    collector.faults(delay=2.0, times=1)
    code = PRELUDE + """
emitter2 = Emitter(endpoint, batch_size=5, shutdown_timeout=10.0)
t2 = Tracker("fork2", emitter2)
for i in range(5):
    t2.track(StructuredEvent("fork", "inflight", value=i))
deadline = time.monotonic() + 10          # until the worker is inside the slow request
while emitter2.stats().in_flight != 5 and time.monotonic() < deadline:
    time.sleep(0.005)
assert emitter2.stats().in_flight == 5
pid = os.fork()
if pid == 0:
    assert emitter2.stats().in_flight == 0
    for i in range(3):
        t2.track(StructuredEvent("fork", "child", value=i))
    os._exit(0 if t2.flush(timeout=10) else 3)
wait_children([pid])
assert t2.flush(timeout=10)
"""
    proc = run_script(code, collector.endpoint, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert_exactly_once(collector, {"inflight": 5, "child": 3})


def test_double_fork(collector: Collector) -> None:
    code = PRELUDE + """
track("parent", 4)
pid = os.fork()
if pid == 0:
    track("child", 6)
    pid2 = os.fork()
    if pid2 == 0:
        track("grandchild", 8)
        sys.exit(0)
    wait_children([pid2])
    sys.exit(0)
wait_children([pid])
"""
    proc = run_script(code, collector.endpoint)
    assert proc.returncode == 0, proc.stderr
    assert_exactly_once(collector, {"parent": 4, "child": 6, "grandchild": 8})


def test_one_hundred_forks_in_a_loop(collector: Collector) -> None:
    code = PRELUDE + """
track("parent", 1)
pids = []
for n in range(100):
    track("parent", 1)
    pid = os.fork()
    if pid == 0:
        track("child", 1)
        sys.exit(0)
    pids.append(pid)
    if len(pids) >= 10:                  # keep at most 10 alive: 2 small cores
        wait_children(pids); pids = []
wait_children(pids)
"""
    proc = run_script(code, collector.endpoint, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_exactly_once(collector, {"parent": 101, "child": 100})


def test_garbage_collected_emitter_is_forgotten(collector: Collector) -> None:
    code = PRELUDE + """
from snowplow_threaded.process import REGISTRY
before = len(REGISTRY.live())
e = Emitter(endpoint)
assert len(REGISTRY.live()) == before + 1
del e; gc.collect()
assert len(REGISTRY.live()) == before
track("parent", 2)
pid = os.fork()
if pid == 0:
    os._exit(0)
wait_children([pid])
"""
    proc = run_script(code, collector.endpoint)
    assert proc.returncode == 0, proc.stderr
    assert_exactly_once(collector, {"parent": 2})


def test_script_that_just_ends_delivers_everything(collector: Collector) -> None:
    code = """
import sys
from snowplow_threaded import Snowplow, StructuredEvent
t = Snowplow.create_tracker("script", sys.argv[1])
for i in range(5000):
    t.track(StructuredEvent("script", "end", value=i))
"""
    proc = run_script(code, collector.endpoint)
    assert proc.returncode == 0, proc.stderr
    assert_exactly_once(collector, {"end": 5000})


def test_script_exit_with_collector_down_respects_the_deadline(collector: Collector) -> None:
    collector.down()
    code = """
import logging, sys
logging.basicConfig(level=logging.WARNING)
from snowplow_threaded import Emitter, Tracker, StructuredEvent
t = Tracker("script", Emitter(sys.argv[1], shutdown_timeout=2.0, request_timeout=0.5))
for i in range(500):
    t.track(StructuredEvent("script", "lost", value=i))
"""
    start = time.monotonic()
    proc = run_script(code, collector.endpoint)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 2.0 + 3.0, f"exit took {elapsed:.1f}s with a 2 s shutdown_timeout"
    # every one of the 500 events is counted in the exit warning
    assert re.search(r"\b500 event\(s\) undelivered", proc.stderr), proc.stderr


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_children_flush_on_exit(collector: Collector, method: str) -> None:
    code = """
import multiprocessing, sys
from tests.apps import mp_app
if __name__ == "__main__":
    mp_app.track_many(("parent", 3))
    ctx = multiprocessing.get_context(sys.argv[2])
    procs = [ctx.Process(target=mp_app.track_many, args=(("child", 40),)) for _ in range(3)]
    for p in procs: p.start()
    for p in procs: p.join(30)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
"""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "SNOWPLOW_TEST_ENDPOINT":
                collector.endpoint}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), collector.endpoint,
                           method], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert_exactly_once(collector, {"parent": 3, "child": 120})


def test_multiprocessing_pool(collector: Collector) -> None:
    code = """
import multiprocessing, sys
from tests.apps import mp_app
if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2, maxtasksperchild=3) as pool:
        done = pool.map(mp_app.track_many, [("pool", 10)] * 8)
        pool.close(); pool.join()
    assert sum(done) == 80
"""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "SNOWPLOW_TEST_ENDPOINT":
                collector.endpoint}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          env=full_env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert_exactly_once(collector, {"pool": 80})


def test_handover_baton_goes_to_exactly_one_child(tmp_path: Path) -> None:
    """The hand-over used by a uWSGI master without fork hooks (see test_uwsgi): of all
    the children forked from the process that armed it, exactly one wins; children
    forked later, and the winner's own children, do not; the parent learns it lost it."""
    code = """
import os, sys
from snowplow_threaded.process import HANDOVER
out = sys.argv[1]
HANDOVER.arm()
HANDOVER.arm()  # idempotent
def child(tag):
    won = HANDOVER.claim()
    assert HANDOVER.claim() == won  # the first answer sticks
    with open(os.path.join(out, f"{tag}-{os.getpid()}"), "w") as f:
        f.write("1" if won else "0")
    if won:
        grand = os.fork()
        if grand == 0:
            child("grandchild")
            os._exit(0)
        os.waitpid(grand, 0)
    os._exit(0)
pids = []
for i in range(8):
    pid = os.fork()
    if pid == 0:
        child("child")
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
late = os.fork()
if late == 0:
    child("late")
os.waitpid(late, 0)
print("parent-took-back", HANDOVER.take_back())
HANDOVER.arm()  # a fresh offer
print("parent-took-back-fresh", HANDOVER.take_back())
"""
    proc = run_script(code, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    results = {p.name.split("-")[0]: [] for p in tmp_path.iterdir()}
    for p in tmp_path.iterdir():
        results[p.name.split("-")[0]].append(p.read_text())
    assert sorted(results["child"]) == ["0"] * 7 + ["1"]
    assert results["grandchild"] == ["0"] and results["late"] == ["0"]
    assert "parent-took-back False" in proc.stdout
    assert "parent-took-back-fresh True" in proc.stdout


def test_fork_from_a_callback_leaves_the_parents_batch_to_the_parent(
        collector: Collector) -> None:
    """A worker thread that forks from on_failure carries the parent's failed batch into the
    child: the child must neither retry it (the parent does) nor keep that thread as one of
    its workers; its own events go out through a worker of its own."""
    collector.faults(503, times=1)
    code = PRELUDE + """
children = []
def on_failure(sent, payloads):
    if children or os.getpid() != parent:
        return
    pid = os.fork()
    if pid:
        children.append(pid)
        return
    inherited = threading.current_thread()  # the parent's worker, in its callback
    def child():
        deadline = time.monotonic() + 10
        while inherited.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)  # until it settled the batch and stopped
        code = 4 if inherited.is_alive() else 0
        track("child", 3)
        stats = emitter.stats()
        ok = tracker.flush(timeout=10) and emitter.stats().sent == 3
        os._exit(code or (0 if ok and stats.retried == 0 else 3))
    threading.Thread(target=child).start()
parent = os.getpid()
emitter.on_failure = on_failure
track("parent", 5)
assert tracker.flush(timeout=10)  # the parent retries its batch after the 503
wait_children(children)
assert emitter.stats().sent == 5 and len(children) == 1
"""
    proc = run_script(code, collector.endpoint, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert_exactly_once(collector, {"parent": 5, "child": 3})
