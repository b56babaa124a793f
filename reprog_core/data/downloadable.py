"""Data sets read from a local data root in their official on-disk layouts (torchvision's).

The root is ``--data-root DIR`` / ``$REPROG_DATA_ROOT`` (see ``runtime.data_root``). Nothing is
fetched unless ``download=True``; then the official archives are downloaded with plain ``urllib``,
checked against their md5 and unpacked exactly where torchvision would put them, so a root shared
with torchvision works both ways. Every loader keeps the official train/test split and returns
``x`` (N, 3, H, W) float32 in [0, 1] (grey repeated to 3 channels) and ``y`` (N,) int64.

Layouts under the root (``[.gz]``: either the compressed or the unpacked file):

- cifar10: ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
- cifar100: ``cifar-100-python/{train, test, meta}``
- svhn: ``train_32x32.mat``, ``test_32x32.mat``
- stl10: ``stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin, class_names.txt}``
- mnist: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
- fashion-mnist: ``FashionMNIST/raw/`` (same file names as MNIST)
- gtsrb: ``gtsrb/GTSRB/Training/<00000..00042>/*.ppm``, ``gtsrb/GTSRB/Final_Test/Images/*.ppm``
  and ``gtsrb/GT-final_test.csv``
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reprog_core.data.base import DatasetError, DatasetSpec, ImageDataset, register, to_float_rgb
from reprog_core.data.safe_pickle import UnsafePickleError, restricted_load

_USER_AGENT = "reprog-core (+https://pytorch.org/vision)"
_DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class Remote:
    """One official file: where to get it, its md5, and whether it is an archive to unpack."""

    filename: str  # saved as <folder>/<filename>; archives are unpacked into <folder>
    md5: str
    urls: tuple[str, ...]  # mirrors, tried in order
    extract: bool = False


@dataclass(frozen=True)
class Source:
    """Where a set lives under the root and how to fetch it.

    ``folder`` is relative to the root; ``required`` lists the files (relative to ``folder``) whose
    presence means the set is there; ``gz_ok`` also accepts ``<file>.gz`` for each of them.
    """

    folder: str
    required: tuple[str, ...]
    remotes: tuple[Remote, ...]
    gz_ok: bool = False
    layout: str = ""


_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_MNIST_MD5 = (
    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "d53e105ee54ea40749a09fcbcd1e9432",
    "9fb629c4189551a2d022fa330f9573f3",
    "ec29112dd5afa0611ce80d1b7f02629c",
)
_FASHION_MD5 = (
    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "25c81989df183df01b3e8a0aad5dffbe",
    "bef4ecab320f06d8554ea6380940ec79",
    "bb300cfdad3c16e7a12a480ee83cd310",
)
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_GTSRB_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"

# URLs and md5s are the ones torchvision 0.28 uses for the same files.
SOURCES: dict[str, Source] = {
    "cifar10": Source(
        folder="",
        required=tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
        + ("cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta"),
        remotes=(
            Remote(
                "cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                extract=True,
            ),
        ),
        layout="cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} (python pickles)",
    ),
    "cifar100": Source(
        folder="",
        required=("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"),
        remotes=(
            Remote(
                "cifar-100-python.tar.gz",
                "eb9058c3a382ffc7106e4002c42a8d85",
                ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                extract=True,
            ),
        ),
        layout="cifar-100-python/{train, test, meta} (python pickles)",
    ),
    "svhn": Source(
        folder="",
        required=("train_32x32.mat", "test_32x32.mat"),
        remotes=(
            Remote(
                "train_32x32.mat",
                "e26dedcc434d2e4c54c9b2d4a06d8373",
                ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",),
            ),
            Remote(
                "test_32x32.mat",
                "eb5a983be6a315427106f1b164d9cef3",
                ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",),
            ),
        ),
        layout="train_32x32.mat and test_32x32.mat (cropped digits, MATLAB files)",
    ),
    "stl10": Source(
        folder="",
        required=tuple(
            f"stl10_binary/{f}"
            for f in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "class_names.txt")
        ),
        remotes=(
            Remote(
                "stl10_binary.tar.gz",
                "91f7769df0f17e558f3565bffb0c7dfb",
                ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
                extract=True,
            ),
        ),
        layout="stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin, class_names.txt}",
    ),
    "mnist": Source(
        folder="MNIST/raw",
        required=_MNIST_FILES,
        gz_ok=True,
        remotes=tuple(
            Remote(f + ".gz", md5, tuple(m + f + ".gz" for m in _MNIST_MIRRORS))
            for f, md5 in zip(_MNIST_FILES, _MNIST_MD5, strict=True)
        ),
        layout="MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (idx files)",
    ),
    "fashion-mnist": Source(
        folder="FashionMNIST/raw",
        required=_MNIST_FILES,
        gz_ok=True,
        remotes=tuple(
            Remote(f + ".gz", md5, tuple(m + f + ".gz" for m in _FASHION_MIRRORS))
            for f, md5 in zip(_MNIST_FILES, _FASHION_MD5, strict=True)
        ),
        layout="FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (idx files)",
    ),
    "gtsrb": Source(
        folder="gtsrb",
        required=("GTSRB/Training", "GTSRB/Final_Test/Images", "GT-final_test.csv"),
        remotes=(
            Remote(
                "GTSRB-Training_fixed.zip",
                "513f3c79a4c5141765e10e952eaa2478",
                (_GTSRB_URL + "GTSRB-Training_fixed.zip",),
                extract=True,
            ),
            Remote(
                "GTSRB_Final_Test_Images.zip",
                "c7e4e6327067d32654124b0fe9e82185",
                (_GTSRB_URL + "GTSRB_Final_Test_Images.zip",),
                extract=True,
            ),
            Remote(
                "GTSRB_Final_Test_GT.zip",
                "fe31e9c9270bbcd7b84b7f21a9d9d9e5",
                (_GTSRB_URL + "GTSRB_Final_Test_GT.zip",),
                extract=True,
            ),
        ),
        layout="gtsrb/GTSRB/Training/<00000..00042>/*.ppm, gtsrb/GTSRB/Final_Test/Images/*.ppm "
        "and gtsrb/GT-final_test.csv (torchvision's GTSRB layout)",
    ),
}


# ---------------------------------------------------------------------------------------------
# locating, downloading, unpacking
# ---------------------------------------------------------------------------------------------


def _how_to_get(name: str) -> str:
    src = SOURCES[name]
    urls = ", ".join(r.urls[0] for r in src.remotes)
    where = f"<root>/{src.layout}" if src.layout else "<root>"
    return f"{where}; official files: {urls}"


def fetch_url(url: str, dest: Path) -> None:
    """Copy ``url`` to ``dest`` byte for byte. The only function here that touches the network
    (tests replace it)."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with (
        urllib.request.urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S) as response,
        open(dest, "wb") as out,
    ):
        shutil.copyfileobj(response, out, length=1 << 20)


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_checked(name: str, remote: Remote, folder: Path) -> Path:
    """``folder/remote.filename`` with the right md5, fetched from the first mirror that works."""
    dest = folder / remote.filename
    if dest.is_file() and md5sum(dest) == remote.md5:
        return dest  # downloaded earlier, e.g. by torchvision: do not fetch 100s of MB again
    folder.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    errors = []
    for url in remote.urls:
        try:
            fetch_url(url, partial)
        # URLError, HTTPError and timeouts are OSErrors; a cut connection is an IncompleteRead.
        except (OSError, ValueError, http.client.HTTPException) as exc:
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
            partial.unlink(missing_ok=True)
            continue
        got = md5sum(partial)
        if got != remote.md5:
            partial.unlink(missing_ok=True)
            errors.append(f"{url}: md5 {got} does not match the expected {remote.md5}")
            continue
        os.replace(partial, dest)  # only a complete, verified file ever gets the real name
        return dest
    raise DatasetError(
        f"{name}: downloading {remote.filename} into {folder} failed ({'; '.join(errors)}). "
        "This machine may have no network: fetch the file elsewhere and place it there, "
        f"or place the unpacked files in the layout {_how_to_get(name)}"
    )


def _extract(name: str, archive: Path, into: Path) -> None:
    """Unpack a .tar[.gz] or .zip ``archive`` into ``into`` (no member may land outside it)."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(into)  # zipfile strips absolute paths and '..' itself
        else:
            with tarfile.open(archive) as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(into, filter="data")
                else:  # Python < 3.10.12 has no extraction filters
                    _check_tar_members(tf, into)
                    tf.extractall(into)
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{name}: cannot unpack {archive}: {exc}; delete it and retry") from exc


def _check_tar_members(tf: tarfile.TarFile, into: Path) -> None:
    base = into.resolve()
    for member in tf.getmembers():
        if not (base / member.name).resolve().is_relative_to(base):
            raise tarfile.TarError(f"member {member.name!r} would land outside {into}")


def _present(path: Path, gz_ok: bool) -> Path | None:
    if path.exists():
        return path
    gz = path.with_name(path.name + ".gz")
    return gz if gz_ok and gz.exists() else None


def _locate(name: str, root: Path | None, download: bool) -> Path:
    """The set's folder under ``root``, downloading first when asked and files are missing."""
    if root is None:
        raise DatasetError(
            f"{name}: no data root given; pass --data-root DIR or set REPROG_DATA_ROOT"
        )
    src = SOURCES[name]
    folder = root / src.folder if src.folder else root

    def missing() -> list[Path]:
        return [folder / r for r in src.required if _present(folder / r, src.gz_ok) is None]

    if missing() and download:
        for remote in src.remotes:
            archive = _fetch_checked(name, remote, folder)
            if remote.extract:
                _extract(name, archive, folder)
    lacking = missing()
    if lacking:
        first = lacking[0]
        also = f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""
        after = (
            " after downloading: the archive did not have the expected layout" if download else ""
        )
        raise DatasetError(
            f"{name}: looked for {first}{also} under the data root {root} and did not find it"
            f"{after}. To fix: point --data-root DIR or $REPROG_DATA_ROOT at the folder that holds "
            "the files; or pass --download (download=True) on a machine with network access; or "
            f"place the official files under {root} in this layout: {_how_to_get(name)}"
        )
    return folder


@contextlib.contextmanager
def _reading(name: str, path: Path) -> Iterator[None]:
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


def _result(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    classes: Sequence[str],
    channels_last: bool,
) -> ImageDataset:
    """uint8 image stacks + integer labels -> the common layout (no shuffling: official order)."""
    return ImageDataset(
        name,
        to_float_rgb(train[0], channels_last=channels_last),
        torch.as_tensor(np.asarray(train[1], dtype=np.int64)),
        to_float_rgb(test[0], channels_last=channels_last),
        torch.as_tensor(np.asarray(test[1], dtype=np.int64)),
        tuple(classes),
        offline=False,
    )


def _check_labels(name: str, path: Path, labels: np.ndarray, n_classes: int, n: int) -> None:
    if labels.shape != (n,):
        raise DatasetError(f"{name}: {path} holds {labels.shape[0]} labels for {n} images")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(
            f"{name}: labels in {path} span {labels.min()}..{labels.max()}, "
            f"expected 0..{n_classes - 1}"
        )


# ---------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100: python pickles, rows of 3072 uint8 = 3 x 32 x 32 channel-major
# ---------------------------------------------------------------------------------------------


def _unpickle(name: str, path: Path) -> dict:
    """A CIFAR python pickle, read with the restricted unpickler: a file naming anything besides
    dicts, lists, strings, bytes, numbers and numpy arrays is refused before it can run code."""
    with _reading(name, path):
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


def _cifar_batches(
    name: str, paths: Sequence[Path], label_key: str, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for path in paths:
        entry = _unpickle(name, path)
        with _reading(name, path):
            x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(entry[label_key], dtype=np.int64)
        _check_labels(name, path, y, n_classes, len(x))
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar10(root: Path | None, download: bool = False, seed: int = 0) -> ImageDataset:
    """CIFAR-10: x_train (50000, 3, 32, 32), x_test (10000, 3, 32, 32); names from batches.meta."""
    folder = _locate("cifar10", root, download) / "cifar-10-batches-py"
    meta = folder / "batches.meta"
    classes = _unpickle("cifar10", meta).get("label_names")
    if not classes:
        raise DatasetError(f"cifar10: {meta} has no 'label_names'")
    train = _cifar_batches(
        "cifar10", [folder / f"data_batch_{i}" for i in range(1, 6)], "labels", len(classes)
    )
    test = _cifar_batches("cifar10", [folder / "test_batch"], "labels", len(classes))
    return _result("cifar10", train, test, classes, channels_last=False)


def load_cifar100(root: Path | None, download: bool = False, seed: int = 0) -> ImageDataset:
    """CIFAR-100 (fine labels): x_train (50000, 3, 32, 32), x_test (10000, 3, 32, 32)."""
    folder = _locate("cifar100", root, download) / "cifar-100-python"
    meta = folder / "meta"
    classes = _unpickle("cifar100", meta).get("fine_label_names")
    if not classes:
        raise DatasetError(f"cifar100: {meta} has no 'fine_label_names'")
    train = _cifar_batches("cifar100", [folder / "train"], "fine_labels", len(classes))
    test = _cifar_batches("cifar100", [folder / "test"], "fine_labels", len(classes))
    return _result("cifar100", train, test, classes, channels_last=False)


# ---------------------------------------------------------------------------------------------
# SVHN: MATLAB files, X (32, 32, 3, N) uint8, y (N, 1) with 10 standing for the digit 0
# ---------------------------------------------------------------------------------------------


def _read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    with _reading("svhn", path):
        mat = loadmat(path)
        x = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)), dtype=np.uint8)
        y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    y = np.where(y == 10, 0, y)  # SVHN labels the digit 0 as 10
    _check_labels("svhn", path, y, 10, len(x))
    return x, y


def load_svhn(root: Path | None, download: bool = False, seed: int = 0) -> ImageDataset:
    """SVHN cropped digits: x_train (73257, 3, 32, 32), x_test (26032, 3, 32, 32)."""
    folder = _locate("svhn", root, download)
    train = _read_svhn(folder / "train_32x32.mat")
    test = _read_svhn(folder / "test_32x32.mat")
    return _result("svhn", train, test, [str(d) for d in range(10)], channels_last=False)


# ---------------------------------------------------------------------------------------------
# STL-10: raw uint8, each image 3 x 96 x 96 stored column-major; labels 1..10
# ---------------------------------------------------------------------------------------------


def _read_stl10(folder: Path, split: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    x_path, y_path = folder / f"{split}_X.bin", folder / f"{split}_y.bin"
    with _reading("stl10", x_path):
        raw = np.fromfile(x_path, dtype=np.uint8)
        if raw.size % (3 * 96 * 96):
            raise ValueError(f"{raw.size} bytes is not a whole number of 3x96x96 images")
        # Column-major (MATLAB) order: swap H and W to get (N, 3, H, W).
        x = np.ascontiguousarray(raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2))
    with _reading("stl10", y_path):
        y = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1
    _check_labels("stl10", y_path, y, n_classes, len(x))
    return x, y


def load_stl10(root: Path | None, download: bool = False, seed: int = 0) -> ImageDataset:
    """STL-10 labelled part: x_train (5000, 3, 96, 96), x_test (8000, 3, 96, 96)."""
    folder = _locate("stl10", root, download) / "stl10_binary"
    names_path = folder / "class_names.txt"
    with _reading("stl10", names_path):
        classes = [ln.strip() for ln in names_path.read_text().splitlines() if ln.strip()]
    train = _read_stl10(folder, "train", len(classes))
    test = _read_stl10(folder, "test", len(classes))
    return _result("stl10", train, test, classes, channels_last=False)


# ---------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST: big-endian idx files, optionally gzip'd
# ---------------------------------------------------------------------------------------------

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def read_idx(path: Path, name: str = "idx") -> np.ndarray:
    """An idx file of unsigned bytes (``.gz`` or not): magic 0x0000 08 <ndim>, ndim big-endian
    int32 sizes, then the data. Returns a uint8 array of those sizes."""
    with _reading(name, path):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
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


def _read_mnist_like(name: str, folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    gz_ok = SOURCES[name].gz_ok
    x_path = _present(folder / f"{prefix}-images-idx3-ubyte", gz_ok)
    y_path = _present(folder / f"{prefix}-labels-idx1-ubyte", gz_ok)
    assert x_path is not None and y_path is not None  # _locate checked both
    x, y = read_idx(x_path, name), read_idx(y_path, name).astype(np.int64)
    if x.ndim != 3:
        raise DatasetError(
            f"{name}: {x_path} holds an array of shape {x.shape}, expected (N, H, W)"
        )
    _check_labels(name, y_path, y, 10, len(x))
    return x, y


def _mnist_loader(name: str, classes: Sequence[str]) -> Callable[..., ImageDataset]:
    def load(root: Path | None, download: bool = False, seed: int = 0) -> ImageDataset:
        folder = _locate(name, root, download)
        train = _read_mnist_like(name, folder, "train")
        test = _read_mnist_like(name, folder, "t10k")
        return _result(name, train, test, classes, channels_last=False)

    load.__doc__ = f"{name}: x_train (60000, 3, 28, 28), x_test (10000, 3, 28, 28), grey x3."
    return load


load_mnist = _mnist_loader("mnist", [str(d) for d in range(10)])
load_fashion_mnist = _mnist_loader("fashion-mnist", FASHION_CLASSES)


# ---------------------------------------------------------------------------------------------
# GTSRB: PPM files of varying size (15..250 px), one folder per class for training, a CSV for test
# ---------------------------------------------------------------------------------------------

GTSRB_SIZE = 32
# The official files carry only class ids; these are the sign names commonly published with them
# (signnames.csv), in class-id order.
GTSRB_CLASSES = (
    "speed limit 20",
    "speed limit 30",
    "speed limit 50",
    "speed limit 60",
    "speed limit 70",
    "speed limit 80",
    "end of speed limit 80",
    "speed limit 100",
    "speed limit 120",
    "no passing",
    "no passing for vehicles over 3.5 t",
    "right-of-way at the next intersection",
    "priority road",
    "yield",
    "stop",
    "no vehicles",
    "vehicles over 3.5 t prohibited",
    "no entry",
    "general caution",
    "dangerous curve to the left",
    "dangerous curve to the right",
    "double curve",
    "bumpy road",
    "slippery road",
    "road narrows on the right",
    "road work",
    "traffic signals",
    "pedestrians",
    "children crossing",
    "bicycles crossing",
    "beware of ice/snow",
    "wild animals crossing",
    "end of all speed and passing limits",
    "turn right ahead",
    "turn left ahead",
    "ahead only",
    "go straight or right",
    "go straight or left",
    "keep right",
    "keep left",
    "roundabout mandatory",
    "end of no passing",
    "end of no passing by vehicles over 3.5 t",
)


def _read_ppms(paths: Sequence[Path]) -> np.ndarray:
    """PPM files -> (N, 32, 32, 3) uint8, each resized whole (no ROI crop, like torchvision)."""
    from PIL import Image

    out = np.empty((len(paths), GTSRB_SIZE, GTSRB_SIZE, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        with _reading("gtsrb", path), Image.open(path) as img:
            # PIL's bilinear filter widens its support when shrinking, i.e. it antialiases.
            small = img.convert("RGB").resize((GTSRB_SIZE, GTSRB_SIZE), Image.Resampling.BILINEAR)
            out[i] = np.asarray(small)
    return out


def load_gtsrb(root: Path | None, download: bool = False, seed: int = 0) -> ImageDataset:
    """GTSRB, every image resized to 32x32: x_train (26640, 3, 32, 32) with the official
    "Training_fixed" archive, x_test (12630, 3, 32, 32)."""
    base = _locate("gtsrb", root, download)
    n_classes = len(GTSRB_CLASSES)
    train_paths, train_labels = [], []
    for class_dir in sorted(p for p in (base / "GTSRB" / "Training").iterdir() if p.is_dir()):
        try:
            label = int(class_dir.name)
        except ValueError:
            continue  # not a class folder
        files = sorted(class_dir.glob("*.ppm"))
        train_paths += files
        train_labels += [label] * len(files)
    if not train_paths:
        raise DatasetError(
            f"gtsrb: no .ppm images in class folders under {base / 'GTSRB/Training'}"
        )

    csv_path = base / "GT-final_test.csv"
    images = base / "GTSRB" / "Final_Test" / "Images"
    with _reading("gtsrb", csv_path), open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";", skipinitialspace=True))
        test_paths = [images / row["Filename"] for row in rows]
        test_labels = [int(row["ClassId"]) for row in rows]

    y_train, y_test = np.asarray(train_labels), np.asarray(test_labels)
    _check_labels("gtsrb", base / "GTSRB" / "Training", y_train, n_classes, len(train_paths))
    _check_labels("gtsrb", csv_path, y_test, n_classes, len(test_paths))
    train = (_read_ppms(train_paths), y_train)
    test = (_read_ppms(test_paths), y_test)
    return _result("gtsrb", train, test, GTSRB_CLASSES, channels_last=True)


# ---------------------------------------------------------------------------------------------


def _register(
    name: str, description: str, n_classes: int, size: int, channels: int, load: Callable
) -> None:
    register(
        DatasetSpec(
            name=name,
            description=description,
            n_classes=n_classes,
            image_size=(size, size),
            channels=channels,
            offline=False,
            load=load,
            how_to_get=_how_to_get(name),
        )
    )


_register("cifar10", "CIFAR-10, 60,000 images 32×32 RGB, 10 classes", 10, 32, 3, load_cifar10)
_register(
    "cifar100",
    "CIFAR-100 (fine labels), 60,000 images 32×32 RGB, 100 classes",
    100,
    32,
    3,
    load_cifar100,
)
_register(
    "svhn", "SVHN cropped house numbers, 99,289 images 32×32 RGB, 10 digits", 10, 32, 3, load_svhn
)
_register(
    "stl10", "STL-10 labelled images, 13,000 images 96×96 RGB, 10 classes", 10, 96, 3, load_stl10
)
_register(
    "mnist", "MNIST handwritten digits, 70,000 images 28×28 grey, 10 classes", 10, 28, 1, load_mnist
)
_register(
    "fashion-mnist",
    "Fashion-MNIST, 70,000 images 28×28 grey, 10 clothing classes",
    10,
    28,
    1,
    load_fashion_mnist,
)
_register(
    "gtsrb",
    "German traffic signs, ~39,000 images resized to 32×32 RGB, 43 classes",
    43,
    GTSRB_SIZE,
    3,
    load_gtsrb,
)
