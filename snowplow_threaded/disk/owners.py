"""Who owns what in a spool directory: one lock file per owning process, held with a
POSIX record lock (``fcntl.lockf``).

Why POSIX locks: the kernel drops them when their process dies, however it dies (SIGKILL,
the OOM killer), and a forked child never holds its parent's. So "the lock on
``<token>.lock`` can be taken" means "its owner is gone", and a child can never send its
parent's events by mistake. The lock is taken on a file under a temporary name and then
renamed into place, so a lock file is never seen unlocked while its owner lives.

Their two traps are handled here: a process loses all its locks on a file when it closes
*any* descriptor of that file, and its own locks never conflict with it. So this module
keeps one descriptor per lock file for the whole process (``_held``) and never opens a
lock file the process holds (two stores of one process on one directory stay apart).
``_held_lock`` guards ``_held``; a forked child starts with an empty one (it holds none).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass

from .format import FORMAT_FILE, FORMAT_TEXT, FORMAT_VERSION

LOCK_SUFFIX = ".lock"
SEGMENT_SUFFIX = ".seg"
ACK_SUFFIX = ".ack"


class DiskStoreError(OSError):
    """A spool directory that cannot be used (raised by ``DiskEventStore(...)``)."""


@dataclass
class Owner:
    """A token whose lock this process holds: its own, or a dead process's it adopted."""

    token: str
    lock_path: str
    fd: int
    adopted: bool


_held: dict[str, int] = {}
_held_pid = os.getpid()
_held_lock = threading.Lock()


def _held_here() -> dict[str, int]:
    """``_held`` of this process (call with ``_held_lock`` held)."""
    global _held, _held_pid
    if _held_pid != os.getpid():  # a forked child: it holds no lock
        _held, _held_pid = {}, os.getpid()
    return _held


def prepare(directory: str) -> None:
    """Create *directory* if needed and check that it holds this format and is writable;
    :class:`DiskStoreError` saying what is wrong otherwise."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise DiskStoreError(f"cannot create the spool directory {directory!r}: {exc}") from exc
    path = os.path.join(directory, FORMAT_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(200)
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise DiskStoreError(f"cannot read {path!r}: {exc}") from exc
    if text:
        _check_format(path, text)
    probe = os.path.join(directory, f".probe-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, FORMAT_TEXT.encode())
        finally:
            os.close(fd)
        if not text:
            os.replace(probe, path)
        else:
            os.unlink(probe)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(probe)
        raise DiskStoreError(f"the spool directory {directory!r} is not writable: {exc}") from exc


def _check_format(path: str, text: str) -> None:
    words = text.split()
    if text.startswith("snowplow_threaded spool format ") and words[-1].isdigit():
        version = int(words[-1])
        if version > FORMAT_VERSION:
            raise DiskStoreError(
                f"{path} says format {version}: written by a newer snowplow_threaded; this "
                f"version reads format {FORMAT_VERSION}. Upgrade, or use another directory.")
        return
    raise DiskStoreError(f"{path} is not a snowplow_threaded spool format file: is this "
                         "directory used by something else?")


def create(directory: str) -> Owner:
    """A new token for this process, its lock file locked. Raises ``OSError``."""
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    path = os.path.join(directory, token + LOCK_SUFFIX)
    temp = os.path.join(directory, f".{token}.tmp")
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.write(fd, json.dumps(info).encode())
        with _held_lock:
            os.rename(temp, path)
            _held_here()[path] = fd
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return Owner(token, path, fd, adopted=False)


def try_adopt(directory: str, token: str) -> Owner | None:
    """Take over *token* if its owner is gone: its lock taken, or (segments without a lock
    file) a lock file made and taken. None if it lives, or another process won."""
    path = os.path.join(directory, token + LOCK_SUFFIX)
    with _held_lock:
        if path in _held_here():
            return None
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except OSError:
                return None
        except OSError:
            return None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise FileNotFoundError(path)  # released and removed meanwhile
        except OSError:
            os.close(fd)
            return None
        _held_here()[path] = fd
    return Owner(token, path, fd, adopted=True)


def release(owner: Owner, remove: bool) -> None:
    """Let go of *owner* (removing its lock file first if *remove*: it owns nothing more)."""
    with _held_lock:
        if remove:
            with contextlib.suppress(OSError):
                os.unlink(owner.lock_path)
        if _held_here().pop(owner.lock_path, None) is not None:
            with contextlib.suppress(OSError):
                os.close(owner.fd)


def forget_inherited(fds: list[int]) -> None:
    """In a forked child: close descriptors inherited from the parent. The child holds no
    POSIX lock, so closing them cannot release any of the parent's."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def tokens(names: list[str]) -> dict[str, list[str]]:
    """Tokens named in a directory listing, each with its segment file names (sorted)."""
    found: dict[str, list[str]] = {}
    for name in names:
        if name.startswith("."):
            continue
        if name.endswith(LOCK_SUFFIX):
            found.setdefault(name[:-len(LOCK_SUFFIX)], [])
        elif name.endswith(SEGMENT_SUFFIX) and name.count(".") == 2:
            found.setdefault(name.split(".", 1)[0], []).append(name)
    for segs in found.values():
        segs.sort(key=lambda n: int(n.split(".")[1]) if n.split(".")[1].isdigit() else -1)
    return found


def orphans(directory: str) -> list[str]:
    """Tokens in *directory* whose owner is gone (a quick test: each lock is taken and let
    go at once; nothing is adopted). Tokens this process holds are never listed."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = []
    for token in tokens(names):
        path = os.path.join(directory, token + LOCK_SUFFIX)
        if is_alive(path):
            continue
        found.append(token)
    return found


def is_alive(lock_path: str) -> bool:
    """Whether the process owning *lock_path* lives (or this process holds it). A shared
    lock is tried, so this works on a read-only directory too. A missing lock file: not
    alive (its segments are orphans)."""
    with _held_lock:
        if lock_path in _held_here():
            return True
        try:
            fd = os.open(lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: leave it alone
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True  # held by its owner (EAGAIN/EACCES), or cannot tell
        finally:
            os.close(fd)  # this process held nothing on it: nothing else is released
        return False


def owner_info(lock_path: str) -> dict[str, object]:
    """What an owner wrote into its lock file (pid, host, start time), or {}."""
    try:
        with open(lock_path, encoding="utf-8") as f:
            value = json.loads(f.read(4096) or "{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
