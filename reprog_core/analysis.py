"""Numbers a sweep is read by: means and spread over seeds, and rank correlations.

Pure functions over sweep rows (``pipeline.sweep_row`` dicts). No plotting here: the figures
(``figures/sweep.py``), the sweep report, the CLI's summary table and ``docs/results.md`` all use
these, so they all quote the same numbers.

Spread over seeds: the sample standard deviation (ddof = 1; 0.0 for a single seed) and the
min..max range. Rank correlation: Spearman's rho with its two-sided p-value
(``scipy.stats.spearmanr``) on the finite pairs.
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
# Spectral statistics correlated with target accuracy by default (keys of ``sweep_row``).
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


# ------------------------------------------------------------------------------ the paper's claims
ALPHA = 0.05  # significance level of the verdicts below (two-sided)


def _verdict(effect: float | None, p: float | None) -> str:
    """'holds' (effect > 0 at p < ALPHA), 'reversed' (effect < 0 at p < ALPHA), 'not shown'
    (no significant effect either way), or 'n/a' (nothing to test)."""
    if effect is None or p is None:
        return "n/a"
    if p < ALPHA:
        return "holds" if effect > 0 else "reversed"
    return "not shown"


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims tested on a sweep: its statistic, p-value and verdict."""

    claim: str
    test: str  # what was computed, in words
    n: int
    statistic: float | None  # Spearman's rho, or the mean paired difference
    p: float | None
    verdict: str  # 'holds' | 'reversed' | 'not shown' | 'n/a' (see ``_verdict``)
    detail: str  # the numbers behind it, for people

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def depth_trend(rows: Sequence[Row], metric: str, transform: str | None = None) -> Claim:
    """Does ``metric`` rise with source depth? Spearman's rho of (depth, value) over every point
    (every seed), with the mean ± s.d. at the shallowest and the deepest depth."""
    pts = list(source_rows(rows)) if metric == "source_test_acc" else list(rows)
    if transform is not None:
        pts = [r for r in pts if r["transform"] == transform]
    rho, p, n = spearman([r["depth"] for r in pts], [r.get(metric) for r in pts])
    series = by_depth(pts, metric)
    detail = ""
    if series:
        (d0, s0), (d1, s1) = series[0], series[-1]
        detail = (
            f"depth {d0}: {s0.mean:.3f} ± {s0.std:.3f}, depth {d1}: {s1.mean:.3f} ± {s1.std:.3f}"
            f" (mean ± s.d. over {s0.n}/{s1.n} seeds)"
        )
    what = metric.replace("_test_acc", " accuracy").replace("_", " ")
    claim = f"{what} rises with source depth" + (f" ({transform})" if transform else "")
    return Claim(claim, "Spearman ρ(depth, value), all seeds", n, rho, p, _verdict(rho, p), detail)


def paired_comparison(
    rows: Sequence[Row], a: str, b: str, metric: str = "target_test_acc"
) -> Claim:
    """Does transform ``a`` beat ``b``? Paired over (depth, seed): the mean difference a - b,
    how often a wins, and the Wilcoxon signed-rank test's two-sided p."""
    from scipy.stats import wilcoxon

    va = {(r["depth"], r["seed"]): num(r.get(metric)) for r in rows if r["transform"] == a}
    vb = {(r["depth"], r["seed"]): num(r.get(metric)) for r in rows if r["transform"] == b}
    pairs = [(va[k], vb[k]) for k in sorted(set(va) & set(vb))]
    pairs = [(x, y) for x, y in pairs if math.isfinite(x) and math.isfinite(y)]
    diff = np.asarray([x - y for x, y in pairs], dtype=float)
    n = int(diff.size)
    if n == 0:
        return Claim(f"{a} beats {b}", "paired Wilcoxon", 0, None, None, "n/a", "no pairs")
    mean = float(diff.mean())
    p: float | None = None
    if n >= 2 and np.any(diff != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(wilcoxon(diff).pvalue)
    wins = int((diff > 0).sum())
    detail = (
        f"{a} - {b} = {mean:+.3f} ± {float(diff.std(ddof=1)) if n > 1 else 0.0:.3f} "
        f"(mean ± s.d. over {n} (depth, seed) pairs); {a} higher in {wins}/{n}"
    )
    return Claim(
        f"{a} beats {b}",
        "paired over (depth, seed): mean difference, Wilcoxon signed-rank p",
        n,
        mean,
        p,
        _verdict(mean, p),
        detail,
    )


def paper_claims(rows: Sequence[Row]) -> list[Claim]:
    """The paper's depth-experiment claims tested on ``rows``: source accuracy rises with depth;
    target accuracy rises with source depth (per transform); vp beats fc (and vp-fc, when
    present). The spectrum-tracks-accuracy claim is ``correlations``."""
    out = [depth_trend(rows, "source_test_acc")]
    out += [depth_trend(rows, "target_test_acc", t) for t in ordered_transforms(rows)]
    present = set(ordered_transforms(rows))
    for other in ("fc", "vp-fc"):
        if {"vp", other} <= present:
            out.append(paired_comparison(rows, "vp", other))
    return out
