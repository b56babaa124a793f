"""Files the project reads without trusting them, and the one error of a full disk.

What is read back from a cache folder (a stored result's value file, a stored source model) may
have been planted or swapped by anyone who can write that folder, so it is read only as a
bounded regular file: not a symbolic link, a FIFO, a device or a folder (checked with ``lstat``
before it is opened and with ``fstat`` on the descriptor, opened ``O_NONBLOCK | O_NOFOLLOW`` so
that nothing can block or lead elsewhere), and no larger than a bound. Anything else raises
``CorruptFile`` (a ``ValueError``). Shared by the result store (``backend/store_disk.py``) and
the source-model store (``source_model/training.py``); imports nothing of the project, so a
computation reads files without importing the backend.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO


class CorruptFile(ValueError):
    """A file that is not a bounded regular file (or, for the result store, a row that will not
    decode)."""


class DiskFull(OSError):
    """The disk holding the cache is full. The backend reports it as its own ``DiskFull`` (a
    ``BackendError`` and this); whatever was stored before stays."""


def disk_full(where: object) -> DiskFull:
    """The one message for a full disk under the cache directory ``where``."""
    return DiskFull(f"disk full at {where}: free space or set REPROG_CACHE_DIR")


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def open_regular_file(path: str, limit: int) -> tuple[BinaryIO, int]:
    """(``path`` opened for reading, its size); the file's ``name`` is ``path``.

    ``CorruptEntry`` unless ``path`` is a regular file (not a link, FIFO, device or folder) of at
    most ``limit`` bytes; ``OSError`` when it cannot be opened (missing). Never blocks: a FIFO is
    refused before it is opened, and opened non-blocking should one be swapped in meanwhile."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise CorruptFile(f"value file is not a regular file ({_file_type(st.st_mode)})")
    extra = os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        f = open(path, "rb", opener=lambda p, flags: os.open(p, flags | extra))  # noqa: SIM115
    except IsADirectoryError:
        raise CorruptFile("value file is not a regular file (a folder)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptFile("value file is not a regular file (a symbolic link)") from None
        raise
    try:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CorruptFile(f"value file is not a regular file ({_file_type(st.st_mode)})")
        if st.st_size > limit:
            raise CorruptFile(f"value file is {st.st_size} bytes, over the {limit}-byte bound")
    except BaseException:
        f.close()
        raise
    return f, st.st_size


def read_regular_file(path: str, limit: int, head: int | None = None) -> tuple[bytes, int]:
    """(the bytes of ``path``, its size): all of it, or its first ``head`` bytes; under the
    rules of ``open_regular_file``."""
    f, size = open_regular_file(path, limit)
    with f:
        data = f.read(limit + 1 if head is None else min(head, limit + 1))
    if len(data) > limit:
        raise CorruptFile(f"value file grew past the {limit}-byte bound while read")
    return data, size


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a plain file"
