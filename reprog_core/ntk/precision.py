"""The precision check of the structured target NTK: float32 input gradients, float64 Gram.

The input gradients G are 97-99 % of the kernel's time, and on a CPU float32 backward passes are
about twice as fast as float64 ones. ``grad_dtype=torch.float32`` with ``dtype=torch.float64``
computes G in float32 and the Gram product (and everything after it) in float64; an all-float32
kernel is not an option (its rank tolerance, n eps32 λ_max, hides most of a vp spectrum). Float32
G is accepted only where it cannot change the rank or λ_min - the **precision check** (run by
``target.target_ntk_eig``):

1. A probe: G of the first ``PROBE_SAMPLES`` samples in both precisions gives the measured
   relative error η = ||G32 - G64||_F / ||G64||_F (at least eps32). With E the float32 error of the
   Gram's rows B (K = B B^T), ||E||_2 <= ||E||_F ~ η ||B||_F = η sqrt(tr K).
2. floor = η^2 tr K: the level up to which an eigenvalue of the float32-G kernel can be round-off
   (a null direction of K shows up there, not at 0). By Weyl's inequality for singular values,
   |sqrt(λ~_i) - sqrt(λ_i)| <= sqrt(floor) for every i.
3. Accepted when the smallest computed eigenvalue λ~_min >= ``PRECISION_MARGIN`` x floor (1e5):
   then every eigenvalue is certified positive (the rank is full in both precisions, far above
   the float64 rank tolerance n eps64 λ_max) and no eigenvalue, λ_min included, is off by more
   than 2/sqrt(1e5) + 1e-5 ~ 0.6 % even in this worst case (Frobenius for the spectral norm
   overestimates ||E||_2 by up to sqrt(N); the measured errors are ~1e-8). The default pair's vp
   kernel at N = 512 passes with λ_min at 1.6e6 floors (3.3e-8 λ_max). Otherwise
   (a rank-deficient kernel, a spectrum reaching down to round-off, η > ``MAX_PROBE_ERROR``, e.g.
   TF32 on a GPU) the kernel is recomputed all in float64, and ``info['precision']`` says why.

Shapes: x (B, C, H, W) target images of the probe; G (B, c_T, 3 s^2); K the (N, N) trace or
(N*c_T, N*c_T) full kernel and its eigenvalues w (rows,), descending.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from reprog_core.ntk._autodiff import model_device_dtype
from reprog_core.ntk.structured import _frozen_part_grads
from reprog_core.reprogrammed import ReprogrammedModel

# The precision check (module doc): samples in the probe, the margin over the round-off floor, and
# the probe error beyond which float32 G is not even tried (TF32 convolutions give ~1e-3).
PROBE_SAMPLES = 8
PRECISION_MARGIN = 1e5
MAX_PROBE_ERROR = 1e-4


def _probe_error(
    model_lo: ReprogrammedModel, model_hi: ReprogrammedModel, x: torch.Tensor
) -> float:
    """η = ||G_lo - G_hi||_F / ||G_hi||_F on target images x (B, C, H, W), both at the same
    source inputs z = a(x) (computed in the higher precision); at least eps of the lower one.
    inf when G_lo is not finite (overflow)."""
    _, lo = model_device_dtype(model_lo)
    _, hi = model_device_dtype(model_hi)
    with torch.no_grad():
        z = model_hi.transform(x.to(hi))
    g_hi = _frozen_part_grads(model_hi, z)
    g_lo = _frozen_part_grads(model_lo, z.to(lo)).to(hi)
    if not torch.isfinite(g_lo).all():
        return math.inf
    ref = float(g_hi.norm())
    err = float((g_lo - g_hi).norm())
    eta = err / ref if ref > 0 else (0.0 if err == 0 else math.inf)
    return max(eta, float(torch.finfo(lo).eps))


def _precision_check(
    eta: float,
    k: torch.Tensor | None,
    eig: tuple[torch.Tensor, torch.Tensor | None] | None,
) -> dict[str, Any]:
    """Accept the lower-precision G or not (module doc): λ~_min >= PRECISION_MARGIN η^2 tr K."""
    out: dict[str, Any] = {
        "probe_error": eta,
        "margin": PRECISION_MARGIN,
        "probe_samples": PROBE_SAMPLES,
    }
    if k is None or eig is None:
        return {
            **out,
            "fallback": True,
            "reason": f"probe error {eta:.1e} > {MAX_PROBE_ERROR:g}: G recomputed at the Gram's "
            "precision",
        }
    w = eig[0]
    trace = float(torch.diagonal(k).sum())
    floor = eta * eta * trace
    lam_min = float(w[-1])
    ok = math.isfinite(floor) and lam_min >= PRECISION_MARGIN * floor
    out.update(
        floor=floor,
        lambda_min_raw=lam_min,
        lambda_max=float(w[0]),
        fallback=not ok,
        reason=(
            f"lambda_min {lam_min:.3g} >= {PRECISION_MARGIN:g} x floor {floor:.3g}"
            if ok
            else f"lambda_min {lam_min:.3g} < {PRECISION_MARGIN:g} x floor {floor:.3g}: "
            "G recomputed at the Gram's precision"
        ),
    )
    return out
