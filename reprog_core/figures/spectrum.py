"""Kernel spectra: one kernel's eigenvalues with λ_min, the tolerance and the rank marked, its
statistics as a table, and several spectra overlaid.

Every kernel figure names the kernel (target NTK w.r.t. θ, or source NTK), its form (trace N x N
or full N*c_T x N*c_T), N and P.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from reprog_core.figures.theme import (
    MUTED,
    PALETTE,
    base_layout,
    decade_dtick,
    fmt,
    level,
    pct,
    title_layout,
)
from reprog_core.results import KernelResult, SpectrumStats

# Spectral statistics a user can plot against accuracy: key -> (label, better when, log axis).
SPECTRAL_STATS: dict[str, tuple[str, str, bool]] = {
    "lambda_min": ("λ_min (smallest eigenvalue above tolerance)", "higher", True),
    "effective_rank": ("effective rank", "higher", False),
    "rank": ("numerical rank", "higher", False),
    "lambda_max": ("λ_max (largest eigenvalue)", "higher", True),
    "condition_number": ("condition number λ_max / λ_min", "lower", True),
    "trace": ("trace (sum of eigenvalues)", "higher", True),
    "alignment": ("kernel-target alignment", "higher", False),
    "decay_exponent": ("decay exponent α (λ_i ∝ i^−α)", "lower", False),
    "abs_sum_over_n": ("Σ|Θ(x,x')| / N (generalisation-gap term)", "lower", True),
    "regression_acc": ("kernel regression accuracy (held-out)", "higher", False),
}


def kernel_description(kernel: KernelResult, sep: str = " · ") -> str:
    """One line naming the kernel: w.r.t. what, which form, N, c and P, and how it was computed.
    ``sep`` goes between what the kernel is and its form (``<br>`` in a figure subtitle)."""
    n, c, p = kernel.n, kernel.n_outputs, kernel.n_params
    if kernel.wrt == "source":
        what = f"source NTK K_S w.r.t. the source model's P = {p:,} trainable parameters"
    else:
        what = f"target NTK Θ_T w.r.t. θ, the input transformation's P = {p:,} parameters"
    if kernel.kernel == "full":
        size = n * c
        form = f"full form ({size}×{size}: N·c_T rows, c_T = {c})"
    else:
        form = f"trace form ({n}×{n}, summed over the c = {c} outputs)"
    method = kernel.method
    partial = " · top eigenvalues only (Lanczos)" if kernel.stats.partial else ""
    return f"{what}{sep}{form} · N = {n} samples" + (f" · {method}" if method else "") + partial


def _positive_floor(stats: SpectrumStats) -> float:
    """Where to draw eigenvalues that are numerically zero on a log axis: a decade below the
    tolerance (or below the smallest positive eigenvalue when there is no tolerance)."""
    tol = float(stats.rank_tol or 0.0)
    eig = np.asarray(stats.eigenvalues, dtype=float)
    pos = eig[eig > 0]
    ref = tol if tol > 0 else (pos.min() if pos.size else 1.0)
    return ref / 10.0


def spectrum_figure(
    kernel: KernelResult, weights: str | None = None, title: str | None = None
) -> go.Figure:
    """Eigenvalues (descending, log scale) of one kernel, with λ_min, the tolerance and the rank
    marked. ``weights`` is the weights label (defaults to the kernel's own)."""
    stats = kernel.stats
    weights = weights if weights is not None else kernel.weights
    eig = np.asarray(stats.eigenvalues, dtype=float)
    idx = np.arange(1, eig.size + 1)
    tol = float(stats.rank_tol or 0.0)
    floor = _positive_floor(stats)
    above = eig > tol
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=idx[above],
            y=eig[above],
            mode="lines+markers",
            name="eigenvalue λ_i",
            marker={"size": 5, "color": PALETTE[0]},
            line={"color": PALETTE[0], "width": 1.5},
            hovertemplate="i = %{x}<br>λ_i = %{y:.4g}<extra></extra>",
        )
    )
    if (~above).any():
        # Zero (or slightly negative, from round-off) eigenvalues cannot sit on a log axis: draw
        # them at a floor, in grey, and say so in the legend.
        fig.add_trace(
            go.Scatter(
                x=idx[~above],
                y=np.full((~above).sum(), floor),
                mode="markers",
                name=f"numerically zero (≤ tolerance), drawn at {floor:.1e}",
                marker={"size": 5, "color": MUTED, "symbol": "x"},
                customdata=eig[~above],
                hovertemplate="i = %{x}<br>λ_i = %{customdata:.3g} (≤ tolerance)<extra></extra>",
            )
        )
    lam_min = stats.lambda_min
    if lam_min and lam_min > 0:
        level(fig, lam_min, f"λ_min = {fmt(lam_min, 3)}", PALETTE[1], "dot", "bottom right")
    if tol > 0 and (~above).any():
        # Only when something falls below it: otherwise the line would stretch the axis decades
        # below the spectrum (the tolerance is always in the statistics table).
        level(fig, tol, f"rank tolerance {tol:.1e}", MUTED, "dash", "top right")
    rank = stats.rank
    if isinstance(rank, int) and eig.size:
        fig.add_vline(
            x=rank + 0.5 if rank < eig.size else rank,
            line={"dash": "dash", "color": PALETTE[2]},
            annotation_text=f"rank = {rank} of {eig.size}",
            annotation_position="top left" if rank > eig.size / 2 else "top right",
            annotation_font_color=PALETTE[2],
        )
    _eigenvalue_axes(fig)
    head = title or (
        "Eigenvalue spectrum of the " + ("source NTK" if kernel.wrt == "source" else "target NTK")
    )
    fig.update_layout(title=title_layout(head, kernel_description(kernel, sep="<br>"), weights))
    return base_layout(fig, 480, weights=weights)


def spectrum_stats_rows(kernel: KernelResult) -> list[dict[str, str]]:
    """The statistics table: one row per statistic with its value and what it means."""
    s = kernel.stats
    n_eig = len(s.eigenvalues)
    targets = s.alignment_targets or "targets"
    rows = [
        ("λ_max", fmt(s.lambda_max), "largest eigenvalue: the fastest direction to fit"),
        (
            "λ_min",
            fmt(s.lambda_min),
            f"smallest eigenvalue above the tolerance: the slowest direction that can still be "
            f"fitted (raw smallest: {fmt(s.lambda_min_raw, 3)})",
        ),
        (
            "numerical rank",
            f"{s.rank} of {n_eig}",
            f"eigenvalues above the tolerance {fmt(s.rank_tol, 2)}; the other directions "
            "cannot be fitted at all",
        ),
        (
            "condition number",
            fmt(s.condition_number),
            "λ_max / λ_min: how unevenly fast the directions are fitted (lower is better)",
        ),
        ("trace", fmt(s.trace), "sum of the eigenvalues"),
        (
            "effective rank",
            fmt(s.effective_rank),
            "exp(entropy of λ/Σλ): how many directions carry the kernel's weight",
        ),
        (
            "decay exponent α",
            fmt(s.decay_exponent),
            "power-law fit λ_i ∝ i^−α to the top of the spectrum: larger means faster decay",
        ),
        (
            "kernel-target alignment",
            fmt(s.alignment),
            f"yᵀKy / (‖K‖_F ‖y‖²) with {targets}: near 1, the labels lie along fast directions",
        ),
        (
            "Σ|Θ(x,x')| / N",
            fmt(s.abs_sum_over_n),
            "the paper's generalisation-gap term (smaller is better)",
        ),
        (
            "negative eigenvalues",
            str(s.n_negative),
            "below −tolerance: should be 0, a kernel is positive semi-definite",
        ),
    ]
    if kernel.regression_acc is not None:
        rows.insert(
            0,
            (
                "kernel regression accuracy",
                pct(kernel.regression_acc),
                f"ridge regression with this kernel from the N = {kernel.n} kernel samples "
                f"to {kernel.regression_heldout} held-out test images: does the kernel "
                "itself carry the target task? (chance: 1/c_T)",
            ),
        )
    if kernel.common_share is not None:
        rows.append(
            (
                "input-independent share",
                pct(kernel.common_share),
                "‖mean_i J_i‖² / mean_i ‖J_i‖² = 1ᵀK1 / (N tr K): how much of what θ does to the "
                "outputs is the same for every image (near 100 %: one dominant direction, which "
                "moves all images' predictions together)",
            )
        )
    if s.partial:
        rows.append(("partial", "yes", "only the top eigenvalues were computed (Lanczos)"))
    return [{"statistic": a, "value": b, "what it means": c} for a, b, c in rows]


def spectra_overlay_figure(
    kernels: Sequence[KernelResult | None], labels: Sequence[str]
) -> go.Figure:
    """Several spectra on one log axis, each normalised by nothing: absolute eigenvalues, so a
    larger kernel sits higher. Legend entries name each kernel's form and N; a None kernel (a
    configuration with transform 'none') is left out."""
    fig = go.Figure()
    random_in: list[str] = []
    for i, (kernel, label) in enumerate(zip(kernels, labels)):
        if kernel is None:
            continue
        stats = kernel.stats
        eig = np.asarray(stats.eigenvalues, dtype=float)
        floor = _positive_floor(stats)
        is_random = kernel.weights == "random"
        if is_random:
            random_in.append(_short(label))
        color = PALETTE[i % len(PALETTE)]
        name = f"{label} · {kernel.kernel} form, N = {kernel.n}"
        if is_random:
            name += " · RANDOM weights"
        fig.add_trace(
            go.Scatter(
                x=np.arange(1, eig.size + 1),
                y=np.maximum(eig, floor),
                mode="lines",
                name=name,
                line={"color": color, "width": 2},
                hovertemplate=f"{label}<br>i = %{{x}}<br>λ_i = %{{y:.4g}}<extra></extra>",
            )
        )
        lam_min = stats.lambda_min
        if lam_min and lam_min > 0:
            fig.add_hline(y=lam_min, line={"dash": "dot", "color": color, "width": 1})
    _eigenvalue_axes(fig)
    n_curves = sum(1 for k in kernels if k is not None)
    fig.update_layout(
        title=title_layout(
            "Target NTK spectra, overlaid",
            "dotted lines: each config's λ_min · eigenvalues at or below the tolerance are drawn "
            "at a floor",
            "random" if random_in else None,
            random_in if len(random_in) < n_curves else (),
        ),
    )
    bottom = 70 + 20 * n_curves
    fig.update_layout(showlegend=True)  # plotly hides a one-entry legend; it names the config
    return base_layout(
        fig,
        360 + bottom,
        bottom=bottom,
        vertical_legend=True,
        weights="random" if random_in else None,
        random_in=random_in if len(random_in) < n_curves else (),
    )


def _short(label: str) -> str:
    """'B' of 'B: weights random' (an overlay's label), else the label."""
    return label.split(":", 1)[0].strip() or label


def _eigenvalue_axes(fig: go.Figure) -> None:
    """Eigenvalue index against eigenvalue on a log axis with a tick per decade."""
    fig.update_yaxes(
        type="log",
        title="eigenvalue λ_i (log scale)",
        exponentformat="power",
        dtick=decade_dtick(fig),
    )
    fig.update_xaxes(title="index i (largest first)")
