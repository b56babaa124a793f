"""``report.html``: one self-contained page per sweep (plotly.js inlined once, works offline).

Sections: what was run (pair, family, weights - a red box when the backbone is random -, grid,
machine, versions, command); the four figures (source accuracy, target accuracy, λ_min and
effective rank against depth; a spectral statistic against target accuracy with Spearman's rho);
Spearman's rho for every spectral statistic; the per-(depth, transform) summary; every point.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from reprog_core.analysis import ALPHA, DEFAULT_STATS, correlations, paper_claims, summarise
from reprog_core.config import ExperimentConfig
from reprog_core.figures import sweep as sweep_figures
from reprog_core.figures.source import weights_description
from reprog_core.figures.spectrum import SPECTRAL_STATS
from reprog_core.figures.theme import fmt, pct
from reprog_core.results import SweepRecord

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #1f2430;
       padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #dee2e6; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #dee2e6; padding: 3px 7px; text-align: right; }
th { background: #f1f3f5; } td.l, th.l { text-align: left; }
.random { background: #c92a2a; color: white; padding: 0.7em 1em; font-weight: 600;
          border-radius: 4px; margin: 1em 0; }
.warn { background: #fff3bf; padding: 0.6em 1em; border-radius: 4px; }
.muted { color: #868e96; } code { background: #f1f3f5; padding: 0 3px; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _table(head: Sequence[str], body: Sequence[Sequence[Any]], left: int = 0) -> str:
    """An HTML table; the first ``left`` columns are left-aligned (labels)."""

    def cells(tag: str, values: Sequence[Any]) -> str:
        return "".join(
            f"<{tag}{' class=l' if j < left else ''}>{_e(v)}</{tag}>" for j, v in enumerate(values)
        )

    rows = "".join(f"<tr>{cells('td', r)}</tr>" for r in body)
    return f"<table><tr>{cells('th', head)}</tr>{rows}</table>"


def _rho_cell(c: Any) -> str:
    """'ρ = 0.61 (p = 0.003, n = 18)'; '— (n = 2)' when there is no correlation to report."""
    if c.rho is None:
        return f"— (n = {c.n})"
    return f"ρ = {fmt(c.rho, 2)} (p = {fmt(c.p, 2)}, n = {c.n})"


def _family(cfg: ExperimentConfig) -> str:
    if cfg.source_family == "clip-cnn":
        return f"clip-cnn: frozen encoder {cfg.backbone} + CNN head (width {cfg.width})"
    if cfg.source_family == "efficientnet-lite0":
        return "efficientnet-lite0: the whole ImageNet classifier, used as it is"
    return f"{cfg.source_family} on pixels (width {cfg.width})"


def _join(values: Any) -> str:
    return ", ".join(map(str, values)) if isinstance(values, (list, tuple)) else str(values)


def _kv(d: Any) -> str:
    if not isinstance(d, Mapping):
        return "—" if d is None else str(d)
    return ", ".join(f"{k} {v}" for k, v in d.items())


def _pm(mean: Any, std: Any, percent: bool = False) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if std is None:
        return f"{100 * mean:.1f}" if percent else fmt(mean, 3)
    if percent:
        return f"{100 * mean:.1f} ± {100 * std:.1f}"
    return f"{fmt(mean, 3)} ± {fmt(std, 2)}"


def summary_table_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The per-(transform, depth) summary as text cells (used by the report and the CLI);
    mean ± s.d. over seeds, the mean alone for a single seed."""
    out = []
    for s in summarise(rows):
        if s["n_seeds"] < 2:
            s = {k: (None if k.endswith("_std") else v) for k, v in s.items()}
        out.append(
            [
                s["transform"],
                str(s["depth"]),
                str(s["n_seeds"]),
                _pm(s["source_test_acc_mean"], s["source_test_acc_std"], True),
                _pm(s["target_test_acc_mean"], s["target_test_acc_std"], True),
                _pm(s["baseline_test_acc_mean"], s["baseline_test_acc_std"], True),
                _pm(s["lambda_min_mean"], s["lambda_min_std"]),
                _pm(s["effective_rank_mean"], s["effective_rank_std"]),
                _pm(s["alignment_mean"], s["alignment_std"]),
            ]
        )
    return out


SUMMARY_HEAD = [
    "transform",
    "depth",
    "seeds",
    "source acc %",
    "target acc %",
    "baseline 'none' %",
    "λ_min",
    "effective rank",
    "alignment",
]


def build_report(sweep: SweepRecord, stat: str = "lambda_min") -> str:
    """The report page for a sweep record (its grid's base config, its table of rows, its
    points); ``stat`` is the spectral statistic drawn against target accuracy."""
    import plotly.offline

    rows: list[Mapping[str, Any]] = list(sweep.rows)
    cfg = sweep.config  # the grid's base config
    if cfg is None:
        raise ValueError("a sweep record without its base config has no report")
    grid: Mapping[str, Any] = sweep.grid
    weights = sweep.weights
    figs = [
        sweep_figures.source_accuracy_figure(rows),
        sweep_figures.target_accuracy_figure(rows),
        sweep_figures.spectrum_depth_figure(rows),
        sweep_figures.stat_accuracy_figure(rows, stat),
    ]
    fig_html = "".join(
        f"<div>{f.to_html(full_html=False, include_plotlyjs=False, div_id=f'fig{i}')}</div>"
        for i, f in enumerate(figs)
    )

    parts = [
        "<h1>Depth sweep</h1>",
        f"<p class=muted>{_e(sweep.created)} · executor {_e(sweep.executor)}"
        f" · {_e(grid.get('n_points'))} points · format {_e(sweep.format)}/"
        f"{_e(sweep.format_version)}</p>",
    ]
    if weights == "random":
        model = cfg.source_family if cfg.source_family == "efficientnet-lite0" else cfg.backbone
        parts.append(
            f"<div class=random>⚠ The pretrained part ({_e(model)}) has RANDOM weights: it was "
            "not pretrained. These numbers describe the architecture knowing nothing, the "
            "control for a pretrained model.</div>"
        )
    if not sweep.finished:
        parts.append(
            "<p class=warn>This sweep did not finish (interrupted): only the points computed "
            "so far are shown. Running the same command again resumes it.</p>"
        )
    failed = [p for p in sweep.points if p.get("error")]
    if failed:
        parts.append(f"<p class=warn>{len(failed)} point(s) failed; see the points table.</p>")
    parts.append("<h2>What was run</h2>")
    parts.append(
        _table(
            ["", ""],
            [
                ["source model", weights_description(weights, cfg)],
                ["source family", _family(cfg)],
                [
                    "pair",
                    f"ImageNet → {cfg.target}"
                    if cfg.source_family == "efficientnet-lite0"
                    else f"{cfg.source_data} → {cfg.target}",
                ],
                ["preset", grid.get("preset") or "custom"],
                ["depths", _join(grid.get("depths"))],
                ["transforms", _join(grid.get("transforms"))],
                ["seeds", _join(grid.get("seeds"))],
                [
                    "fit",
                    f"{cfg.steps} steps, {cfg.optimizer}, loss {cfg.loss},"
                    f" mapping {cfg.mapping}, lr {cfg.lr} (0 = default)",
                ],
                [
                    "kernel",
                    f"target NTK w.r.t. θ at θ_0, {cfg.kernel_form} form, N = {cfg.n_kernel}",
                ],
                ["command", sweep.command or "—"],
                ["machine", _kv(sweep.machine)],
                ["versions", _kv(sweep.versions)],
                ["elapsed", f"{fmt(sweep.elapsed_s, 4)} s"],
            ],
            left=2,
        )
    )
    parts.append(
        f"<h2>The paper's claims on this sweep</h2><p class=muted>Verdict at α = {ALPHA} "
        "(two-sided): 'holds' = a significant effect in the claimed direction, 'reversed' = a "
        "significant effect the other way, 'not shown' = no significant effect either way. "
        "Whether the spectrum tracks accuracy: see Spearman's ρ below.</p>"
    )
    parts.append(
        _table(
            ["claim", "verdict", "statistic", "p", "n", "numbers", "test"],
            [
                [c.claim, c.verdict, fmt(c.statistic, 3), fmt(c.p, 2), c.n, c.detail, c.test]
                for c in paper_claims(rows)
            ],
            left=2,
        )
    )
    parts.append("<h2>Figures</h2>" + fig_html)

    parts.append(
        "<h2>Spectrum against target accuracy: Spearman's ρ</h2><p class=muted>One point per "
        "(depth, transform, seed). 'all' pools the transforms, whose kernels are taken w.r.t. "
        "different parameters, so it partly ranks transforms; the per-transform rows compare like"
        " with like. p: two-sided, scipy.stats.spearmanr.</p>"
    )
    corr = correlations(rows, DEFAULT_STATS)
    groups = list(dict.fromkeys(c.group for c in corr))
    cell = {(c.stat, c.group): c for c in corr}
    body = [
        [SPECTRAL_STATS.get(stat, (stat,))[0]] + [_rho_cell(cell[(stat, g)]) for g in groups]
        for stat in dict.fromkeys(c.stat for c in corr)
    ]
    parts.append(_table(["statistic", *groups], body, left=1))
    parts.append(
        "<h2>Summary by depth and transform</h2><p class=muted>mean ± sample s.d. over seeds.</p>"
    )
    parts.append(_table(SUMMARY_HEAD, summary_table_rows(rows), left=1))
    parts.append("<h2>Every point</h2>")
    row_of_point = {row.get("key"): row for row in rows}
    body = []
    for p in sweep.points:
        row = row_of_point.get(p.get("key"), {})
        body.append(
            [
                p.get("depth"),
                p.get("transform"),
                p.get("seed"),
                p.get("cache") or "failed",
                pct(row.get("source_test_acc")),
                pct(row.get("target_test_acc")),
                fmt(row.get("lambda_min"), 3),
                fmt(row.get("effective_rank"), 3),
                fmt(row.get("alignment"), 3),
                fmt(p.get("seconds"), 3),
                p.get("error") or row.get("stopped") or "",
            ]
        )
    parts.append(
        _table(
            [
                "depth",
                "transform",
                "seed",
                "cache",
                "source acc",
                "target acc",
                "λ_min",
                "eff. rank",
                "alignment",
                "seconds",
                "note",
            ],
            body,
        )
    )
    plotly_js = plotly.offline.get_plotlyjs()
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Depth sweep</title>"
        f"<style>{_CSS}</style><script type='text/javascript'>{plotly_js}</script></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )
