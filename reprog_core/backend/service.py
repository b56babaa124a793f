"""The Backend: one computation per result key, shared by all requesters, safe under faults.

How a request flows (``Backend.submit``):

1. limits are checked (``OverBudget`` at once, nothing queued);
2. a verified stored result is returned as a ``'hit'``;
3. an identical job already queued or running in this process is joined (``'joined'``);
4. otherwise a job is queued. A worker slot takes it, takes the key's file lock (``locks.py``),
   and looks in the store again: another process may have computed it meanwhile (``'joined'`` if
   we waited for its lock, ``'hit'`` if not). Only then does the task run (``'computed'``), and
   its result is stored, in one write, before the lock is released.

Worker slots: one per CUDA device (GPU work is serialised per device) or ``cpu_workers`` on a
CPU-only machine. A slot runs tasks in its own thread (``isolation='thread'``, the default) or in
a child process it owns (``isolation='process'``, see ``worker.py``), so that a crash or an OOM
kill costs one request, not the server.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprog_core.backend.errors import (
    BackendError,
    Cancelled,
    DiskFull,
    OutOfMemory,
    OverBudget,
    TaskFailed,
    classify,
)
from reprog_core.backend.limits import Limits
from reprog_core.backend.locks import KeyLock
from reprog_core.backend.store import DEFAULT_SIZE_LIMIT, Store, canonical_json, strip_fields
from reprog_core.backend.tasks import Progress, TaskSpec, get_task
from reprog_core.backend.worker import WorkerProcess, free_memory
from reprog_core.config import ExperimentConfig

log = logging.getLogger("reprog_core.backend")

STATES = ("queued", "running", "done", "failed", "cancelled")
CACHE_OUTCOMES = ("computed", "joined", "hit")
ORPHAN_POLICIES = ("finish", "cancel")
ISOLATIONS = ("thread", "process")


@dataclass(frozen=True)
class JobStatus:
    """What a requester sees of its request.

    ``queue_position``: 1 = next to run, None unless ``state == 'queued'``. ``progress`` in
    [0, 1]. ``stage``: what the task says it is doing. ``message``: why it failed or was
    cancelled, or a warning about a done result (e.g. the disk was full, so it was not stored).
    """

    state: str
    queue_position: int | None
    progress: float
    stage: str
    message: str


class _Job:
    """One computation of one key, shared by all the requesters who asked for it."""

    def __init__(self, spec: TaskSpec, key: str, cfg: ExperimentConfig, params: dict[str, Any]):
        self.spec = spec
        self.key = key
        self.cfg = cfg
        self.params = params
        self.state = "queued"
        self.progress = 0.0
        self.stage = ""
        self.message = ""
        self.outcome = "computed"  # how the result was obtained; final once done
        self.result_json: str | None = None
        self.error: BackendError | None = None
        self.warnings: list[str] = []
        self.requesters = 0
        self.cancel_event = threading.Event()
        self.done_event = threading.Event()

    @property
    def kind(self) -> str:
        return self.spec.kind


class Handle:
    """A requester's view of one request; returned at once by ``Backend.submit``.

    Dropping every handle of a job (garbage collection) counts as its requesters leaving: the job
    is then cancelled or finished in the background, per the backend's ``orphan_policy``.
    """

    def __init__(self, backend: Backend, job: _Job, joined: bool, track: bool = True) -> None:
        self.key = job.key
        self.kind = job.kind
        self._backend = backend
        self._job = job
        self._joined = joined
        self._cancelled = False
        # The finalizer must not reference self; it hands the job to the backend's reaper.
        self._finalizer = weakref.finalize(self, backend._released.put, job) if track else None

    @property
    def cache(self) -> str:
        """'computed', 'joined' or 'hit'. Final once the request is done (before that, a queued
        job reads 'computed'; it becomes 'joined' if another process computes it first)."""
        return "joined" if self._joined else self._job.outcome

    def status(self) -> JobStatus:
        if self._cancelled:
            job = self._job
            return JobStatus("cancelled", None, job.progress, job.stage, "cancelled by you")
        return self._backend._status(self._job)

    def done(self) -> bool:
        return self._cancelled or self._job.done_event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done (or cancelled); returns False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                return False
            self._job.done_event.wait(left)
        return True

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """The result dict (with ``cache`` and ``key``), or the ``BackendError`` that ended it.

        Raises ``TimeoutError`` if not done within ``timeout`` seconds.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"{self.key} not done after {timeout} s")
        if self._cancelled:
            raise Cancelled(f"{self.key}: cancelled by you")
        job = self._job
        if job.error is not None:
            # A fresh instance per requester: re-raising one object from many threads would
            # tangle their tracebacks. The task's own exception (thread isolation) is the cause.
            raise type(job.error)(str(job.error)) from job.error.__cause__
        assert job.result_json is not None
        result = json.loads(job.result_json)
        result["cache"] = self.cache
        result["key"] = self.key
        if job.warnings:
            result["warnings"] = list(job.warnings)
        return result

    def cancel(self) -> bool:
        """Withdraw this request. Returns False if it was already done.

        The computation itself stops only when no other requester is waiting for it and the
        backend's ``orphan_policy`` is 'cancel'; with 'finish' it completes and is stored.
        """
        if self.done():
            return False
        self._cancelled = True
        if self._finalizer is not None and self._finalizer.detach() is not None:
            self._backend._release(self._job)
        return True

    def __repr__(self) -> str:
        return f"Handle({self.key!r}, {self.status().state}, cache={self.cache!r})"


class _Slot:
    """One worker: a device and (with process isolation) the child process that computes."""

    def __init__(self, device: str, isolation: str, cancel_grace_s: float) -> None:
        self.device = device
        self.process = WorkerProcess(device, cancel_grace_s) if isolation == "process" else None

    def compute(
        self,
        job: _Job,
        report: Callable[[float, str], None],
        is_cancelled: Callable[[], bool],
    ) -> dict[str, Any]:
        params = copy.deepcopy(job.params)  # the task must not change the params we keyed on
        if self.process is not None:
            return self.process.run(job.spec, job.key, job.cfg, params, report, is_cancelled)
        progress = Progress(report, is_cancelled, self.device)
        return job.spec.fn(job.cfg, params, progress)

    def close(self) -> None:
        if self.process is not None:
            self.process.close()


class Backend:
    """The cached compute service. The constructor opens the store; worker threads (and worker
    processes) start on the first request that needs them.

    ``cache_dir``: root shared by every process that should share results (default
    ``runtime.cache_dir()``); results go in ``<root>/results``, key locks in ``<root>/locks``.
    ``device``: None/'auto' (every CUDA device, else CPU), 'cpu', 'cuda' or 'cuda:k'.
    ``cpu_workers``: pool size on CPU. ``orphan_policy``: what happens to a job nobody waits for
    any more ('finish' it and store the result, or 'cancel' it). ``isolation``: 'thread' or
    'process' (see module docstring). ``cancel_grace_s``: how long a worker process may take to
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
    ) -> None:
        if orphan_policy not in ORPHAN_POLICIES:
            raise ValueError(
                f"orphan_policy must be one of {ORPHAN_POLICIES}, got {orphan_policy!r}"
            )
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
        if cpu_workers < 1:
            raise ValueError(f"cpu_workers must be at least 1, got {cpu_workers}")
        if cache_dir is None:
            from reprog_core.runtime import cache_dir as default_cache_dir

            cache_dir = default_cache_dir()
        self.cache_dir = Path(cache_dir)
        self.store = Store(self.cache_dir / "results", size_limit_bytes)
        self.locks_dir = self.cache_dir / "locks"
        self.limits = limits if limits is not None else Limits.from_env()
        self.devices = _worker_devices(device, cpu_workers)
        self.orphan_policy = orphan_policy
        self.isolation = isolation
        self.cancel_grace_s = cancel_grace_s

        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Job] = []
        self._jobs: dict[str, _Job] = {}  # key -> the live (queued/running) job
        self._stats: Counter[str] = Counter()
        self._slots: list[_Slot] = []
        self._threads: list[threading.Thread] = []
        # Handles dropped by garbage collection land here (SimpleQueue.put is safe to call from a
        # finalizer, which may run while this thread holds self._cond); a reaper thread acts.
        self._released: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False

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
        if self._closed:
            raise BackendError("the backend is closed")
        spec = get_task(kind)
        if isinstance(cfg, dict):
            cfg = ExperimentConfig.from_dict(cfg)
        params = dict(params or {})
        try:
            self.limits.check(cfg, params, spec.limits)
        except OverBudget:
            self._count("over_budget")
            raise
        key = cfg.key(kind, **params)
        self._count("submitted")

        stored = self.store.get_json(key)
        if stored is not None:
            job = _Job(spec, key, cfg, params)
            self._resolve(job, stored, "hit")
            return Handle(self, job, joined=False, track=False)

        with self._cond:
            job = self._jobs.get(key)
            if job is not None and not job.cancel_event.is_set():
                job.requesters += 1
                self._stats["joined"] += 1
                return Handle(self, job, joined=True)
            # A job being cancelled is not joined: the new one waits for its key lock, then
            # computes.
            job = _Job(spec, key, cfg, params)
            job.requesters = 1
            self._jobs[key] = job
            self._queue.append(job)
            self._start_workers()
            self._cond.notify()
        return Handle(self, job, joined=False)

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
        result = self.store.get(key)
        if result is not None:
            result["cache"] = "hit"
            result["key"] = key
        return result

    def stats(self) -> dict[str, int]:
        """Counters since start: submitted, hit, joined, computations (task runs started),
        failed, cancelled, over_budget, disk_full; and the current queued / running jobs."""
        with self._cond:
            out = {
                name: self._stats[name]
                for name in (
                    "submitted",
                    "hit",
                    "joined",
                    "computations",
                    "failed",
                    "cancelled",
                    "over_budget",
                    "disk_full",
                )
            }
            out["queued"] = len(self._queue)
            out["running"] = sum(j.state == "running" for j in self._jobs.values())
        return out

    def worker_pids(self) -> list[int]:
        """Process ids of live worker processes (``isolation='process'`` only)."""
        return [s.process.pid for s in self._slots if s.process and s.process.pid]

    # ------------------------------------------------------------------ lifecycle
    def close(self, timeout: float = 5.0) -> None:
        """Cancel queued jobs, ask running ones to stop, stop the workers, close the store."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            pending, self._queue = self._queue, []
            for job in self._jobs.values():
                job.cancel_event.set()
            self._cond.notify_all()
        for job in pending:
            self._end(job, Cancelled("the backend was closed"))
        self._released.put(None)
        for thread in self._threads:
            thread.join(timeout)
        for slot in self._slots:
            slot.close()
        self.store.close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _count(self, name: str, n: int = 1) -> None:
        with self._cond:
            self._stats[name] += n

    def _start_workers(self) -> None:
        """Start worker threads (and the reaper) on first use; caller holds ``self._cond``."""
        if self._threads:
            return
        for i, device in enumerate(self.devices):
            slot = _Slot(device, self.isolation, self.cancel_grace_s)
            self._slots.append(slot)
            t = threading.Thread(
                target=self._worker_loop, args=(slot,), name=f"reprog-backend-{device}-{i}"
            )
            t.daemon = True  # a stuck task must not keep the interpreter alive at exit
            t.start()
            self._threads.append(t)
        reaper = threading.Thread(target=self._reap, name="reprog-backend-reaper", daemon=True)
        reaper.start()
        self._threads.append(reaper)

    def _status(self, job: _Job) -> JobStatus:
        with self._cond:
            position = self._queue.index(job) + 1 if job.state == "queued" else None
            return JobStatus(job.state, position, job.progress, job.stage, job.message)

    def _reap(self) -> None:
        while (job := self._released.get()) is not None:
            self._release(job)

    def _release(self, job: _Job) -> None:
        """One requester of ``job`` is gone; act on the orphan policy if it was the last."""
        with self._cond:
            if job.done_event.is_set():
                return
            job.requesters -= 1
            if job.requesters > 0:
                return
            if self.orphan_policy == "finish":
                log.info("no requester left for %s; finishing it in the background", job.key)
                return
            job.cancel_event.set()
            queued = job in self._queue
            if queued:
                self._queue.remove(job)
        if queued:
            self._end(job, Cancelled("cancelled: every requester left"))
        # A running job sees cancel_event at its next progress.update / check_cancelled.

    def _worker_loop(self, slot: _Slot) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._queue.pop(0)
                job.state = "running"
                job.stage = "starting"
            try:
                self._execute(job, slot)
            except BaseException:  # never let one job kill the worker thread
                log.exception("unexpected error while serving %s", job.key)
                if not job.done_event.is_set():
                    self._end(job, TaskFailed(f"{job.key}: internal error in the backend"))

    def _execute(self, job: _Job, slot: _Slot) -> None:
        lock = KeyLock(self.locks_dir, job.key)
        try:
            waited = lock.acquire(check=lambda: self._waiting_for_lock(job))
            try:
                stored = self.store.get_json(job.key)
                if stored is not None:
                    self._resolve(job, stored, "joined" if waited else "hit")
                    return
                self._count("computations")
                job.stage = ""

                def report(fraction: float, stage: str) -> None:
                    job.progress = fraction
                    if stage:
                        job.stage = stage

                result = slot.compute(job, report, job.cancel_event.is_set)
                text = self._serialise(job, result)
                self._store(job, text)
            finally:
                lock.release()
        except Exception as exc:
            err = classify(exc, job.kind, job.key)
            if err is not exc:
                err.__cause__ = exc
            if isinstance(err, OutOfMemory) and slot.process is None:
                free_memory()
            self._end(job, err)
            return
        self._resolve(job, text, "computed")

    def _waiting_for_lock(self, job: _Job) -> None:
        job.stage = "waiting for the same computation in another process"
        if job.cancel_event.is_set():
            raise Cancelled("cancelled while waiting for another process")

    def _serialise(self, job: _Job, result: Any) -> str:
        if not isinstance(result, dict):
            raise TaskFailed(f"task {job.kind} returned {type(result).__name__}, expected a dict")
        if not job.params.get("keep_gram"):
            result = strip_fields(result, job.spec.big_fields)
        try:
            return canonical_json(result)
        except (TypeError, ValueError) as exc:
            raise TaskFailed(f"task {job.kind} returned a result that is not JSON: {exc}") from exc

    def _store(self, job: _Job, text: str) -> None:
        """Store a result; a failure is a warning on the result, never an error for the
        requester (the result itself is fine)."""
        try:
            if not self.store.put(job.key, job.kind, text):
                job.warnings.append("result too large for the cache size limit; not stored")
        except DiskFull as exc:
            self._count("disk_full")
            log.error("%s", exc)
            job.warnings.append(str(exc))
        except Exception as exc:
            log.exception("could not store %s", job.key)
            job.warnings.append(f"result not stored ({type(exc).__name__}: {exc})")

    def _resolve(self, job: _Job, text: str, outcome: str) -> None:
        """Mark ``job`` done with result ``text`` obtained as ``outcome``."""
        with self._cond:
            job.result_json = text
            job.outcome = outcome
            job.state = "done"
            job.progress = 1.0
            job.message = "; ".join(job.warnings)
            if outcome != "computed":
                self._stats[outcome] += 1
            if self._jobs.get(job.key) is job:
                del self._jobs[job.key]
        job.done_event.set()

    def _end(self, job: _Job, err: BackendError) -> None:
        """Mark ``job`` failed (or cancelled) with ``err``."""
        cancelled = isinstance(err, Cancelled)
        if cancelled:
            log.info("%s: %s", job.key, err)
        elif type(err) is TaskFailed and err.__cause__ is not None:
            # An unexpected error in task code: whoever reads the server log needs the traceback.
            log.error("%s failed: %s", job.key, err, exc_info=err.__cause__)
        else:
            log.warning("%s failed: %s", job.key, err)
        with self._cond:
            job.error = err
            job.state = "cancelled" if cancelled else "failed"
            job.message = str(err)
            self._stats["cancelled" if cancelled else "failed"] += 1
            if self._jobs.get(job.key) is job:
                del self._jobs[job.key]
        job.done_event.set()


def _worker_devices(device: str | None, cpu_workers: int) -> list[str]:
    """One worker slot per CUDA device asked for, else ``cpu_workers`` CPU slots."""
    if device == "cpu":
        return ["cpu"] * cpu_workers
    import torch  # only here: a CPU-only backend never needs it

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return ["cpu"] * cpu_workers
    from reprog_core.runtime import resolve_device

    dev = resolve_device(device)
    if dev.type == "cpu":
        return ["cpu"] * cpu_workers
    if dev.index is None:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [f"cuda:{dev.index}"]


_default: Backend | None = None
_default_lock = threading.Lock()


def current_backend() -> Backend | None:
    """The process-wide backend if one is running (never creates one): a task can read a stored
    stage of another task through it (e.g. the explore task reuses a stored kernel)."""
    with _default_lock:
        return _default if _default is not None and not _default._closed else None


def default_backend() -> Backend:
    """The process-wide backend (created on first call from the environment; thread-safe)."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = Backend.from_env()
        return _default
