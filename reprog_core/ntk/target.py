"""The target NTK Θ_T: the kernel of f_T = b o f_S o a_θ with respect to θ only.

    Θ_T(x, x') = J(x) J(x')^T  in R^{c_T x c_T},    J(x) = d f_T(x) / d θ  in R^{c_T x P}

The source model f_S and the mapping b are constants here, a learned mapping included (its
parameters are not part of θ). Two paths compute it:

* ``jacobian`` (reference): per-sample Jacobians w.r.t. the transform's parameters with torch.func,
  contracted (``jacobian.py``). Any transform, any model; holds N x c_T x P numbers.
* ``structured`` (fast): with G(z) = d b(f_S(z)) / dz  (c_T, d_S), the input gradient of the
  frozen part at z = a(x), the chain rule gives (science.md)

      vp, vp-full:  J(x) = G(a(x)) diag(D),  D = d a / d δ = ``prompt_scale()`` (m σ'(δ), or 1)
                    Θ_T(x, x') = G(a(x)) D^2 G(a(x'))^T
      fc:           a(x) = W u(x) + c, u = ``fc_features(x)``;  df/dW_kl = G_k u_l, df/dc_k = G_k
                    Θ_T(x, x') = (<u(x), u(x')> + 1) G_R(a(x)) G_R(a(x'))^T   (G_R: the
                    ``fc_region`` columns of G, the source-input entries the fc layer writes)
      vp-fc:        the sum of both, over disjoint regions (border prompt, inner fc).

  It needs c_T backward passes per chunk of samples and holds N x c_T x d_S numbers, never the
  P-wide Jacobian (fc 32->32 has P ~ 9.4M). ``method='auto'`` picks it whenever the transform
  exposes that structure (``prompt_scale`` / ``fc_features`` + ``fc_region``).

Shapes: x (N, C, H, W) target images; K trace (N, N) = sum_c Θ_T(x_i, x_j)[c, c]; K full
(N*c_T, N*c_T) with row ``i*c_T + c`` (sample-major). Both are symmetrised.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch.func import functional_call

from reprog_core.config import KernelForm, TransformKind
from reprog_core.fit import ReprogrammedModel
from reprog_core.input_transform import InputTransform
from reprog_core.ntk._autodiff import cast_module, eval_mode, itemsize, model_device_dtype
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


class NtkMethod(str, Enum):
    AUTO = "auto"  # structured when the transform supports it, else jacobian
    STRUCTURED = "structured"  # input gradients of the frozen part (never the P-wide Jacobian)
    JACOBIAN = "jacobian"  # per-sample Jacobians w.r.t. θ, contracted (the reference)


# The transforms whose Jacobian structure the structured path knows (see the module doc).
_PROMPT_KINDS = {TransformKind.VP.value, TransformKind.VP_FULL.value}
_FC_KINDS = {TransformKind.FC.value}
_BOTH_KINDS = {TransformKind.VP_FC.value}
_EXPECTED_PARAMS = {
    TransformKind.VP.value: {"delta"},
    TransformKind.VP_FULL.value: {"delta"},
    TransformKind.FC.value: {"weight", "bias"},
    TransformKind.VP_FC.value: {"weight", "bias", "prompt.delta"},
}


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
    kind = getattr(transform, "kind", "")
    if kind not in _EXPECTED_PARAMS:
        return None
    if {name for name, _ in transform.named_parameters()} != _EXPECTED_PARAMS[kind]:
        return None
    prompt = kind in _PROMPT_KINDS or kind in _BOTH_KINDS
    fc = kind in _FC_KINDS or kind in _BOTH_KINDS
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


def _frozen_part_grads(model: ReprogrammedModel, z: torch.Tensor) -> torch.Tensor:
    """G for one chunk: z (B, 3, s, s) source inputs -> (B, c_T, 3*s*s), G[i, c] = d f_c(z_i)/dz_i.

    One batched forward, then c_T backward passes of ``sum_i f_c(z_i)``: because samples do not
    interact (eval mode), the gradient of the sum w.r.t. z_i is the per-sample input gradient.
    A loop rather than vmap over cotangents: open_clip's attention backward has no batching rule.
    """
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model.mapping(model.source(z))
        n_out = out.shape[1]
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


def _layout(transform: InputTransform, structure: TransformStructure) -> _StructuredLayout:
    prompt_idx = prompt_scale = fc_idx = None
    d_in = 0
    if structure.prompt:
        scale = transform.prompt_scale().detach().flatten()
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
) -> MemoryPlan:
    """Held: the prompt rows A = G[:, :, prompt] D and the fc rows G[:, :, region] (N, c, .), the
    fc features U (N, d_in); the Gram matrix (x2 for the symmetrised copy, x3 with an fc part,
    whose Hadamard product with S = UU^T + 1 needs its own matrix) and S; one chunk of G and of
    the frozen part's saved activations (``act`` bytes a sample)."""
    item = itemsize(dtype)
    n_prompt = 0 if layout.prompt_idx is None else len(layout.prompt_idx)
    n_fc = 0 if layout.fc_idx is None else len(layout.fc_idx)
    per_sample = (c * (n_prompt + n_fc) + layout.d_in) * item
    grams = 2 + (1 if n_fc and n_prompt else 0)
    pair = gram_bytes(1, c, kernel, item) * grams + (item if n_fc else 0)
    working = chunk * (2 * c * d_s * item + act)
    return MemoryPlan(
        what=what,
        n=n,
        per_sample=per_sample,
        per_pair=pair,
        fixed=working,
        parts={
            f"input gradients {n}x{c}x{n_prompt + n_fc}": n * per_sample,
            f"Gram matrix x{grams}": n * n * pair,
            f"chunk of {chunk}": working,
        },
    )


def _structured_ntk(
    model: ReprogrammedModel,
    x: torch.Tensor,
    kernel: str,
    layout: _StructuredLayout,
    chunk: int,
) -> torch.Tensor:
    """The structured target NTK (module doc). x (N, C, H, W) -> trace (N, N) or full (N c, N c)."""
    tr = model.transform
    n = x.shape[0]
    prompt_rows: list[torch.Tensor] = []
    fc_rows: list[torch.Tensor] = []
    feats: list[torch.Tensor] = []
    for start in range(0, n, chunk):
        xb = x[start : start + chunk]
        with torch.no_grad():
            z = tr(xb)
        g = _frozen_part_grads(model, z)  # (B, c, d_S)
        if layout.prompt_idx is not None:
            prompt_rows.append(g[:, :, layout.prompt_idx] * layout.prompt_scale)
        if layout.fc_idx is not None:
            fc_rows.append(g[:, :, layout.fc_idx])
            with torch.no_grad():
                feats.append(tr.fc_features(xb))
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
) -> tuple[MemoryPlan, int, _StructuredLayout | None]:
    """The memory plan and chunk size of one request; ``act``: ``activation_bytes`` per sample."""
    tr = model.transform
    kernel = KernelForm(kernel).value
    what = f"target NTK ({method}, {kernel})"
    item = itemsize(dtype)
    if method == NtkMethod.STRUCTURED.value:
        structure = transform_structure(tr)
        assert structure is not None
        layout = _layout(tr, structure)
        d_s = 3 * tr.source_size * tr.source_size
        chunk = chunk_size_for(act + 2 * n_outputs * d_s * item, budget, n, chunk_size)
        plan = _structured_plan(n, n_outputs, d_s, layout, kernel, dtype, chunk, what, act)
        return plan, chunk, layout
    p_raw = sum(p.numel() for p in tr.parameters())
    # vmap(jacrev): the forward graph, and the backward's temporaries batched over c_T outputs.
    chunk = chunk_size_for(2 * act + 2 * n_outputs * p_raw * item, budget, n, chunk_size)
    plan = jacobian_plan(n, n_outputs, p_raw, kernel, dtype, chunk, what, 2 * act)
    return plan, chunk, None


def _n_outputs(model: ReprogrammedModel, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x[:1]).shape[1])


def estimate_bytes(
    model: ReprogrammedModel,
    n: int,
    *,
    kernel: str = KernelForm.TRACE.value,
    method: str = NtkMethod.AUTO.value,
    dtype: torch.dtype | None = None,
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
    dtype = dtype or model_dtype
    if n_outputs is None:
        n_outputs = len(model.mapping.indices) if hasattr(model.mapping, "indices") else None
    if n_outputs is None:
        probe = torch.zeros(1, 3, tr.target_size, tr.target_size, device=device, dtype=model_dtype)
        with eval_mode(model):
            n_outputs = _n_outputs(model, probe)
    budget = resolve_budget(budget_bytes)
    probe = torch.zeros(2, 3, tr.target_size, tr.target_size, device=device, dtype=model_dtype)
    with eval_mode(model):
        act = activation_bytes(model, probe) * itemsize(dtype) // itemsize(model_dtype)
    plan, _, _ = _plan(model, n, kernel, method, dtype, budget, chunk_size, n_outputs, act)
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


def target_ntk(
    model: ReprogrammedModel,
    x: torch.Tensor,
    *,
    kernel: str = KernelForm.TRACE.value,
    method: str = NtkMethod.AUTO.value,
    budget_bytes: int | None = None,
    dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The target NTK of f_T w.r.t. θ (the transform's parameters) at the current θ.

    x (N, C, H, W) target images (any size; the transform resizes them).
    Returns (K, info): K trace (N, N) or full (N*c_T, N*c_T), row ``i*c_T + c`` (sample-major),
    symmetrised, in ``dtype`` (default: the model's) on the model's device; info = dict(method
    ('structured' | 'jacobian'), kernel, n, n_params (P, the parameters that influence f_T:
    3(s^2 - t^2) for vp), n_params_raw, n_outputs (c_T), dtype, chunk_size, bytes (planned),
    budget, seconds).

    ``dtype=torch.float64`` computes on a float64 copy (the caller's model is left as it is).
    Raises ``KernelTooLarge`` (before allocating) when the planned memory exceeds the budget, and
    ``ValueError`` for a transform without parameters (``none``).
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
    model = cast_module(model, dtype)
    tr = model.transform  # the cast copy's, when a dtype was asked for
    device, dtype = model_device_dtype(model)
    x = x.to(device=device, dtype=dtype)
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"x must be (N, C, H, W) with N >= 1, got {tuple(x.shape)}")
    budget = resolve_budget(budget_bytes)
    with eval_mode(model):
        n_outputs = _n_outputs(model, x)
        act = activation_bytes(model, x)
        plan, chunk, layout = _plan(
            model, len(x), kernel, method, dtype, budget, chunk_size, n_outputs, act
        )
        hint = ""
        over = plan.needed_bytes > budget
        if over and method == NtkMethod.JACOBIAN.value and transform_structure(tr) is not None:
            alt, _, _ = _plan(
                model, len(x), kernel, "structured", dtype, budget, None, n_outputs, act
            )
            hint = f"method='structured' needs only about {alt.needed_bytes / 2**20:.0f} MiB. "
        plan.check(budget, hint)
        if method == NtkMethod.STRUCTURED.value:
            assert layout is not None
            k = _structured_ntk(model, x, kernel, layout, chunk)
        else:
            params = dict(tr.named_parameters())
            jac = per_sample_jacobians(_transform_fn(model), params, x, chunk)
            k = contract(jac, kernel)
            del jac
    info = {
        "method": method,
        "kernel": kernel,
        "n": len(x),
        "n_params": int(tr.n_params),
        "n_params_raw": sum(p.numel() for p in tr.parameters()),
        "n_outputs": n_outputs,
        "dtype": str(dtype).replace("torch.", ""),
        "chunk_size": chunk,
        "bytes": plan.needed_bytes,
        "budget": budget,
        "seconds": time.perf_counter() - t0,
    }
    return k, info
