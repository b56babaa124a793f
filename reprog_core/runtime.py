"""Where things run and where they are stored: device choice, seeding, thread pinning, cache dir."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

CACHE_ENV = "REPROG_CACHE_DIR"
DATA_ROOT_ENV = "REPROG_DATA_ROOT"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_dir(sub: str | None = None) -> Path:
    """Root of every cache and stored model (``$REPROG_CACHE_DIR``, default ``<project>/.cache``).

    Never inside the package. ``sub`` names a sub-folder, created on demand.
    """
    root = Path(os.environ.get(CACHE_ENV) or (_PROJECT_ROOT / ".cache")).expanduser()
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """Folder holding downloadable data sets: ``explicit``, else ``$REPROG_DATA_ROOT``, else
    ``<cache>/data``."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser()
    return cache_dir("data")


def resolve_device(requested: str | None = None) -> torch.device:
    """``requested`` ('cpu', 'cuda', 'cuda:1', or None/'auto'): CUDA when available, else CPU."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {requested!r} asked for CUDA, but no CUDA device is available")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a CPU generator seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pin_threads(n: int | None = None) -> None:
    """Pin torch's intra-op threads (default: ``$REPROG_THREADS`` or the core count).

    With default threading, timings on the 2-core machines were erratic.
    """
    n = n or int(os.environ.get("REPROG_THREADS", "0")) or (os.cpu_count() or 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
