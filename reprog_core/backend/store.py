"""The result store: diskcache with a size limit, a checksum on every entry, and no pickle.

An entry is one ``bytes`` value (a header line with the key, size and sha256 of the result's
canonical JSON, then that JSON: ``store_entry.py``), written by a single ``Cache.set`` (diskcache
writes a large value's file first and commits its row last, so a process killed mid-write leaves
no entry). Reading verifies the key, the hash and that the JSON parses to an object; an entry
that fails (bit rot, a truncated file, someone's hand edit) is logged, discarded, and reported as
a miss, so the next request recomputes it.

What the store reads back is bounded (``store_disk.py``): nothing is ever unpickled (``SafeDisk``
stores bytes, text, numbers and JSON only and treats a pickled row as corrupt); a value file is
read only if it is a regular file inside the store, no larger than the size limit (a FIFO, a
link, a folder is refused before it is opened, so nothing hangs); JSON is parsed only within
``MAX_JSON_DEPTH`` levels. Anything else is a corrupt row: one warning, discarded, recomputed.
``cache ls`` reads each entry's header under the same rules.

The store repairs its own metadata on open (``store_repair.py``): a ``Settings`` value diskcache
would choke on is reset (an unknown key removed), and value files left orphaned by a lost
database (deleted, truncated to 0 bytes) are removed; each repair is logged as a warning and
listed in ``Store.repairs`` (``cache info``).

What a database error means decides what happens (``db_error_kind``):

- **corrupt** (``PRAGMA quick_check`` fails, "file is not a database", "database disk image is
  malformed"; checked at open and again whenever a statement fails): the store is set aside as
  ``results.corrupt-<time>-<pid>``, a fresh one is opened, and every entry that can still be read
  from the old one and passes its checksum is copied over. ``cache info`` lists the set-aside
  folders and ``cache clear`` removes them.
- **locked** (another process holds a write transaction longer than ``busy_timeout_s``,
  ``$REPROG_CACHE_TIMEOUT_S``, default 60 s): ``StoreBusy``; reads still work, nothing is moved.
- **full** (``ENOSPC``, "database or disk is full"): ``DiskFull`` with one line, "disk full at
  <dir>: free space or set REPROG_CACHE_DIR"; nothing stored is moved or lost.

When the store cannot be opened for writing (disk full, or locked at open), it serves reads
(``get``, ``entries``, ``volume``, ``len``) read-only and tries to reopen on the next write, so
normal service resumes by itself once space returns or the lock is released. If another process
sets a corrupt store aside, this one notices (the database file changed) and reopens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import diskcache
from diskcache.core import MODE_BINARY, MODE_RAW

from reprog_core.backend.errors import DiskFull, StoreBusy, disk_full
from reprog_core.backend.store_disk import (
    MODE_JSON,
    CorruptEntry,
    ForeignKey,
    SafeDisk,
    loads_bounded,
)
from reprog_core.backend.store_disk import SafeCache as _SafeCache
from reprog_core.backend.store_entry import (
    FORMAT,
    EntryInfo,
    canonical_json,
    make_entry,
    strip_fields,
    verify_entry,
)
from reprog_core.backend.store_repair import (
    DBNAME,
    EMPTY,
    database_lost,
    db_error_kind,
    file_id,
    folder_lock,
    integrity_problem,
    remove_unreferenced,
    repair_settings,
    salvage,
    sweep_orphans,
)

__all__ = [
    "DBNAME",
    "DEFAULT_SIZE_LIMIT",
    "FORMAT",
    "MODE_JSON",
    "CorruptEntry",
    "EntryInfo",
    "ForeignKey",
    "SafeDisk",
    "Store",
    "canonical_json",
    "db_error_kind",
    "integrity_problem",
    "strip_fields",
]

log = logging.getLogger("reprog_core.backend")

DEFAULT_SIZE_LIMIT = 2 * 1024**3  # 2 GiB: thousands of spectra and curves, no Gram matrices
TIMEOUT_ENV = "REPROG_CACHE_TIMEOUT_S"
DEFAULT_BUSY_TIMEOUT_S = 60.0
_HEAD = 4096  # bytes of an entry read to list it (its header line)

T = TypeVar("T")


class Store:
    """Verified, size-limited result storage in one directory (safe to share across processes).

    ``busy_timeout_s``: how long a write waits for another process's lock before ``StoreBusy``
    (default ``$REPROG_CACHE_TIMEOUT_S``, else 60 s). ``read_only`` is a reason (str) while the
    store could not be opened for writing (disk full, locked), else None.
    """

    def __init__(
        self,
        directory: str | Path,
        size_limit_bytes: int = DEFAULT_SIZE_LIMIT,
        busy_timeout_s: float | None = None,
    ) -> None:
        if size_limit_bytes < 1024**2:
            raise ValueError(f"size_limit_bytes must be at least 1 MiB, got {size_limit_bytes}")
        self.directory = Path(directory)
        self.size_limit_bytes = int(size_limit_bytes)
        if busy_timeout_s is None:
            raw = os.environ.get(TIMEOUT_ENV, "").strip()
            try:
                busy_timeout_s = float(raw) if raw else DEFAULT_BUSY_TIMEOUT_S
            except ValueError:
                raise ValueError(
                    f"{TIMEOUT_ENV} must be a number of seconds, got {raw!r}"
                ) from None
        self.busy_timeout_s = float(busy_timeout_s)
        self.cache: diskcache.Cache | None = None
        self.read_only: str | None = None
        self.repairs: list[str] = []  # what opening it repaired (swept orphans, reset settings)
        self._ro: sqlite3.Connection | None = None
        self._db_id: tuple[int, int] | None = None
        self._mutex = threading.RLock()
        self._open()

    @property
    def db_path(self) -> Path:
        return self.directory / DBNAME

    # ------------------------------------------------------------------ read
    def get_json(self, key: str) -> str | None:
        """The stored result JSON under ``key``, verified; None if absent, corrupt (then
        discarded) or unreadable right now (locked: logged, kept)."""
        hit = self._fetch(key)
        return None if hit is None else hit[0]

    def get(self, key: str) -> dict[str, Any] | None:
        hit = self._fetch(key)
        return None if hit is None else hit[1]

    def _fetch(self, key: str) -> tuple[str, dict[str, Any]] | None:
        """(JSON text, parsed result) stored under ``key``, verified (``verify_entry``)."""
        limit = self.size_limit_bytes
        try:
            row = self._read(
                lambda con: con.execute(
                    "SELECT mode, filename, CASE WHEN length(value) <= ? THEN value END, "
                    "length(value) FROM Cache WHERE key = ? AND raw = 1",
                    (limit, key),
                ).fetchone()
            )
        except (StoreBusy, DiskFull) as exc:
            log.warning("cache entry %s not read: %s", key, exc)
            return None
        if row is None:
            return None
        try:
            if row[2] is None and (row[3] or 0) > limit:
                raise CorruptEntry(f"row holds {row[3]} bytes, over the {limit}-byte bound")
            value = self._disk().fetch(row[0], row[1], row[2], False)
            return verify_entry(key, value)
        # CorruptEntry (not a bounded regular file, too deep, a pickle), checksum, missing file
        except (ValueError, OSError) as exc:
            self._discard(key, f"{type(exc).__name__}: {exc}")
            return None

    def __contains__(self, key: str) -> bool:
        return self.get_json(key) is not None

    def __len__(self) -> int:
        return int(self._read(lambda con: con.execute("SELECT COUNT(*) FROM Cache").fetchone()[0]))

    # ------------------------------------------------------------------ write
    def put(self, key: str, kind: str, payload: str) -> bool:
        """Store ``payload`` (canonical result JSON) under ``key`` in one write.

        Returns False (with a warning) when the entry would not fit the size limit. Raises
        ``DiskFull`` when the disk is full and ``StoreBusy`` when another process holds the
        database locked too long; the caller still has the result, and nothing stored is lost.
        """
        blob = make_entry(key, kind, payload)
        if len(blob) > self.size_limit_bytes // 2:
            # Storing it would evict most of the cache (or itself, at once).
            log.warning(
                "not caching %s: %d bytes is over half the cache size limit (%d bytes)",
                key,
                len(blob),
                self.size_limit_bytes,
            )
            return False
        self._write(lambda cache: cache.set(key, blob, tag=kind, retry=False))
        return True

    def delete(self, key: str) -> bool:
        return bool(self._write(lambda cache: cache.delete(key, retry=False)))

    def _discard(self, key: str, reason: str) -> None:
        log.warning("discarding corrupt cache entry %s: %s; it will be recomputed", key, reason)
        try:
            self._write(lambda cache: cache.delete(key, retry=False), reopen=False)
        except Exception as exc:  # read-only, locked, full: the next put overwrites it anyway
            log.warning("could not delete corrupt cache entry %s: %s", key, exc)

    # ------------------------------------------------------------------ admin
    def volume(self) -> int:
        """Bytes on disk (database and value files)."""

        def size(con: sqlite3.Connection) -> int:
            pages = con.execute("PRAGMA page_count").fetchone()[0]
            page = con.execute("PRAGMA page_size").fetchone()[0]
            row = con.execute("SELECT value FROM Settings WHERE key = 'size'").fetchone()
            files = row[0] if row and type(row[0]) is int and row[0] >= 0 else 0
            return int(pages) * int(page) + files

        return int(self._read(size))

    def entries(self) -> list[EntryInfo]:
        """Every entry's key, kind, size and creation time (reads only each entry's header).

        Rows this store did not write (pickled keys or values) are left out; a row whose value
        file is not a bounded regular file (a FIFO, a link, a folder, too large) is discarded
        with a warning, as ``get`` would."""
        rows = self._read(
            lambda con: con.execute(
                "SELECT key, raw, tag, mode, filename, substr(value, 1, ?), length(value) "
                "FROM Cache ORDER BY rowid",
                (_HEAD,),
            ).fetchall()
        )
        disk = self._disk()
        out = []
        for key, raw, tag, mode, filename, head, length in rows:
            if not raw or not isinstance(key, str) or mode not in (MODE_RAW, MODE_BINARY):
                continue
            created = None
            try:
                if filename is None:
                    if not isinstance(head, bytes):
                        continue  # text or a number: not an entry of this store
                    first, size = head.split(b"\n", 1)[0], int(length or 0)
                else:
                    first, size = disk.read_file_head(filename, _HEAD)
                    first = first.split(b"\n", 1)[0]
            except CorruptEntry as exc:
                self._discard(key, f"{type(exc).__name__}: {exc}")
                continue
            except (OSError, ValueError):
                continue  # its value file is gone: not an entry
            try:
                created = float(loads_bounded(first)["created"])
            except Exception:  # noqa: BLE001 - no readable header: listed without a time
                pass
            kind = tag if isinstance(tag, str) and tag else key.split("-")[0]
            out.append(EntryInfo(key, kind, size, created))
        return sorted(out, key=lambda e: (e.created or 0.0, e.key))

    def clear(self, kind: str | None = None) -> int:
        """Remove every entry (or those of one ``kind``); returns how many."""
        if kind is None:
            return int(self._write(lambda cache: cache.clear(retry=False)))
        return int(self._write(lambda cache: cache.evict(kind, retry=False)))

    def corrupt_folders(self) -> list[Path]:
        """Folders of stores set aside as corrupt (``<dir>.corrupt-*``), oldest first."""
        parent = self.directory.parent
        if not parent.is_dir():
            return []
        return sorted(parent.glob(f"{self.directory.name}.corrupt-*"))

    def remove_corrupt_folders(self) -> list[Path]:
        """Delete the set-aside corrupt stores; returns those removed."""
        removed = []
        for folder in self.corrupt_folders():
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(folder)
        return removed

    def close(self) -> None:
        with self._mutex:
            if self.cache is not None:
                self.cache.close()
            if self._ro is not None:
                self._ro.close()
                self._ro = None

    # ------------------------------------------------------------------ internals
    def _disk(self) -> SafeDisk:
        return SafeDisk(str(self.directory), max_read=self.size_limit_bytes)

    def _open(self) -> None:
        """Open the store for writing; set a corrupt one aside; fall back to read-only when the
        disk is full or the database stays locked."""
        with self._mutex:
            problem = integrity_problem(self.db_path, self.busy_timeout_s)
            if problem is not None:
                self._set_aside(problem)
                return
            # Value files written before this may be orphans: all of them when the database
            # was lost, those over a minute old when it is merely empty (a file younger than
            # that may be another process's entry whose row is not committed yet).
            since = time.time_ns()
            if not database_lost(self.db_path):
                since -= 60 * 10**9
            cache = None
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                fixes = repair_settings(self.db_path, self.busy_timeout_s)
                cache = _SafeCache(
                    str(self.directory),
                    self.busy_timeout_s,
                    size_limit=self.size_limit_bytes,
                    tag_index=True,
                )
                cache.disk.max_read = self.size_limit_bytes
                if cache._sql("SELECT 1 FROM Cache LIMIT 1").fetchone() is None:
                    fixes += self._sweep(cache, since)
            except (sqlite3.Error, OSError) as exc:
                if cache is not None:
                    cache.close()
                kind = db_error_kind(exc, self.directory)
                if kind == "corrupt":
                    self._set_aside(str(exc))
                    return
                if kind not in ("locked", "full"):
                    raise
                self._go_read_only(kind, exc)
                return
            if self.cache is not None:
                self.cache.close()
            self.cache = cache
            self.read_only = None
            self._db_id = file_id(self.db_path)
            self.repairs += fixes
            if self._ro is not None:
                self._ro.close()
                self._ro = None

    def _go_read_only(self, kind: str, exc: BaseException) -> None:
        reason = "disk full" if kind == "full" else "locked by another process"
        log.warning("result store %s opened read-only (%s: %s)", self.directory, reason, exc)
        if self.cache is not None:
            self.cache.close()
        self.cache = None
        self.read_only = reason
        self._db_id = file_id(self.db_path)

    def _sweep(self, cache: diskcache.Cache, since: int) -> list[str]:
        """Remove value files no row refers to (the database was lost or is empty)."""
        n, size = sweep_orphans(self.directory, cache, since)
        if not n:
            return []
        fix = f"removed {n} orphaned value file(s), {size} bytes, that no database row refers to"
        log.warning("result store %s: %s (its database was lost)", self.directory, fix)
        return [fix]

    def _set_aside(self, problem: str) -> None:
        """Move a corrupt store aside (unless another process already did), open a fresh one,
        and copy over every entry that still reads and verifies."""
        with self._mutex, folder_lock(self.directory):
            again = integrity_problem(self.db_path, self.busy_timeout_s)
            aside: Path | None = None
            if again is not None:  # still corrupt: nobody else rebuilt it meanwhile
                stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                aside = self.directory.with_name(
                    f"{self.directory.name}.corrupt-{stamp}-{os.getpid()}"
                )
                if self.cache is not None:
                    self.cache.close()
                    self.cache = None
                os.rename(self.directory, aside)
                log.warning(
                    "result store %s failed its integrity check (%s); set aside as %s",
                    self.directory,
                    problem,
                    aside,
                )
            self._open()
        if aside is not None and self.cache is not None:
            n = salvage(aside, self.cache, verify_entry)
            log.warning("copied %d verified entries from %s into the new store", n, aside)

    def _ensure_current(self) -> None:
        """Reopen when the database file was replaced (another process set it aside), or when
        it was read-only and a write is wanted (done by ``_write``)."""
        if self._db_id is not None and file_id(self.db_path) != self._db_id:
            log.info("result store %s was replaced by another process; reopening", self.directory)
            self._open()

    def _connection(self) -> sqlite3.Connection:
        if self.cache is not None:
            return self.cache._con  # diskcache's per-thread connection
        if self._ro is None:
            self._ro = self._read_only_connection("mode=ro")
            try:  # a WAL database needs its -shm file, which a full disk may not let SQLite create
                self._ro.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.Error:
                self._ro.close()
                # Read the database file as it is: what the last writer checkpointed (a store
                # nobody has open was checkpointed in full when it was closed).
                self._ro = self._read_only_connection("mode=ro&immutable=1")
        return self._ro

    def _read_only_connection(self, flags: str) -> sqlite3.Connection:
        return sqlite3.connect(
            f"file:{self.db_path}?{flags}",
            uri=True,
            timeout=self.busy_timeout_s,
            check_same_thread=False,
        )

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only query, applying the error policy (see the module docstring)."""
        with self._mutex if self.cache is None else contextlib.nullcontext():
            self._ensure_current()
            if self.cache is None and database_lost(self.db_path):
                return fn(EMPTY)  # nothing stored yet (e.g. a first run on a full disk)
            try:
                return self._guard(lambda: fn(self._connection()))
            except sqlite3.OperationalError as exc:
                if self.cache is None and "no such table" in str(exc):
                    return fn(EMPTY)  # a database that was never given its tables
                raise

    def _write(self, fn: Callable[[diskcache.Cache], T], reopen: bool = True) -> T:
        """Run a write on the diskcache, reopening a read-only store first."""
        self._ensure_current()
        if self.cache is None and reopen:
            self._open()

        def call() -> T:
            cache = self.cache
            if cache is None:
                if self.read_only == "disk full":
                    raise disk_full(self.directory)
                raise StoreBusy(self._busy_message())
            cache.disk._local.last = None
            try:
                return fn(cache)
            except BaseException:
                remove_unreferenced(cache, cache.disk)
                raise

        return self._guard(call)

    def _guard(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except (sqlite3.Error, OSError, diskcache.Timeout) as exc:
            kind = db_error_kind(exc, self.directory)
            if kind == "full":
                raise disk_full(self.directory) from exc
            if kind == "locked":
                raise StoreBusy(self._busy_message()) from exc
            if kind == "corrupt":
                problem = integrity_problem(self.db_path, self.busy_timeout_s)
                if problem is None:
                    raise
                self._set_aside(problem)
                return call()  # once, on the rebuilt store
            raise

    def _busy_message(self) -> str:
        return (
            f"the result store at {self.directory} is locked by another process "
            f"(waited {self.busy_timeout_s:g} s); nothing was lost, try again later "
            f"(or raise {TIMEOUT_ENV})"
        )
