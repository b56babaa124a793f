"""Means and spread over seeds, and rank correlations, of sweep rows.

Rows are ``ExperimentRecord.sweep_row()`` dicts (``Row``), one per (depth, transform, seed).
Spread over seeds: the sample standard deviation (ddof = 1; 0.0 for a single seed) and the
min..max range (``Spread``). Rank correlation: Spearman's rho with its two-sided p-value
(``scipy.stats.spearmanr``) on the finite pairs (``Correlation``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from reprog_core import transforms

Row = Mapping[str, Any]

# Per-(depth, transform) quantities the summary aggregates over seeds.
SUMMARY_METRICS = (
    "source_test_acc",
    "target_test_acc",
    "baseline_test_acc",
    "lambda_min",
    "effective_rank",
    "alignment",
    "condition_number",
)
# Spectral statistics correlated with target accuracy by default (sweep row columns).
DEFAULT_STATS = (
    "lambda_min",
    "effective_rank",
    "alignment",
    "condition_number",
    "lambda_max",
    "trace",
    "abs_sum_over_n",
)


def num(value: Any) -> float:
    """A float, with None / non-numbers as NaN (rows read from JSON hold None for NaN)."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclass(frozen=True)
class Spread:
    """Mean and spread of one quantity over the finite values among seeds."""

    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); 0.0 when n == 1; NaN when n == 0
    min: float
    max: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def spread(values: Iterable[Any]) -> Spread:
    """Mean, sample s.d., min and max of the finite values."""
    a = np.asarray([num(v) for v in values], dtype=float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return Spread(0, math.nan, math.nan, math.nan, math.nan)
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return Spread(int(a.size), float(a.mean()), std, float(a.min()), float(a.max()))


def ordered_transforms(rows: Sequence[Row]) -> list[str]:
    """The transforms present, in the canonical order (``transforms.KINDS``), then others."""
    return transforms.ordered({str(r["transform"]) for r in rows})


def source_rows(rows: Sequence[Row]) -> list[Row]:
    """One row per trained source model: (depth, seed) pairs, first seen.

    The source model does not depend on the transform, so the rows of one (depth, seed) repeat
    the same source accuracy; counting them once keeps the spread over seeds honest.
    """
    seen: dict[tuple[Any, Any], Row] = {}
    for r in rows:
        seen.setdefault((r["depth"], r["seed"]), r)
    return list(seen.values())


def by_depth(
    rows: Sequence[Row], metric: str, transform: str | None = None
) -> list[tuple[int, Spread]]:
    """[(depth, spread of ``metric`` over seeds)], depth ascending; only ``transform``'s rows
    when given."""
    pts = [r for r in rows if transform is None or r["transform"] == transform]
    depths = sorted({int(r["depth"]) for r in pts})
    return [(d, spread(r.get(metric) for r in pts if int(r["depth"]) == d)) for d in depths]


def summarise(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """One dict per (depth, transform): ``n_seeds`` and, for each of ``SUMMARY_METRICS``,
    ``<metric>_mean``, ``_std``, ``_min``, ``_max``. Ordered by transform, then depth."""
    out = []
    for t in ordered_transforms(rows):
        for d in sorted({int(r["depth"]) for r in rows if r["transform"] == t}):
            pts = [r for r in rows if r["transform"] == t and int(r["depth"]) == d]
            entry: dict[str, Any] = {"transform": t, "depth": d, "n_seeds": len(pts)}
            for m in SUMMARY_METRICS:
                s = spread(r.get(m) for r in pts)
                entry.update({f"{m}_{k}": v for k, v in s.to_dict().items() if k != "n"})
            out.append(entry)
    return out


@dataclass(frozen=True)
class Correlation:
    """Spearman's rank correlation of a statistic with an accuracy over ``n`` finite pairs.

    ``rho`` and ``p`` are None when there are fewer than 3 pairs or one side is constant.
    """

    stat: str
    group: str  # 'all' or a transform name
    n: int
    rho: float | None
    p: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def spearman(x: Sequence[Any], y: Sequence[Any]) -> tuple[float | None, float | None, int]:
    """(rho, two-sided p, n) of Spearman's rank correlation on the pairs where both are finite."""
    from scipy.stats import spearmanr

    a = np.asarray([num(v) for v in x], dtype=float)
    b = np.asarray([num(v) for v in y], dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    if n < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return None, None, n
    with warnings.catch_warnings():  # scipy warns on ties / tiny n; the n is reported instead
        warnings.simplefilter("ignore")
        res = spearmanr(a[ok], b[ok])
    rho, p = float(res.statistic), float(res.pvalue)
    return (rho if math.isfinite(rho) else None), (p if math.isfinite(p) else None), n


def correlations(
    rows: Sequence[Row],
    stats: Sequence[str] = DEFAULT_STATS,
    accuracy: str = "target_test_acc",
) -> list[Correlation]:
    """For each statistic: Spearman's rho with ``accuracy`` over all points, then per transform.

    Pooled over transforms, a statistic's scale differs by transform (vp's and fc's kernels are
    taken w.r.t. different parameters), so the pooled rho partly ranks transforms; the
    per-transform rows are the like-for-like test across depths and seeds.
    """
    out = []
    for stat in stats:
        groups: list[tuple[str, Sequence[Row]]] = [("all", rows)]
        groups += [(t, [r for r in rows if r["transform"] == t]) for t in ordered_transforms(rows)]
        for name, pts in groups:
            rho, p, n = spearman([r.get(stat) for r in pts], [r.get(accuracy) for r in pts])
            out.append(Correlation(stat, name, n, rho, p))
    return out
