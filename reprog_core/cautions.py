"""What a result page must say in words before anyone reads its figures.

``result_cautions(record)`` takes an explore record (``results.ExperimentRecord``: config,
source, fit, kernel) and returns sentences, each one a reason the figures could mislead: a fit
that ends below its baseline (in the kernel regime, with why it can), a baseline below chance,
a source model near chance or cut off by its epoch budget, a statistic computed on too few
samples or set by the numerical tolerance, the trace form shown where the dynamics use the full
kernel, a diverged fit or an exploding prediction, and, for gradient descent, the step size
against the stiffest mode (η·λ_max/N). Pure: no Streamlit, no torch; the dashboard shows them,
the tests check them (docs/science.md, "Regimes").
"""

from __future__ import annotations

import math
from typing import Any

from reprog_core import data
from reprog_core.config import PRETRAINED_CLASSIFIERS, ExperimentConfig
from reprog_core.figures import fmt, pct, prediction_explodes
from reprog_core.results import ExperimentRecord, KernelRegime, KernelResult

NEAR_CHANCE = 0.15  # a source within this of chance (1 / classes) says little about reprogramming
TOLERANCE_FACTOR = 10.0  # lambda_min within this factor of the rank tolerance is set by it
MIN_PER_OUTPUT = 2  # N below MIN_PER_OUTPUT * c_T: too few samples for alignment / eff. rank


def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _source_classes(config: ExperimentConfig) -> int | None:
    if config.source_family in PRETRAINED_CLASSIFIERS:
        return PRETRAINED_CLASSIFIERS[config.source_family]
    try:
        return int(data.dataset_spec(config.source_data).n_classes)
    except Exception:  # an unknown data set name: no chance level to compare with
        return None


def _chance(config: ExperimentConfig) -> float | None:
    """1 / the target's class count, or None for an unknown data set."""
    try:
        return 1.0 / int(data.dataset_spec(config.target).n_classes)
    except Exception:  # an unknown data set name: no chance level to compare with
        return None


def _kernel_regime_below_baseline(kr: KernelRegime) -> str:
    """Why a kernel-regime fit can end below its baseline while its loss falls."""
    share = _num(kr.offset_share)
    offset = f" ({pct(share)} of it at θ₀ here)" if share is not None else ""
    return (
        f"In the kernel regime this is no malfunction: the fit trains on the N = {kr.n} "
        "kernel samples only, not the training split, and the squared loss it minimises is "
        f"dominated at first by the offset common to every sample{offset}, each output's mean "
        "residual, which the largest eigen-direction removes first without separating the "
        "classes: the loss can fall a long way while the accuracy does not follow."
    )


def result_cautions(record: ExperimentRecord, n_source_classes: int | None = None) -> list[str]:
    """The sentences to show above an explore record's figures (empty when there is nothing to
    say). ``n_source_classes`` defaults to the source data set's class count."""
    cfg = record.config
    fit = record.fit
    src = record.source
    kernel = record.kernel  # None for transform 'none'
    kr = fit.kernel_regime  # None for a practical fit
    out: list[str] = []

    # the fit itself
    if fit.stopped:
        out.append(f"The fit did not run to the end: {fit.stopped}")
    target, base = _num(fit.target_test_acc), _num(fit.baseline_test_acc)
    if target is not None and base is not None and target < base and cfg.transform != "none":
        out.append(
            f"The fit ends below its baseline: target test accuracy {pct(target)} after training "
            f"θ, against {pct(base)} for the same source model with transform 'none' "
            f"({fit.baseline_note or 'nothing trained'}). Training the input "
            "transformation made things worse here."
            + (" " + _kernel_regime_below_baseline(kr) if kr is not None else "")
        )
    chance = _chance(cfg)
    if base is not None and chance is not None and base < chance:
        out.append(
            f"The baseline is below chance: {pct(base)} for transform 'none', where guessing "
            f"gives {pct(chance)}"
            + (f" ({fit.baseline_note})" if fit.baseline_note else "")
            + ". "
            + (
                "With mapping 'identity' each target class reads a fixed source output that "
                "has nothing to do with it, so the source's answers can line up with the wrong "
                "classes; mapping flm reads the outputs that line up best."
                if cfg.mapping == "identity"
                else "The source's answers on the resized target images line up with the wrong "
                "classes more often than by chance."
            )
        )
    boom = prediction_explodes(kr) if kr is not None else None
    if boom:
        out.append(boom)

    # the source model
    classes = n_source_classes or _source_classes(cfg)
    acc = _num(src.source_test_acc)
    if cfg.source_family in PRETRAINED_CLASSIFIERS:
        native = _num(src.native_test_acc)
        if classes and native is not None and native < 1.0 / classes + NEAR_CHANCE:
            out.append(
                f"The source model is near chance: top-1 {pct(native)} on "
                f"{src.evaluated_on or 'ImageNet photos'} at 224×224, where guessing gives "
                f"{pct(1.0 / classes)} ({classes} classes). "
                + (
                    "Its weights are random: it is the control that knows nothing, so what a "
                    "transformation achieves on it is what training θ alone can do."
                    if cfg.weights == "random"
                    else "Its weights do not classify ImageNet: check the installation."
                )
            )
        acc = None  # the card states the accuracy at the source size; chance is judged above
    if classes and acc is not None and acc < 1.0 / classes + NEAR_CHANCE:
        out.append(
            f"The source model is near chance: test accuracy {pct(acc)} on "
            f"{cfg.source_data}, where guessing gives {pct(1.0 / classes)} ({classes} "
            "classes). A fit on top of it shows little about reprogramming; give the source more "
            "images per class or epochs."
        )
    if src.stopped_by == "epoch cap":
        out.append(
            f"The source model stopped at its epoch cap ({src.epochs_run} of at most "
            f"{cfg.source_epochs} epochs) while its validation accuracy may still have "
            "been improving: it has not converged. Raise the source epochs."
        )

    # the kernel's statistics
    if kernel is not None:
        out += _kernel_cautions(kernel, kr)

    # the step size of gradient descent against the spectrum
    if cfg.optimizer == "sgd":
        ratio = _num(kr.lr_lambda_max_over_n) if kr is not None else None
        lr = _num(fit.lr)
        user_lr = _num(cfg.lr) or 0.0
        if ratio is None and user_lr <= 0 and lr:
            ratio = _num(cfg.rho)  # eta = rho N / lambda_max(K_full) by construction
        if ratio is None and kernel is not None and kernel.kernel == "full" and lr:
            lam, nk = _num(kernel.stats.lambda_max), kernel.n
            ratio = lr * lam / nk if lam and nk else None
        if ratio is None:
            out.append(
                f"Gradient descent with step size η = {fmt(lr, 3)}: η·λ_max/N of the full kernel "
                "is unknown here (it is at most 2 for a stable fit)."
            )
        else:
            verdict = (
                "above 2: gradient descent diverges along the stiffest direction"
                if ratio > 2
                else "between 1 and 2: the stiffest direction oscillates as it converges"
                if ratio > 1
                else "below 1: every direction converges monotonically"
            )
            out.append(
                f"Gradient descent with step size η = {fmt(lr, 3)}: η·λ_max/N = {fmt(ratio, 3)} "
                f"for the full kernel ({verdict})."
            )
    return out


def _kernel_cautions(kernel: KernelResult, kr: KernelRegime | None) -> list[str]:
    """What could mislead in the kernel's statistics: too few samples per class, a λ_min set by
    the tolerance, the trace form shown where the dynamics use the full kernel."""
    out: list[str] = []
    n, c = kernel.n, kernel.n_outputs
    if n < MIN_PER_OUTPUT * c:
        out.append(
            f"The kernel statistics rest on N = {n} samples for c_T = {c} target classes (fewer "
            f"than {MIN_PER_OUTPUT} per class): the alignment and the effective rank are noisy "
            "at this size. Raise N kernel samples."
        )
    lam_min, tol = _num(kernel.stats.lambda_min), _num(kernel.stats.rank_tol)
    if lam_min and tol and 0 < lam_min < TOLERANCE_FACTOR * tol:
        out.append(
            f"λ_min = {fmt(lam_min, 3)} is within {TOLERANCE_FACTOR:g}× of the rank tolerance "
            f"{fmt(tol, 2)} ({lam_min / tol:.1f}×): it is set by the numerical tolerance, not the "
            "data. Read it as 'about zero'; the rank and the spectrum's shape say more."
        )
    if kernel.kernel == "trace":
        gap = _num(kr.trace_form_gap) if kr is not None else None
        how_far = (
            f"here ‖K_full − (K_trace/c)⊗I‖_F / ‖K_full‖_F = {fmt(gap, 2)}"
            if gap is not None
            else "they agree only when the outputs decouple, which a trained source model's "
            "do not (switch on the kernel regime to measure the gap)"
        )
        out.append(
            "The spectrum shown is the trace form (N×N, summed over the outputs). It is not the "
            "kernel the dynamics use: gradient descent moves along the full kernel (N·c_T × "
            f"N·c_T); {how_far}."
        )
    return out
