"""One frozen, typed config per experiment.

``ExperimentConfig`` is the single boundary where user input (CLI flags, URL query parameters,
JSON) is validated. Everything downstream trusts it. It hashes into stable cache keys: the key of
a *source model* depends only on the fields that shape the source model, so changing the transform
never retrains the source.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import math
import sys
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from reprog_core import transforms

# Bump when a change alters numbers produced for an unchanged config (invalidates cached results).
# 2: sources train to a validation plateau; sgd step size from the spectrum. 3: the test curve of
# a fit on a fixed subset; pretrained sources.
CODE_VERSION = "3"


class SourceFamily(str, Enum):
    CNN = "cnn"
    MLP = "mlp"
    CLIP_CNN = "clip-cnn"
    EFFICIENTNET_LITE0 = "efficientnet-lite0"  # the whole ImageNet classifier, pretrained


# Source families that are a pretrained classifier used as it is (nothing trained on a source
# data set): family -> its number of source classes c_S.
PRETRAINED_CLASSIFIERS = {SourceFamily.EFFICIENTNET_LITE0.value: 1000}
# Encoders with a fixed set of weights (no tag registry, no files): name -> allowed weights, the
# default first.
FIXED_WEIGHTS = {"efficientnet-lite0": ("imagenet", "random")}


def default_weights(model: str | None) -> str:
    """The weights a model gets when none are named: its pretrained ones where they ship
    ('imagenet' for efficientnet-lite0), 'random' for an open_clip encoder (no pretrained CLIP
    weights ship in a package). ``model`` None (a pixel model, no weights) gives the default
    family's, so that an unchanged field stays out of the URL."""
    if model is None:
        return FIXED_WEIGHTS[SourceFamily.EFFICIENTNET_LITE0.value][0]
    return FIXED_WEIGHTS[model][0] if model in FIXED_WEIGHTS else "random"


# The transforms and what is known about each: ``reprog_core/transforms.py``.
TransformKind = Enum(  # type: ignore[misc]
    "TransformKind", {k.upper().replace("-", "_"): k for k in transforms.KINDS}, type=str
)


class MappingKind(str, Enum):
    IDENTITY = "identity"  # fixed first-c_T map (the paper's assumption)
    FLM = "flm"  # frequency-based label mapping, computed once before training
    ILM = "ilm"  # iterative label mapping, FLM recomputed during training
    LEARNED = "learned"  # a trainable linear map (beyond the paper's fixed-b assumption)


class LossKind(str, Enum):
    CE = "ce"
    MSE = "mse"


class OptimizerKind(str, Enum):
    ADAM = "adam"  # minibatch Adam: the practical choice
    SGD = "sgd"  # full-batch gradient descent on the kernel samples: what the NTK theory predicts


class Regime(str, Enum):
    """Which fit a config runs (docs/science.md, "Regimes")."""

    PRACTICAL = "practical"  # the fit as people run it: any optimizer and loss
    KERNEL = "kernel"  # full-batch GD on squared loss over the kernel samples


class KernelForm(str, Enum):
    TRACE = "trace"  # N x N, summed over outputs
    FULL = "full"  # N*c_T x N*c_T


class ConfigError(ValueError):
    """A config value a person can fix; the message says which field and what is allowed."""


# The kernel regime's prediction is taken w.r.t. theta alone (docs/science.md, "Regimes").
LEARNED_IN_KERNEL_REGIME = (
    "mapping 'learned' cannot run in the kernel regime: the fit would also train the read-out b, "
    "whose kernel term the NTK prediction (taken w.r.t. θ only) leaves out, so the prediction "
    "cannot describe it (and at the default ρ that fit diverges); use mapping identity, flm or "
    "ilm, or the practical regime"
)


def _enum_values(enum: type[Enum]) -> list[str]:
    return [e.value for e in enum]


@dataclass(frozen=True)
class FieldInfo:
    """What the CLI, the URL, the sidebar and the Compare columns need to know about one config
    field; they are all generated from it (``config_args.py``, ``dashboard/state.py``,
    ``dashboard/fields.py``)."""

    label: str  # what pages call it
    help: str = ""  # one or two sentences for tooltips and ``--help``
    limits: tuple[int, int] | None = None  # integers: what ExperimentConfig accepts
    ui: tuple[float, float] | None = None  # what the dashboard offers, where narrower
    cap: str = ""  # the backend's server cap on it (a ``Limits`` field), if any
    choices: type[Enum] | None = None  # the allowed values
    names: tuple[tuple[str, str], ...] = ()  # (value, how pages name it), in offered order
    flag: str = ""  # the CLI flag, when not ``--field-name``
    step: float = 1  # the dashboard's increment
    source: bool = False  # shapes the trained source model (part of its cache key)
    group: str = "advanced"  # where the sidebar draws it: source, target, fit, advanced
    url: bool = True  # may come from a URL (False: a server-side setting)

    def option_name(self, value: str) -> str:
        return dict(self.names).get(value, str(value))


def _f(default: Any, label: str, **info: Any) -> Any:
    """A config field with its ``FieldInfo``."""
    compare = info.pop("compare", True)
    return field(default=default, compare=compare, metadata={"info": FieldInfo(label, **info)})


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that determines one reprogramming experiment f_T = b o f_S o a_theta.

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
        source=True,
        group="source",
    )
    backbone: str = _f(
        "efficientnet-lite0",
        "frozen encoder",
        help="The frozen encoder of clip-cnn: efficientnet-lite0 (ImageNet-pretrained, its "
        "stride-16 feature map) or an open_clip model name, e.g. ViT-S-32 or tiny-vit",
        source=True,
        group="source",
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
        source=True,
        group="source",
    )
    depth: int = _f(
        3,
        "source depth",
        help="Depth L of the source model (of the CNN head for clip-cnn). The paper varies it "
        "from 1 to 6.",
        limits=(1, 12),
        ui=(1, 6),
        source=True,
        group="source",
    )
    width: int = _f(32, "width", limits=(1, 4096), cap="max_width", source=True)
    ntk_init: bool = _f(
        False,
        "NTK initialisation",
        help="NTK parameterisation of the source (weights ~ N(0,1), scaled by 1/sqrt(fan_in))",
        source=True,
    )
    source_data: str = _f("animal", "source data set", source=True, group="source")
    source_size: int = _f(
        64,
        "source input size s",
        help="The source input is 3 x s x s.",
        limits=(8, 512),
        cap="max_source_size",
        source=True,
    )
    source_per_class: int = _f(
        300,
        "source images per class",
        help="Source training images per class (subsampled, seeded).",
        limits=(1, 100_000),
        cap="max_source_per_class",
        source=True,
    )
    source_epochs: int = _f(
        30,
        "source epochs (max)",
        help="A budget: training stops earlier at a validation plateau.",
        limits=(1, 1000),
        cap="max_source_epochs",
        source=True,
    )
    # --- target task, transformation a_theta, mapping b ----------------------------------------
    target: str = _f("mnist", "target data set", group="target")
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
    )
    loss: str = _f(
        LossKind.CE.value,
        "fit loss",
        help="ce: cross-entropy. mse: squared loss (what the NTK prediction models).",
        choices=LossKind,
    )
    optimizer: str = _f(
        OptimizerKind.ADAM.value,
        "optimizer",
        help="adam: minibatch Adam (practical). sgd: full-batch gradient descent on the kernel "
        "samples (what the NTK prediction models).",
        choices=OptimizerKind,
    )
    steps: int = _f(
        300,
        "fit steps",
        help="Gradient steps of the reprogramming fit.",
        limits=(0, 100_000),
        cap="max_steps",
        step=10,
        group="fit",
    )
    lr: float = _f(
        0.0,
        "learning rate",
        help="0 means the default: Adam's per-transform rate, or for sgd η = ρ·N/λ_max of the "
        "full target NTK.",
        step=0.01,
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
    )
    rho: float = _f(
        0.1,
        "ρ = η·λ_max/N",
        help="ρ = η·λ_max/N: the step size as a fraction of what the stiffest direction of the "
        "full target NTK allows (gradient descent diverges above 2). η = ρ·N/λ_max.",
        ui=(0.01, 1.0),
        step=0.01,
        group="fit",
    )
    batch_size: int = _f(32, "batch size", limits=(1, 8192), cap="max_batch_size")
    eval_every: int = _f(25, "evaluate every", limits=(1, 100_000))
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
    )
    kernel_form: str = _f(
        KernelForm.TRACE.value,
        "kernel form",
        help="trace: an N×N matrix summed over outputs. full: the (N·c_T)×(N·c_T) matrix.",
        choices=KernelForm,
        flag="--kernel",
        group="fit",
    )
    # --- reproducibility ----------------------------------------------------------------------
    seed: int = _f(
        0,
        "seed",
        help="Seeds data subsets, initialisation and training.",
        limits=(0, 2**31 - 1),
        source=True,
        group="fit",
    )
    data_root: str = _f(  # where downloadable sets live; not hashed, never from a URL
        "",
        "data root",
        help="folder of downloadable data sets (default $REPROG_DATA_ROOT or <cache>/data)",
        compare=False,
        url=False,
    )

    def __post_init__(self) -> None:
        self._normalise_regime()
        self._normalise_weights()
        self._validate()

    def _normalise_weights(self) -> None:
        """Empty ``weights`` means the model's default weights (``default_weights``)."""
        if self.weights == "":
            object.__setattr__(self, "weights", default_weights(self.weights_model))

    def _normalise_regime(self) -> None:
        """The kernel regime *is* full-batch GD on squared loss (what the NTK prediction models):
        ``regime='kernel'`` sets optimizer and loss, and sgd + mse is the kernel regime, so one
        experiment never has two names (or two cache keys)."""
        if self.regime == Regime.KERNEL.value:
            object.__setattr__(self, "optimizer", OptimizerKind.SGD.value)
            object.__setattr__(self, "loss", LossKind.MSE.value)
        elif self.optimizer == OptimizerKind.SGD.value and self.loss == LossKind.MSE.value:
            object.__setattr__(self, "regime", Regime.KERNEL.value)

    @classmethod
    def for_lookup(cls, values: dict[str, Any]) -> ExperimentConfig:
        """A config for a result-store lookup only: validated like the constructor, except that
        data-set names are not checked against the registry (which imports torch). A config
        naming an unknown data set never has a stored result, so its lookup just misses; the
        request then builds the config properly and reports the error. Raises ``ConfigError``."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        cfg = object.__new__(cls)
        for name, f in known.items():
            object.__setattr__(cfg, name, values.get(name, f.default))
        cfg._normalise_regime()
        cfg._normalise_weights()
        cfg._validate(check_data=False)
        return cfg

    # ------------------------------------------------------------------ validation
    def _validate(self, check_data: bool = True) -> None:
        for name, info in FIELDS.items():
            if info.choices is not None:
                _check_choice(name, getattr(self, name), info.choices)
        if self.regime == Regime.KERNEL.value and self.mapping == MappingKind.LEARNED.value:
            raise ConfigError(LEARNED_IN_KERNEL_REGIME)
        if (
            not isinstance(self.rho, (int, float))
            or isinstance(self.rho, bool)
            or not 0 < self.rho < 2
        ):
            raise ConfigError(
                f"rho (eta lambda_max / N) must be between 0 and 2, the stability limit of "
                f"gradient descent; got {self.rho!r}"
            )
        for name, (lo, hi) in LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            if not lo <= value <= hi:
                raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
        # 0 is the sentinel for "the transform's default" (``effective_lr``); otherwise a finite
        # positive step size: inf or nan would run and only stop at a NaN loss.
        if (
            not isinstance(self.lr, (int, float))
            or isinstance(self.lr, bool)
            or not math.isfinite(self.lr)
            or self.lr < 0
        ):
            raise ConfigError(
                f"lr must be a finite number > 0, or 0 for the transform's default; got {self.lr!r}"
            )
        if transforms.spec(self.transform).pads:
            if self.target_size >= self.source_size:
                raise ConfigError(
                    f"transform {self.transform!r} pads a t x t target into an s x s source input, "
                    f"so target_size ({self.target_size}) must be smaller than source_size "
                    f"({self.source_size})"
                )
        for name in ("source_data", "target"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a data set name")
        if check_data:
            from reprog_core import data  # local import: data imports nothing from here at import

            known = data.list_datasets()
            for name in ("source_data", "target"):
                value = getattr(self, name)
                if value not in known:
                    raise ConfigError(f"{name}: unknown data set {value!r}; choose one of {known}")
        if not self.backbone or not isinstance(self.backbone, str):
            raise ConfigError("backbone must be an open_clip model name")
        if not isinstance(self.weights, str) or not self.weights:
            raise ConfigError("weights must be 'random', a pretrained tag, or a checkpoint path")
        model = self.weights_model
        if model in FIXED_WEIGHTS and self.weights not in FIXED_WEIGHTS[model]:
            raise ConfigError(
                f"weights of {model} must be one of {list(FIXED_WEIGHTS[model])}, got "
                f"{self.weights!r}"
            )

    # ------------------------------------------------------------------ derived values
    @property
    def uses_backbone(self) -> bool:
        """A frozen encoder with a CNN head trained on the source data (clip-cnn)."""
        return self.source_family == SourceFamily.CLIP_CNN.value

    @property
    def is_pretrained_classifier(self) -> bool:
        """A pretrained classifier used as it is: no source training, ``source_data``, ``depth``
        and the other training fields do not apply."""
        return self.source_family in PRETRAINED_CLASSIFIERS

    @property
    def weights_model(self) -> str | None:
        """The model ``weights`` belongs to: the encoder of clip-cnn, the pretrained classifier,
        or None for pixel models (trained from scratch, no weights to choose)."""
        if self.uses_backbone:
            return self.backbone
        if self.is_pretrained_classifier:
            return self.source_family
        return None

    @property
    def needs_weights_check(self) -> bool:
        """``weights`` names something that must be looked up (an open_clip tag, a checkpoint
        name or file) before anything runs; 'random' and fixed weights need no lookup."""
        model = self.weights_model
        return model is not None and model not in FIXED_WEIGHTS and self.weights != "random"

    @property
    def weights_label(self) -> str:
        """How the pretrained part was initialised: 'none' (a pixel model, no pretrained part),
        'random', a tag ('imagenet', an open_clip tag), or a file."""
        if self.weights_model is None:
            return "none"
        return self.weights

    @property
    def lr_from_spectrum(self) -> bool:
        """True when the step size is ``rho N / lambda_max`` of the full target NTK at theta_0
        (sgd without an explicit ``lr``): the caller must compute it (``sgd_step_size``)."""
        return self.optimizer == OptimizerKind.SGD.value and self.lr <= 0

    @property
    def effective_lr(self) -> float:
        """The step size when it does not depend on the kernel: ``lr`` if set, else Adam's default
        for the transform. For sgd without ``lr`` it is ``sgd_step_size(rho, N, lambda_max)``,
        which needs the spectrum; asking here is a programming error."""
        if self.lr > 0:
            return float(self.lr)
        if self.lr_from_spectrum:
            raise ValueError("the sgd step size comes from the spectrum: use sgd_step_size()")
        return transforms.spec(self.transform).adam_lr

    def kernel_config(self) -> ExperimentConfig:
        """This config with the fit-only fields at their defaults: the fields that determine the
        target NTK at theta_0 and its spectrum are kept (source, target, transform, mapping, and
        the optimizer, which picks the images the label mapping is fitted on), so a what-if that
        changes only the steps, step size, batch or loss reuses the stored kernel."""
        d = ExperimentConfig.__dataclass_fields__
        return self.replace(
            steps=d["steps"].default,
            lr=d["lr"].default,
            rho=d["rho"].default,
            batch_size=d["batch_size"].default,
            eval_every=d["eval_every"].default,
            loss=LossKind.CE.value,
            regime=Regime.PRACTICAL.value,
        )

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def replace(self, **changes: Any) -> ExperimentConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, strict: bool = True) -> ExperimentConfig:
        """Build from a dict of (possibly string) values. Unknown keys raise when ``strict``."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown and strict:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        coerced = {k: _coerce(known[k], v) for k, v in values.items() if k in known}
        return cls(**coerced)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    # ------------------------------------------------------------------ cache keys
    def source_key(self) -> str:
        """Stable hash of the fields that determine the (trained or loaded) source model."""
        payload = self._relevant({k: getattr(self, k) for k in SOURCE_FIELDS})
        if self.is_pretrained_classifier and self.weights != "random":
            payload["seed"] = None  # pretrained weights: the seed draws nothing in the source
        return _stable_hash(payload, "source")

    def key(self, kind: str, **extra: Any) -> str:
        """Stable hash of the whole normalised config for a computation ``kind``."""
        payload = self._relevant({f.name: getattr(self, f.name) for f in fields(self) if f.compare})
        payload["extra"] = extra
        return _stable_hash(payload, kind)

    def _relevant(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload`` with the fields this source family ignores set to None, so that two
        configs that differ only there share their results."""
        ignored: set[str] = set()
        if self.weights_model is None:  # pixel models: no encoder, no weights
            ignored |= {"backbone", "weights"}
        if self.is_pretrained_classifier:  # used as it is: nothing trained on a source data set
            ignored |= {"backbone", *SOURCE_TRAINING_FIELDS}
        return {k: (None if k in ignored else v) for k, v in payload.items()}


FIELDS: dict[str, FieldInfo] = {
    f.name: f.metadata["info"] for f in fields(ExperimentConfig)
}  # in field order: the source's settings before the target's
# Fields that determine the trained source model (and so its cache key).
SOURCE_FIELDS = tuple(name for name, info in FIELDS.items() if info.source)
# Source fields that only shape a source trained here (not a pretrained classifier used as is).
SOURCE_TRAINING_FIELDS = (
    "depth",
    "width",
    "ntk_init",
    "source_data",
    "source_per_class",
    "source_epochs",
)
# Integer limits applied at the boundary. The backend may impose tighter server-side caps.
LIMITS = {name: info.limits for name, info in FIELDS.items() if info.limits}


def _data_version() -> str:
    """``reprog_core.data.DATA_VERSION``, without importing the data package (and so torch) when
    it is not loaded yet: the constant is read from its one definition in ``data/base.py``."""
    loaded = sys.modules.get("reprog_core.data")
    if loaded is not None:
        return loaded.DATA_VERSION
    try:
        tree = ast.parse((Path(__file__).parent / "data" / "base.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [
                "DATA_VERSION"
            ]:
                return str(ast.literal_eval(node.value))
    except (OSError, SyntaxError, ValueError):
        pass
    from reprog_core import data

    return data.DATA_VERSION


def _stable_hash(payload: dict[str, Any], kind: str) -> str:
    blob = json.dumps(
        {"kind": kind, "code": CODE_VERSION, "data": _data_version(), "p": payload},
        sort_keys=True,
        default=str,
    )
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"


def _check_choice(name: str, value: Any, enum: type[Enum]) -> None:
    allowed = _enum_values(enum)
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    """Turn a string from a URL or CLI into the field's type, with a readable error."""
    target = (
        f.type
        if isinstance(f.type, type)
        else {"int": int, "float": float, "bool": bool}.get(str(f.type), str)
    )
    if isinstance(value, str):
        try:
            if target is bool:
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if target is int:
                return int(value)
            if target is float:
                return float(value)
        except ValueError:
            raise ConfigError(f"{f.name} must be {target.__name__}, got {value!r}") from None
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def sgd_step_size(rho: float, n: int, lambda_max: float) -> float:
    """eta = rho N / lambda_max for full-batch GD on L = (1/N) sum_i 0.5 ||f(x_i) - y_i||^2.

    One step moves the residual by (I - eta K / N) r (K the full target NTK, N c x N c), so
    rho = eta lambda_max / N is the fraction of the stability limit 2 used by the stiffest mode.
    A kernel that is identically zero (e.g. transform 'none') has nothing to move: eta = 0.
    """
    if not lambda_max > 0:
        return 0.0
    return float(rho) * n / float(lambda_max)


def int_ranges(text: str) -> list[tuple[int, int]]:
    """The items of an integer list as people write it in a flag or a URL, ``1,2,5`` or ``1-6``
    or both: (first, last) per item, inclusive, in the order written; empty items are skipped.
    Nothing is expanded here, so ``1-300000000`` costs what ``1-6`` does: the caller cuts or
    refuses a range before building it. A ``-`` after an item's first character makes a range;
    a leading one is a sign. ``ValueError`` names the item that is not an integer or range."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        head, is_range, tail = part[1:].partition("-")
        try:
            out.append((int(part[0] + head), int(tail)) if is_range else (int(part),) * 2)
        except ValueError:
            raise ValueError(f"{part!r} is not an integer (use e.g. 1,2,3 or 1-6)") from None
    return out
