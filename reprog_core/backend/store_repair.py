"""The result store's own metadata: what a database error means, the integrity check, and the
repairs the store makes on open.

- ``db_error_kind``: 'corrupt', 'locked', 'full' or 'other' (see ``store.py``'s docstring).
- ``integrity_problem``: ``PRAGMA quick_check``; ``salvage`` copies what still verifies out of a
  store set aside as corrupt.
- ``repair_settings``: diskcache keeps its settings in the database (``Settings``) and trusts
  them (an unknown eviction policy is a ``KeyError`` at open, a bad ``sqlite_*`` value becomes a
  bad ``PRAGMA``, an unknown key becomes an attribute of the cache). Each value is checked before
  diskcache reads it; a bad one is reset to its default (the counters: recounted), an unknown
  key is removed, each with a warning.
- ``sweep_orphans``: value files no row refers to, left when the database was lost (deleted,
  truncated to 0 bytes), are removed (and counted) when the store is next opened.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import diskcache
from diskcache.core import DEFAULT_SETTINGS, EVICTION_POLICY

from reprog_core.backend.store_disk import SafeDisk

log = logging.getLogger("reprog_core.backend")

DBNAME = "cache.db"  # diskcache's database file inside the store directory
# Below this many free bytes, an I/O error while writing is taken for a full disk.
_NEARLY_FULL = 1024**2


# ------------------------------------------------------------------------------ error kinds
def db_error_kind(exc: BaseException, directory: Path | None = None) -> str:
    """'corrupt', 'locked', 'full' or 'other' for an error from SQLite or the file system.

    Only 'corrupt' may ever set a store aside. An I/O error while less than 1 MiB is free on
    ``directory``'s file system counts as 'full'.
    """
    if isinstance(exc, diskcache.Timeout):
        return "locked"
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return "full"
        return "full" if _nearly_full(directory) else "other"
    if not isinstance(exc, sqlite3.Error):
        return "other"
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or (
        "malformed" in text or "not a database" in text
    ):
        return "corrupt"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return "locked"
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return "full"
    if name.startswith("SQLITE_IOERR") or "i/o error" in text:
        return "full" if _nearly_full(directory) else "other"
    return "other"


def _nearly_full(directory: Path | None) -> bool:
    if directory is None:
        return False
    path = Path(directory)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free < _NEARLY_FULL
    except OSError:
        return False


# ------------------------------------------------------------------------------ integrity
def integrity_problem(db_path: Path, timeout: float = 5.0) -> str | None:
    """What ``PRAGMA quick_check`` says is wrong with the database at ``db_path``; None when it
    passes, when the file does not exist, or when the check cannot run (locked, disk full): only
    a failed check counts as corruption."""
    if not db_path.exists():
        return None
    try:
        con = sqlite3.connect(str(db_path), timeout=timeout)
    except sqlite3.Error:
        return None
    try:
        rows = [str(r[0]) for r in con.execute("PRAGMA quick_check(5)").fetchall()]
    except sqlite3.DatabaseError as exc:
        return str(exc) if db_error_kind(exc) == "corrupt" else None
    finally:
        con.close()
    return None if rows == ["ok"] else "; ".join(rows)


def file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def database_lost(db_path: Path) -> bool:
    """True when the database file is missing or empty (0 bytes): a new store, or one whose
    database was deleted or truncated (its value files, if any, are then orphans)."""
    try:
        return db_path.stat().st_size == 0
    except FileNotFoundError:
        return True
    except OSError:
        return False


class _Empty:
    """Answers the store's read queries for a store that does not exist yet."""

    def execute(self, sql: str, *args: Any) -> _Empty:
        self._sql = sql
        return self

    def fetchone(self) -> Any:
        if "COUNT" in self._sql or "PRAGMA" in self._sql:
            return (0,)
        return None

    def fetchall(self) -> list[Any]:
        return []


EMPTY: Any = _Empty()  # the answers of a store with no database yet


@contextlib.contextmanager
def folder_lock(directory: Path) -> Iterator[None]:
    """Exclusive across processes while a corrupt store is set aside (best effort: a disk too
    full for the lock file goes on without it)."""
    try:
        fd = os.open(directory.with_name(f".{directory.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_unreferenced(cache: diskcache.Cache, disk: SafeDisk) -> None:
    """After a failed write, remove value files no row refers to (diskcache leaves the new
    value's file behind when its row cannot be written)."""
    last = getattr(disk._local, "last", None)
    if not last:
        return
    with contextlib.suppress(Exception):
        row = cache._sql("SELECT 1 FROM Cache WHERE filename = ?", (last,)).fetchone()
        if row is None:
            disk.remove(last)


def salvage(aside: Path, cache: diskcache.Cache, verify: Callable[[str, Any], str]) -> int:
    """Copy every entry of a set-aside store that can still be read and passes ``verify`` into
    ``cache``; returns how many. Reads the rows forwards and backwards, so that one bad page
    loses only the rows on it."""
    db = aside / DBNAME
    if not db.exists():
        return 0
    rows: dict[int, tuple[Any, ...]] = {}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return 0
    try:
        for order in ("ASC", "DESC"):
            try:
                cur = con.execute(
                    "SELECT rowid, key, raw, tag, mode, filename, value FROM Cache "
                    f"ORDER BY rowid {order}"
                )
                for row in cur:
                    rows.setdefault(row[0], row)
            except sqlite3.Error:
                continue
    finally:
        con.close()
    disk = SafeDisk(str(aside), max_read=cache.disk.max_read)
    n = 0
    for _, key, raw, tag, mode, filename, value in rows.values():
        if not raw or not isinstance(key, str):
            continue
        try:
            blob = disk.fetch(mode, filename, value, False)
            verify(key, blob)
            cache.set(key, blob, tag=tag if isinstance(tag, str) else None, retry=False)
            n += 1
        except Exception:  # noqa: BLE001 - unreadable or failing its checksum: not salvaged
            continue
    return n


# ------------------------------------------------------------------------------ settings
def _int_in(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is int and lo <= v <= hi


_BIG = 2**62
_JOURNAL_MODES = ("wal", "delete", "truncate", "persist", "memory")
# Every key diskcache keeps in Settings, and what a sound value is.
SETTING_CHECKS: dict[str, Callable[[Any], bool]] = {
    "statistics": _int_in(0, 1),
    "tag_index": _int_in(0, 1),
    "eviction_policy": lambda v: isinstance(v, str) and v in EVICTION_POLICY,
    "size_limit": _int_in(0, _BIG),
    "cull_limit": _int_in(0, 2**31),
    "sqlite_auto_vacuum": _int_in(0, 2),
    "sqlite_cache_size": _int_in(-(2**31), 2**31),
    "sqlite_journal_mode": lambda v: isinstance(v, str) and v.lower() in _JOURNAL_MODES,
    "sqlite_mmap_size": _int_in(0, 2**40),
    "sqlite_synchronous": _int_in(0, 3),
    "disk_min_file_size": _int_in(0, _BIG),
    "disk_pickle_protocol": _int_in(0, 5),
    "count": _int_in(0, _BIG),
    "size": _int_in(0, _BIG),
    "hits": _int_in(0, _BIG),
    "misses": _int_in(0, _BIG),
}
_RECOUNT = {
    "count": "SELECT COUNT(*) FROM Cache",
    "size": "SELECT COALESCE(SUM(size), 0) FROM Cache",
}


def repair_settings(db_path: Path, timeout: float) -> list[str]:
    """Reset every value of the database's ``Settings`` that diskcache would trust but should
    not; returns one line per repair (each also logged as a warning). Nothing is written when all
    is sound. SQLite errors (locked, full) propagate: the caller decides what they mean."""
    if database_lost(db_path):
        return []
    con = sqlite3.connect(str(db_path), timeout=timeout, isolation_level=None)
    try:
        try:
            rows = con.execute("SELECT key, value FROM Settings").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        bad = [(k, v) for k, v in rows if not SETTING_CHECKS.get(k, lambda _: False)(v)]
        if not bad:
            return []
        fixes = []
        con.execute("BEGIN IMMEDIATE")
        try:
            for key, value in bad:
                if key not in SETTING_CHECKS:
                    con.execute("DELETE FROM Settings WHERE key = ?", (key,))
                    fixes.append(f"unknown setting {key!r} removed")
                    continue
                new = DEFAULT_SETTINGS.get(key, 0)
                if key in _RECOUNT:
                    try:
                        new = int(con.execute(_RECOUNT[key]).fetchone()[0])
                    except sqlite3.OperationalError:  # no Cache table yet
                        new = 0
                con.execute("UPDATE Settings SET value = ? WHERE key = ?", (new, key))
                fixes.append(f"setting {key}={_short(value)} is not valid; reset to {new!r}")
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise
    finally:
        con.close()
    for fix in fixes:
        log.warning("result store %s: %s", db_path.parent, fix)
    return fixes


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------ orphans
def sweep_orphans(directory: Path, cache: diskcache.Cache, before_ns: int) -> tuple[int, int]:
    """Remove the value files under ``directory`` that no row of ``cache`` refers to and that
    were last written before ``before_ns`` (``time.time_ns()``; a file written since may be
    another process's entry whose row is not committed yet). Returns (files, bytes) removed.
    Symbolic links are removed as links, never followed."""
    referenced = {
        row[0]
        for row in cache._sql("SELECT filename FROM Cache WHERE filename IS NOT NULL").fetchall()
    }
    removed = freed = 0
    root = str(directory)
    for folder, _subdirs, files in os.walk(root, topdown=False):
        if folder == root:
            continue  # the database and its lock files live here; value files never do
        for name in files:
            if not name.endswith(".val"):
                continue
            path = os.path.join(folder, name)
            if os.path.relpath(path, root) in referenced:
                continue
            try:
                st = os.lstat(path)
                if st.st_mtime_ns >= before_ns:
                    continue
                os.remove(path)
            except OSError:
                continue
            removed += 1
            freed += st.st_size
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only when empty
    return removed, freed
