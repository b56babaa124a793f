"""What a config field is: its metadata (``FieldInfo``), the values it may take (the enums, an
``Interval`` for a float), its role in the cache keys, and the generic checks that follow from
them.

``reprog_core.config_schema`` declares ``ExperimentConfig``'s fields with ``_f``, and
``reprog_core.config`` re-exports the public names here; the CLI (``config_args.py``), the URL
(``dashboard/state.py``) and the sidebar (``dashboard/fields.py``) are generated from the tables
``field_table`` and ``field_kinds`` build, so a field is described once and checked the same way
everywhere. Nothing here knows a particular field: this module is the machinery.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import reprlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from reprog_core import transforms


class ConfigError(ValueError):
    """A config value a person can fix; the message says which field and what is allowed."""


# --------------------------------------------------------------------------- the values fields take
class SourceFamily(str, Enum):
    CNN = "cnn"
    MLP = "mlp"
    CLIP_CNN = "clip-cnn"
    EFFICIENTNET_LITE0 = "efficientnet-lite0"  # the whole ImageNet classifier, pretrained


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


# The largest finite float32. The models' parameters are float32: a step size above it is inf
# once it meets them, so no float field that scales them can usefully be larger.
FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class Interval:
    """The values a float field accepts, declared beside the field (in the spirit of
    scikit-learn's ``Interval`` parameter constraints) and checked by ``check_value``.

    A real number (not a bool, not a string), finite when ``finite`` (nan is never inside), from
    ``low`` to ``high``; ``closed`` says which ends belong to it, and a None end is unbounded.
    ``says`` is how a message states the rule where the numbers alone do not say why (rho's 2 is
    the stability limit of gradient descent; lr's 0 means the transform's default).
    """

    low: float | None = None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"
    finite: bool = True
    says: str = ""

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        try:
            x = float(value)
        except OverflowError:  # an int beyond any float
            return False
        if math.isnan(x) or (self.finite and math.isinf(x)):
            return False
        if self.low is not None and (x < self.low or (x == self.low and not self._low_closed)):
            return False
        return self.high is None or x < self.high or (x == self.high and self._high_closed)

    @property
    def _low_closed(self) -> bool:
        return self.closed in ("both", "left")

    @property
    def _high_closed(self) -> bool:
        return self.closed in ("both", "right")

    def bounds(self) -> tuple[float | None, float | None]:
        """The smallest and largest float inside (an open end moved to the next float in), for a
        widget's min and max, which are always inclusive; None where unbounded."""
        lo, hi = self.low, self.high
        if lo is not None and not self._low_closed:
            lo = math.nextafter(lo, math.inf)
        if hi is not None and not self._high_closed:
            hi = math.nextafter(hi, -math.inf)
        return (None if lo is None else float(lo)), (None if hi is None else float(hi))

    def describe(self) -> str:
        """The rule in words, as messages finish 'lr must be ...'."""
        return self.says or f"a {'finite ' if self.finite else ''}number in {self}"

    def __str__(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'[' if self._low_closed else '('}{low}, {high}{']' if self._high_closed else ')'}"


# --------------------------------------------------------------------------- field metadata
# What a field does to the cache keys (``ExperimentConfig.key``/``source_key``/``kernel_config``):
#   source: shapes the source model, so it is part of the source's key;
#   kernel: shapes the target NTK at theta_0 but not the source (transform, mapping, N, ...);
#   fit:    only the fit: changing it must not change the target NTK at theta_0, so
#           ``kernel_config`` resets it to its default and a what-if on it reuses the kernel;
#   local:  a setting of the machine that runs it (where data lives): in no key, never compared.
# A field is 'kernel' unless it says otherwise: in every key but the source's, so a new field
# that is not declared fit-only recomputes the kernel rather than reuse one it may have changed.
Role = Literal["source", "kernel", "fit", "local"]
ROLES: tuple[str, ...] = ("source", "kernel", "fit", "local")


@dataclass(frozen=True)
class FieldInfo:
    """What the CLI, the URL, the sidebar, the Compare columns and the cache keys need to know
    about one config field; they are all generated from it (``config_args.py``,
    ``dashboard/state.py``, ``dashboard/fields.py``, ``ExperimentConfig.kernel_config``)."""

    label: str  # what pages call it
    help: str = ""  # one or two sentences for tooltips and ``--help``
    limits: tuple[int, int] | None = None  # integers: what ExperimentConfig accepts
    interval: Interval | None = None  # floats (every one declares it): what it accepts
    ui: tuple[float, float] | None = None  # what the dashboard offers, where narrower
    cap: str = ""  # the backend's server cap on it (a ``Limits`` field), if any
    choices: type[Enum] | None = None  # the allowed values
    names: tuple[tuple[str, str], ...] = ()  # (value, how pages name it), in offered order
    flag: str = ""  # the CLI flag, when not ``--field-name``
    step: float = 1  # the dashboard's increment
    role: Role = "kernel"  # its part in the cache keys (``ROLES`` above)
    source_training: bool = False  # a source field only a source trained here has (not a
    # pretrained classifier used as it is, whose keys set it to None)
    group: str = "advanced"  # where the sidebar draws it: source, target, fit, advanced
    url: bool = True  # may come from a URL (False: a server-side setting)
    vary: bool = False  # a Compare column may change it (the rest come from the sidebar)
    column: bool = False  # a column of a sweep row (``results``/``pipeline.sweep_row``)

    def option_name(self, value: str) -> str:
        return dict(self.names).get(value, str(value))


def _f(default: Any, label: str, **info: Any) -> Any:
    """A config field with its ``FieldInfo``. A ``local`` field is left out of equality and of
    every cache key (the dataclass's ``compare``)."""
    meta = FieldInfo(label, **info)
    return field(default=default, compare=meta.role != "local", metadata={"info": meta})


_KINDS = {"int": int, "float": float, "bool": bool, "str": str}


def field_kind(f: dataclasses.Field) -> type:
    """The Python type of a field (its annotation is a string under ``from __future__ import
    annotations``): int, float, bool or str."""
    return f.type if isinstance(f.type, type) else _KINDS.get(str(f.type), str)


@functools.cache
def field_table(cls: type) -> dict[str, FieldInfo]:
    """A config class's ``FieldInfo`` per field, in field order, checked once: every float field
    declares its ``Interval`` (a float has no implicit range: nan, inf and 1e308 would pass), a
    dashboard range lies inside it, and only source fields are ``source_training``."""
    table: dict[str, FieldInfo] = {}
    for f in dataclasses.fields(cls):
        info: FieldInfo = f.metadata["info"]
        kind = field_kind(f)
        if kind is float and info.interval is None:
            raise TypeError(f"{cls.__name__}.{f.name}: a float field must declare its interval")
        if kind is not float and info.interval is not None:
            raise TypeError(f"{cls.__name__}.{f.name}: only a float has an interval (ints: limits)")
        if kind is float and info.ui and not all(v in info.interval for v in info.ui):
            raise TypeError(f"{cls.__name__}.{f.name}: ui {info.ui} is outside its interval")
        if info.role not in ROLES or (info.source_training and info.role != "source"):
            raise TypeError(f"{cls.__name__}.{f.name}: role {info.role!r} does not fit")
        table[f.name] = info
    return table


@functools.cache
def field_kinds(cls: type) -> dict[str, type]:
    """``field_kind`` of each field of a config class, in field order."""
    return {f.name: field_kind(f) for f in dataclasses.fields(cls)}


# --------------------------------------------------------------------------- checks
def check_value(name: str, info: FieldInfo, kind: type, value: Any) -> None:
    """What a field's metadata alone says about ``value``: one of its choices, an integer within
    its limits, a float inside its interval. Raises ``ConfigError`` with one line naming the field;
    what involves several fields is ``ExperimentConfig._validate``'s."""
    if info.choices is not None:
        allowed = [e.value for e in info.choices]
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")
    if info.limits is not None:
        lo, hi = info.limits
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if not lo <= value <= hi:
            raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    if kind is float and info.interval is not None and value not in info.interval:
        raise ConfigError(f"{name} must be {info.interval.describe()}; got {reprlib.repr(value)}")


def coerce(f: dataclasses.Field, value: Any) -> Any:
    """Turn a string from a URL or CLI into the field's type, with a readable error. An int for a
    float field becomes a float; everything else is left for ``check_value`` to judge."""
    target = field_kind(f)
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
        try:
            return float(value)
        except OverflowError:  # an int beyond any float: check_value names the field
            return value
    return value


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
