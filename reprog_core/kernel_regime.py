"""The fit next to its NTK prediction: the step size from the spectrum, and the kernel regime.

Gradient descent on the squared loss L = (1/N) sum_i 0.5 ||f(x_i) - y_i||^2 over the N kernel
samples moves the residual r (N c) by r <- (I - eta K / N) r when f is linear in theta, with K the
**full** target NTK (N c x N c) at theta_0 (``ntk/dynamics.py``). So

* the step size is set from the spectrum, eta = rho N / lambda_max(K_full) (``sgd_step_size``):
  rho is the fraction of the stability limit 2 used by the stiffest mode, so sgd on theta never
  diverges at its default whatever the transform (fc's lambda_max is ~5000x vp's). A learned
  read-out trained beside theta (practical sgd) has a kernel term of its own that this step size
  does not see;
* in the kernel regime (``regime='kernel'``: sgd + mse, full batch) the measured loss is compared
  with the prediction at every step; the prediction holds while the kernel stays put. The record
  says for how many steps it stays within ``AGREEMENT`` of the measured loss, how much the loss
  fell by then, and the **kernel drift** ||K(theta) - K(theta_0)||_F / ||K(theta_0)||_F at the step
  where they part and at the end, which is why they part (docs/science.md, "Regimes"). Beside
  the raw squared loss it reports the loss with each output's mean residual over the N samples
  removed (measured and predicted): the largest eigen-direction removes that common offset
  first. And how discriminating the agreement is: the horizon of the same prediction from the
  theta_0 kernel scaled by 1/2 and by 2 (``SCALES``).
* the kernel regime runs only mappings the prediction describes: ``identity`` and ``flm`` are
  fixed; ``ilm`` is frozen at the FLM assignment of theta_0 (the practical fit refits it every
  ``eval_every`` steps, which would make the measured loss another model's); ``learned`` is
  refused by the config (its read-out's kernel term is not in the prediction).

This is the experiment layer: it uses the fit (``fit.py``) and the kernels (``ntk/``), which
know nothing of each other.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reprog_core import ntk
from reprog_core.config import (
    LEARNED_IN_KERNEL_REGIME,
    ConfigError,
    ExperimentConfig,
    MappingKind,
    Regime,
    sgd_step_size,
)
from reprog_core.fit import (
    ProgressFn,
    TargetData,
    baseline_note,
    baseline_step_size,
    initial_model,
    reprogram,
)
from reprog_core.ntk.dynamics import offset_split
from reprog_core.reprogrammed import ReprogrammedModel
from reprog_core.results import FitResult, KernelRegime

AGREEMENT = 0.10  # the prediction "holds" while |predicted - measured| / measured <= this
MAX_POINTS = 2001  # prediction/measurement curves are kept at most at this many steps
# The theta_0 kernel is also scaled by these factors, to see whether the band above tells the
# right kernel from a wrong one (the same eigenvectors, eigenvalues times the factor).
SCALES = {"half": 0.5, "double": 2.0}
ILM_FROZEN = (
    "ILM frozen at θ₀: the FLM assignment computed at θ₀ on the kernel samples is kept for the "
    "whole fit (the practical fit recomputes it every eval_every steps, which would make the "
    "measured loss another model's than the predicted one)"
)


def full_kernel(model: ReprogrammedModel, x: torch.Tensor) -> torch.Tensor:
    """The full target NTK (N c, N c), float64 Gram, at the model's current theta."""
    k, _ = ntk.target_ntk(model, x, kernel="full", dtype=torch.float64)
    return k.detach().cpu().double()


def trace_from_full(k_full: torch.Tensor, n_outputs: int) -> torch.Tensor:
    """(N c, N c) sample-major -> (N, N): the sum of each c x c block's diagonal."""
    n = k_full.shape[0] // n_outputs
    return k_full.reshape(n, n_outputs, n, n_outputs).diagonal(dim1=1, dim2=3).sum(-1)


def trace_form_gap(k_full: torch.Tensor, n_outputs: int) -> float:
    """||K_full - (K_trace / c) (x) I_c||_F / ||K_full||_F: how far the trace form (Prop. 1) is
    from the kernel the dynamics use. 0 when the outputs decouple."""
    kt = trace_from_full(k_full, n_outputs)
    approx = torch.kron(kt / n_outputs, torch.eye(n_outputs, dtype=k_full.dtype))
    norm = float(k_full.norm())
    return float((k_full - approx).norm()) / norm if norm > 0 else 0.0


def relative_drift(k_now: torch.Tensor, k0: torch.Tensor) -> float:
    norm = float(k0.norm())
    return float((k_now - k0).norm()) / norm if norm > 0 else 0.0


def _eval_steps(steps: int) -> list[int]:
    if steps + 1 <= MAX_POINTS:
        return list(range(steps + 1))
    every = -(-steps // (MAX_POINTS - 1))
    out = list(range(0, steps + 1, every))
    return out if out[-1] == steps else out + [steps]


def agreement(
    measured: list[float], predicted: list[float], tol: float = AGREEMENT
) -> tuple[int, float]:
    """(index of the last point before the first |p - m| / m > tol, worst relative error up to
    and including it). Index len-1 when they never part."""
    worst = 0.0
    for i, (m, p) in enumerate(zip(measured, predicted)):
        err = abs(p - m) / abs(m) if m else abs(p - m)
        if err > tol:
            return i - 1, worst
        worst = max(worst, err)
    return len(measured) - 1, worst


def fit_with_spectrum(
    cfg: ExperimentConfig,
    source: nn.Module,
    td: TargetData,
    *,
    n_source: int,
    progress: ProgressFn | None = None,
    start: ReprogrammedModel | None = None,
) -> tuple[ReprogrammedModel, FitResult]:
    """``fit.reprogram`` with its step size and, in the kernel regime, its prediction.

    ``start``: the model at theta_0 (``fit.initial_model``); the full kernel is taken at it and
    the fit trains a copy. Built here when not given.

    Adam (or sgd with an explicit ``lr`` outside the kernel regime) runs as it is. Otherwise the
    full kernel at theta_0 sets eta = rho N / lambda_max, and for the kernel regime the result's
    ``kernel_regime`` is a ``results.KernelRegime``: the measured and predicted loss, where they
    part, the kernel drift, the offset-free losses and the horizons of the scaled kernels.
    Every fit's ``baseline_note`` says what its 'none' baseline trains (``fit.baseline_note``).
    A learned mapping in the kernel regime is a ``ConfigError``.
    """
    kernel_regime = cfg.regime == Regime.KERNEL.value
    if kernel_regime and cfg.mapping == MappingKind.LEARNED.value:
        # The config refuses it first; this guards a config built around the constructor.
        raise ConfigError(LEARNED_IN_KERNEL_REGIME)
    model0 = start or initial_model(cfg, source, td, n_source)
    # ILM in the kernel regime: the assignment at theta_0 (model0's, fitted like FLM on the kernel
    # samples) is kept; the fit runs as FLM and its record keeps the config's name.
    frozen = kernel_regime and cfg.mapping == MappingKind.ILM.value
    fit_cfg = cfg.replace(mapping=MappingKind.FLM.value) if frozen else cfg
    run = partial(
        reprogram, fit_cfg, source, td, n_source=n_source, progress=progress, start=model0
    )

    def fit(**kw: Any) -> tuple[ReprogrammedModel, FitResult]:
        model, result = run(**kw)
        result.config = cfg
        result.baseline_note = baseline_note(
            cfg, baseline_step_size(cfg, source, td, n_source), len(td.classes), n_source
        )
        return model, result

    if not cfg.lr_from_spectrum and not kernel_regime:
        return fit()
    device = next(source.parameters()).device
    if not any(True for _ in model0.transform.parameters()):  # 'none': nothing to train
        return fit(lr=0.0)
    x, y = td.x_kernel.to(device), td.y_kernel.to(device)
    if progress:
        progress(0.0, f"full target NTK on {len(x)} samples for the step size")
    k0 = full_kernel(model0, x)
    w, v = torch.linalg.eigh(k0)
    lam = float(w[-1])
    n = len(x)
    lr = float(cfg.lr) if cfg.lr > 0 else sgd_step_size(cfg.rho, n, lam)
    if not kernel_regime:
        return fit(lr=lr)

    steps_at = _eval_steps(cfg.steps)
    r0 = ntk.initial_residuals(model0, x, y)
    dyn = ntk.ntk_dynamics((w, v), r0, lr=lr, steps=cfg.steps, eval_steps=steps_at, offsets=True)
    pred_at = dict(zip(steps_at, dyn["loss"]))
    pred_free_at = dict(zip(steps_at, dyn["loss_offset_free"]))
    measured: dict[int, float] = {}
    measured_free: dict[int, float] = {}
    parting: dict[str, Any] = {}
    # The logits of the fit's own forward pass over the kernel samples (full batch, in order):
    # the last forward before ``on_step`` is the training step's, so the offset costs no pass.
    seen: dict[str, torch.Tensor] = {}
    hooks: list[Any] = []
    onehot = F.one_hot(y.long(), r0.shape[1]).double().cpu()

    def capture(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        seen["logits"] = out.detach()

    def residuals(model: nn.Module) -> torch.Tensor:
        out = seen.pop("logits", None)
        if out is None or tuple(out.shape) != tuple(onehot.shape):
            with torch.no_grad():
                out = model(x)
        return out.double().cpu() - onehot

    def watch(step: int, loss: float, model: nn.Module) -> None:
        t = step - 1  # the loss passed in is L(theta_{step-1}), before this step's update
        if not hooks:
            hooks.append(model.register_forward_hook(capture))
        if t in pred_at:
            measured[t] = loss
            measured_free[t] = offset_split(r0 if t == 0 else residuals(model))[1]
            p = pred_at[t]
            if not parting and loss and abs(p - loss) / abs(loss) > AGREEMENT:
                parting["step"] = t
                parting["state"] = {
                    k: val.detach().clone() for k, val in model.transform.state_dict().items()
                }
        seen.pop("logits", None)

    try:
        model, result = fit(lr=lr, on_step=watch)
    finally:
        for h in hooks:
            h.remove()
    seen.clear()  # what the hook saw last is the test split's forward, not the kernel samples'
    if result.curves.eval_step and result.curves.eval_step[-1] in pred_at:
        last_t = result.curves.eval_step[-1]
        if last_t not in measured:
            measured[last_t] = result.curves.kernel_loss[-1]
            measured_free[last_t] = offset_split(residuals(model))[1]
    ts = [t for t in steps_at if t in measured]
    meas = [measured[t] for t in ts]
    pre = [pred_at[t] for t in ts]
    last, worst = agreement(meas, pre)
    k_end = full_kernel(model, x)
    drift_at_parting = None
    if "state" in parting:
        probe = model0.trainable_copy()
        probe.transform.load_state_dict(parting["state"])
        drift_at_parting = relative_drift(full_kernel(probe, x), k0)
    n_out = r0.shape[1]
    raw0, free0 = offset_split(r0)
    scaled = {}
    for name, factor in SCALES.items():
        dyn_s = ntk.ntk_dynamics((factor * w, v), r0, lr=lr, steps=cfg.steps, eval_steps=ts)
        h, _ = agreement(meas, dyn_s["loss"])
        scaled[name] = ts[h] if h >= 0 else None
    until = ts[last] if last >= 0 else None
    result.kernel_regime = KernelRegime(
        steps=ts,
        measured_loss=meas,
        predicted_loss=pre,
        rho=float(lr * lam / n) if lam > 0 else 0.0,
        lr=lr,
        lr_lambda_max_over_n=float(lr * lam / n),
        lambda_max_full=lam,
        n=n,
        n_outputs=n_out,
        agreement_tol=AGREEMENT,
        agree_until=until,
        parted_at=ts[last + 1] if last + 1 < len(ts) else None,
        worst_error=worst,
        loss_drop=(1 - meas[last] / meas[0]) if last >= 0 and meas[0] else 0.0,
        drift=relative_drift(k_end, k0),
        drift_at_parting=drift_at_parting,
        trace_form_gap=trace_form_gap(k0, n_out),
        # The loss with each output's mean residual over the N samples removed, and the share of
        # the initial loss that common offset is (the largest eigen-direction removes it first).
        measured_loss_offset_free=[measured_free[t] for t in ts],
        predicted_loss_offset_free=[pred_free_at[t] for t in ts],
        offset_share=(1 - free0 / raw0) if raw0 > 0 else 0.0,
        # The horizon of the same prediction from the theta_0 kernel times 1/2 and times 2: when
        # one is at least ``agree_until``, the band cannot tell that kernel from the right one.
        agree_until_half_kernel=scaled["half"],
        agree_until_double_kernel=scaled["double"],
        band_discriminates=all(
            _horizon(h) < _horizon(until) for h in (scaled["half"], scaled["double"])
        ),
        mapping=cfg.mapping,
        mapping_note=ILM_FROZEN if frozen else "",
    )
    return model, result


def _horizon(step: int | None) -> int:
    return -1 if step is None else step
