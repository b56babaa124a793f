"""The target NTK Θ_T: the kernel of f_T = b o f_S o a_θ with respect to θ only.

    Θ_T(x, x') = J(x) J(x')^T  in R^{c_T x c_T},    J(x) = d f_T(x) / d θ  in R^{c_T x P}

The source model f_S and the mapping b are constants here, a learned mapping included (its
parameters are not part of θ). Two paths compute it:

* ``jacobian`` (reference): per-sample Jacobians w.r.t. the transform's parameters with torch.func,
  contracted (``jacobian.py``). Any transform, any model; holds N x c_T x P numbers.
* ``structured`` (fast): with G(z) = d b(f_S(z)) / dz  (c_T, d_S), the input gradient of the
  frozen part at z = a(x), the chain rule gives (docs/science.md)

      vp, vp-full:  J(x) = G(a(x)) diag(D),  D = d a / d δ = ``prompt_scale()`` (m σ'(δ), or 1)
                    Θ_T(x, x') = G(a(x)) D^2 G(a(x'))^T
      fc:           a(x) = W u(x) + c, u = ``fc_features(x)``;  df/dW_kl = G_k u_l, df/dc_k = G_k
                    Θ_T(x, x') = (<u(x), u(x')> + 1) G_R(a(x)) G_R(a(x'))^T   (G_R: the
                    ``fc_region`` columns of G, the source-input entries the fc layer writes)
      vp-fc:        the sum of both, over disjoint regions (border prompt, inner fc).

  It needs c_T backward passes per chunk of samples and holds N x c_T x d_S numbers, never the
  P-wide Jacobian (fc 32->32 has P ~ 9.4M). ``method='auto'`` picks it whenever the transform
  exposes that structure (``prompt_scale`` / ``fc_features`` + ``fc_region``).

Precision (structured path). The input gradients G are 97-99 % of the kernel's time, and on a
CPU float32 backward passes are about twice as fast as float64 ones. ``grad_dtype=torch.float32``
with ``dtype=torch.float64`` computes G in float32 and the Gram product (and everything after it)
in float64; an all-float32 kernel is not an option (its rank tolerance, n eps32 λ_max, hides most
of a vp spectrum). Float32 G is accepted only where it cannot change the rank or λ_min - the
**precision check** (``target_ntk_eig``):

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

Shapes: x (N, C, H, W) target images; K trace (N, N) = sum_c Θ_T(x_i, x_j)[c, c]; K full
(N*c_T, N*c_T) with row ``i*c_T + c`` (sample-major). Both are symmetrised.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch.func import functional_call

from reprog_core import transforms
from reprog_core.config import KernelForm
from reprog_core.fit import ReprogrammedModel
from reprog_core.input_transform import InputTransform
from reprog_core.ntk._autodiff import (
    cast_module,
    eval_mode,
    itemsize,
    model_bytes,
    model_device_dtype,
)
from reprog_core.ntk.budget import MemoryPlan, chunk_size_for, resolve_budget
from reprog_core.ntk.jacobian import (
    BatchFn,
    contract,
    gram,
    gram_bytes,
    jacobian_plan,
    per_sample_jacobians,
    symmetrise,
)
from reprog_core.ntk.spectral import eigendecompose

# The precision check (module doc): samples in the probe, the margin over the round-off floor, and
# the probe error beyond which float32 G is not even tried (TF32 convolutions give ~1e-3).
PROBE_SAMPLES = 8
PRECISION_MARGIN = 1e5
MAX_PROBE_ERROR = 1e-4
# Samples per chunk of the structured path when the budget allows more. ``python
# bench/ntk_paths.py --chunks`` (README "Measured") found no chunk size (8-64) reliably faster on
# the loaded 2-core VM, so this keeps the budget module's cap; rerun it on an idle machine.
STRUCTURED_CHUNK = 64
# How the c_T backward passes of a chunk run ('loop' or 'batched', see ``_frozen_part_grads``).
COTANGENTS = "loop"


class NtkMethod(str, Enum):
    AUTO = "auto"  # structured when the transform supports it, else jacobian
    STRUCTURED = "structured"  # input gradients of the frozen part (never the P-wide Jacobian)
    JACOBIAN = "jacobian"  # per-sample Jacobians w.r.t. θ, contracted (the reference)


@dataclass(frozen=True)
class TransformStructure:
    """Which structured parts a transform has: a prompt (J = G diag(D)) and/or an fc layer."""

    prompt: bool
    fc: bool


def transform_structure(transform: InputTransform) -> TransformStructure | None:
    """The structure ``transform`` exposes, or None when only the Jacobian path applies.

    Requires a known kind, the hooks of ``input_transform.py``, and exactly the parameters the
    structured formula accounts for (so a subclass that adds parameters falls back safely).
    """
    spec = transforms.SPECS.get(getattr(transform, "kind", ""))
    if spec is None or not (spec.prompt or spec.fc):
        return None
    if {name for name, _ in transform.named_parameters()} != spec.params:
        return None
    prompt, fc = spec.prompt, spec.fc
    if prompt and transform.prompt_scale() is None:
        return None
    if fc and not (hasattr(transform, "fc_features") and hasattr(transform, "fc_region")):
        return None
    return TransformStructure(prompt=prompt, fc=fc)


def _resolve_method(transform: InputTransform, method: str | NtkMethod) -> str:
    method = NtkMethod(method).value
    structure = transform_structure(transform)
    if method == NtkMethod.STRUCTURED.value and structure is None:
        raise ValueError(
            f"transform {getattr(transform, 'kind', type(transform).__name__)!r} has no known "
            "Jacobian structure; use method='jacobian' (or 'auto')"
        )
    if method == NtkMethod.AUTO.value:
        return NtkMethod.STRUCTURED.value if structure else NtkMethod.JACOBIAN.value
    return method


# ----------------------------------------------------------------------------- input gradients


def _frozen_part_grads(
    model: ReprogrammedModel, z: torch.Tensor, *, cotangents: str = "loop"
) -> torch.Tensor:
    """G for one chunk: z (B, 3, s, s) source inputs -> (B, c_T, 3*s*s), G[i, c] = d f_c(z_i)/dz_i,
    in z's dtype (the model must compute in it too).

    One batched forward, then c_T backward passes of ``sum_i f_c(z_i)``: because samples do not
    interact (eval mode), the gradient of the sum w.r.t. z_i is the per-sample input gradient.
    ``cotangents='loop'`` (default) runs them one by one; ``'batched'`` runs one vmapped backward
    over the c_T one-hot cotangents (``is_grads_batched``). The loop is the default because it was
    faster on the CPU (README "Measured") and open_clip's attention backward has no batching rule.
    """
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model.mapping(model.source(z))
        n_out = out.shape[1]
        if cotangents == "batched":
            eye = torch.eye(n_out, dtype=out.dtype, device=out.device)
            cot = eye[:, None, :].expand(n_out, *out.shape).contiguous()  # (c, B, c)
            (g,) = torch.autograd.grad(out, z, cot, is_grads_batched=True)  # (c, B, 3, s, s)
            return g.flatten(2).transpose(0, 1)
        if cotangents != "loop":
            raise ValueError(f"cotangents must be 'loop' or 'batched', got {cotangents!r}")
        rows = []
        for c in range(n_out):
            (g,) = torch.autograd.grad(out[:, c].sum(), z, retain_graph=c < n_out - 1)
            rows.append(g.flatten(1))
    return torch.stack(rows, dim=1)


def input_gradients(
    model: ReprogrammedModel, z: torch.Tensor, *, chunk_size: int = 32
) -> torch.Tensor:
    """G(z) = d b(f_S(z)) / dz, the input gradient of the frozen part at source inputs z.

    z (N, 3, s, s) -> G (N, c_T, 3*s*s), in the model's dtype. With a linear source and an
    identity mapping, G is that linear map for every z (Θ^A_S = G G^T = I for an orthonormal one).
    """
    device, dtype = model_device_dtype(model)
    z = z.to(device=device, dtype=dtype)
    with eval_mode(model):
        parts = [
            _frozen_part_grads(model, z[i : i + chunk_size]) for i in range(0, len(z), chunk_size)
        ]
    return torch.cat(parts)


# ----------------------------------------------------------------------------- the two paths


def _transform_fn(model: ReprogrammedModel) -> BatchFn:
    """fn(θ, x_batch) = b(f_S(a_θ(x_batch))) with θ given as a dict (for torch.func)."""

    def fn(params: Mapping[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        return model.mapping(model.source(functional_call(model.transform, dict(params), (xb,))))

    return fn


@dataclass(frozen=True)
class _StructuredLayout:
    """Which source-input entries each part reads: ``prompt_idx`` where D != 0 (border for vp),
    ``fc_idx`` the fc region; ``d_in`` the fc input size."""

    prompt_idx: torch.Tensor | None
    prompt_scale: torch.Tensor | None  # D on prompt_idx
    fc_idx: torch.Tensor | None
    d_in: int


def _layout(
    transform: InputTransform, structure: TransformStructure, dtype: torch.dtype | None = None
) -> _StructuredLayout:
    """The layout of ``transform``; D is computed in ``dtype`` (default: the transform's), from a
    cast copy of the transform, so that a float64 Gram gets float64 D even with float32 G."""
    prompt_idx = prompt_scale = fc_idx = None
    d_in = 0
    if structure.prompt:
        scale = cast_module(transform, dtype).prompt_scale().detach().flatten()
        # Columns with D = 0 (the inner square of vp) contribute nothing: dropping them is exact.
        prompt_idx = torch.nonzero(scale, as_tuple=True)[0]
        prompt_scale = scale[prompt_idx]
    if structure.fc:
        fc_idx = torch.nonzero(transform.fc_region.flatten(), as_tuple=True)[0]
        d_in = transform.weight.shape[1]
    return _StructuredLayout(prompt_idx, prompt_scale, fc_idx, d_in)


def _structured_plan(
    n: int,
    c: int,
    d_s: int,
    layout: _StructuredLayout,
    kernel: str,
    dtype: torch.dtype,
    chunk: int,
    what: str,
    act: int = 0,
    grad_dtype: torch.dtype | None = None,
    copy_bytes: int = 0,
) -> MemoryPlan:
    """Held: the prompt rows A = G[:, :, prompt] D and the fc rows G[:, :, region] (N, c, .), the
    fc features U (N, d_in), all in ``dtype`` (the Gram's); the Gram matrix (x2 for the
    symmetrised copy, x3 with an fc part, whose Hadamard product with S = UU^T + 1 needs its own
    matrix) and S; one chunk of G (in ``grad_dtype``) and of the frozen part's saved activations
    (``act`` bytes a sample); ``copy_bytes``: a model copy in another precision (the precision
    probe's float64 model, or the cast copy)."""
    item = itemsize(dtype)
    g_item = itemsize(grad_dtype or dtype)
    n_prompt = 0 if layout.prompt_idx is None else len(layout.prompt_idx)
    n_fc = 0 if layout.fc_idx is None else len(layout.fc_idx)
    per_sample = (c * (n_prompt + n_fc) + layout.d_in) * item
    grams = 2 + (1 if n_fc and n_prompt else 0)
    pair = gram_bytes(1, c, kernel, item) * grams + (item if n_fc else 0)
    working = chunk * (2 * c * d_s * g_item + act)
    parts = {
        f"input gradients {n}x{c}x{n_prompt + n_fc}": n * per_sample,
        f"Gram matrix x{grams}": n * n * pair,
        f"chunk of {chunk}": working,
    }
    if copy_bytes:
        parts["model copy"] = copy_bytes
    return MemoryPlan(
        what=what,
        n=n,
        per_sample=per_sample,
        per_pair=pair,
        fixed=working + copy_bytes,
        parts=parts,
    )


def _structured_ntk(
    model: ReprogrammedModel,
    x: torch.Tensor,
    kernel: str,
    layout: _StructuredLayout,
    chunk: int,
    gram_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The structured target NTK (module doc). x (N, C, H, W) -> trace (N, N) or full (N c, N c).

    G is computed in the model's dtype, the rows, the fc features and the Gram in ``gram_dtype``
    (default: the model's); x is used as given for the fc features (pass it in ``gram_dtype``).
    """
    tr = model.transform
    _, g_dtype = model_device_dtype(model)
    gram_dtype = gram_dtype or g_dtype
    n = x.shape[0]
    prompt_rows: list[torch.Tensor] = []
    fc_rows: list[torch.Tensor] = []
    feats: list[torch.Tensor] = []
    scale = None if layout.prompt_scale is None else layout.prompt_scale.to(gram_dtype)
    for start in range(0, n, chunk):
        xb = x[start : start + chunk]
        with torch.no_grad():
            z = tr(xb.to(g_dtype))
        g = _frozen_part_grads(model, z, cotangents=COTANGENTS)  # (B, c, d_S), model's dtype
        if layout.prompt_idx is not None:
            prompt_rows.append(g[:, :, layout.prompt_idx].to(gram_dtype) * scale)
        if layout.fc_idx is not None:
            fc_rows.append(g[:, :, layout.fc_idx].to(gram_dtype))
            with torch.no_grad():
                feats.append(tr.fc_features(xb.to(gram_dtype)))
        del g
    k: torch.Tensor | None = None
    if prompt_rows:
        k = gram(torch.cat(prompt_rows), kernel)
        del prompt_rows
    if fc_rows:
        gf = torch.cat(fc_rows)
        del fc_rows
        u = torch.cat(feats)
        s = torch.addmm(torch.ones(n, n, dtype=u.dtype, device=u.device), u, u.T)  # <u,u'> + 1
        k_fc = gram(gf, kernel)
        del gf
        if kernel == KernelForm.TRACE.value:
            k_fc.mul_(s)
        else:
            c = k_fc.shape[0] // n
            k_fc.view(n, c, n, c).mul_(s[:, None, :, None])
        k = k_fc if k is None else k.add_(k_fc)
    assert k is not None
    return symmetrise(k)


# ----------------------------------------------------------------------------- public entry


def activation_bytes(model: ReprogrammedModel, x: torch.Tensor) -> int:
    """Bytes the frozen part's autograd graph saves per sample, measured on target images x
    (N >= 1, C, H, W): a 2-sample minus a 1-sample forward, so that saved parameters cancel.

    What one chunk of the input-gradient (or Jacobian) computation holds per sample, besides the
    gradients themselves; big backbones (ViT-B at 224 px: ~0.1 GB a sample) make it dominate.
    Each saved tensor counts its whole storage, once: expanded views (attention broadcasts its
    weights with stride 0) would otherwise count many times over.
    """
    with torch.no_grad():
        z = model.transform(x[:1].expand(2, *x.shape[1:]) if len(x) < 2 else x[:2])
    sizes = [_saved_bytes(model, z[:b]) for b in (1, 2)]
    return max(0, sizes[1] - sizes[0])


def _saved_bytes(model: ReprogrammedModel, z: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves in one forward of the frozen part on z."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
        return t

    zb = z.detach().requires_grad_(True)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.mapping(model.source(zb))
    return sum(storages.values())


def _plan(
    model: ReprogrammedModel,
    n: int,
    kernel: str,
    method: str,
    dtype: torch.dtype,
    budget: int,
    chunk_size: int | None,
    n_outputs: int,
    act: int,
    grad_dtype: torch.dtype | None = None,
    copy_bytes: int = 0,
) -> tuple[MemoryPlan, int, _StructuredLayout | None]:
    """The memory plan and chunk size of one request; ``act``: ``activation_bytes`` per sample
    (in the precision G is computed in), ``dtype`` the Gram's precision, ``grad_dtype`` G's."""
    tr = model.transform
    kernel = KernelForm(kernel).value
    what = f"target NTK ({method}, {kernel})"
    item = itemsize(dtype)
    if method == NtkMethod.STRUCTURED.value:
        structure = transform_structure(tr)
        assert structure is not None
        layout = _layout(tr, structure, dtype)
        d_s = 3 * tr.source_size * tr.source_size
        g_item = itemsize(grad_dtype or dtype)
        work = act + 2 * n_outputs * d_s * g_item
        chunk = chunk_size_for(work, budget, n, chunk_size)
        if chunk_size is None:
            chunk = min(chunk, STRUCTURED_CHUNK)
        plan = _structured_plan(
            n, n_outputs, d_s, layout, kernel, dtype, chunk, what, act, grad_dtype, copy_bytes
        )
        return plan, chunk, layout
    p_raw = sum(p.numel() for p in tr.parameters())
    # vmap(jacrev): the forward graph, and the backward's temporaries batched over c_T outputs.
    chunk = chunk_size_for(2 * act + 2 * n_outputs * p_raw * item, budget, n, chunk_size)
    plan = jacobian_plan(n, n_outputs, p_raw, kernel, dtype, chunk, what, 2 * act)
    return plan, chunk, None


def _n_outputs(model: ReprogrammedModel, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x[:1]).shape[1])


def _precisions(
    model: ReprogrammedModel, method: str, dtype: torch.dtype | None, grad_dtype: torch.dtype | None
) -> tuple[torch.dtype, torch.dtype]:
    """(Gram dtype, G dtype) of a request: ``dtype`` or the model's; ``grad_dtype`` or the Gram's.
    The Jacobian path computes in one precision; G is never more precise than the Gram."""
    _, model_dtype = model_device_dtype(model)
    gram_dtype = dtype or model_dtype
    g_dtype = grad_dtype or gram_dtype
    if method != NtkMethod.STRUCTURED.value or itemsize(g_dtype) >= itemsize(gram_dtype):
        g_dtype = gram_dtype
    return gram_dtype, g_dtype


def estimate_bytes(
    model: ReprogrammedModel,
    n: int,
    *,
    kernel: str = KernelForm.TRACE.value,
    method: str = NtkMethod.AUTO.value,
    dtype: torch.dtype | None = None,
    grad_dtype: torch.dtype | None = None,
    n_outputs: int | None = None,
    budget_bytes: int | None = None,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """What ``target_ntk(model, x with N=n, ...)`` would hold, without computing anything.

    Returns dict(method, kernel, n, bytes, budget, fits, max_n, parts). ``n_outputs`` (c_T) is
    read from the mapping when not given (one tiny forward pass otherwise).
    """
    tr = model.transform
    method = _resolve_method(tr, method)
    device, model_dtype = model_device_dtype(model)
    dtype, g_dtype = _precisions(model, method, dtype, grad_dtype)
    if n_outputs is None:
        n_outputs = len(model.mapping.indices) if hasattr(model.mapping, "indices") else None
    if n_outputs is None:
        probe = torch.zeros(1, 3, tr.target_size, tr.target_size, device=device, dtype=model_dtype)
        with eval_mode(model):
            n_outputs = _n_outputs(model, probe)
    budget = resolve_budget(budget_bytes)
    probe = torch.zeros(2, 3, tr.target_size, tr.target_size, device=device, dtype=model_dtype)
    with eval_mode(model):
        act = activation_bytes(model, probe) * itemsize(g_dtype) // itemsize(model_dtype)
    copy_bytes = _copy_bytes(model, dtype, g_dtype)
    plan, _, _ = _plan(
        model, n, kernel, method, dtype, budget, chunk_size, n_outputs, act, g_dtype, copy_bytes
    )
    return {
        "method": method,
        "kernel": KernelForm(kernel).value,
        "n": n,
        "bytes": plan.needed_bytes,
        "budget": budget,
        "fits": plan.needed_bytes <= budget,
        "max_n": plan.largest_n(budget),
        "parts": dict(plan.parts),
    }


def _copy_bytes(model: ReprogrammedModel, dtype: torch.dtype, g_dtype: torch.dtype) -> int:
    """Bytes of the model copies a request makes: one in ``g_dtype`` (G) unless the model is in it,
    and one in ``dtype`` for the precision probe when G is less precise than the Gram."""
    _, model_dtype = model_device_dtype(model)
    total = 0
    for want in {g_dtype, dtype} if g_dtype != dtype else {dtype}:
        if want != model_dtype:
            total += model_bytes(model, want)
    return total


def target_ntk(
    model: ReprogrammedModel,
    x: torch.Tensor,
    *,
    kernel: str = KernelForm.TRACE.value,
    method: str = NtkMethod.AUTO.value,
    budget_bytes: int | None = None,
    dtype: torch.dtype | None = None,
    grad_dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The target NTK of f_T w.r.t. θ (the transform's parameters) at the current θ.

    x (N, C, H, W) target images (any size; the transform resizes them).
    Returns (K, info): K trace (N, N) or full (N*c_T, N*c_T), row ``i*c_T + c`` (sample-major),
    symmetrised, in ``dtype`` (default: the model's) on the model's device; info = dict(method
    ('structured' | 'jacobian'), kernel, n, n_params (P, the parameters that influence f_T:
    3(s^2 - t^2) for vp), n_params_raw, n_outputs (c_T), dtype, grad_dtype, chunk_size, bytes
    (planned), budget, seconds, and ``precision`` (the check's numbers) with mixed precision).

    ``dtype=torch.float64`` computes on a float64 copy (the caller's model is left as it is).
    ``grad_dtype`` (structured path): the precision of the input gradients G, default ``dtype``;
    a lower one (float32 with a float64 ``dtype``) runs the precision check of the module doc and
    falls back to ``dtype`` throughout where it fails (``target_ntk_eig`` also returns the
    eigendecomposition the check computed).
    Raises ``KernelTooLarge`` (before allocating) when the planned memory exceeds the budget, and
    ``ValueError`` for a transform without parameters (``none``).
    """
    k, _, info = target_ntk_eig(
        model,
        x,
        kernel=kernel,
        method=method,
        budget_bytes=budget_bytes,
        dtype=dtype,
        grad_dtype=grad_dtype,
        chunk_size=chunk_size,
        vectors=None,
    )
    return k, info


def target_ntk_eig(
    model: ReprogrammedModel,
    x: torch.Tensor,
    *,
    kernel: str = KernelForm.TRACE.value,
    method: str = NtkMethod.AUTO.value,
    budget_bytes: int | None = None,
    dtype: torch.dtype | None = None,
    grad_dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
    vectors: bool | None = True,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor | None] | None, dict[str, Any]]:
    """``target_ntk`` and the kernel's eigendecomposition, computed once: (K, (w, V), info).

    w (rows,) descending float64 on the CPU, V (rows, rows) its eigenvectors as columns (None with
    ``vectors=False``); ``vectors=None`` skips the decomposition unless the precision check needs
    the eigenvalues (then (w, None) is returned; else None). Arguments as for ``target_ntk``.
    """
    t0 = time.perf_counter()
    kernel = KernelForm(kernel).value
    tr = model.transform
    if not any(True for _ in tr.parameters()):
        raise ValueError(
            f"transform {getattr(tr, 'kind', '?')!r} has no trainable parameters: the target NTK "
            "w.r.t. θ is empty"
        )
    method = _resolve_method(tr, method)
    device, _ = model_device_dtype(model)
    gram_dtype, g_dtype = _precisions(model, method, dtype, grad_dtype)
    mixed = g_dtype != gram_dtype
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"x must be (N, C, H, W) with N >= 1, got {tuple(x.shape)}")
    copy_bytes = _copy_bytes(model, gram_dtype, g_dtype)
    model_g = cast_module(model, g_dtype)  # G's model (the caller's, when it is in g_dtype)
    tr = model_g.transform
    x = x.to(device=device, dtype=gram_dtype)
    budget = resolve_budget(budget_bytes)
    check: dict[str, Any] | None = None
    eig = None
    with eval_mode(model_g):
        n_outputs = _n_outputs(model_g, x.to(g_dtype))
        act = activation_bytes(model_g, x.to(g_dtype))
        plan, chunk, layout = _plan(
            model_g,
            len(x),
            kernel,
            method,
            gram_dtype,
            budget,
            chunk_size,
            n_outputs,
            act,
            g_dtype,
            copy_bytes,
        )
        hint = ""
        over = plan.needed_bytes > budget
        if over and method == NtkMethod.JACOBIAN.value and transform_structure(tr) is not None:
            alt, _, _ = _plan(
                model_g, len(x), kernel, "structured", gram_dtype, budget, None, n_outputs, act
            )
            hint = f"method='structured' needs only about {alt.needed_bytes / 2**20:.0f} MiB. "
        plan.check(budget, hint)
        if method == NtkMethod.STRUCTURED.value:
            assert layout is not None
            if mixed:
                model_hi = cast_module(model, gram_dtype)
                with eval_mode(model_hi):
                    eta = _probe_error(model_g, model_hi, x[:PROBE_SAMPLES])
                    k = None
                    if eta <= MAX_PROBE_ERROR:
                        k = _structured_ntk(model_g, x, kernel, layout, chunk, gram_dtype)
                        eig = eigendecompose(k, vectors=bool(vectors))
                    check = _precision_check(eta, k, eig)
                    if check["fallback"]:
                        k = _structured_ntk(model_hi, x, kernel, layout, chunk, gram_dtype)
                        eig = None
                del model_hi
            else:
                k = _structured_ntk(model_g, x, kernel, layout, chunk, gram_dtype)
        else:
            params = dict(tr.named_parameters())
            jac = per_sample_jacobians(_transform_fn(model_g), params, x, chunk)
            k = contract(jac, kernel)
            del jac
    if eig is None and vectors is not None:
        eig = eigendecompose(k, vectors=vectors)
    used_g = g_dtype if not (check and check["fallback"]) else gram_dtype
    info = {
        "method": method,
        "kernel": kernel,
        "n": len(x),
        "n_params": int(tr.n_params),
        "n_params_raw": sum(p.numel() for p in tr.parameters()),
        "n_outputs": n_outputs,
        "dtype": _name(gram_dtype),
        "grad_dtype": _name(used_g),
        "chunk_size": chunk,
        "bytes": plan.needed_bytes,
        "budget": budget,
        "seconds": time.perf_counter() - t0,
    }
    if check is not None:
        info["precision"] = check
    return k, eig, info


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


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
