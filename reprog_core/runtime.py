"""Where things run and where they are stored: device choice, seeding, thread pinning, cache dir."""

from __future__ import annotations

import errno
import os
import random
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import reprog_core
from reprog_core.files import disk_full

# torch and numpy are imported where they are used: ``cache_dir`` serves the CLI's cached answers,
# which must not pay for importing torch.
if TYPE_CHECKING:
    import torch

CACHE_ENV = "REPROG_CACHE_DIR"
DATA_ROOT_ENV = "REPROG_DATA_ROOT"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_dir(sub: str | None = None) -> Path:
    """Root of every cache and stored model (``$REPROG_CACHE_DIR``, default ``<project>/.cache``).

    Never inside the package. ``sub`` names a sub-folder, created on demand. When the disk is
    too full to create it: ``DiskFull``, "disk full at <cache dir>: free space or set
    REPROG_CACHE_DIR" (the message a full disk gets everywhere else).
    """
    root = Path(os.environ.get(CACHE_ENV) or (_PROJECT_ROOT / ".cache")).expanduser()
    path = root / sub if sub else root
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise disk_full(root) from None
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
    import torch

    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {requested!r} asked for CUDA, but no CUDA device is available")
    return dev


# The global RNGs (Python's, NumPy's, torch's) are one per process, and the backend computes in
# threads: two builds that seed them and draw from them at the same time would hand each other
# their numbers (a "seeded" random network that depends on what else was running). Every
# computation that seeds the global RNGs and builds from them holds this lock while it does.
_RNG_LOCK = threading.RLock()


def rng_lock() -> threading.RLock:
    """The process-wide lock around seeding the global RNGs and drawing from them (re-entrant)."""
    return _RNG_LOCK


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a CPU generator seeded with ``seed``."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


THREADS_ENV = "REPROG_THREADS"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads(workers: int = 1) -> int:
    """Torch threads per worker: ``$REPROG_THREADS``, else the cores shared out among ``workers``
    concurrent workers (at least 1). Measured (README "Measured", thread policy): with
    ``OMP_WAIT_POLICY=PASSIVE`` two threads were never slower than one, idle or contended; with
    spinning OpenMP threads they were up to several times slower under contention."""
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"${THREADS_ENV}={env!r} is not a whole number") from None
        if n < 1:
            raise ValueError(f"${THREADS_ENV} must be at least 1, got {n}")
        return n
    return max(1, available_cores() // max(1, workers))


def thread_policy() -> dict[str, object]:
    """What governs CPU threading in this process: the OpenMP wait policy (and whether it could
    still take effect: torch must load after it is set), and ``$REPROG_THREADS``."""
    return {
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(OpenMP default: active)"),
        "wait_policy_effective": not reprog_core.TORCH_PRELOADED,
        "reprog_threads": os.environ.get(THREADS_ENV) or None,
        "cores": available_cores(),
    }


def pin_threads(n: int | None = None, *, workers: int = 1) -> int:
    """Pin torch's intra-op threads to ``n`` (default ``default_threads(workers)``); returns it.

    With default threading, timings on the 2-core machines were erratic; with spinning OpenMP
    threads, two threads could be many times slower than one on shared cores. The wait policy
    (``OMP_WAIT_POLICY=PASSIVE``) is set by importing ``reprog_core`` before torch.
    """
    import torch

    n = n or default_threads(workers)
    if n < 1:
        raise ValueError(f"threads must be at least 1, got {n}")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
