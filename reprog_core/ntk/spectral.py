"""What a kernel's spectrum says, as numbers a person can read (``SpectrumStats``).

Conventions, stated once:

* The kernel is symmetrised, (K + K^T) / 2, and decomposed in float64 (``eigendecompose``). On a
  CUDA device a float32 kernel is decomposed on the GPU first (fast) and, when cuSOLVER fails to
  converge (it does on highly degenerate spectra), again in float64 on the CPU.
* Numerical rank tolerance (default): ``rank_tol = n * eps(K.dtype) * max|λ|`` - NumPy's
  ``matrix_rank`` rule, with the machine epsilon of the precision the kernel was *computed* in
  (a float32 kernel cannot resolve eigenvalues below ~1e-7 λ_max, however it is decomposed).
  ``rank_rtol`` replaces it by ``rank_rtol * max|λ|``.
* λ_min is the smallest eigenvalue above ``rank_tol`` (0.0 when none is); ``lambda_min_raw`` is
  the smallest computed eigenvalue, unclipped. Eigenvalues below ``-rank_tol`` are counted in
  ``n_negative`` (a kernel is PSD: they indicate a bug), never clipped away.
* Effective rank: exp of the entropy of the eigenvalues above the tolerance, normalised to sum 1.
* Decay exponent α: least-squares fit of log λ_i = a - α log i over the top half of the
  eigenvalues above the tolerance (i = 1 .. max(3, rank // 2)); None with fewer than 3.
* Kernel-target alignment with *centred one-hot* targets Y (N, c) (one-hot minus its column
  means): trace form A = <K, Y Y^T>_F / (||K||_F ||Y Y^T||_F) (Cristianini et al. 2002);
  full form A = y^T K y / (||K||_F ||y||^2) with y = vec(Y) sample-major. Both are in [0, 1] for
  a PSD K.
* ``abs_sum_over_n`` = sum of |K| over all entries / N, N the number of samples (not rows).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from reprog_core.results import SpectrumStats

log = logging.getLogger(__name__)


def _use_device_eigh(k: torch.Tensor) -> bool:
    """Decompose on the kernel's own device first: float32 kernels on a CUDA device."""
    return k.is_cuda and k.dtype == torch.float32


def _device_eigh(k: torch.Tensor, vectors: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """eigh in k's dtype on k's device, ascending, returned as float64 on the CPU."""
    ks = (k + k.T) * 0.5
    w, v = torch.linalg.eigh(ks) if vectors else (torch.linalg.eigvalsh(ks), None)
    if not torch.isfinite(w).all():
        raise torch.linalg.LinAlgError("non-finite eigenvalues")
    return w.double().cpu(), (v.double().cpu() if v is not None else None)


def eigendecompose(
    k: torch.Tensor, *, vectors: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Eigenvalues (n,) descending, float64 on the CPU, and eigenvectors (n, n) as columns in the
    same order (None when ``vectors=False``). k (n, n) is symmetrised first (module doc)."""
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"a kernel must be a square matrix, got shape {tuple(k.shape)}")
    k = k.detach()
    result = None
    if _use_device_eigh(k):
        try:
            result = _device_eigh(k, vectors)
        except RuntimeError as err:  # torch.linalg.LinAlgError subclasses RuntimeError
            log.warning("float32 eigh on %s failed (%s); using float64 on the CPU", k.device, err)
    if result is None:
        kd = k.to("cpu", torch.float64)
        ks = (kd + kd.T) * 0.5
        result = torch.linalg.eigh(ks) if vectors else (torch.linalg.eigvalsh(ks), None)
    w, v = result
    w = torch.flip(w, dims=[0])
    if v is not None:
        v = torch.flip(v, dims=[1])
    return w, v


def default_rank_tol(eigvals: torch.Tensor, n: int, dtype: torch.dtype) -> float:
    """NumPy's ``matrix_rank`` tolerance, n * eps(dtype) * max|λ| (module doc)."""
    if eigvals.numel() == 0:
        return 0.0
    return float(n * torch.finfo(dtype).eps * eigvals.abs().max())


def _decay_exponent(above: np.ndarray) -> float | None:
    m = min(len(above), max(3, len(above) // 2))
    if m < 3:
        return None
    i = np.arange(1, m + 1, dtype=np.float64)
    slope = np.polyfit(np.log(i), np.log(above[:m]), 1)[0]
    return float(-slope)


def _centred_onehot(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """y (N,) int labels or (N, c) float targets -> centred targets (N, c) float64."""
    if y.ndim == 1:
        if y.min() < 0 or y.max() >= n_classes:
            lo, hi = int(y.min()), int(y.max())
            raise ValueError(f"labels must lie in [0, {n_classes}), got {lo}..{hi}")
        t = torch.nn.functional.one_hot(y.long().cpu(), n_classes).double()
    else:
        t = y.detach().cpu().double()
    return t - t.mean(0, keepdim=True)


def alignment(
    k: torch.Tensor, y: torch.Tensor, *, n_classes: int | None = None
) -> tuple[float, str]:
    """Kernel-target alignment with centred one-hot targets and its description (module doc).

    k trace (N, N) or full (N*c, N*c); y (N,) int labels (or (N, c) targets). The form is read
    from the shapes. Returns (A, description).
    """
    kd = ((k.detach().to("cpu", torch.float64)) + k.detach().to("cpu", torch.float64).T) * 0.5
    n = y.shape[0]
    rows = kd.shape[0]
    if rows == n:
        c = n_classes or (int(y.max()) + 1 if y.ndim == 1 else y.shape[1])
        t = _centred_onehot(y, c)
        yy = t @ t.T
        denom = float(kd.norm() * yy.norm())
        a = float((kd * yy).sum()) / denom if denom > 0 else float("nan")
        return a, "centred one-hot, trace form: <K, YY^T>_F / (||K||_F ||YY^T||_F)"
    if rows % n:
        raise ValueError(f"kernel of {rows} rows does not match {n} targets")
    c = rows // n
    t = _centred_onehot(y, c).reshape(-1)
    denom = float(kd.norm() * (t @ t))
    a = float(t @ kd @ t) / denom if denom > 0 else float("nan")
    return a, "centred one-hot, full form (vec sample-major): y^T K y / (||K||_F ||y||^2)"


def stats_from_eigenvalues(
    eigvals: torch.Tensor,
    *,
    rank_tol: float,
    trace: float,
    abs_sum_over_n: float,
    alignment_value: float | None = None,
    alignment_targets: str = "none",
    partial: bool = False,
) -> SpectrumStats:
    """``SpectrumStats`` from eigenvalues (descending, float64) and the quantities that need K.

    With ``partial=True`` (top-k from Lanczos) rank, λ_min and the effective rank describe only
    the computed eigenvalues.
    """
    w = eigvals.detach().cpu().double().numpy()
    above = w[w > rank_tol]
    rank = int(len(above))
    lam_max = float(w[0]) if len(w) else 0.0
    lam_min = float(above[-1]) if rank else 0.0
    if rank:
        p = above / above.sum()
        eff = float(math.exp(-(p * np.log(p)).sum()))
    else:
        eff = 0.0
    return SpectrumStats(
        eigenvalues=[float(v) for v in w],
        lambda_max=lam_max,
        lambda_min=lam_min,
        lambda_min_raw=float(w[-1]) if len(w) else 0.0,
        rank=rank,
        rank_tol=float(rank_tol),
        condition_number=lam_max / lam_min if lam_min > 0 else float("inf"),
        trace=float(trace),
        effective_rank=eff,
        decay_exponent=_decay_exponent(above),
        alignment=alignment_value,
        alignment_targets=alignment_targets,
        abs_sum_over_n=float(abs_sum_over_n),
        n_negative=int((w < -rank_tol).sum()),
        partial=partial,
    )


def spectrum(
    k: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    rank_rtol: float | None = None,
    n_outputs: int | None = None,
    n_classes: int | None = None,
    eigenvalues: torch.Tensor | None = None,
) -> SpectrumStats:
    """Spectrum statistics of a kernel matrix (conventions in the module doc).

    k (n, n): a trace kernel (N, N) or a full one (N*c, N*c), any dtype or device. y (N,) int
    labels (optional) for the alignment; ``n_outputs`` c (rows per sample; read from y's length
    when y is given, else 1) gives N = n / c for ``abs_sum_over_n``. ``n_classes`` sets the
    one-hot width of a trace-form alignment (default max(y) + 1). ``eigenvalues`` (n,) descending
    float64: k's, from an ``eigendecompose`` the caller already ran (a full-form kernel's
    decomposition is the expensive part: it is not repeated).
    """
    n = k.shape[0]
    if eigenvalues is not None:
        if eigenvalues.shape != (n,):
            raise ValueError(f"{tuple(eigenvalues.shape)} eigenvalues for a kernel of {n} rows")
        w = eigenvalues.detach().to("cpu", torch.float64)
    else:
        w, _ = eigendecompose(k, vectors=False)
    if rank_rtol is not None:
        tol = rank_rtol * float(w.abs().max())
    else:
        tol = default_rank_tol(w, n, k.dtype)
    if n_outputs is None:
        n_outputs = n // y.shape[0] if y is not None and y.shape[0] and n % y.shape[0] == 0 else 1
    kd = k.detach().to("cpu", torch.float64)
    a, targets = (None, "none")
    if y is not None:
        a, targets = alignment(k, y, n_classes=n_classes)
    return stats_from_eigenvalues(
        w,
        rank_tol=tol,
        trace=float(torch.diagonal(kd).sum()),
        abs_sum_over_n=float(kd.abs().sum()) / max(n // max(n_outputs, 1), 1),
        alignment_value=a,
        alignment_targets=targets,
    )
