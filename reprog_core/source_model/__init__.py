"""Source models f_S: pixel ``cnn`` / ``mlp``, and ``clip-cnn`` (frozen open_clip encoder + head).

``build_source_model`` makes an untrained model from a config; ``training.load_or_train_source``
trains it on the source data set once and reuses the stored result.
"""

from __future__ import annotations

from torch import nn

from reprog_core.config import ExperimentConfig, SourceFamily
from reprog_core.source_model.pixel import ConvStack, PixelCNN, PixelMLP, count_params


def build_source_model(cfg: ExperimentConfig, n_classes: int, device=None) -> nn.Module:
    """An untrained source model for ``cfg`` (seeded by the caller). x (N, 3, s, s) in [0, 1]."""
    if cfg.source_family == SourceFamily.CNN.value:
        return PixelCNN(cfg.source_size, cfg.depth, cfg.width, n_classes, cfg.ntk_init)
    if cfg.source_family == SourceFamily.MLP.value:
        return PixelMLP(cfg.source_size, cfg.depth, cfg.width, n_classes, cfg.ntk_init)
    from reprog_core.source_model.clip_cnn import ClipCNN  # lazy: only clip-cnn needs open_clip

    return ClipCNN.from_config(cfg, n_classes, device=device)


__all__ = ["ConvStack", "PixelCNN", "PixelMLP", "build_source_model", "count_params"]
