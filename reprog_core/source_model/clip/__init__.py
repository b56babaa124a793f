"""The frozen open_clip image encoder of ``clip-cnn``: weights from a tag, a file, or random init.

The paper's source model is CLIP used as a frozen feature extractor, followed by a trainable CNN
head (``source_model/clip_cnn.py``). This package owns the frozen part:

    x (N, 3, s, s) in [0, 1] --resize to the native size, normalise--> open_clip image tower
        --> spatial features (N, C, h, w)

Files: ``registry.py`` (which open_clip models: names, the tiny test configs, the errors),
``tower.py`` (``FrozenBackbone``: the tower as a feature extractor), ``weights.py`` (what a
``weights`` string means, checked without loading: random, tag, named checkpoint, path),
``loading.py`` (``load_backbone``: tag / file / random), ``offline.py`` (can weights be
downloaded now), ``checkpoints.py`` (writing and diagnosing checkpoint files), ``features.py``
(the frozen features of a data set, cached on disk), ``_util.py`` (shared small helpers).
"""

from reprog_core.source_model.clip.checkpoints import save_checkpoint
from reprog_core.source_model.clip.features import backbone_features
from reprog_core.source_model.clip.loading import load_backbone
from reprog_core.source_model.clip.registry import (
    CURATED_BACKBONES,
    TINY_CONFIGS,
    BackboneError,
    BackboneWeightsError,
    check_backbone,
    list_backbones,
    list_weight_tags,
    register_tiny_configs,
)
from reprog_core.source_model.clip.tower import FEATURE_VERSION, FrozenBackbone
from reprog_core.source_model.clip.weights import (
    WEIGHTS_DIR_ENV,
    check_weights,
    is_checkpoint_name,
    list_named_checkpoints,
    named_checkpoint,
    weights_dir,
)

__all__ = [
    "CURATED_BACKBONES",
    "FEATURE_VERSION",
    "TINY_CONFIGS",
    "WEIGHTS_DIR_ENV",
    "BackboneError",
    "BackboneWeightsError",
    "FrozenBackbone",
    "backbone_features",
    "check_backbone",
    "check_weights",
    "is_checkpoint_name",
    "list_backbones",
    "list_named_checkpoints",
    "list_weight_tags",
    "load_backbone",
    "named_checkpoint",
    "register_tiny_configs",
    "save_checkpoint",
    "weights_dir",
]
