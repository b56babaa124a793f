"""URL query parameters <-> ExperimentConfig, and the other page settings, with no Streamlit.

Every view is a URL. The config travels as one query parameter per ``ExperimentConfig`` field that
differs from its default (so the default view is the bare address); page settings (the Compare
page's variants, the sweep's grid, the Learn page's sliders) travel as their own parameters.

Parsing never raises: a value that ``ExperimentConfig`` rejects, or that is outside what the
dashboard offers, becomes a warning that names the parameter and says what was used instead. The
pages show those warnings; nothing reaches the user as a traceback.

The URL is untrusted (see SECURITY.md):

* it never names a server file: ``weights`` may only be 'random', a pretrained tag, or the *name*
  of a checkpoint in the operator's weights folder; ``backbone`` must be in open_clip's registry
  (``field_problem``, also applied to the sidebar and Compare's columns by ``server_problem``);
* ranges such as ``depths=1-N`` are cut to the allowed interval before a value is built;
* every piece of user text in a warning goes through ``md_code`` / ``md_text``, here where the
  warnings are built, so it cannot break out into markdown;
* error text from the backend is shown through ``public_message``: no server path, no PID.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reprog_core.config import FIELDS, ConfigError, ExperimentConfig, int_ranges
from reprog_core.config_fields import field_kinds, field_table

DEFAULT = ExperimentConfig()

# Every config field a URL may set: not ``data_root`` (a URL must not point the server at a
# folder of its choosing, and data_root is not part of any cache key anyway).
URL_FIELDS: tuple[str, ...] = tuple(name for name, info in FIELDS.items() if info.url)

FIELD_LABELS: dict[str, str] = {name: info.label for name, info in FIELDS.items()}


def ranges(
    limits: Mapping[str, int] | None = None, config: type[ExperimentConfig] = ExperimentConfig
) -> dict[str, tuple[int, int]]:
    """Integer ranges the dashboard accepts: ExperimentConfig's, narrowed by what the dashboard
    offers (``FieldInfo.ui``) and by the backend's server caps (``FieldInfo.cap``, values from
    ``Limits.to_dict()``), so the URL can never ask for more than the server will compute."""
    out = {}
    for name, info in field_table(config).items():
        if info.limits is None:
            continue
        lo, hi = info.limits
        if info.ui:
            lo, hi = int(info.ui[0]), int(info.ui[1])
        if limits and info.cap in limits:
            hi = min(hi, int(limits[info.cap]))
        out[name] = (lo, hi)
    return out


def float_ranges(
    config: type[ExperimentConfig] = ExperimentConfig,
) -> dict[str, tuple[float | None, float | None]]:
    """Float ranges the dashboard accepts, the float counterpart of ``ranges``: the field's
    declared ``Interval`` as inclusive bounds (an open end moved to the next float inside; None
    where unbounded), narrowed by what the dashboard offers (``FieldInfo.ui``). The URL refuses a
    value outside them and the widget (``fields.widget``) takes its min and max from them, so a
    value the widget could not show never arrives silently clamped."""
    out: dict[str, tuple[float | None, float | None]] = {}
    kinds = field_kinds(config)
    for name, info in field_table(config).items():
        if kinds[name] is not float or info.interval is None:
            continue
        lo, hi = info.interval.bounds()
        if info.ui:
            lo, hi = float(info.ui[0]), float(info.ui[1])
        out[name] = (lo, hi)
    return out


def _outside(value: float, lo: float | None, hi: float | None) -> str | None:
    """Why ``value`` is outside what the dashboard offers, or None."""
    if (lo is None or lo <= value) and (hi is None or value <= hi):
        return None
    low, high = ("-inf" if lo is None else to_param(lo)), ("inf" if hi is None else to_param(hi))
    return f"the dashboard offers {low} to {high}, got {to_param(value)}"


@functools.cache
def _url_fields(config: type[ExperimentConfig]) -> tuple[str, ...]:
    return tuple(name for name, info in field_table(config).items() if info.url)


@functools.cache
def _default(config: type[ExperimentConfig]) -> ExperimentConfig:
    return config()


def _one(raw: Any) -> str:
    """A query parameter may repeat (``?depth=1&depth=2``): the last one wins, as in browsers."""
    if isinstance(raw, (list, tuple)):
        return str(raw[-1]) if raw else ""
    return str(raw)


# --------------------------------------------------------------------------- safe text
MAX_SHOWN = 120  # characters of user text echoed in a message
# Markdown that could act inline: emphasis, code, links/images, HTML and autolinks, tables, math,
# strikethrough, Streamlit's :color[...] and :icon: directives, entities, escapes themselves.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~$:&])")
# An absolute or dot-relative path (not a URL, not a fraction like 1/2): /x/y, ~/x, ../x, ./x,
# C:\x. What a page must never show of the server.
_PATH = re.compile(
    r"""(?<![\w:/.~\\>-])(?:~|\.{1,2})?/[^\s'"`()\[\]{}<>,;|]+"""  # POSIX, ~ and ./ ../
    r"""|\b[A-Za-z]:\\[^\s'"`]+"""  # Windows
)
_PID = re.compile(r"\b(pid|PID|process(?:es)?)\s*[=:#]?\s*\(?\s*\d+\s*\)?")


def _printable(value: Any, limit: int = MAX_SHOWN) -> str:
    text = "".join(ch if ch.isprintable() else " " for ch in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def md_code(value: Any) -> str:
    """``value`` as an inline code span that its own text cannot close: the fence is one backtick
    longer than any run of backticks inside, newlines and control characters become spaces, and
    long text is cut to ``MAX_SHOWN`` characters."""
    text = _printable(value)
    if not text.strip():
        return "(empty)"
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_text(value: Any, limit: int = 600) -> str:
    """``value`` as plain markdown text: every markdown character backslash-escaped, one line."""
    return _MD_SPECIAL.sub(r"\\\1", _printable(value, limit))


def public_message(value: Any) -> str:
    """An error message as a page may show it: server paths become ``<server path>``, process
    ids are dropped, and the rest is escaped markdown on one line (``md_text``)."""
    text = _PID.sub(r"\1", _PATH.sub("<server path>", str(value)))
    return md_text(" ".join(text.split()))


# --------------------------------------------------------------------------- server-side checks
def field_problem(name: str, cfg: ExperimentConfig) -> str | None:
    """Why the server must not accept ``cfg.<name>`` from an untrusted user (None when fine).

    ``backbone`` must be a model of open_clip's registry; ``weights`` may be 'random', a
    pretrained tag of the backbone, or the name of a checkpoint in the operator's weights folder
    (``$REPROG_WEIGHTS_DIR``), never a path: nothing outside that folder is opened or stat'ed.
    """
    if name not in ("backbone", "weights"):
        return None
    if name == "weights" and cfg.weights == "random":
        return None  # the default needs no registry
    if not cfg.needs_weights_check and name == "weights":
        return None  # fixed weights ('imagenet' / 'random'), checked by the config itself
    from reprog_core.source_model.clip import BackboneError
    from reprog_core.source_model.encoders import check_encoder, check_encoder_weights

    try:
        if name == "backbone":
            check_encoder(cfg.backbone)
        else:
            check_encoder_weights(cfg.backbone, cfg.weights, allow_paths=False)
    except BackboneError as exc:
        return str(exc)
    return None


def server_problem(cfg: ExperimentConfig) -> str | None:
    """``field_problem`` of the backbone and weights of a clip-cnn config chosen in the sidebar
    or a Compare column (pixel models ignore both); None when the server may run it."""
    if not cfg.uses_backbone:
        return None
    for name in ("backbone", "weights"):
        if problem := field_problem(name, cfg):
            return f"{FIELD_LABELS[name]}: {problem}"
    return None


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
    config: type[ExperimentConfig] = ExperimentConfig,
) -> tuple[ExperimentConfig, list[str]]:
    """An ExperimentConfig from query parameters, and a warning for each one that was not used.

    A value the config refuses (outside an integer's limits or a float's interval, nan, inf, not
    a number) or outside what the dashboard offers (``ranges``, ``float_ranges``) is dropped with
    a warning that names the parameter; its field keeps its default.
    ``extra_keys``: the page's own parameters (not config fields, not warned about).
    ``config``: the config class whose fields are read (a scratch subclass in tests).
    """
    allowed_ranges = allowed_ranges or ranges(config=config)
    floats = float_ranges(config)
    url_fields = _url_fields(config)
    warnings: list[str] = []
    given = {k: _one(v) for k, v in params.items() if k in url_fields}
    for key in sorted(set(params) - set(url_fields) - set(extra_keys)):
        warnings.append(f"Unknown URL parameter {md_code(key)} was ignored.")

    def range_problem(name: str, cfg: ExperimentConfig) -> str | None:
        value = getattr(cfg, name)
        if name in allowed_ranges:
            return _outside(value, *allowed_ranges[name])
        if name in floats:
            return _outside(value, *floats[name])
        return field_problem(name, cfg)

    # All at once first: a set of parameters can be valid together but not one by one (a smaller
    # source_size together with a smaller target_size).
    try:
        cfg = config.from_dict(given)
        bad = {n: p for n in given if (p := range_problem(n, cfg))}
        if not bad:
            return cfg, warnings
    except ConfigError:
        pass
    accepted: dict[str, Any] = {}
    for name in url_fields:  # field order: the source's settings before the target's
        if name not in given:
            continue
        default = getattr(_default(config), name)
        try:
            cfg = config.from_dict({**accepted, name: given[name]})
            problem = range_problem(name, cfg)
        except ConfigError as exc:
            problem = str(exc)
        if problem:
            instead = (
                "the model's default weights"
                if name == "weights"
                else f"the default {md_code(to_param(default))}"
            )
            warnings.append(
                f"URL parameter {md_code(f'{name}={given[name]}')} is not valid "
                f"({public_message(problem)}); using {instead} instead."
            )
        else:
            accepted[name] = getattr(cfg, name)
    return config.from_dict(accepted), warnings


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
            f"URL parameter {md_code(name)}: {', '.join(md_code(repr(b)) for b in bad[:10])} not "
            f"recognised (choose from {', '.join(allowed)}); ignored."
        )
    if not good:
        if items:
            warnings.append(
                f"URL parameter {md_code(name)}: nothing usable left; using the default."
            )
        return list(default), warnings
    return list(dict.fromkeys(good)), warnings


def parse_int_list(
    name: str, raw: Any, lo: int, hi: int, default: Sequence[int]
) -> tuple[list[int], list[str]]:
    """Integers as ``1,2,5`` or a range ``1-6``, each within [lo, hi].

    A range is cut to [lo, hi] before it is built, so ``1-300000000`` costs what ``1-6`` does;
    at most ``hi - lo + 1`` values are ever held.
    """
    if raw is None:
        return list(default), []
    text = _one(raw).strip()
    values: set[int] = set()
    dropped = False
    try:
        for first, last in int_ranges(text):
            dropped |= first < lo or last > hi
            values.update(range(max(first, lo), min(last, hi) + 1))
    except ValueError:
        return list(default), [
            f"URL parameter {md_code(f'{name}={text}')} is not a list of integers (e.g. `1,2,3` "
            f"or `1-6`); using the default {','.join(map(str, default))}."
        ]
    good = sorted(values)
    warnings = []
    if dropped:
        warnings.append(f"URL parameter {md_code(name)}: values outside {lo} to {hi} were dropped.")
    if not good:
        return list(default), [*warnings, f"URL parameter {md_code(name)}: using the default."]
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
        return default, [
            f"URL parameter {md_code(f'{name}={text}')} is not {kind}; using {default}."
        ]
    if not lo <= value <= hi:  # also refuses nan
        return default, [
            f"URL parameter {md_code(f'{name}={text}')} is outside {lo} to {hi}; using {default}."
        ]
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
        f"URL parameter {md_code(f'{name}={text}')} is not one of {', '.join(allowed)}; "
        f"using {md_code(default)}."
    ]


def parse_overrides(
    name: str,
    raw: Any,
    base: ExperimentConfig,
    fields_allowed: Sequence[str],
    allowed_ranges: Mapping[str, tuple[int, int]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """A Compare variant, ``depth:6,transform:fc``: settings that differ from the base config.

    Each override is validated on top of ``base`` (and the ones before it); a bad one (a float
    outside ``float_ranges`` too) is dropped with a warning. The values returned are those of the
    config with all of them applied together, so coupled settings (regime, optimizer and loss)
    come out as the column had them, whatever the base's regime. An integer above what the server
    allows (``allowed_ranges``, default ``ranges()``) is clamped to that limit, with a warning
    that says so; one below is dropped.
    """
    if raw is None:
        return {}, []
    allowed_ranges = allowed_ranges or ranges()
    out: dict[str, Any] = {}  # the accepted values, as written (normalised together below)
    warnings: list[str] = []
    for part in _one(raw).split(","):
        part = part.strip()
        if not part:
            continue
        field, sep, value = part.partition(":")
        field, value = field.strip(), value.strip()
        if not sep or field not in fields_allowed:
            warnings.append(
                f"URL parameter {md_code(name)}: {md_code(part)} is not `setting:value` with a "
                f"setting among {', '.join(fields_allowed)}; ignored."
            )
            continue
        problem = None
        if field in allowed_ranges:
            lo, hi = allowed_ranges[field]
            try:
                number = int(value)
            except ValueError:
                number = None  # ExperimentConfig says what is wrong with it
            if number is not None and number > hi:
                warnings.append(
                    f"URL parameter {md_code(name)}: {md_code(part)} is over the server limit "
                    f"{hi}; using {md_code(f'{field}:{hi}')}."
                )
                value = str(hi)
            elif number is not None and number < lo:
                problem = f"the dashboard offers {lo} to {hi}"
        if problem is None:
            try:
                cfg = ExperimentConfig.from_dict(
                    {**{k: getattr(base, k) for k in URL_FIELDS}, **out, field: value}
                )
                floats = float_ranges()
                problem = (
                    _outside(getattr(cfg, field), *floats[field])
                    if field in floats
                    else field_problem(field, cfg)
                )
            except ConfigError as exc:
                problem = str(exc)
        if problem:
            warnings.append(
                f"URL parameter {md_code(name)}: {md_code(part)} is not valid "
                f"({public_message(problem)}); ignored."
            )
        else:
            out[field] = value
    if not out:
        return {}, warnings
    together = ExperimentConfig.from_dict({**{k: getattr(base, k) for k in URL_FIELDS}, **out})
    return {k: getattr(together, k) for k in out}, warnings


def format_overrides(values: Mapping[str, Any], base: ExperimentConfig) -> str:
    """The inverse of ``parse_overrides``: only the settings that differ from ``base``."""
    return ",".join(
        f"{k}:{to_param(v)}" for k, v in values.items() if to_param(v) != to_param(getattr(base, k))
    )
