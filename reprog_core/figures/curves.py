"""Fit curves: the squared loss on the kernel samples (with the NTK prediction where it holds) and
the test accuracy against the step, for one fit (``fit_curves_figure``) or several overlaid
(``curves_overlay_figure``). Both draw these two panels with the same functions
(``_loss_panel``, ``_accuracy_panel``); only the look of a fit differs (``_Look``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reprog_core.figures.captions import (
    CE_SQUARED_LOSS,
    kernel_regime_caption,
    practical_regime_note,
)
from reprog_core.figures.theme import (
    ACCURACY_COLOR,
    MUTED,
    PALETTE,
    PREDICTION_COLOR,
    TRANSFORM_NAMES,
    base_layout,
    below_px,
    fmt,
    footnote,
    pct,
    title_layout,
    wrap,
)
from reprog_core.results import FitResult, KernelRegime, KernelResult


@dataclass(frozen=True)
class _Look:
    """How one fit is drawn in the loss and accuracy panels. ``group`` is set when the fit is one
    of several: its traces share one legend entry, and its prediction is dashed and named by the
    group up to its first colon ('A: fc' -> 'A')."""

    loss_name: str
    accuracy_name: str
    color: str  # of the measured loss
    accuracy_color: str
    prediction_color: str
    loss_width: float
    marker: int
    group: str | None = None


ALONE = _Look(
    loss_name="measured squared loss (kernel samples)",
    accuracy_name="target test accuracy",
    color=PALETTE[0],
    accuracy_color=ACCURACY_COLOR,
    prediction_color=PREDICTION_COLOR,
    loss_width=2.5,
    marker=6,
)


def _overlaid(label: str, color: str) -> _Look:
    return _Look(label, label, color, color, color, loss_width=2, marker=5, group=label)


def _measured_kernel_loss(fit: FitResult) -> tuple[list[int], list[float]]:
    """(steps, squared loss on the kernel samples): every step of the kernel regime's record
    when there is one, else the fit's sparse evaluation points."""
    kr = fit.kernel_regime
    if kr is not None and kr.steps:
        return list(kr.steps), list(kr.measured_loss)
    return list(fit.curves.eval_step), list(fit.curves.kernel_loss)


def prediction_horizon(kr: KernelRegime) -> tuple[list[int], list[float]]:
    """The part of the kernel regime's prediction that is drawn: the steps up to and including
    ``agree_until`` (where it is within ``agreement_tol`` of the measured loss); empty when they
    differ from the first step."""
    until = kr.agree_until
    if until is None:
        return [], []
    pairs = list(zip(kr.steps, kr.predicted_loss))
    return [t for t, _ in pairs if t <= until], [p for t, p in pairs if t <= until]


def _draw_prediction(fig: go.Figure, kr: KernelRegime, look: _Look, col: int) -> None:
    """The kernel regime's prediction up to ``agree_until``, and a vertical marker at
    ``parted_at`` naming the kernel drift there."""
    label = look.group.split(":")[0] if look.group else ""
    color = look.prediction_color
    xs, ys = prediction_horizon(kr)
    tol = kr.agreement_tol
    if xs:
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=(f"{label}: " if label else "")
                + f"NTK prediction, full kernel (within {tol:.0%} up to step {xs[-1]})",
                legendgroup=label or None,
                showlegend=look.group is None,
                line={"color": color, "width": 2, "dash": "dash" if look.group else "solid"},
            ),
            row=1,
            col=col,
        )
    parted = kr.parted_at
    last = max(kr.steps or [1])
    if parted is not None:
        drift = kr.drift_at_parting
        why = f"kernel drift {fmt(drift, 2)}" if drift is not None else "kernel drift unknown"
        fig.add_vline(
            x=parted,
            row=1,
            col=col,
            line={"dash": "dot", "color": color, "width": 1.5},
            annotation_text=(f"{label}: " if label else "")
            + f"prediction and fit part here ({why})",
            # Written on the side with room: near the right end it would run into the next panel.
            annotation_position="top left" if parted > 0.6 * last else "top right",
            annotation_font={"color": color, "size": 11},
            annotation_bgcolor="rgba(255,255,255,0.75)",
        )


def _draw_offset_free(fig: go.Figure, kr: KernelRegime, col: int) -> list[float]:
    """The kernel regime's loss with each output's mean residual over the N samples removed:
    measured at every step, predicted up to ``agree_until`` (where the prediction is drawn).
    Lighter than the raw curves. Returns the measured values (for the axis range); nothing is
    drawn when the offset-free loss is missing or does not match the steps."""
    free = kr.measured_loss_offset_free
    steps = kr.steps
    if not free or len(free) != len(steps):
        return []
    share = kr.offset_share
    offset = f" (it was {100 * float(share):.0f}% of the loss at θ₀)" if share is not None else ""
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=free,
            mode="lines",
            name=f"measured, common offset removed{offset}",
            line={"color": PALETTE[0], "width": 1.5, "dash": "dot"},
            opacity=0.6,
        ),
        row=1,
        col=col,
    )
    until = kr.agree_until
    pred = kr.predicted_loss_offset_free
    if until is not None and len(pred) == len(steps):
        xs = [t for t in steps if t <= until]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=pred[: len(xs)],
                mode="lines",
                name="NTK prediction, common offset removed",
                line={"color": PREDICTION_COLOR, "width": 1.5, "dash": "dot"},
                opacity=0.6,
            ),
            row=1,
            col=col,
        )
    return [v for v in free if v is not None]


def _loss_panel(
    fig: go.Figure, fit: FitResult, look: _Look, col: int
) -> tuple[list[int], list[float]]:
    """One fit's measured squared loss on the kernel samples in panel ``col`` and, in the kernel
    regime, its NTK prediction where it holds. Returns the measured (steps, losses)."""
    xs, ys = _measured_kernel_loss(fit)
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines+markers" if len(xs) <= 60 else "lines",
            name=look.loss_name,
            legendgroup=look.group,
            line={"color": look.color, "width": look.loss_width},
            marker={"size": look.marker},
        ),
        row=1,
        col=col,
    )
    if fit.kernel_regime is not None:
        _draw_prediction(fig, fit.kernel_regime, look, col)
    return xs, ys


def _accuracy_panel(fig: go.Figure, fit: FitResult, look: _Look, col: int) -> None:
    """One fit's target test accuracy in panel ``col``."""
    fig.add_trace(
        go.Scatter(
            x=fit.curves.eval_step,
            y=fit.curves.test_acc,
            mode="lines+markers",
            name=look.accuracy_name,
            legendgroup=look.group,
            showlegend=False if look.group else None,
            line={"color": look.accuracy_color, "width": 2},
            marker={"size": look.marker},
        ),
        row=1,
        col=col,
    )


def _panel_axes(fig: go.Figure, measured: Sequence[Any], loss_col: int, acc_col: int) -> None:
    """The loss axis: log scale when the measured loss falls by more than a decade (exponential
    decay reads as a line), linear otherwise, with the range set from the measured values only:
    nothing drawn with them (a prediction) can stretch the axis. The accuracy axis: 0 to 100%."""
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=acc_col)
    v = np.asarray([x for x in measured if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return
    pos = v[v > 0]
    if pos.size and pos.max() / pos.min() > 10:
        lo, hi = math.log10(pos.min()) - 0.1, math.log10(pos.max()) + 0.1
        fig.update_yaxes(type="log", exponentformat="power", range=[lo, hi], row=1, col=loss_col)
    else:
        lo, hi = float(v.min()), float(v.max())
        pad = 0.08 * (hi - lo) if hi > lo else 0.1 * abs(hi) or 0.1
        fig.update_yaxes(
            range=[max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad], row=1, col=loss_col
        )


def fit_curves_figure(
    fit: FitResult, kernel: KernelResult | None = None, weights: str | None = None
) -> go.Figure:
    """The reprogramming fit: training loss, the squared loss on the N kernel samples, and
    accuracy, all against the step.

    The NTK prediction is drawn on the loss axes only where it describes the fit: in the kernel
    regime (``fit.kernel_regime``: full-batch GD on squared loss, step size from the full
    kernel), and there only up to the step where it stays within the agreement tolerance of the
    measured loss, with the step where they part marked and the kernel drift named. A practical
    fit (Adam, cross-entropy, minibatches) gets no prediction on its axes; what the spectrum says
    about it is ``spectrum_timescales``. The y-range follows the measured loss.

    ``kernel`` is the target NTK (None for transform 'none'); ``weights`` the weights label
    (defaults to the fit's own).
    """
    curves = fit.curves
    cfg = fit.config
    weights = weights if weights is not None else fit.weights
    kr = fit.kernel_regime
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=(
            f"training loss ({'cross-entropy' if cfg.loss == 'ce' else 'squared'}, per batch)",
            # Short: a longer title runs into its neighbours'; the y axis says what the loss is.
            "measured vs NTK prediction"
            if kr is not None
            else "squared loss on the kernel samples",
            "accuracy",
        ),
        horizontal_spacing=0.07,
    )
    fig.add_trace(
        go.Scatter(
            x=curves.step,
            y=curves.train_loss,
            mode="lines",
            name="training loss (per batch)",
            line={"color": MUTED, "width": 1},
        ),
        row=1,
        col=1,
    )
    measured_x, measured_y = _loss_panel(fig, fit, ALONE, col=2)
    if kr is not None:
        measured_y = measured_y + _draw_offset_free(fig, kr, col=2)
    fig.add_trace(
        go.Scatter(
            x=curves.step,
            y=curves.train_acc,
            mode="lines",
            name="training accuracy (per batch)",
            line={"color": MUTED, "width": 1},
            opacity=0.7,
        ),
        row=1,
        col=3,
    )
    _accuracy_panel(fig, fit, ALONE, col=3)
    base = fit.baseline_test_acc
    if base is not None and not (isinstance(base, float) and math.isnan(base)):
        # Named in the legend, not written on the plot (a label there sat on the accuracy curve).
        steps_seen = [*curves.eval_step, *curves.step]
        x_end = max(steps_seen) if steps_seen else 1
        trained = "trained alone" in fit.baseline_note  # a learned read-out
        what_base = "the read-out trained alone" if trained else "nothing trained"
        fig.add_trace(
            go.Scatter(
                x=[0, x_end],
                y=[base, base],
                mode="lines",
                name=f"baseline 'none' ({what_base}): {pct(base)}",
                line={"dash": "dot", "color": MUTED, "width": 1.5},
                hovertemplate=f"baseline 'none': {pct(base)}<extra></extra>",
            ),
            row=1,
            col=3,
        )
    _panel_axes(fig, measured_y, loss_col=2, acc_col=3)
    fig.update_xaxes(title="step")
    if kernel is None and kr is None:
        note = "No NTK prediction: transform 'none' has no parameters to take a kernel over."
    elif kr is not None:
        note = kernel_regime_caption(kr)
    else:
        note = practical_regime_note(cfg)
    stopped = fit.stopped
    if stopped:
        note = f"STOPPED EARLY (the fit diverged or broke off): {stopped}  " + note
    lines = wrap(note)
    legend_rows = 22 if kr is not None else 0  # the prediction's legend entry adds a row
    height, bottom = 560, 120 + legend_rows + 15 * (lines.count("<br>") + 1)
    if kr is not None:  # the offset-free curves add a legend row, the longer caption its lines
        legend_rows += 22
        bottom += 22
        height = 340 + bottom
    footnote(fig, lines, y=below_px(height, bottom, 105 + legend_rows))
    if measured_x:
        # Annotations (the parting label) would otherwise widen the step axis past the data.
        span = max(measured_x) - min(measured_x) or 1
        fig.update_xaxes(
            range=[min(measured_x) - 0.03 * span, max(measured_x) + 0.03 * span], row=1, col=2
        )
    fig.update_yaxes(title="squared loss, N kernel samples", row=1, col=2)
    subtitle = (
        f"{TRANSFORM_NAMES.get(fit.transform, fit.transform)} · "
        f"{fmt(fit.n_params_transform)} trainable parameters · optimizer "
        f"{cfg.optimizer}, loss {cfg.loss}, {cfg.steps} steps · "
        f"target test accuracy {pct(fit.initial_test_acc)} → "
        f"{pct(fit.target_test_acc)}"
    )
    fig.update_layout(title=title_layout("Reprogramming fit: only θ is trained", subtitle, weights))
    return base_layout(fig, height, bottom=bottom, weights=weights)


def curves_overlay_figure(
    fits: Sequence[FitResult | None],
    kernels: Sequence[KernelResult | None],
    labels: Sequence[str],
) -> go.Figure:
    """Several fits: measured kernel-sample loss (solid) and test accuracy, one colour per
    config (a None fit is left out). A fit in the kernel regime also gets its NTK prediction
    (dashed) up to the step where it stops agreeing with the measured loss, and a dotted marker
    where they part; a practical fit gets none. The loss axis follows the measured values
    only."""
    any_kr = any(f is not None and f.kernel_regime is not None for f in fits)
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
    random_in: list[str] = []
    measured_all: list[float] = []
    cross_entropy: list[str] = []
    for i, (fit, _kernel, label) in enumerate(zip(fits, kernels, labels)):
        if fit is None:
            continue
        if fit.weights == "random":
            random_in.append(label.split(":", 1)[0].strip() or label)
        if fit.config.loss == "ce":
            cross_entropy.append(label)
        look = _overlaid(label, PALETTE[i % len(PALETTE)])
        measured_all += _loss_panel(fig, fit, look, col=1)[1]
        _accuracy_panel(fig, fit, look, col=2)
    _panel_axes(fig, measured_all, loss_col=1, acc_col=2)
    fig.update_xaxes(title="step")
    weights = "random" if random_in else None
    partly = random_in if len(random_in) < sum(1 for f in fits if f is not None) else []
    fig.update_layout(
        title=title_layout(
            "Reprogramming fits, overlaid",
            "the NTK prediction is drawn only for fits in the kernel regime (full-batch gradient "
            "descent on squared loss), and only while it agrees with the measured loss",
            weights,
            partly,
        )
    )
    height, bottom = 430, 110
    if cross_entropy:  # a rising squared loss must not read as a failing fit
        lines = wrap(f"{', '.join(cross_entropy)} trained on cross-entropy. {CE_SQUARED_LOSS}")
        bottom += 15 * (lines.count("<br>") + 1)
        footnote(fig, lines, y=below_px(height, bottom, 95))
    return base_layout(fig, height, bottom=bottom, weights=weights, random_in=partly)
