"""The task registry: what the backend knows how to compute, and the ``Progress`` a task reports to.

A task is a plain function ``fn(cfg, params, progress) -> dict`` returning a JSON-safe dict. The
real tasks ('source', 'fit', 'ntk', 'explore', ...) are registered by ``reprog_core.pipeline``,
which the backend imports lazily (``ensure_pipeline_tasks``) so that this package never depends on
the model code, and a worker process started fresh knows the same tasks as the server.

A task calls ``progress.update(fraction, stage)`` now and then; that also raises ``Cancelled``
when the request was cancelled, so a task that reports progress is cancellable for free.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from reprog_core.backend.errors import Cancelled, OverBudget, UnknownTask
from reprog_core.config import ExperimentConfig

log = logging.getLogger("reprog_core.backend")

PIPELINE_MODULE = "reprog_core.pipeline"


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


@dataclass(frozen=True)
class TaskSpec:
    """A registered task kind.

    ``limits``: the ``Limits`` fields that apply to it (None: all). ``big_fields``: result keys
    (at any depth) holding big arrays, stored only when the request's params say ``keep_gram``.
    """

    kind: str
    fn: TaskFn
    limits: frozenset[str] | None = None
    big_fields: tuple[str, ...] = ("gram",)

    @property
    def ref(self) -> tuple[str, str]:
        """(module, qualname) of ``fn``, so a worker process can import it."""
        return self.fn.__module__, self.fn.__qualname__


REGISTRY: dict[str, TaskSpec] = {}
_registry_lock = threading.Lock()
_pipeline_state: dict[str, Any] = {"done": False, "error": None}
_pipeline_lock = threading.RLock()  # re-entrant: the import may ask for the registry again


def register_task(
    kind: str,
    fn: TaskFn | None = None,
    *,
    limits: Iterable[str] | None = None,
    big_fields: Iterable[str] = ("gram",),
) -> Any:
    """Register ``fn`` under ``kind`` (replacing an earlier one). Usable as a decorator:
    ``@register_task('ntk')``. Returns ``fn``."""

    def add(f: TaskFn) -> TaskFn:
        if not kind or not isinstance(kind, str):
            raise ValueError(f"task kind must be a non-empty string, got {kind!r}")
        spec = TaskSpec(kind, f, None if limits is None else frozenset(limits), tuple(big_fields))
        with _registry_lock:
            REGISTRY[kind] = spec
        return f

    return add if fn is None else add(fn)


def list_tasks() -> list[str]:
    """Registered task kinds (after importing the pipeline, if it exists)."""
    ensure_pipeline_tasks()
    return sorted(REGISTRY)


def ensure_pipeline_tasks() -> None:
    """Import ``reprog_core.pipeline`` once, if it exists, and call its ``register_tasks()``.

    A failing import is logged, not raised: the backend still serves the kinds it knows, and
    asking for a missing kind reports the import error (``get_task``).
    """
    if _pipeline_state["done"]:
        return
    # Held for the whole import: a concurrent caller must wait until the pipeline's kinds are
    # registered, not find 'done' set and an empty registry (seen under load).
    with _pipeline_lock:
        if _pipeline_state["done"]:
            return
        try:
            if importlib.util.find_spec(PIPELINE_MODULE) is not None:
                module = importlib.import_module(PIPELINE_MODULE)
                # The pipeline may register at import, or offer register_tasks(); either works.
                if callable(getattr(module, "register_tasks", None)):
                    module.register_tasks()
        except Exception as exc:  # a broken pipeline must not take the backend down
            _pipeline_state["error"] = f"{type(exc).__name__}: {exc}"
            log.exception("could not import %s; its tasks are unavailable", PIPELINE_MODULE)
        finally:
            _pipeline_state["done"] = True


def get_task(kind: str) -> TaskSpec:
    """The spec registered under ``kind``; ``UnknownTask`` (listing the known kinds) otherwise."""
    ensure_pipeline_tasks()
    spec = REGISTRY.get(kind)
    if spec is None:
        why = _pipeline_state["error"]
        hint = f" ({PIPELINE_MODULE} failed to import: {why})" if why else ""
        raise UnknownTask(f"unknown task kind {kind!r}; registered: {sorted(REGISTRY)}{hint}")
    return spec


def resolve_task(kind: str, module: str, qualname: str) -> TaskSpec:
    """Find task ``kind`` in a fresh worker process: import the module that defined it.

    Importing the module usually registers the task (pipeline, test modules); otherwise the
    function is looked up by its qualified name.
    """
    ensure_pipeline_tasks()
    spec = REGISTRY.get(kind)
    if spec is not None and spec.ref == (module, qualname):
        return spec
    if module == "__main__":
        raise UnknownTask(
            f"task {kind!r} is defined in a __main__ script; define it in an importable module "
            f"to run it in a worker process"
        )
    mod = importlib.import_module(module)
    spec = REGISTRY.get(kind)
    if spec is not None and spec.ref == (module, qualname):
        return spec
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise UnknownTask(f"task {kind!r}: {module}.{qualname} not found in the worker process")
    register_task(kind, obj)
    return REGISTRY[kind]


# --------------------------------------------------------------------------- built-in tasks
MAX_SLEEP_S = 60.0


def sleep_task(cfg: ExperimentConfig, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """A synthetic task for load tests: sleeps ``params['seconds']`` (default 0.2) in small,
    cancellable steps and returns a small record of what it was asked."""
    seconds = float(params.get("seconds", 0.2))
    if not 0 <= seconds <= MAX_SLEEP_S:
        raise OverBudget(f"sleep: seconds must be between 0 and {MAX_SLEEP_S}, got {seconds}")
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        progress.update(elapsed / seconds if seconds else 1.0, "sleeping")
        time.sleep(min(0.02, seconds - elapsed))
    progress.update(1.0, "done")
    return {
        "task": "sleep",
        "seconds": seconds,
        "depth": cfg.depth,
        "transform": cfg.transform,
        "seed": cfg.seed,
    }


register_task("sleep", sleep_task, limits=())
