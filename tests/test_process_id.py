"""process_id: the pid without a system call per event, and the fork mark."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from snowplow_threaded import process_id


def test_current_pid_is_the_pid_and_sets_the_mark() -> None:
    assert process_id.current_pid() == os.getpid() == process_id.KNOWN_PID[0]
    assert process_id.MARK_WORKS  # Linux >= 4.14 (the CI machines)
    assert process_id.FORK_MARK[0] == 1


def test_a_forked_child_finds_the_mark_cleared_and_takes_its_own_pid() -> None:
    parent = process_id.current_pid()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            seen = process_id.FORK_MARK[0]
            now = process_id.current_pid()
            ok = seen == 0 and now == os.getpid() != parent and process_id.FORK_MARK[0] == 1
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 1) == b"1"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert process_id.FORK_MARK[0] == 1 and process_id.current_pid() == parent


def test_without_wipeonfork_every_pid_is_asked_of_the_kernel() -> None:
    """Where the kernel refuses MADV_WIPEONFORK (before Linux 4.14), the mark stays 0 and
    current_pid() is os.getpid() every time: a child forked without Python's hooks still
    gets its own pid."""
    code = textwrap.dedent("""
        import ctypes, mmap, os
        class NoWipeOnFork(mmap.mmap):
            def madvise(self, *args):
                raise OSError(22, "Invalid argument")
        mmap.mmap = NoWipeOnFork
        from snowplow_threaded import process_id
        assert process_id.MARK_WORKS is False
        parent = process_id.current_pid()
        assert parent == os.getpid() and process_id.FORK_MARK[0] == 0
        pid = ctypes.PyDLL(None).fork()  # no at-fork hooks run
        if pid == 0:
            os._exit(0 if process_id.current_pid() == os.getpid() != parent else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert process_id.current_pid() == parent
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
