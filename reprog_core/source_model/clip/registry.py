"""Which open_clip models ``clip-cnn`` can use: the registry, the tiny test configs, the errors.

``register_tiny_configs()`` adds two tiny model configs (``tiny-vit``, ``tiny-rn``) that run in
about 0.01 s on a CPU: for tests and quick demos. Their text towers are minimal stubs (never used
here, but open_clip's configs and checkpoints are whole CLIP models). ``model_config(name)`` is
the one check of a model name: known to open_clip, with its own ViT or ModifiedResNet image tower.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reprog_core._compat import import_open_clip
from reprog_core.runtime import cache_dir
from reprog_core.source_model.clip._util import atomic_write

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    # ViT: 32x32 input, 8x8 patches -> a 4x4 token grid of width 64; 2 blocks of 2 heads.
    "tiny-vit": {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": 32,
            "patch_size": 8,
            "width": 64,
            "layers": 2,
            "head_width": 32,
        },
        "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 32, "heads": 2, "layers": 1},
    },
    # ModifiedResNet: one bottleneck per stage, stem width 8 -> layer4 gives 256 x 2 x 2 at 64 px.
    "tiny-rn": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 32, "heads": 2, "layers": 1},
    },
}

# Real open_clip models worth offering first: small to large, both tower kinds. Any other open_clip
# model with a native ViT or ModifiedResNet image tower loads too.
CURATED_BACKBONES: tuple[str, ...] = ("ViT-S-32", "ViT-B-32", "ViT-B-16", "RN50", "RN101")


class BackboneError(ValueError):
    """A backbone that cannot be built: unknown or unsupported model name."""


class BackboneWeightsError(BackboneError):
    """Weights that cannot be loaded; the message names the source and how to supply weights."""


def register_tiny_configs() -> list[str]:
    """Add the ``TINY_CONFIGS`` to open_clip's model registry (idempotent); returns their names.

    open_clip 3.3.0 registers configs only from JSON files (``add_model_config(path)`` rescans
    them), so the configs are written to ``<cache>/open_clip_configs/`` first.
    """
    open_clip = import_open_clip()
    missing = [n for n in TINY_CONFIGS if n not in open_clip.list_models()]
    if missing:
        folder = cache_dir("open_clip_configs")
        for name in missing:
            path = folder / f"{name}.json"
            text = json.dumps(TINY_CONFIGS[name], indent=2, sort_keys=True)
            if not path.is_file() or path.read_text() != text:
                atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text))
            # One file per call: adding the folder would also pick up stray files left there.
            open_clip.add_model_config(path)
    return list(TINY_CONFIGS)


def list_backbones() -> list[str]:
    """Model names to offer: the tiny test configs first, then a short curated list of real ones."""
    open_clip = import_open_clip()
    register_tiny_configs()
    known = set(open_clip.list_models())
    return [*TINY_CONFIGS, *(n for n in CURATED_BACKBONES if n in known)]


def list_weight_tags(name: str) -> list[str]:
    """open_clip's pretrained tags for ``name`` (empty for the tiny configs)."""
    model_config(name)
    return list(import_open_clip().list_pretrained_tags_by_model(name))


def check_backbone(name: str) -> None:
    """Raise ``BackboneError`` unless ``name`` is a model of the registry that clip-cnn supports
    (no file is read beyond open_clip's bundled configs)."""
    model_config(name)


def model_config(name: str) -> dict[str, Any]:
    """The open_clip config of ``name``; ``BackboneError`` if unknown or its tower unsupported."""
    open_clip = import_open_clip()
    register_tiny_configs()
    # 'hf-hub:' / 'local-dir:' names would fetch configs (and weights) from elsewhere: not here.
    plain = isinstance(name, str) and ":" not in name
    cfg = open_clip.get_model_config(name) if plain else None
    if cfg is None:
        raise BackboneError(
            f"unknown backbone {name!r}: choose one of {list_backbones()} "
            f"(or any of open_clip's {len(open_clip.list_models())} models with a ViT or "
            "ModifiedResNet image tower: open_clip.list_models())"
        )
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if vision.get("timm_model_name") or text.get("hf_model_name") or "multimodal_cfg" in cfg:
        # timm towers give no uniform spatial map here, and HF text towers fetch their config
        # from the hub even for random init, which fails offline.
        raise BackboneError(
            f"backbone {name!r} is not supported: clip-cnn needs an open_clip model with its own "
            f"ViT or ModifiedResNet image tower and text tower; try one of {list_backbones()}"
        )
    return cfg
