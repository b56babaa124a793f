"""One advisory file lock per result key, shared by every process using a cache directory.

Plain ``fcntl.flock`` on ``<cache>/locks/<key>.lock``, rather than the ``filelock`` package,
because its semantics are exactly what dedup needs and nothing more:

- the kernel releases the lock when the holding process dies, even by ``kill -9``, so a crashed
  computation never blocks the next request;
- flock locks belong to an open file description, so two threads (or two ``Backend`` objects) of
  one process exclude each other just as two processes do;
- lock files are never deleted: deleting one while another process has it open lets two holders
  exist at once. They are empty, one per key ever computed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from reprog_core.backend.errors import disk_full


class KeyLock:
    """An exclusive lock on one key; ``acquire`` polls so that a waiter stays cancellable."""

    def __init__(self, directory: Path, key: str) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _raise_if_full(exc, directory)
            raise
        self.path = directory / f"{key}.lock"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never blocks."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            _raise_if_full(exc, self.path.parent)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def acquire(self, check: Callable[[], object] = lambda: None, poll_s: float = 0.05) -> bool:
        """Wait for the lock; returns whether we had to wait. ``check`` is called while waiting
        and may raise (e.g. ``Cancelled``) to give up."""
        waited = False
        while not self.try_acquire():
            waited = True
            check()
            time.sleep(poll_s)
        return waited

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> KeyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _raise_if_full(exc: OSError, where: Path) -> None:
    """A lock file that cannot be created on a full disk is the one-line ``DiskFull``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise disk_full(where.parent) from exc
