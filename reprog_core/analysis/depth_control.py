"""The claims controlled for depth: each spectral statistic against an outcome, depth held fixed.

In a depth sweep every spectral statistic and every outcome tend to rise with depth, so a plain
Spearman rho between them can be depth's alone. ``depth_controlled`` runs, for each statistic x
transform, the plain test beside ``partial_spearman`` and ``within_spearman`` (``rank_tests.py``),
every p-value Holm-adjusted together, as ``bench/spectrum_ranks.py`` prints them. Scale-free
statistics (``lambda_min_over_max``, ``effective_rank``, ``alignment``, ``regression_acc``,
``common_share``) are tested beside the scale statistics (``lambda_min``, ``lambda_max``), which
the kernel regime's step size η = ρN/λ_max divides out.

Rows are sweep rows (``summary.Row``); the answer is a ``DepthControlTable`` of
``DepthControlled`` rows, one per (statistic, group).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from reprog_core.analysis.claims import ALPHA
from reprog_core.analysis.rank_tests import N_PERM, holm, partial_spearman, within_spearman
from reprog_core.analysis.summary import Correlation, Row, num, ordered_transforms, spearman

# Statistics whose value does not depend on the kernel's overall scale. With the kernel regime's
# step size η = ρN/λ_max, the linearised loss decrease depends on the eigenvalues only through
# λ_i/λ_max, so these are the ones the dynamics can be ranked by. ``condition_number`` is
# λ_max/λ_min: it ranks exactly as ``lambda_min_over_max`` with the sign flipped, so it is left
# out of the default family (one test, not two, for one quantity).
SCALE_FREE_STATS = (
    "lambda_min_over_max",
    "effective_rank",
    "alignment",
    "regression_acc",
    "common_share",
)
# Absolute eigenvalues: they measure the kernel's scale (which grows with depth), not its shape.
SCALE_STATS = ("lambda_min", "lambda_max")
DEPTH_CONTROL_STATS = SCALE_FREE_STATS + SCALE_STATS
# Statistics computed from a row's other columns (``with_derived``).
DERIVED_STATS = ("lambda_min_over_max",)
CORRECTION = "Holm-Bonferroni"


def stat_kind(stat: str) -> str:
    """'scale' for an absolute eigenvalue statistic (``SCALE_STATS``, ``trace``,
    ``abs_sum_over_n``), 'scale-free' otherwise."""
    return "scale" if stat in SCALE_STATS or stat in ("trace", "abs_sum_over_n") else "scale-free"


def lambda_min_over_max(row: Row) -> float:
    """λ_min/λ_max of a row's kernel (1 / condition number): the smallest eigenvalue relative to
    the largest, which sets the slowest linearised decay rate at η = ρN/λ_max. From
    ``lambda_min`` and ``lambda_max`` when both are finite and λ_max > 0, else from
    ``condition_number``; NaN without either."""
    lo, hi = num(row.get("lambda_min")), num(row.get("lambda_max"))
    if math.isfinite(lo) and math.isfinite(hi) and hi > 0:
        return lo / hi
    cond = num(row.get("condition_number"))
    if math.isfinite(cond) and cond > 0:
        return 1.0 / cond
    if cond == math.inf:
        return 0.0
    return math.nan


def with_derived(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Copies of ``rows`` with the derived statistics (``DERIVED_STATS``) added; a row that
    already holds one keeps its value."""
    out = []
    for r in rows:
        d = dict(r)
        d.setdefault("lambda_min_over_max", lambda_min_over_max(r))
        out.append(d)
    return out


def has_values(rows: Sequence[Row], column: str) -> bool:
    """Whether any row holds a finite number in ``column`` (False for a column an older sweep
    did not record, or one that is NaN throughout)."""
    return any(math.isfinite(num(r.get(column))) for r in rows)


@dataclass(frozen=True)
class DepthControlled:
    """One statistic against the outcome in one group (a transform, or 'all'): the plain
    Spearman test beside the two depth-controlled ones, each with its Holm-adjusted p.

    ``verdict``: from the depth-controlled tests at the adjusted p: 'survives (+)' or
    'survives (−)' where either is significant (its sign), 'conflicting' where both are with
    opposite signs, 'not shown' where they could run and neither is, 'cannot control' where
    depth varies but neither could run, 'n/a' where the plain test could not run either. Where
    the group has one depth, the plain test is already at fixed depth and the verdict is its:
    'one depth: holds (+)' / 'one depth: holds (−)' at the adjusted p, else 'one depth: not
    shown'.
    """

    stat: str
    kind: str  # 'scale-free' | 'scale'
    group: str
    n: int
    n_depths: int
    rho_depth: float | None  # Spearman of the statistic with depth: how much it is depth's
    rho: float | None
    p: float | None
    p_holm: float | None
    partial_rho: float | None
    partial_p: float | None
    partial_p_holm: float | None
    within_rho: float | None
    within_p: float | None
    within_p_holm: float | None
    within_n: int
    within_strata: int
    verdict: str
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DepthControlTable:
    """``depth_controlled``'s answer: the tests, the family they were corrected over, and what
    was left out and why."""

    outcome: str
    control: str
    correction: str
    family_size: int  # number of p-values the correction was over
    alpha: float
    n_rows: int
    control_values: tuple[float, ...]
    kernel_forms: tuple[str, ...]
    rows: tuple[DepthControlled, ...]
    depth_alone: tuple[Correlation, ...]  # Spearman(control, outcome) per group, for reference
    skipped: dict[str, str]  # statistic -> why it was not tested
    notes: tuple[str, ...]
    n_perm: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _group_rows(rows: Sequence[Row], pooled: bool) -> list[tuple[str, list[Row]]]:
    groups: list[tuple[str, list[Row]]] = [("all", list(rows))] if pooled else []
    return groups + [
        (t, [r for r in rows if r["transform"] == t]) for t in ordered_transforms(rows)
    ]


def _verdict_controlled(
    rho: float | None, tests: Sequence[tuple[float | None, float | None]], alpha: float
) -> str:
    if rho is None:
        return "n/a"
    ran = [(e, p) for e, p in tests if e is not None and p is not None]
    if not ran:
        return "cannot control"
    sig = [e for e, p in ran if p < alpha]
    if not sig:
        return "not shown"
    signs = {e > 0 for e in sig}
    if len(signs) > 1:
        return "conflicting"
    return "survives (+)" if signs.pop() else "survives (−)"


def depth_controlled(
    rows: Sequence[Row],
    stats: Sequence[str] = DEPTH_CONTROL_STATS,
    outcome: str = "kernel_loss_drop",
    *,
    control: str = "depth",
    pooled: bool = False,
    n_perm: int = N_PERM,
    seed: int = 0,
    alpha: float = ALPHA,
) -> DepthControlTable:
    """Each statistic against ``outcome``, per transform (and over all points with ``pooled``):
    the plain Spearman rho, the partial Spearman given ``control`` (``partial_spearman``) and
    the within-``control`` test (``within_spearman``, seeded with ``seed``), with every p-value
    of the table adjusted together by Holm-Bonferroni (``holm``; the family is every test the
    table reports, so ``family_size`` = the number of finite p-values).

    Derived statistics (``with_derived``) are added first. A statistic no row holds (an older
    sweep without ``regression_acc`` / ``common_share``) is skipped and listed in ``skipped``.
    Where a group has one value of ``control`` the depth-controlled tests are None and the row's
    note says so (the plain rho is then already at fixed depth). The pooled group ranks
    transforms as well (each transform's kernel has its own scale), so it is off by default.
    """
    rows = with_derived(rows)
    notes: list[str] = []
    skipped: dict[str, str] = {}
    tested: list[str] = []
    for stat in stats:
        if stat == outcome:
            skipped[stat] = "it is the outcome"
        elif not has_values(rows, stat):
            skipped[stat] = "no finite value in these rows (a sweep saved before it was recorded?)"
        else:
            tested.append(stat)
    levels = sorted({v for v in (num(r.get(control)) for r in rows) if math.isfinite(v)})
    if len(levels) < 2:
        notes.append(
            f"every point has one {control} ({', '.join(f'{v:g}' for v in levels) or 'none'}): "
            f"{control} cannot be controlled, and does not need to be; the plain rho is "
            f"already at fixed {control}"
        )
    if not has_values(rows, outcome):
        notes.append(f"no finite {outcome} in these rows")
    raw: list[dict[str, Any]] = []
    depth_alone: list[Correlation] = []
    for name, pts in _group_rows(rows, pooled):
        zs = [r.get(control) for r in pts]
        ys = [r.get(outcome) for r in pts]
        rho0, p0, n0 = spearman(zs, ys)
        depth_alone.append(Correlation(control, name, n0, rho0, p0))
        for stat in tested:
            xs = [r.get(stat) for r in pts]
            rho, p, n = spearman(xs, ys)
            rho_depth, _, _ = spearman(xs, zs)
            ok = [i for i in range(len(pts)) if all(math.isfinite(num(v[i])) for v in (xs, ys, zs))]
            n_depths = len({num(zs[i]) for i in ok})
            part = partial_spearman(xs, ys, zs)
            within = within_spearman(xs, ys, zs, n_perm=n_perm, seed=seed)
            note = ""
            if n_depths < 2:
                note = f"one {control}: the plain rho is at fixed {control}"
            elif part.rho is None:
                note = f"partial: {part.note}"
            if within.rho is None and n_depths >= 2:
                note = "; ".join(filter(None, [note, f"within: {within.note}"]))
            raw.append(
                {
                    "stat": stat,
                    "kind": stat_kind(stat),
                    "group": name,
                    "n": n,
                    "n_depths": n_depths,
                    "rho_depth": rho_depth,
                    "rho": rho,
                    "p": p,
                    "partial_rho": part.rho if n_depths >= 2 else None,
                    "partial_p": part.p if n_depths >= 2 else None,
                    "within_rho": within.rho if n_depths >= 2 else None,
                    "within_p": within.p if n_depths >= 2 else None,
                    "within_n": within.n if n_depths >= 2 else 0,
                    "within_strata": within.n_strata if n_depths >= 2 else 0,
                    "note": note,
                }
            )
    keys = ("p", "partial_p", "within_p")
    family = [r[k] for r in raw for k in keys]
    adjusted = holm(family)
    out = []
    for i, r in enumerate(raw):
        adj = dict(zip((f"{k}_holm" for k in keys), adjusted[3 * i : 3 * i + 3], strict=True))
        verdict = _verdict_controlled(
            r["rho"],
            [(r["partial_rho"], adj["partial_p_holm"]), (r["within_rho"], adj["within_p_holm"])],
            alpha,
        )
        if r["n_depths"] == 1 and r["rho"] is not None:
            ph = adj["p_holm"]
            verdict = "one depth: " + (
                ("holds (+)" if r["rho"] > 0 else "holds (−)")
                if ph is not None and ph < alpha
                else "not shown"
            )
        out.append(DepthControlled(**r, **adj, verdict=verdict))
    forms = tuple(sorted({str(r.get("kernel_form")) for r in rows if r.get("kernel_form")}))
    return DepthControlTable(
        outcome=outcome,
        control=control,
        correction=CORRECTION,
        family_size=sum(1 for p in family if p is not None and math.isfinite(p)),
        alpha=alpha,
        n_rows=len(rows),
        control_values=tuple(levels),
        kernel_forms=forms,
        rows=tuple(out),
        depth_alone=tuple(depth_alone),
        skipped=skipped,
        notes=tuple(notes),
        n_perm=n_perm,
        seed=seed,
    )
