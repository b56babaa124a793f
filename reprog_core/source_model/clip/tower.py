"""The frozen open_clip image tower of ``clip-cnn``, as a module that returns spatial features.

    x (N, 3, s, s) in [0, 1] --resize to the native size, normalise--> open_clip image tower
        --> spatial features (N, C, h, w)

* ViT towers: the token grid of the last block (class token dropped), after the tower's final
  LayerNorm (``ln_post``, applied per token as CLIP does before pooling): C = width,
  h x w = the patch grid.
* ModifiedResNet towers (RN50, ...): the ``layer4`` feature map, before attention pooling:
  C = 32 * width, h = w = native size / 32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reprog_core._compat import import_open_clip
from reprog_core.source_model.clip.registry import BackboneError

# Bump when what the features mean changes for the same model and weights (which layer, which
# normalisation, resizing): it is part of every feature cache key.
FEATURE_VERSION = "1"


class FrozenBackbone(nn.Module):
    """A frozen open_clip image tower that returns spatial features.

    ``forward(x)``: x (N, 3, H, W) float in [0, 1] -> features (N, C, h, w) = ``feature_shape``.
    Inputs of another size are resized (bilinear, differentiable) to ``native_size`` first, then
    normalised with the model's mean/std. Differentiable w.r.t. x, and works under ``torch.func``
    (``functional_call`` / ``vmap`` / ``jacrev``): no in-place ops on the input, no data-dependent
    branches (only shape-dependent ones).

    All parameters have ``requires_grad=False`` and the tower stays in eval mode even when a parent
    module calls ``.train()``: BatchNorm statistics (ResNet towers) must not drift.

    Attributes: ``name`` (open_clip model name), ``weights_label`` ('random', the tag, or the
    checkpoint's absolute path), ``weights_kind`` ('random' | 'tag' | 'file'), ``seed`` (random init
    only), ``weights_sha256`` (files only), ``native_size`` (s), ``feature_shape`` (C, h, w),
    ``n_params`` (parameters of the whole image tower, including its unused pooling head).
    """

    def __init__(
        self,
        visual: nn.Module,
        *,
        name: str,
        weights_label: str,
        weights_kind: str,
        seed: int | None = None,
        weights_sha256: str | None = None,
    ) -> None:
        super().__init__()
        open_clip = import_open_clip()
        from open_clip.modified_resnet import ModifiedResNet
        from open_clip.transformer import VisionTransformer

        if isinstance(visual, VisionTransformer):
            self.tower_kind = "vit"
        elif isinstance(visual, ModifiedResNet):
            self.tower_kind = "resnet"
        else:
            raise BackboneError(
                f"backbone {name!r} has a {type(visual).__name__} image tower; clip-cnn supports "
                "open_clip's VisionTransformer and ModifiedResNet towers"
            )
        self.visual = visual
        self.name = name
        self.weights_label = weights_label
        self.weights_kind = weights_kind
        self.seed = seed
        self.weights_sha256 = weights_sha256

        pp = open_clip.get_model_preprocess_cfg(visual)
        size = pp.get("size", getattr(visual, "image_size", 224))
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        if h != w:
            raise BackboneError(f"backbone {name!r} has a non-square input size {h}x{w}")
        self.native_size: int = int(h)
        self.mean_std = (tuple(map(float, pp["mean"])), tuple(map(float, pp["std"])))
        # Non-persistent: the state_dict stays exactly the CLIP model's 'visual.*' keys.
        dev = next(visual.parameters()).device
        self.register_buffer(
            "mean", torch.tensor(self.mean_std[0], device=dev).view(1, 3, 1, 1), False
        )
        self.register_buffer(
            "std", torch.tensor(self.mean_std[1], device=dev).view(1, 3, 1, 1), False
        )
        # CoCa-style attentional pooling makes ln_post act on pooled queries, not on tokens.
        self._ln_tokens = self.tower_kind == "vit" and getattr(visual, "attn_pool", None) is None

        self.requires_grad_(False)
        self.train(False)
        self.n_params = sum(p.numel() for p in self.visual.parameters())
        with torch.no_grad():
            probe = torch.zeros(1, 3, self.native_size, self.native_size, device=self.mean.device)
            c, fh, fw = self(probe).shape[1:]
        self.feature_shape: tuple[int, int, int] = (int(c), int(fh), int(fw))

    def train(self, mode: bool = True) -> FrozenBackbone:
        """Always eval: the frozen tower ignores ``mode`` (see the class docstring)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, H, W) float in [0, 1] -> spatial features (N, C, h, w), float32, on the
        tower's device."""
        s = self.native_size
        # The tower's device and dtype: target images often live on the CPU (differentiable).
        x = x.to(device=self.mean.device, dtype=self.mean.dtype)
        if x.shape[-2:] != (s, s):
            # Anti-aliasing only when shrinking; it is differentiable and has a vmap rule.
            shrink = x.shape[-1] > s or x.shape[-2] > s
            x = F.interpolate(
                x, size=(s, s), mode="bilinear", align_corners=False, antialias=shrink
            )
        x = (x - self.mean) / self.std
        out = self.visual.forward_intermediates(
            x,
            indices=1,  # the last block (ViT) / the last stage, layer4 (ResNet)
            normalize_intermediates=self._ln_tokens,
            intermediates_only=True,
        )
        # Both towers return NCHW; the ViT drops its class token first.
        return out["image_intermediates"][-1]

    def cache_identity(self) -> dict[str, Any]:
        """Everything besides the input images that changes the features (for cache keys)."""
        ident: dict[str, Any] = {
            "model": self.name,
            "kind": self.weights_kind,
            "native_size": self.native_size,
            "mean_std": self.mean_std,
            "feature_version": FEATURE_VERSION,
            "dtype": str(self.mean.dtype),
        }
        if self.weights_kind == "random":
            ident["seed"] = self.seed
        elif self.weights_kind == "tag":
            ident["tag"] = self.weights_label
        else:  # a file: its content matters, not where it lies
            ident["sha256"] = self.weights_sha256
        return ident

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, weights={self.weights_label!r}, native_size={self.native_size}, "
            f"feature_shape={self.feature_shape}, n_params={self.n_params}"
        )
