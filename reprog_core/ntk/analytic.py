"""Kernels in closed form: the transformation's own kernel Θ^A and the infinite-width ReLU MLP NTK.

Θ^A(x, x') = d a(x)/dθ  (d a(x')/dθ)^T  in R^{d_S x d_S}, the kernel of the input transformation
alone (docs/science.md). It never depends on the source model:

* ``vp`` / ``vp-full``:  Θ^A(x, x') = diag(D^2), D = ``prompt_scale()`` (mask * σ'(δ) for vp, 1 or
  1 - tanh^2 for vp-full): a constant diagonal, the same for every pair of inputs;
* ``fc``:                Θ^A(x, x') = (<u(x), u(x')> + 1) I, u = ``fc_features(x)`` (the resized
  target image, flattened): the linear kernel of the inputs times the identity;
* ``vp-fc``:             diag(D^2) on the border plus (<u, u'> + 1) on the inner fc region.

So the target NTK factors as Θ_T = G Θ^A G^T with G the input gradient of the frozen part; with
a linear, orthonormal source (G G^T = I: Θ^A_S = I) Θ_T is Θ^A seen through G.

``relu_mlp_ntk`` is the arc-cosine recursion (Jacot et al. 2018; Arora et al. 2019) for exactly
``PixelMLP(centre=False, ntk_init=True)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from reprog_core.input_transform import InputTransform
from reprog_core.ntk.structured import transform_structure
from reprog_core.source_model.pixel import RELU_SIGMA_W


@dataclass
class TransformKernel:
    """Θ^A on N inputs as a sum of separable terms:

        Θ^A(x_i, x_j) = sum_t  scalars[t][i, j] * diag(diagonals[t])       (d_S, d_S)

    ``scalars[t]`` (N, N), ``diagonals[t]`` (d_S,) with d_S = 3 s^2 (row-major over (3, s, s)).
    ``names[t]`` says which part each term is ('prompt' or 'fc').
    """

    scalars: list[torch.Tensor]
    diagonals: list[torch.Tensor]
    names: list[str]

    def block(self, i: int, j: int) -> torch.Tensor:
        """Θ^A(x_i, x_j): (d_S, d_S)."""
        diag = sum(s[i, j] * d for s, d in zip(self.scalars, self.diagonals))
        return torch.diag(diag)

    def dense(self) -> torch.Tensor:
        """The whole kernel (N*d_S, N*d_S), sample-major (row i*d_S + k). Small inputs only."""
        n, d = self.scalars[0].shape[0], self.diagonals[0].numel()
        out = torch.zeros(n, d, n, d, dtype=self.diagonals[0].dtype)
        idx = torch.arange(d)
        for s, diag in zip(self.scalars, self.diagonals):
            out[:, idx, :, idx] += s[None] * diag[:, None, None]
        return out.reshape(n * d, n * d)


def transform_kernel(transform: InputTransform, x: torch.Tensor) -> TransformKernel:
    """Θ^A of ``transform`` on target images x (N, C, H, W), in closed form (module doc).

    Raises ``ValueError`` for transforms without a known structure (and for ``none``).
    """
    structure = transform_structure(transform)
    if structure is None:
        raise ValueError(f"no closed-form Θ^A for transform {getattr(transform, 'kind', '?')!r}")
    p = next(transform.parameters())
    x = x.to(device=p.device, dtype=p.dtype)
    n = x.shape[0]
    scalars, diagonals, names = [], [], []
    with torch.no_grad():
        if structure.prompt:
            scalars.append(torch.ones(n, n, dtype=p.dtype, device=p.device))
            diagonals.append(transform.prompt_scale().flatten() ** 2)
            names.append("prompt")
        if structure.fc:
            u = transform.fc_features(x)
            scalars.append(u @ u.T + 1)
            diagonals.append(transform.fc_region.flatten().to(p.dtype))
            names.append("fc")
    return TransformKernel(scalars, diagonals, names)


# ----------------------------------------------------------------------------- ReLU MLP


def _relu_expectations(
    q1: torch.Tensor, q2: torch.Tensor, cross: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For (u, v) ~ N(0, [[q1, c], [c, q2]]): E[relu(u) relu(v)] and E[step(u) step(v)].

    q1 (N1,), q2 (N2,), cross (N1, N2) -> both (N1, N2). The arc-cosine kernels of degree 1 and 0
    (Cho & Saul 2009): with cos θ = c / sqrt(q1 q2),
    E[relu relu] = sqrt(q1 q2) (sin θ + (π - θ) cos θ) / (2π),  E[step step] = (π - θ) / (2π).
    """
    norm = torch.sqrt(q1[:, None] * q2[None, :])
    cos = (cross / norm).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    k1 = norm * (torch.sin(theta) + (math.pi - theta) * cos) / (2 * math.pi)
    k0 = (math.pi - theta) / (2 * math.pi)
    return k1, k0


def relu_mlp_ntk(
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    depth: int = 1,
    sigma_w: float = RELU_SIGMA_W,
    sigma_b: float = 0.1,
    readout_sigma_w: float = 1.0,
) -> torch.Tensor:
    """The infinite-width NTK of a ReLU MLP in the NTK parameterisation, per output.

    x1 (N1, ...) and x2 (N2, ...) are flattened to (N, d0) (default x2 = x1). ``depth`` hidden
    layers of ``NTKLinear(sigma_w, sigma_b)`` + ReLU, then an ``NTKLinear(readout_sigma_w,
    sigma_b)`` read-out: exactly ``PixelMLP(s, depth, width, c, ntk_init=True, centre=False)`` as
    width -> infinity. Returns Θ (N1, N2) float64; the c-output kernel is Θ ⊗ I_c (so the trace
    form over c outputs is c Θ).

    Recursion, layer l with weight scale σ_l (σ_w hidden, readout_sigma_w last):
        Σ^1 = σ_1^2 <x, x'> / d0 + σ_b^2,                       Θ^1 = Σ^1
        Σ^l = σ_l^2 E[φ(u) φ(v)] + σ_b^2,  Σ'^l = σ_l^2 E[φ'(u) φ'(v)],  (u, v) ~ N(0, Σ^{l-1})
        Θ^l = Σ^l + Θ^{l-1} Σ'^l
    """
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    a = x1.reshape(len(x1), -1).to(torch.float64)
    b = a if x2 is None else x2.reshape(len(x2), -1).to(torch.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x1 and x2 have different input sizes: {a.shape[1]} vs {b.shape[1]}")
    d0 = a.shape[1]
    scales = [sigma_w] * depth + [readout_sigma_w]
    s1 = scales[0] ** 2
    cross = s1 * (a @ b.T) / d0 + sigma_b**2
    q1 = s1 * (a * a).sum(1) / d0 + sigma_b**2
    q2 = s1 * (b * b).sum(1) / d0 + sigma_b**2
    theta = cross.clone()
    for scale in scales[1:]:
        k1, k0 = _relu_expectations(q1, q2, cross)
        cross_new = scale**2 * k1 + sigma_b**2
        theta = cross_new + theta * (scale**2 * k0)
        # On the diagonal θ = 0: E[relu(u)^2] = q / 2.
        q1 = scale**2 * q1 / 2 + sigma_b**2
        q2 = scale**2 * q2 / 2 + sigma_b**2
        cross = cross_new
    return theta
