"""The bounded reads of the result store (``reprog_core/backend/store_disk.py``): JSON depth is
checked without parsing, in linear time; a value file is read only as a bounded regular file.
The store as a whole under the same attacks: tests/integration/test_integrity.py."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from reprog_core.backend.store_disk import (
    MAX_JSON_DEPTH,
    CorruptEntry,
    check_json_depth,
    loads_bounded,
    read_regular_file,
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "text",
    [
        nested(MAX_JSON_DEPTH),
        json.dumps({"a": [[1.5, 2], {"b": [None, "x"]}], "s": "[[[[{{{{"}),
        json.dumps({"s": '\\"[[[[' * 1000, "t": ["]]]}}"] * 3}),  # brackets inside strings
        json.dumps({"gram": [[0.1] * 300] * 300}),
        '"just a string"',
        "3.5",
        "",
    ],
)
def test_json_within_the_depth_bound_passes(text: str) -> None:
    check_json_depth(text)
    check_json_depth(text.encode())
    if text:
        assert loads_bounded(text) == json.loads(text)


@pytest.mark.parametrize(
    "text, why",
    [
        (nested(MAX_JSON_DEPTH + 1), "deeper than 64"),
        ('{"a":' * 65 + "1" + "}" * 65, "deeper than 64"),
        (nested(100_000), "deeper than 64"),
        ("[" * 2_000_000, "deeper than 64"),  # long: counted in chunks, not one by one
        ("[[]", "do not pair up"),
        ("]", "do not pair up"),
        ('["a"]]', "do not pair up"),
    ],
)
def test_json_over_the_depth_bound_is_corrupt(text: str, why: str) -> None:
    with pytest.raises(CorruptEntry, match=why):
        check_json_depth(text)
    with pytest.raises(CorruptEntry):
        loads_bounded(text)


def test_depth_check_is_linear_on_hostile_text() -> None:
    """An unterminated string of escaped quotes would make a naive string pattern quadratic."""
    for hostile in (b'"' + b'\\"' * 500_000, b'["' + b"\\" * 999_999, b"[" * 1_000_000):
        start = time.perf_counter()
        with pytest.raises(CorruptEntry):
            loads_bounded(hostile)
        assert time.perf_counter() - start < 2.0


def test_loads_bounded_refuses_what_json_refuses() -> None:
    for bad in ('{"a": nope}', "[1,]", b"\xff\xfe"):
        with pytest.raises(CorruptEntry):
            loads_bounded(bad)


def test_only_a_bounded_regular_file_is_read(tmp_path: Path) -> None:
    good = tmp_path / "good.val"
    good.write_bytes(b"x" * 100)
    assert read_regular_file(str(good), 100) == (b"x" * 100, 100)
    assert read_regular_file(str(good), 100, head=10) == (b"x" * 10, 100)
    with pytest.raises(CorruptEntry, match="over the 99-byte bound"):
        read_regular_file(str(good), 99)

    fifo = tmp_path / "fifo.val"
    os.mkfifo(fifo)  # opening it for reading would block: it must be refused unopened
    link = tmp_path / "link.val"
    link.symlink_to(good)
    folder = tmp_path / "dir.val"
    folder.mkdir()
    for path, what in ((fifo, "a FIFO"), (link, "a symbolic link"), (folder, "a folder")):
        with pytest.raises(CorruptEntry, match=what):
            read_regular_file(str(path), 1000)
    with pytest.raises(FileNotFoundError):
        read_regular_file(str(tmp_path / "missing.val"), 1000)
