"""Tasks in a separate worker process, so that a crash or an OOM kill cannot take the server down.

With ``Backend(isolation='process')`` each worker slot owns one long-lived child process: a fresh
``python -c 'from reprog_core.backend.worker import main; main()'`` joined to the server by a
socket pair. Not a fork, so no CUDA state or held lock is inherited; and not multiprocessing's
'spawn', which re-imports the server's ``__main__`` (a Streamlit script, an unguarded script)
in the child. The child gets the server's ``sys.path`` so it can import the module that defined
each task. The slot sends one job at a time; the child runs it and sends back progress messages
and then the result or a classified error. The child is the only place the task runs; the server
process keeps the per-key lock and writes the store, so a child killed mid-job leaves nothing
behind, and the slot starts a fresh child for its next job. The child knows no task of its own:
each job carries its task function, pickled (by reference: the child imports the module that
defines it).

Messages, parent -> child: ``("run", kind, key, task, cfg, params)`` (``task``: the pickled task
function), ``("cancel",)``,
``("stop",)``; child -> parent: ``("progress", fraction, stage)``, ``("done", result)``,
``("error", error_class_name, message)``.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from reprog_core.backend.errors import (
    ERRORS,
    Cancelled,
    OutOfMemory,
    UnknownTask,
    WorkerCrashed,
    classify,
)
from reprog_core.backend.tasks import Progress, TaskFn, TaskSpec
from reprog_core.config import ExperimentConfig
from reprog_core.runtime import pin_threads

log = logging.getLogger("reprog_core.backend")

_PROGRESS_EVERY_S = 0.05  # throttle: a task may call update() in a tight loop


class WorkerProcess:
    """Server side of one worker slot's child process (started on first use, restarted after a
    crash)."""

    def __init__(self, device: str, cancel_grace_s: float = 10.0) -> None:
        self.device = device
        self.cancel_grace_s = cancel_grace_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._alive() else None

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _ensure_started(self) -> Connection:
        if self._alive() and self._conn is not None:
            return self._conn
        self._discard()
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        fd = theirs.fileno()
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD_MAIN, str(fd), self.device],
            pass_fds=(fd,),
            env=env,
            close_fds=True,
        )
        theirs.close()
        # The child exits when this socket closes, i.e. when the server exits or is killed.
        self._proc, self._conn = proc, Connection(ours.detach())
        log.info("started worker process %d for %s", proc.pid, self.device)
        return self._conn

    def run(
        self,
        spec: TaskSpec,
        key: str,
        cfg: ExperimentConfig,
        params: dict[str, Any],
        on_progress: Callable[[float, str], None],
        is_cancelled: Callable[[], bool],
    ) -> dict[str, Any]:
        """Run one job in the child and return its result; raises the classified error, or
        ``WorkerCrashed`` if the child dies, or ``Cancelled`` (killing the child if it does not
        stop within ``cancel_grace_s``)."""
        task = _pickled_task(spec)
        conn = self._ensure_started()
        assert self._proc is not None
        pid = self._proc.pid
        try:
            conn.send(("run", spec.kind, key, task, cfg, params))
        except (OSError, EOFError):
            self._crashed(spec.kind, pid)
        cancel_sent: float | None = None
        while True:
            if cancel_sent is None and is_cancelled():
                cancel_sent = time.monotonic()
                try:
                    conn.send(("cancel",))
                except (OSError, EOFError):
                    pass
            if cancel_sent is not None and time.monotonic() - cancel_sent > self.cancel_grace_s:
                log.warning(
                    "worker %s did not stop within %.0f s; killing it", pid, self.cancel_grace_s
                )
                self._discard()
                raise Cancelled("cancelled (the worker process was stopped)")
            try:
                if not conn.poll(0.05):
                    if not self._alive():
                        self._crashed(spec.kind, pid)
                    continue
                msg = conn.recv()
            except (EOFError, OSError):
                self._crashed(spec.kind, pid)
            if msg[0] == "progress":
                on_progress(msg[1], msg[2])
            elif msg[0] == "done":
                return msg[1]
            elif msg[0] == "error":
                raise ERRORS.get(msg[1], ERRORS["TaskFailed"])(msg[2])

    def _crashed(self, kind: str, pid: int) -> None:
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        self._discard()
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        raise WorkerCrashed(
            f"the worker process ({pid}) died ({how}) while computing {kind}; nothing was "
            f"stored, ask again to recompute"
        )

    def _discard(self) -> None:
        """Forget the child, stopping it if it still runs."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            try:
                proc.wait(timeout=5)  # reap it: no zombie
            except subprocess.TimeoutExpired:
                log.warning("worker process %d did not exit after kill", proc.pid)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Ask the child to exit, then make sure it has."""
        if self._conn is not None and self._proc is not None and self._alive():
            try:
                self._conn.send(("stop",))
                self._proc.wait(timeout=2)
            except (OSError, EOFError, subprocess.TimeoutExpired):
                pass
        self._discard()


def _pickled_task(spec: TaskSpec) -> bytes:
    """``spec.fn`` as the child receives it; ``UnknownTask`` if the child could not load it."""
    if getattr(spec.fn, "__module__", None) == "__main__":
        raise UnknownTask(
            f"task {spec.kind!r} is defined in a __main__ script; define it in an importable "
            f"module to run it in a worker process"
        )
    try:
        return pickle.dumps(spec.fn)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise UnknownTask(
            f"task {spec.kind!r} cannot be sent to a worker process ({exc}); make it a "
            f"module-level function"
        ) from exc


_CHILD_MAIN = "from reprog_core.backend.worker import main; main()"


def main() -> None:
    """Entry point of a worker process: ``argv = [-c, socket fd, device]``."""
    fd, device = int(sys.argv[1]), sys.argv[2]
    serve(Connection(fd), device)


def serve(conn: Connection, device: str) -> None:
    """Child process main loop: run jobs one by one until told to stop or the server is gone."""
    logging.basicConfig(level=logging.INFO, format="worker %(process)d: %(message)s")
    if os.environ.get("REPROG_THREADS"):
        pin_threads()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return  # the server went away: nothing left to serve
        if msg[0] == "stop":
            return
        if msg[0] != "run":
            continue  # a cancel that crossed with the previous job's result
        _run_one(conn, device, *msg[1:])


def _run_one(
    conn: Connection,
    device: str,
    kind: str,
    key: str,
    task: bytes,
    cfg: ExperimentConfig,
    params: dict[str, Any],
) -> None:
    state = {"cancelled": False, "stop": False, "sent": 0.0, "stage": ""}

    def is_cancelled() -> bool:
        while not state["cancelled"] and conn.poll():
            msg = conn.recv()
            if msg[0] in ("cancel", "stop"):
                state["cancelled"] = True
                state["stop"] = msg[0] == "stop"
        return state["cancelled"]

    def report(fraction: float, stage: str) -> None:
        now = time.monotonic()
        if stage and stage != state["stage"] or now - state["sent"] >= _PROGRESS_EVERY_S:
            state["sent"] = now
            state["stage"] = stage or state["stage"]
            conn.send(("progress", fraction, stage))

    try:
        fn = _load_task(kind, task)
        result = fn(cfg, params, Progress(report, is_cancelled, device))
        conn.send(("done", result))
    except (EOFError, BrokenPipeError):
        sys.exit(0)  # the server went away mid-job
    except Exception as exc:
        err = classify(exc, kind, key)
        if not isinstance(err, Cancelled):
            log.error("%s failed: %s", key, err, exc_info=not isinstance(err, OutOfMemory))
        if isinstance(err, OutOfMemory):
            free_memory()
        conn.send(("error", type(err).__name__, str(err)))
    if state["stop"]:
        sys.exit(0)


def _load_task(kind: str, task: bytes) -> TaskFn:
    try:
        return pickle.loads(task)
    except (ImportError, AttributeError) as exc:
        raise UnknownTask(f"task {kind!r} not found in the worker process ({exc})") from exc


def free_memory() -> None:
    """After an OOM, give cached allocator blocks back so the next job starts clean."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
