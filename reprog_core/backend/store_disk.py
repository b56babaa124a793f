"""How the result store reads and writes rows and value files: ``SafeDisk`` (diskcache's ``Disk``
without pickle), the bounded reads it uses, and diskcache's ``Cache`` with a bounded open.

What the store reads back is untrusted (anyone who can write the cache folder can plant a row or
swap a file), so every read is bounded:

- a **value file** is read only if it is a regular file inside the store (not a symbolic link, a
  FIFO, a device or a folder: checked with ``lstat`` before it is opened and with ``fstat`` on the
  opened descriptor, which is opened ``O_NONBLOCK | O_NOFOLLOW`` so that nothing can block or
  lead elsewhere) and no larger than the store's size limit (``SafeDisk.max_read``);
- **JSON** (a row's header, a result, a ``MODE_JSON`` value) is parsed only when it nests at most
  ``MAX_JSON_DEPTH`` levels deep (``check_json_depth``, a linear scan before ``json.loads``).

Anything else raises ``CorruptEntry`` (a ``ValueError``), which the store treats as a corrupt row:
discarded with one warning and recomputed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import diskcache
from diskcache.core import MODE_BINARY, MODE_RAW, MODE_TEXT, UNKNOWN

from reprog_core.files import CorruptFile, open_regular_file, read_regular_file

log = logging.getLogger("reprog_core.backend")

MODE_JSON = 16  # SafeDisk's own tag for JSON values (diskcache's modes are 0..4)
MAX_JSON_DEPTH = 64  # results nest a few levels (a Gram matrix: 3); nothing real nests deeper
DEFAULT_MAX_READ = 2 * 1024**3  # a value file larger than this is never read back

# A JSON string, closing quote optional: the match never fails once it starts, so scanning is
# linear even on an unterminated string full of escaped quotes.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# Each bracket as a step of the nesting level: +1 for [ and {, -1 (as int8) for ] and }.
_STEPS = bytes(1 if b in b"[{" else 255 if b in b"]}" else 0 for b in range(256))
_CHUNK = 1 << 20


# A row that ``SafeDisk`` will not decode (a pickle, an unknown mode, an unsafe file name, a
# value file that is not a bounded regular file, JSON nested too deep): the bounded file reads
# (``reprog_core.files``, shared with the stored source models) raise the same error.
CorruptEntry = CorruptFile


class ForeignKey(bytes):
    """The raw bytes of a key some other program stored pickled; kept as bytes, never unpickled.

    ``SafeDisk.put`` maps it back to the same row, so such a row can still be deleted."""


def check_json_depth(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """``CorruptEntry`` when the JSON text ``data`` nests deeper than ``max_depth`` (or its
    brackets do not pair up); linear in its length, without parsing it."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = _nesting(brackets, max_depth)
    if depth is None:
        raise CorruptEntry("JSON brackets do not pair up")
    if depth > max_depth:
        raise CorruptEntry(f"JSON nested deeper than {max_depth} levels")


def _nesting(brackets: bytes, stop: int) -> int | None:
    """The deepest nesting of a string of brackets (at least ``stop + 1`` once it passes
    ``stop``: counting ends there); None when they do not pair up."""
    level = peak = 0
    if len(brackets) <= _CHUNK:
        for b in brackets:
            if b == 91 or b == 123:  # [ {
                level += 1
                if level > peak:
                    peak = level
                    if peak > stop:
                        return peak
            else:
                level -= 1
                if level < 0:
                    return None
        return peak if level == 0 else None
    import numpy as np  # here only: a long result (the store's reads stay light)

    steps = brackets.translate(_STEPS)
    for i in range(0, len(steps), _CHUNK):
        levels = (
            np.cumsum(np.frombuffer(steps, np.int8, min(_CHUNK, len(steps) - i), i), dtype=np.int64)
            + level
        )
        if int(levels.min()) < 0:
            return None
        peak = max(peak, int(levels.max()))
        if peak > stop:
            return peak
        level = int(levels[-1])
    return peak if level == 0 else None


def loads_bounded(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads(data)`` after ``check_json_depth``; ``CorruptEntry`` for anything that does
    not decode."""
    check_json_depth(data, max_depth)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise CorruptEntry(f"JSON does not decode ({type(exc).__name__}: {exc})") from None


class SafeDisk(diskcache.Disk):
    """A diskcache ``Disk`` that stores bytes, text, numbers and JSON, and never (un)pickles.

    ``store``: bytes -> ``MODE_RAW`` (small) or ``MODE_BINARY`` (file); str -> ``MODE_RAW`` or
    ``MODE_TEXT``; int/float -> ``MODE_RAW``; dict/list/bool/None -> JSON text under
    ``MODE_JSON``. ``fetch`` decodes exactly these and raises ``CorruptEntry`` for anything else
    (``MODE_PICKLE`` above all). Keys must be str, bytes or numbers. Value files are only read or
    removed inside the store directory, and read only as bounded regular files (``max_read``
    bytes at most; ``read_regular_file``). A value file left half-written by an error is removed.
    """

    def __init__(
        self, directory: str, min_file_size: int = 0, max_read: int = DEFAULT_MAX_READ, **_: Any
    ) -> None:
        super().__init__(directory, min_file_size=min_file_size, pickle_protocol=0)
        self._root = os.path.realpath(directory)
        self.max_read = int(max_read)
        self._local = threading.local()  # the value file this thread wrote last

    def filename(self, key: Any = UNKNOWN, value: Any = UNKNOWN) -> tuple[str, str]:
        name, full_path = super().filename(key, value)
        self._local.last = name
        return name, full_path

    # ---------------------------------------------------------------- keys
    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is ForeignKey:
            return sqlite3.Binary(bytes(key)), False
        if type(key) in (str, bytes, float) or (type(key) is int and -(2**63) <= key < 2**63):
            return super().put(key)
        raise TypeError(f"result-store keys are str or bytes, not {type(key).__name__}")

    def get(self, key: Any, raw: bool) -> Any:
        if raw:
            return super().get(key, raw)
        return ForeignKey(bytes(key))  # a pickled key: never unpickled

    # ---------------------------------------------------------------- values
    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[int, int, Any, Any]:
        if (
            read
            or type(value) in (bytes, str, float)
            or (type(value) is int and -(2**63) <= value < 2**63)
        ):
            return super().store(value, read, key=key)  # these branches never pickle
        try:
            text = json.dumps(value, sort_keys=True, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"the result store holds bytes or JSON, not {type(value).__name__}"
            ) from exc
        if len(text) < self.min_file_size:
            return 0, MODE_JSON, None, text
        filename, full_path = self.filename(key, value)
        self._write(full_path, iter([text.encode()]), "xb")
        return os.path.getsize(full_path), MODE_JSON, filename, None

    def _write(self, full_path: str, iterator: Any, mode: str, encoding: str | None = None) -> int:
        try:
            return super()._write(full_path, iterator, mode, encoding)
        except BaseException:
            with contextlib.suppress(OSError):  # no half-written value file left behind
                os.remove(full_path)
            raise

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode == MODE_RAW:
            return bytes(value) if type(value) is sqlite3.Binary else value
        if mode not in (MODE_BINARY, MODE_TEXT, MODE_JSON):
            raise CorruptEntry(
                f"row stored in diskcache mode {mode} (e.g. a pickle); never unpickled"
            )
        if filename is not None:
            if read and mode == MODE_BINARY:  # diskcache's ``get(read=True)``: an open file
                return open_regular_file(self._inside(filename), self.max_read)[0]
            value = self.read_file(filename)
        elif mode != MODE_JSON:
            raise CorruptEntry(f"row in diskcache mode {mode} names no value file")
        if mode == MODE_BINARY:
            return value
        if mode == MODE_TEXT:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise CorruptEntry("text value file is not UTF-8") from None
        if value is None:
            raise CorruptEntry("JSON row holds no value")
        try:
            return loads_bounded(value)
        except CorruptEntry as exc:
            raise CorruptEntry(f"JSON row: {exc}") from None

    def read_file(self, filename: str) -> bytes:
        """The bytes of value file ``filename``, a bounded regular file (``read_regular_file``);
        ``CorruptEntry`` otherwise."""
        return read_regular_file(self._inside(filename), self.max_read)[0]

    def read_file_head(self, filename: str, n: int) -> tuple[bytes, int]:
        """(the first ``n`` bytes of value file ``filename``, its size), under the same rules."""
        return read_regular_file(self._inside(filename), self.max_read, n)

    def remove(self, file_path: str) -> None:
        try:
            self._inside(file_path)
        except CorruptEntry:
            log.warning("not removing %r: outside the result store", file_path)
            return
        super().remove(file_path)

    def _inside(self, filename: str) -> str:
        """The path of value file ``filename`` (its own name, not a link's target); raises
        ``CorruptEntry`` when it is not a plain relative name that stays inside the store."""
        if not isinstance(filename, str) or not filename or os.path.isabs(filename):
            raise CorruptEntry(f"value file {filename!r} is outside the result store")
        path = os.path.join(self._root, filename)
        # Its folder must resolve inside the store; the file itself must not be a link (the
        # reader refuses one), so it is not resolved here.
        folder = os.path.realpath(os.path.dirname(path))
        if os.path.commonpath([folder, self._root]) != self._root:
            raise CorruptEntry(f"value file {filename!r} is outside the result store")
        return os.path.join(folder, os.path.basename(path))


class SafeCache(diskcache.Cache):
    """diskcache's ``Cache`` with ``SafeDisk`` and the open-time retry on a locked database
    bounded by ``timeout`` (diskcache waits 60 s there, whatever the timeout)."""

    def __init__(self, directory: str, timeout: float, **settings: Any) -> None:
        self._open_deadline = time.monotonic() + timeout
        super().__init__(directory, timeout=timeout, disk=SafeDisk, **settings)

    @property
    def _sql_retry(self) -> Callable[..., Any]:
        sql = self._sql

        def execute(statement: str, *args: Any, **kwargs: Any) -> Any:
            while True:
                try:
                    return sql(statement, *args, **kwargs)
                except sqlite3.OperationalError as exc:
                    if str(exc) != "database is locked":
                        raise
                    if time.monotonic() > getattr(self, "_open_deadline", 0.0):
                        raise
                    time.sleep(0.01)

        return execute
