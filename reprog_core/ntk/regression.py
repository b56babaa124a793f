"""Kernel regression with the target NTK: how well the kernel itself classifies held-out images.

The spectrum's usual summaries (λ_min, effective rank, alignment) can point the wrong way when
two kernels are compared across source models (docs/results.md): a random network whose kernel is
close to the identity scores well on all of them while it knows nothing. What a kernel is *for*
is prediction, so the statistic that answers "does this kernel carry the target task?" is its own
regression accuracy: kernel ridge regression from the N kernel samples to M held-out images,

    α = (K_XX + λ I)^{-1} (Y − 1/c),     ŷ(x) = argmax_c  K_xX α_c,

with one-hot targets Y (N, c) centred by 1/c and ridge λ = ``RIDGE`` · tr(K_XX) / N (a small,
scale-free regulariser: the kernel's own scale differs by orders of magnitude between sources).
This is the prediction of the linearised model trained to convergence on the N samples with
squared loss from a zero output, on the trace form of the kernel.
"""

from __future__ import annotations

import torch

RIDGE = 1e-3


def kernel_regression_accuracy(
    k_all: torch.Tensor, y_train: torch.Tensor, y_test: torch.Tensor, n_classes: int
) -> float:
    """k_all (N + M, N + M): a trace-form kernel on the N training samples followed by the M
    held-out ones; y_train (N,), y_test (M,) int labels. Returns the held-out accuracy in [0, 1]
    (NaN for a zero or non-finite kernel)."""
    n, m = len(y_train), len(y_test)
    if k_all.shape != (n + m, n + m):
        raise ValueError(f"kernel of shape {tuple(k_all.shape)} for {n} + {m} samples")
    k = k_all.detach().to("cpu", torch.float64)
    k_xx, k_sx = k[:n, :n], k[n:, :n]
    scale = float(torch.trace(k_xx)) / max(1, n)
    if not scale > 0 or not torch.isfinite(k).all():
        return float("nan")
    targets = torch.nn.functional.one_hot(y_train.cpu().long(), n_classes).to(torch.float64)
    targets -= 1.0 / n_classes
    ridge = RIDGE * scale * torch.eye(n, dtype=torch.float64)
    alpha = torch.linalg.solve(k_xx + ridge, targets)
    pred = (k_sx @ alpha).argmax(1)
    return float((pred == y_test.cpu().long()).double().mean())
