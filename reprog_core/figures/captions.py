"""What a fit's figures mean, in words: the kernel-regime caption (step size, agreement horizon,
where prediction and fit part, kernel drift), why a practical fit carries no prediction, when the
prediction explodes, and what the spectrum says about the speed of a fit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from reprog_core.config import ExperimentConfig
from reprog_core.figures.spectrum import SPECTRAL_STATS
from reprog_core.figures.theme import fmt
from reprog_core.results import KernelRegime, KernelResult

EXPLODES = 10.0  # a prediction above this many times the initial measured loss "explodes"


def prediction_explodes(kr: KernelRegime) -> str | None:
    """A sentence when the full prediction (drawn or not) runs away: non-finite, or above
    ``EXPLODES`` times the initial measured loss. None otherwise."""
    pred = np.asarray([np.nan if v is None else v for v in kr.predicted_loss], dtype=float)
    meas = [v for v in kr.measured_loss if v is not None]
    if not pred.size or not meas:
        return None
    steps = list(kr.steps or range(pred.size))
    ref = float(meas[0]) if meas[0] else float(max(meas))
    bad = ~np.isfinite(pred) | (pred > EXPLODES * ref)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    peak = "is no longer finite" if not np.isfinite(pred[i]) else f"reaches {fmt(pred[i], 3)}"
    return (
        f"The NTK prediction explodes: it {peak} at step {steps[i]} (η·λ_max/N = "
        f"{fmt(kr.lr_lambda_max_over_n, 3)}; above 2 gradient descent on the linearised "
        "model diverges along the stiffest direction). It is not drawn past the agreement horizon."
    )


def kernel_regime_caption(kr: KernelRegime) -> str:
    """What the kernel-regime figure shows, in words: ρ, η, η·λ_max/N, the agreement horizon and
    the loss drop within it, where prediction and fit part and the kernel drift there and at the
    end; how the mapping was held; how much of the loss is the offset common to every sample;
    whether the band tells the kernel from one half or twice as large; and what the accuracy of
    a fit on the N kernel samples means."""
    tol = kr.agreement_tol
    steps = kr.steps or [0]
    parts = [
        f"Kernel regime: full-batch gradient descent on squared loss over the N = {kr.n} "
        f"kernel samples, step size η = ρ·N/λ_max = {fmt(kr.lr, 3)} with ρ = "
        f"{fmt(kr.rho, 3)} (η·λ_max/N = {fmt(kr.lr_lambda_max_over_n, 3)}; λ_max "
        f"= {fmt(kr.lambda_max_full, 3)} of the full kernel, N·c_T = "
        f"{kr.n * kr.n_outputs} rows). The prediction is the linearised model's loss from the "
        "full kernel at θ₀."
    ]
    if kr.mapping_note:
        parts.append(f"{kr.mapping_note}.")
    until, parted = kr.agree_until, kr.parted_at
    drop = f"{100 * float(kr.loss_drop or 0.0):.0f}%"
    if until is None:
        parts.append(
            f"Prediction and fit differ by more than {tol:.0%} from the first step, so no "
            "prediction is drawn."
        )
    elif parted is None:
        parts.append(
            f"It stays within {tol:.0%} of the measured loss over all {steps[-1]} steps "
            f"(worst {100 * float(kr.worst_error or 0):.1f}%), while the measured loss "
            f"falls by {drop}."
        )
    else:
        dp = kr.drift_at_parting
        parts.append(
            f"It stays within {tol:.0%} of the measured loss up to step {until} (worst "
            f"{100 * float(kr.worst_error or 0):.1f}%), while the measured loss falls by "
            f"{drop}; they part at step {parted}, where the kernel has drifted by "
            f"{fmt(dp, 2)} (‖Θ(θ_t) − Θ(θ₀)‖_F / ‖Θ(θ₀)‖_F): the model is no longer linear in θ, "
            "so the prediction is not drawn beyond it."
        )
    parts.append(f"Kernel drift at the end (step {steps[-1]}): {fmt(kr.drift, 2)}.")
    offset = offset_sentence(kr)
    if offset:
        parts.append(offset)
    parts.append(band_sentence(kr))
    parts.append(
        f"Accuracy: this fit trains on the N = {kr.n} kernel samples only, so its test "
        "accuracy is what those N samples teach under the squared loss, not what a practical fit "
        "on the whole training split reaches; it can end below the baseline."
    )
    boom = prediction_explodes(kr)
    if boom:
        parts.append(boom)
    return " ".join(parts)


def offset_sentence(kr: KernelRegime) -> str | None:
    """How much of the squared loss is the per-output offset common to every kernel sample, and
    how much of the rest the fit removed. None without the offset-free loss (or its share)."""
    share, free = kr.offset_share, kr.measured_loss_offset_free
    meas = kr.measured_loss
    if share is None or not free or not meas:
        return None
    text = (
        f"At θ₀, {100 * float(share):.0f}% of the squared loss is the offset common to every "
        "sample (each output's mean residual over the N samples); the largest eigen-direction "
        "removes it first. The lighter curves are the loss with it removed (measured, and "
        "predicted where the prediction is drawn)"
    )
    if free[0] and meas[0] and free[-1] is not None and meas[-1] is not None:
        text += (
            f": by step {(kr.steps or [0])[-1]} the raw loss has fallen by "
            f"{100 * (1 - meas[-1] / meas[0]):.0f}%, the offset-free loss by "
            f"{100 * (1 - free[-1] / free[0]):.0f}%"
        )
    return text + "."


def band_sentence(kr: KernelRegime) -> str:
    """Whether the agreement band tells the θ₀ kernel from the same kernel halved or doubled."""
    tol = kr.agreement_tol

    def step(v: int | None) -> str:
        return "no step" if v is None else f"step {v}"

    half, double = kr.agree_until_half_kernel, kr.agree_until_double_kernel
    text = (
        f"How discriminating the {tol:.0%} band is: the same prediction from the θ₀ kernel "
        f"halved stays within it up to {step(half)}, doubled up to {step(double)}, against "
        f"{step(kr.agree_until)} for the kernel itself"
    )
    if kr.band_discriminates:
        return text + ", so the band tells them apart."
    until = -1 if kr.agree_until is None else kr.agree_until
    worse = [
        name
        for name, v in (("halved", half), ("doubled", double))
        if (-1 if v is None else v) >= until
    ]
    return (
        text + f": the band cannot tell the right kernel from the {' or '.join(worse)} one here, "
        "so agreement within it is weak evidence for the kernel."
    )


def practical_regime_note(config: ExperimentConfig) -> str:
    """Why a practical fit's loss axes carry no NTK prediction."""
    opt, loss = config.optimizer, config.loss
    batches = "full batch" if opt == "sgd" else f"minibatches of {config.batch_size}"
    loss_name = {"ce": "cross-entropy", "mse": "squared loss"}.get(str(loss), str(loss))
    return (
        "No NTK prediction on these axes: the prediction models full-batch gradient descent on "
        f"squared loss with a fixed kernel, and this fit used {opt} on {loss_name} ({batches}), "
        "which it does not describe. What the spectrum does say about speed is under the "
        "spectrum (time scales of its modes). Switch on 'Kernel regime' in the sidebar to test "
        "the prediction against a fit it describes."
        + (" " + CE_SQUARED_LOSS if loss == "ce" else "")
    )


CE_SQUARED_LOSS = (
    "Cross-entropy rewards ever larger logits, so the squared loss on the kernel samples can rise "
    "while the accuracy improves: it is the loss the kernel regime minimises, not this fit's."
)


def spectrum_timescales(kernel: KernelResult | None, config: ExperimentConfig) -> str | None:
    """What the spectrum says about the speed of a fit, in words: the time scale N/(η λ_i) of the
    top and the bottom mode for full-batch gradient descent on squared loss at η = ρ N / λ_max,
    i.e. (λ_max / λ_i) / ρ steps. None when there is no spectrum."""
    if kernel is None:
        return None
    stats = kernel.stats
    lam_max, lam_min = stats.lambda_max, stats.lambda_min
    if not lam_max or not lam_min or lam_max <= 0 or lam_min <= 0:
        return None
    rho = float(config.rho or 0.1)
    top, bottom = 1.0 / rho, lam_max / lam_min / rho
    steps = config.steps
    rank, size = stats.rank, len(stats.eigenvalues)
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
    if kernel.kernel == "trace":
        text += (
            " Read from the trace form, so the ratios are approximate: the dynamics use the full "
            "kernel."
        )
    if config.regime != "kernel":
        text += (
            f" This fit uses {config.optimizer} on {config.loss} loss, so these "
            "are indicative, not a prediction of its curve."
        )
    return text


# Statistics a Compare page checks against the outcome, and how each is read (SPECTRAL_STATS).
VERDICT_STATS = (
    "regression_acc",
    "lambda_min",
    "lambda_max",
    "effective_rank",
    "condition_number",
    "alignment",
)


def statistics_verdict(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str | None:
    """Which spectral statistics order the configurations the way their outcome does, and which
    point the wrong way, in words. ``rows``: table rows (``ExperimentRecord.sweep_row`` dicts);
    the outcome is the gain of the fit over its own 'none' baseline (target − baseline accuracy).
    Only pairs whose gains differ by more than 5 points are judged. None when there is nothing
    to judge."""

    def gain(row: Mapping[str, Any]) -> float | None:
        t, b = row.get("target_test_acc"), row.get("baseline_test_acc")
        return None if t is None or b is None else float(t) - float(b)

    pairs = [
        (i, j)
        for i in range(len(rows))
        for j in range(len(rows))
        if (gi := gain(rows[i])) is not None
        and (gj := gain(rows[j])) is not None
        and gi > gj + 0.05
    ]
    if not pairs:
        return None
    right, wrong = [], []
    for stat in VERDICT_STATS:
        label, better, _ = SPECTRAL_STATS[stat]
        sign = 1.0 if better == "higher" else -1.0
        votes = []
        for i, j in pairs:
            a, b = rows[i].get(stat), rows[j].get(stat)
            if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
                continue
            if not (np.isfinite(a) and np.isfinite(b)) or a == b:
                continue
            votes.append(sign * (a - b) > 0)
        if votes:
            (right if all(votes) else wrong if not any(votes) else []).append(label)
    order = ", ".join(
        f"{labels[i]} ({100 * gain(rows[i]):+.0f} points)"  # type: ignore[operator]
        for i in sorted({k for p in pairs for k in p}, key=lambda k: -(gain(rows[k]) or 0))
    )
    parts = [f"Ranked by the gain over their own baseline: {order}."]
    if right:
        parts.append(f"Ranked the same way by: {', '.join(right)}.")
    if wrong:
        parts.append(
            f"Pointing the other way: {', '.join(wrong)}. A summary of the spectrum that points "
            "the wrong way is a finding, not a glitch: it describes the kernel's shape, not "
            "whether the kernel carries the target task."
        )
    return " ".join(parts)
