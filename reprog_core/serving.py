"""The backend serving the pipeline: the one place the backend is handed its tasks.

The backend (``reprog_core.backend``) knows no task by name, and the pipeline knows of the backend
only the one running (``current_backend``, to reuse a stored kernel). This module joins them:
``default_backend()`` is the process-wide backend computing the pipeline's ``TASKS``, and
``get_task(kind)`` the spec of one of them (its limits, e.g. to check a sweep before anything
runs).
"""

from __future__ import annotations

from reprog_core.backend.service import Backend, shared_backend
from reprog_core.backend.tasks import TaskSpec, find_task, task_table
from reprog_core.pipeline import TASKS


def default_backend() -> Backend:
    """The process-wide backend (created on first call from the environment; thread-safe),
    serving the pipeline's tasks."""
    return shared_backend(TASKS)


def get_task(kind: str) -> TaskSpec:
    """The spec of a pipeline (or built-in) task ``kind``; ``UnknownTask`` otherwise."""
    return find_task(task_table(TASKS), kind)
