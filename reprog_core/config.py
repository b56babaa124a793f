"""One frozen, typed config per experiment.

``ExperimentConfig`` is the single boundary where user input (CLI flags, URL query parameters,
JSON) is validated. Everything downstream trusts it. It hashes into stable cache keys: the key of
a *source model* depends only on the fields that shape the source model, so changing the transform
never retrains the source.

Three modules, one config: ``config_fields.py`` is the machinery (``FieldInfo``, ``Interval``,
the enums, the generic checks), ``config_schema.py`` declares the fields with their metadata, and
this module is the config itself (normalisation, cross-field rules, derived values, cache keys)
with the tables derived from the metadata (``FIELDS``, ``SOURCE_FIELDS``, ``ROW_FIELDS``, ...).
Import every public name from here.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from reprog_core import transforms
from reprog_core.config_fields import (
    ConfigError,
    FieldInfo,
    Interval,
    KernelForm,
    LossKind,
    MappingKind,
    OptimizerKind,
    Regime,
    SourceFamily,
    TransformKind,
    check_value,
    coerce,
    field_kinds,
    field_table,
    int_ranges,
)
from reprog_core.config_schema import ExperimentFields

__all__ = [  # the names other modules import from here; the machinery is ``config_fields``'s
    "CODE_VERSION",
    "FIELDS",
    "FIXED_WEIGHTS",
    "LEARNED_IN_KERNEL_REGIME",
    "LIMITS",
    "PRETRAINED_CLASSIFIERS",
    "ROW_FIELDS",
    "SOURCE_FIELDS",
    "SOURCE_TRAINING_FIELDS",
    "ConfigError",
    "ExperimentConfig",
    "FieldInfo",
    "Interval",
    "KernelForm",
    "LossKind",
    "MappingKind",
    "OptimizerKind",
    "Regime",
    "SourceFamily",
    "TransformKind",
    "default_weights",
    "int_ranges",
    "sgd_step_size",
]

# Bump when a change alters numbers produced for an unchanged config, or the shape of a stored
# result (invalidates cached results). 2: sources train to a validation plateau; sgd step size
# from the spectrum. 3: the test curve of a fit on a fixed subset; pretrained sources. 4: typed
# records (config held once, ``KernelRegime``, ``Dynamics``); the numbers are those of 3.
CODE_VERSION = "4"

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


# The kernel regime's prediction is taken w.r.t. theta alone (docs/science.md, "Regimes").
LEARNED_IN_KERNEL_REGIME = (
    "mapping 'learned' cannot run in the kernel regime: the fit would also train the read-out b, "
    "whose kernel term the NTK prediction (taken w.r.t. θ only) leaves out, so the prediction "
    "cannot describe it (and at the default ρ that fit diverges); use mapping identity, flm or "
    "ilm, or the practical regime"
)


@dataclass(frozen=True)
class ExperimentConfig(ExperimentFields):
    """One reprogramming experiment f_T = b o f_S o a_theta: the fields of ``ExperimentFields``
    (``config_schema.py``, each with its metadata and default) and what a config does with them:
    normalise (the kernel regime, the default weights), validate (each field from its metadata,
    then what involves several), derive (the step size, the weights' model) and hash into the
    cache keys. Frozen: a config is a value, shared between requests and processes.
    """

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
        kinds = field_kinds(type(self))
        for name, info in field_table(type(self)).items():  # what each field's metadata says
            check_value(name, info, kinds[name], getattr(self, name))
        if self.regime == Regime.KERNEL.value and self.mapping == MappingKind.LEARNED.value:
            raise ConfigError(LEARNED_IN_KERNEL_REGIME)
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
        """This config with its fit-only fields (``FieldInfo.role == 'fit'``: steps, step size,
        batch, evaluation, loss, regime) at their defaults. What determines the target NTK at
        theta_0 and its spectrum is kept (source, target, transform, mapping, and the optimizer,
        which picks the images the label mapping is fitted on), so a what-if that changes only
        the fit reuses the stored kernel."""
        d = type(self).__dataclass_fields__
        info = field_table(type(self))
        return self.replace(**{n: f.default for n, f in d.items() if info[n].role == "fit"})

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
        coerced = {k: coerce(known[k], v) for k, v in values.items() if k in known}
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


FIELDS: dict[str, FieldInfo] = field_table(ExperimentConfig)  # in field order: source first
# Fields that determine the trained source model (and so its cache key).
SOURCE_FIELDS = tuple(name for name, info in FIELDS.items() if info.role == "source")
# Source fields that only shape a source trained here (not a pretrained classifier used as is).
SOURCE_TRAINING_FIELDS = tuple(name for name, info in FIELDS.items() if info.source_training)
# The config fields that are columns of a sweep row (``FieldInfo.column``).
ROW_FIELDS: tuple[str, ...] = tuple(name for name, info in FIELDS.items() if info.column)
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


def sgd_step_size(rho: float, n: int, lambda_max: float) -> float:
    """eta = rho N / lambda_max for full-batch GD on L = (1/N) sum_i 0.5 ||f(x_i) - y_i||^2.

    One step moves the residual by (I - eta K / N) r (K the full target NTK, N c x N c), so
    rho = eta lambda_max / N is the fraction of the stability limit 2 used by the stiffest mode.
    A kernel that is identically zero (e.g. transform 'none') has nothing to move: eta = 0.
    """
    if not lambda_max > 0:
        return 0.0
    return float(rho) * n / float(lambda_max)
