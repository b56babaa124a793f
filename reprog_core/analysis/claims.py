"""The paper's depth-experiment claims tested on sweep rows, each with a verdict.

Source accuracy rises with depth, target accuracy rises with source depth (per transform), vp
beats fc (and vp-fc): a ``Claim`` each, with its statistic (Spearman's rho, or the mean paired
difference), its two-sided p and a verdict at ``ALPHA``. The spectrum-tracks-accuracy claim is
``summary.correlations``; the same claims with depth controlled for are ``depth_control.py``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from reprog_core.analysis.summary import (
    Row,
    by_depth,
    num,
    ordered_transforms,
    source_rows,
    spearman,
)

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
