"""The source model in words: how its weights came to be, and its model card."""

from __future__ import annotations

from reprog_core.config import ExperimentConfig
from reprog_core.figures.theme import duration, fmt, pct
from reprog_core.results import SourceResult

_EFFNET = "efficientnet-lite0"


def weights_description(weights: str | None, config: ExperimentConfig | None = None) -> str:
    """How the source model's weights came to be, in words (``weights``: the weights label)."""
    src = config.source_data if config is not None else "the source data"
    family = config.source_family if config is not None else None
    if family == _EFFNET:
        if weights == "random":
            return (
                "EfficientNet-Lite0 with RANDOM weights (the architecture's seeded init, BatchNorm "
                "statistics as initialised), not trained on anything; frozen"
            )
        return "EfficientNet-Lite0 trained on ImageNet-1k (weights from its package), frozen"
    if weights in (None, "none"):
        return f"pixel model, trained from scratch on {src} (no pretrained part)"
    backbone = config.backbone if config is not None else "CLIP"
    what = "EfficientNet-Lite0 encoder" if backbone == _EFFNET else f"CLIP tower {backbone}"
    if weights == "random":
        init = "BatchNorm statistics as initialised" if backbone == _EFFNET else "open_clip init"
        return (
            f"{what} with RANDOM weights (not pretrained; {init}), frozen; "
            f"its CNN head trained on {src}"
        )
    label = "ImageNet-1k" if weights == "imagenet" else f"pretrained weights '{weights}'"
    return f"{what} with {label}, frozen; its CNN head trained on {src}"


def _architecture(config: ExperimentConfig) -> str:
    fam, depth = config.source_family, config.depth
    if fam == _EFFNET:
        return "EfficientNet-Lite0, the whole ImageNet classifier (1000 classes, 4.65 M parameters)"
    if fam == "clip-cnn":
        enc = config.backbone
        what = "EfficientNet-Lite0 (its stride-16 feature map)" if enc == _EFFNET else f"{enc}"
        return f"frozen encoder {what} + trainable CNN head of depth {depth}"
    return {
        "cnn": f"pixel CNN, depth {depth} (3×3 conv + ReLU blocks), width {config.width}",
        "mlp": f"pixel MLP, depth {depth}, width {config.width}",
    }.get(fam, fam)


def source_card_rows(source: SourceResult, config: ExperimentConfig) -> list[dict[str, str]]:
    """The source model card as (property, value) rows. ``config``: the experiment's config
    (``ExperimentRecord.config``; not ``source.config``, which holds only the source fields)."""
    s = config.source_size
    rows = [
        ("model", _architecture(config)),
        ("weights", weights_description(source.weights, config)),
    ]
    if config.source_family == _EFFNET:
        native = source.native_test_acc
        rows += [
            ("source input", f"{s}×{s} (the network is fully convolutional: it runs at this size)"),
            (
                "source accuracy",
                f"top-1 {pct(source.source_test_acc)} at {s}×{s} · "
                f"{pct(native)} at 224×224, on {source.evaluated_on or '—'}",
            ),
            ("parameters", f"{fmt(source.n_params_frozen)} frozen, none trained here"),
        ]
        return [{"property": a, "value": b} for a, b in rows]
    rows += [
        (
            "source data",
            f"{config.source_data} at {s}×{s}, {config.source_per_class} images per class",
        ),
        (
            "source accuracy",
            f"test {pct(source.source_test_acc)} · train {pct(source.source_train_acc)}",
        ),
        (
            "parameters",
            f"{fmt(source.n_params_trainable)} trained · "
            f"{fmt(source.n_params_frozen)} frozen encoder",
        ),
        (
            "training",
            f"{source.epochs_run} of at most {config.source_epochs} epochs, "
            f"{duration(source.seconds)}",
        ),
    ]
    return [{"property": a, "value": b} for a, b in rows]
