"""Small helpers the clip modules share: atomic file writes, ``torch.save`` through a file
object, one-line error text, and quieting open_clip's log."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch


def torch_save(obj: Any, path: str) -> None:
    # Through a file object: torch.save(obj, <name>) records the file's name inside the archive,
    # so the same weights saved under two names (or via a random temp name) would hash apart.
    with open(path, "wb") as f:
        torch.save(obj, f)


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """``write(tmp_path)`` then rename over ``path``: readers never see a half-written file, and
    concurrent writers of the same content simply replace each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class _DropRandomInitWarning(logging.Filter):
    """open_clip logs 'Model initialized randomly' on the root logger; here that is the intent."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def quiet_open_clip() -> Iterator[None]:
    root = logging.getLogger()
    filt = _DropRandomInitWarning()
    root.addFilter(filt)
    try:
        yield
    finally:
        root.removeFilter(filt)


@contextlib.contextmanager
def patched(obj: Any, attr: str, value: Any) -> Iterator[None]:
    old = getattr(obj, attr)
    setattr(obj, attr, value)
    try:
        yield
    finally:
        setattr(obj, attr, old)
