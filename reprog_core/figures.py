"""Plot builders: result records in, plotly figures out.

Pure functions over the JSON-safe dicts of ``reprog_core.results`` (as the backend returns them) and
the rows of ``reprog_core.pipeline.sweep_row``. No Streamlit here: the dashboard and the sweep's
HTML report draw the same figures, and the tests check them without a browser.

Every figure says what it shows. A kernel figure names the kernel (target NTK w.r.t. theta, or
source NTK), its form (trace N x N or full N*c_T x N*c_T), N and P; a figure made with a randomly
initialised backbone says so in its title and in a red banner, because a random-weights spectrum
looks just like a pretrained one and must never be mistaken for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reprog_core import transforms

Result = Mapping[str, Any]
TOP_PX = 115  # room above the plot area: title, a two-line subtitle, subplot titles

# One colour and one name per transform, so that every page draws vp / fc / ... alike.
TRANSFORM_COLORS = {k: t.colour for k, t in transforms.SPECS.items()}
PALETTE = ["#3b5bdb", "#e8590c", "#0ca678", "#ae3ec9", "#f59f00", "#1098ad", "#c2255c", "#5c940d"]
RANDOM_COLOR = "#c92a2a"
MUTED = "#868e96"

TRANSFORM_NAMES = {k: t.label for k, t in transforms.SPECS.items()}

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
}


# --------------------------------------------------------------------------- labels and notes
def weights_note(weights: str | None) -> str | None:
    """A warning line for a randomly initialised backbone; None when there is nothing to warn."""
    if weights == "random":
        return "RANDOM backbone weights: the CLIP tower was not pretrained"
    return None


def weights_description(weights: str | None, config: Mapping[str, Any] | None = None) -> str:
    """How the source model's weights came to be, in words."""
    cfg = config or {}
    src = cfg.get("source_data", "the source data")
    if weights in (None, "none"):
        return f"pixel model, trained from scratch on {src} (no pretrained backbone)"
    backbone = cfg.get("backbone", "CLIP")
    if weights == "random":
        return (
            f"CLIP tower {backbone} with RANDOM weights (not pretrained), frozen; "
            f"its CNN head trained on {src}"
        )
    return (
        f"CLIP tower {backbone} with pretrained weights '{weights}', frozen; head trained on {src}"
    )


def kernel_description(kernel: Result, sep: str = " · ") -> str:
    """One line naming the kernel: w.r.t. what, which form, N, c and P, and how it was computed.
    ``sep`` goes between what the kernel is and its form (``<br>`` in a figure subtitle)."""
    n, c, p = kernel.get("n"), kernel.get("n_outputs"), kernel.get("n_params")
    if kernel.get("wrt", "transform") == "source":
        what = f"source NTK K_S w.r.t. the source model's {_count(p)} trainable parameters"
    else:
        what = f"target NTK Θ_T w.r.t. θ, the input transformation's {_count(p)} parameters"
    if kernel.get("kernel") == "full":
        size = n * c if isinstance(n, int) and isinstance(c, int) else "N·c"
        form = f"full form ({size}×{size}: N·c_T rows, c_T = {c})"
    else:
        form = f"trace form ({n}×{n}, summed over the c = {c} outputs)"
    method = kernel.get("method")
    partial = (
        " · top eigenvalues only (Lanczos)" if (kernel.get("stats") or {}).get("partial") else ""
    )
    return f"{what}{sep}{form} · N = {n} samples" + (f" · {method}" if method else "") + partial


def fmt(value: Any, digits: int = 4) -> str:
    """A number for people: None/NaN as '—', large or tiny values in scientific notation."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def duration(seconds: Any) -> str:
    """A duration for people: '0.8 s', '46 s', '7 min 40 s', '2 h 05 min'; None/NaN as '—'."""
    try:
        x = float(seconds)
    except (TypeError, ValueError):
        return "—"
    if math.isnan(x) or x < 0:
        return "—"
    if x < 10:
        return f"{x:.1f} s"
    total = round(x)
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"


def pct(value: Any) -> str:
    """An accuracy in [0, 1] as a percentage."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * float(value):.1f}%"


def _count(p: Any) -> str:
    return f"P = {p:,}" if isinstance(p, int) else "P"


def _title(text: str, subtitle: str, weights: str | None) -> dict[str, Any]:
    note = weights_note(weights)
    if note:
        text = f"{text} — <span style='color:{RANDOM_COLOR}'>RANDOM backbone weights</span>"
    return {"text": text, "subtitle": {"text": subtitle}, "x": 0.01, "xanchor": "left"}


def _random_banner(fig: go.Figure, weights: str | None, plot_height: float) -> None:
    """A large translucent 'RANDOM WEIGHTS' watermark across the plot area and a red note at the
    right of the title row: both survive cropping, screenshots and HTML export, and neither hides
    data."""
    note = weights_note(weights)
    if not note:
        return
    fig.add_annotation(
        text="RANDOM WEIGHTS",
        name="random-weights-watermark",
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        textangle=-12,
        opacity=0.13,
        font={"color": RANDOM_COLOR, "size": 64},
    )
    fig.add_annotation(
        text=f"⚠ {note}",
        xref="paper",
        yref="paper",
        x=1,
        y=1 + (TOP_PX - 14) / max(plot_height, 1),
        xanchor="right",
        yanchor="top",
        showarrow=False,
        font={"color": "white", "size": 12},
        bgcolor=RANDOM_COLOR,
        borderpad=4,
    )


def _level(
    fig: go.Figure, y: float, text: str, color: str, dash: str, where: str, log: bool = True
) -> None:
    """A horizontal line across the plot with a label at its right or left end.

    Not ``add_hline``'s own label: on a log axis plotly places annotations at log10(y), and
    add_hline passes y unchanged, which put the label decades away from its line.
    """
    fig.add_hline(y=y, line={"dash": dash, "color": color, "width": 1.2})
    fig.add_annotation(
        text=text,
        xref="paper",
        x=1 if where.endswith("right") else 0,
        xanchor="right" if where.endswith("right") else "left",
        y=math.log10(y) if log else y,
        yanchor="bottom" if where.startswith("top") else "top",
        showarrow=False,
        font={"color": color, "size": 12},
        bgcolor="rgba(255,255,255,0.7)",
    )


def _footnote(fig: go.Figure, text: str, y: float = -0.22) -> None:
    fig.add_annotation(
        text=text,
        xref="paper",
        yref="paper",
        x=0,
        y=y,
        xanchor="left",
        yanchor="top",
        showarrow=False,
        align="left",
        font={"size": 11, "color": "#495057"},
    )


def _wrap(text: str, width: int = 130) -> str:
    """Break a long note into lines for a plotly annotation (which never wraps by itself)."""
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    if line:
        lines.append(line)
    return "<br>".join(lines)


def _below_px(height: int, bottom: int, px: float) -> float:
    """Paper y coordinate ``px`` pixels under the plot area (plotly places legends and notes in
    fractions of the plot area, which changes with the figure's height)."""
    return -px / max(height - TOP_PX - bottom, 1)


def _base_layout(
    fig: go.Figure,
    height: int,
    bottom: int = 110,
    legend_px: float = 52,
    vertical_legend: bool = False,
    weights: str | None = None,
) -> go.Figure:
    """Shared look: title and subtitle on top, the legend under the x axis title, and the
    random-weights marks when ``weights`` is 'random'."""
    _random_banner(fig, weights, height - TOP_PX - bottom)
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 70, "r": 20, "t": TOP_PX, "b": bottom},
        legend={
            "orientation": "v" if vertical_legend else "h",
            "yanchor": "top",
            "y": _below_px(height, bottom, legend_px),
            "xanchor": "left",
            "x": 0,
        },
        hovermode="closest",
    )
    return fig


# --------------------------------------------------------------------------- spectrum
def _positive_floor(stats: Mapping[str, Any]) -> float:
    """Where to draw eigenvalues that are numerically zero on a log axis: a decade below the
    tolerance (or below the smallest positive eigenvalue when there is no tolerance)."""
    tol = float(stats.get("rank_tol") or 0.0)
    eig = np.asarray(stats.get("eigenvalues") or [], dtype=float)
    pos = eig[eig > 0]
    ref = tol if tol > 0 else (pos.min() if pos.size else 1.0)
    return ref / 10.0


def spectrum_figure(
    kernel: Result, weights: str | None = None, title: str | None = None
) -> go.Figure:
    """Eigenvalues (descending, log scale) of one kernel, with λ_min, the tolerance and the rank
    marked. ``kernel`` is a KernelResult dict; ``weights`` its weights label (defaults to the
    kernel's own)."""
    stats = kernel.get("stats") or {}
    weights = weights if weights is not None else kernel.get("weights")
    eig = np.asarray(stats.get("eigenvalues") or [], dtype=float)
    idx = np.arange(1, eig.size + 1)
    tol = float(stats.get("rank_tol") or 0.0)
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
    lam_min = stats.get("lambda_min")
    if lam_min and lam_min > 0:
        _level(fig, lam_min, f"λ_min = {fmt(lam_min, 3)}", "#e8590c", "dot", "bottom right")
    if tol > 0 and (~above).any():
        # Only when something falls below it: otherwise the line would stretch the axis decades
        # below the spectrum (the tolerance is always in the statistics table).
        _level(fig, tol, f"rank tolerance {tol:.1e}", MUTED, "dash", "top right")
    rank = stats.get("rank")
    if isinstance(rank, int) and eig.size:
        fig.add_vline(
            x=rank + 0.5 if rank < eig.size else rank,
            line={"dash": "dash", "color": "#0ca678"},
            annotation_text=f"rank = {rank} of {eig.size}",
            annotation_position="top left" if rank > eig.size / 2 else "top right",
            annotation_font_color="#0ca678",
        )
    fig.update_yaxes(
        type="log",
        title="eigenvalue λ_i (log scale)",
        exponentformat="power",
        dtick=_decade_dtick(fig),
    )
    fig.update_xaxes(title="index i (largest first)")
    head = title or (
        "Eigenvalue spectrum of the "
        + ("source NTK" if kernel.get("wrt") == "source" else "target NTK")
    )
    fig.update_layout(title=_title(head, kernel_description(kernel, sep="<br>"), weights))
    return _base_layout(fig, 480, weights=weights)


def spectrum_stats_rows(kernel: Result) -> list[dict[str, str]]:
    """The statistics table: one row per statistic with its value and what it means."""
    s = kernel.get("stats") or {}
    n_eig = len(s.get("eigenvalues") or [])
    targets = s.get("alignment_targets") or "targets"
    rows = [
        ("λ_max", fmt(s.get("lambda_max")), "largest eigenvalue: the fastest direction to fit"),
        (
            "λ_min",
            fmt(s.get("lambda_min")),
            f"smallest eigenvalue above the tolerance: the slowest direction that can still be "
            f"fitted (raw smallest: {fmt(s.get('lambda_min_raw'), 3)})",
        ),
        (
            "numerical rank",
            f"{s.get('rank', '—')} of {n_eig}",
            f"eigenvalues above the tolerance {fmt(s.get('rank_tol'), 2)}; the other directions "
            "cannot be fitted at all",
        ),
        (
            "condition number",
            fmt(s.get("condition_number")),
            "λ_max / λ_min: how unevenly fast the directions are fitted (lower is better)",
        ),
        ("trace", fmt(s.get("trace")), "sum of the eigenvalues"),
        (
            "effective rank",
            fmt(s.get("effective_rank")),
            "exp(entropy of λ/Σλ): how many directions carry the kernel's weight",
        ),
        (
            "decay exponent α",
            fmt(s.get("decay_exponent")),
            "power-law fit λ_i ∝ i^−α to the top of the spectrum: larger means faster decay",
        ),
        (
            "kernel-target alignment",
            fmt(s.get("alignment")),
            f"yᵀKy / (‖K‖_F ‖y‖²) with {targets}: near 1, the labels lie along fast directions",
        ),
        (
            "Σ|Θ(x,x')| / N",
            fmt(s.get("abs_sum_over_n")),
            "the paper's generalisation-gap term (smaller is better)",
        ),
        (
            "negative eigenvalues",
            str(s.get("n_negative", "—")),
            "below −tolerance: should be 0, a kernel is positive semi-definite",
        ),
    ]
    if s.get("partial"):
        rows.append(("partial", "yes", "only the top eigenvalues were computed (Lanczos)"))
    return [{"statistic": a, "value": b, "what it means": c} for a, b, c in rows]


def spectra_overlay_figure(kernels: Sequence[Result | None], labels: Sequence[str]) -> go.Figure:
    """Several spectra on one log axis, each normalised by nothing: absolute eigenvalues, so a
    larger kernel sits higher. Legend entries name each kernel's form and N."""
    fig = go.Figure()
    any_random = False
    for i, (kernel, label) in enumerate(zip(kernels, labels)):
        if not kernel:
            continue
        stats = kernel.get("stats") or {}
        eig = np.asarray(stats.get("eigenvalues") or [], dtype=float)
        floor = _positive_floor(stats)
        is_random = kernel.get("weights") == "random"
        any_random |= is_random
        color = PALETTE[i % len(PALETTE)]
        name = f"{label} · {kernel.get('kernel')} form, N = {kernel.get('n')}"
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
        lam_min = stats.get("lambda_min")
        if lam_min and lam_min > 0:
            fig.add_hline(y=lam_min, line={"dash": "dot", "color": color, "width": 1})
    fig.update_yaxes(
        type="log",
        title="eigenvalue λ_i (log scale)",
        exponentformat="power",
        dtick=_decade_dtick(fig),
    )
    fig.update_xaxes(title="index i (largest first)")
    fig.update_layout(
        title=_title(
            "Target NTK spectra, overlaid",
            "dotted lines: each config's λ_min · eigenvalues at or below the tolerance are drawn "
            "at a floor",
            "random" if any_random else None,
        ),
    )
    n_curves = sum(1 for k in kernels if k)
    bottom = 70 + 20 * n_curves
    fig.update_layout(showlegend=True)  # plotly hides a one-entry legend; it names the config
    return _base_layout(
        fig,
        360 + bottom,
        bottom=bottom,
        vertical_legend=True,
        weights="random" if any_random else None,
    )


# --------------------------------------------------------------------------- fit curves
PREDICTION_COLOR = "#e8590c"
EXPLODES = 10.0  # a prediction above this many times the initial measured loss "explodes"


def _measured_kernel_loss(fit: Result) -> tuple[list[int], list[float]]:
    """(steps, squared loss on the kernel samples): every step of the kernel regime's record
    when there is one, else the fit's sparse evaluation points."""
    kr = fit.get("kernel_regime") or {}
    if kr.get("steps"):
        return list(kr["steps"]), list(kr["measured_loss"])
    c = fit.get("curves") or {}
    return list(c.get("eval_step") or []), list(c.get("kernel_loss") or [])


def prediction_horizon(kr: Mapping[str, Any]) -> tuple[list[int], list[float]]:
    """The part of the kernel regime's prediction that is drawn: the steps up to and including
    ``agree_until`` (where it is within ``agreement_tol`` of the measured loss); empty when they
    differ from the first step."""
    until = kr.get("agree_until")
    if until is None:
        return [], []
    pairs = [(t, p) for t, p in zip(kr.get("steps") or [], kr.get("predicted_loss") or [])]
    return [t for t, _ in pairs if t <= until], [p for t, p in pairs if t <= until]


def prediction_explodes(kr: Mapping[str, Any]) -> str | None:
    """A sentence when the full prediction (drawn or not) runs away: non-finite, or above
    ``EXPLODES`` times the initial measured loss. None otherwise."""
    pred = np.asarray(
        [np.nan if v is None else v for v in kr.get("predicted_loss") or []], dtype=float
    )
    meas = [v for v in kr.get("measured_loss") or [] if v is not None]
    if not pred.size or not meas:
        return None
    steps = list(kr.get("steps") or range(pred.size))
    ref = float(meas[0]) if meas[0] else float(max(meas))
    bad = ~np.isfinite(pred) | (pred > EXPLODES * ref)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    peak = "is no longer finite" if not np.isfinite(pred[i]) else f"reaches {fmt(pred[i], 3)}"
    return (
        f"The NTK prediction explodes: it {peak} at step {steps[i]} (η·λ_max/N = "
        f"{fmt(kr.get('lr_lambda_max_over_n'), 3)}; above 2 gradient descent on the linearised "
        "model diverges along the stiffest direction). It is not drawn past the agreement horizon."
    )


def _draw_prediction(
    fig: go.Figure,
    kr: Mapping[str, Any],
    *,
    color: str,
    row: int,
    col: int,
    label: str = "",
    dash: str = "solid",
    show_legend: bool = True,
) -> None:
    """The kernel regime's prediction up to ``agree_until``, and a vertical marker at
    ``parted_at`` naming the kernel drift there."""
    xs, ys = prediction_horizon(kr)
    tol = kr.get("agreement_tol", 0.1)
    if xs:
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=(f"{label}: " if label else "")
                + f"NTK prediction, full kernel (within {tol:.0%} up to step {xs[-1]})",
                legendgroup=label or None,
                showlegend=show_legend,
                line={"color": color, "width": 2, "dash": dash},
            ),
            row=row,
            col=col,
        )
    parted = kr.get("parted_at")
    last = max(kr.get("steps") or [1])
    if parted is not None:
        drift = kr.get("drift_at_parting")
        why = f"kernel drift {fmt(drift, 2)}" if drift is not None else "kernel drift unknown"
        fig.add_vline(
            x=parted,
            row=row,
            col=col,
            line={"dash": "dot", "color": color, "width": 1.5},
            annotation_text=(f"{label}: " if label else "")
            + f"prediction and fit part here ({why})",
            # Written on the side with room: near the right end it would run into the next panel.
            annotation_position="top left" if parted > 0.6 * last else "top right",
            annotation_font={"color": color, "size": 11},
            annotation_bgcolor="rgba(255,255,255,0.75)",
        )


def _measured_loss_axis(fig: go.Figure, values: Sequence[Any], row: int, col: int) -> None:
    """Log scale when the measured loss falls by more than a decade (exponential decay reads as a
    line), linear otherwise, with the range set from the measured values only: nothing drawn
    with them (a prediction) can stretch the axis."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return
    pos = v[v > 0]
    if pos.size and pos.max() / pos.min() > 10:
        lo, hi = math.log10(pos.min()) - 0.1, math.log10(pos.max()) + 0.1
        fig.update_yaxes(type="log", exponentformat="power", range=[lo, hi], row=row, col=col)
    else:
        lo, hi = float(v.min()), float(v.max())
        pad = 0.08 * (hi - lo) if hi > lo else 0.1 * abs(hi) or 0.1
        fig.update_yaxes(
            range=[max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad], row=row, col=col
        )


def kernel_regime_caption(kr: Mapping[str, Any]) -> str:
    """What the kernel-regime figure shows, in words: ρ, η, η·λ_max/N, the agreement horizon and
    the loss drop within it, where prediction and fit part and the kernel drift there and at the
    end."""
    tol = kr.get("agreement_tol", 0.1)
    steps = kr.get("steps") or [0]
    parts = [
        f"Kernel regime: full-batch gradient descent on squared loss over the N = {kr.get('n')} "
        f"kernel samples, step size η = ρ·N/λ_max = {fmt(kr.get('lr'), 3)} with ρ = "
        f"{fmt(kr.get('rho'), 3)} (η·λ_max/N = {fmt(kr.get('lr_lambda_max_over_n'), 3)}; λ_max "
        f"= {fmt(kr.get('lambda_max_full'), 3)} of the full kernel, N·c_T = "
        f"{_nc(kr)} rows). The prediction is the linearised model's loss from the full kernel "
        "at θ₀."
    ]
    until, parted = kr.get("agree_until"), kr.get("parted_at")
    drop = f"{100 * float(kr.get('loss_drop') or 0.0):.0f}%"
    if until is None:
        parts.append(
            f"Prediction and fit differ by more than {tol:.0%} from the first step, so no "
            "prediction is drawn."
        )
    elif parted is None:
        parts.append(
            f"It stays within {tol:.0%} of the measured loss over all {steps[-1]} steps "
            f"(worst {100 * float(kr.get('worst_error') or 0):.1f}%), while the measured loss "
            f"falls by {drop}."
        )
    else:
        dp = kr.get("drift_at_parting")
        parts.append(
            f"It stays within {tol:.0%} of the measured loss up to step {until} (worst "
            f"{100 * float(kr.get('worst_error') or 0):.1f}%), while the measured loss falls by "
            f"{drop}; they part at step {parted}, where the kernel has drifted by "
            f"{fmt(dp, 2)} (‖Θ(θ_t) − Θ(θ₀)‖_F / ‖Θ(θ₀)‖_F): the model is no longer linear in θ, "
            "so the prediction is not drawn beyond it."
        )
    parts.append(f"Kernel drift at the end (step {steps[-1]}): {fmt(kr.get('drift'), 2)}.")
    boom = prediction_explodes(kr)
    if boom:
        parts.append(boom)
    return " ".join(parts)


def _nc(kr: Mapping[str, Any]) -> str:
    n, c = kr.get("n"), kr.get("n_outputs")
    return f"{n * c}" if isinstance(n, int) and isinstance(c, int) else "N·c_T"


def practical_regime_note(config: Mapping[str, Any]) -> str:
    """Why a practical fit's loss axes carry no NTK prediction."""
    opt, loss = config.get("optimizer"), config.get("loss")
    batches = "full batch" if opt == "sgd" else f"minibatches of {config.get('batch_size', 'B')}"
    loss_name = {"ce": "cross-entropy", "mse": "squared loss"}.get(str(loss), str(loss))
    return (
        "No NTK prediction on these axes: the prediction models full-batch gradient descent on "
        f"squared loss with a fixed kernel, and this fit used {opt} on {loss_name} ({batches}), "
        "which it does not describe. What the spectrum does say about speed is under the "
        "spectrum (time scales of its modes). Switch on 'Kernel regime' in the sidebar to test "
        "the prediction against a fit it describes."
        + (
            " Cross-entropy rewards ever larger logits, so the squared loss on the kernel samples "
            "can rise while the accuracy improves: it is the loss the kernel regime minimises, "
            "not this fit's."
            if loss == "ce"
            else ""
        )
    )


def spectrum_timescales(kernel: Result | None, config: Mapping[str, Any]) -> str | None:
    """What the spectrum says about the speed of a fit, in words: the time scale N/(η λ_i) of the
    top and the bottom mode for full-batch gradient descent on squared loss at η = ρ N / λ_max,
    i.e. (λ_max / λ_i) / ρ steps. None when there is no spectrum."""
    stats = (kernel or {}).get("stats") or {}
    lam_max, lam_min = stats.get("lambda_max"), stats.get("lambda_min")
    if not kernel or not lam_max or not lam_min or lam_max <= 0 or lam_min <= 0:
        return None
    rho = float(config.get("rho") or 0.1)
    top, bottom = 1.0 / rho, lam_max / lam_min / rho
    steps = config.get("steps")
    rank, size = stats.get("rank"), len(stats.get("eigenvalues") or [])
    text = (
        f"Time scales, for full-batch gradient descent on squared loss at η = ρ·N/λ_max (ρ = "
        f"{fmt(rho, 3)}): the error along eigen-direction i shrinks by (1 − ρ·λ_i/λ_max) per "
        f"step, a time scale of N/(η·λ_i) = (λ_max/λ_i)/ρ steps. Top mode (λ_max): "
        f"{fmt(top, 3)} steps; slowest mode that can be fitted (λ_min): {fmt(bottom, 3)} steps"
    )
    if isinstance(steps, int) and steps > 0:
        text += f" (the fit runs {steps:,})"
    text += "."
    if isinstance(rank, int) and size and rank < size:
        text += f" The {size - rank} directions beyond the rank are not fitted at all."
    if kernel.get("kernel") == "trace":
        text += (
            " Read from the trace form, so the ratios are approximate: the dynamics use the full "
            "kernel."
        )
    if config.get("regime") != "kernel":
        text += (
            f" This fit uses {config.get('optimizer')} on {config.get('loss')} loss, so these "
            "are indicative, not a prediction of its curve."
        )
    return text


def fit_curves_figure(
    fit: Result, kernel: Result | None = None, weights: str | None = None
) -> go.Figure:
    """The reprogramming fit: training loss, the squared loss on the N kernel samples, and
    accuracy, all against the step.

    The NTK prediction is drawn on the loss axes only where it describes the fit: in the kernel
    regime (``fit['kernel_regime']``: full-batch GD on squared loss, step size from the full
    kernel), and there only up to the step where it stays within the agreement tolerance of the
    measured loss, with the step where they part marked and the kernel drift named. A practical
    fit (Adam, cross-entropy, minibatches) gets no prediction on its axes; what the spectrum says
    about it is ``spectrum_timescales``. The y-range follows the measured loss.

    ``fit`` is a FitResult dict; ``kernel`` the KernelResult dict (None for transform 'none').
    """
    curves = fit.get("curves") or {}
    cfg = fit.get("config") or {}
    weights = weights if weights is not None else fit.get("weights")
    kr = fit.get("kernel_regime") or None
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=(
            f"training loss ({'cross-entropy' if cfg.get('loss') == 'ce' else 'squared'}, "
            "per batch)",
            # Short: a longer title runs into its neighbours'; the y axis says what the loss is.
            "measured vs NTK prediction" if kr else "squared loss on the kernel samples",
            "accuracy",
        ),
        horizontal_spacing=0.07,
    )
    fig.add_trace(
        go.Scatter(
            x=curves.get("step", []),
            y=curves.get("train_loss", []),
            mode="lines",
            name="training loss (per batch)",
            line={"color": MUTED, "width": 1},
        ),
        row=1,
        col=1,
    )
    measured_x, measured_y = _measured_kernel_loss(fit)
    fig.add_trace(
        go.Scatter(
            x=measured_x,
            y=measured_y,
            mode="lines+markers" if len(measured_x) <= 60 else "lines",
            name="measured squared loss (kernel samples)",
            line={"color": PALETTE[0], "width": 2.5},
            marker={"size": 6},
        ),
        row=1,
        col=2,
    )
    if kr:
        _draw_prediction(fig, kr, color=PREDICTION_COLOR, row=1, col=2)
    fig.add_trace(
        go.Scatter(
            x=curves.get("step", []),
            y=curves.get("train_acc", []),
            mode="lines",
            name="training accuracy (per batch)",
            line={"color": MUTED, "width": 1},
            opacity=0.7,
        ),
        row=1,
        col=3,
    )
    fig.add_trace(
        go.Scatter(
            x=curves.get("eval_step", []),
            y=curves.get("test_acc", []),
            mode="lines+markers",
            name="target test accuracy",
            line={"color": "#0ca678", "width": 2},
            marker={"size": 6},
        ),
        row=1,
        col=3,
    )
    base = fit.get("baseline_test_acc")
    if base is not None and not (isinstance(base, float) and math.isnan(base)):
        # Named in the legend, not written on the plot (a label there sat on the accuracy curve).
        steps_seen = [*curves.get("eval_step", []), *curves.get("step", [])]
        x_end = max(steps_seen) if steps_seen else 1
        fig.add_trace(
            go.Scatter(
                x=[0, x_end],
                y=[base, base],
                mode="lines",
                name=f"baseline 'none' (nothing trained): {pct(base)}",
                line={"dash": "dot", "color": MUTED, "width": 1.5},
                hovertemplate=f"baseline 'none': {pct(base)}<extra></extra>",
            ),
            row=1,
            col=3,
        )
    _measured_loss_axis(fig, measured_y, row=1, col=2)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=3)
    fig.update_xaxes(title="step")
    if kernel is None and not kr:
        note = "No NTK prediction: transform 'none' has no parameters to take a kernel over."
    elif kr:
        note = kernel_regime_caption(kr)
    else:
        note = practical_regime_note(cfg)
    stopped = fit.get("stopped")
    if stopped:
        note = f"STOPPED EARLY (the fit diverged or broke off): {stopped}  " + note
    lines = _wrap(note)
    legend_rows = 22 if kr else 0  # the prediction's legend entry adds a row
    height, bottom = 560, 120 + legend_rows + 15 * (lines.count("<br>") + 1)
    _footnote(fig, lines, y=_below_px(height, bottom, 105 + legend_rows))
    if measured_x:
        # Annotations (the parting label) would otherwise widen the step axis past the data.
        span = max(measured_x) - min(measured_x) or 1
        fig.update_xaxes(
            range=[min(measured_x) - 0.03 * span, max(measured_x) + 0.03 * span], row=1, col=2
        )
    fig.update_yaxes(title="squared loss, N kernel samples", row=1, col=2)
    subtitle = (
        f"{TRANSFORM_NAMES.get(str(fit.get('transform')), fit.get('transform'))} · "
        f"{fmt(fit.get('n_params_transform'))} trainable parameters · optimizer "
        f"{cfg.get('optimizer')}, loss {cfg.get('loss')}, {cfg.get('steps')} steps · "
        f"target test accuracy {pct(fit.get('initial_test_acc'))} → "
        f"{pct(fit.get('target_test_acc'))}"
    )
    fig.update_layout(title=_title("Reprogramming fit: only θ is trained", subtitle, weights))
    return _base_layout(fig, height, bottom=bottom, weights=weights)


def curves_overlay_figure(
    fits: Sequence[Result | None], kernels: Sequence[Result | None], labels: Sequence[str]
) -> go.Figure:
    """Several fits: measured kernel-sample loss (solid) and test accuracy, one colour per
    config. A fit in the kernel regime also gets its NTK prediction (dashed) up to the step where
    it stops agreeing with the measured loss, and a dotted marker where they part; a practical
    fit gets none. The loss axis follows the measured values only."""
    any_kr = any((f or {}).get("kernel_regime") for f in fits)
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            "squared loss on the kernel samples: measured (solid)"
            + (", NTK prediction where it holds (dashed)" if any_kr else ""),
            "target test accuracy",
        ),
        horizontal_spacing=0.08,
    )
    any_random = False
    measured_all: list[float] = []
    for i, (fit, _kernel, label) in enumerate(zip(fits, kernels, labels)):
        if not fit:
            continue
        any_random |= fit.get("weights") == "random"
        color = PALETTE[i % len(PALETTE)]
        c = fit.get("curves") or {}
        mx, my = _measured_kernel_loss(fit)
        measured_all += my
        fig.add_trace(
            go.Scatter(
                x=mx,
                y=my,
                mode="lines+markers" if len(mx) <= 60 else "lines",
                name=label,
                legendgroup=label,
                line={"color": color, "width": 2},
                marker={"size": 5},
            ),
            row=1,
            col=1,
        )
        kr = fit.get("kernel_regime")
        if kr:
            _draw_prediction(
                fig,
                kr,
                color=color,
                row=1,
                col=1,
                label=label.split(":")[0],
                dash="dash",
                show_legend=False,
            )
        fig.add_trace(
            go.Scatter(
                x=c.get("eval_step"),
                y=c.get("test_acc"),
                mode="lines+markers",
                name=label,
                legendgroup=label,
                showlegend=False,
                line={"color": color, "width": 2},
                marker={"size": 5},
            ),
            row=1,
            col=2,
        )
    _measured_loss_axis(fig, measured_all, row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=2)
    fig.update_xaxes(title="step")
    weights = "random" if any_random else None
    fig.update_layout(
        title=_title(
            "Reprogramming fits, overlaid",
            "the NTK prediction is drawn only for fits in the kernel regime (full-batch gradient "
            "descent on squared loss), and only while it agrees with the measured loss",
            weights,
        )
    )
    return _base_layout(fig, 430, weights=weights)


def _decade_dtick(fig: go.Figure) -> int | str | None:
    """One tick per decade when the data span two decades or more (plotly otherwise labels the
    2s and 5s in between, which crowds a spectrum); None leaves plotly's choice."""
    ys = [np.asarray(t.y, dtype=float) for t in fig.data if getattr(t, "y", None) is not None]
    v = np.concatenate(ys) if ys else np.array([])
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return None
    # Under two decades: label 2 and 5 between the powers of ten, not every digit.
    return 1 if np.log10(v.max() / v.min()) >= 2 else "D2"


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _log_ticks(*values: Any) -> dict[str, Any]:
    """Tick positions and labels for a log axis over ``values``, every one labelled in full.

    Plotly's own log ticks label the 2s and 5s between the powers of ten with a bare small digit,
    which reads as stray numbers. Here: one tick per decade (thinned to at most 8) when the data
    span 1.5 decades or more; otherwise 1, 2 and 5 times each power of ten, each written out.
    """
    arrays = [np.asarray(v, dtype=float).ravel() for v in values]
    v = np.concatenate(arrays) if arrays else np.array([])
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return {"exponentformat": "power"}
    lo, hi = math.floor(math.log10(v.min())), math.ceil(math.log10(v.max()))
    if math.log10(v.max() / v.min()) >= 1.5:
        step = max(1, math.ceil((hi - lo + 1) / 8))
        ticks = [10.0**e for e in range(lo, hi + 1, step)]
    else:
        ticks = [m * 10.0**e for e in range(lo, hi + 1) for m in (1, 2, 5)]
        ticks = [t for t in ticks if v.min() / 2 <= t <= v.max() * 2]

    def label(t: float) -> str:
        e = math.floor(math.log10(t) + 1e-9)
        m = round(t / 10.0**e)
        if -2 <= e <= 3:
            return f"{t:g}"
        power = f"10{str(e).translate(_SUPERSCRIPT)}"
        return power if m == 1 else f"{m}×{power}"

    return {"tickvals": ticks, "ticktext": [label(t) for t in ticks], "minor": {"showgrid": False}}


# --------------------------------------------------------------------------- images
def image_to_uint8(image: Any) -> np.ndarray:
    """A 3xHxW (or HxW) nested list / array in [0, 1] -> an HxWx3 uint8 array for display."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 2:
        a = np.repeat(a[None], 3, axis=0)
    if a.ndim != 3:
        raise ValueError(f"expected a 3xHxW image, got shape {a.shape}")
    if a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.transpose(a, (1, 2, 0))
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return (np.clip(np.nan_to_num(a), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def transform_examples_figure(
    fit: Result, max_examples: int = 6, weights: str | None = None
) -> go.Figure:
    """Target images before and after a_θ, and the learned prompt.

    Top row: the target image resized to the source size; bottom row: what the frozen source model
    actually sees after the transformation; right: the prompt itself (vp, vp-full, vp-fc).
    """
    before = list(fit.get("examples_before") or [])[:max_examples]
    after = list(fit.get("examples_after") or [])[:max_examples]
    prompt = fit.get("prompt")
    n = max(len(before), len(after), 1)
    cols = n + (1 if prompt is not None else 0)
    specs: list[list[dict[str, Any] | None]] = [[{} for _ in range(cols)] for _ in range(2)]
    titles = [f"target {i + 1}" for i in range(n)]
    if prompt is not None:
        specs[0][-1] = {"rowspan": 2}
        specs[1][-1] = None
        titles.append("learned prompt")
    titles += [f"after a_θ {i + 1}" for i in range(n)]
    fig = make_subplots(
        rows=2,
        cols=cols,
        specs=specs,
        subplot_titles=titles,
        horizontal_spacing=0.015,
        vertical_spacing=0.1,
    )
    for i, img in enumerate(before):
        fig.add_trace(go.Image(z=image_to_uint8(img), hoverinfo="skip"), row=1, col=i + 1)
    for i, img in enumerate(after):
        fig.add_trace(go.Image(z=image_to_uint8(img), hoverinfo="skip"), row=2, col=i + 1)
    if prompt is not None:
        fig.add_trace(go.Image(z=image_to_uint8(prompt), hoverinfo="skip"), row=1, col=cols)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    what = TRANSFORM_NAMES.get(str(fit.get("transform")), str(fit.get("transform")))
    weights = weights if weights is not None else fit.get("weights")
    fig.update_layout(
        title=_title(
            "What the frozen source model sees",
            f"top: target images resized to the source size · bottom: after the trained "
            f"transformation ({what})"
            + (" · right: the learned prompt" if prompt is not None else ""),
            weights,
        ),
        template="plotly_white",
        height=380,
        margin={"l": 10, "r": 10, "t": TOP_PX, "b": 10},
    )
    return fig


# --------------------------------------------------------------------------- source model
def source_card_rows(source: Result, config: Mapping[str, Any]) -> list[dict[str, str]]:
    """The source model card as (property, value) rows."""
    fam = config.get("source_family")
    arch = {
        "cnn": f"pixel CNN, depth {config.get('depth')} (3×3 conv + ReLU blocks), width "
        f"{config.get('width')}",
        "mlp": f"pixel MLP, depth {config.get('depth')}, width {config.get('width')}",
        "clip-cnn": f"frozen CLIP tower {config.get('backbone')} + trainable CNN head of depth "
        f"{config.get('depth')}",
    }.get(str(fam), str(fam))
    rows = [
        ("model", arch),
        ("weights", weights_description(source.get("weights"), config)),
        (
            "source data",
            f"{config.get('source_data')} at {config.get('source_size')}×"
            f"{config.get('source_size')}, {config.get('source_per_class')} images per class",
        ),
        (
            "source accuracy",
            f"test {pct(source.get('source_test_acc'))} · "
            f"train {pct(source.get('source_train_acc'))}",
        ),
        (
            "parameters",
            f"{fmt(source.get('n_params_trainable'))} trained · "
            f"{fmt(source.get('n_params_frozen'))} frozen backbone",
        ),
        (
            "training",
            f"{source.get('epochs_run')} of at most {config.get('source_epochs')} epochs, "
            f"{duration(source.get('seconds'))}",
        ),
    ]
    return [{"property": a, "value": b} for a, b in rows]


# --------------------------------------------------------------------------- depth sweep
def convergence_demo_figure(demo: Result) -> go.Figure:
    """``reprog_core.demos.spectrum_convergence`` output: the kernel's eigenvalues, and the loss of
    real gradient descent against the spectral prediction, split by eigen-direction."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("the kernel's eigenvalues", "squared loss during gradient descent"),
        column_widths=[0.38, 0.62],
        horizontal_spacing=0.1,
    )
    eig = np.asarray(demo["eigenvalues"], dtype=float)
    fig.add_trace(
        go.Scatter(
            x=np.arange(1, eig.size + 1),
            y=eig,
            mode="markers",
            name="eigenvalue λ_i",
            showlegend=False,
            marker={"color": PALETTE[0]},
        ),
        row=1,
        col=1,
    )
    steps = demo["step"]
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=demo["loss_measured"],
            mode="lines",
            name="measured (real GD)",
            line={"color": "#1f2430", "width": 3},
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=demo["loss_predicted"],
            mode="lines",
            name="predicted from the eigenvalues",
            line={"color": "#e8590c", "width": 2, "dash": "dash"},
        ),
        row=1,
        col=2,
    )
    for j, (name, part) in enumerate(demo["loss_by_group"].items()):
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=part,
                mode="lines",
                name=f"part along {name}",
                line={"color": PALETTE[(j + 2) % len(PALETTE)], "width": 1.5, "dash": "dot"},
            ),
            row=1,
            col=2,
        )
    fig.update_yaxes(type="log", row=1, col=1, title="λ_i", **_log_ticks(eig))
    losses = [demo["loss_measured"], demo["loss_predicted"], *demo["loss_by_group"].values()]
    fig.update_yaxes(type="log", row=1, col=2, title="loss", **_log_ticks(*losses))
    fig.update_xaxes(title="index i", row=1, col=1)
    fig.update_xaxes(title="gradient-descent step", row=1, col=2)
    fig.update_layout(
        template="plotly_white",
        height=400,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "v", "x": 1.01, "y": 1},
    )
    return fig


def width_demo_figure(demo: Result) -> go.Figure:
    """``reprog_core.demos.ntk_width_convergence`` output: Θ(x₀, x(γ)) along a circle of inputs,
    empirical at each width against the analytic infinite-width kernel, and the error vs width."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("NTK between x₀ and points on a circle", "relative error vs width"),
        column_widths=[0.6, 0.4],
        horizontal_spacing=0.1,
    )
    gamma = demo["angle"]
    widths = demo["widths"]
    for j, w in enumerate(widths):
        color = PALETTE[j % len(PALETTE)]
        for s, curve in enumerate(demo["empirical"][j]):
            fig.add_trace(
                go.Scatter(
                    x=gamma,
                    y=curve,
                    mode="lines",
                    name=f"width {w}",
                    legendgroup=str(w),
                    showlegend=s == 0,
                    line={"color": color, "width": 1},
                    opacity=0.75,
                ),
                row=1,
                col=1,
            )
    fig.add_trace(
        go.Scatter(
            x=gamma,
            y=demo["analytic"],
            mode="lines",
            name="analytic (infinite width)",
            line={"color": "#1f2430", "width": 3},
        ),
        row=1,
        col=1,
    )
    err = np.asarray(demo["error_mean"], dtype=float)
    fig.add_trace(
        go.Scatter(
            x=widths,
            y=err,
            mode="lines+markers",
            name="measured error",
            error_y={"type": "data", "array": demo["error_std"], "visible": True},
            line={"color": PALETTE[0]},
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    ref = err[0] * np.sqrt(widths[0] / np.asarray(widths, dtype=float))
    fig.add_trace(
        go.Scatter(
            x=widths, y=ref, mode="lines", name="∝ 1/√width", line={"color": MUTED, "dash": "dash"}
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title="angle γ between x₀ and x (radians)", row=1, col=1)
    fig.update_yaxes(title="Θ(x₀, x)", row=1, col=1)
    fig.update_xaxes(type="log", title="hidden width", tickvals=widths, row=1, col=2)
    fig.update_yaxes(
        type="log",
        title="‖Θ_emp − Θ‖_F / ‖Θ‖_F",
        row=1,
        col=2,
        **_log_ticks(err, ref, err + np.asarray(demo["error_std"], dtype=float)),
    )
    fig.update_layout(
        template="plotly_white",
        height=420,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.2, "x": 0},
    )
    return fig


def to_standalone_html(fig: go.Figure) -> str:
    """A figure as one self-contained HTML page (plotly.js inlined, works offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)
