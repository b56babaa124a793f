"""Sweep figures: sweep rows in, plotly figures out (pure functions, no I/O).

Used by the HTML report and by the dashboard's Depth sweep page (live and saved sweeps). A sweep
has several seeds per depth, so these builders aggregate over seeds first (``sweep.analysis``): a
line through the mean, error bars spanning the min..max range over seeds, and each seed as a faint
dot. They wear the house style (``theme``): its colours and names, its title, and its
random-weights marks when any row was computed with a randomly initialised backbone.

``rows``: a table, ``ExperimentRecord.sweep_row`` dicts (as in ``results.json``; None stands for
NaN). Rows stay dicts: they are also read back from saved sweep files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reprog_core.analysis import (
    Spread,
    by_depth,
    num,
    ordered_transforms,
    source_rows,
    spearman,
)
from reprog_core.figures.spectrum import SPECTRAL_STATS
from reprog_core.figures.theme import (
    INK,
    MUTED,
    TRANSFORM_COLORS,
    base_layout,
    fmt,
    title_layout,
)

Row = Mapping[str, Any]
SPREAD_NOTE = "line: mean over seeds · bars: min..max over seeds · dots: single seeds"
LEGEND_PX = 70  # the legend's band under the x axis; the figure is taller by it
TOP = 100  # room above the plot: title and a one-line subtitle


def _weights(rows: Sequence[Row]) -> str | None:
    return "random" if any(row.get("weights") == "random" for row in rows) else None


def _subtitle(rows: Sequence[Row], extra: str = "") -> str:
    if not rows:
        return "no points"
    row = rows[0]
    seeds = sorted({each["seed"] for each in rows})
    family = row.get("source_family")
    backbone = f" ({row.get('backbone')})" if family == "clip-cnn" else ""
    source = "ImageNet" if family == "efficientnet-lite0" else f"{row.get('source_data')}"
    text = (
        f"{family}{backbone} on {source} → {row.get('target')} · "
        f"{row.get('steps')} fit steps · seeds {', '.join(map(str, seeds))}"
    )
    return f"{text} · {extra}" if extra else text


def _layout(fig: go.Figure, title: str, rows: Sequence[Row], subtitle: str, height: int) -> None:
    """The house layout for a plot area ``height`` pixels tall (less the title's band). The legend
    goes under the x axis: above the plot it shared the band of the (long) subtitle and hid the
    top points. Markers are not clipped at the plot's edge (cliponaxis)."""
    for trace in fig.data:
        if isinstance(trace, go.Scatter):
            trace.cliponaxis = False
    weights = _weights(rows)
    fig.update_layout(title=title_layout(title, subtitle, weights))
    base_layout(
        fig,
        height + LEGEND_PX,
        bottom=50 + LEGEND_PX,
        legend_px=50 + 6,
        weights=weights,
        top=TOP,
        right=30,
    )


def _mean_trace(series: list[tuple[int, Spread]], name: str, color: str, **kw: Any) -> go.Scatter:
    """Mean over seeds with min..max error bars (asymmetric, so a log axis stays valid)."""
    xs = [d for d, _ in series]
    mean = [s.mean for _, s in series]
    return go.Scatter(
        x=xs,
        y=mean,
        mode="lines+markers",
        name=name,
        line={"color": color},
        error_y={
            "type": "data",
            "symmetric": False,
            "array": [s.max - s.mean for _, s in series],
            "arrayminus": [s.mean - s.min for _, s in series],
            "thickness": 1.2,
            "width": 4,
        },
        customdata=[[s.n, s.std, s.min, s.max] for _, s in series],
        hovertemplate=(
            f"{name}<br>depth %{{x}}<br>mean %{{y:.4g}} ± %{{customdata[1]:.2g}} (s.d., "
            "n = %{customdata[0]})<br>range %{customdata[2]:.4g} .. %{customdata[3]:.4g}"
            "<extra></extra>"
        ),
        **kw,
    )


def _seed_dots(rows: Sequence[Row], metric: str, name: str, color: str, **kw: Any) -> go.Scatter:
    return go.Scatter(
        x=[row["depth"] for row in rows],
        y=[num(row.get(metric)) for row in rows],
        mode="markers",
        name=f"{name} (single seeds)",
        marker={"color": color, "size": 5, "opacity": 0.35},
        text=[f"seed {row['seed']}" for row in rows],
        hovertemplate=f"{name}, %{{text}}<br>depth %{{x}}: %{{y:.4g}}<extra></extra>",
        showlegend=False,
        **kw,
    )


def source_accuracy_figure(rows: Sequence[Row]) -> go.Figure:
    """Source test accuracy against source depth (one source model per depth and seed)."""
    src = source_rows(rows)
    fig = go.Figure()
    if src:
        fig.add_trace(_mean_trace(by_depth(src, "source_test_acc"), "source model", INK))
        fig.add_trace(_seed_dots(src, "source_test_acc", "source model", INK))
    fig.update_xaxes(title="source depth L", dtick=1)
    fig.update_yaxes(title="source test accuracy", tickformat=".1%")
    _layout(fig, "Source accuracy against depth", rows, _subtitle(rows, SPREAD_NOTE), 420)
    return fig


def target_accuracy_figure(rows: Sequence[Row], baseline: bool = True) -> go.Figure:
    """Target test accuracy after reprogramming against source depth, one line per transform;
    with ``baseline``, the same source with transform 'none' (resize only) as a dashed line."""
    fig = go.Figure()
    for t in ordered_transforms(rows):
        color = TRANSFORM_COLORS.get(t, MUTED)
        pts = [row for row in rows if row["transform"] == t]
        fig.add_trace(_mean_trace(by_depth(rows, "target_test_acc", t), t, color, legendgroup=t))
        fig.add_trace(_seed_dots(pts, "target_test_acc", t, color, legendgroup=t))
    if baseline and rows:
        # The baseline depends on the source only; one value per (depth, seed).
        series = by_depth(source_rows(rows), "baseline_test_acc")
        if any(s.n for _, s in series):
            trace = _mean_trace(series, "baseline 'none' (no training)", MUTED)
            trace.line.dash = "dash"
            fig.add_trace(trace)
    fig.update_xaxes(title="source depth L", dtick=1)
    fig.update_yaxes(title="target test accuracy", tickformat=".1%")
    _layout(fig, "Target accuracy against source depth", rows, _subtitle(rows, SPREAD_NOTE), 440)
    return fig


def spectrum_depth_figure(rows: Sequence[Row]) -> go.Figure:
    """λ_min (log axis) and effective rank of the target NTK at θ_0 against source depth."""
    form = rows[0].get("kernel_form", "trace") if rows else "trace"
    n = rows[0].get("n_kernel") if rows else None
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("λ_min (smallest eigenvalue above tolerance)", "effective rank"),
        horizontal_spacing=0.1,
    )
    for t in ordered_transforms(rows):
        color = TRANSFORM_COLORS.get(t, MUTED)
        pts = [row for row in rows if row["transform"] == t]
        for col, metric in ((1, "lambda_min"), (2, "effective_rank")):
            series = by_depth(rows, metric, t)
            fig.add_trace(
                _mean_trace(series, t, color, legendgroup=t, showlegend=col == 1), row=1, col=col
            )
            fig.add_trace(_seed_dots(pts, metric, t, color, legendgroup=t), row=1, col=col)
    fig.update_yaxes(type="log", exponentformat="power", row=1, col=1)
    fig.update_xaxes(title="source depth L", dtick=1)
    extra = f"target NTK w.r.t. θ at θ_0, {form} form, N = {n} · {SPREAD_NOTE}"
    _layout(fig, "Target NTK spectrum against source depth", rows, _subtitle(rows, extra), 440)
    return fig


def stat_accuracy_figure(
    rows: Sequence[Row], stat: str = "lambda_min", accuracy: str = "target_test_acc"
) -> go.Figure:
    """A spectral statistic against target accuracy, one dot per (depth, transform, seed), with
    Spearman's rho and its p-value over all points and per transform in the subtitle."""
    label, better, log = SPECTRAL_STATS.get(stat, (stat, "higher", False))
    fig = go.Figure()
    parts = []
    for t in ordered_transforms(rows):
        pts = [row for row in rows if row["transform"] == t]
        xs, ys = [num(row.get(stat)) for row in pts], [num(row.get(accuracy)) for row in pts]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers",
                name=t,
                marker={"size": 9, "color": TRANSFORM_COLORS.get(t, MUTED), "opacity": 0.85},
                text=[f"L={row['depth']}, seed {row['seed']}" for row in pts],
                hovertemplate=f"{t}, %{{text}}<br>{stat} = %{{x:.4g}}<br>accuracy = "
                "%{y:.1%}<extra></extra>",
            )
        )
        parts.append(f"{t}: {_rho_text(xs, ys)}")
    everything = _rho_text(
        [num(row.get(stat)) for row in rows], [num(row.get(accuracy)) for row in rows]
    )
    if log:
        fig.update_xaxes(type="log", exponentformat="power")
    fig.update_xaxes(title=f"{label} — {better} is better in theory")
    fig.update_yaxes(title="target test accuracy", tickformat=".1%")
    subtitle = f"Spearman ρ, all points: {everything} · " + " · ".join(parts)
    _layout(fig, f"{label.split(' (')[0]} against target accuracy", rows, subtitle, 460)
    return fig


def _rho_text(x: Sequence[float], y: Sequence[float]) -> str:
    rho, p, n = spearman(x, y)
    if rho is None:
        return f"ρ = — (n = {n})"
    return f"ρ = {fmt(rho, 2)}, p = {fmt(p, 2)} (n = {n})"
