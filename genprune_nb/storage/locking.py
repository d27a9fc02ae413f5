"""One writer at a time: an OS file lock per run directory, outer loop and results table.

The lock is an advisory ``flock`` on a small lock file that records the holder's pid; the OS drops it when the
holder exits, even by ``kill -9``, so a stale lock file never blocks anyone. ``timeout=0`` fails at once (a
second ``genprune train`` on a busy run dir); a positive timeout waits for short critical sections (a results
table being rewritten by another evaluation).
"""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

from ..errors import GenpruneError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
try:  # Windows
    import msvcrt
except ImportError:
    msvcrt = None

LOCK_FILE = ".lock"
_POLL_S = 0.05


class LockBusyError(GenpruneError, RuntimeError):
    """Another process holds the lock; the message names what is locked and the holder's pid."""


class FileLock:
    """An exclusive lock on ``path`` (created if missing), held between ``acquire`` and ``release``.

    ``what`` names the locked thing in the error, e.g. ``run dir runs/tiny/train``. Use as a context manager.
    """

    def __init__(self, path: str | Path, what: str, timeout: float = 0.0):
        self.path, self.what, self.timeout = Path(path), what, timeout
        self._fd: int | None = None

    def acquire(self) -> "FileLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        try:
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    raise LockBusyError(self._busy_message())
                time.sleep(_POLL_S)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _busy_message(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:
            pid = ""
        holder = f"pid {pid}" if pid.isdigit() else "another process"
        waited = f" (waited {self.timeout:g} s)" if self.timeout else ""
        return f"{self.what} is in use by {holder}{waited}; lock file {self.path}"


def run_dir_lock(run_dir: str | Path) -> FileLock:
    """The lock a training run holds on its directory for its whole run; fails at once if busy."""
    return folder_lock(run_dir, "run dir")


def folder_lock(folder: str | Path, what: str) -> FileLock:
    """A lock held on ``folder`` for a whole job (e.g. an outer loop); fails at once if busy."""
    return FileLock(Path(folder) / LOCK_FILE, f"{what} {folder}")


def file_lock(path: str | Path, timeout: float = 120.0) -> FileLock:
    """A lock for rewriting the file ``path`` (``<path>.lock``); waits up to ``timeout`` seconds."""
    path = Path(path)
    return FileLock(path.with_name(path.name + ".lock"), f"{path}", timeout=timeout)


def _try_lock(fd: int) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
    if msvcrt is not None:  # pragma: no cover - Windows
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    warnings.warn("no OS file locking on this platform: concurrent writers are not prevented", stacklevel=3)
    return True


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    elif msvcrt is not None:  # pragma: no cover - Windows
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
