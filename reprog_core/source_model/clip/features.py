"""The frozen features of a whole data set, computed once and reused from disk
(``cache_dir('features')``), keyed by the tower's identity and the images themselves."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch

from reprog_core.runtime import cache_dir
from reprog_core.source_model.clip._util import atomic_write, torch_save
from reprog_core.source_model.clip.tower import FrozenBackbone


def backbone_features(
    backbone: FrozenBackbone,
    x: torch.Tensor,
    *,
    cache_key: str | None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Frozen features of a whole data set, computed once and reused from disk.

    x (N, 3, H, W) float in [0, 1] (any device) -> (N, C, h, w) float on x's device, without grad
    (the features are constants for the head). With ``cache_key`` (names the data, e.g.
    'cifar10-train-32'), the result is stored under ``cache_dir('features')``; the file name also
    hashes ``backbone.cache_identity()`` (model, weights, seed or file content), the input's
    shape and content, and ``FEATURE_VERSION``, so a stale file is never read back.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"x must be (N, 3, H, W), got {tuple(x.shape)}")
    path = None
    if cache_key is not None:
        path = _feature_path(backbone, x, cache_key)
        if path.is_file():
            try:
                stored = torch.load(path, map_location="cpu", weights_only=True)
                feats = stored["features"]
                if tuple(feats.shape) == (len(x), *backbone.feature_shape):
                    return feats.to(x.device)
            except Exception:
                pass  # unreadable: recompute and overwrite below

    dev = backbone.mean.device
    chunks = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            chunks.append(backbone(x[i : i + batch_size].to(dev)).float().cpu())
    feats = torch.cat(chunks) if chunks else torch.empty(0, *backbone.feature_shape)

    if path is not None:
        payload = {"features": feats, "identity": json.dumps(backbone.cache_identity())}
        atomic_write(path, lambda tmp: torch_save(payload, tmp))
    return feats.to(x.device)


def _feature_path(backbone: FrozenBackbone, x: torch.Tensor, cache_key: str) -> Path:
    h = hashlib.sha256()
    h.update(json.dumps([cache_key, backbone.cache_identity()], sort_keys=True).encode())
    # The images themselves: a caller's key that forgets a subsampling seed must not collide.
    h.update(str((tuple(x.shape), str(x.dtype))).encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{cache_key}-{backbone.name}")[:80]
    return cache_dir("features") / f"{slug}-{h.hexdigest()[:20]}.pt"
