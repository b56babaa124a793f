"""A requester's handle on one request: its status, its result, and withdrawing it.

``Backend.submit`` returns a ``Handle`` at once. Several handles may share one job (identical
requests join); each requester's cancel or departure counts once toward the orphan policy of the
job's table (``jobs.py``).
"""

from __future__ import annotations

import json
import time
import weakref
from typing import Any

from reprog_core.backend.errors import Cancelled
from reprog_core.backend.jobs import Job, JobStatus, JobTable


class Handle:
    """A requester's view of one request; returned at once by ``Backend.submit``.

    Dropping every handle of a job (garbage collection) counts as its requesters leaving: the job
    is then cancelled or finished in the background, per the backend's ``orphan_policy``.
    """

    def __init__(self, table: JobTable, job: Job, joined: bool, track: bool = True) -> None:
        self.key = job.key
        self.kind = job.kind
        self._table = table
        self._job = job
        self._joined = joined
        self._cancelled = False
        # The finalizer must not reference self; it hands the job to the table's reaper.
        self._finalizer = weakref.finalize(self, table.released.put, job) if track else None

    @property
    def cache(self) -> str:
        """'computed', 'joined' or 'hit'. Final once the request is done (before that, a queued
        job reads 'computed'; it becomes 'joined' if another process computes it first)."""
        return "joined" if self._joined else self._job.outcome

    def status(self) -> JobStatus:
        if self._cancelled:
            job = self._job
            return JobStatus("cancelled", None, job.progress, job.stage, "cancelled by you")
        return self._table.status(self._job)

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
            self._table.release(self._job)
        return True

    def __repr__(self) -> str:
        return f"Handle({self.key!r}, {self.status().state}, cache={self.cache!r})"
