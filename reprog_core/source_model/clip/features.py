"""The frozen features of a whole data set, computed once and reused from disk
(``cache_dir('features')``), keyed by the tower's identity and the images themselves.

A stored file carries the sha256 of its content (the features' dtype, shape and bytes, and the
tower's identity). It is read back only from a regular file (no link is followed, no FIFO
blocks) and used only when that checksum matches: a file that was changed on disk (samples
permuted, bytes flipped), has no checksum (written before checksums) or does not load is
recomputed and replaced, with a warning."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import stat
from pathlib import Path

import torch

from reprog_core.runtime import cache_dir
from reprog_core.source_model.clip._util import atomic_write, torch_save
from reprog_core.source_model.clip.tower import FrozenBackbone

log = logging.getLogger(__name__)


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
    identity = json.dumps(backbone.cache_identity())
    if cache_key is not None:
        path = _feature_path(backbone, x, cache_key)
        try:
            stored = _read_stored(path, identity, (len(x), *backbone.feature_shape))
        except FileNotFoundError:
            stored = None
        except Exception as exc:  # noqa: BLE001 - any unusable file means: recompute
            log.warning("stored features %s are not usable (%s); recomputing", path.name, exc)
            stored = None
        if stored is not None:
            return stored.to(x.device)

    dev = backbone.mean.device
    chunks = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            chunks.append(backbone(x[i : i + batch_size].to(dev)).float().cpu())
    feats = torch.cat(chunks) if chunks else torch.empty(0, *backbone.feature_shape)

    if path is not None:
        feats = feats.contiguous()
        payload = {
            "features": feats,
            "identity": identity,
            "sha256": _content_digest(feats, identity),
        }
        atomic_write(path, lambda tmp: torch_save(payload, tmp))
    return feats.to(x.device)


def _read_stored(path: Path, identity: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The features stored at ``path``, verified; ``FileNotFoundError`` when there are none,
    ``ValueError`` (saying why) when the file is not usable."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:  # a link (ELOOP), unreadable
        raise ValueError(f"cannot be opened as a plain file: {exc.strerror}") from None
    st = os.fstat(fd)
    bound = 4 * math.prod(shape) + 2**20  # float32 features and the archive's own records
    if not stat.S_ISREG(st.st_mode) or st.st_size > bound:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"{st.st_size} bytes"
        raise ValueError(f"{what}, not a feature file of shape {shape}")
    with os.fdopen(fd, "rb") as f:
        stored = torch.load(f, map_location="cpu", weights_only=True)
    if not isinstance(stored, dict) or not isinstance(stored.get("features"), torch.Tensor):
        raise ValueError("not a stored feature file")
    if "sha256" not in stored:
        raise ValueError("no checksum (written by an older version)")
    feats = stored["features"]
    if stored.get("identity") != identity or tuple(feats.shape) != shape:
        raise ValueError("written for another tower or other images")
    if _content_digest(feats, identity) != stored["sha256"]:
        raise ValueError("checksum mismatch: the file was changed or corrupted on disk")
    return feats


def _content_digest(feats: torch.Tensor, identity: str) -> str:
    """sha256 over the tower's identity and the features' dtype, shape and bytes."""
    t = feats.detach().cpu().contiguous()
    h = hashlib.sha256()
    h.update(f"{identity}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _feature_path(backbone: FrozenBackbone, x: torch.Tensor, cache_key: str) -> Path:
    h = hashlib.sha256()
    h.update(json.dumps([cache_key, backbone.cache_identity()], sort_keys=True).encode())
    # The images themselves: a caller's key that forgets a subsampling seed must not collide.
    h.update(str((tuple(x.shape), str(x.dtype))).encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{cache_key}-{backbone.name}")[:80]
    return cache_dir("features") / f"{slug}-{h.hexdigest()[:20]}.pt"
