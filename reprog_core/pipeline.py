"""The computations the backend serves, as plain functions: config in, JSON-safe dict out.

data -> source model -> transform -> (kernel, fit) -> spectrum. Each function takes an optional
``progress(fraction, stage)`` callback (which may raise to cancel) and can be called directly,
without the backend (``reprog_core.serving`` hands them to it as tasks). A stage that an
earlier one computed comes in as an argument (``run_explore(inputs=...)``: the stored target
NTK and source record, which the backend looks up or computes first, ``explore_inputs``); this
module neither imports nor asks the service that runs it.
"""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Callable
from typing import Any

import torch

from reprog_core import __version__, data, memory, ntk
from reprog_core.config import CODE_VERSION, ExperimentConfig
from reprog_core.fit import (
    TargetData,
    baseline_accuracy,
    initial_model,
    target_data,
)
from reprog_core.kernel_regime import fit_with_spectrum
from reprog_core.reprogrammed import ReprogrammedModel
from reprog_core.results import Dynamics, ExperimentRecord, KernelResult, SourceResult
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
    res.versions = versions(cfg)
    return res.to_dict()


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
    fit.versions = versions(cfg)
    return fit.to_dict()


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
        rec.versions = versions(cfg)
        return rec.to_dict()
    source, _ = load_or_train_source(cfg, device=device, progress=_stage(progress, 0, 0.5))
    td = target_data(cfg)
    if progress:
        progress(0.5, f"target NTK on {cfg.n_kernel} samples")
    n_source = n_source_classes(cfg)
    model0 = initial_model(cfg, source, td, n_source)
    res = _target_kernel(cfg, model0, td, method=method, keep_gram=keep_gram)
    if progress:
        progress(1.0, "done")
    res.versions = versions(cfg)
    return res.to_dict()


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
        res.dynamics.note = _dynamics_note(cfg, res.dynamics)
    return res


def _heldout(cfg: ExperimentConfig, td: TargetData) -> tuple[torch.Tensor, torch.Tensor]:
    """N held-out test images (class-balanced, seeded) for the kernel's regression accuracy."""
    per_class = math.ceil(cfg.n_kernel / len(td.classes))
    idx = data.per_class_indices(td.y_test, per_class, cfg.seed + 2)[: cfg.n_kernel]
    return td.x_test[idx], td.y_test[idx]


def _dynamics_note(cfg: ExperimentConfig, dynamics: Dynamics) -> str:
    """What the NTK-predicted curve was computed with (step size and kernel form)."""
    lr = dynamics.lr
    if cfg.kernel_form == "full":
        return f"Prediction from the full kernel, step size {lr:g}."
    return (
        f"Prediction from the trace kernel via Prop. 1 (K_full ≈ K_trace/c ⊗ I), step size {lr:g}."
    )


def run_explore(
    cfg: ExperimentConfig,
    progress: ProgressFn | None = None,
    device: str | None = None,
    *,
    kernel: KernelResult | None = None,
    source: SourceResult | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Everything the Explore page shows: source record, target kernel + spectrum + predicted
    dynamics, the fit with its curves, and the ``none`` baseline.

    Stages already computed come in as arguments (the backend serves them first,
    ``explore_inputs``): ``kernel``, the target NTK record of ``cfg.kernel_config()`` (a what-if
    that changes only the fit's settings reuses it; its ``dynamics`` are then those of the
    kernel config's fit settings), and ``source``, the source record. A stage not given is
    computed here."""
    memory.check_request(cfg, "source", "kernel", "fit")  # refuse before allocating (issue 9)
    dev = resolve_device(device)
    model, src = load_or_train_source(cfg, device=dev, progress=_stage(progress, 0, 0.35))
    src = source or src
    td = target_data(cfg)
    n_source = n_source_classes(cfg)
    if progress:
        progress(0.35, f"target NTK on {cfg.n_kernel} samples")
    model0 = initial_model(cfg, model, td, n_source)  # theta_0: the kernel's and the fit's
    if cfg.transform == "none":
        kernel = None
    elif kernel is None:
        kernel = _target_kernel(cfg, model0, td)
    _, fit = fit_with_spectrum(
        cfg, model, td, n_source=n_source, progress=_stage(progress, 0.45, 0.93), start=model0
    )
    fit.source_test_acc = src.source_test_acc
    if progress:
        progress(0.95, "baseline: the same source with transform 'none'")
    fit.baseline_test_acc = (
        fit.target_test_acc
        if cfg.transform == "none"
        else baseline_accuracy(cfg, model, td, n_source)
    )
    if progress:
        progress(1.0, "done")
    record = ExperimentRecord(
        config=cfg,
        versions=versions(cfg),
        weights=cfg.weights_label,
        source=src,
        fit=fit,
        kernel=kernel,
    )
    return record.to_dict()


def explore_inputs(
    cfg: ExperimentConfig, params: dict[str, Any]
) -> dict[str, tuple[str, ExperimentConfig, dict[str, Any]]]:
    """The stages an explore result is built from, as backend requests (name -> kind, config,
    params): the source record, and the target NTK at the kernel config (none for 'none')."""
    needs: dict[str, tuple[str, ExperimentConfig, dict[str, Any]]] = {"source": ("source", cfg, {})}
    if cfg.transform != "none":
        needs["kernel"] = ("ntk", cfg.kernel_config(), {})
    return needs
