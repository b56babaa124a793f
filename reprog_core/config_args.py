"""Command-line flags of ``ExperimentConfig``, generated from its field metadata (``FieldInfo``).

Beside the config, below the CLI: ``cli.py`` and ``sweep/cli.py`` both build their parsers and
their configs here, so neither imports the other for it. A value outside a field's limits or
interval is refused by the config itself (a ``ConfigError``: one line, exit 2), so the CLI, the
URL and the sidebar refuse the same values with the same words; ``--help`` shows the range.
Every function takes the config class (``config=``, ``ExperimentConfig`` by default), so a test
can generate the flags of a scratch subclass the same way.
"""

from __future__ import annotations

import argparse

from reprog_core.config import ConfigError, ExperimentConfig, FieldInfo
from reprog_core.config_fields import field_kinds, field_table


def flag(name: str, config: type[ExperimentConfig] = ExperimentConfig) -> str:
    """The CLI flag of config field ``name``."""
    return field_table(config)[name].flag or "--" + name.replace("_", "-")


def add_config_flags(
    p: argparse.ArgumentParser, config: type[ExperimentConfig] = ExperimentConfig
) -> None:
    """One flag per config field, in field order, with its default, choices and help; then the
    flags every computing command shares (``--download``, ``--device``, ``--json``)."""
    g = p.add_argument_group("experiment")
    kinds = field_kinds(config)
    for f in config.__dataclass_fields__.values():
        info: FieldInfo = f.metadata["info"]
        kw: dict = {"dest": f.name, "help": _help(info)}
        if kinds[f.name] is bool:
            g.add_argument(flag(f.name, config), action="store_true", **kw)
            continue
        if info.choices is not None:
            kw["choices"] = [e.value for e in info.choices]
        g.add_argument(flag(f.name, config), type=kinds[f.name], default=f.default, **kw)
    g.add_argument(
        "--download",
        action="store_true",
        help="download missing source/target data sets into the data root first (needs a network)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA if available)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _help(info: FieldInfo) -> str:
    text = info.help or info.label
    if info.limits:
        text += f" [{info.limits[0]}..{info.limits[1]}]"
    if info.interval:
        text += f" {info.interval}"
    return text.replace("%", "%%")  # argparse formats help with %


def config_from_args(
    args: argparse.Namespace, config: type[ExperimentConfig] = ExperimentConfig
) -> ExperimentConfig:
    """The config the flags describe; a bad value is a ``ConfigError`` (one line, exit 2).

    For clip-cnn, ``--backbone`` must be in open_clip's registry and ``--weights`` must be
    'random', a pretrained tag, a checkpoint name in ``$REPROG_WEIGHTS_DIR``, or an existing
    checkpoint file (a local user may name any file they can read). Checked here, before any
    work is queued; nothing is loaded yet.
    """
    known = field_table(config)
    cfg = config(**{k: v for k, v in vars(args).items() if k in known})
    if cfg.uses_backbone:
        # Lazy: the backbone registry imports torch and open_clip, which a pixel-model request
        # (and the CLI's torch-free cache lookup) never needs.
        from reprog_core.source_model.clip import BackboneError
        from reprog_core.source_model.encoders import check_encoder, check_encoder_weights

        try:
            check_encoder(cfg.backbone)
        except BackboneError as exc:
            raise ConfigError(f"{flag('backbone')}: {exc}") from None
        try:
            check_encoder_weights(cfg.backbone, cfg.weights, allow_paths=True)
        except BackboneError as exc:
            raise ConfigError(f"{flag('weights')}: {exc}") from None
    return cfg
