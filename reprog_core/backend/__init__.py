"""The cached compute backend: one computation per config, shared by every session.

Typical use (the dashboard and the CLI do exactly this)::

    from reprog_core.backend import default_backend

    result = default_backend().run("explore", cfg)   # blocking; result["cache"] says how
    handle = default_backend().submit("ntk", cfg, {"keep_gram": True})   # non-blocking
    handle.status()   # JobStatus(state, queue_position, progress, stage, message)

Files: ``service.py`` (Backend, Handle: dedup, queue, workers, cancel), ``store.py`` (diskcache
with checksums), ``locks.py`` (per-key file locks across processes), ``worker.py`` (worker
processes), ``tasks.py`` (task registry, Progress), ``limits.py`` (server caps), ``errors.py``,
``admin.py`` (cache info / ls / clear / warm for the CLI).
"""

from reprog_core.backend.admin import (
    PRESETS,
    cache_clear,
    cache_info,
    cache_ls,
    list_presets,
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
from reprog_core.backend.limits import Limits
from reprog_core.backend.service import Backend, Handle, JobStatus, default_backend
from reprog_core.backend.store import Store
from reprog_core.backend.tasks import (
    Progress,
    TaskSpec,
    ensure_pipeline_tasks,
    get_task,
    list_tasks,
    register_task,
)

__all__ = [
    "PRESETS",
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
    "default_backend",
    "ensure_pipeline_tasks",
    "get_task",
    "list_presets",
    "list_tasks",
    "register_task",
    "warm",
]
