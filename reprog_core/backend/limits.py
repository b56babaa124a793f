"""Server-side caps, so that no URL can exhaust the machine.

``ExperimentConfig`` validation accepts anything a researcher might run by hand (n_kernel up to
100 000). A shared server needs tighter caps; they are checked before a request is queued, and an
over-limit request fails at once with ``OverBudget`` naming the limit and how to raise it.

Every cap is set, in order of precedence, by the ``Limits(...)`` constructor argument, by its
environment variable (read by ``Limits.from_env``), or by the default below.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from reprog_core.backend.errors import OverBudget
from reprog_core.config import ExperimentConfig

# limit field -> (environment variable, config field it caps or None, params names that override it)
_RULES: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "max_n_kernel": ("REPROG_MAX_N", "n_kernel", ("n_kernel", "n")),
    "max_steps": ("REPROG_MAX_STEPS", "steps", ("steps",)),
    "max_sweep_points": ("REPROG_MAX_SWEEP", None, ()),
    "max_source_per_class": ("REPROG_MAX_SOURCE_PER_CLASS", "source_per_class", ()),
    "max_target_per_class": ("REPROG_MAX_TARGET_PER_CLASS", "target_per_class", ()),
    "max_source_epochs": ("REPROG_MAX_EPOCHS", "source_epochs", ()),
    "max_width": ("REPROG_MAX_WIDTH", "width", ()),
    "max_batch_size": ("REPROG_MAX_BATCH", "batch_size", ("batch_size",)),
    "max_source_size": ("REPROG_MAX_SOURCE_SIZE", "source_size", ()),
    "max_target_size": ("REPROG_MAX_TARGET_SIZE", "target_size", ()),
}


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what one request may ask for (inclusive)."""

    max_n_kernel: int = 2048  # kernel samples N; an N x N float64 Gram is 32 MB at 2048
    max_steps: int = 5000  # reprogramming fit steps
    max_sweep_points: int = 72  # configs in one sweep / explore grid
    max_source_per_class: int = 2000  # source training images per class
    max_target_per_class: int = 2000  # target training images per class
    max_source_epochs: int = 50
    max_width: int = 1024
    max_batch_size: int = 1024
    # Image sides s and t: memory grows as s^2 (activations) and, for fc, as s^2 t^2 (its matrix).
    # The memory budget (reprog_core.memory) still refuses a combination inside the caps.
    max_source_size: int = 128
    max_target_size: int = 128

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{f.name} must be a positive integer, got {value!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: int) -> Limits:
        """Defaults, overridden by environment variables (``REPROG_MAX_N`` ...), then by
        ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, int] = {}
        for name, (var, _, _) in _RULES.items():
            raw = env.get(var)
            if raw not in (None, ""):
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise ValueError(f"{var} must be an integer, got {raw!r}") from None
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: int) -> Limits:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def check(
        self,
        cfg: ExperimentConfig,
        params: Mapping[str, Any] | None = None,
        only: Iterable[str] | None = None,
    ) -> None:
        """Raise ``OverBudget`` if ``cfg``/``params`` exceed a limit.

        ``only`` names the limit fields that apply (a task that trains no source model need not
        be refused for a large ``source_per_class``); None means all of them.
        """
        params = params or {}
        applicable = set(_RULES) if only is None else set(only)
        for name, (var, cfg_field, param_names) in _RULES.items():
            if name not in applicable:
                continue
            limit = getattr(self, name)
            if name == "max_sweep_points":
                asked, what = sweep_points(params), "sweep points"
            else:
                asked, what = _asked(cfg, params, cfg_field, param_names)
            if asked is not None and asked > limit:
                raise OverBudget(
                    f"{what}={asked} is over the server limit {name}={limit}. Ask for less, or "
                    f"raise the limit: set {var}=<n> in the server's environment (or pass "
                    f"Limits({name}=...) to the Backend)."
                )


def sweep_points(params: Mapping[str, Any]) -> int | None:
    """How many configs a request sweeps: ``len(params['points'])``, ``params['n_points']``, or
    the product of the value-list lengths in ``params['grid']``; None when it is no sweep."""
    if isinstance(params.get("points"), (list, tuple)):
        return len(params["points"])
    if isinstance(params.get("n_points"), int):
        return int(params["n_points"])
    grid = params.get("grid")
    if isinstance(grid, Mapping):
        sizes = [len(v) if isinstance(v, (list, tuple)) else 1 for v in grid.values()]
        return math.prod(sizes) if sizes else None
    return None


def _asked(
    cfg: ExperimentConfig, params: Mapping[str, Any], cfg_field: str | None, names: tuple[str, ...]
) -> tuple[int | None, str]:
    """The largest value the request asks for under one limit, and the name to report it by."""
    best: tuple[int | None, str] = (None, cfg_field or "")
    if cfg_field is not None:
        best = (int(getattr(cfg, cfg_field)), cfg_field)
    for p in names:
        value = params.get(p)
        if isinstance(value, int) and not isinstance(value, bool):
            if best[0] is None or value > best[0]:
                best = (value, p)
    return best
