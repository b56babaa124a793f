"""Executors: how the points of a sweep get computed.

Both executors compute each point with ``reprog_core.pipeline.run_explore`` (source model, target
NTK and spectrum at θ_0, the reprogramming fit, the 'none' baseline) and end with the result in
the backend's cache under the point's ``'explore'`` key, the Explore page's. So a sweep
interrupted under either executor resumes where it stopped: stored points come back as
``cache='hit'`` and are not recomputed, and the pages show them at once.

* ``LocalExecutor`` (the default) asks the backend for one point at a time
  (``backend.run('explore', cfg)``): the backend dedups, caches and reports progress. One at a
  time, because on a CPU two points in parallel only share the same cores, and the points of one
  depth and seed share a source model that should be trained once.
* ``RayExecutor`` runs every point that is not stored yet as one Ray task (``num_gpus=1`` when the
  cluster has GPUs, so each GPU runs one point at a time) on a cluster (``address``) or a local Ray
  instance it starts. The task returns the result dict; the *driver* writes it into its own
  backend's store, so results land in the driver's cache whichever node computed them.
  Worker nodes need ``reprog_core`` importable (install the package there, or pass a Ray
  ``runtime_env``); source models they train are stored in each node's own cache directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reprog_core.backend import Backend, BackendError
from reprog_core.config import ExperimentConfig
from reprog_core.results import ExperimentRecord
from reprog_core.sweep.grid import SWEEP_TASK


@dataclass
class PointOutcome:
    """What happened to one grid point.

    ``cache``: 'computed' (computed now), 'joined' (another requester computed it meanwhile) or
    'hit' (stored already); None when it failed. ``executor``: who computed it ('local', 'ray').
    ``seconds``: the point's wall time as seen by the driver. ``result``: the explore result as its
    typed record (parsed here, where it leaves the backend), None on failure; ``error``: one
    line, None on success.
    """

    index: int
    config: ExperimentConfig
    key: str
    executor: str
    cache: str | None = None
    seconds: float = 0.0
    result: ExperimentRecord | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.result is not None

    def to_dict(self) -> dict[str, Any]:
        """The point as ``results.json`` lists it (without the big result)."""
        return {
            "index": self.index,
            "depth": self.config.depth,
            "transform": self.config.transform,
            "seed": self.config.seed,
            "key": self.key,
            "cache": self.cache,
            "executor": self.executor,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


# on_point(outcome, done, total) after each point; on_stage(index, fraction, stage) while one runs.
OnPoint = Callable[[PointOutcome, int, int], None]
OnStage = Callable[[int, float, str], None]


class Executor(Protocol):
    name: str

    def run(
        self,
        points: Sequence[ExperimentConfig],
        on_point: OnPoint | None = None,
        on_stage: OnStage | None = None,
        outcomes: list[PointOutcome] | None = None,
    ) -> list[PointOutcome]:
        """Compute ``points``; append each finished ``PointOutcome`` to ``outcomes`` as it
        finishes (so a caller interrupted mid-sweep still holds the finished ones) and return
        them in grid order."""
        ...


def _params(device: str | None) -> dict[str, Any]:
    # Only a device asked for explicitly becomes part of the key, as for the CLI's other commands.
    return {"device": device} if device else {}


# ------------------------------------------------------------------------------------ local
@dataclass
class LocalExecutor:
    """Each point through ``backend.run('explore', cfg)``, one after the other."""

    backend: Backend | None = None  # None: the process-wide default_backend()
    device: str | None = None
    name: str = field(default="local", init=False)

    def run(
        self,
        points: Sequence[ExperimentConfig],
        on_point: OnPoint | None = None,
        on_stage: OnStage | None = None,
        outcomes: list[PointOutcome] | None = None,
    ) -> list[PointOutcome]:
        backend = self.backend or _default_backend()
        params = _params(self.device)
        outcomes = outcomes if outcomes is not None else []
        for i, cfg in enumerate(points):
            out = PointOutcome(i, cfg, backend.key(SWEEP_TASK, cfg, params), self.name)
            t0 = time.perf_counter()

            def show(status: Any, i: int = i) -> None:
                if on_stage is not None:
                    on_stage(i, status.progress, status.stage or status.state)

            try:
                stored = backend.run(SWEEP_TASK, cfg, params, progress_cb=show)
                out.result = ExperimentRecord.from_dict(stored)
                out.cache = stored["cache"]
            except BackendError as exc:
                # One failing point (a diverged fit, an OOM) must not lose the rest of the sweep.
                out.error = f"{type(exc).__name__}: {exc}"
            out.seconds = time.perf_counter() - t0
            outcomes.append(out)
            if on_point is not None:
                on_point(out, len(outcomes), len(points))
        return sorted(outcomes, key=lambda o: o.index)


# -------------------------------------------------------------------------------------- ray
def _ray_compute_point(cfg_dict: dict[str, Any], device: str | None) -> dict[str, Any]:
    """The Ray task body: one explore result, computed on whichever node Ray chose.

    Module-level so that Ray pickles it by reference (the worker imports this module).
    """
    from reprog_core.pipeline import run_explore  # lazy: the pipeline imports torch

    cfg = ExperimentConfig.from_dict(cfg_dict)
    return run_explore(cfg, device=device)


def store_result(
    backend: Backend,
    cfg: ExperimentConfig,
    result: dict[str, Any],
    params: dict[str, Any] | None = None,
    kind: str = SWEEP_TASK,
) -> dict[str, Any]:
    """Write a point's result computed elsewhere into ``backend``'s store, exactly as the backend
    would have stored it (``Backend.put``); returns it as the backend returns results, with
    ``key`` (``cache`` is left to the caller). A failed write (disk full, over the size limit) is
    reported in ``warnings``: the result itself is fine."""
    return backend.put(kind, cfg, result, params)


@dataclass
class RayExecutor:
    """Each point not yet stored as one Ray task; results written to the driver's cache.

    ``address``: an existing cluster ('auto', 'ray://host:10001', ...); None connects to the Ray
    instance this process already started, else starts a local one (and stops it at the end).
    ``num_cpus``: CPUs each task asks for. GPUs: one per task whenever the cluster has any.
    """

    backend: Backend | None = None
    address: str | None = None
    device: str | None = None
    num_cpus: float = 1.0
    name: str = field(default="ray", init=False)

    def run(
        self,
        points: Sequence[ExperimentConfig],
        on_point: OnPoint | None = None,
        on_stage: OnStage | None = None,
        outcomes: list[PointOutcome] | None = None,
    ) -> list[PointOutcome]:
        ray = _import_ray()
        backend = self.backend or _default_backend()
        params = _params(self.device)
        outcomes = outcomes if outcomes is not None else []
        total = len(points)

        def finish(out: PointOutcome) -> None:
            outcomes.append(out)
            if on_point is not None:
                on_point(out, len(outcomes), total)

        # Stored points never reach the cluster: that is what makes a Ray sweep resumable.
        todo: list[tuple[int, ExperimentConfig]] = []
        for i, cfg in enumerate(points):
            stored = backend.get(SWEEP_TASK, cfg, params)
            if stored is not None:
                finish(PointOutcome(i, cfg, stored["key"], self.name, "hit", 0.0, stored))
            else:
                todo.append((i, cfg))
        if not todo:
            return sorted(outcomes, key=lambda o: o.index)

        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        try:
            resources = ray.cluster_resources()
            gpus = float(resources.get("GPU", 0.0))
            options = ray_task_options(resources, self.num_cpus)
            task = ray.remote(_ray_compute_point).options(**options)
            # On a GPU node the task picks the GPU Ray assigned it (CUDA_VISIBLE_DEVICES).
            device = self.device or ("cuda" if options["num_gpus"] else None)
            t0 = time.perf_counter()
            pending = {
                task.remote(cfg.to_dict(), device): (i, cfg, backend.key(SWEEP_TASK, cfg, params))
                for i, cfg in todo
            }
            if on_stage is not None:
                on_stage(todo[0][0], 0.0, f"{len(pending)} points queued on Ray ({gpus:g} GPUs)")
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                ref = done[0]
                i, cfg, key = pending.pop(ref)
                out = PointOutcome(i, cfg, key, self.name)
                try:
                    result = ray.get(ref)
                    out.result = ExperimentRecord.from_dict(
                        store_result(backend, cfg, result, params)
                    )
                    out.cache = "computed"
                except Exception as exc:  # noqa: BLE001 - a failed task is one failed point
                    out.error = _ray_error_line(exc)
                out.seconds = time.perf_counter() - t0  # tasks run in parallel: time to done
                finish(out)
        finally:
            if started_here:
                ray.shutdown()
        return sorted(outcomes, key=lambda o: o.index)


def _default_backend() -> Backend:
    """The process-wide backend serving the pipeline."""
    from reprog_core.serving import default_backend  # lazy: the pipeline imports torch

    return default_backend()


def ray_task_options(resources: dict[str, float], num_cpus: float = 1.0) -> dict[str, Any]:
    """Resources each point's Ray task asks for, given ``ray.cluster_resources()``: one GPU
    whenever the cluster has any (so each GPU runs one point at a time), else CPUs only."""
    return {
        "num_cpus": num_cpus,
        "num_gpus": 1 if float(resources.get("GPU", 0.0)) > 0 else 0,
        # A task whose worker died (node lost, OOM-killed) is retried once elsewhere.
        "max_retries": 1,
    }


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RuntimeError(
            "the Ray executor needs ray: pip install ray==2.60.0 (pinned in requirements.txt)"
        ) from None
    return ray


def _ray_error_line(exc: BaseException) -> str:
    """The task's own error in one line (Ray wraps it with a long remote traceback)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"
