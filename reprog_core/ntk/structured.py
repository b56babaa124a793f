"""The structured target NTK: Θ_T from input gradients of the frozen part, no P-wide Jacobian.

With G(z) = d b(f_S(z)) / dz  (c_T, d_S), the input gradient of the frozen part at z = a(x), the
chain rule gives (docs/science.md)

    vp, vp-full:  J(x) = G(a(x)) diag(D),  D = d a / d δ = ``prompt_scale()`` (m σ'(δ), or 1)
                  Θ_T(x, x') = G(a(x)) D^2 G(a(x'))^T
    fc:           a(x) = W u(x) + c, u = ``fc_features(x)``;  df/dW_kl = G_k u_l, df/dc_k = G_k
                  Θ_T(x, x') = (<u(x), u(x')> + 1) G_R(a(x)) G_R(a(x'))^T   (G_R: the
                  ``fc_region`` columns of G, the source-input entries the fc layer writes)
    vp-fc:        the sum of both, over disjoint regions (border prompt, inner fc).

It needs c_T backward passes per chunk of samples and holds N x c_T x d_S numbers, never the
P-wide Jacobian (fc 32->32 has P ~ 9.4M). ``transform_structure`` says whether a transform exposes
that structure (``prompt_scale`` / ``fc_features`` + ``fc_region``); ``target.py`` picks this path
for it under ``method='auto'`` and runs the precision check (``precision.py``) around it.

Shapes: z (N, 3, s, s) source inputs, d_S = 3 s^2; G (N, c_T, d_S); x (N, C, H, W) target images;
K trace (N, N) = sum_c Θ_T(x_i, x_j)[c, c], K full (N*c_T, N*c_T) with row ``i*c_T + c``
(sample-major), symmetrised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reprog_core import transforms
from reprog_core.config import KernelForm
from reprog_core.input_transform import InputTransform
from reprog_core.ntk._autodiff import cast_module, eval_mode, itemsize, model_device_dtype
from reprog_core.ntk.budget import MemoryPlan
from reprog_core.ntk.jacobian import gram, gram_bytes, symmetrise
from reprog_core.reprogrammed import ReprogrammedModel

# How the c_T backward passes of a chunk run ('loop' or 'batched', see ``_frozen_part_grads``).
COTANGENTS = "loop"


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


# ----------------------------------------------------------------------------- the kernel


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
