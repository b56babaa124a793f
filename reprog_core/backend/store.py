"""The result store: diskcache with an explicit size limit, and a checksum on every entry.

An entry is one ``bytes`` value, written by a single ``Cache.set`` (diskcache writes a large value's
file first and commits its row last, so a process killed mid-write leaves no entry)::

    {"format": 1, "key": ..., "kind": ..., "created": ..., "size": ..., "sha256": ...}\\n
    <result JSON>

The JSON is canonical (sorted keys, no spaces), and ``sha256`` is its hash. Reading verifies the
key and the hash; an entry that fails (bit rot, a truncated file, someone's hand edit) is logged,
discarded, and reported as a miss, so the next request recomputes it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from reprog_core.backend.errors import DiskFull

log = logging.getLogger("reprog_core.backend")

FORMAT = 1
DEFAULT_SIZE_LIMIT = 2 * 1024**3  # 2 GiB: thousands of spectra and curves, no Gram matrices


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
    """Verified, size-limited result storage in one directory (safe to share across processes)."""

    def __init__(self, directory: str | Path, size_limit_bytes: int = DEFAULT_SIZE_LIMIT) -> None:
        if size_limit_bytes < 1024**2:
            raise ValueError(f"size_limit_bytes must be at least 1 MiB, got {size_limit_bytes}")
        self.directory = Path(directory)
        self.size_limit_bytes = int(size_limit_bytes)
        self.cache = _open_cache(self.directory, self.size_limit_bytes)

    # ------------------------------------------------------------------ read
    def get_json(self, key: str) -> str | None:
        """The stored result JSON under ``key``, verified; None if absent or corrupt."""
        try:
            value = self.cache.get(key, default=None, retry=True)
        except Exception as exc:  # unpicklable row, unreadable file, broken database page
            self._discard(key, f"unreadable ({type(exc).__name__}: {exc})")
            return None
        if value is None:
            return None
        try:
            return _verify(key, value)
        except ValueError as exc:
            self._discard(key, str(exc))
            return None

    def get(self, key: str) -> dict[str, Any] | None:
        text = self.get_json(key)
        return None if text is None else json.loads(text)

    def __contains__(self, key: str) -> bool:
        return key in self.cache

    def __len__(self) -> int:
        return len(self.cache)

    # ------------------------------------------------------------------ write
    def put(self, key: str, kind: str, payload: str) -> bool:
        """Store ``payload`` (canonical result JSON) under ``key`` in one write.

        Returns False (with a warning) when the entry would not fit the size limit. Raises
        ``DiskFull`` when the disk is full; the caller still has the result.
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
        try:
            self.cache.set(key, blob, tag=kind, retry=True)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(f"disk full: result {key} was not cached ({exc})") from exc
            raise
        except sqlite3.OperationalError as exc:
            if "full" in str(exc).lower():
                raise DiskFull(f"disk full: result {key} was not cached ({exc})") from exc
            raise
        return True

    def delete(self, key: str) -> bool:
        return bool(self.cache.delete(key, retry=True))

    def _discard(self, key: str, reason: str) -> None:
        log.warning("discarding corrupt cache entry %s: %s; it will be recomputed", key, reason)
        try:
            self.cache.delete(key, retry=True)
        except Exception:  # the next put overwrites it anyway
            log.exception("could not delete corrupt cache entry %s", key)

    # ------------------------------------------------------------------ admin
    def volume(self) -> int:
        """Bytes on disk (database and value files)."""
        return int(self.cache.volume())

    def entries(self) -> list[EntryInfo]:
        """Every entry's key, kind, size and creation time (reads only each entry's header)."""
        out = []
        for key in list(self.cache.iterkeys()):
            try:
                value, tag = self.cache.get(key, read=True, tag=True, retry=True)
            except Exception:
                value, tag = None, None
            if value is None:
                continue
            created = None
            if isinstance(value, bytes):
                first, size = value.split(b"\n", 1)[0], len(value)
            else:  # an open file: a value large enough to live in its own file
                with value:
                    first = value.readline()
                    size = Path(value.name).stat().st_size
            try:
                created = float(json.loads(first)["created"])
            except Exception:
                pass
            out.append(EntryInfo(str(key), str(tag or str(key).split("-")[0]), size, created))
        return sorted(out, key=lambda e: (e.created or 0.0, e.key))

    def clear(self, kind: str | None = None) -> int:
        """Remove every entry (or those of one ``kind``); returns how many."""
        if kind is None:
            return int(self.cache.clear(retry=True))
        return int(self.cache.evict(kind, retry=True))

    def close(self) -> None:
        self.cache.close()


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
    return data.decode()


def _open_cache(directory: Path, size_limit: int) -> diskcache.Cache:
    """Open (or create) the diskcache; a database that SQLite cannot read is moved aside."""
    settings = {"size_limit": size_limit, "tag_index": True}
    try:
        return diskcache.Cache(str(directory), **settings)
    except sqlite3.DatabaseError as exc:
        aside = directory.with_name(f"{directory.name}.corrupt-{int(time.time())}")
        log.warning("cache database in %s is unreadable (%s); moved to %s", directory, exc, aside)
        shutil.move(str(directory), str(aside))
        return diskcache.Cache(str(directory), **settings)
