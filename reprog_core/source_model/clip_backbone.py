"""The frozen open_clip image encoder of ``clip-cnn``: weights from a tag, a file, or random init.

The paper's source model is CLIP used as a frozen feature extractor, followed by a trainable CNN
head (``clip_cnn.py``). This module owns the frozen part:

    x (N, 3, s, s) in [0, 1] --resize to the native size, normalise--> open_clip image tower
        --> spatial features (N, C, h, w)

* ViT towers: the token grid of the last block (class token dropped), after the tower's final
  LayerNorm (``ln_post``, applied per token as CLIP does before pooling): C = width,
  h x w = the patch grid.
* ModifiedResNet towers (RN50, ...): the ``layer4`` feature map, before attention pooling:
  C = 32 * width, h = w = native size / 32.

Weights (``load_backbone(name, weights)``):

* ``'random'``: open_clip's own initialisation, seeded by ``seed``;
* a pretrained tag (``list_weight_tags(name)``): loaded by ``open_clip.create_model`` from the
  Hugging Face cache, downloading first where a network exists. Offline and not cached, it fails
  at once with a ``BackboneWeightsError`` that says how to supply weights;
* the *name* of a checkpoint file in the operator's weights folder (``$REPROG_WEIGHTS_DIR``,
  see ``list_named_checkpoints``): the only kind of file a dashboard URL may name;
* a path to a checkpoint file (``.pt`` / ``.bin`` / ``.pth`` state_dict, ``.safetensors``, or
  ``{'state_dict': {'module.*': ...}}``), loaded through ``open_clip.create_model(name,
  pretrained=path)`` - open_clip's own loading path, so any file open_clip reads works here.
  Paths are for local users (the CLI); ``check_weights(..., allow_paths=False)`` is the check for
  untrusted input (URLs), which never touches the file system beyond the weights folder.

``register_tiny_configs()`` adds two tiny model configs (``tiny-vit``, ``tiny-rn``) that run in
about 0.01 s on a CPU: for tests and quick demos. Their text towers are minimal stubs (never used
here, but open_clip's configs and checkpoints are whole CLIP models).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from reprog_core._compat import import_open_clip
from reprog_core.runtime import cache_dir, resolve_device

# Bump when what the features mean changes for the same model and weights (which layer, which
# normalisation, resizing): it is part of every feature cache key.
FEATURE_VERSION = "1"

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

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
WEIGHTS_DIR_ENV = "REPROG_WEIGHTS_DIR"  # the operator's folder of named checkpoints
# A checkpoint *name*: one plain file name, no folder part, not hidden, nothing to interpret.
_CHECKPOINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
OFFLINE_ENVS = ("HF_HUB_OFFLINE", "REPROG_OFFLINE")
PROBE_TIMEOUT_S = 0.5


class BackboneError(ValueError):
    """A backbone that cannot be built: unknown or unsupported model name."""


class BackboneWeightsError(BackboneError):
    """Weights that cannot be loaded; the message names the source and how to supply weights."""


# ----------------------------------------------------------------------------- model registry


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
                _atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text))
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
    _check_model_name(name)
    return list(import_open_clip().list_pretrained_tags_by_model(name))


def check_backbone(name: str) -> None:
    """Raise ``BackboneError`` unless ``name`` is a model of the registry that clip-cnn supports
    (no file is read beyond open_clip's bundled configs)."""
    _check_model_name(name)


def weights_dir() -> Path | None:
    """The operator's folder of named checkpoints (``$REPROG_WEIGHTS_DIR``), or None if unset."""
    raw = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    return Path(raw).expanduser() if raw else None


def is_checkpoint_name(text: str) -> bool:
    """True for a plain checkpoint file name (``vit-s-32-laion.pt``): no folder part, no ``..``,
    not hidden, a checkpoint suffix. Says nothing about whether such a file exists."""
    return (
        isinstance(text, str)
        and _CHECKPOINT_NAME.fullmatch(text) is not None
        and ".." not in text
        and text.lower().endswith(CHECKPOINT_SUFFIXES)
    )


def list_named_checkpoints() -> list[str]:
    """Names of the checkpoint files directly inside ``weights_dir()`` (sorted; empty when the
    folder is unset or unreadable). Only regular files count; nothing is opened."""
    folder = weights_dir()
    if folder is None:
        return []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    names = []
    for e in entries:
        try:
            if is_checkpoint_name(e.name) and e.is_file():
                names.append(e.name)
        except OSError:
            continue
    return sorted(names)


def named_checkpoint(weights: str) -> Path | None:
    """The file of checkpoint name ``weights`` in ``weights_dir()``, or None when it is not one."""
    folder = weights_dir()
    if folder is None or not is_checkpoint_name(weights):
        return None
    return folder / weights if weights in list_named_checkpoints() else None


def check_weights(name: str, weights: str, *, allow_paths: bool) -> str:
    """What ``weights`` is for backbone ``name``: 'random', 'tag', 'named' (a checkpoint in the
    weights folder) or 'file' (a path; only with ``allow_paths``). Nothing is loaded.

    With ``allow_paths=False`` (a URL, a dashboard field) no path is accepted and the file
    system is touched only to list the weights folder, so untrusted text cannot make the server
    open, stat or hash a file of its choosing. Raises ``BackboneWeightsError`` (one line; with
    ``allow_paths=False`` it never names a server path).
    """
    _check_model_name(name)
    if not isinstance(weights, str) or not weights:
        raise BackboneWeightsError("weights must be 'random', a pretrained tag, or a checkpoint")
    if weights == "random":
        return "random"
    if import_open_clip().pretrained.get_pretrained_cfg(name, weights):
        return "tag"
    if named_checkpoint(weights) is not None:
        return "named"
    if allow_paths and _looks_like_path(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "not found"
            raise BackboneWeightsError(f"checkpoint file {what}: {path.resolve()}")
        return "file"
    tags = list_weight_tags(name)
    named = list_named_checkpoints()
    offer = ["'random'"]
    if tags:
        offer.append(f"a pretrained tag of {name} ({', '.join(tags[:8])})")
    if named:
        offer.append(f"a checkpoint of the server's weights folder ({', '.join(named[:8])})")
    elif not allow_paths:
        offer.append(
            f"the name of a checkpoint in the server's weights folder (none: the operator sets "
            f"{WEIGHTS_DIR_ENV})"
        )
    if allow_paths:
        offer.append("a checkpoint file path")
    elif "/" in weights or "\\" in weights or os.sep in weights or weights.startswith((".", "~")):
        raise BackboneWeightsError(
            f"weights must not be a file path here; use {' or '.join(offer)}"
        )
    raise BackboneWeightsError(f"unknown weights {weights!r} for {name}; use {' or '.join(offer)}")


def _check_model_name(name: str) -> dict[str, Any]:
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


# ----------------------------------------------------------------------------- the frozen tower


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


# ----------------------------------------------------------------------------- loading


def load_backbone(
    name: str,
    weights: str = "random",
    device: str | torch.device | None = None,
    *,
    seed: int = 0,
) -> FrozenBackbone:
    """Build the frozen image tower of open_clip model ``name`` with ``weights``.

    ``weights``: 'random' (open_clip's init under ``torch.manual_seed(seed)``; the global RNG is
    left as it was), a pretrained tag of ``name`` (see ``list_weight_tags``), or a path to a
    checkpoint file. ``device``: 'cpu', 'cuda', None/'auto' (CUDA when available).

    Raises ``BackboneError`` for an unknown or unsupported name and ``BackboneWeightsError`` for
    weights that cannot be had: an unknown tag (lists the valid ones), a tag that is neither
    cached nor downloadable (offline: fails at once), a missing or unreadable file.
    """
    cfg = _check_model_name(name)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    open_clip = import_open_clip()
    if not isinstance(weights, str) or not weights:
        raise BackboneWeightsError(
            "weights must be 'random', a pretrained tag, or a checkpoint path"
        )

    if weights == "random":
        with torch.random.fork_rng(devices=[]), _quiet_open_clip():
            torch.manual_seed(seed)
            model = open_clip.create_model(name, pretrained=None, pretrained_text=False)
        return _wrap(
            model, dev, name=name, weights_label="random", weights_kind="random", seed=seed
        )

    tag_cfg = open_clip.pretrained.get_pretrained_cfg(name, weights)
    if tag_cfg:
        tag = weights.lower().replace("-", "_")  # open_clip's canonical spelling of tags
        model = _create_from_tag(name, tag, tag_cfg, cfg)
        return _wrap(model, dev, name=name, weights_label=tag, weights_kind="tag")

    named = named_checkpoint(weights)
    if named is not None:  # a checkpoint of the operator's weights folder, labelled by its name
        return _load_file(name, named, dev, seed=seed, label=weights)

    if not _looks_like_path(weights):
        tags = list_weight_tags(name)
        valid = f"valid tags for {name}: {tags}" if tags else f"{name} has no pretrained tags"
        raise BackboneWeightsError(
            f"unknown weights {weights!r} for {name}: not a pretrained tag and not a checkpoint "
            f"path. {valid}; or use --weights random, or --weights path/to/checkpoint.pt"
        )

    path = Path(weights).expanduser().resolve()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise BackboneWeightsError(
            f"checkpoint file {what}: {path} (from --weights {weights!r}). Give the path of an "
            "open_clip checkpoint (.pt/.bin state_dict, .safetensors, or {'state_dict': ...})"
        )
    return _load_file(name, path, dev, seed=seed, label=str(path))


def _load_file(
    name: str, path: Path, dev: torch.device, *, seed: int, label: str
) -> FrozenBackbone:
    """A checkpoint file through open_clip's loader; ``label`` is what results call it."""
    open_clip = import_open_clip()
    digest = _sha256_file(path)
    try:
        with torch.random.fork_rng(devices=[]), _quiet_open_clip():
            torch.manual_seed(seed)  # the init that the file overwrites; keeps runs repeatable
            model = open_clip.create_model(name, pretrained=str(path), pretrained_text=False)
    except Exception as err:
        raise BackboneWeightsError(
            f"could not load checkpoint {label} into {name}: "
            f"{_diagnose_checkpoint(name, path, err)}"
        ) from err
    return _wrap(
        model, dev, name=name, weights_label=label, weights_kind="file", weights_sha256=digest
    )


def _wrap(model: nn.Module, device: torch.device, **meta: Any) -> FrozenBackbone:
    """Keep only the image tower (the text tower is dropped to save memory) on ``device``."""
    visual = model.visual.to(device)
    del model
    return FrozenBackbone(visual, **meta)


def _create_from_tag(name: str, tag: str, tag_cfg: dict, model_cfg: dict) -> nn.Module:
    """open_clip.create_model(name, pretrained=tag), failing fast when offline and not cached."""
    open_clip = import_open_clip()
    # open_clip only warns when a tag trained with QuickGELU meets a GELU config (e.g. RN50 +
    # 'openai'); the features would be silently wrong, so use the activation the weights expect.
    quick_gelu = bool(tag_cfg.get("quick_gelu", False)) and not model_cfg.get("quick_gelu", False)
    cached = _cached_tag_file(tag_cfg)
    offline_reason = _offline_reason(tag_cfg)
    if offline_reason and not cached:
        raise BackboneWeightsError(
            f"weights {tag!r} for {name} are not in the local cache and cannot be downloaded "
            f"({offline_reason}). Supply weights another way:\n"
            "  --weights path/to/checkpoint.pt   a local open_clip checkpoint (.pt/.bin "
            "state_dict, .safetensors, or {'state_dict': ...});\n"
            f"  run once where a network exists, so that tag {tag!r} downloads into the Hugging "
            "Face cache and loads offline afterwards;\n"
            "  --weights random   random initialisation (results are labelled 'random')."
        )
    try:
        with contextlib.ExitStack() as stack:
            # The init that the tag's weights overwrite must not advance the caller's RNG.
            stack.enter_context(torch.random.fork_rng(devices=[]))
            if offline_reason:
                # Cached, but the hub is unreachable: resolve from the cache without ~46 s of
                # retries. huggingface_hub reads HF_HUB_OFFLINE once at import, so set its flag.
                import huggingface_hub.constants as hf_constants

                stack.enter_context(_patched(hf_constants, "HF_HUB_OFFLINE", True))
            return open_clip.create_model(
                name, pretrained=tag, pretrained_text=False, force_quick_gelu=quick_gelu
            )
    except Exception as err:
        raise BackboneWeightsError(
            f"could not load weights {tag!r} for {name}: {_first_line(err)}. Supply weights with "
            "--weights path/to/checkpoint.pt, or use --weights random (labelled 'random')"
        ) from err


def _cached_tag_file(tag_cfg: dict) -> str | None:
    """Local path of a tag's weights if open_clip would find them without a network, else None.

    Mirrors open_clip.pretrained.download_pretrained: a 'file' entry, else the HF hub (preferring
    the .safetensors alternative), else the URL cache in ~/.cache/clip.
    """
    if tag_cfg.get("file"):
        return tag_cfg["file"] if os.path.isfile(tag_cfg["file"]) else None
    open_clip = import_open_clip()
    hub = tag_cfg.get("hf_hub", "")
    if hub and open_clip.pretrained.has_hf_hub():
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo_id, filename = os.path.split(hub)
        filename = filename or HF_WEIGHTS_NAME
        if filename == HF_WEIGHTS_NAME:
            candidates = [HF_SAFE_WEIGHTS_NAME, filename]
        elif filename.endswith((".bin", ".pth")):
            candidates = [filename[:-4] + ".safetensors", filename]
        else:
            candidates = [filename]
        for fn in candidates:
            hit = try_to_load_from_cache(repo_id=repo_id, filename=fn)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
        return None
    url = tag_cfg.get("url", "")
    if url:
        target = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        return str(target) if target.is_file() else None
    return None


# ----------------------------------------------------------------------------- offline detection

_PROBES: dict[tuple[str, int], tuple[float, bool]] = {}
_PROBE_TTL_S = 60.0


def _env_true(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")


def _offline_reason(tag_cfg: dict | None = None) -> str | None:
    """Why downloads are impossible (an env flag, or the host unreachable), or None when online."""
    for var in OFFLINE_ENVS:
        if _env_true(var):
            return f"{var}=1"
    use_hub = not tag_cfg or (tag_cfg.get("hf_hub") and import_open_clip().pretrained.has_hf_hub())
    url = os.environ.get("HF_ENDPOINT", "https://huggingface.co") if use_hub else tag_cfg["url"]
    parsed = urlparse(url)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    if not _reachable(host, port):
        return f"{host}:{port} is unreachable within {PROBE_TIMEOUT_S} s"
    return None


def _reachable(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """A TCP connect to ``host:port`` within ``timeout`` s, DNS included; cached for a minute.

    The connect runs in a daemon thread because ``socket.create_connection``'s timeout does not
    cover name resolution, which can hang for many seconds on a machine without DNS.
    """
    now = time.monotonic()
    hit = _PROBES.get((host, port))
    if hit and now - hit[0] < _PROBE_TTL_S:
        return hit[1]
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    result = bool(ok)
    _PROBES[(host, port)] = (now, result)
    return result


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    model_or_backbone: nn.Module, path: str | os.PathLike, *, training_layout: bool = False
) -> Path:
    """Write a whole-CLIP checkpoint that ``load_backbone(name, path)`` (open_clip) reads back.

    ``model_or_backbone``: an open_clip CLIP model, or a ``FrozenBackbone`` (its image tower is
    put into a freshly built model of the same name; the text tower of that model is a seeded
    random placeholder, since only the image tower is kept). The format follows the suffix:
    ``.safetensors`` -> safetensors, else ``torch.save`` of the state_dict. ``training_layout``
    writes ``{'state_dict': {'module.' + key: tensor}}``, the layout of open_clip's own training
    script (DDP). Atomic (temp file + rename). Returns the path.
    """
    path = Path(path).expanduser()
    if isinstance(model_or_backbone, FrozenBackbone):
        open_clip = import_open_clip()
        register_tiny_configs()
        with torch.random.fork_rng(devices=[]), _quiet_open_clip():
            torch.manual_seed(model_or_backbone.seed or 0)
            full = open_clip.create_model(model_or_backbone.name, pretrained_text=False)
        full.visual.load_state_dict(model_or_backbone.visual.state_dict())
    elif hasattr(model_or_backbone, "visual"):
        full = model_or_backbone
    else:
        raise TypeError("save_checkpoint needs an open_clip CLIP model or a FrozenBackbone")
    state = {k: v.detach().cpu().contiguous() for k, v in full.state_dict().items()}
    if training_layout:
        state = {"module." + k: v for k, v in state.items()}

    if path.suffix == ".safetensors":
        if training_layout:
            raise ValueError("training_layout needs a torch file (.pt/.bin), not .safetensors")
        from safetensors.torch import save_file

        _atomic_write(path, lambda tmp: save_file(state, tmp))
    else:
        payload = {"state_dict": state} if training_layout else state
        _atomic_write(path, lambda tmp: _torch_save(payload, tmp))
    return path


def _diagnose_checkpoint(name: str, path: Path, err: BaseException) -> str:
    """A one-paragraph reason why open_clip rejected ``path`` (never a stack trace)."""
    # Read the file the way open_clip.factory.load_state_dict does, but say what is wrong.
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(path), device="cpu")
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as load_err:
        return f"the file is not a readable checkpoint ({_describe_load_error(load_err)})"
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return f"the file holds a {type(state).__name__}, not a state_dict of tensors"
    if not state:
        return "the file holds an empty state_dict"
    if next(iter(state)).startswith("module."):
        state = {k[len("module.") :]: v for k, v in state.items()}
    try:  # the expected keys and shapes, without allocating or initialising weights
        open_clip = import_open_clip()
        with torch.device("meta"), _quiet_open_clip():
            ref = open_clip.create_model(name, pretrained_text=False, device="meta").state_dict()
    except Exception:
        return f"{type(err).__name__}: {_first_line(err)}"
    missing = [k for k in ref if k not in state]
    unexpected = [k for k in state if k not in ref]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(ref[k].shape)}"
        for k in ref
        if k in state and state[k].shape != ref[k].shape
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} keys missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:2])})")
    if not parts:
        return f"{type(err).__name__}: {_first_line(err)}"
    return "; ".join(parts) + f". Is it a whole-CLIP checkpoint of {name} (visual.* and text keys)?"


# ----------------------------------------------------------------------------- cached features


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
        _atomic_write(path, lambda tmp: _torch_save(payload, tmp))
    return feats.to(x.device)


def _feature_path(backbone: FrozenBackbone, x: torch.Tensor, cache_key: str) -> Path:
    h = hashlib.sha256()
    h.update(json.dumps([cache_key, backbone.cache_identity()], sort_keys=True).encode())
    # The images themselves: a caller's key that forgets a subsampling seed must not collide.
    h.update(str((tuple(x.shape), str(x.dtype))).encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{cache_key}-{backbone.name}")[:80]
    return cache_dir("features") / f"{slug}-{h.hexdigest()[:20]}.pt"


# ----------------------------------------------------------------------------- small helpers


def _looks_like_path(weights: str) -> bool:
    return (
        os.sep in weights
        or "/" in weights
        or weights.lower().endswith(CHECKPOINT_SUFFIXES)
        or os.path.exists(weights)
    )


def _torch_save(obj: Any, path: str) -> None:
    # Through a file object: torch.save(obj, <name>) records the file's name inside the archive,
    # so the same weights saved under two names (or via a random temp name) would hash apart.
    with open(path, "wb") as f:
        torch.save(obj, f)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _describe_load_error(err: BaseException) -> str:
    """The useful part of a torch.load / safetensors failure."""
    msg = str(err)
    # torch's weights_only refusal buries the reason under a long preamble about pickle safety.
    if "WeightsUnpickler error:" in msg:
        reason = msg.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0]
        reason = " ".join(reason.split()) or "unknown reason"
        return (
            f"torch.load(weights_only=True) refused it: {reason}; not a torch checkpoint, "
            "or it pickles objects other than tensors"
        )
    return f"{type(err).__name__}: {_first_line(err)}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """``write(tmp_path)`` then rename over ``path``: readers never see a half-written file, and
    concurrent writers of the same content simply replace each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class _DropRandomInitWarning(logging.Filter):
    """open_clip logs 'Model initialized randomly' on the root logger; here that is the intent."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _quiet_open_clip() -> Iterator[None]:
    root = logging.getLogger()
    filt = _DropRandomInitWarning()
    root.addFilter(filt)
    try:
        yield
    finally:
        root.removeFilter(filt)


@contextlib.contextmanager
def _patched(obj: Any, attr: str, value: Any) -> Iterator[None]:
    old = getattr(obj, attr)
    setattr(obj, attr, value)
    try:
        yield
    finally:
        setattr(obj, attr, old)
