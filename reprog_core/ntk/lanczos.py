"""The top of the target NTK's spectrum without the matrix: Lanczos on NTK-vector products.

Beyond the dense budget (N^2 or (N c)^2 entries), ``topk_eigs`` runs ARPACK's Lanczos
(``scipy.sparse.linalg.eigsh``) on a ``LinearOperator`` whose product is

    K_full v = J (J^T v):   u = J^T V (one vjp over all samples, V = v as (N, c)), then J u (jvp)
    K_trace v = sum_c J_c (J_c^T v):  the same with V = v e_c^T, keeping output c, for each c

so a product costs 2 passes over the N samples (2 c for the trace form) and holds one θ-sized
vector, never a Jacobian or a Gram matrix. Each product costs as much as a few forward passes:
the whole matrix this way would cost N (or N c) of them, so use it only for the top k.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch.func import jvp, vjp

from reprog_core.config import KernelForm
from reprog_core.ntk._autodiff import cast_module, eval_mode, functorch_friendly, model_device_dtype
from reprog_core.ntk.target import _transform_fn
from reprog_core.reprogrammed import ReprogrammedModel

Params = dict[str, torch.Tensor]


def _add(a: Params | None, b: Mapping[str, torch.Tensor]) -> Params:
    if a is None:
        return {k: v.clone() for k, v in b.items()}
    for k, v in b.items():
        a[k].add_(v)
    return a


class NtkOperator:
    """v -> K v for the target NTK w.r.t. θ on samples x, matrix-free (module doc).

    x (N, C, H, W). ``rows`` = N (trace) or N*c (full, sample-major). ``matvec`` takes and returns
    a float64 numpy vector (what scipy hands over); ``n_matvec`` counts products.
    """

    def __init__(
        self, model: ReprogrammedModel, x: torch.Tensor, kernel: str, chunk_size: int = 64
    ) -> None:
        self.model = model
        self.kernel = KernelForm(kernel).value
        self.device, self.dtype = model_device_dtype(model)
        self.x = x.to(device=self.device, dtype=self.dtype)
        self.params = {k: p.detach() for k, p in model.transform.named_parameters()}
        self.fn = _transform_fn(model)
        self.chunk = chunk_size
        with torch.no_grad(), eval_mode(model):
            self.n_outputs = int(model(self.x[:1]).shape[1])
        self.n = len(self.x)
        self.rows = self.n if self.kernel == KernelForm.TRACE.value else self.n * self.n_outputs
        self.n_matvec = 0

    def _chunks(self) -> range:
        return range(0, self.n, self.chunk)

    def _jt(self, cot: torch.Tensor) -> Params:
        """J^T V for V (N, c): a θ-shaped dict, summed over chunks."""
        total: Params | None = None
        for s in self._chunks():
            xb = self.x[s : s + self.chunk]
            _, pull = vjp(lambda p, xb=xb: self.fn(p, xb), self.params)
            (u,) = pull(cot[s : s + self.chunk])
            total = _add(total, u)
        assert total is not None
        return total

    def _j(self, u: Params) -> torch.Tensor:
        """J u: (N, c)."""
        outs = []
        for s in self._chunks():
            xb = self.x[s : s + self.chunk]
            _, out = jvp(lambda p, xb=xb: self.fn(p, xb), (self.params,), (u,))
            outs.append(out)
        return torch.cat(outs)

    def product(self, v: torch.Tensor) -> torch.Tensor:
        """K v: v (rows,) -> (rows,) in the model's dtype."""
        c = self.n_outputs
        with torch.no_grad(), functorch_friendly(), eval_mode(self.model):
            if self.kernel == KernelForm.FULL.value:
                return self._j(self._jt(v.reshape(self.n, c))).reshape(-1)
            out = torch.zeros(self.n, dtype=self.dtype, device=self.device)
            for k in range(c):
                cot = torch.zeros(self.n, c, dtype=self.dtype, device=self.device)
                cot[:, k] = v
                out += self._j(self._jt(cot))[:, k]
            return out

    def matvec(self, v: np.ndarray) -> np.ndarray:
        self.n_matvec += 1
        t = torch.as_tensor(np.asarray(v).reshape(-1), dtype=self.dtype, device=self.device)
        return self.product(t).detach().cpu().double().numpy()

    def as_linear_operator(self) -> LinearOperator:
        return LinearOperator((self.rows, self.rows), matvec=self.matvec, dtype=np.float64)


def topk_eigs(
    model: ReprogrammedModel,
    x: torch.Tensor,
    k: int,
    *,
    kernel: str = KernelForm.TRACE.value,
    dtype: torch.dtype | None = None,
    chunk_size: int = 64,
    tol: float = 0.0,
    maxiter: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The k largest eigenvalues of the target NTK w.r.t. θ, matrix-free (module doc).

    x (N, C, H, W). Returns (eigvals (k,) float64 descending, eigvecs (rows, k) float64 as
    columns, info = dict(method='lanczos', kernel, n, n_outputs, n_params, k, n_matvec, seconds)),
    rows = N (trace) or N*c_T (full). ``tol`` is ARPACK's relative accuracy (0: machine
    precision); the start vector is seeded, so results repeat.
    """
    t0 = time.perf_counter()
    model = cast_module(model, dtype)
    op = NtkOperator(model, x, kernel, chunk_size)
    if not 1 <= k < op.rows:
        raise ValueError(f"k must be between 1 and {op.rows - 1} (the kernel has {op.rows} rows)")
    v0 = np.random.default_rng(seed).standard_normal(op.rows)
    w, v = eigsh(op.as_linear_operator(), k=k, which="LA", tol=tol, maxiter=maxiter, v0=v0)
    order = np.argsort(w)[::-1]
    info = {
        "method": "lanczos",
        "kernel": op.kernel,
        "n": op.n,
        "n_outputs": op.n_outputs,
        "n_params": int(model.transform.n_params),
        "k": k,
        "n_matvec": op.n_matvec,
        "seconds": time.perf_counter() - t0,
    }
    return torch.from_numpy(w[order].copy()), torch.from_numpy(v[:, order].copy()), info
