"""How a computed result becomes a stored entry: one canonical JSON text, without its big fields
(unless the request keeps them), written in one go. A failed write is a warning on the result,
never an error for the requester: the result itself is fine.

A part of a result that is another stored entry (a task's ``inputs``, e.g. the target NTK inside
an explore result) is stored as a reference, ``{"$stored": key}``, and put back when the entry
is read (``load``): each result is stored once. An entry whose reference is gone (evicted,
cleared) reads as absent, so it is computed again, inputs first.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from reprog_core.backend.errors import DiskFull, TaskFailed
from reprog_core.backend.jobs import JobTable
from reprog_core.backend.store import Store, canonical_json, strip_fields
from reprog_core.backend.tasks import TaskSpec

log = logging.getLogger("reprog_core.backend")


REF = "$stored"


def serialise(
    spec: TaskSpec, params: dict[str, Any], result: Any, refs: dict[str, str] | None = None
) -> str:
    """The stored text of ``result`` of task ``spec`` asked with ``params``; ``TaskFailed`` if
    it is not a JSON-safe dict. ``refs``: result keys (name -> stored key) that are stored
    entries of their own, kept as references."""
    if not isinstance(result, dict):
        raise TaskFailed(f"task {spec.kind} returned {type(result).__name__}, expected a dict")
    for name, key in (refs or {}).items():
        if result.get(name) is not None:
            result = {**result, name: {REF: key}}
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


def load(store: Store, key: str) -> str | None:
    """The stored text under ``key`` with its references put back (``serialise``'s ``refs``);
    None if it, or an entry it refers to, is absent. An entry without references is returned as
    stored, unparsed."""
    text = store.get_json(key)
    if text is None or f'"{REF}"' not in text:
        return text
    result = _joined(store, json.loads(text))
    return None if result is None else canonical_json(result)


def load_dict(store: Store, key: str) -> dict[str, Any] | None:
    """``load``, parsed (once, by the store)."""
    result = store.get(key)
    return None if result is None else _joined(store, result)


def _joined(store: Store, result: dict[str, Any]) -> dict[str, Any] | None:
    """``result`` with each reference replaced by the entry it names; None if one is gone."""
    for name, value in list(result.items()):
        if isinstance(value, dict) and set(value) == {REF}:
            part = store.get(str(value[REF]))
            if part is None:
                return None
            result[name] = part
    return result
