"""What a backend computes: task functions, their specs, and the ``Progress`` a task reports to.

A task is a plain function ``fn(cfg, params, progress) -> dict`` returning a JSON-safe dict. The
backend knows no task by name: whoever creates a ``Backend`` hands it its tasks
(``Backend(tasks={...})``; the pipeline's come from ``reprog_core.serving``; the load test's
synthetic one from ``bench/load_backend.py``). A worker process gets each task function pickled
with its job, so task functions must be picklable: module-level functions (pickled by
reference), or instances of module-level classes holding them.

A task may declare the stored results it is built from (``TaskSpec.inputs``): the backend looks
each up, or computes and stores it first, and hands them to the task in ``params['inputs']``;
the task's own entry then refers to them instead of holding a second copy (``saving.py``).

A task calls ``progress.update(fraction, stage)`` now and then; that also raises ``Cancelled``
when the request was cancelled, so a task that reports progress is cancellable for free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from reprog_core.backend.errors import Cancelled, UnknownTask
from reprog_core.config import ExperimentConfig


class Progress:
    """Handed to every task: report progress, and find out whether to stop.

    ``device`` is the device this worker serves ('cpu', 'cuda:0', ...); a task should compute
    there. ``scaled(lo, hi)`` gives a child whose [0, 1] maps onto [lo, hi] of this one, for a
    task that runs sub-steps (train the source, then fit, then the kernel).
    """

    def __init__(
        self,
        report: Callable[[float, str], None] | None = None,
        is_cancelled: Callable[[], bool] | None = None,
        device: str = "cpu",
        span: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        self._report = report or (lambda fraction, stage: None)
        self._is_cancelled = is_cancelled or (lambda: False)
        self.device = device
        self._lo, self._hi = span

    @property
    def cancelled(self) -> bool:
        return bool(self._is_cancelled())

    def check_cancelled(self) -> None:
        """Raise ``Cancelled`` if this request was cancelled; call it between units of work."""
        if self._is_cancelled():
            raise Cancelled("cancelled while computing")

    def update(self, fraction: float, stage: str = "") -> None:
        """Report ``fraction`` (0..1) done; ``stage`` ('' keeps the last one) says what is running.

        Raises ``Cancelled`` if the request was cancelled.
        """
        self.check_cancelled()
        fraction = min(max(float(fraction), 0.0), 1.0)
        self._report(self._lo + (self._hi - self._lo) * fraction, stage)

    def scaled(self, lo: float, hi: float) -> Progress:
        """A child progress for a sub-step covering [lo, hi] of this one's range."""
        width = self._hi - self._lo
        return Progress(
            self._report,
            self._is_cancelled,
            self.device,
            (self._lo + width * lo, self._lo + width * hi),
        )


class TaskFn(Protocol):
    def __call__(
        self, cfg: ExperimentConfig, params: dict[str, Any], progress: Progress
    ) -> dict[str, Any]: ...


# name -> (task kind, config, params): the stored results a task is built from.
Inputs = dict[str, tuple[str, ExperimentConfig, dict[str, Any]]]


@dataclass(frozen=True)
class TaskSpec:
    """A task kind a backend serves.

    ``limits``: the ``Limits`` fields that apply to it (None: all). ``big_fields``: result keys
    (at any depth) holding big arrays, stored only when the request's params say ``keep_gram``.
    ``inputs(cfg, params)``: the results this task is built from (name -> request). Each is
    served first (from the store, or computed and stored under its own key) and handed to the
    task as ``params['inputs'][name]`` (its stored dict); a result key of the same name is then
    stored as a reference to that entry, not as a copy.
    """

    kind: str
    fn: TaskFn
    limits: frozenset[str] | None = None
    big_fields: tuple[str, ...] = ("gram",)
    inputs: Callable[[ExperimentConfig, dict[str, Any]], Inputs] | None = None


def task_table(tasks: Mapping[str, TaskFn | TaskSpec] | None = None) -> dict[str, TaskSpec]:
    """The kinds a backend serves: ``tasks`` (kind -> function or spec; a bare function is
    subject to every limit and strips ``'gram'`` fields)."""
    table: dict[str, TaskSpec] = {}
    for kind, task in (tasks or {}).items():
        table[kind] = task if isinstance(task, TaskSpec) else TaskSpec(kind, task)
    return table


def find_task(table: Mapping[str, TaskSpec], kind: str) -> TaskSpec:
    """The spec of ``kind`` in ``table``; ``UnknownTask`` (listing the known kinds) otherwise."""
    spec = table.get(kind)
    if spec is None:
        raise UnknownTask(f"unknown task kind {kind!r}; registered: {sorted(table)}")
    return spec
