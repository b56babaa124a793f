"""Result records: what the library returns and the backend stores (JSON-safe via ``to_dict``).

These are plain, typed data: the one contract between the computations that write results and
everything that reads them (figures, cautions, downloads, pages, sweeps). A stored result is
parsed once, where it leaves the backend (``parse``, used by the dashboard's job client and the
sweep runner), and read as attributes everywhere after, so a renamed field fails at import or in
a test instead of drawing "—". This module imports neither torch nor the backend. Large arrays
(Gram matrices) are never part of a record unless asked for.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeVar

from reprog_core.config import ROW_FIELDS, SOURCE_FIELDS, ExperimentConfig

R = TypeVar("R", bound="Record")


def _config(values: dict[str, Any]) -> ExperimentConfig:
    """A stored config as the typed config (validated; data-set names are not looked up)."""
    return ExperimentConfig.for_lookup(values)


class Record:
    """``to_dict`` (JSON-ready nested dicts, as the backend stores them) and ``from_dict`` (the
    inverse; keys that are not fields, such as the backend's ``cache`` and ``key``, are ignored;
    a missing field raises ``TypeError``, so a renamed field cannot pass unnoticed)."""

    # field -> how a stored value becomes the typed one: a record type, or a function of the dict
    NESTED: ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[R], values: dict[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kw = {k: v for k, v in values.items() if k in names}
        for name, kind in cls.NESTED.items():
            if isinstance(kw.get(name), dict):
                parse_one = kind.from_dict if isinstance(kind, type) else kind
                kw[name] = parse_one(kw[name])
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
    versions: dict[str, str] = field(default_factory=dict)  # of a stored task result


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
class KernelRegime(Record):
    """A kernel-regime fit (sgd + mse, full batch on the N kernel samples) measured against the
    NTK prediction from the full kernel at theta_0 (``kernel_regime.fit_with_spectrum``).

    Loss lists are the squared loss on the kernel samples at ``steps`` (same length each)."""

    steps: list[int]
    measured_loss: list[float]
    predicted_loss: list[float]
    rho: float  # eta lambda_max / N actually used
    lr: float  # eta
    lr_lambda_max_over_n: float
    lambda_max_full: float  # of the full target NTK at theta_0
    n: int  # kernel samples
    n_outputs: int  # c_T
    agreement_tol: float  # relative error up to which prediction and measurement "agree"
    agree_until: int | None  # the last step of the agreeing prefix (None: not even step 0)
    parted_at: int | None  # the first step after it (None: they agree to the end)
    worst_error: float
    loss_drop: float  # share of the initial loss gone by ``agree_until``
    drift: float  # ||K_end - K_0||_F / ||K_0||_F
    drift_at_parting: float | None
    trace_form_gap: float  # how far K_full is from K_trace/c (x) I (Prop. 1)
    # The loss with each output's mean residual over the N samples removed, and the share of the
    # initial loss that common offset is (the largest eigen-direction removes it first).
    measured_loss_offset_free: list[float]
    predicted_loss_offset_free: list[float]
    offset_share: float
    # The horizon of the same prediction from the theta_0 kernel times 1/2 and times 2: when one
    # is at least ``agree_until``, the band cannot tell that kernel from the right one.
    agree_until_half_kernel: int | None
    agree_until_double_kernel: int | None
    band_discriminates: bool
    mapping: str
    mapping_note: str = ""  # how the mapping was held (ILM frozen at theta_0's FLM assignment)


@dataclass
class Dynamics(Record):
    """The NTK-predicted squared loss on the kernel samples over the fit's steps
    (``ntk.ntk_dynamics``): discrete gradient descent and gradient flow, at step size ``lr``."""

    step: list[float]
    loss: list[float]  # discrete GD
    loss_flow: list[float]  # gradient flow
    lr: float
    lr_lambda_max_over_n: float
    note: str = ""  # what the prediction was computed with (step size, kernel form)


@dataclass
class FitResult(Record):
    """One reprogramming fit: only theta (and a learned mapping) was trained."""

    NESTED: ClassVar[dict[str, Any]] = {
        "config": _config,
        "curves": FitCurves,
        "kernel_regime": KernelRegime,
    }

    config: ExperimentConfig
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
    # Kernel regime only (sgd + mse, full batch on the kernel samples): the fit measured against
    # the NTK prediction from the full kernel.
    kernel_regime: KernelRegime | None = None
    # What the 'none' baseline trained or fitted ("the learned 10x1000 read-out trained alone
    # for 300 steps at lr 0.05 ...", "FLM fitted on the resized training images, nothing
    # trained"); '' in records from before it was said.
    baseline_note: str = ""
    versions: dict[str, str] = field(default_factory=dict)  # of a stored task result


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
    # y^T K y / (||K||_F ||y||^2), targets described by ``alignment_targets``
    alignment: float | None
    alignment_targets: str
    abs_sum_over_n: float  # sum_{x,x'} |K(x,x')| / N (the paper's generalisation-gap term)
    n_negative: int  # eigenvalues below -rank_tol (a bug indicator; reported, not clipped)
    partial: bool = False  # True when only the top-k eigenvalues were computed (Lanczos)


@dataclass
class KernelResult(Record):
    """A target or source NTK and its spectrum."""

    NESTED: ClassVar[dict[str, Any]] = {
        "config": _config,
        "stats": SpectrumStats,
        "dynamics": Dynamics,
    }

    config: ExperimentConfig
    weights: str
    wrt: str  # 'transform' (target NTK) or 'source' (source NTK)
    kernel: str  # 'trace' or 'full'
    method: str  # 'structured', 'jacobian' or 'lanczos'
    n: int  # samples
    n_outputs: int  # c_T (target) or c_S (source)
    n_params: int  # P, the parameters the kernel is taken with respect to
    stats: SpectrumStats
    seconds: float
    dynamics: Dynamics | None = None  # NTK-predicted squared loss over the fit's steps
    lambda_min_draws: list[float] | None = None  # source NTK: lambda_min of each random draw
    gram: Any = None  # the kernel matrix itself, only when asked for
    # Target NTK: accuracy of kernel ridge regression with this kernel (trace form) from the N
    # samples to ``regression_heldout`` held-out test images (ntk/regression.py); None if not run.
    regression_acc: float | None = None
    regression_heldout: int = 0
    # Target NTK: the input-independent share of the Jacobian, ||mean_i J_i||^2 / mean_i ||J_i||^2
    # = 1^T K 1 / (N tr K) on the trace form (1: θ moves every sample's outputs the same way).
    common_share: float | None = None
    versions: dict[str, str] = field(default_factory=dict)  # of a stored task result


# The parts of an experiment record; each is stored without its own config, weights and versions
# (the record's, held once).
_PARTS: dict[str, type[Record]] = {"source": SourceResult, "fit": FitResult, "kernel": KernelResult}
_HELD_ONCE = ("config", "weights", "versions")


@dataclass
class ExperimentRecord(Record):
    """One experiment as the Explore page, the Compare columns, the Depth sweep, the CLI sweep and
    the downloads read it (``pipeline.run_explore``): the source model, the target NTK at
    theta_0 (None for transform 'none') and the fit with its 'none' baseline.

    Stored with the config, weights and versions once, at the top: ``from_dict`` gives each part
    the record's (the source part its source fields)."""

    config: ExperimentConfig
    versions: dict[str, str]
    weights: str
    source: SourceResult
    fit: FitResult
    kernel: KernelResult | None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "config": self.config.to_dict(),
            "versions": dict(self.versions),
            "weights": self.weights,
        }
        for name in _PARTS:
            part = getattr(self, name)
            out[name] = None if part is None else _without(part.to_dict(), _HELD_ONCE)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentRecord:
        cfg = values["config"]
        cfg = cfg if isinstance(cfg, ExperimentConfig) else _config(cfg)
        held = {"weights": values["weights"]}
        parts: dict[str, Any] = {}
        for name, kind in _PARTS.items():
            part = values.get(name)
            if isinstance(part, dict):
                own = {k: getattr(cfg, k) for k in SOURCE_FIELDS} if name == "source" else cfg
                part = kind.from_dict({**part, **held, "config": own})
            parts[name] = part
        return cls(config=cfg, versions=dict(values["versions"]), weights=held["weights"], **parts)

    def sweep_row(self) -> dict[str, Any]:
        """One flat table row (``ROW_COLUMNS``), for sweeps, the Depth sweep page, Compare's
        summary and the CSV downloads."""
        fit, kernel = self.fit, self.kernel
        stats = kernel.stats if kernel is not None else None
        regime = fit.kernel_regime
        return {
            # the config's columns (``FieldInfo.column``); weights as the record's label
            **{
                name: self.weights if name == "weights" else getattr(self.config, name)
                for name in ROW_FIELDS
            },
            "source_test_acc": self.source.source_test_acc,
            "target_test_acc": fit.target_test_acc,
            "baseline_test_acc": fit.baseline_test_acc,
            **{name: _or_nan(getattr(stats, name, None)) for name in ROW_STATS},
            "regression_acc": _or_nan(kernel.regression_acc if kernel is not None else None),
            "common_share": _or_nan(kernel.common_share if kernel is not None else None),
            "n_params_transform": fit.n_params_transform,
            "stopped": fit.stopped,
            # Squared loss on the N kernel samples before and after the fit: the quantity whose
            # decrease the spectrum predicts (in the kernel regime, the loss the fit minimises).
            "kernel_loss_drop": _loss_drop(fit.curves.kernel_loss),
            "kernel_drift": _or_nan(regime.drift if regime is not None else None),
            "agree_until": _or_nan(regime.agree_until if regime is not None else None),
        }


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
# Every column of ``ExperimentRecord.sweep_row``, in order.
ROW_COLUMNS = (
    *ROW_FIELDS,
    "source_test_acc",
    "target_test_acc",
    "baseline_test_acc",
    *ROW_STATS,
    "regression_acc",
    "common_share",
    "n_params_transform",
    "stopped",
    "kernel_loss_drop",
    "kernel_drift",
    "agree_until",
)


@dataclass
class SweepRecord(Record):
    """A sweep as its ``results.json`` holds it (``reprog_core.sweep``): the grid and its base
    config, one row per finished point (a table: ``ExperimentRecord.sweep_row`` plus where the
    point came from and what it cost), every point done or failed, and the statistics over the
    rows. Built by ``sweep.runner.build_record``; read back from a file by
    ``sweep.outputs.load_results`` (the file's boundary). ``rows``, ``points``, ``summary``,
    ``correlations`` and ``claims`` are tables (lists of dicts keyed by column). A file holds
    at least its format and rows; the rest defaults to empty."""

    NESTED: ClassVar[dict[str, Any]] = {"config": _config}

    format: str
    format_version: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    created: str = ""
    finished: bool = True  # False: interrupted, the rows are the points finished by then
    command: str | None = None
    preset: str | None = None
    grid: dict[str, Any] = field(default_factory=dict)  # ``SweepGrid.to_dict()``
    config: ExperimentConfig | None = None  # the grid's base config
    weights: str = ""
    executor: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = math.nan
    n_done: int = 0
    n_failed: int = 0
    cache_counts: dict[str, int] = field(default_factory=dict)  # computed / joined / hit / failed
    points: list[dict[str, Any]] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    correlations: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    # Not in the file: the folder it was read from, and the files a run wrote.
    path: str = ""
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The file's content (without ``path`` and ``files``)."""
        out = asdict(self)
        del out["path"], out["files"]
        return out

    @property
    def grid_name(self) -> str:
        """The grid's preset, or 'custom grid'."""
        return str(self.grid.get("preset") or self.preset or "custom grid")


# The record each backend task kind stores.
RECORDS: dict[str, type[Record]] = {
    "source": SourceResult,
    "fit": FitResult,
    "ntk": KernelResult,
    "explore": ExperimentRecord,
}


def parse(kind: str, values: dict[str, Any]) -> Record:
    """A stored result of task ``kind`` as its typed record (the job boundary's one parser).
    Raises ``KeyError`` for an unknown kind and ``TypeError``/``ConfigError`` for a stored
    dict that is not such a record."""
    return RECORDS[kind].from_dict(values)


def _without(values: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in names}


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _loss_drop(losses: list[float]) -> float:
    """Fraction of the first loss gone by the last (NaN without two finite values)."""
    if len(losses) < 2 or not all(math.isfinite(v) for v in (losses[0], losses[-1])):
        return math.nan
    return 1 - losses[-1] / losses[0] if losses[0] else math.nan


def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` that strict JSON accepts: NaN/inf become None, tensors/arrays lists."""
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
