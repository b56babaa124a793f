"""The frozen encoders a ``clip-cnn`` head can sit on, behind one set of names.

``backbone`` is either ``efficientnet-lite0`` (ImageNet-pretrained, from its package:
``efficientnet.py``; weights 'imagenet' or 'random') or an open_clip model (``clip/``: weights
'random', a pretrained tag, a named checkpoint, or a file). The CLI, the URL checks and the
sidebar ask here; each answer comes from the module that owns that encoder.
"""

from __future__ import annotations

import torch

from reprog_core.source_model import clip, efficientnet


def is_efficientnet(name: str) -> bool:
    return name == efficientnet.NAME


def list_encoders() -> list[str]:
    """Encoder names to offer: the pretrained EfficientNet first, then open_clip's."""
    return [efficientnet.NAME, *clip.list_backbones()]


def encoder_weight_tags(name: str) -> list[str]:
    """The named weights of encoder ``name`` besides 'random' (ImageNet for the EfficientNet)."""
    if is_efficientnet(name):
        return [w for w in efficientnet.WEIGHTS if w != "random"]
    return clip.list_weight_tags(name)


def check_encoder(name: str) -> None:
    """``clip.BackboneError`` unless ``name`` is an encoder a head can sit on."""
    if not is_efficientnet(name):
        clip.check_backbone(name)


def check_encoder_weights(name: str, weights: str, *, allow_paths: bool) -> str:
    """What ``weights`` is for encoder ``name`` ('random', 'tag', 'named', 'file'); raises
    ``clip.BackboneWeightsError`` (one line, no server path) when it cannot be used."""
    if is_efficientnet(name):
        if weights not in efficientnet.WEIGHTS:
            raise clip.BackboneWeightsError(
                f"weights of {name} must be one of {list(efficientnet.WEIGHTS)}, got {weights!r}"
            )
        return "random" if weights == "random" else "tag"
    return clip.check_weights(name, weights, allow_paths=allow_paths)


def load_encoder(
    name: str, weights: str, *, input_size: int, device: torch.device | str | None, seed: int
) -> torch.nn.Module:
    """The frozen encoder: x (N, 3, s, s) in [0, 1] -> features (N, C, h, w)."""
    if is_efficientnet(name):
        enc = efficientnet.EfficientNetEncoder(input_size, weights, seed=seed)
        return enc.to(device) if device is not None else enc
    return clip.load_backbone(name, weights, device=device, seed=seed)
