"""The linearised (NTK-regime) prediction of a squared-loss fit, in the fit's own step units.

``fit.reprogram`` with ``optimizer='sgd'`` and ``loss='mse'`` runs full-batch gradient descent
with ``torch.optim.SGD(lr=η)`` on the N kernel samples, on

    L(θ) = (1 / N) sum_i 0.5 ||f(x_i) - y_i||^2                 (``fit.squared_loss``)

Linearising f around θ_0 (f(θ) ≈ f(θ_0) + J (θ - θ_0)), one step θ <- θ - η ∇L moves the stacked
residual r = vec(f - Y) (N c, sample-major) by r <- (I - (η / N) K_full) r, K_full = J J^T. So

    r_t = sum_i (1 - η λ_i / N)^t <v_i, r_0> v_i
    L_t = (0.5 / N) sum_i (1 - η λ_i / N)^{2t} <v_i, r_0>^2

exactly, for the linearised model (``loss``); ``loss_flow`` is the gradient-flow approximation
with (1 - η λ / N)^t replaced by exp(-η λ t / N), the r(t) = sum e^{-η λ_i t} ... of
docs/science.md with the 1/N of the batch mean made explicit. Discrete GD converges only when
η λ_max / N < 2 (``stable``).

Trace form (N, N): Prop. 1 of the paper, K_full ≈ (K_trace / c) ⊗ I_c, so each trace eigenpair
(μ, v) stands for c eigenpairs (μ / c, v ⊗ e_k) and <v ⊗ e_k, r_0> = (v^T R_0)_k.

Step units: ``step[t]`` is the loss after t updates, L(θ_t). ``fit``'s ``curves.kernel_loss`` at
``eval_step`` s is L(θ_s) (same index); its ``curves.train_loss`` at step s is computed before that
step's update, i.e. L(θ_{s-1}).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from reprog_core.config import KernelForm
from reprog_core.ntk.spectral import eigendecompose


def initial_residuals(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """r_0 = f_T(x) - onehot(y): x (N, C, H, W), y (N,) int labels -> (N, c_T) float64."""
    p = next(model.parameters())
    with torch.no_grad():
        out = model(x.to(device=p.device, dtype=p.dtype)).double().cpu()
    return out - F.one_hot(y.long().cpu(), out.shape[1]).double()


def ntk_dynamics(
    kernel_or_eigh: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    r0: torch.Tensor,
    *,
    lr: float,
    steps: int,
    every: int = 1,
    kernel_form: str | None = None,
    eval_steps: Sequence[int] | None = None,
    offsets: bool = False,
) -> dict[str, Any]:
    """Predicted squared-loss curve of full-batch GD with learning rate ``lr`` (module doc).

    kernel_or_eigh: the kernel K, trace (N, N) or full (N*c, N*c), or its eigendecomposition
    (eigvals (m,), eigvecs (rows, m)) - possibly only the top m (the unseen part of r_0 is then
    predicted to stay: those eigenvalues are treated as 0). r0 (N, c): residuals f(x_i) - y_i at
    θ_0 (``initial_residuals``). The form is read from the row count; ``kernel_form`` ('trace' |
    'full'), when given, must agree with it. Steps reported: 0, every, 2 every, ..., steps, or
    exactly ``eval_steps`` when given (e.g. a fit's ``curves.eval_step``).

    Returns dict(step [0, every, ..., steps], loss (discrete GD, exact for the linearised model),
    loss_flow (gradient flow), kernel ('trace' | 'full'), approximation, rule, lr, n, n_outputs,
    lr_lambda_max_over_n (η λ_max / N, per output for the trace form), stable (< 2)). With
    ``offsets``, also offset (0.5 ||r̄_t||², r̄_t = mean_i r_t[i] in R^c, each output's mean
    residual over the N samples) and loss_offset_free (loss − offset = (0.5 / N) sum_i
    ||r_t[i] − r̄_t||²): the part of the loss that is not common to every sample.
    """
    if steps < 0 or every < 1:
        raise ValueError(f"need steps >= 0 and every >= 1, got steps={steps}, every={every}")
    r = r0.detach().cpu().double()
    if r.ndim != 2:
        raise ValueError(f"r0 must be (N, c), got shape {tuple(r.shape)}")
    n, c = r.shape
    if isinstance(kernel_or_eigh, tuple):
        w, v = kernel_or_eigh
        w, v = w.detach().cpu().double(), v.detach().cpu().double()
    else:
        w, v = eigendecompose(kernel_or_eigh)
        assert v is not None
    rows = v.shape[0]
    if rows == n * c and c > 1:
        form = KernelForm.FULL.value
        proj2 = (v.T @ r.reshape(-1)) ** 2  # <v_i, r_0>^2
        rate = lr * w / n
        approximation = "none: the full kernel"
    elif rows == n:
        form = KernelForm.TRACE.value
        proj2 = ((v.T @ r) ** 2).sum(1)  # sum_k <v_i ⊗ e_k, r_0>^2
        rate = lr * w / (c * n)
        approximation = (
            "Prop. 1: K_full ≈ (K_trace / c) ⊗ I_c" if c > 1 else "none: one output (trace = full)"
        )
    else:
        raise ValueError(f"kernel with {rows} rows matches neither N={n} nor N*c={n * c}")
    if kernel_form is not None and KernelForm(kernel_form).value != form and c > 1:
        raise ValueError(
            f"kernel_form={kernel_form!r}, but a kernel of {rows} rows for N={n} "
            f"samples and c={c} outputs is the {form} form"
        )
    # Part of r_0 outside the given eigenvectors (a top-k decomposition): it does not move.
    rest = max(float((r**2).sum() - proj2.sum()), 0.0)
    if eval_steps is not None:
        ts = torch.tensor([float(t) for t in eval_steps], dtype=torch.float64)
        if (ts < 0).any():
            raise ValueError("eval_steps must be >= 0")
    else:
        ts = torch.arange(0, steps + 1, every, dtype=torch.float64)
        if ts[-1] != steps:
            ts = torch.cat([ts, torch.tensor([float(steps)], dtype=torch.float64)])
    # (1 - rate)^(2t) is an even power: |1 - rate|^(2t) also for rate > 1 (steps that overshoot).
    base = (1 - rate)[None, :]
    decay = base.abs().pow(2 * ts[:, None])
    loss = 0.5 / n * ((decay * proj2[None, :]).sum(1) + rest)
    flow = 0.5 / n * ((torch.exp(-2 * rate[None, :] * ts[:, None]) * proj2[None, :]).sum(1) + rest)
    top = float(rate.max()) if rate.numel() else 0.0
    extra: dict[str, Any] = {}
    if offsets:
        if form == KernelForm.FULL.value:
            proj = v.T @ r.reshape(-1)  # <v_i, r_0>
            means = v.reshape(n, c, -1).mean(0)  # (c, m): each eigenvector's mean over samples
            rest_mean = (r.reshape(-1) - v @ proj).reshape(n, c).mean(0)
        else:
            proj_m = v.T @ r  # (m, c)
            means = v.mean(0)  # (m,)
            rest_mean = (r - v @ proj_m).mean(0)
        g = _signed_power(1 - rate, ts)  # (T, m): (1 - rate)^t, the sign kept
        if form == KernelForm.FULL.value:
            mean_t = (g * proj[None, :]) @ means.T + rest_mean[None, :]  # (T, c)
        else:
            mean_t = (g * means[None, :]) @ proj_m + rest_mean[None, :]
        offset = 0.5 * (mean_t**2).sum(1)
        extra = {
            "offset": offset.tolist(),
            "loss_offset_free": (loss - offset).clamp_min(0.0).tolist(),
        }
    return {
        "step": [int(t) for t in ts.tolist()],
        "loss": loss.tolist(),
        "loss_flow": flow.tolist(),
        "kernel": form,
        "approximation": approximation,
        "rule": "discrete GD on the linearised model: r_{t+1} = (I - lr K / N) r_t, "
        "loss = 0.5 * mean_i ||f(x_i) - y_i||^2 (fit.squared_loss); step t = after t updates",
        "lr": float(lr),
        "n": n,
        "n_outputs": c,
        "lr_lambda_max_over_n": top,
        "stable": top < 2.0,
        **extra,
    }


def _signed_power(base: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """(T, m): base[j] ** ts[t] for integer steps ts, negative bases included (an overshooting
    mode flips sign every step)."""
    mag = base.abs()[None, :].pow(ts[:, None])
    odd = torch.remainder(ts, 2)[:, None] == 1
    return torch.where(odd & (base[None, :] < 0), -mag, mag)


def offset_split(residuals: torch.Tensor) -> tuple[float, float]:
    """(loss, loss with each output's mean residual removed) of residuals r (N, c), f(x_i) - y_i:
    loss = (0.5 / N) sum_i ||r_i||², the second (0.5 / N) sum_i ||r_i − r̄||² with r̄ = mean_i r_i;
    their difference 0.5 ||r̄||² is the offset common to every sample."""
    r = residuals.detach().double().cpu()
    n = r.shape[0]
    return float(0.5 / n * (r**2).sum()), float(0.5 / n * ((r - r.mean(0)) ** 2).sum())
