"""Readers of the official file formats, each returning uint8 images and int64 labels: CIFAR
python pickles (restricted unpickler), SVHN MATLAB files, STL-10 raw binaries, idx files
(MNIST, Fashion-MNIST; ``.gz`` or not) and PPM images (GTSRB). Any parsing failure becomes a
``DatasetError`` naming the file (``reading``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from reprog_core.data.base import DatasetError
from reprog_core.data.safe_pickle import UnsafePickleError, restricted_load


@contextlib.contextmanager
def reading(name: str, path: Path) -> Iterator[None]:
    """Turn any failure while parsing ``path`` into a DatasetError that names the file."""
    try:
        yield
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001  (corrupt files fail in many library-specific ways)
        raise DatasetError(
            f"{name}: cannot read {path} ({type(exc).__name__}: {exc}); the file looks corrupt or "
            "truncated: delete it and download it again"
        ) from exc


def check_labels(name: str, path: Path, labels: np.ndarray, n_classes: int, n: int) -> None:
    """``DatasetError`` unless ``labels`` are ``n`` class ids in 0..n_classes-1."""
    if labels.shape != (n,):
        raise DatasetError(f"{name}: {path} holds {labels.shape[0]} labels for {n} images")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(
            f"{name}: labels in {path} span {labels.min()}..{labels.max()}, "
            f"expected 0..{n_classes - 1}"
        )


# CIFAR-10 / CIFAR-100: python pickles, rows of 3072 uint8 = 3 x 32 x 32 channel-major.
def unpickle(name: str, path: Path) -> dict:
    """A CIFAR python pickle, read with the restricted unpickler: a file naming anything besides
    dicts, lists, strings, bytes, numbers and numpy arrays is refused before it can run code."""
    with reading(name, path):
        try:
            with open(path, "rb") as f:
                # latin1: the files were pickled by Python 2; torchvision reads them the same way.
                entry = restricted_load(f, encoding="latin1")
        except UnsafePickleError as exc:
            raise DatasetError(
                f"{name}: refused to read {path}: {exc}. Replace it with the official file"
            ) from None
    if not isinstance(entry, dict):
        raise DatasetError(
            f"{name}: {path} holds a {type(entry).__name__}, not the dict of a CIFAR batch; "
            "the file looks corrupt: delete it and download it again"
        )
    return entry


def cifar_batches(
    name: str, paths: Sequence[Path], label_key: str, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for path in paths:
        entry = unpickle(name, path)
        with reading(name, path):
            x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(entry[label_key], dtype=np.int64)
        check_labels(name, path, y, n_classes, len(x))
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


# SVHN: MATLAB files, X (32, 32, 3, N) uint8, y (N, 1) with 10 standing for the digit 0.
def read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    with reading("svhn", path):
        mat = loadmat(path)
        x = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)), dtype=np.uint8)
        y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    y = np.where(y == 10, 0, y)  # SVHN labels the digit 0 as 10
    check_labels("svhn", path, y, 10, len(x))
    return x, y


# STL-10: raw uint8, each image 3 x 96 x 96 stored column-major; labels 1..10.
def read_stl10(folder: Path, split: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    x_path, y_path = folder / f"{split}_X.bin", folder / f"{split}_y.bin"
    with reading("stl10", x_path):
        raw = np.fromfile(x_path, dtype=np.uint8)
        if raw.size % (3 * 96 * 96):
            raise ValueError(f"{raw.size} bytes is not a whole number of 3x96x96 images")
        # Column-major (MATLAB) order: swap H and W to get (N, 3, H, W).
        x = np.ascontiguousarray(raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2))
    with reading("stl10", y_path):
        y = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1
    check_labels("stl10", y_path, y, n_classes, len(x))
    return x, y


# MNIST / Fashion-MNIST: big-endian idx files, optionally gzip'd.
def read_idx(path: Path, name: str = "idx", sha256: str | None = None) -> np.ndarray:
    """An idx file of unsigned bytes (``.gz`` or not): magic 0x0000 08 <ndim>, ndim big-endian
    int32 sizes, then the data. Returns a uint8 array of those sizes.

    ``sha256``: the digest the *decompressed* content must have (so a file compressed with other
    settings passes, other content does not); a mismatch is a DatasetError naming both digests.
    """
    with reading(name, path):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    if sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise DatasetError(
                f"{name}: {path} holds other content than the official file (sha256 of the "
                f"decompressed content {got}, expected {sha256}): a different or damaged file"
            )
    with reading(name, path):
        if len(data) < 4 or data[0] != 0 or data[1] != 0:
            raise ValueError("not an idx file (bad magic number)")
        if data[2] != 0x08:
            raise ValueError(f"idx element type 0x{data[2]:02x} is not unsigned byte (0x08)")
        ndim = data[3]
        dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4).tolist()
        body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        if body.size != int(np.prod(dims)):
            raise ValueError(f"header says {dims}, file holds {body.size} bytes of data")
        # Copy: frombuffer over ``bytes`` is read-only, and torch warns on read-only arrays.
        return body.reshape(dims).copy()


# GTSRB: PPM files of varying size (15..250 px).
def read_ppms(paths: Sequence[Path], size: int) -> np.ndarray:
    """PPM files -> (N, size, size, 3) uint8, each resized whole (no ROI crop, like torchvision)."""
    from PIL import Image

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        with reading("gtsrb", path), Image.open(path) as img:
            # PIL's bilinear filter widens its support when shrinking, i.e. it antialiases.
            small = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            out[i] = np.asarray(small)
    return out
