"""The jobs of a backend: one computation per key, shared by everyone who asked for it.

A ``Job`` is one computation of one result key. The ``JobTable`` holds the backend's shared state
under one condition variable: the queue (first in, first out), the live (queued or running) job of
each key, so that an identical request joins it, and the counters ``Backend.stats`` reports. It
also applies the orphan policy: what happens to a job when its last requester leaves ('finish' it
and store the result, or 'cancel' it). Worker threads wait on the table for the next job.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from reprog_core.backend.errors import BackendError, Cancelled, TaskFailed
from reprog_core.backend.tasks import TaskSpec
from reprog_core.config import ExperimentConfig

log = logging.getLogger("reprog_core.backend")

STATES = ("queued", "running", "done", "failed", "cancelled")
CACHE_OUTCOMES = ("computed", "joined", "hit")
ORPHAN_POLICIES = ("finish", "cancel")
STAT_NAMES = (
    "submitted",
    "hit",
    "joined",
    "computations",
    "failed",
    "cancelled",
    "over_budget",
    "disk_full",
)


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


class Job:
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

    def report(self, fraction: float, stage: str) -> None:
        """Progress from the running task ('' keeps the last stage)."""
        self.progress = fraction
        if stage:
            self.stage = stage


class JobTable:
    """The queue and the live jobs of one backend, their counters, and the orphan policy."""

    def __init__(self, orphan_policy: str = "finish") -> None:
        if orphan_policy not in ORPHAN_POLICIES:
            raise ValueError(
                f"orphan_policy must be one of {ORPHAN_POLICIES}, got {orphan_policy!r}"
            )
        self.orphan_policy = orphan_policy
        self.closed = False
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[Job] = []
        self._live: dict[str, Job] = {}  # key -> the queued or running job
        self._stats: Counter[str] = Counter()
        # Handles dropped by garbage collection land here (SimpleQueue.put is safe to call from a
        # finalizer, which may run while this thread holds self._cond); a reaper thread acts.
        self.released: queue.SimpleQueue[Job | None] = queue.SimpleQueue()

    # ------------------------------------------------------------------ requests
    def count(self, name: str, n: int = 1) -> None:
        with self._cond:
            self._stats[name] += n

    def enqueue_or_join(
        self, spec: TaskSpec, key: str, cfg: ExperimentConfig, params: dict[str, Any]
    ) -> tuple[Job, bool]:
        """The live job of ``key`` with one more requester (joined: True), else a new queued
        one (joined: False). A job being cancelled is not joined: the new one waits for its key
        lock, then computes."""
        with self._cond:
            job = self._live.get(key)
            if job is not None and not job.cancel_event.is_set():
                job.requesters += 1
                self._stats["joined"] += 1
                return job, True
            job = Job(spec, key, cfg, params)
            job.requesters = 1
            self._live[key] = job
            self._queue.append(job)
            self._cond.notify()
        return job, False

    def next_job(self) -> Job | None:
        """Block until a job is queued, mark it running and return it; None once closed."""
        with self._cond:
            while not self._queue and not self.closed:
                self._cond.wait()
            if self.closed:
                return None
            job = self._queue.pop(0)
            job.state = "running"
            job.stage = "starting"
        return job

    def status(self, job: Job) -> JobStatus:
        with self._cond:
            position = self._queue.index(job) + 1 if job.state == "queued" else None
            return JobStatus(job.state, position, job.progress, job.stage, job.message)

    def stats(self) -> dict[str, int]:
        with self._cond:
            out = {name: self._stats[name] for name in STAT_NAMES}
            out["queued"] = len(self._queue)
            out["running"] = sum(j.state == "running" for j in self._live.values())
        return out

    # ------------------------------------------------------------------ requesters leaving
    def reap(self) -> None:
        """Act on dropped handles until ``close`` (the reaper thread's loop)."""
        while (job := self.released.get()) is not None:
            self.release(job)

    def release(self, job: Job) -> None:
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
            self.end(job, Cancelled("cancelled: every requester left"))
        # A running job sees cancel_event at its next progress.update / check_cancelled.

    # ------------------------------------------------------------------ endings
    def resolve(self, job: Job, text: str, outcome: str) -> None:
        """Mark ``job`` done with result ``text`` obtained as ``outcome``."""
        with self._cond:
            job.result_json = text
            job.outcome = outcome
            job.state = "done"
            job.progress = 1.0
            job.message = "; ".join(job.warnings)
            if outcome != "computed":
                self._stats[outcome] += 1
            if self._live.get(job.key) is job:
                del self._live[job.key]
        job.done_event.set()

    def end(self, job: Job, err: BackendError) -> None:
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
            if self._live.get(job.key) is job:
                del self._live[job.key]
        job.done_event.set()

    def close(self) -> bool:
        """Cancel queued jobs, ask running ones to stop, wake every waiting thread and stop the
        reaper. Returns False if the table was closed already."""
        with self._cond:
            if self.closed:
                return False
            self.closed = True
            pending, self._queue = self._queue, []
            for job in self._live.values():
                job.cancel_event.set()
            self._cond.notify_all()
        for job in pending:
            self.end(job, Cancelled("the backend was closed"))
        self.released.put(None)
        return True
