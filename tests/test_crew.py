"""stress.crew.Crew: the threads of a benchmark load or a racing test start together, and
one that dies fails the run at once with its error instead of leaving it waiting."""

from __future__ import annotations

import threading

import pytest

from stress.crew import Crew, ThreadFailed


def test_every_body_runs_once_with_its_index() -> None:
    ran: list[int] = []
    lock = threading.Lock()

    def body(index: int) -> None:
        with lock:
            ran.append(index)

    Crew(body, 5, timeout=30).run()
    assert sorted(ran) == [0, 1, 2, 3, 4]


def test_a_body_that_raises_fails_join_at_once_with_its_error() -> None:
    """Thread 1 is still blocked when join() raises: join did not wait for it."""
    release = threading.Event()

    def body(index: int) -> None:
        if index == 0:
            raise ValueError("boom")
        release.wait(30)

    crew = Crew(body, 2, name="load", timeout=30)
    try:
        with pytest.raises(ThreadFailed, match=r"load-0 failed: ValueError\('boom'\)") as info:
            crew.run()
        assert isinstance(info.value.__cause__, ValueError)
        assert crew.threads[1].is_alive()
    finally:
        release.set()
    crew.threads[1].join(30)


def test_join_times_out_naming_the_threads_still_running() -> None:
    release = threading.Event()
    crew = Crew(lambda index: release.wait(30) if index else None, 2, name="slow",
                timeout=0.2)
    try:
        with pytest.raises(TimeoutError, match=r"still running 0\.2 s after go\(\): slow-1$"):
            crew.run()
    finally:
        release.set()


def test_go_times_out_when_the_threads_never_reach_the_barrier() -> None:
    crew = Crew(lambda index: None, 2, timeout=0.1)  # never started
    with pytest.raises(TimeoutError, match=r"2 threads did not all start within 0\.1 s"):
        crew.go()


def test_a_crew_needs_a_thread() -> None:
    with pytest.raises(ValueError, match="at least one thread"):
        Crew(lambda index: None, 0)
