"""What ``python -m reprog_core cache {info,ls,clear,warm}`` does, as plain functions.

The CLI prints these; the dashboard may show them. All return JSON-safe values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reprog_core.backend.errors import BackendError
from reprog_core.backend.handle import Handle
from reprog_core.backend.service import Backend
from reprog_core.config import ExperimentConfig

# A warm-up item: (task kind, config, params, labels to report it by). Which items make a
# warm-up is the caller's (``sweep.grid.warm_items`` of a preset grid); the backend runs them.
WarmItem = tuple[str, ExperimentConfig, dict[str, Any], dict[str, Any]]


def cache_info(backend: Backend) -> dict[str, Any]:
    """Where the cache is, how big it is (bytes), how many entries, its size limit (bytes),
    ``read_only`` (why it cannot be written now: 'disk full', 'locked by another process'; None
    when it can), ``corrupt``: the stores set aside as corrupt, each ``{"dir", "size"}``, and
    ``repaired``: what opening the store repaired in its own metadata (orphaned value files
    swept, invalid settings reset), one line each."""
    store = backend.store
    return {
        "dir": str(store.directory),
        "size": store.volume(),
        "count": len(store),
        "limit": store.size_limit_bytes,
        "read_only": store.read_only,
        "corrupt": [{"dir": str(p), "size": _folder_size(p)} for p in store.corrupt_folders()],
        "repaired": list(store.repairs),
    }


def _folder_size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:
            pass
    return total


def cache_ls(backend: Backend) -> list[dict[str, Any]]:
    """One dict per stored result (key, kind, size in bytes, created as ISO-8601 UTC), oldest
    first."""
    return [entry.to_dict() for entry in backend.store.entries()]


def cache_clear(backend: Backend, kind: str | None = None) -> int:
    """Remove every stored result (or those of one task ``kind``); returns how many. Clearing
    everything also removes the stores set aside as corrupt (``cache_clear_report`` says
    which)."""
    return int(cache_clear_report(backend, kind)["removed"])


def cache_clear_report(backend: Backend, kind: str | None = None) -> dict[str, Any]:
    """``cache_clear``, saying what went: ``{"removed": n, "removed_corrupt": [folders]}``."""
    removed = backend.store.clear(kind)
    corrupt = [] if kind is not None else backend.store.remove_corrupt_folders()
    return {"removed": removed, "removed_corrupt": [str(p) for p in corrupt]}


def warm(
    backend: Backend,
    items: list[WarmItem],
    progress_cb: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Compute ``items`` so that a classroom starts warm.

    Everything is submitted at once (the workers share it out), then collected in order.
    ``progress_cb(done, total, entry)`` is called as each item finishes. Returns one entry per
    item: its labels, ``kind``, ``key``, ``cache`` ('computed' / 'joined' / 'hit', None on
    error), ``error`` (message or None) and ``elapsed_s`` since the start of the warm-up. A
    failing item is reported and the rest still run.
    """
    start = time.monotonic()
    submitted: list[tuple[WarmItem, Handle | None, str | None]] = []
    for item in items:
        kind, cfg, params, _ = item
        try:
            submitted.append((item, backend.submit(kind, cfg, params), None))
        except BackendError as exc:
            submitted.append((item, None, str(exc)))
    out = []
    for i, ((kind, cfg, params, labels), handle, error) in enumerate(submitted, 1):
        entry: dict[str, Any] = {**labels, "kind": kind, "key": cfg.key(kind, **params)}
        cache = None
        if handle is not None:
            try:
                cache = handle.result()["cache"]
            except BackendError as exc:
                error = str(exc)
        entry.update(cache=cache, error=error, elapsed_s=round(time.monotonic() - start, 3))
        out.append(entry)
        if progress_cb is not None:
            progress_cb(i, len(submitted), entry)
    return out
