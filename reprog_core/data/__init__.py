"""Data sets: a registry you can list, one output layout for all (see ``base.ImageDataset``).

Offline sets ship inside packages or are generated; the others are read from a data root
(``--data-root`` / ``$REPROG_DATA_ROOT``) and downloaded only when asked. Fashion-MNIST is read
from the Debian package ``dataset-fashion-mnist`` where that is installed (offline there), else
from the data root.
"""

from __future__ import annotations

import functools
from pathlib import Path

from reprog_core.data import downloadable as _downloadable  # noqa: F401  (registers its sets)
from reprog_core.data import offline as _offline  # noqa: F401  (registers its sets)
from reprog_core.data.base import (
    DATA_VERSION,
    REGISTRY,
    DatasetError,
    DatasetSpec,
    ImageDataset,
    per_class_indices,
    resize,
    to_float_rgb,
)
from reprog_core.runtime import data_root

__all__ = [
    "DATA_VERSION",
    "DatasetError",
    "DatasetSpec",
    "ImageDataset",
    "dataset_spec",
    "list_datasets",
    "load_dataset",
    "per_class_indices",
    "resize",
    "to_float_rgb",
]


def list_datasets(offline_only: bool = False) -> list[str]:
    """Names of registered data sets, offline ones first. "Offline" is judged on this machine:
    fashion-mnist counts while the Debian package ``dataset-fashion-mnist`` is installed."""
    offline = {s.name: s.offline for s in REGISTRY.values()}  # one presence check per set
    names = sorted(REGISTRY, key=lambda n: (not offline[n], n))
    return [n for n in names if offline[n] or not offline_only]


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise DatasetError(f"unknown data set {name!r}; choose one of {list_datasets()}") from None


def load_dataset(
    name: str, root: str | Path | None = None, *, download: bool = False, seed: int = 0
) -> ImageDataset:
    """Load ``name`` in the common layout. ``seed`` fixes the train/test split (and procedural
    content) where the set has no official split. Results are memoised per process."""
    spec = dataset_spec(name)
    # A set with a system copy still gets its root: the fallback when that copy is invalid.
    resolved = None if spec.packaged else data_root(root)
    # Where a system copy is looked for is part of the key ($REPROG_FASHION_MNIST_DIR moves it).
    system = spec.system_copy() if spec.system_copy is not None else None
    return _load_cached(name, str(resolved) if resolved else "", download, seed, str(system or ""))


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, root: str, download: bool, seed: int, system: str) -> ImageDataset:
    spec = REGISTRY[name]
    return spec.load(Path(root) if root else None, download, seed)
