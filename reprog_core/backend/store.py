"""The result store: diskcache with a size limit, a checksum on every entry, and no pickle.

An entry is one ``bytes`` value, written by a single ``Cache.set`` (diskcache writes a large value's
file first and commits its row last, so a process killed mid-write leaves no entry)::

    {"format": 1, "key": ..., "kind": ..., "created": ..., "size": ..., "sha256": ...}\\n
    <result JSON>

The JSON is canonical (sorted keys, no spaces), and ``sha256`` is its hash. Reading verifies the
key and the hash; an entry that fails (bit rot, a truncated file, someone's hand edit) is logged,
discarded, and reported as a miss, so the next request recomputes it.

Nothing read from the cache directory is ever unpickled. diskcache's default ``Disk`` pickles any
value that is not bytes/str/number and unpickles rows stored that way (``MODE_PICKLE``), so a
planted row could run code. ``SafeDisk`` stores bytes, text, numbers and JSON only (JSON rows carry
their own mode tag, ``MODE_JSON``), refuses to pickle a key or a value, and treats any other row
(a pickled value or key, a file name outside the directory) as a corrupt entry: discarded,
recomputed, never unpickled.

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
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import diskcache
from diskcache.core import MODE_BINARY, MODE_RAW, MODE_TEXT, UNKNOWN

from reprog_core.backend.errors import DiskFull, StoreBusy, disk_full

log = logging.getLogger("reprog_core.backend")

FORMAT = 1
DEFAULT_SIZE_LIMIT = 2 * 1024**3  # 2 GiB: thousands of spectra and curves, no Gram matrices
DBNAME = "cache.db"  # diskcache's database file inside the store directory
TIMEOUT_ENV = "REPROG_CACHE_TIMEOUT_S"
DEFAULT_BUSY_TIMEOUT_S = 60.0
MODE_JSON = 16  # SafeDisk's own tag for JSON values (diskcache's modes are 0..4)
# Below this many free bytes, an I/O error while writing is taken for a full disk.
_NEARLY_FULL = 1024**2

T = TypeVar("T")


class CorruptEntry(ValueError):
    """A row that ``SafeDisk`` will not decode (a pickle, an unknown mode, an unsafe file name)."""


class ForeignKey(bytes):
    """The raw bytes of a key some other program stored pickled; kept as bytes, never unpickled.

    ``SafeDisk.put`` maps it back to the same row, so such a row can still be deleted."""


class SafeDisk(diskcache.Disk):
    """A diskcache ``Disk`` that stores bytes, text, numbers and JSON, and never (un)pickles.

    ``store``: bytes -> ``MODE_RAW`` (small) or ``MODE_BINARY`` (file); str -> ``MODE_RAW`` or
    ``MODE_TEXT``; int/float -> ``MODE_RAW``; dict/list/bool/None -> JSON text under
    ``MODE_JSON``. ``fetch`` decodes exactly these and raises ``CorruptEntry`` for anything else
    (``MODE_PICKLE`` above all). Keys must be str, bytes or numbers. Value files are only read or
    removed inside the store directory. A value file left half-written by an error is removed.
    """

    def __init__(self, directory: str, min_file_size: int = 0, **_: Any) -> None:
        super().__init__(directory, min_file_size=min_file_size, pickle_protocol=0)
        self._root = os.path.realpath(directory)
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
        if filename is not None:
            self._inside(filename)
        if mode in (MODE_RAW, MODE_BINARY, MODE_TEXT):
            return super().fetch(mode, filename, value, read)
        if mode == MODE_JSON:
            if value is None:
                with open(os.path.join(self._directory, filename), "rb") as f:
                    value = f.read()
            try:
                return json.loads(value)
            except ValueError as exc:
                raise CorruptEntry(f"JSON row does not decode ({exc})") from None
        raise CorruptEntry(f"row stored in diskcache mode {mode} (e.g. a pickle); never unpickled")

    def remove(self, file_path: str) -> None:
        try:
            self._inside(file_path)
        except CorruptEntry:
            log.warning("not removing %r: outside the result store", file_path)
            return
        super().remove(file_path)

    def _inside(self, filename: str) -> str:
        """The full path of a value file; ``CorruptEntry`` if it is not inside the store."""
        full = os.path.realpath(os.path.join(self._root, filename))
        if os.path.isabs(filename) or os.path.commonpath([full, self._root]) != self._root:
            raise CorruptEntry(f"value file {filename!r} is outside the result store")
        return full


class _SafeCache(diskcache.Cache):
    """diskcache's ``Cache`` with the open-time retry on a locked database bounded by
    ``timeout`` (diskcache waits 60 s there, whatever the timeout)."""

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


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def canonical_json(result: dict[str, Any]) -> str:
    """The one serialisation used for hashing, storing and returning results.

    NumPy / torch values become lists or numbers, tuples become lists; NaN stays NaN (a fit that
    diverged reports it, and the dashboard shows it).
    """
    return json.dumps(result, sort_keys=True, separators=(",", ":"), default=_to_jsonable)


def _to_jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if hasattr(obj, "to_dict"):  # result records (reprog_core.results)
        return obj.to_dict()
    if hasattr(obj, "value") and hasattr(type(obj), "__members__"):  # enums
        return obj.value
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"result value of type {type(obj).__name__} is not JSON-serialisable")


def strip_fields(result: Any, names: tuple[str, ...]) -> Any:
    """``result`` without the keys ``names`` at any depth (big arrays the request did not ask
    to keep)."""
    if isinstance(result, dict):
        return {k: strip_fields(v, names) for k, v in result.items() if k not in names}
    if isinstance(result, list):
        return [strip_fields(v, names) for v in result]
    return result


@dataclass(frozen=True)
class EntryInfo:
    key: str
    kind: str
    size: int
    created: float | None  # seconds since the epoch; None when the header is unreadable

    def to_dict(self) -> dict[str, Any]:
        created = (
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))
            if self.created is not None
            else None
        )
        return {"key": self.key, "kind": self.kind, "size": self.size, "created": created}


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
        try:
            row = self._read(
                lambda con: con.execute(
                    "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1", (key,)
                ).fetchone()
            )
        except (StoreBusy, DiskFull) as exc:
            log.warning("cache entry %s not read: %s", key, exc)
            return None
        if row is None:
            return None
        try:
            value = self._disk().fetch(row[0], row[1], row[2], False)
            return _verify(key, value)
        except (ValueError, OSError) as exc:  # CorruptEntry, checksum, missing or unreadable file
            self._discard(key, f"{type(exc).__name__}: {exc}")
            return None

    def get(self, key: str) -> dict[str, Any] | None:
        text = self.get_json(key)
        return None if text is None else json.loads(text)

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
        data = payload.encode()
        header = {
            "format": FORMAT,
            "key": key,
            "kind": kind,
            "created": time.time(),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        blob = json.dumps(header, sort_keys=True).encode() + b"\n" + data
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
            return int(pages) * int(page) + int(row[0] if row else 0)

        return int(self._read(size))

    def entries(self) -> list[EntryInfo]:
        """Every entry's key, kind, size and creation time (reads only each entry's header).

        Rows this store did not write (pickled keys or values) are left out."""
        rows = self._read(
            lambda con: con.execute(
                "SELECT key, raw, tag, mode, filename, value FROM Cache ORDER BY rowid"
            ).fetchall()
        )
        disk = self._disk()
        out = []
        for key, raw, tag, mode, filename, value in rows:
            if not raw or not isinstance(key, str) or mode not in (MODE_RAW, MODE_BINARY):
                continue
            created = None
            try:
                if filename is None:
                    blob = bytes(value) if value is not None else b""
                    first, size = blob.split(b"\n", 1)[0], len(blob)
                else:
                    path = disk._inside(filename)
                    with open(path, "rb") as fh:
                        first = fh.readline(4096)
                    size = os.path.getsize(path)
            except (OSError, ValueError):
                continue  # its value file is gone or unsafe: not an entry
            try:
                created = float(json.loads(first)["created"])
            except Exception:
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
        return SafeDisk(str(self.directory))

    def _open(self) -> None:
        """Open the store for writing; set a corrupt one aside; fall back to read-only when the
        disk is full or the database stays locked."""
        with self._mutex:
            problem = integrity_problem(self.db_path, self.busy_timeout_s)
            if problem is not None:
                self._set_aside(problem)
                return
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                cache = _SafeCache(
                    str(self.directory),
                    self.busy_timeout_s,
                    size_limit=self.size_limit_bytes,
                    tag_index=True,
                )
            except (sqlite3.Error, OSError) as exc:
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
            self._db_id = _file_id(self.db_path)
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
        self._db_id = _file_id(self.db_path)

    def _set_aside(self, problem: str) -> None:
        """Move a corrupt store aside (unless another process already did), open a fresh one,
        and copy over every entry that still reads and verifies."""
        with self._mutex, _folder_lock(self.directory):
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
            n = _salvage(aside, self.cache)
            log.warning("copied %d verified entries from %s into the new store", n, aside)

    def _ensure_current(self) -> None:
        """Reopen when the database file was replaced (another process set it aside), or when
        it was read-only and a write is wanted (done by ``_write``)."""
        if self._db_id is not None and _file_id(self.db_path) != self._db_id:
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
            if self.cache is None and not self.db_path.exists():
                return fn(_EMPTY)
            return self._guard(lambda: fn(self._connection()))

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
                _remove_unreferenced(cache, cache.disk)
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


_EMPTY: Any = _Empty()


@contextlib.contextmanager
def _folder_lock(directory: Path) -> Iterator[None]:
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


def _remove_unreferenced(cache: diskcache.Cache, disk: SafeDisk) -> None:
    """After a failed write, remove value files no row refers to (diskcache leaves the new
    value's file behind when its row cannot be written)."""
    last = getattr(disk._local, "last", None)
    if not last:
        return
    with contextlib.suppress(Exception):
        row = cache._sql("SELECT 1 FROM Cache WHERE filename = ?", (last,)).fetchone()
        if row is None:
            disk.remove(last)


def _salvage(aside: Path, cache: diskcache.Cache) -> int:
    """Copy every entry of a set-aside store that can still be read and passes its checksum into
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
    disk = SafeDisk(str(aside))
    n = 0
    for _, key, raw, tag, mode, filename, value in rows.values():
        if not raw or not isinstance(key, str):
            continue
        try:
            blob = disk.fetch(mode, filename, value, False)
            _verify(key, blob)
            cache.set(key, blob, tag=tag if isinstance(tag, str) else None, retry=False)
            n += 1
        except Exception:  # noqa: BLE001 - unreadable or failing its checksum: not salvaged
            continue
    return n


def _verify(key: str, value: Any) -> str:
    """The payload of a stored entry, or ValueError saying what is wrong with it."""
    if not isinstance(value, bytes):
        raise ValueError(f"expected bytes, found {type(value).__name__}")
    head, sep, data = value.partition(b"\n")
    if not sep:
        raise ValueError("no header")
    try:
        header = json.loads(head)
    except ValueError:
        raise ValueError("header is not JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError("unknown header format")
    if header.get("key") != key:
        raise ValueError(f"stored under {key} but written for {header.get('key')}")
    if len(data) != header.get("size") or hashlib.sha256(data).hexdigest() != header.get("sha256"):
        raise ValueError("checksum mismatch")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ValueError("payload is not UTF-8") from None
