"""Source models f_S: the ImageNet ``efficientnet-lite0`` classifier (pretrained, used as it is),
``clip-cnn`` (a frozen pretrained encoder + a CNN head trained on the source data), and pixel
``cnn`` / ``mlp`` (trained from scratch).

``build_source_model`` makes the model for a config (untrained where it is trained here);
``training.load_or_train_source`` trains it on the source data set once and reuses the stored
result, or loads and checks the pretrained classifier.
"""

from __future__ import annotations

from torch import nn

from reprog_core.config import PRETRAINED_CLASSIFIERS, ExperimentConfig, SourceFamily
from reprog_core.source_model.pixel import ConvStack, PixelCNN, PixelMLP, count_params


def n_source_classes(cfg: ExperimentConfig) -> int:
    """c_S: the source model's number of outputs (1000 for an ImageNet classifier, else the
    source data set's classes)."""
    if cfg.is_pretrained_classifier:
        return PRETRAINED_CLASSIFIERS[cfg.source_family]
    from reprog_core import data  # the registry: only sources trained here need it

    return data.dataset_spec(cfg.source_data).n_classes


def build_source_model(cfg: ExperimentConfig, n_classes: int, device=None) -> nn.Module:
    """The source model for ``cfg`` (seeded by the caller; untrained where it is trained here).
    x (N, 3, s, s) in [0, 1] -> logits (N, n_classes)."""
    if cfg.source_family == SourceFamily.CNN.value:
        return PixelCNN(cfg.source_size, cfg.depth, cfg.width, n_classes, cfg.ntk_init)
    if cfg.source_family == SourceFamily.MLP.value:
        return PixelMLP(cfg.source_size, cfg.depth, cfg.width, n_classes, cfg.ntk_init)
    if cfg.source_family == SourceFamily.EFFICIENTNET_LITE0.value:
        from reprog_core.source_model.efficientnet import EfficientNetLite0  # lazy: timm

        model = EfficientNetLite0(cfg.source_size, cfg.weights, seed=cfg.seed)
        return model.to(device) if device is not None else model
    from reprog_core.source_model.clip_cnn import ClipCNN  # lazy: only clip-cnn needs open_clip

    return ClipCNN.from_config(cfg, n_classes, device=device)


__all__ = [
    "ConvStack",
    "PixelCNN",
    "PixelMLP",
    "build_source_model",
    "count_params",
    "n_source_classes",
]
