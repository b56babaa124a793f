"""The worker pool: slots that compute, and the threads that serve a backend's queue.

Worker slots: one per CUDA device (GPU work is serialised per device) or ``cpu_workers`` on a
CPU-only machine. A slot runs tasks in its own thread (``isolation='thread'``, the default) or in
a child process it owns (``isolation='process'``, see ``worker.py``), so that a crash or an OOM
kill costs one request, not the server. Threads start on the first request that needs them.

Serving one job: take the key's file lock (``locks.py``) and look in the store again, since
another process may have computed it meanwhile (``'joined'`` if we waited for its lock, ``'hit'``
if not). Only then does the task run (``'computed'``), and its result is stored, in one write,
before the lock is released. A task built from other results (``TaskSpec.inputs``) gets them
first, each served the same way under its own key's lock (so a page that asked for the kernel
and the experiment at once computes the kernel once), and its entry refers to them.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reprog_core.backend.errors import Cancelled, OutOfMemory, TaskFailed, classify
from reprog_core.backend.jobs import Job, JobTable
from reprog_core.backend.locks import KeyLock
from reprog_core.backend.saving import load, save, serialise
from reprog_core.backend.store import Store
from reprog_core.backend.tasks import Progress, TaskSpec, find_task
from reprog_core.backend.worker import WorkerProcess, free_memory
from reprog_core.runtime import resolve_device

log = logging.getLogger("reprog_core.backend")
# The share of a task's progress bar its inputs take, when they must be computed first.
INPUTS_SHARE = 0.4

ISOLATIONS = ("thread", "process")


def worker_devices(device: str | None, cpu_workers: int) -> list[str]:
    """One worker slot per CUDA device asked for, else ``cpu_workers`` CPU slots."""
    if device == "cpu":
        return ["cpu"] * cpu_workers
    import torch  # only here: a CPU-only backend never needs it

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return ["cpu"] * cpu_workers
    dev = resolve_device(device)
    if dev.type == "cpu":
        return ["cpu"] * cpu_workers
    if dev.index is None:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [f"cuda:{dev.index}"]


class Slot:
    """One worker: a device and (with process isolation) the child process that computes."""

    def __init__(self, device: str, isolation: str, cancel_grace_s: float) -> None:
        self.device = device
        self.process = WorkerProcess(device, cancel_grace_s) if isolation == "process" else None

    def compute(
        self,
        job: Job,
        report: Callable[[float, str], None],
        is_cancelled: Callable[[], bool],
        inputs: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        params = copy.deepcopy(job.params)  # the task must not change the params we keyed on
        if inputs:
            params["inputs"] = inputs  # after keying: the key is the request's, not its inputs'
        if self.process is not None:
            return self.process.run(job.spec, job.key, job.cfg, params, report, is_cancelled)
        progress = Progress(report, is_cancelled, self.device)
        return job.spec.fn(job.cfg, params, progress)

    def close(self) -> None:
        if self.process is not None:
            self.process.close()


class WorkerPool:
    """The slots of one backend and their threads (plus the reaper of dropped handles), serving
    the jobs of ``table`` into ``store``; key locks live in ``locks_dir``."""

    def __init__(
        self,
        devices: list[str],
        isolation: str,
        cancel_grace_s: float,
        table: JobTable,
        store: Store,
        locks_dir: Path,
        specs: Mapping[str, TaskSpec] | None = None,
    ) -> None:
        self.specs = specs or {}  # the task kinds, for the inputs a task asks for
        self.devices = devices
        self.isolation = isolation
        self.cancel_grace_s = cancel_grace_s
        self.table = table
        self.store = store
        self.locks_dir = locks_dir
        self._slots: list[Slot] = []
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()

    def start(self) -> None:
        """Start the worker threads and the reaper, once."""
        with self._start_lock:
            if self._threads:
                return
            for i, device in enumerate(self.devices):
                slot = Slot(device, self.isolation, self.cancel_grace_s)
                self._slots.append(slot)
                # Daemon: a stuck task must not keep the interpreter alive at exit.
                self._spawn(self._loop, f"reprog-backend-{device}-{i}", slot)
            self._spawn(self.table.reap, "reprog-backend-reaper")

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def pids(self) -> list[int]:
        """Process ids of live worker processes (``isolation='process'`` only)."""
        return [s.process.pid for s in self._slots if s.process and s.process.pid]

    def close(self, timeout: float) -> None:
        """Wait up to ``timeout`` s per thread (the table is closed first), stop the children."""
        for thread in self._threads:
            thread.join(timeout)
        for slot in self._slots:
            slot.close()

    def _loop(self, slot: Slot) -> None:
        while (job := self.table.next_job()) is not None:
            try:
                self._serve(job, slot)
            except BaseException:  # never let one job kill the worker thread
                log.exception("unexpected error while serving %s", job.key)
                if not job.done_event.is_set():
                    self.table.end(job, TaskFailed(f"{job.key}: internal error in the backend"))

    def _serve(self, job: Job, slot: Slot) -> None:
        lock = KeyLock(self.locks_dir, job.key)
        try:
            waited = lock.acquire(check=lambda: _waiting_for_lock(job))
            try:
                stored = load(self.store, job.key)
                if stored is not None:
                    self.table.resolve(job, stored, "joined" if waited else "hit")
                    return
                inputs = self._inputs(job, slot)
                self.table.count("computations")
                job.stage = ""
                report = job.report
                if inputs:
                    lo = INPUTS_SHARE
                    report = lambda f, stage: job.report(lo + (1 - lo) * f, stage)  # noqa: E731
                parts = {name: part for name, (_, part) in inputs.items()}
                result = slot.compute(job, report, job.cancel_event.is_set, parts)
                refs = {name: key for name, (key, _) in inputs.items()}
                text = serialise(job.spec, job.params, result)
                stored_text = serialise(job.spec, job.params, result, refs) if refs else text
                job.warnings += save(self.store, job.key, job.kind, stored_text, self.table)
            finally:
                lock.release()
        except Exception as exc:
            err = classify(exc, job.kind, job.key)
            if err is not exc:
                err.__cause__ = exc
            if isinstance(err, OutOfMemory) and slot.process is None:
                free_memory()
            self.table.end(job, err)
            return
        self.table.resolve(job, text, "computed")

    def _inputs(self, job: Job, slot: Slot) -> dict[str, tuple[str, dict[str, Any]]]:
        """The results ``job``'s task is built from (name -> (key, stored dict)), each from the
        store or computed and stored first, under its key's lock, in this slot."""
        if job.spec.inputs is None:
            return {}
        needs = job.spec.inputs(job.cfg, job.params)
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        for i, (name, (kind, cfg, params)) in enumerate(needs.items()):
            dep = Job(find_task(self.specs, kind), cfg.key(kind, **params), cfg, params)
            lo, hi = INPUTS_SHARE * i / len(needs), INPUTS_SHARE * (i + 1) / len(needs)

            def report(f: float, stage: str, lo: float = lo, hi: float = hi) -> None:
                job.report(lo + (hi - lo) * f, stage)

            out[name] = (dep.key, json.loads(self._input(dep, slot, report, job)))
        return out

    def _input(self, dep: Job, slot: Slot, report: Callable[[float, str], None], job: Job) -> str:
        """The stored text of input ``dep`` of ``job``: read, or computed and stored."""
        lock = KeyLock(self.locks_dir, dep.key)
        lock.acquire(check=lambda: _waiting_for_lock(job))
        try:
            stored = load(self.store, dep.key)
            if stored is not None:
                return stored
            self.table.count("computations")
            result = slot.compute(dep, report, job.cancel_event.is_set)
            text = serialise(dep.spec, dep.params, result)
            job.warnings += save(self.store, dep.key, dep.kind, text, self.table)
            return text
        finally:
            lock.release()


def _waiting_for_lock(job: Job) -> None:
    job.stage = "waiting for the same computation in another process"
    if job.cancel_event.is_set():
        raise Cancelled("cancelled while waiting for another process")
