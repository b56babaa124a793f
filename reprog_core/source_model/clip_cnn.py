"""``clip-cnn``: a frozen pretrained image encoder whose spatial features feed a trainable CNN head.

This is the paper's source model: CLIP (here: any frozen encoder of ``encoders.py``, an open_clip
tower or the ImageNet EfficientNet-Lite0) as a feature extractor followed by a CNN of depth L.
x (N, 3, s, s) in [0, 1] -> encoder feature map (N, C, h, w) -> head -> logits (N, c_S).
"""

from __future__ import annotations

import torch
from torch import nn

from reprog_core.config import ExperimentConfig
from reprog_core.source_model.encoders import load_encoder
from reprog_core.source_model.pixel import ConvStack


class ClipCNN(nn.Module):
    """Frozen ``backbone`` (the encoder) followed by a trainable ``ConvStack`` head."""

    def __init__(self, backbone: nn.Module, head: ConvStack, input_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.input_size = input_size

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, n_classes: int, device=None) -> ClipCNN:
        backbone = load_encoder(
            cfg.backbone, cfg.weights, input_size=cfg.source_size, device=device, seed=cfg.seed
        )
        c = backbone.feature_shape[0]
        head = ConvStack(
            c, cfg.depth, cfg.width, n_classes, cfg.ntk_init, pool=min(4, backbone.feature_shape[1])
        )
        return cls(backbone, head, cfg.source_size)

    @property
    def weights_label(self) -> str:
        return self.backbone.weights_label

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
