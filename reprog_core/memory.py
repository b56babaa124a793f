"""How much memory a request will need, from shapes alone, and a refusal before allocating.

``estimate(cfg, kind)`` returns a ``MemoryEstimate`` (bytes, with a readable breakdown) for the
source training, the reprogramming fit or the target kernel of ``cfg``; ``check(cfg, kind)``
raises ``MemoryTooLarge`` (``over_budget = True``, so the backend reports it as ``OverBudget``)
when it is over the budget. The pipeline calls ``check`` first thing in every ``run_*``, so that
``--source-size 512 --depth 6`` or an ``fc`` map from 127 px to 128 px is refused with the size it
needs instead of being tried.

The budget is ``budget_bytes``, else ``$REPROG_MEMORY_BUDGET``, else ``$REPROG_NTK_BUDGET``, else
4 GiB (``reprog_core.ntk.budget``; both take bytes or a K/M/G suffix).

What is counted (float32 = 4 bytes; the kernel is float64 on a CPU, 8 bytes). The estimates are
peaks of the dominant phase, meant to be at or above the measured peak
(``tests/integration/test_memory.py`` checks that against a subprocess's peak RSS) and not far
above it:

- **source training** (``cnn`` / ``mlp``): the source images at their native and at the source
  resolution (train + test split); the parameters with their gradients, Adam's two moments and
  the best-epoch copy (5 x P); the larger of one training batch (64 images: every conv/ReLU
  output saved for backward, plus ``BUFFERS`` = 4 activations of the widest layer: backward
  temporaries and oneDNN's reordered copies) and one evaluation batch (512 images, no grad:
  ``BUFFERS`` activations alive at once).
- **fit**: the frozen source's parameters; the transform's parameters with gradients, optimizer
  state, the last-good copy and the optimizer step's two temporaries (7 x T); for ``fc`` and
  ``vp-fc`` the construction of the initial matrix (an identity of side 3t^2, and for ``fc`` the
  interpolated copy and its transpose); the target images; the larger of a training batch (with
  input gradients through the source) and an evaluation batch of 256.
- **kernel** (structured path, the one ``auto`` picks for every built-in transform): the target
  images; the reprogrammed model and its float64 copy; the input-gradient rows (N x c_T x
  columns) and fc features; the Gram matrix x2 (x3 with an fc and a prompt part), the
  eigenvectors and LAPACK ``syevd``'s workspace (three more matrices,
  ``ntk.budget.eigendecomposition_bytes``); one working chunk of 32 samples with its saved
  activations and ``BUFFERS`` activations of backward buffers. ``--n`` counts N samples;
  ``kernel=full`` makes every matrix (N c_T)^2.

Sources with a pretrained network (``clip-cnn``'s encoder, the ``efficientnet-lite0`` classifier)
are not estimated here (their activations are measured when they run; the kernel engine's own
budget still applies): ``estimate`` returns None for their source training and fit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from reprog_core import transforms
from reprog_core.config import ExperimentConfig, KernelForm, OptimizerKind, SourceFamily
from reprog_core.ntk.budget import BUDGET_ENV, human_bytes, resolve_budget

MEMORY_BUDGET_ENV = "REPROG_MEMORY_BUDGET"
KINDS = ("source", "fit", "kernel")
F32, F64 = 4, 8
SOURCE_BATCH = 64  # source training batch (source_model/training.py)
SOURCE_EVAL_BATCH = 512  # source accuracy batches
FIT_EVAL_BATCH = 256  # fit prediction / accuracy batches (fit.py)
KERNEL_CHUNK = 32  # structured-path chunk (ntk/target.py STRUCTURED_CHUNK)
MAPPING_BATCH = 256  # images per source forward when FLM/ILM is fitted (fit._source_logits)
# Activations of the widest layer alive besides the saved ones, in a forward without grad or a
# backward: a layer's input and output, and oneDNN's reordered copies of both (measured: the
# evaluation of a 64 px, width-32 CNN peaked at 3.6 activations of 512 images).
BUFFERS = 4
SOURCE_TEST_PER_CLASS = 200  # source_model/training.py
TARGET_TEST_PER_CLASS = 200  # upper bound of fit.py's test split per class


class MemoryTooLarge(Exception):
    """A request whose estimated memory is over the budget, refused before anything ran.

    ``over_budget`` is True (the backend turns this into ``OverBudget``); ``needed_bytes`` and
    ``budget_bytes`` say by how much."""

    over_budget = True

    def __init__(self, message: str, *, needed_bytes: int, budget_bytes: int) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.budget_bytes = budget_bytes


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak bytes of one stage, ``parts`` naming what they are (they add up)."""

    what: str
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return int(sum(self.parts.values()))

    def describe(self) -> str:
        top = sorted(self.parts.items(), key=lambda kv: -kv[1])[:4]
        return ", ".join(f"{k} {human_bytes(v)}" for k, v in top if v > 0)


def _pretrained_net(cfg: ExperimentConfig) -> bool:
    """A source with a pretrained network, whose activations these formulas do not model."""
    return cfg.uses_backbone or cfg.is_pretrained_classifier


def memory_budget(budget_bytes: int | None = None) -> int:
    """``budget_bytes``, else ``$REPROG_MEMORY_BUDGET``, else ``$REPROG_NTK_BUDGET``, else 4 GiB."""
    if budget_bytes is None and os.environ.get(MEMORY_BUDGET_ENV, "").strip():
        saved = os.environ.get(BUDGET_ENV)
        os.environ[BUDGET_ENV] = os.environ[MEMORY_BUDGET_ENV]
        try:
            return resolve_budget(None)
        finally:
            if saved is None:
                os.environ.pop(BUDGET_ENV, None)
            else:
                os.environ[BUDGET_ENV] = saved
    return resolve_budget(budget_bytes)


# ------------------------------------------------------------------------------------------ shapes
def _classes_and_size(name: str) -> tuple[int, int, int]:
    """(classes, native pixels per image, channels) of a registered data set."""
    from reprog_core import data  # lazy: the backend's limits import this module without torch

    spec = data.dataset_spec(name)
    h, w = spec.image_size
    return spec.n_classes, h * w, spec.channels


def _source_params(cfg: ExperimentConfig, n_classes: int) -> int:
    s, w, d = cfg.source_size, cfg.width, cfg.depth
    if cfg.source_family == SourceFamily.MLP.value:
        return 3 * s * s * w + w + (d - 1) * (w * w + w) + w * n_classes + n_classes
    return 3 * 9 * w + w + (d - 1) * (9 * w * w + w) + 16 * w * n_classes + n_classes


def _activation_floats(cfg: ExperimentConfig) -> tuple[int, int]:
    """(floats one sample's forward saves for backward, floats of its widest activation)."""
    s, w, d = cfg.source_size, cfg.width, cfg.depth
    if cfg.source_family == SourceFamily.MLP.value:
        return 3 * s * s + 2 * d * w, max(3 * s * s, w)
    return 3 * s * s + 2 * d * w * s * s, w * s * s


def _transform_params(cfg: ExperimentConfig) -> tuple[int, int]:
    """(trainable parameters T, floats of the construction's largest temporaries)."""
    s2, t2 = 3 * cfg.source_size**2, 3 * cfg.target_size**2
    spec = transforms.spec(cfg.transform)
    temporaries = 0
    if spec.fc:  # eye(3t^2), and for an fc writing all of the source input interpolate's output
        temporaries = t2 * t2 + (0 if spec.pads else s2 * t2)
    return spec.n_params(cfg.source_size, cfg.target_size), temporaries


def _prompt_and_fc_columns(cfg: ExperimentConfig) -> tuple[int, int, int]:
    """(prompt columns, fc columns, fc feature dim) of the structured kernel path."""
    return transforms.spec(cfg.transform).kernel_columns(cfg.source_size, cfg.target_size)


# --------------------------------------------------------------------------------------- estimates
def source_training(cfg: ExperimentConfig) -> MemoryEstimate | None:
    """Peak of ``train_source`` for a ``cnn``/``mlp`` source; None for ``clip-cnn``."""
    if _pretrained_net(cfg):
        return None
    k, native, _ = _classes_and_size(cfg.source_data)
    n_img = k * (cfg.source_per_class + SOURCE_TEST_PER_CLASS)
    p = _source_params(cfg, k)
    saved, widest = _activation_floats(cfg)
    train = SOURCE_BATCH * (saved + BUFFERS * widest) * F32
    evaluate = SOURCE_EVAL_BATCH * (2 * 3 * cfg.source_size**2 + BUFFERS * widest) * F32
    return MemoryEstimate(
        f"source training ({cfg.source_family}, depth {cfg.depth}, width {cfg.width}, "
        f"{cfg.source_size} px)",
        {
            "images": n_img * (2 * 3 * native + 3 * cfg.source_size**2) * F32,
            "parameters, gradients, Adam, best copy": 5 * p * F32,
            "activations": max(train, evaluate),
        },
    )


def fit(cfg: ExperimentConfig) -> MemoryEstimate | None:
    """Peak of ``reprogram`` (and the baseline after it); None for a ``clip-cnn`` source."""
    if _pretrained_net(cfg):
        return None
    k_src, _, _ = _classes_and_size(cfg.source_data)
    k, native, _ = _classes_and_size(cfg.target)
    t_params, construct = _transform_params(cfg)
    saved, widest = _activation_floats(cfg)
    batch = cfg.n_kernel if cfg.optimizer == OptimizerKind.SGD.value else cfg.batch_size
    s2 = 3 * cfg.source_size**2
    train = batch * (saved + BUFFERS * widest + 2 * s2) * F32
    evaluate = FIT_EVAL_BATCH * (2 * s2 + BUFFERS * widest) * F32
    n_img = k * (cfg.target_per_class + TARGET_TEST_PER_CLASS) + cfg.n_kernel
    # Parameters, gradients, Adam's two moments, the last good copy, two temporaries of a step.
    held = 7 * t_params * F32
    working = max(held + max(train, evaluate), t_params * F32 + construct * F32)
    return MemoryEstimate(
        f"reprogramming fit ({cfg.transform}, {cfg.target_size} px -> {cfg.source_size} px)",
        {
            "source parameters": _source_params(cfg, k_src) * F32,
            "target images": n_img * (2 * 3 * native + 3 * cfg.target_size**2) * F32,
            "transform (params, grads, optimizer, copy) and activations": working,
        },
    )


def kernel(cfg: ExperimentConfig, n: int | None = None, form: str | None = None) -> MemoryEstimate:
    """Peak of the target NTK of ``cfg`` on ``n`` samples (default ``cfg.n_kernel``) in
    ``form`` ('trace' or 'full', default ``cfg.kernel_form``), float64, structured path."""
    n = cfg.n_kernel if n is None else int(n)
    form = cfg.kernel_form if form is None else KernelForm(form).value
    k_src, _, _ = _classes_and_size(cfg.source_data)
    c = _classes_and_size(cfg.target)[0]  # c_T: the mapping's outputs
    n_prompt, n_fc, d_in = _prompt_and_fc_columns(cfg)
    rows = n * c if form == KernelForm.FULL.value else n
    grams = 2 + (1 if n_fc and n_prompt else 0)
    matrices = grams + 3  # + the eigendecomposition's (budget.eigendecomposition_bytes)
    saved, widest = _activation_floats(cfg) if not _pretrained_net(cfg) else (0, 0)
    s2 = 3 * cfg.source_size**2
    t_params, _ = _transform_params(cfg)
    p_src = _source_params(cfg, k_src) if not _pretrained_net(cfg) else 0
    chunk = min(KERNEL_CHUNK, max(n, 1))
    native = _classes_and_size(cfg.target)[1]
    n_img = c * (cfg.target_per_class + TARGET_TEST_PER_CLASS) + n
    return MemoryEstimate(
        f"target NTK ({form}, N={n})",
        {
            "target images": n_img * (2 * 3 * native + 3 * cfg.target_size**2) * F32,
            "the model, and its float64 copy": (p_src + t_params) * (F32 + F64),
            "input-gradient rows and fc features": n * (c * (n_prompt + n_fc) + d_in) * F64,
            f"{matrices} matrices of {rows}x{rows}": matrices * rows * rows * F64,
            f"chunk of {chunk} (gradients, activations, backward buffers)": chunk
            * (2 * c * s2 + saved + BUFFERS * widest)
            * F64,
            # theta_0's label mapping is fitted first, on the fit's images (fit.initial_model):
            # the source's activations over one batch (measured 600-705 MB in all without it
            # counted, against an estimate of 553 MB: tests/integration/test_memory.py).
            "label-mapping fit (source activations, one batch)": (
                MAPPING_BATCH * saved * F32 if cfg.mapping in ("flm", "ilm") else 0
            ),
        },
    )


def estimate(cfg: ExperimentConfig, kind: str) -> MemoryEstimate | None:
    """The estimate of one stage: 'source', 'fit' or 'kernel' (None where not estimated)."""
    if kind == "source":
        return source_training(cfg)
    if kind == "fit":
        return fit(cfg)
    if kind == "kernel":
        return kernel(cfg)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def check(
    cfg: ExperimentConfig, *kinds: str, budget_bytes: int | None = None, n: int | None = None
) -> None:
    """Raise ``MemoryTooLarge`` if any stage in ``kinds`` (default: all) is over the budget,
    naming the stage furthest over (and the other stages over it).

    ``n``: the kernel's sample count when it differs from ``cfg.n_kernel``."""
    budget = memory_budget(budget_bytes)
    over = []
    for kind in kinds or KINDS:
        est = kernel(cfg, n) if kind == "kernel" else estimate(cfg, kind)
        if est is not None and est.total > budget:
            over.append(est)
    if not over:
        return
    est = max(over, key=lambda e: e.total)  # the stage furthest over; the others are named
    also = "".join(f"; {o.what} needs {human_bytes(o.total)}" for o in over if o is not est)
    raise MemoryTooLarge(
        f"{est.what} needs about {human_bytes(est.total)} ({est.describe()}), over the "
        f"memory budget of {human_bytes(budget)}{also}. Ask for less (smaller source/target "
        f"size, depth, width, batch or N), or raise the budget (${MEMORY_BUDGET_ENV}).",
        needed_bytes=est.total,
        budget_bytes=budget,
    )


def check_request(cfg: ExperimentConfig, *stages: str, n: int | None = None) -> None:
    """``check`` for the stages one request will run: source training is skipped when the
    trained source model is already stored (it is then only loaded), the kernel when the
    transform is ``none`` (nothing to differentiate)."""
    from reprog_core.source_model.training import stored_source_path  # lazy, as data above

    wanted = [
        s
        for s in stages
        if not (s == "source" and stored_source_path(cfg).exists())
        and not (s == "kernel" and cfg.transform == "none")
    ]
    if wanted:
        check(cfg, *wanted, n=n)


__all__ = [
    "KINDS",
    "MEMORY_BUDGET_ENV",
    "MemoryEstimate",
    "MemoryTooLarge",
    "check",
    "check_request",
    "estimate",
    "fit",
    "kernel",
    "memory_budget",
    "source_training",
]
