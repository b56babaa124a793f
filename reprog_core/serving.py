"""The backend serving the pipeline: the one place the backend is handed its tasks.

The backend (``reprog_core.backend``) knows no task by name, and the pipeline does not know the
backend. This module joins them: ``TASKS`` are the pipeline's functions as backend tasks (with
the inputs an explore result is built from), ``default_backend()`` is the process-wide backend
computing them, and ``get_task(kind)`` the spec of one of them (its limits, e.g. to check a
sweep before anything runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reprog_core.backend.service import Backend, shared_backend
from reprog_core.backend.tasks import TaskSpec, find_task, task_table
from reprog_core.config import ExperimentConfig
from reprog_core.pipeline import explore_inputs, run_explore, run_fit, run_ntk, run_source
from reprog_core.results import KernelResult, Record, SourceResult


class _Task:
    """A pipeline function as a backend task ``(cfg, params, progress)``. A module-level class
    holding a module-level function: it pickles by reference, so a worker process gets it.

    ``inputs``: the record type of each input the backend hands the task (``TaskSpec.inputs``,
    stored dicts in ``params['inputs']``): parsed here, the task's side of the job boundary,
    and passed to the function as keyword arguments."""

    def __init__(
        self, fn: Callable[..., dict[str, Any]], inputs: dict[str, type[Record]] | None = None
    ) -> None:
        self.fn = fn
        self.inputs = inputs or {}

    def __call__(
        self, cfg: ExperimentConfig, params: dict[str, Any], progress: Any
    ) -> dict[str, Any]:
        def report(fraction: float, stage: str = "") -> None:
            progress.update(fraction, stage)
            progress.check_cancelled()

        params = dict(params)
        for name, stored in params.pop("inputs", {}).items():
            params[name] = self.inputs[name].from_dict(stored)
        device = params.pop("device", None) or getattr(progress, "device", None)
        return self.fn(cfg, report, device=str(device) if device is not None else None, **params)


# The pipeline's computations as the backend's task kinds.
TASKS: dict[str, TaskSpec] = {
    "source": TaskSpec("source", _Task(run_source)),
    "fit": TaskSpec("fit", _Task(run_fit)),
    "ntk": TaskSpec("ntk", _Task(run_ntk)),
    "explore": TaskSpec(
        "explore",
        _Task(run_explore, inputs={"kernel": KernelResult, "source": SourceResult}),
        inputs=explore_inputs,
    ),
}


def default_backend() -> Backend:
    """The process-wide backend (created on first call from the environment; thread-safe),
    serving the pipeline's tasks."""
    return shared_backend(TASKS)


def get_task(kind: str) -> TaskSpec:
    """The spec of a pipeline task ``kind``; ``UnknownTask`` otherwise."""
    return find_task(task_table(TASKS), kind)
