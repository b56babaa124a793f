"""The generic reference path: per-sample Jacobians with torch.func, contracted into a Gram matrix.

Given ``fn(params, x_batch) -> (B, c)`` and a dict of parameters, the empirical NTK on N samples is

    K_full[(i, a), (j, b)] = sum_p J[i, a, p] J[j, b, p]        (N*c, N*c), sample-major
    K_trace[i, j]          = sum_a K_full[(i, a), (j, a)]        (N, N)

with ``J[i] = d fn(params, x_i) / d params`` (c, P) from ``vmap(jacrev(...))`` over chunks of
samples. It holds the whole Jacobian (N, c, P); the memory plan refuses requests over the budget
before anything is allocated. Any model and any parameter set works, which is what makes it the
reference every fast path is tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch.func import jacrev, vmap

from reprog_core.config import KernelForm
from reprog_core.ntk._autodiff import functorch_friendly, itemsize
from reprog_core.ntk.budget import MemoryPlan, chunk_size_for, resolve_budget

BatchFn = Callable[[Mapping[str, torch.Tensor], torch.Tensor], torch.Tensor]


def gram_bytes(n: int, n_outputs: int, kernel: str, item: int) -> int:
    """Bytes of one Gram matrix: N^2 (trace) or (N c)^2 (full) entries."""
    rows = n if kernel == KernelForm.TRACE.value else n * n_outputs
    return rows * rows * item


def jacobian_plan(
    n: int,
    n_outputs: int,
    n_params: int,
    kernel: str,
    dtype: torch.dtype,
    chunk: int,
    what: str,
    act: int = 0,
) -> MemoryPlan:
    """Memory plan of ``jacobian_ntk``: the Jacobian (N, c, P), the Gram matrix twice (it is
    symmetrised out of place) and one chunk of jacrev output plus its flattened copy, and of
    the model's autograd activations (``act`` bytes a sample, 0 when unknown)."""
    item = itemsize(dtype)
    per_sample = n_outputs * n_params * item
    pair = gram_bytes(1, n_outputs, kernel, item)
    working = chunk * (2 * per_sample + act)
    return MemoryPlan(
        what=what,
        n=n,
        per_sample=per_sample,
        per_pair=2 * pair,
        fixed=working,
        parts={
            f"Jacobian {n}x{n_outputs}x{n_params}": n * per_sample,
            "Gram matrix x2": 2 * pair * n * n,
            f"chunk of {chunk}": working,
        },
    )


def per_sample_jacobians(
    fn: BatchFn, params: Mapping[str, torch.Tensor], x: torch.Tensor, chunk: int
) -> torch.Tensor:
    """J (N, c, P): d fn(params, x_i) / d params for every sample, parameters flattened in the
    order of ``params`` and concatenated. x (N, ...) -> (N, c, P), in ``x``'s dtype."""
    detached = {k: v.detach() for k, v in params.items()}

    def one(p: Mapping[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return fn(p, xi.unsqueeze(0)).squeeze(0)

    jac = vmap(jacrev(one), in_dims=(None, 0))
    n = x.shape[0]
    out: torch.Tensor | None = None
    # The outer no_grad keeps frozen parameters that still require grad (a learned mapping)
    # from attaching an autograd graph to J; torch.func transforms ignore an outer no_grad.
    with torch.no_grad(), functorch_friendly():
        for start in range(0, n, chunk):
            parts = jac(detached, x[start : start + chunk])
            block = torch.cat([parts[k].flatten(2) for k in detached], dim=2)
            if out is None:
                out = block.new_empty(n, *block.shape[1:])
            out[start : start + len(block)] = block
            del parts, block
    assert out is not None
    return out


def gram(jac: torch.Tensor, kernel: str) -> torch.Tensor:
    """J (N, c, P) -> J J^T, trace (N, N) or full (N*c, N*c) sample-major; not symmetrised.

    The trace form is one product too: sum_a sum_p J[i,a,p] J[j,a,p] contracts the flattened
    (N, c*P) rows.
    """
    n, c, p = jac.shape
    rows = jac.reshape(n, c * p) if kernel == KernelForm.TRACE.value else jac.reshape(n * c, p)
    return rows @ rows.T


def contract(jac: torch.Tensor, kernel: str) -> torch.Tensor:
    """J (N, c, P) -> the symmetrised Gram matrix (see ``gram``)."""
    return symmetrise(gram(jac, kernel))


def symmetrise(k: torch.Tensor) -> torch.Tensor:
    """(K + K^T) / 2: a Gram matrix from a BLAS product is symmetric only up to round-off, and
    every consumer (eigh, the PSD check) assumes exact symmetry."""
    return (k + k.T).mul_(0.5)


def jacobian_ntk(
    fn: BatchFn,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    *,
    kernel: str = KernelForm.TRACE.value,
    budget_bytes: int | None = None,
    chunk_size: int | None = None,
    what: str = "NTK (jacobian)",
    hint: str = "",
) -> torch.Tensor:
    """The empirical NTK of ``fn`` w.r.t. ``params`` on ``x`` by Jacobian contraction.

    fn(params, x_batch (B, ...)) -> (B, c); x (N, ...) on the parameters' device and dtype.
    Returns K: trace (N, N) or full (N*c, N*c) with row ``i*c + a`` (sample-major).
    Raises ``KernelTooLarge`` before allocating when the plan exceeds the budget.
    """
    kernel = KernelForm(kernel).value
    n = x.shape[0]
    with torch.no_grad(), functorch_friendly():
        n_outputs = fn(params, x[:1]).shape[1]
    n_params = sum(v.numel() for v in params.values())
    budget = resolve_budget(budget_bytes)
    item = itemsize(x.dtype)
    chunk = chunk_size_for(2 * n_outputs * n_params * item, budget, n, chunk_size)
    jacobian_plan(n, n_outputs, n_params, kernel, x.dtype, chunk, what).check(budget, hint)
    jac = per_sample_jacobians(fn, params, x, chunk)
    return contract(jac, kernel)
