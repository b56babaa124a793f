"""The cached compute backend: one computation per config, shared by every session.

Typical use (the dashboard and the CLI do exactly this, through ``reprog_core.serving``, which
hands the backend the pipeline's tasks)::

    from reprog_core.serving import default_backend

    result = default_backend().run("explore", cfg)   # blocking; result["cache"] says how
    handle = default_backend().submit("ntk", cfg, {"keep_gram": True})   # non-blocking
    handle.status()   # JobStatus(state, queue_position, progress, stage, message)

A backend of one's own: ``Backend(cache_dir, tasks={"kind": fn, ...})``.

Files: ``service.py`` (Backend: the facade; the process-wide backend), ``jobs.py`` (the queue and
live jobs: dedup, orphan policy, counters), ``handle.py`` (a requester's Handle), ``pool.py``
(worker slots and threads: key lock, compute, store), ``saving.py`` (how a result is stored),
``worker.py`` (worker processes), ``tasks.py`` (task specs, their inputs, Progress),
``store.py`` (diskcache with checksums; ``store_entry.py``: the entry format, ``store_disk.py``:
bounded reads, ``store_repair.py``: its metadata and repairs), ``locks.py`` (per-key file locks
across processes), ``limits.py`` (server caps), ``errors.py``, ``admin.py`` (cache info / ls /
clear / warm for the CLI).
"""

from reprog_core.backend.admin import (
    cache_clear,
    cache_info,
    cache_ls,
    warm,
)
from reprog_core.backend.errors import (
    BackendError,
    Cancelled,
    DiskFull,
    OutOfMemory,
    OverBudget,
    StoreBusy,
    TaskFailed,
    UnknownTask,
    WorkerCrashed,
)
from reprog_core.backend.handle import Handle
from reprog_core.backend.jobs import JobStatus
from reprog_core.backend.limits import Limits
from reprog_core.backend.service import Backend, current_backend, shared_backend
from reprog_core.backend.store import Store
from reprog_core.backend.tasks import Progress, TaskSpec, task_table

__all__ = [
    "Backend",
    "BackendError",
    "Cancelled",
    "DiskFull",
    "Handle",
    "JobStatus",
    "Limits",
    "OutOfMemory",
    "OverBudget",
    "Progress",
    "Store",
    "StoreBusy",
    "TaskFailed",
    "TaskSpec",
    "UnknownTask",
    "WorkerCrashed",
    "cache_clear",
    "cache_info",
    "cache_ls",
    "current_backend",
    "shared_backend",
    "task_table",
    "warm",
]
