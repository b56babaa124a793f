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
- mnist: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
- fashion-mnist: ``FashionMNIST/raw/`` (same file names as MNIST)
- gtsrb: ``gtsrb/GTSRB/Training/<00000..00042>/*.ppm``, ``gtsrb/GTSRB/Final_Test/Images/*.ppm``
  and ``gtsrb/GT-final_test.csv``
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
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
from reprog_core.data.sources import SOURCES, how_to_get


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


def _read_mnist_like(name: str, folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    gz_ok = SOURCES[name].gz_ok
    x_path = present(folder / f"{prefix}-images-idx3-ubyte", gz_ok)
    y_path = present(folder / f"{prefix}-labels-idx1-ubyte", gz_ok)
    assert x_path is not None and y_path is not None  # locate checked both
    x, y = read_idx(x_path, name), read_idx(y_path, name).astype(np.int64)
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


load_mnist = _mnist_loader("mnist", [str(d) for d in range(10)])
load_fashion_mnist = _mnist_loader("fashion-mnist", FASHION_CLASSES)


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
            how_to_get=how_to_get(name),
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
