"""Numbers a sweep is read by: means and spread over seeds, and rank correlations.

Pure functions over sweep rows (``ExperimentRecord.sweep_row()`` dicts). No plotting here: the
figures (``figures/sweep.py``), the sweep report, the CLI's summary table and ``docs/results.md``
all use these, so they all quote the same numbers. Import them from here (``reprog_core.analysis``).

| module            | what it holds |
|-------------------|---------------|
| ``summary``       | ``spread``, ``summarise`` (over seeds), ``spearman``, ``correlations`` |
| ``claims``        | ``paper_claims``: depth trends, paired comparisons, verdicts |
| ``rank_tests``    | ``partial_spearman``, ``within_spearman`` (permutation test), ``holm`` |
| ``depth_control`` | ``depth_controlled``: statistic vs outcome, depth controlled for |

Spread over seeds: the sample standard deviation (ddof = 1; 0.0 for a single seed) and the
min..max range. Rank correlation: Spearman's rho with its two-sided p-value
(``scipy.stats.spearmanr``) on the finite pairs.

Claims controlled for depth: in a depth sweep every spectral statistic and every outcome tend to
rise with depth, so a plain Spearman rho between them can be depth's alone. ``partial_spearman``
(the rank correlation with the control's ranks partialled out), ``within_spearman`` (per-depth
rank correlations, permutation-tested within depth), ``holm`` (Holm-Bonferroni over a family of
tests) and ``depth_controlled`` (all three for each statistic x transform, as
``bench/spectrum_ranks.py`` prints them). Scale-free statistics (``lambda_min_over_max``,
``effective_rank``, ``alignment``, ``regression_acc``, ``common_share``) are tested beside the
scale statistics (``lambda_min``, ``lambda_max``), which the kernel regime's step size
η = ρN/λ_max divides out.
"""

from reprog_core.analysis.claims import (
    ALPHA,
    Claim,
    depth_trend,
    paired_comparison,
    paper_claims,
)
from reprog_core.analysis.depth_control import (
    CORRECTION,
    DEPTH_CONTROL_STATS,
    DERIVED_STATS,
    SCALE_FREE_STATS,
    SCALE_STATS,
    DepthControlled,
    DepthControlTable,
    depth_controlled,
    has_values,
    lambda_min_over_max,
    stat_kind,
    with_derived,
)
from reprog_core.analysis.rank_tests import (
    MAX_EXACT,
    N_PERM,
    PartialSpearman,
    WithinSpearman,
    holm,
    partial_spearman,
    within_spearman,
)
from reprog_core.analysis.summary import (
    DEFAULT_STATS,
    SUMMARY_METRICS,
    Correlation,
    Row,
    Spread,
    by_depth,
    correlations,
    num,
    ordered_transforms,
    source_rows,
    spearman,
    spread,
    summarise,
)

__all__ = [
    "ALPHA",
    "CORRECTION",
    "DEFAULT_STATS",
    "DEPTH_CONTROL_STATS",
    "DERIVED_STATS",
    "MAX_EXACT",
    "N_PERM",
    "SCALE_FREE_STATS",
    "SCALE_STATS",
    "SUMMARY_METRICS",
    "Claim",
    "Correlation",
    "DepthControlTable",
    "DepthControlled",
    "PartialSpearman",
    "Row",
    "Spread",
    "WithinSpearman",
    "by_depth",
    "correlations",
    "depth_controlled",
    "depth_trend",
    "has_values",
    "holm",
    "lambda_min_over_max",
    "num",
    "ordered_transforms",
    "paired_comparison",
    "paper_claims",
    "partial_spearman",
    "source_rows",
    "spearman",
    "spread",
    "stat_kind",
    "summarise",
    "with_derived",
    "within_spearman",
]
