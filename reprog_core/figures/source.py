"""The source model in words: how its weights came to be, and its model card."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reprog_core.figures.theme import Result, duration, fmt, pct

_EFFNET = "efficientnet-lite0"


def weights_description(weights: str | None, config: Mapping[str, Any] | None = None) -> str:
    """How the source model's weights came to be, in words."""
    cfg = config or {}
    src = cfg.get("source_data", "the source data")
    family = cfg.get("source_family")
    if family == _EFFNET:
        if weights == "random":
            return (
                "EfficientNet-Lite0 with RANDOM weights (the architecture's seeded init, BatchNorm "
                "statistics as initialised), not trained on anything; frozen"
            )
        return "EfficientNet-Lite0 trained on ImageNet-1k (weights from its package), frozen"
    if weights in (None, "none"):
        return f"pixel model, trained from scratch on {src} (no pretrained part)"
    backbone = cfg.get("backbone", "CLIP")
    what = "EfficientNet-Lite0 encoder" if backbone == _EFFNET else f"CLIP tower {backbone}"
    if weights == "random":
        init = "BatchNorm statistics as initialised" if backbone == _EFFNET else "open_clip init"
        return (
            f"{what} with RANDOM weights (not pretrained; {init}), frozen; "
            f"its CNN head trained on {src}"
        )
    label = "ImageNet-1k" if weights == "imagenet" else f"pretrained weights '{weights}'"
    return f"{what} with {label}, frozen; its CNN head trained on {src}"


def _architecture(config: Mapping[str, Any]) -> str:
    fam, depth = config.get("source_family"), config.get("depth")
    if fam == _EFFNET:
        return "EfficientNet-Lite0, the whole ImageNet classifier (1000 classes, 4.65 M parameters)"
    if fam == "clip-cnn":
        enc = config.get("backbone")
        what = "EfficientNet-Lite0 (its stride-16 feature map)" if enc == _EFFNET else f"{enc}"
        return f"frozen encoder {what} + trainable CNN head of depth {depth}"
    return {
        "cnn": f"pixel CNN, depth {depth} (3×3 conv + ReLU blocks), width {config.get('width')}",
        "mlp": f"pixel MLP, depth {depth}, width {config.get('width')}",
    }.get(str(fam), str(fam))


def source_card_rows(source: Result, config: Mapping[str, Any]) -> list[dict[str, str]]:
    """The source model card as (property, value) rows."""
    s = config.get("source_size")
    rows = [
        ("model", _architecture(config)),
        ("weights", weights_description(source.get("weights"), config)),
    ]
    if config.get("source_family") == _EFFNET:
        native = source.get("native_test_acc")
        rows += [
            ("source input", f"{s}×{s} (the network is fully convolutional: it runs at this size)"),
            (
                "source accuracy",
                f"top-1 {pct(source.get('source_test_acc'))} at {s}×{s} · "
                f"{pct(native)} at 224×224, on {source.get('evaluated_on') or '—'}",
            ),
            ("parameters", f"{fmt(source.get('n_params_frozen'))} frozen, none trained here"),
        ]
        return [{"property": a, "value": b} for a, b in rows]
    rows += [
        (
            "source data",
            f"{config.get('source_data')} at {s}×{s}, {config.get('source_per_class')} images "
            "per class",
        ),
        (
            "source accuracy",
            f"test {pct(source.get('source_test_acc'))} · "
            f"train {pct(source.get('source_train_acc'))}",
        ),
        (
            "parameters",
            f"{fmt(source.get('n_params_trainable'))} trained · "
            f"{fmt(source.get('n_params_frozen'))} frozen encoder",
        ),
        (
            "training",
            f"{source.get('epochs_run')} of at most {config.get('source_epochs')} epochs, "
            f"{duration(source.get('seconds'))}",
        ),
    ]
    return [{"property": a, "value": b} for a, b in rows]
