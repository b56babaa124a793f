"""The Backend: one computation per result key, shared by all requesters, safe under faults.

How a request flows (``Backend.submit``):

1. the kind is looked up among the backend's tasks (``UnknownTask``) and limits are checked
   (``OverBudget``), at once, with nothing queued;
2. a verified stored result is returned as a ``'hit'``;
3. an identical job already queued or running in this process is joined (``'joined'``,
   ``jobs.py``);
4. otherwise a job is queued, and a worker slot serves it (``pool.py``): under the key's file
   lock it looks in the store again, computes only if still missing (``'computed'``), and stores
   the result before the lock is released.

The backend knows no task by name: whoever creates one hands it its tasks (``tasks=``). This
module also holds the process-wide backend (``shared_backend``, ``current_backend``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reprog_core.backend.errors import BackendError, OverBudget
from reprog_core.backend.handle import Handle
from reprog_core.backend.jobs import Job, JobStatus, JobTable
from reprog_core.backend.limits import Limits
from reprog_core.backend.pool import ISOLATIONS, WorkerPool, worker_devices
from reprog_core.backend.saving import load, load_dict, save, serialise
from reprog_core.backend.store import DEFAULT_SIZE_LIMIT, Store
from reprog_core.backend.tasks import TaskFn, TaskSpec, find_task, task_table
from reprog_core.config import ExperimentConfig
from reprog_core.runtime import cache_dir as default_cache_dir

Tasks = Mapping[str, TaskFn | TaskSpec]


class Backend:
    """The cached compute service. The constructor opens the store; worker threads (and worker
    processes) start on the first request that needs them.

    ``tasks``: the kinds it computes (kind -> task function or ``TaskSpec``); without them it
    still serves stored results (``get``).
    ``cache_dir``: root shared by every process that should share results (default
    ``runtime.cache_dir()``); results go in ``<root>/results``, key locks in ``<root>/locks``.
    ``device``: None/'auto' (every CUDA device, else CPU), 'cpu', 'cuda' or 'cuda:k'.
    ``cpu_workers``: pool size on CPU. ``orphan_policy``: what happens to a job nobody waits for
    any more ('finish' it and store the result, or 'cancel' it). ``isolation``: 'thread' or
    'process' (see ``pool.py``). ``cancel_grace_s``: how long a worker process may take to
    notice a cancellation before it is killed.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        size_limit_bytes: int = DEFAULT_SIZE_LIMIT,
        limits: Limits | None = None,
        device: str | None = None,
        cpu_workers: int = 2,
        orphan_policy: str = "finish",
        isolation: str = "thread",
        cancel_grace_s: float = 10.0,
        tasks: Tasks | None = None,
    ) -> None:
        self._table = JobTable(orphan_policy)
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
        if cpu_workers < 1:
            raise ValueError(f"cpu_workers must be at least 1, got {cpu_workers}")
        self.tasks = task_table(tasks)
        self.cache_dir = Path(cache_dir if cache_dir is not None else default_cache_dir())
        self.limits = limits if limits is not None else Limits.from_env()
        self._pool = WorkerPool(
            worker_devices(device, cpu_workers),
            isolation,
            cancel_grace_s,
            self._table,
            Store(self.cache_dir / "results", size_limit_bytes),
            self.cache_dir / "locks",
            self.tasks,
        )
        self.store = self._pool.store

    @classmethod
    def from_env(cls, **overrides: Any) -> Backend:
        """A backend configured by environment variables: ``REPROG_CACHE_SIZE_MB``,
        ``REPROG_CPU_WORKERS``, ``REPROG_ORPHAN_POLICY``, ``REPROG_BACKEND_ISOLATION``,
        ``REPROG_DEVICE`` and the ``Limits`` variables (``REPROG_MAX_N`` ...)."""
        env = os.environ
        kwargs: dict[str, Any] = {}
        if env.get("REPROG_CACHE_SIZE_MB"):
            kwargs["size_limit_bytes"] = int(float(env["REPROG_CACHE_SIZE_MB"]) * 1024**2)
        if env.get("REPROG_CPU_WORKERS"):
            kwargs["cpu_workers"] = int(env["REPROG_CPU_WORKERS"])
        if env.get("REPROG_ORPHAN_POLICY"):
            kwargs["orphan_policy"] = env["REPROG_ORPHAN_POLICY"]
        if env.get("REPROG_BACKEND_ISOLATION"):
            kwargs["isolation"] = env["REPROG_BACKEND_ISOLATION"]
        if env.get("REPROG_DEVICE"):
            kwargs["device"] = env["REPROG_DEVICE"]
        kwargs.update(overrides)
        return cls(**kwargs)

    # ------------------------------------------------------------------ configuration
    @property
    def devices(self) -> list[str]:
        return self._pool.devices

    @property
    def locks_dir(self) -> Path:
        return self._pool.locks_dir

    @property
    def orphan_policy(self) -> str:
        return self._table.orphan_policy

    @property
    def isolation(self) -> str:
        return self._pool.isolation

    @property
    def cancel_grace_s(self) -> float:
        return self._pool.cancel_grace_s

    @property
    def closed(self) -> bool:
        return self._table.closed

    def task(self, kind: str) -> TaskSpec:
        """The spec of task ``kind``; ``UnknownTask`` (listing the known kinds) otherwise."""
        return find_task(self.tasks, kind)

    # ------------------------------------------------------------------ requests
    def key(self, kind: str, cfg: ExperimentConfig, params: dict[str, Any] | None = None) -> str:
        """The result key of a request (``cfg.key(kind, **params)``)."""
        return cfg.key(kind, **(params or {}))

    def submit(
        self, kind: str, cfg: ExperimentConfig, params: dict[str, Any] | None = None
    ) -> Handle:
        """Ask for a result; returns a ``Handle`` at once.

        Raises ``OverBudget`` (over a server limit) or ``UnknownTask`` before anything is queued.
        """
        if self.closed:
            raise BackendError("the backend is closed")
        spec = self.task(kind)
        if isinstance(cfg, dict):
            cfg = ExperimentConfig.from_dict(cfg)
        params = dict(params or {})
        try:
            self.limits.check(cfg, params, spec.limits)
        except OverBudget:
            self._table.count("over_budget")
            raise
        key = cfg.key(kind, **params)
        self._table.count("submitted")

        stored = load(self.store, key)
        if stored is not None:
            job = Job(spec, key, cfg, params)
            self._table.resolve(job, stored, "hit")
            return Handle(self._table, job, joined=False, track=False)
        job, joined = self._table.enqueue_or_join(spec, key, cfg, params)
        self._pool.start()
        return Handle(self._table, job, joined=joined)

    def run(
        self,
        kind: str,
        cfg: ExperimentConfig,
        params: dict[str, Any] | None = None,
        progress_cb: Callable[[JobStatus], None] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Submit and wait; ``progress_cb(status)`` is called whenever the status changes.

        If waiting is interrupted (Ctrl-C, timeout), the request is withdrawn.
        """
        handle = self.submit(kind, cfg, params)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            last: JobStatus | None = None
            while not handle.wait(0.1):
                if progress_cb is not None:
                    status = handle.status()
                    if status != last:
                        progress_cb(status)
                        last = status
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{handle.key} not done after {timeout} s")
            if progress_cb is not None:
                progress_cb(handle.status())
            return handle.result(0)
        except (KeyboardInterrupt, TimeoutError):
            handle.cancel()
            raise

    def get(
        self, kind: str, cfg: ExperimentConfig, params: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The stored result of a request (``cache='hit'``), or None; never computes."""
        key = cfg.key(kind, **(params or {}))
        result = load_dict(self.store, key)
        if result is not None:
            result["cache"] = "hit"
            result["key"] = key
        return result

    def put(
        self,
        kind: str,
        cfg: ExperimentConfig,
        result: dict[str, Any],
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store ``result``, computed elsewhere, as this backend stores what it computes for
        (``kind``, ``cfg``, ``params``); returns it as stored, with ``key`` (``cache`` is left to
        the caller) and, if it could not be stored, ``warnings``."""
        params = dict(params or {})
        key = cfg.key(kind, **params)
        text = serialise(self.task(kind), params, result)
        warnings = save(self.store, key, kind, text, self._table)
        out = json.loads(text)
        out["key"] = key
        if warnings:
            out["warnings"] = warnings
        return out

    def stats(self) -> dict[str, int]:
        """Counters since start: submitted, hit, joined, computations (task runs started),
        failed, cancelled, over_budget, disk_full; and the current queued / running jobs."""
        return self._table.stats()

    def worker_pids(self) -> list[int]:
        """Process ids of live worker processes (``isolation='process'`` only)."""
        return self._pool.pids()

    # ------------------------------------------------------------------ lifecycle
    def close(self, timeout: float = 5.0) -> None:
        """Cancel queued jobs, ask running ones to stop, stop the workers, close the store."""
        if not self._table.close():
            return
        self._pool.close(timeout)
        self.store.close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------ the process-wide backend
_default: Backend | None = None
_default_lock = threading.Lock()


def current_backend() -> Backend | None:
    """The process-wide backend if one is running (never creates one): a task can read a stored
    stage of another task through it (e.g. the explore task reuses a stored kernel)."""
    with _default_lock:
        return _default if _default is not None and not _default.closed else None


def shared_backend(tasks: Tasks) -> Backend:
    """The process-wide backend, created on first call from the environment with ``tasks``
    (thread-safe); ``reprog_core.serving.default_backend`` is the one serving the pipeline."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = Backend.from_env(tasks=tasks)
        return _default
