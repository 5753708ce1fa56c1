"""The library's threads block asynchronous signals (snowplow_threaded.threads), read
from the kernel's view of each thread (/proc/self/task/<tid>/status), so that a signal sent
to the process is taken by an application thread: uWSGI's C handler for the graceful-stop
SIGHUP calls exit() on whichever thread takes it (tests/test_uwsgi.py, without threads)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import pytest

from snowplow_threaded import DiskEventStore, Emitter, StructuredEvent, Tracker
from snowplow_threaded.collector import Collector
from snowplow_threaded.threads import BLOCKED, start_background

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the signal masks from Linux's /proc")


def _blocked(thread: threading.Thread) -> set[int]:
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("SigBlk:")), 16)
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}


def test_every_library_thread_blocks_the_asynchronous_signals(collector: Collector,
                                                              tmp_path: Path) -> None:
    """The senders, the disk store's I/O thread and the embedded collector's threads."""
    emitter = Emitter(collector.endpoint, thread_count=2,
                      event_store=DiskEventStore(tmp_path / "spool"))
    try:
        Tracker("t", emitter).track(StructuredEvent("c", "a"))
        assert emitter.flush(timeout=10)
        threads = [t for t in threading.enumerate() if t.name.startswith("snowplow-")
                   and t.is_alive() and t.native_id is not None]
        names = {t.name for t in threads}
        assert "snowplow-disk-store" in names and "snowplow-collector" in names, names
        assert len(threads) >= 4, names
        for thread in threads:
            blocked = _blocked(thread)
            for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGQUIT,
                        signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGPIPE):
                assert sig in blocked, (thread.name, sig)
            # a fault in the thread itself still reaches faulthandler
            assert signal.SIGSEGV not in blocked and signal.SIGBUS not in blocked
    finally:
        assert emitter.close(timeout=10)


def test_the_starting_thread_keeps_its_mask() -> None:
    assert BLOCKED is not None
    before = _blocked(threading.current_thread())
    assert signal.SIGTERM not in before
    seen: list[set[int]] = []
    thread = threading.Thread(target=lambda: seen.append(_blocked(threading.current_thread())))
    start_background(thread)
    thread.join(10)
    assert _blocked(threading.current_thread()) == before
    assert signal.SIGTERM in seen[0] and signal.SIGHUP in seen[0]


def test_a_signal_sent_to_the_process_is_taken_by_the_main_thread_while_a_sender_runs(
    collector: Collector,
) -> None:
    """With the main thread blocking SIGUSR1, a process-directed SIGUSR1 stays pending for it
    (no library thread takes it); unblocking delivers it there, to Python's handler."""
    got: list[str] = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: got.append(
        threading.current_thread().name))
    emitter = Emitter(collector.endpoint)
    try:
        Tracker("t", emitter).track(StructuredEvent("c", "a"))
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        try:
            signal.raise_signal(signal.SIGUSR1)  # the process is the target, not a thread
            assert emitter.flush(timeout=10)  # the sender runs meanwhile, and leaves it
            assert signal.SIGUSR1 in signal.sigpending()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        assert got == [threading.main_thread().name]
    finally:
        signal.signal(signal.SIGUSR1, previous)
        assert emitter.close(timeout=10)
