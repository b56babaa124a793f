"""The reprogrammed model f_T = b ∘ f_S ∘ a_θ, apart from any training of it.

a_θ is the input transformation (``input_transform.py``: θ its parameters), f_S the frozen source
model, b the output label mapping (``label_mapping.py``). The NTK engine (``ntk/``) takes kernels
of this model, the fit (``fit.py``) trains θ (and a learned b) on a copy of it; neither needs the
other.

Shapes: target images x (N, C, H, W) -> a_θ(x) source inputs (N, 3, s, s) -> f_S source logits
(N, c_S) -> b target logits (N, c_T).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from reprog_core.config import ExperimentConfig
from reprog_core.input_transform import InputTransform, build_transform
from reprog_core.label_mapping import build_mapping


class ReprogrammedModel(nn.Module):
    """f_T = mapping o source o transform. x (N, C, H, W) target images -> (N, c_T) logits."""

    def __init__(self, source: nn.Module, transform: InputTransform, mapping: nn.Module) -> None:
        super().__init__()
        self.source, self.transform, self.mapping = source, transform, mapping

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mapping(self.source(self.transform(x)))

    def trainable_copy(self) -> ReprogrammedModel:
        """A model with copies of theta and the mapping around the same frozen source: what a
        fit trains, so that the model at theta_0 (and the kernel taken at it) stays as it was."""
        return ReprogrammedModel(
            self.source, copy.deepcopy(self.transform), copy.deepcopy(self.mapping)
        )


def build_reprogrammed(
    cfg: ExperimentConfig, source: nn.Module, n_target: int, n_source: int
) -> ReprogrammedModel:
    """f_T for ``cfg``'s transform (at its initial θ) and mapping, with c_T = ``n_target`` and
    c_S = ``n_source``, on the source model's device."""
    transform = build_transform(cfg.transform, cfg.source_size, cfg.target_size)
    mapping = build_mapping(cfg.mapping, n_source, n_target)
    device = next(source.parameters()).device
    return ReprogrammedModel(source, transform, mapping).to(device)
