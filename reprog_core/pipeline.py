"""The computations the backend serves, as plain functions: config in, JSON-safe dict out.

data -> source model -> transform -> (kernel, fit) -> spectrum. Each function takes an optional
``progress(fraction, stage)`` callback (which may raise to cancel) and can be called directly,
without the backend; ``TASKS`` are the backend's task kinds.
"""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Callable
from typing import Any

import torch

from reprog_core import __version__, data, memory, ntk
from reprog_core.backend.service import current_backend
from reprog_core.config import CODE_VERSION, ExperimentConfig
from reprog_core.fit import (
    TargetData,
    baseline_accuracy,
    initial_model,
    target_data,
)
from reprog_core.kernel_regime import fit_with_spectrum
from reprog_core.reprogrammed import ReprogrammedModel
from reprog_core.results import ExperimentRecord, KernelResult
from reprog_core.runtime import resolve_device
from reprog_core.source_model import n_source_classes
from reprog_core.source_model.training import load_or_train_source, source_draws

ProgressFn = Callable[[float, str], None]


def versions(cfg: ExperimentConfig | None = None) -> dict[str, str]:
    """Versions that determine a result: this package, its code/data versions, torch, open_clip."""
    v = {
        "reprog_core": __version__,
        "code": CODE_VERSION,
        "data": data.DATA_VERSION,
        "torch": torch.__version__,
    }
    if cfg is None or cfg.uses_backbone:
        try:
            v["open_clip"] = importlib.metadata.version("open_clip_torch")
        except importlib.metadata.PackageNotFoundError:
            pass
    return v


def _stage(progress: ProgressFn | None, lo: float, hi: float) -> ProgressFn | None:
    """Map a sub-step's [0, 1] progress into [lo, hi] of the whole task."""
    if progress is None:
        return None
    return lambda f, stage: progress(lo + (hi - lo) * f, stage)


def run_source(
    cfg: ExperimentConfig, progress: ProgressFn | None = None, device: str | None = None
) -> dict[str, Any]:
    """Train (or load) the source model; its record."""
    memory.check_request(cfg, "source")  # refuse before allocating (issue 9)
    _, res = load_or_train_source(cfg, device=device, progress=progress)
    return {"config": cfg.to_dict(), "versions": versions(cfg), **res.to_dict()}


def run_fit(
    cfg: ExperimentConfig,
    progress: ProgressFn | None = None,
    device: str | None = None,
    baseline: bool = True,
) -> dict[str, Any]:
    """Source model (stored or trained), then the reprogramming fit and the ``none`` baseline."""
    memory.check_request(cfg, "source", "fit")  # refuse before allocating (issue 9)
    source, src = load_or_train_source(cfg, device=device, progress=_stage(progress, 0, 0.4))
    td = target_data(cfg)
    n_source = n_source_classes(cfg)
    _, fit = fit_with_spectrum(
        cfg, source, td, n_source=n_source, progress=_stage(progress, 0.4, 0.95)
    )
    fit.source_test_acc = src.source_test_acc
    if baseline:
        fit.baseline_test_acc = baseline_accuracy(cfg, source, td, n_source)
    if progress:
        progress(1.0, "done")
    return {"versions": versions(cfg), **fit.to_dict()}


def run_ntk(
    cfg: ExperimentConfig,
    progress: ProgressFn | None = None,
    device: str | None = None,
    *,
    n: int | None = None,
    kernel: str | None = None,
    wrt: str = "transform",
    method: str = "auto",
    keep_gram: bool = False,
    **_: Any,
) -> dict[str, Any]:
    """The target NTK w.r.t. theta at initialisation on N target samples (``wrt='transform'``)
    or the source NTK w.r.t. the source model's trainable parameters (``wrt='source'``)."""
    if n is not None and n != cfg.n_kernel:
        cfg = cfg.replace(n_kernel=int(n))
    if kernel is not None and kernel != cfg.kernel_form:
        cfg = cfg.replace(kernel_form=kernel)
    memory.check_request(cfg, "source", "kernel" if wrt == "transform" else "source")
    if wrt == "source":
        source, _ = load_or_train_source(cfg, device=device, progress=_stage(progress, 0, 0.5))
        if progress:
            progress(0.5, "source NTK: 10 samples per class, 3 random draws")
        n_source = n_source_classes(cfg)
        rec = ntk.source_kernel_result(cfg, source, source_draws(cfg), n_source)
        return {"versions": versions(cfg), **rec.to_dict()}
    source, _ = load_or_train_source(cfg, device=device, progress=_stage(progress, 0, 0.5))
    td = target_data(cfg)
    if progress:
        progress(0.5, f"target NTK on {cfg.n_kernel} samples")
    n_source = n_source_classes(cfg)
    model0 = initial_model(cfg, source, td, n_source)
    res = _target_kernel(cfg, model0, td, method=method, keep_gram=keep_gram)
    if progress:
        progress(1.0, "done")
    return {"versions": versions(cfg), **res.to_dict()}


def _target_kernel(
    cfg: ExperimentConfig,
    model: ReprogrammedModel,
    td: TargetData,
    *,
    method: str = "auto",
    keep_gram: bool = False,
) -> KernelResult:
    """Kernel, spectrum and NTK-predicted squared-loss dynamics on the kernel samples, at the
    model's theta (theta_0 of ``fit.initial_model``: the mapping the fit starts from)."""
    device = next(model.parameters()).device
    x, y = td.x_kernel.to(device), td.y_kernel.to(device)
    # A float64 Gram keeps small eigenvalues (rank, lambda_min) honest; the input gradients run in
    # the model's float32 unless the precision check says that could change them (ntk/target.py).
    dtype = torch.float64
    res = ntk.target_kernel_result(
        cfg, model, x, y, method=method, keep_gram=keep_gram, dtype=dtype, heldout=_heldout(cfg, td)
    )
    if res.dynamics is not None:
        res.dynamics["note"] = _dynamics_note(cfg, res.dynamics)
    return res


def _heldout(cfg: ExperimentConfig, td: TargetData) -> tuple[torch.Tensor, torch.Tensor]:
    """N held-out test images (class-balanced, seeded) for the kernel's regression accuracy."""
    per_class = math.ceil(cfg.n_kernel / len(td.classes))
    idx = data.per_class_indices(td.y_test, per_class, cfg.seed + 2)[: cfg.n_kernel]
    return td.x_test[idx], td.y_test[idx]


def _dynamics_note(cfg: ExperimentConfig, dynamics: dict[str, Any]) -> str:
    """What the NTK-predicted curve was computed with (step size and kernel form)."""
    # Not .get("lr", [cfg.effective_lr]): the default is evaluated first, and for sgd without an
    # lr effective_lr raises (the step size comes from the spectrum).
    lr = dynamics["lr"][0] if dynamics.get("lr") else cfg.effective_lr
    if cfg.kernel_form == "full":
        return f"Prediction from the full kernel, step size {lr:g}."
    return (
        f"Prediction from the trace kernel via Prop. 1 (K_full ≈ K_trace/c ⊗ I), step size {lr:g}."
    )


def run_explore(
    cfg: ExperimentConfig, progress: ProgressFn | None = None, device: str | None = None, **_: Any
) -> dict[str, Any]:
    """Everything the Explore page shows: source record, target kernel + spectrum + predicted
    dynamics, the fit with its curves, and the ``none`` baseline."""
    memory.check_request(cfg, "source", "kernel", "fit")  # refuse before allocating (issue 9)
    dev = resolve_device(device)
    source, src = load_or_train_source(cfg, device=dev, progress=_stage(progress, 0, 0.35))
    td = target_data(cfg)
    n_source = n_source_classes(cfg)
    if progress:
        progress(0.35, f"target NTK on {cfg.n_kernel} samples")
    model0 = initial_model(cfg, source, td, n_source)  # theta_0: the kernel's and the fit's
    kernel = None
    if cfg.transform != "none":
        kernel = _stored_kernel(cfg) or _target_kernel(cfg, model0, td)
    _, fit = fit_with_spectrum(
        cfg, source, td, n_source=n_source, progress=_stage(progress, 0.45, 0.93), start=model0
    )
    fit.source_test_acc = src.source_test_acc
    if progress:
        progress(0.95, "baseline: the same source with transform 'none'")
    fit.baseline_test_acc = (
        fit.target_test_acc
        if cfg.transform == "none"
        else baseline_accuracy(cfg, source, td, n_source)
    )
    if progress:
        progress(1.0, "done")
    record = ExperimentRecord(
        config=cfg.to_dict(),
        versions=versions(cfg),
        weights=cfg.weights_label,
        source=src,
        fit=fit,
        kernel=kernel,
    )
    return record.to_dict()


def _stored_kernel(cfg: ExperimentConfig) -> KernelResult | None:
    """The target-NTK record a page already asked for (the ``ntk`` task on
    ``cfg.kernel_config()``, stored by the running backend), or None: a what-if that changes only
    the fit's settings reuses the kernel instead of recomputing it."""
    backend = current_backend()
    if backend is None:
        return None
    try:
        hit = backend.get("ntk", cfg.kernel_config(), {})
    except Exception:  # noqa: BLE001 - a store that cannot be read means: compute it
        return None
    if hit is None:
        return None
    return KernelResult.from_dict(hit)


def sweep_row(result: dict[str, Any]) -> dict[str, Any]:
    """One flat table row from an explore result (``ExperimentRecord.to_dict()``, as stored), for
    sweeps and the Depth sweep page. A result without one of the record's fields fails here."""
    rec = ExperimentRecord.from_dict(result)
    cfg, fit = rec.config, rec.fit
    stats = rec.kernel.stats.to_dict() if rec.kernel is not None else {}
    regime = fit.kernel_regime or {}
    nan = math.nan
    return {
        "source_family": cfg["source_family"],
        "backbone": cfg["backbone"],
        "weights": rec.weights,
        **{k: cfg[k] for k in ROW_CONFIG_FIELDS},
        "source_test_acc": rec.source.source_test_acc,
        "target_test_acc": fit.target_test_acc,
        "baseline_test_acc": fit.baseline_test_acc,
        **{k: stats.get(k, nan) for k in ROW_STATS},
        "regression_acc": _or_nan(rec.kernel.regression_acc if rec.kernel is not None else None),
        "common_share": _or_nan(rec.kernel.common_share if rec.kernel is not None else None),
        "n_params_transform": fit.n_params_transform,
        "stopped": fit.stopped,
        "regime": cfg.get("regime", "practical"),
        # Squared loss on the N kernel samples before and after the fit: the quantity whose
        # decrease the spectrum predicts (in the kernel regime, the loss the fit minimises).
        "kernel_loss_drop": _loss_drop(fit.curves.kernel_loss),
        "kernel_drift": regime.get("drift", nan),
        "agree_until": regime.get("agree_until", nan),
    }


ROW_CONFIG_FIELDS = (  # after source_family, backbone and weights
    "source_data",
    "target",
    "depth",
    "width",
    "source_size",
    "transform",
    "mapping",
    "seed",
    "steps",
    "n_kernel",
    "kernel_form",
)
ROW_STATS = (
    "lambda_max",
    "lambda_min",
    "rank",
    "effective_rank",
    "condition_number",
    "trace",
    "alignment",
    "abs_sum_over_n",
    "decay_exponent",
)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _loss_drop(losses: list[float]) -> float:
    """Fraction of the first loss gone by the last (NaN without two finite values)."""
    if len(losses) < 2 or not all(math.isfinite(v) for v in (losses[0], losses[-1])):
        return math.nan
    return 1 - losses[-1] / losses[0] if losses[0] else math.nan


class _Task:
    """A pipeline function as a backend task ``(cfg, params, progress)``. A module-level class
    holding a module-level function: it pickles by reference, so a worker process gets it."""

    def __init__(self, fn: Callable[..., dict[str, Any]]) -> None:
        self.fn = fn

    def __call__(
        self, cfg: ExperimentConfig, params: dict[str, Any], progress: Any
    ) -> dict[str, Any]:
        def report(fraction: float, stage: str = "") -> None:
            progress.update(fraction, stage)
            progress.check_cancelled()

        params = dict(params)
        device = params.pop("device", None) or getattr(progress, "device", None)
        return self.fn(cfg, report, device=str(device) if device is not None else None, **params)


# The backend's task kinds (handed to it by ``reprog_core.serving``).
TASKS: dict[str, _Task] = {
    "source": _Task(run_source),
    "fit": _Task(run_fit),
    "ntk": _Task(run_ntk),
    "explore": _Task(run_explore),
}
