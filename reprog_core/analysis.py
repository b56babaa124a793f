"""Numbers a sweep is read by: means and spread over seeds, and rank correlations.

Pure functions over sweep rows (``pipeline.sweep_row`` dicts). No plotting here: the figures
(``figures/sweep.py``), the sweep report, the CLI's summary table and ``docs/results.md`` all use
these, so they all quote the same numbers.

Spread over seeds: the sample standard deviation (ddof = 1; 0.0 for a single seed) and the
min..max range. Rank correlation: Spearman's rho with its two-sided p-value
(``scipy.stats.spearmanr``) on the finite pairs.

Claims controlled for depth (the last section): in a depth sweep every spectral statistic and
every outcome tend to rise with depth, so a plain Spearman rho between them can be depth's alone.
``partial_spearman`` (the rank correlation with the control's ranks partialled out),
``within_spearman`` (per-depth rank correlations, permutation-tested within depth), ``holm``
(Holm-Bonferroni over a family of tests) and ``depth_controlled`` (all three for each statistic
x transform, as ``bench/spectrum_ranks.py`` prints them). Scale-free statistics
(``lambda_min_over_max``, ``effective_rank``, ``alignment``, ``regression_acc``,
``common_share``) are tested beside the scale statistics (``lambda_min``, ``lambda_max``), which
the kernel regime's step size η = ρN/λ_max divides out.
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


# ------------------------------------------------------------------ claims controlled for depth
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
N_PERM = 9999  # Monte Carlo permutations of the within-depth test when exact enumeration is big
MAX_EXACT = 100_000  # enumerate every within-depth permutation when there are at most this many


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
