"""One entry of the result store, as bytes: a header line, then the result's canonical JSON::

    {"format": 1, "key": ..., "kind": ..., "created": ..., "size": ..., "sha256": ...}\\n
    <result JSON>

``make_entry`` builds one, ``verify_entry`` checks one read back (key, size, checksum, and that
the payload parses, within ``MAX_JSON_DEPTH``, to a JSON object), ``canonical_json`` is the one
serialisation of results, and ``EntryInfo`` is what ``cache ls`` lists.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprog_core.backend.store_disk import loads_bounded

FORMAT = 1


def make_entry(key: str, kind: str, payload: str) -> bytes:
    """The stored bytes of result JSON ``payload`` under ``key``: header line, then payload."""
    data = payload.encode()
    header = {
        "format": FORMAT,
        "key": key,
        "kind": kind,
        "created": time.time(),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return json.dumps(header, sort_keys=True).encode() + b"\n" + data


def verify_entry(key: str, value: Any) -> tuple[str, dict[str, Any]]:
    """The payload of a stored entry (its JSON text and the object it parses to), or ValueError
    saying what is wrong with it."""
    if not isinstance(value, bytes):
        raise ValueError(f"expected bytes, found {type(value).__name__}")
    head, sep, data = value.partition(b"\n")
    if not sep:
        raise ValueError("no header")
    try:
        header = loads_bounded(head)
    except ValueError:
        raise ValueError("header is not JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError("unknown header format")
    if header.get("key") != key:
        raise ValueError(f"stored under {key} but written for {header.get('key')}")
    if len(data) != header.get("size") or hashlib.sha256(data).hexdigest() != header.get("sha256"):
        raise ValueError("checksum mismatch")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError("payload is not UTF-8") from None
    # A checksum proves no more than that someone computed it: parse within the depth bound.
    result = loads_bounded(data)
    if not isinstance(result, dict):
        raise ValueError(f"payload is a JSON {type(result).__name__}, not an object")
    return text, result


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
