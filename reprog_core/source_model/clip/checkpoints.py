"""Whole-CLIP checkpoint files: writing one open_clip reads back (``save_checkpoint``), and
saying in words why open_clip rejected one (``diagnose_checkpoint``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reprog_core._compat import import_open_clip
from reprog_core.runtime import rng_lock
from reprog_core.source_model.clip._util import (
    atomic_write,
    first_line,
    quiet_open_clip,
    torch_save,
)
from reprog_core.source_model.clip.registry import register_tiny_configs
from reprog_core.source_model.clip.tower import FrozenBackbone


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
        with rng_lock(), torch.random.fork_rng(devices=[]), quiet_open_clip():
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

        atomic_write(path, lambda tmp: save_file(state, tmp))
    else:
        payload = {"state_dict": state} if training_layout else state
        atomic_write(path, lambda tmp: torch_save(payload, tmp))
    return path


def diagnose_checkpoint(name: str, path: Path, err: BaseException) -> str:
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
        with torch.device("meta"), quiet_open_clip():
            ref = open_clip.create_model(name, pretrained_text=False, device="meta").state_dict()
    except Exception:
        return f"{type(err).__name__}: {first_line(err)}"
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
        return f"{type(err).__name__}: {first_line(err)}"
    return "; ".join(parts) + f". Is it a whole-CLIP checkpoint of {name} (visual.* and text keys)?"


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
    return f"{type(err).__name__}: {first_line(err)}"
