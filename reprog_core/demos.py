"""Small, live computations for the dashboard's Learn page (no Streamlit, CPU, well under a second).

* ``spectrum_convergence``: gradient descent on a model that is linear in its parameters, with a
  kernel whose eigenvalues you choose, against the loss the eigenvalues predict. It shows the
  paper's central claim in miniature: large eigenvalues are fitted fast, small ones slowly, and
  where the labels lie in the eigenbasis decides how fast the loss falls.
* ``ntk_width_convergence``: the empirical NTK of randomly initialised ReLU MLPs of growing width
  against the analytic infinite-width NTK (``ntk.analytic.relu_mlp_ntk``), on inputs spread around
  a circle; the error shrinks roughly like 1/sqrt(width).

Both return JSON-safe dicts that ``figures.convergence_demo_figure`` / ``width_demo_figure`` draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from reprog_core.ntk.analytic import relu_mlp_ntk
from reprog_core.runtime import rng_lock
from reprog_core.source_model.pixel import NTKLinear

LABEL_PLACEMENTS = ("even", "fast", "slow")


def spectrum_convergence(
    n: int = 40,
    alpha: float = 1.0,
    labels: str = "even",
    step_size: float = 1.0,
    steps: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Gradient descent on f(x) = φ(x)ᵀw whose kernel K = Φ Φᵀ (n x n) has eigenvalues
    λ_i = i^(−alpha), i = 1..n (so λ_max = 1), against the spectral prediction.

    ``labels``: where the targets y (n,) lie in K's eigenbasis: 'even' (equal weight on every
    eigenvector), 'fast' (weight ∝ λ_i: along the large eigenvalues, high alignment) or 'slow'
    (weight on the small ones). ``step_size`` is η λ_max (stable below 2). Loss is
    (0.5 / n) ||Φ w − y||², w_0 = 0. Per step the residual shrinks along eigenvector i by
    (1 − η λ_i), so the predicted loss is (0.5 / n) Σ_i (1 − η λ_i)^(2t) <v_i, y>², which the real
    descent follows exactly: a model linear in its parameters is what the NTK regime assumes.
    """
    if labels not in LABEL_PLACEMENTS:
        raise ValueError(f"labels must be one of {LABEL_PLACEMENTS}, got {labels!r}")
    if not 0 < step_size < 2:
        raise ValueError(f"step_size (η λ_max) must be in (0, 2), got {step_size}")
    rng = np.random.default_rng(seed)
    lam = np.arange(1, n + 1, dtype=np.float64) ** (-float(alpha))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))  # eigenvectors of K, columns
    p = 2 * n  # more parameters than samples: the kernel can have full rank
    q, _ = np.linalg.qr(rng.standard_normal((p, n)))  # (p, n) orthonormal columns
    phi = v @ np.diag(np.sqrt(lam)) @ q.T  # (n, p) features: Φ Φᵀ = V diag(λ) Vᵀ
    weight = {"even": np.ones(n), "fast": lam, "slow": lam[::-1]}[labels]
    coef = weight / np.linalg.norm(weight) * math.sqrt(n)  # ||y||² = n: loss starts at 0.5
    y = v @ coef
    eta = step_size / lam.max()

    w = np.zeros(p)
    measured = []
    for _ in range(steps + 1):
        r = phi @ w - y
        measured.append(0.5 * float(r @ r) / n)
        w -= eta * phi.T @ r  # the gradient of 0.5 ||Φ w − y||²
    t = np.arange(steps + 1)[:, None]
    per_mode = 0.5 / n * (1 - eta * lam[None, :]) ** (2 * t) * coef[None, :] ** 2  # (T, n)
    thirds = np.array_split(np.arange(n), 3)
    names = ("the largest third of λ", "the middle third", "the smallest third")
    by_group = {name: per_mode[:, idx].sum(1).tolist() for name, idx in zip(names, thirds)}
    predicted = per_mode.sum(1)
    below = np.flatnonzero(np.asarray(measured) <= 0.01 * measured[0])
    return {
        "eigenvalues": lam.tolist(),
        "step": list(range(steps + 1)),
        "loss_measured": measured,
        "loss_predicted": predicted.tolist(),
        "loss_by_group": by_group,
        "steps_to_1pct": int(below[0]) if below.size else None,
        "condition_number": float(lam.max() / lam.min()),
        "alignment": float(coef @ (lam * coef) / (np.linalg.norm(lam) * (coef @ coef))),
        "n": n,
        "n_params": p,
        "step_size": step_size,
        "labels": labels,
    }


def _relu_mlp(d_in: int, width: int, depth: int) -> nn.Sequential:
    """The network ``relu_mlp_ntk`` describes: ``depth`` NTKLinear+ReLU layers, NTKLinear read-out
    with σ_w = 1 (what ``PixelMLP(ntk_init=True, centre=False)`` builds on flattened images)."""
    layers: list[nn.Module] = []
    dims = [d_in] + [width] * depth
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [NTKLinear(a, b), nn.ReLU()]
    layers.append(NTKLinear(dims[-1], 1, sigma_w=1.0))
    return nn.Sequential(*layers)


def _empirical_ntk(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Θ(x_i, x_j) = <∂f(x_i)/∂w, ∂f(x_j)/∂w> for a scalar-output model: x (N, d) -> (N, N)."""
    from torch.func import functional_call, grad, vmap

    params = {k: p.detach() for k, p in model.named_parameters()}

    def f(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (xi[None],)).squeeze()

    grads = vmap(grad(f), in_dims=(None, 0))(params, x)
    jac = torch.cat([g.reshape(len(x), -1) for g in grads.values()], dim=1)  # (N, P)
    return (jac @ jac.T).double()


def ntk_width_convergence(
    widths: Sequence[int] = (16, 64, 256, 1024),
    depth: int = 2,
    n_angles: int = 49,
    seeds: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Empirical NTKs of ReLU MLPs at initialisation against the infinite-width one.

    Inputs x(γ) = (cos γ, sin γ) for n_angles angles γ in [−π, π]; x₀ = x(0). For every width and
    each of ``seeds`` random initialisations: the row Θ(x₀, x(γ)) and the relative Frobenius error
    ||Θ_emp − Θ||_F / ||Θ||_F over all pairs. Returns JSON-safe lists.
    """
    if any(w < 1 or w > 4096 for w in widths):
        raise ValueError(f"widths must be between 1 and 4096, got {list(widths)}")
    gamma = torch.linspace(-math.pi, math.pi, n_angles, dtype=torch.float64)
    x = torch.stack([gamma.cos(), gamma.sin()], dim=1)
    centre = int(torch.argmin(gamma.abs()))
    analytic = relu_mlp_ntk(x, x, depth=depth)  # (N, N) float64
    norm = torch.linalg.norm(analytic)
    rows, err_mean, err_std, n_params = [], [], [], []
    for j, width in enumerate(widths):
        curves, errs = [], []
        for s in range(seeds):
            with rng_lock():  # the global RNG is shared with the backend's threads
                torch.manual_seed(seed * 10_007 + j * 101 + s)
                model = _relu_mlp(2, int(width), depth)
            emp = _empirical_ntk(model, x.float())
            curves.append(emp[centre].tolist())
            errs.append(float(torch.linalg.norm(emp - analytic) / norm))
        rows.append(curves)
        err_mean.append(float(np.mean(errs)))
        err_std.append(float(np.std(errs)))
        n_params.append(sum(p.numel() for p in model.parameters()))
    return {
        "angle": gamma.tolist(),
        "widths": [int(w) for w in widths],
        "depth": depth,
        "empirical": rows,
        "analytic": analytic[centre].tolist(),
        "error_mean": err_mean,
        "error_std": err_std,
        "n_params": n_params,
        "seeds": seeds,
    }
