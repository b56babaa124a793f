"""URL query parameters <-> ExperimentConfig, and the other page settings, with no Streamlit.

Every view is a URL. The config travels as one query parameter per ``ExperimentConfig`` field that
differs from its default (so the default view is the bare address); page settings (the Compare
page's variants, the sweep's grid, the Learn page's sliders) travel as their own parameters.

Parsing never raises: a value that ``ExperimentConfig`` rejects, or that is outside what the
dashboard offers, becomes a warning that names the parameter and says what was used instead. The
pages show those warnings; nothing reaches the user as a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from reprog_core.config import LIMITS, ConfigError, ExperimentConfig

DEFAULT = ExperimentConfig()

# Every config field except ``data_root``: a URL must not point the server at a folder of its
# choosing, and data_root is not part of any cache key anyway.
URL_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(ExperimentConfig) if f.name != "data_root"
)

# What the dashboard offers, where it is narrower than ExperimentConfig: the paper's depth range.
UI_RANGES: dict[str, tuple[int, int]] = {"depth": (1, 6)}

FIELD_LABELS: dict[str, str] = {
    "source_family": "source family",
    "backbone": "CLIP backbone",
    "weights": "backbone weights",
    "depth": "source depth",
    "width": "width",
    "ntk_init": "NTK initialisation",
    "source_data": "source data set",
    "source_size": "source input size s",
    "source_per_class": "source images per class",
    "source_epochs": "source epochs (max)",
    "target": "target data set",
    "target_size": "target size t",
    "target_per_class": "target images per class",
    "transform": "input transformation",
    "mapping": "label mapping",
    "loss": "fit loss",
    "optimizer": "optimizer",
    "steps": "fit steps",
    "lr": "learning rate",
    "batch_size": "batch size",
    "eval_every": "evaluate every",
    "n_kernel": "N kernel samples",
    "kernel_form": "kernel form",
    "seed": "seed",
}


def ranges(limits: Mapping[str, int] | None = None) -> dict[str, tuple[int, int]]:
    """Integer ranges the dashboard accepts: ExperimentConfig's, narrowed by ``UI_RANGES`` and by
    the backend's server caps (``Limits.to_dict()``), so the URL can never ask for more than the
    server will compute."""
    out = dict(LIMITS)
    out.update(UI_RANGES)
    caps = {
        "n_kernel": "max_n_kernel",
        "steps": "max_steps",
        "source_per_class": "max_source_per_class",
        "target_per_class": "max_target_per_class",
        "source_epochs": "max_source_epochs",
        "width": "max_width",
        "batch_size": "max_batch_size",
    }
    for name, cap in caps.items():
        if limits and cap in limits:
            lo, hi = out[name]
            out[name] = (lo, min(hi, int(limits[cap])))
    return out


def _one(raw: Any) -> str:
    """A query parameter may repeat (``?depth=1&depth=2``): the last one wins, as in browsers."""
    if isinstance(raw, (list, tuple)):
        return str(raw[-1]) if raw else ""
    return str(raw)


def to_param(value: Any) -> str:
    """A config value as it appears in the URL."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_to_params(cfg: ExperimentConfig) -> dict[str, str]:
    """The query parameters of ``cfg``: only the fields that differ from the defaults."""
    return {
        name: to_param(getattr(cfg, name))
        for name in URL_FIELDS
        if getattr(cfg, name) != getattr(DEFAULT, name)
    }


def parse_config(
    params: Mapping[str, Any],
    *,
    allowed_ranges: Mapping[str, tuple[int, int]] | None = None,
    extra_keys: Iterable[str] = (),
) -> tuple[ExperimentConfig, list[str]]:
    """An ExperimentConfig from query parameters, and a warning for each one that was not used.

    ``extra_keys``: the page's own parameters (not config fields, not warned about).
    """
    allowed_ranges = allowed_ranges or ranges()
    warnings: list[str] = []
    given = {k: _one(v) for k, v in params.items() if k in URL_FIELDS}
    for key in sorted(set(params) - set(URL_FIELDS) - set(extra_keys)):
        warnings.append(f"Unknown URL parameter `{key}` was ignored.")

    def range_problem(name: str, cfg: ExperimentConfig) -> str | None:
        if name not in allowed_ranges:
            return None
        lo, hi = allowed_ranges[name]
        value = getattr(cfg, name)
        return None if lo <= value <= hi else f"the dashboard offers {lo} to {hi}, got {value}"

    # All at once first: a set of parameters can be valid together but not one by one (a smaller
    # source_size together with a smaller target_size).
    try:
        cfg = ExperimentConfig.from_dict(given)
        bad = {n: p for n in given if (p := range_problem(n, cfg))}
        if not bad:
            return cfg, warnings
    except ConfigError:
        pass
    accepted: dict[str, Any] = {}
    for name in URL_FIELDS:  # field order: the source's settings before the target's
        if name not in given:
            continue
        default = getattr(DEFAULT, name)
        try:
            cfg = ExperimentConfig.from_dict({**accepted, name: given[name]})
            problem = range_problem(name, cfg)
        except ConfigError as exc:
            problem = str(exc)
        if problem:
            warnings.append(
                f"URL parameter `{name}={given[name]}` is not valid ({problem}); "
                f"using the default {to_param(default)!r} instead."
            )
        else:
            accepted[name] = getattr(cfg, name)
    return ExperimentConfig.from_dict(accepted), warnings


def differing_fields(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The URL fields whose values are not all equal across ``configs``, in field order."""
    return [name for name in URL_FIELDS if len({to_param(c.get(name)) for c in configs}) > 1]


# --------------------------------------------------------------------------- page settings
def parse_choices(
    name: str, raw: Any, allowed: Sequence[str], default: Sequence[str]
) -> tuple[list[str], list[str]]:
    """A comma-separated list of choices (``transforms=vp,fc``); unknown items are dropped with a
    warning, and an empty result falls back to ``default``."""
    if raw is None:
        return list(default), []
    items = [s.strip() for s in _one(raw).split(",") if s.strip()]
    good = [s for s in items if s in allowed]
    warnings = []
    bad = [s for s in items if s not in allowed]
    if bad:
        warnings.append(
            f"URL parameter `{name}`: {', '.join(map(repr, bad))} not recognised "
            f"(choose from {', '.join(allowed)}); ignored."
        )
    if not good:
        if items:
            warnings.append(f"URL parameter `{name}`: nothing usable left; using the default.")
        return list(default), warnings
    return list(dict.fromkeys(good)), warnings


def parse_int_list(
    name: str, raw: Any, lo: int, hi: int, default: Sequence[int]
) -> tuple[list[int], list[str]]:
    """Integers as ``1,2,5`` or a range ``1-6``, each within [lo, hi]."""
    if raw is None:
        return list(default), []
    text = _one(raw).strip()
    values: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                values.extend(range(int(a), int(b) + 1))
            elif part:
                values.append(int(part))
    except ValueError:
        return list(default), [
            f"URL parameter `{name}={text}` is not a list of integers (e.g. `1,2,3` or `1-6`); "
            f"using the default {','.join(map(str, default))}."
        ]
    good = sorted({v for v in values if lo <= v <= hi})
    warnings = []
    if len(good) < len(set(values)):
        warnings.append(f"URL parameter `{name}`: values outside {lo} to {hi} were dropped.")
    if not good:
        return list(default), [*warnings, f"URL parameter `{name}`: using the default."]
    return good, warnings


def parse_number(
    name: str, raw: Any, lo: float, hi: float, default: float, integer: bool = False
) -> tuple[float, list[str]]:
    """One number within [lo, hi]; otherwise the default and a warning."""
    if raw is None:
        return default, []
    text = _one(raw).strip()
    try:
        value: float = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        return default, [f"URL parameter `{name}={text}` is not {kind}; using {default}."]
    if not lo <= value <= hi:
        return default, [f"URL parameter `{name}={text}` is outside {lo} to {hi}; using {default}."]
    return value, []


def parse_choice(
    name: str, raw: Any, allowed: Sequence[str], default: str
) -> tuple[str, list[str]]:
    """One of ``allowed``; otherwise the default and a warning."""
    if raw is None:
        return default, []
    text = _one(raw).strip()
    if text in allowed:
        return text, []
    return default, [
        f"URL parameter `{name}={text}` is not one of {', '.join(allowed)}; using {default!r}."
    ]


def parse_overrides(
    name: str, raw: Any, base: ExperimentConfig, fields_allowed: Sequence[str]
) -> tuple[dict[str, Any], list[str]]:
    """A Compare variant, ``depth:6,transform:fc``: settings that differ from the base config.

    Each override is validated on top of ``base`` (and the ones before it); a bad one is dropped
    with a warning.
    """
    if raw is None:
        return {}, []
    out: dict[str, Any] = {}
    warnings: list[str] = []
    for part in _one(raw).split(","):
        part = part.strip()
        if not part:
            continue
        field, sep, value = part.partition(":")
        field = field.strip()
        if not sep or field not in fields_allowed:
            warnings.append(
                f"URL parameter `{name}`: `{part}` is not `setting:value` with a setting among "
                f"{', '.join(fields_allowed)}; ignored."
            )
            continue
        try:
            cfg = ExperimentConfig.from_dict(
                {**{k: getattr(base, k) for k in URL_FIELDS}, **out, field: value.strip()}
            )
            problem = None
            if field in UI_RANGES:
                lo, hi = UI_RANGES[field]
                if not lo <= getattr(cfg, field) <= hi:
                    problem = f"the dashboard offers {lo} to {hi}"
        except ConfigError as exc:
            problem = str(exc)
        if problem:
            warnings.append(f"URL parameter `{name}`: `{part}` is not valid ({problem}); ignored.")
        else:
            out[field] = getattr(cfg, field)
    return out, warnings


def format_overrides(values: Mapping[str, Any], base: ExperimentConfig) -> str:
    """The inverse of ``parse_overrides``: only the settings that differ from ``base``."""
    return ",".join(
        f"{k}:{to_param(v)}" for k, v in values.items() if to_param(v) != to_param(getattr(base, k))
    )
