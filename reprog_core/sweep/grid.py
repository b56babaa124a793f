"""Sweep grids: which experiment configs one sweep runs.

A grid is a base ``ExperimentConfig`` (the source/target pair, the source family and every other
knob) and three axes: source depths, input transformations and seeds. Its points are
``base.replace(depth=d, transform=t, seed=s)``, ordered seed-major (all depths and transforms of
the first seed, then the next seed), so that an interrupted sweep already holds whole depth curves.

Presets name a set of axes (``paper-depth``: depths 1..6 x {vp, fc, vp-fc} x seeds 0, 1, 2); the
``--depths`` / ``--transforms`` / ``--seeds`` flags override a preset's axes one by one, and without
a preset each axis defaults to the base config's single value.

Every grid is validated once, here: each point must be a valid ``ExperimentConfig`` and the grid
must fit the backend's limits (``Limits.max_sweep_points``, and the per-request caps for each
point). A grid that does not gets a ``SweepGridError`` (a ``ConfigError``: the CLI exits with 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reprog_core.backend import Limits, OverBudget
from reprog_core.backend.admin import WarmItem
from reprog_core.config import LIMITS, ConfigError, ExperimentConfig, TransformKind, int_ranges

# A grid point is one Explore experiment: the same task kind, so the same stored result, whether
# the Explore page, the Depth sweep page, a CLI sweep or the cache warm-up asked for it.
SWEEP_TASK = "explore"
MAX_AXIS_VALUES = 4096  # longest 'a-b' range accepted; the sweep-size limit is far below anyway


class SweepGridError(ConfigError):
    """A grid a person can fix: bad axis value, invalid point, or too many points."""


@dataclass(frozen=True)
class Preset:
    """Named axes of a sweep; the base config (pair, family, knobs) comes from the caller."""

    name: str
    description: str
    depths: tuple[int, ...]
    transforms: tuple[str, ...]
    seeds: tuple[int, ...] = ()  # () = the base config's seed


PRESETS: dict[str, Preset] = {
    "default": Preset(
        name="default",
        description="what ``cache warm`` computes before a class: the default pair at source "
        "depth 1..6 x {vp, fc, vp-fc}, the base config's seed",
        depths=(1, 2, 3, 4, 5, 6),
        transforms=(TransformKind.VP.value, TransformKind.FC.value, TransformKind.VP_FC.value),
    ),
    "paper-depth": Preset(
        name="paper-depth",
        description=(
            "the paper's depth experiment: source depth 1..6 x {vp, fc, vp-fc} x seeds 0, 1, 2 "
            "on the chosen source/target pair and source family"
        ),
        depths=(1, 2, 3, 4, 5, 6),
        transforms=(TransformKind.VP.value, TransformKind.FC.value, TransformKind.VP_FC.value),
        seeds=(0, 1, 2),
    ),
}


def list_presets() -> list[str]:
    return sorted(PRESETS)


@dataclass(frozen=True)
class SweepGrid:
    """A validated grid: ``base`` x ``depths`` x ``transforms`` x ``seeds``."""

    base: ExperimentConfig
    depths: tuple[int, ...]
    transforms: tuple[str, ...]
    seeds: tuple[int, ...]
    preset: str | None = None
    _points: tuple[ExperimentConfig, ...] = field(default=(), repr=False, compare=False)

    def points(self) -> list[ExperimentConfig]:
        """The configs, seed-major: for each seed, for each depth, for each transform."""
        if self._points:
            return list(self._points)
        return grid_points(self.base, self.depths, self.transforms, self.seeds)[0]

    def __len__(self) -> int:
        return len(self.depths) * len(self.transforms) * len(self.seeds)

    def describe(self) -> str:
        """'54 points (6 depths x 3 transforms x 3 seeds)'."""
        return (
            f"{len(self)} points ({len(self.depths)} depths x {len(self.transforms)} transforms "
            f"x {len(self.seeds)} seeds)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "depths": list(self.depths),
            "transforms": list(self.transforms),
            "seeds": list(self.seeds),
            "n_points": len(self),
        }


# ------------------------------------------------------------------------------ parsing
def parse_int_list(name: str, value: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``'1,2,3'`` or ``'1-6'`` (inclusive range) or a sequence of ints -> a tuple; None stays
    None. Duplicates and empty lists are errors (a duplicate would run one point twice)."""
    if value is None:
        return None
    if isinstance(value, str):
        if any(not p.strip() for p in value.split(",")):
            raise SweepGridError(f"--{name}: empty item in {value!r} (use e.g. 1,2,3 or 1-6)")
        try:
            items = int_ranges(value)
        except ValueError as exc:
            raise SweepGridError(f"--{name}: {exc}") from None
        out: list[int] = []
        for lo, hi in items:  # a negative value is refused by the range checks of build_grid
            if hi < lo:
                raise SweepGridError(f"--{name}: range {lo}-{hi} runs backwards")
            if hi - lo >= MAX_AXIS_VALUES:  # refuse before building a huge list, not after
                raise SweepGridError(
                    f"--{name}: range {lo}-{hi} has more than {MAX_AXIS_VALUES} values"
                )
            out.extend(range(lo, hi + 1))
    else:
        out = []
        for v in value:
            if not isinstance(v, int) or isinstance(v, bool):
                raise SweepGridError(f"{name}: {v!r} is not an integer")
            out.append(v)
    return _unique(name, out)


def parse_str_list(name: str, value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``'vp,fc'`` or a sequence of strings -> a tuple; None stays None."""
    if value is None:
        return None
    items = [p.strip() for p in value.split(",")] if isinstance(value, str) else list(value)
    if any(not isinstance(p, str) or not p for p in items):
        raise SweepGridError(f"--{name}: empty item in {value!r} (use e.g. vp,fc)")
    return _unique(name, items)


def _unique(name: str, items: list[Any]) -> tuple[Any, ...]:
    if not items:
        raise SweepGridError(f"--{name}: no values given")
    seen: set[Any] = set()
    for x in items:
        if x in seen:
            raise SweepGridError(f"--{name}: {x!r} is listed twice")
        seen.add(x)
    return tuple(items)


# ------------------------------------------------------------------------------ building
def build_grid(
    base: ExperimentConfig,
    *,
    preset: str | None = None,
    depths: str | Sequence[int] | None = None,
    transforms: str | Sequence[str] | None = None,
    seeds: str | Sequence[int] | None = None,
    limits: Any = None,
) -> SweepGrid:
    """A validated grid from a base config, an optional preset and optional axis overrides.

    ``limits``: a ``reprog_core.backend.Limits`` to check the grid against (default: the limits
    of ``Limits.from_env()``, the ones the default backend enforces). Raises ``SweepGridError``.
    """
    p = None
    if preset is not None:
        if preset not in PRESETS:
            raise SweepGridError(f"unknown preset {preset!r}; choose one of {list_presets()}")
        p = PRESETS[preset]
    d_axis = parse_int_list("depths", depths) or (p.depths if p else (base.depth,))
    t_axis = parse_str_list("transforms", transforms) or (p.transforms if p else (base.transform,))
    s_axis = parse_int_list("seeds", seeds) or (p.seeds if p and p.seeds else (base.seed,))

    lo, hi = LIMITS["depth"]
    bad = [d for d in d_axis if not lo <= d <= hi]
    if bad:
        raise SweepGridError(f"--depths: {bad[0]} is out of range; depths must be in {lo}..{hi}")
    known = [t.value for t in TransformKind]
    bad_t = [t for t in t_axis if t not in known]
    if bad_t:
        raise SweepGridError(f"--transforms: unknown transform {bad_t[0]!r}; choose from {known}")
    lo, hi = LIMITS["seed"]
    bad = [s for s in s_axis if not lo <= s <= hi]
    if bad:
        raise SweepGridError(f"--seeds: {bad[0]} is out of range; seeds must be in {lo}..{hi}")

    points, invalid = grid_points(base, d_axis, t_axis, s_axis)
    if invalid:
        raise SweepGridError(f"grid point {invalid[0]}")
    grid = SweepGrid(base, tuple(d_axis), tuple(t_axis), tuple(s_axis), preset, tuple(points))
    check_limits(grid, limits)
    return grid


def grid_points(
    base: ExperimentConfig,
    depths: Sequence[int],
    transforms: Sequence[str],
    seeds: Sequence[int],
) -> tuple[list[ExperimentConfig], list[str]]:
    """The grid's configs, seed-major (for each seed, each depth, each transform), and why each
    combination that is not a valid config was left out (``'depth=1, transform=vp, seed=0 is
    invalid: ...'``). ``build_grid`` refuses a grid with any; the Depth sweep page skips them and
    says so."""
    points, invalid = [], []
    for s in seeds:
        for d in depths:
            for t in transforms:
                try:
                    points.append(base.replace(depth=d, transform=t, seed=s))
                except ConfigError as exc:
                    invalid.append(f"depth={d}, transform={t}, seed={s} is invalid: {exc}")
    return points, invalid


def warm_items(grid: SweepGrid) -> list[WarmItem]:
    """The grid as ``backend.admin.warm`` items: (task kind, config, params, labels)."""
    return [
        (SWEEP_TASK, cfg, {}, {"depth": cfg.depth, "transform": cfg.transform, "seed": cfg.seed})
        for cfg in grid.points()
    ]


def check_limits(grid: SweepGrid, limits: Any = None) -> None:
    """Raise ``SweepGridError`` if ``grid`` is over the backend's sweep-size limit or a point is
    over a per-request cap. Checked before anything runs, for every executor alike."""
    from reprog_core.serving import get_task  # lazy: serving loads the pipeline (torch)

    limits = limits if limits is not None else Limits.from_env()
    try:
        limits.check(grid.base, {"n_points": len(grid)}, only=("max_sweep_points",))
    except OverBudget as exc:
        raise SweepGridError(
            f"the grid has {grid.describe()}: {exc} Or sweep fewer depths, transforms or seeds."
        ) from None
    spec = get_task(SWEEP_TASK)
    for cfg in grid.points():
        try:
            limits.check(cfg, {}, spec.limits)
        except OverBudget as exc:
            raise SweepGridError(str(exc)) from None
