"""``load_backbone(name, weights)``: the frozen image tower with its weights, from any source.

* ``'random'``: open_clip's own initialisation, seeded by ``seed``;
* a pretrained tag (``list_weight_tags(name)``): loaded by ``open_clip.create_model`` from the
  Hugging Face cache, downloading first where a network exists. Offline and not cached, it fails
  at once with a ``BackboneWeightsError`` that says how to supply weights;
* the name of a checkpoint in the operator's weights folder, or a path to a checkpoint file
  (``.pt`` / ``.bin`` / ``.pth`` state_dict, ``.safetensors``, or
  ``{'state_dict': {'module.*': ...}}``), loaded through ``open_clip.create_model(name,
  pretrained=path)`` - open_clip's own loading path, so any file open_clip reads works here. A
  file is identified by its SHA-256 (``FrozenBackbone.weights_sha256``). A name is loaded only
  from where it really is, a regular file inside the weights folder (``resolve_checkpoint_name``:
  a link out of the folder is refused), and every file is checked to be a regular file on the
  descriptor it is hashed from (opened without following a link, without blocking on a FIFO).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reprog_core._compat import import_open_clip
from reprog_core.runtime import resolve_device, rng_lock
from reprog_core.source_model.clip._util import first_line, patched, quiet_open_clip
from reprog_core.source_model.clip.checkpoints import diagnose_checkpoint
from reprog_core.source_model.clip.offline import offline_reason
from reprog_core.source_model.clip.registry import (
    BackboneWeightsError,
    list_weight_tags,
    model_config,
)
from reprog_core.source_model.clip.tower import FrozenBackbone
from reprog_core.source_model.clip.weights import looks_like_path, named_checkpoint


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
    cfg = model_config(name)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    open_clip = import_open_clip()
    if not isinstance(weights, str) or not weights:
        raise BackboneWeightsError(
            "weights must be 'random', a pretrained tag, or a checkpoint path"
        )

    if weights == "random":
        with rng_lock(), torch.random.fork_rng(devices=[]), quiet_open_clip():
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

    if not looks_like_path(weights):
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
    digest = _regular_file_sha256(path, label)
    try:
        with rng_lock(), torch.random.fork_rng(devices=[]), quiet_open_clip():
            torch.manual_seed(seed)  # the init that the file overwrites; keeps runs repeatable
            model = open_clip.create_model(name, pretrained=str(path), pretrained_text=False)
    except Exception as err:
        raise BackboneWeightsError(
            f"could not load checkpoint {label} into {name}: {diagnose_checkpoint(name, path, err)}"
        ) from err
    return _wrap(
        model, dev, name=name, weights_label=label, weights_kind="file", weights_sha256=digest
    )


def _regular_file_sha256(path: Path, label: str) -> str:
    """SHA-256 of the checkpoint at ``path``, read from a descriptor that is checked to be a
    regular file (opened ``O_NOFOLLOW | O_NONBLOCK``: a link swapped in is refused, a FIFO
    neither blocks nor is read); ``BackboneWeightsError`` otherwise."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise BackboneWeightsError(f"cannot read checkpoint {label}: {first_line(err)}") from err
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BackboneWeightsError(f"checkpoint {label} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        h = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    offline = offline_reason(tag_cfg)
    if offline and not cached:
        raise BackboneWeightsError(
            f"weights {tag!r} for {name} are not in the local cache and cannot be downloaded "
            f"({offline}). Supply weights another way:\n"
            "  --weights path/to/checkpoint.pt   a local open_clip checkpoint (.pt/.bin "
            "state_dict, .safetensors, or {'state_dict': ...});\n"
            f"  run once where a network exists, so that tag {tag!r} downloads into the Hugging "
            "Face cache and loads offline afterwards;\n"
            "  --weights random   random initialisation (results are labelled 'random')."
        )
    try:
        with contextlib.ExitStack() as stack:
            # The init that the tag's weights overwrite must not advance the caller's RNG.
            stack.enter_context(rng_lock())  # see runtime.py
            stack.enter_context(torch.random.fork_rng(devices=[]))
            if offline:
                # Cached, but the hub is unreachable: resolve from the cache without ~46 s of
                # retries. huggingface_hub reads HF_HUB_OFFLINE once at import, so set its flag.
                import huggingface_hub.constants as hf_constants

                stack.enter_context(patched(hf_constants, "HF_HUB_OFFLINE", True))
            return open_clip.create_model(
                name, pretrained=tag, pretrained_text=False, force_quick_gelu=quick_gelu
            )
    except Exception as err:
        raise BackboneWeightsError(
            f"could not load weights {tag!r} for {name}: {first_line(err)}. Supply weights with "
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
