"""Kernels as result records: ``KernelResult`` for a target or source NTK of one config.

The CLI, the backend and the dashboard ask for these; they bundle the kernel's spectrum
(``SpectrumStats``), how it was computed, and for the target NTK the linearised training
prediction in the fit's own step units. A target NTK whose dense plan is over the memory budget
falls back to the top-k eigenvalues by Lanczos (``method='lanczos'``, ``stats.partial``) when
the method is 'auto'; an explicit 'structured' or 'jacobian' request over budget is refused.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from reprog_core import transforms
from reprog_core.config import ExperimentConfig, KernelForm, sgd_step_size
from reprog_core.ntk.dynamics import initial_residuals, ntk_dynamics
from reprog_core.ntk.lanczos import topk_eigs
from reprog_core.ntk.regression import kernel_regression_accuracy
from reprog_core.ntk.source import source_ntk
from reprog_core.ntk.spectral import (
    default_rank_tol,
    spectrum,
    stats_from_eigenvalues,
)
from reprog_core.ntk.target import NtkMethod, estimate_bytes, target_ntk, target_ntk_eig
from reprog_core.reprogrammed import ReprogrammedModel
from reprog_core.results import Dynamics, KernelResult, SpectrumStats

MAX_CURVE_POINTS = 200  # dynamics curves are subsampled to about this many points


def prediction_lr(cfg: ExperimentConfig, lambda_max: float, n: int, kernel: str, c: int) -> float:
    """The step size of the full-batch GD the dynamics predict: ``cfg.lr``, else
    rho N / lambda_max of the full kernel, approximated for the trace form by Prop. 1
    (lambda_max(K_full) ~ lambda_max(K_trace) / c, which understates it about 5x on the default
    pair: docs/science.md). The fit itself takes its step size from the full kernel
    (``kernel_regime.fit_with_spectrum``)."""
    if cfg.lr > 0:
        return float(cfg.lr)
    lam = lambda_max / c if kernel == KernelForm.TRACE.value and c > 1 else lambda_max
    return sgd_step_size(cfg.rho, n, lam)


def target_kernel_result(
    cfg: ExperimentConfig,
    model: ReprogrammedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    kernel: str | None = None,
    method: str = NtkMethod.AUTO.value,
    budget_bytes: int | None = None,
    dtype: torch.dtype | None = None,
    grad_dtype: torch.dtype | None = None,
    topk: int = 64,
    keep_gram: bool = False,
    heldout: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> KernelResult:
    """The target NTK of ``model`` (at its current θ) on x (N, C, H, W) with labels y (N,).

    ``kernel`` defaults to ``cfg.kernel_form``. Over the dense budget, the top ``topk``
    eigenvalues come from Lanczos instead (``stats.partial``; trace and Σ|K|/N are then NaN).
    The record's ``dynamics`` is ``ntk_dynamics`` for ``cfg.steps`` steps at ``prediction_lr``.
    ``grad_dtype``: the input gradients' precision (``target_ntk``); default for vp / vp-full the
    model's own, so a float32 model with ``dtype=torch.float64`` gets float32 G, a float64 Gram
    and the precision check (falling back to all-float64 where the rank or λ_min could change);
    for fc and vp-fc ``dtype`` throughout. ``heldout`` (x (M, C, H, W), y (M,)): held-out images
    for ``regression_acc``, the kernel's own ridge-regression accuracy on them (skipped over the
    memory budget).
    """
    t0 = time.perf_counter()
    kernel = kernel or cfg.kernel_form
    if grad_dtype is None:
        # Float32 G only for prompt transforms: for fc at N = 512 the benchmark (README "Measured")
        # found eigenvalues >= 1e-6 λ_max off by up to 1.2e-4 relative with float32 G.
        spec = transforms.SPECS.get(getattr(model.transform, "kind", ""))
        float32_ok = spec is not None and spec.float32_gradients
        grad_dtype = next(model.parameters()).dtype if float32_ok else (dtype or None)
    plan = estimate_bytes(
        model,
        len(x),
        kernel=kernel,
        method=method,
        dtype=dtype,
        grad_dtype=grad_dtype,
        budget_bytes=budget_bytes,
    )
    gram, share = None, None
    # An explicitly chosen dense method over budget is refused (KernelTooLarge, before any
    # allocation); only 'auto' falls back to the matrix-free top-k eigenvalues.
    if plan["fits"] or method != NtkMethod.AUTO.value:
        # One eigendecomposition serves the spectrum, the precision check and the dynamics.
        k, eig, info = target_ntk_eig(
            model,
            x,
            kernel=kernel,
            method=method,
            budget_bytes=budget_bytes,
            dtype=dtype,
            grad_dtype=grad_dtype,
        )
        assert eig is not None
        n_out = info["n_outputs"]
        stats = spectrum(k, y, n_classes=n_out, eigenvalues=eig[0])
        used, n_params = info["method"], info["n_params"]
        gram = k.cpu().tolist() if keep_gram else None
        share = common_share(k, n_out if kernel == KernelForm.FULL.value else 1)
    else:
        with torch.no_grad():
            n_out = int(model(x[:1].to(next(model.parameters()).device)).shape[1])
        rows = len(x) if kernel == KernelForm.TRACE.value else len(x) * n_out
        w, v, info = topk_eigs(model, x, max(1, min(topk, rows - 1)), kernel=kernel, dtype=dtype)
        work_dtype = dtype or next(model.parameters()).dtype
        stats = stats_from_eigenvalues(
            w,
            rank_tol=default_rank_tol(w, rows, work_dtype),
            trace=float("nan"),
            abs_sum_over_n=float("nan"),
            partial=True,
        )
        eig = (w, v)
        used, n_params = "lanczos", info["n_params"]
    regression = None
    if heldout is not None and len(heldout[1]):
        regression = _regression_accuracy(model, x, y, heldout, n_out, budget=budget_bytes)
    r0 = initial_residuals(model, x, y)
    every = max(1, cfg.steps // MAX_CURVE_POINTS)
    lr = prediction_lr(cfg, stats.lambda_max, len(x), kernel, n_out)
    dynamics = ntk_dynamics(eig, r0, lr=lr, steps=cfg.steps, every=every)
    return KernelResult(
        config=cfg,
        weights=cfg.weights_label,
        wrt="transform",
        kernel=kernel,
        method=used,
        n=len(x),
        n_outputs=n_out,
        n_params=n_params,
        stats=stats,
        seconds=time.perf_counter() - t0,
        dynamics=_curve(dynamics),
        gram=gram,
        regression_acc=regression,
        common_share=share,
        regression_heldout=len(heldout[1]) if regression is not None and heldout else 0,
    )


def common_share(k: torch.Tensor, n_outputs: int = 1) -> float | None:
    """The input-independent share of the Jacobian, ||mean_i J_i||_F^2 / mean_i ||J_i||_F^2.

    From the kernel alone: <J_i, J_j>_F is the trace kernel K_t(i, j), so the share is
    1^T K_t 1 / (N tr K_t). k: trace (N, N), or full (N c, N c) with ``n_outputs`` c (its trace
    form is the sum of the c diagonal entries of each c x c block). 1 when θ moves every
    sample's outputs the same way (a border prompt on a source that sees mostly the border),
    about 1/N for independent directions. None for a zero kernel."""
    kd = k.detach().to("cpu", torch.float64)
    if n_outputs > 1:
        n = kd.shape[0] // n_outputs
        kd = kd.reshape(n, n_outputs, n, n_outputs).diagonal(dim1=1, dim2=3).sum(-1)
    tr = float(torch.trace(kd))
    if not tr > 0:
        return None
    return float(kd.sum()) / (kd.shape[0] * tr)


def _regression_accuracy(
    model: ReprogrammedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    heldout: tuple[torch.Tensor, torch.Tensor],
    n_classes: int,
    *,
    budget: int | None,
) -> float | None:
    """``kernel_regression_accuracy`` on the trace kernel of [x; x_heldout] (None over budget).

    In float32 throughout: an accuracy does not move with the kernel's round-off (the spectrum's
    λ_min would, which is why the spectrum gets the precision check), and on a deep pretrained
    source float64 input gradients cost about 9x as much on a CPU (measured on EfficientNet-Lite0
    at 64 px: 6.3-7.2 s against 0.76 s for 32 samples)."""
    x_all = torch.cat([x, heldout[0].to(x.device)])
    f32 = torch.float32
    plan = estimate_bytes(model, len(x_all), kernel="trace", dtype=f32, budget_bytes=budget)
    if not plan["fits"]:
        return None
    k_all, _ = target_ntk(model, x_all, kernel="trace", dtype=f32, budget_bytes=budget)
    return kernel_regression_accuracy(k_all, y, heldout[1], n_classes)


def source_kernel_result(
    cfg: ExperimentConfig,
    source: nn.Module,
    draws: Sequence[tuple[torch.Tensor, torch.Tensor]],
    n_classes: int,
    *,
    kernel: str | None = None,
    budget_bytes: int | None = None,
    dtype: torch.dtype | None = None,
) -> KernelResult:
    """The source NTK of ``cfg``'s source model on ``draws`` as a record: ``stats`` of the first
    draw, λ_min of every draw in ``lambda_min_draws`` (their mean and spread are what the paper
    reports)."""
    out: dict[str, Any] = source_ntk(
        source,
        draws,
        n_classes,
        kernel=kernel or cfg.kernel_form,
        budget_bytes=budget_bytes,
        dtype=dtype,
    )
    return KernelResult(
        config=cfg,
        weights=cfg.weights_label,
        wrt="source",
        kernel=out["kernel"],
        method=out["method"],
        n=out["n"],
        n_outputs=out["n_outputs"],
        n_params=out["n_params"],
        stats=SpectrumStats(**out["stats"][0]),
        seconds=out["seconds"],
        lambda_min_draws=out["lambda_min_draws"],
    )


def _curve(dyn: dict[str, Any]) -> Dynamics:
    """``ntk_dynamics``'s curves as ``KernelResult.dynamics``. The kernel form (and so whether
    Prop. 1 was used) is the record's ``kernel``."""
    return Dynamics(
        step=[float(s) for s in dyn["step"]],
        loss=dyn["loss"],
        loss_flow=dyn["loss_flow"],
        lr=float(dyn["lr"]),
        lr_lambda_max_over_n=float(dyn["lr_lambda_max_over_n"]),
    )
