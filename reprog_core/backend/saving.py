"""How a computed result becomes a stored entry: one canonical JSON text, without its big fields
(unless the request keeps them), written in one go. A failed write is a warning on the result,
never an error for the requester: the result itself is fine.
"""

from __future__ import annotations

import logging
from typing import Any

from reprog_core.backend.errors import DiskFull, TaskFailed
from reprog_core.backend.jobs import JobTable
from reprog_core.backend.store import Store, canonical_json, strip_fields
from reprog_core.backend.tasks import TaskSpec

log = logging.getLogger("reprog_core.backend")


def serialise(spec: TaskSpec, params: dict[str, Any], result: Any) -> str:
    """The stored text of ``result`` of task ``spec`` asked with ``params``; ``TaskFailed`` if
    it is not a JSON-safe dict."""
    if not isinstance(result, dict):
        raise TaskFailed(f"task {spec.kind} returned {type(result).__name__}, expected a dict")
    if not params.get("keep_gram"):
        result = strip_fields(result, spec.big_fields)
    try:
        return canonical_json(result)
    except (TypeError, ValueError) as exc:
        raise TaskFailed(f"task {spec.kind} returned a result that is not JSON: {exc}") from exc


def save(store: Store, key: str, kind: str, text: str, table: JobTable) -> list[str]:
    """Write ``text`` under ``key``; the warnings for the requester (none if it was stored). A
    full disk is counted in ``table``'s ``disk_full``."""
    try:
        if not store.put(key, kind, text):
            return ["result too large for the cache size limit; not stored"]
    except DiskFull as exc:
        table.count("disk_full")
        log.error("%s", exc)
        return [str(exc)]
    except Exception as exc:
        log.exception("could not store %s", key)
        return [f"result not stored ({type(exc).__name__}: {exc})"]
    return []
