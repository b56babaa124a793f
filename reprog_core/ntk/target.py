"""The target NTK Θ_T: the kernel of f_T = b o f_S o a_θ with respect to θ only.

    Θ_T(x, x') = J(x) J(x')^T  in R^{c_T x c_T},    J(x) = d f_T(x) / d θ  in R^{c_T x P}

The source model f_S and the mapping b are constants here, a learned mapping included (its
parameters are not part of θ). Two paths compute it:

* ``jacobian`` (reference): per-sample Jacobians w.r.t. the transform's parameters with torch.func,
  contracted (``jacobian.py``). Any transform, any model; holds N x c_T x P numbers.
* ``structured`` (fast): the chain rule through the input gradients G of the frozen part
  (``structured.py``), c_T backward passes per chunk of samples, N x c_T x d_S numbers held.
  ``method='auto'`` picks it whenever the transform exposes that structure.

This module is the entry: ``target_ntk`` / ``target_ntk_eig`` resolve the method, plan the memory
(``estimate_bytes``; ``KernelTooLarge`` before allocating) and run a path, with float32 G and a
float64 Gram under the precision check (``precision.py``) when ``grad_dtype`` asks for it.

Shapes: x (N, C, H, W) target images; K trace (N, N) = sum_c Θ_T(x_i, x_j)[c, c]; K full
(N*c_T, N*c_T) with row ``i*c_T + c`` (sample-major). Both are symmetrised.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from enum import Enum
from typing import Any

import torch
from torch.func import functional_call

from reprog_core.config import KernelForm
from reprog_core.input_transform import InputTransform
from reprog_core.ntk._autodiff import (
    cast_module,
    eval_mode,
    itemsize,
    model_bytes,
    model_device_dtype,
)
from reprog_core.ntk.budget import MemoryPlan, chunk_size_for, resolve_budget
from reprog_core.ntk.jacobian import BatchFn, contract, jacobian_plan, per_sample_jacobians
from reprog_core.ntk.precision import (
    MAX_PROBE_ERROR,
    PROBE_SAMPLES,
    _precision_check,
    _probe_error,
)
from reprog_core.ntk.spectral import eigendecompose
from reprog_core.ntk.structured import (
    _layout,
    _structured_ntk,
    _structured_plan,
    _StructuredLayout,
    transform_structure,
)
from reprog_core.reprogrammed import ReprogrammedModel

# Samples per chunk of the structured path when the budget allows more. ``python
# bench/ntk_paths.py --chunks`` (README "Measured") found no chunk size (8-64) reliably faster on
# the loaded 2-core VM, so this keeps the budget module's cap; rerun it on an idle machine.
STRUCTURED_CHUNK = 64


class NtkMethod(str, Enum):
    AUTO = "auto"  # structured when the transform supports it, else jacobian
    STRUCTURED = "structured"  # input gradients of the frozen part (never the P-wide Jacobian)
    JACOBIAN = "jacobian"  # per-sample Jacobians w.r.t. θ, contracted (the reference)


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


# ----------------------------------------------------------------------------- the reference


def _transform_fn(model: ReprogrammedModel) -> BatchFn:
    """fn(θ, x_batch) = b(f_S(a_θ(x_batch))) with θ given as a dict (for torch.func)."""

    def fn(params: Mapping[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        return model.mapping(model.source(functional_call(model.transform, dict(params), (xb,))))

    return fn


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
