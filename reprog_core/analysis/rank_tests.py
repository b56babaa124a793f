"""Rank tests with a control: partial Spearman, within-stratum Spearman, and Holm's correction.

``partial_spearman`` (the rank correlation with the control's ranks partialled out),
``within_spearman`` (per-stratum rank correlations, permutation-tested within strata) and
``holm`` (Holm-Bonferroni over a family of tests). Inputs are equal-length sequences of numbers
(None / non-numbers count as NaN); each test runs on the points where all its inputs are finite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from reprog_core.analysis.summary import num

N_PERM = 9999  # Monte Carlo permutations of the within-depth test when exact enumeration is big
MAX_EXACT = 100_000  # enumerate every within-depth permutation when there are at most this many


def _ranks(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return np.asarray(rankdata(a, method="average"), dtype=float)


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson's r, or None when either side is constant."""
    da, db = a - a.mean(), b - b.mean()
    den = math.sqrt(float(da @ da) * float(db @ db))
    if den == 0:
        return None
    return max(-1.0, min(1.0, float(da @ db) / den))


@dataclass(frozen=True)
class PartialSpearman:
    """Spearman's rank correlation of x and y with the control z partialled out.

    r_xy·z = (r_xy − r_xz r_yz) / √((1 − r_xz²)(1 − r_yz²)), where r_ab is Pearson's r of the
    ranks (average ranks for ties), i.e. Spearman's rho. Two-sided p from Student's t with
    n − 3 degrees of freedom: t = r √((n − 3)/(1 − r²)). ``rho`` and ``p`` are None (with
    ``note`` saying why) when there are fewer than 4 finite triples, when x, y or z is constant
    (one depth: nothing to control), or when x or y is a perfect rank function of z.
    """

    n: int
    rho: float | None
    p: float | None
    r_xy: float | None  # the plain Spearman rho
    r_xz: float | None
    r_yz: float | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def partial_spearman(x: Sequence[Any], y: Sequence[Any], z: Sequence[Any]) -> PartialSpearman:
    """The partial Spearman correlation of x and y given z (see ``PartialSpearman``), on the
    triples where all three are finite."""
    from scipy.stats import t as student_t

    a, b, c = (np.asarray([num(v) for v in s], dtype=float) for s in (x, y, z))
    ok = np.isfinite(a) & np.isfinite(b) & np.isfinite(c)
    n = int(ok.sum())
    if n < 4:
        return PartialSpearman(n, None, None, None, None, None, f"{n} points (needs 4)")
    ra, rb, rc = _ranks(a[ok]), _ranks(b[ok]), _ranks(c[ok])
    r_xy, r_xz, r_yz = _pearson(ra, rb), _pearson(ra, rc), _pearson(rb, rc)
    if np.ptp(rc) == 0:
        return PartialSpearman(
            n, None, None, r_xy, None, None, "the control has one value: nothing to control"
        )
    if r_xy is None or r_xz is None or r_yz is None:
        return PartialSpearman(n, None, None, r_xy, r_xz, r_yz, "a constant variable")
    den = (1 - r_xz**2) * (1 - r_yz**2)
    if den <= 1e-15:
        return PartialSpearman(
            n, None, None, r_xy, r_xz, r_yz, "x or y is a perfect rank function of the control"
        )
    r = max(-1.0, min(1.0, (r_xy - r_xz * r_yz) / math.sqrt(den)))
    df = n - 3
    if abs(r) >= 1.0:
        p = 0.0
    else:
        tstat = r * math.sqrt(df / (1 - r * r))
        p = float(2 * student_t.sf(abs(tstat), df))
    return PartialSpearman(n, r, p, r_xy, r_xz, r_yz)


@dataclass(frozen=True)
class WithinSpearman:
    """Rank correlation within strata (depths), permutation-tested within strata.

    ``rho``: the mean of the per-stratum Spearman rhos, weighted by each stratum's number of
    points; only strata with at least ``min_size`` points where neither x nor y is constant
    count. ``p``: two-sided permutation p-value of |rho| under shuffling y within each stratum
    (which keeps every depth's values, so depth cannot make the statistic): exact over every
    within-stratum permutation when there are at most ``MAX_EXACT`` of them (``exact``), else
    (1 + #{|rho*| ≥ |rho|}) / (1 + n_perm) over ``n_perm`` seeded random ones.
    """

    n: int  # points in the strata used
    n_strata: int
    rho: float | None
    p: float | None
    per_stratum: tuple[tuple[float, int, float], ...]  # (stratum, n, rho)
    exact: bool
    n_perm: int  # permutations the p-value is over
    seed: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def within_spearman(
    x: Sequence[Any],
    y: Sequence[Any],
    strata: Sequence[Any],
    *,
    n_perm: int = N_PERM,
    seed: int = 0,
    min_size: int = 3,
    max_exact: int = MAX_EXACT,
) -> WithinSpearman:
    """The within-stratum Spearman test of x against y (see ``WithinSpearman``), on the points
    where x, y and the stratum are finite. Reproducible: the same inputs and ``seed`` give the
    same p."""
    a, b, s = (np.asarray([num(v) for v in q], dtype=float) for q in (x, y, strata))
    ok = np.isfinite(a) & np.isfinite(b) & np.isfinite(s)
    a, b, s = a[ok], b[ok], s[ok]
    used: list[tuple[float, np.ndarray, np.ndarray]] = []  # (stratum, unit x ranks, unit y ranks)
    for level in np.unique(s):
        idx = s == level
        if int(idx.sum()) < min_size or np.ptp(a[idx]) == 0 or np.ptp(b[idx]) == 0:
            continue
        ua, ub = (_ranks(v[idx]) for v in (a, b))
        ua, ub = ua - ua.mean(), ub - ub.mean()
        used.append((float(level), ua / np.linalg.norm(ua), ub / np.linalg.norm(ub)))
    if not used:
        why = (
            f"no stratum with {min_size}+ points where both vary" if s.size else "no finite points"
        )
        return WithinSpearman(0, 0, None, None, (), False, 0, seed, why)
    sizes = np.asarray([len(ua) for _, ua, _ in used], dtype=float)
    w = sizes / sizes.sum()
    rhos = [float(ua @ ub) for _, ua, ub in used]
    stat = float(np.dot(w, rhos))
    per = tuple((lvl, len(ua), r) for (lvl, ua, _), r in zip(used, rhos, strict=True))
    n_total = math.prod(math.factorial(len(ua)) for _, ua, _ in used)
    tol = 1e-12 * max(1.0, abs(stat))
    if n_total <= max_exact:
        import itertools

        null = np.zeros(1)
        for wk, (_, ua, ub) in zip(w, used, strict=True):
            perms = np.asarray(list(itertools.permutations(range(len(ub)))))
            vals = ub[perms] @ ua
            null = (null[:, None] + wk * vals[None, :]).ravel()
        p = float(np.mean(np.abs(null) >= abs(stat) - tol))
        exact, count = True, int(n_total)
    else:
        rng = np.random.default_rng(seed)
        null = np.zeros(n_perm)
        for wk, (_, ua, ub) in zip(w, used, strict=True):
            shuffled = rng.permuted(np.tile(ub, (n_perm, 1)), axis=1)
            null += wk * (shuffled @ ua)
        p = float((1 + np.sum(np.abs(null) >= abs(stat) - tol)) / (1 + n_perm))
        exact, count = False, n_perm
    return WithinSpearman(int(sizes.sum()), len(used), stat, min(1.0, p), per, exact, count, seed)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Over the m finite p-values (None / NaN entries pass through as None and are not counted):
    sorted ascending p_(1) ≤ ... ≤ p_(m), the adjusted p_(j) is max_{i≤j} min(1, (m − i + 1)
    p_(i)). Rejecting where the adjusted p < α controls the family-wise error rate at α under
    any dependence between the tests.
    """
    vals = [num(p) for p in pvalues]
    idx = sorted((i for i, v in enumerate(vals) if math.isfinite(v)), key=lambda i: vals[i])
    m = len(idx)
    out: list[float | None] = [None] * len(vals)
    running = 0.0
    for j, i in enumerate(idx):
        running = max(running, min(1.0, (m - j) * vals[i]))
        out[i] = running
    return out
