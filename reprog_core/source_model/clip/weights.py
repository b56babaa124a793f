"""What a ``weights`` string means for a backbone, checked without loading anything.

``'random'``, a pretrained tag of the model, the *name* of a checkpoint file in the operator's
weights folder (``$REPROG_WEIGHTS_DIR``: the only kind of file a dashboard URL may name; a name
resolves, links followed, to a regular file inside that folder or to nothing), or a path to a
checkpoint file (local users: the CLI). ``check_weights(..., allow_paths=False)`` is the
check for untrusted input (URLs): it never touches the file system beyond the weights folder.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from reprog_core._compat import import_open_clip
from reprog_core.source_model.clip.registry import (
    BackboneWeightsError,
    list_weight_tags,
    model_config,
)

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
WEIGHTS_DIR_ENV = "REPROG_WEIGHTS_DIR"  # the operator's folder of named checkpoints
# A checkpoint *name*: one plain file name, no folder part, not hidden, nothing to interpret.
_CHECKPOINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")


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
    """Names of the checkpoints directly inside ``weights_dir()`` (sorted; empty when the folder
    is unset or unreadable): those ``resolve_checkpoint_name`` accepts. Nothing is opened."""
    folder = weights_dir()
    if folder is None:
        return []
    try:
        names = [e.name for e in os.scandir(folder) if is_checkpoint_name(e.name)]
    except OSError:
        return []
    return sorted(n for n in names if resolve_checkpoint_name(folder, n) is not None)


def named_checkpoint(weights: str) -> Path | None:
    """The real file of checkpoint name ``weights`` in ``weights_dir()`` (links resolved), or None
    when it is not one (see ``resolve_checkpoint_name``)."""
    folder = weights_dir()
    if folder is None or not is_checkpoint_name(weights):
        return None
    return resolve_checkpoint_name(folder, weights)


def resolve_checkpoint_name(folder: Path, name: str) -> Path | None:
    """Where checkpoint name ``name`` in ``folder`` really is, or None unless that is a regular
    file inside ``folder``.

    Symbolic links are followed to their end and the end must lie inside ``folder`` (itself
    resolved): a link to a file elsewhere (``out.pt -> /srv/other.pt``, ``passwd.pt ->
    /etc/passwd``) is refused, as is anything that is not a regular file (a FIFO, a device, a
    folder, a broken or looping link). Only ``stat`` is used: nothing is opened."""
    if not is_checkpoint_name(name):
        return None
    try:
        root = folder.resolve(strict=True)
        real = (folder / name).resolve(strict=True)
        st = os.stat(real)
    except (OSError, RuntimeError):  # missing, unreadable, a link loop
        return None
    if not real.is_relative_to(root) or real == root or not stat.S_ISREG(st.st_mode):
        return None
    return real


def check_weights(name: str, weights: str, *, allow_paths: bool) -> str:
    """What ``weights`` is for backbone ``name``: 'random', 'tag', 'named' (a checkpoint in the
    weights folder) or 'file' (a path; only with ``allow_paths``). Nothing is loaded.

    With ``allow_paths=False`` (a URL, a dashboard field) no path is accepted and the file
    system is touched only to list the weights folder, so untrusted text cannot make the server
    open, stat or hash a file of its choosing. Raises ``BackboneWeightsError`` (one line; with
    ``allow_paths=False`` it never names a server path).
    """
    model_config(name)
    if not isinstance(weights, str) or not weights:
        raise BackboneWeightsError("weights must be 'random', a pretrained tag, or a checkpoint")
    if weights == "random":
        return "random"
    if import_open_clip().pretrained.get_pretrained_cfg(name, weights):
        return "tag"
    if named_checkpoint(weights) is not None:
        return "named"
    if allow_paths and looks_like_path(weights):
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


def looks_like_path(weights: str) -> bool:
    return (
        os.sep in weights
        or "/" in weights
        or weights.lower().endswith(CHECKPOINT_SUFFIXES)
        or os.path.exists(weights)
    )
