"""Result records: what the library returns and the backend stores (JSON-safe via ``to_dict``).

These are plain data. Plot builders, the CLI's ``--json`` and the cache all speak these shapes.
Large arrays (Gram matrices) are never part of them unless asked for.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


class Record:
    """``to_dict`` (JSON-ready nested dicts, as the backend stores them) and ``from_dict`` (the
    inverse; keys that are not fields, such as the backend's ``cache`` and ``key``, are ignored;
    a missing field raises ``TypeError``, so a renamed field cannot pass unnoticed)."""

    NESTED: ClassVar[dict[str, type[Record]]] = {}  # field -> the record type it holds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[R], values: dict[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kw = {k: v for k, v in values.items() if k in names}
        for name, kind in cls.NESTED.items():
            if isinstance(kw.get(name), dict):
                kw[name] = kind.from_dict(kw[name])
        return cls(**kw)


@dataclass
class SourceResult(Record):
    """A trained source model f_S, as stored on disk under ``key``."""

    key: str
    config: dict[str, Any]  # the source fields of the ExperimentConfig
    weights: str  # 'none' (pixel model), 'random', a pretrained tag or a checkpoint path
    source_train_acc: float
    source_test_acc: float
    n_params_trainable: int  # the head / pixel model
    n_params_frozen: int  # the frozen backbone (0 for pixel models)
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: loss, val acc
    # 'plateau' (validation accuracy stopped improving: converged) or 'epoch cap' (the budget
    # ended training while it may still have been improving); for a pretrained classifier used
    # as it is, 'pretrained' or 'random init'; '' in records from before v2.
    stopped_by: str = ""
    # What source_test_acc was measured on when it is not the source data set's test split (a
    # pretrained classifier: ImageNet sample photos at the source size s), and its accuracy there
    # at the resolution it was trained at.
    evaluated_on: str = ""
    native_test_acc: float | None = None


@dataclass
class FitCurves(Record):
    """Per-step curves of a reprogramming fit. ``step`` is 1-based; eval points are sparse."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)  # running accuracy on each batch
    eval_step: list[int] = field(default_factory=list)
    # on a fixed class-balanced subset of ``test_subset`` test images (fit.CURVE_TEST_PER_CLASS
    # per class; the whole split when it is smaller); the fit's before/after accuracies use all
    test_acc: list[float] = field(default_factory=list)
    kernel_loss: list[float] = field(default_factory=list)  # squared loss on the N kernel samples
    test_subset: int = 0  # test images the test_acc curve is measured on (0: records before v3)


@dataclass
class FitResult(Record):
    """One reprogramming fit: only theta (and a learned mapping) was trained."""

    NESTED: ClassVar[dict[str, type[Record]]] = {"curves": FitCurves}

    config: dict[str, Any]
    weights: str
    transform: str
    n_params_transform: int  # trainable parameters of a_theta (effective count for vp)
    source_test_acc: float
    target_test_acc: float  # after the fit
    initial_test_acc: float  # before the fit (theta at initialisation)
    baseline_test_acc: float | None  # the same source with transform 'none' (None if not run)
    curves: FitCurves
    mapping: list[int] | None  # target class -> source output index (None for learned)
    examples_before: list[Any] = field(default_factory=list)  # few target images, 3xHxW lists
    examples_after: list[Any] = field(default_factory=list)  # the same images after a_theta
    prompt: Any = None  # the learned prompt as a 3xSxS image in [0,1] (None for fc / none)
    seconds: float = 0.0
    stopped: str = ""  # '' when the fit ran to the end; otherwise why it stopped early
    lr: float = float("nan")  # the step size used (for sgd: rho N / lambda_max unless set)
    # Kernel regime only (sgd + mse, full batch on the kernel samples): measured against the
    # NTK prediction from the full kernel, the step where they part, and the kernel drift; the
    # loss with each output's mean residual removed (measured and predicted), the share of the
    # initial loss that offset is, the horizons of the theta_0 kernel scaled by 1/2 and 2, and
    # how the mapping was held (ILM frozen at theta_0). Records before these keys lack them.
    kernel_regime: dict[str, Any] | None = None
    # What the 'none' baseline trained or fitted ("the learned 10x1000 read-out trained alone
    # for 300 steps at lr 0.05 ...", "FLM fitted on the resized training images, nothing
    # trained"); '' in records from before it was said.
    baseline_note: str = ""


@dataclass
class SpectrumStats(Record):
    """Statistics of a symmetric PSD kernel's spectrum (float64)."""

    eigenvalues: list[float]  # descending, all of them (or the top-k when ``partial``)
    lambda_max: float
    lambda_min: float  # smallest eigenvalue above ``rank_tol`` (0.0 if none)
    lambda_min_raw: float  # the smallest computed eigenvalue, unclipped
    rank: int
    rank_tol: float
    condition_number: float  # lambda_max / lambda_min (above tolerance)
    trace: float
    effective_rank: float  # exp(entropy of normalised eigenvalues)
    decay_exponent: float | None  # power-law fit lambda_i ~ i^-alpha on the top of the spectrum
    alignment: (
        float | None
    )  # y^T K y / (||K||_F ||y||^2), targets described by ``alignment_targets``
    alignment_targets: str
    abs_sum_over_n: float  # sum_{x,x'} |K(x,x')| / N (the paper's generalisation-gap term)
    n_negative: int  # eigenvalues below -rank_tol (a bug indicator; reported, not clipped)
    partial: bool = False  # True when only the top-k eigenvalues were computed (Lanczos)


@dataclass
class KernelResult(Record):
    """A target or source NTK and its spectrum."""

    NESTED: ClassVar[dict[str, type[Record]]] = {"stats": SpectrumStats}

    config: dict[str, Any]
    weights: str
    wrt: str  # 'transform' (target NTK) or 'source' (source NTK)
    kernel: str  # 'trace' or 'full'
    method: str  # 'structured', 'jacobian' or 'lanczos'
    n: int  # samples
    n_outputs: int  # c_T (target) or c_S (source)
    n_params: int  # P, the parameters the kernel is taken with respect to
    stats: SpectrumStats
    seconds: float
    dynamics: dict[str, list[float]] | None = None  # NTK-predicted squared loss over fit steps
    lambda_min_draws: list[float] | None = None  # source NTK: lambda_min of each random draw
    gram: Any = None  # the kernel matrix itself, only when asked for
    # Target NTK: accuracy of kernel ridge regression with this kernel (trace form) from the N
    # samples to ``regression_heldout`` held-out test images (ntk/regression.py); None if not run.
    regression_acc: float | None = None
    regression_heldout: int = 0
    # Target NTK: the input-independent share of the Jacobian, ||mean_i J_i||^2 / mean_i ||J_i||^2
    # = 1^T K 1 / (N tr K) on the trace form (1: θ moves every sample's outputs the same way).
    common_share: float | None = None


@dataclass
class ExperimentRecord(Record):
    """One experiment as the Explore page, the Compare columns, the Depth sweep, the CLI sweep and
    the downloads read it (``pipeline.run_explore``): the source model, the target NTK at
    theta_0 (None for transform 'none') and the fit with its 'none' baseline."""

    NESTED: ClassVar[dict[str, type[Record]]] = {
        "source": SourceResult,
        "fit": FitResult,
        "kernel": KernelResult,
    }

    config: dict[str, Any]
    versions: dict[str, str]
    weights: str
    source: SourceResult
    fit: FitResult
    kernel: KernelResult | None


def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` that strict JSON accepts: NaN/inf become None, tensors/arrays lists."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):
        return json_safe(obj.tolist())
    if hasattr(obj, "to_dict"):
        return json_safe(obj.to_dict())
    return obj
