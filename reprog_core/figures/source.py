"""The source model in words: how its weights came to be, and its model card."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reprog_core.figures.theme import Result, duration, fmt, pct


def weights_description(weights: str | None, config: Mapping[str, Any] | None = None) -> str:
    """How the source model's weights came to be, in words."""
    cfg = config or {}
    src = cfg.get("source_data", "the source data")
    if weights in (None, "none"):
        return f"pixel model, trained from scratch on {src} (no pretrained backbone)"
    backbone = cfg.get("backbone", "CLIP")
    if weights == "random":
        return (
            f"CLIP tower {backbone} with RANDOM weights (not pretrained), frozen; "
            f"its CNN head trained on {src}"
        )
    return (
        f"CLIP tower {backbone} with pretrained weights '{weights}', frozen; head trained on {src}"
    )


def source_card_rows(source: Result, config: Mapping[str, Any]) -> list[dict[str, str]]:
    """The source model card as (property, value) rows."""
    fam = config.get("source_family")
    arch = {
        "cnn": f"pixel CNN, depth {config.get('depth')} (3×3 conv + ReLU blocks), width "
        f"{config.get('width')}",
        "mlp": f"pixel MLP, depth {config.get('depth')}, width {config.get('width')}",
        "clip-cnn": f"frozen CLIP tower {config.get('backbone')} + trainable CNN head of depth "
        f"{config.get('depth')}",
    }.get(str(fam), str(fam))
    rows = [
        ("model", arch),
        ("weights", weights_description(source.get("weights"), config)),
        (
            "source data",
            f"{config.get('source_data')} at {config.get('source_size')}×"
            f"{config.get('source_size')}, {config.get('source_per_class')} images per class",
        ),
        (
            "source accuracy",
            f"test {pct(source.get('source_test_acc'))} · "
            f"train {pct(source.get('source_train_acc'))}",
        ),
        (
            "parameters",
            f"{fmt(source.get('n_params_trainable'))} trained · "
            f"{fmt(source.get('n_params_frozen'))} frozen backbone",
        ),
        (
            "training",
            f"{source.get('epochs_run')} of at most {config.get('source_epochs')} epochs, "
            f"{duration(source.get('seconds'))}",
        ),
    ]
    return [{"property": a, "value": b} for a, b in rows]
