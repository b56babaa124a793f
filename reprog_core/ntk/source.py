"""The source NTK K_S: w.r.t. the source model's trainable parameters, on source samples.

Following the paper's earlier version: k samples per class from the source training set, several
random draws, the spectrum of each and the mean and spread of λ_min across draws. The parameters
are the ones source training updates: the whole pixel model (``cnn``, ``mlp``), only the CNN head
for ``clip-cnn``, whose frozen backbone features are computed once per draw and fed to the head
(the backbone is constant, so K_S is the head's NTK on those features).

Shapes: K trace (N, N), full (N*c_S, N*c_S) sample-major, N = k_per_class * n_classes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from reprog_core.config import KernelForm
from reprog_core.ntk._autodiff import cast_module, eval_mode, model_device_dtype
from reprog_core.ntk.jacobian import BatchFn, jacobian_ntk
from reprog_core.ntk.spectral import spectrum


def _module_fn(net: nn.Module) -> BatchFn:
    def fn(params: Mapping[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        return functional_call(net, dict(params), (xb,))

    return fn


def source_kernel(
    source: nn.Module,
    x: torch.Tensor,
    *,
    kernel: str = KernelForm.TRACE.value,
    budget_bytes: int | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """K_S of one source model on source images x (N, 3, s, s).

    Trainable part: ``source.head`` when the model has a frozen ``backbone`` (clip-cnn; its
    features are computed first, without grad), else the whole model. Returns (K, info) with K
    trace (N, N) or full (N*c_S, N*c_S) and info = dict(n_params, n_outputs, method='jacobian').
    """
    source = cast_module(source, dtype)
    device, dtype = model_device_dtype(source)
    x = x.to(device=device, dtype=dtype)
    with eval_mode(source):
        if hasattr(source, "backbone") and hasattr(source, "head"):
            with torch.no_grad():
                # Same features as source training uses (backbone_features without a cache key).
                inputs = torch.cat([source.backbone(x[i : i + 64]) for i in range(0, len(x), 64)])
            net: nn.Module = source.head
        else:
            inputs, net = x, source
        params = {k: p.detach() for k, p in net.named_parameters()}
        k = jacobian_ntk(
            _module_fn(net),
            params,
            inputs.to(dtype),
            kernel=kernel,
            budget_bytes=budget_bytes,
            what=f"source NTK (jacobian, {KernelForm(kernel).value})",
        )
        with torch.no_grad():
            n_outputs = int(net(inputs[:1]).shape[1])
    info = {
        "method": "jacobian",
        "n_params": sum(p.numel() for p in params.values()),
        "n_outputs": n_outputs,
    }
    return k, info


def source_ntk(
    source: nn.Module,
    draws: Sequence[tuple[torch.Tensor, torch.Tensor]],
    n_classes: int,
    *,
    kernel: str = KernelForm.TRACE.value,
    budget_bytes: int | None = None,
    dtype: torch.dtype | None = None,
    keep_kernels: bool = False,
) -> dict[str, Any]:
    """The source NTK of a trained source model over several draws of source samples.

    ``draws``: (x, y) per draw, e.g. k images per class of the source training split
    (``source_model.training.source_draws``); ``n_classes``: c_S, for the label alignment.

    Returns dict(wrt='source', kernel, method='jacobian', n (samples per draw), n_outputs (c_S),
    n_params, stats (``SpectrumStats.to_dict()`` per draw, alignment with the draw's labels: the
    dict is JSON-safe), lambda_min_draws, lambda_min_mean, lambda_min_std (ddof=1; 0 for one
    draw), lambda_max_mean, seconds, kernels (the K of each draw, only with ``keep_kernels``)).
    """
    t0 = time.perf_counter()
    if not draws:
        raise ValueError("need at least one draw of source samples")
    stats, kernels, info = [], [], {}
    for x, y in draws:
        k, info = source_kernel(source, x, kernel=kernel, budget_bytes=budget_bytes, dtype=dtype)
        stats.append(spectrum(k, y, n_classes=n_classes))
        if keep_kernels:
            kernels.append(k.cpu())
    lam = np.array([s.lambda_min for s in stats])
    return {
        "wrt": "source",
        "kernel": KernelForm(kernel).value,
        "method": "jacobian",
        "n": len(draws[-1][0]),
        "n_outputs": info["n_outputs"],
        "n_params": info["n_params"],
        "stats": [s.to_dict() for s in stats],
        "lambda_min_draws": lam.tolist(),
        "lambda_min_mean": float(lam.mean()),
        "lambda_min_std": float(lam.std(ddof=1)) if len(lam) > 1 else 0.0,
        "lambda_max_mean": float(np.mean([s.lambda_max for s in stats])),
        "seconds": time.perf_counter() - t0,
        "kernels": kernels if keep_kernels else None,
    }
