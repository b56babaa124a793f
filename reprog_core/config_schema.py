"""The fields of an experiment config, each declared once with its metadata (``FieldInfo``).

``ExperimentFields`` is the table: every field's default, label, help, range or interval, choices,
role in the cache keys and where it appears (CLI flag, URL, sidebar group, Compare column, sweep
row). ``reprog_core.config.ExperimentConfig`` inherits it and adds what a config does
(normalisation, cross-field validation, derived values, cache keys); everything else imports the
config from there. Adding a setting is one field here.
"""

from __future__ import annotations

from dataclasses import dataclass

from reprog_core import transforms
from reprog_core.config_fields import (
    FLOAT32_MAX,
    Interval,
    KernelForm,
    LossKind,
    MappingKind,
    OptimizerKind,
    Regime,
    SourceFamily,
    TransformKind,
    _f,
)

# The float fields' intervals (``FieldInfo.interval``), checked by ``_validate`` like every field.
# rho: gradient descent on the kernel's stiffest mode diverges at 2, and 0 would not move.
RHO_INTERVAL = Interval(
    0, 2, closed="neither", says="between 0 and 2, the stability limit of gradient descent"
)
# lr: 0 is the sentinel for "the transform's default" (``effective_lr``), so it belongs to the
# interval; above it any finite step size, up to the largest float32 (the parameters' dtype: a
# larger step is inf on the first update). No tighter bound: a step past the stability limit is a
# thing to show (a diverging fit, an exploding prediction), and sgd's own step rho N / lambda_max
# is large where the kernel is flat, so 10 or 100 would refuse steps the spectrum itself picks.
LR_INTERVAL = Interval(
    0,
    FLOAT32_MAX,
    says=f"a finite number > 0 (at most {FLOAT32_MAX:.3g}, the largest float32), or 0 for the "
    "transform's default",
)


@dataclass(frozen=True)
class ExperimentFields:
    """The fields of ``ExperimentConfig``: everything that determines one reprogramming
    experiment f_T = b o f_S o a_theta, in the order pages and the CLI show them.

    The defaults are the offline default, chosen by measurement (docs/results.md, "A real
    pretrained source"): the ImageNet EfficientNet-Lite0 used as the whole 1000-class
    classifier at a 64 x 64 input, reprogrammed to real MNIST (each 28 x 28 digit in the middle)
    by a border prompt trained for 300 Adam steps: 0.681 target test accuracy against 0.200 for
    the ``none`` baseline at seed 0, while ``weights='random'`` stays at 0.167 (baseline 0.103).
    ``presets.PIXEL`` is the earlier pixel pair.
    """

    # --- source model f_S -------------------------------------------------------------------
    source_family: str = _f(
        SourceFamily.EFFICIENTNET_LITE0.value,
        "source family",
        help="The frozen source model f_S. efficientnet-lite0: an ImageNet-pretrained classifier "
        "(1000 classes) used as it is. clip-cnn is the paper's setting: a frozen pretrained "
        "encoder feeding a CNN head trained on the source data. Pixel models are small CNNs/MLPs "
        "trained from scratch.",
        choices=SourceFamily,
        names=(
            ("efficientnet-lite0", "ImageNet EfficientNet-Lite0, whole classifier"),
            ("clip-cnn", "frozen encoder + CNN head (clip-cnn)"),
            ("cnn", "pixel CNN from scratch (cnn)"),
            ("mlp", "pixel MLP from scratch (mlp)"),
        ),
        role="source",
        group="source",
        vary=True,
        column=True,
    )
    backbone: str = _f(
        "efficientnet-lite0",
        "frozen encoder",
        help="The frozen encoder of clip-cnn: efficientnet-lite0 (ImageNet-pretrained, its "
        "stride-16 feature map) or an open_clip model name, e.g. ViT-S-32 or tiny-vit",
        role="source",
        group="source",
        column=True,
    )
    weights: str = _f(
        "",
        "weights",
        help="The pretrained model's weights (empty: the model's default, 'imagenet' for "
        "efficientnet-lite0 and 'random' for an open_clip encoder). efficientnet-lite0: "
        "'imagenet' (shipped in its "
        "package) or 'random' (the architecture's seeded initialisation, BatchNorm statistics "
        "as initialised). An open_clip encoder: 'random', a pretrained tag (downloads where a "
        "network exists), or the name of a checkpoint in the server's weights folder (the CLI "
        "also takes a checkpoint file). Random weights are flagged everywhere.",
        role="source",
        group="source",
        vary=True,
        column=True,
    )
    depth: int = _f(
        3,
        "source depth",
        help="Depth L of the source model (of the CNN head for clip-cnn). The paper varies it "
        "from 1 to 6.",
        limits=(1, 12),
        ui=(1, 6),
        role="source",
        group="source",
        source_training=True,
        vary=True,
        column=True,
    )
    width: int = _f(
        32,
        "width",
        limits=(1, 4096),
        cap="max_width",
        role="source",
        source_training=True,
        column=True,
    )
    ntk_init: bool = _f(
        False,
        "NTK initialisation",
        help="NTK parameterisation of the source (weights ~ N(0,1), scaled by 1/sqrt(fan_in))",
        role="source",
        source_training=True,
    )
    source_data: str = _f(
        "animal",
        "source data set",
        role="source",
        group="source",
        source_training=True,
        vary=True,
        column=True,
    )
    source_size: int = _f(
        64,
        "source input size s",
        help="The source input is 3 x s x s.",
        limits=(8, 512),
        cap="max_source_size",
        role="source",
        column=True,
    )
    source_per_class: int = _f(
        300,
        "source images per class",
        help="Source training images per class (subsampled, seeded).",
        limits=(1, 100_000),
        cap="max_source_per_class",
        role="source",
        source_training=True,
    )
    source_epochs: int = _f(
        30,
        "source epochs (max)",
        help="A budget: training stops earlier at a validation plateau.",
        limits=(1, 1000),
        cap="max_source_epochs",
        role="source",
        source_training=True,
    )
    # --- target task, transformation a_theta, mapping b ----------------------------------------
    target: str = _f("mnist", "target data set", group="target", vary=True, column=True)
    target_size: int = _f(
        28,
        "target size t",
        help="Target images are resized to 3 x t x t (the inner square for vp).",
        limits=(4, 512),
        cap="max_target_size",
    )
    target_per_class: int = _f(
        100,
        "target images per class",
        limits=(1, 100_000),
        cap="max_target_per_class",
    )
    transform: str = _f(
        TransformKind.VP.value,
        "input transformation",
        help="The input transformation a_θ, the only part that is trained.",
        choices=TransformKind,
        names=tuple((k, t.label) for k, t in transforms.SPECS.items()),
        group="target",
        vary=True,
        column=True,
    )
    mapping: str = _f(
        MappingKind.FLM.value,
        "label mapping",
        help="The output label mapping b from source classes to target classes. The paper "
        "assumes a fixed map.",
        choices=MappingKind,
        names=(
            ("identity", "fixed: first c_T source classes (identity)"),
            ("flm", "frequency label mapping (flm)"),
            ("ilm", "iterative label mapping (ilm)"),
            ("learned", "learned linear map (learned; beyond the paper)"),
        ),
        group="target",
        vary=True,
        column=True,
    )
    loss: str = _f(
        LossKind.CE.value,
        "fit loss",
        help="ce: cross-entropy. mse: squared loss (what the NTK prediction models).",
        choices=LossKind,
        role="fit",
        vary=True,
    )
    optimizer: str = _f(
        OptimizerKind.ADAM.value,
        "optimizer",
        help="adam: minibatch Adam (practical). sgd: full-batch gradient descent on the kernel "
        "samples (what the NTK prediction models).",
        choices=OptimizerKind,
        vary=True,
    )
    steps: int = _f(
        300,
        "fit steps",
        help="Gradient steps of the reprogramming fit.",
        limits=(0, 100_000),
        cap="max_steps",
        step=10,
        group="fit",
        role="fit",
        vary=True,
        column=True,
    )
    lr: float = _f(
        0.0,
        "learning rate",
        help="0 means the default: Adam's per-transform rate, or for sgd η = ρ·N/λ_max of the "
        "full target NTK.",
        step=0.01,
        role="fit",
        interval=LR_INTERVAL,
    )
    regime: str = _f(
        Regime.PRACTICAL.value,
        "kernel regime",
        help="Kernel regime: full-batch gradient descent on squared loss over the N kernel "
        "samples (optimizer sgd, loss mse), with the step size from the spectrum, so the NTK "
        "prediction describes the fit; the page measures how long they agree and the kernel drift "
        "that makes them part. Practical: the fit with the optimizer and loss as set, with no "
        "prediction on its axes.",
        choices=Regime,
        names=(
            ("practical", "practical (optimizer and loss as chosen)"),
            ("kernel", "kernel regime (full-batch GD, squared loss)"),
        ),
        group="fit",
        role="fit",
        vary=True,
        column=True,
    )
    rho: float = _f(
        0.1,
        "ρ = η·λ_max/N",
        help="ρ = η·λ_max/N: the step size as a fraction of what the stiffest direction of the "
        "full target NTK allows (gradient descent diverges above 2). η = ρ·N/λ_max.",
        ui=(0.01, 1.0),
        step=0.01,
        group="fit",
        role="fit",
        interval=RHO_INTERVAL,
    )
    batch_size: int = _f(32, "batch size", limits=(1, 8192), cap="max_batch_size", role="fit")
    eval_every: int = _f(25, "evaluate every", limits=(1, 100_000), role="fit")
    # --- kernel -------------------------------------------------------------------------------
    n_kernel: int = _f(
        64,
        "N kernel samples",
        help="N: number of target training images the NTK is computed on.",
        limits=(2, 100_000),
        cap="max_n_kernel",
        flag="--n",
        step=8,
        group="fit",
        vary=True,
        column=True,
    )
    kernel_form: str = _f(
        KernelForm.TRACE.value,
        "kernel form",
        help="trace: an N×N matrix summed over outputs. full: the (N·c_T)×(N·c_T) matrix.",
        choices=KernelForm,
        flag="--kernel",
        group="fit",
        vary=True,
        column=True,
    )
    # --- reproducibility ----------------------------------------------------------------------
    seed: int = _f(
        0,
        "seed",
        help="Seeds data subsets, initialisation and training.",
        limits=(0, 2**31 - 1),
        role="source",
        group="fit",
        vary=True,
        column=True,
    )
    data_root: str = _f(  # where downloadable sets live; not hashed, never from a URL
        "",
        "data root",
        help="folder of downloadable data sets (default $REPROG_DATA_ROOT or <cache>/data)",
        role="local",
        url=False,
    )
