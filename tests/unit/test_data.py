"""Data loaders: offline sets on their real shipped data; downloadable sets on small files this
module writes in the official on-disk formats, read back through ``load_dataset``.

``load_dataset`` memoises per (name, root, download, seed, system copy), so every test uses its
own tmp_path. Fashion-MNIST is read from the data root here: an autouse fixture hides any system
copy (Debian's dataset-fashion-mnist) and pins the content digests to this module's fixture
files; the system copy and the real digests are tested in ``test_packaged_data.py``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import urllib.error
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from reprog_core._compat import ensure_torchvision_importable
from reprog_core.data import (
    DatasetError,
    dataset_spec,
    downloadable,
    fetch,
    list_datasets,
    load_dataset,
    offline,
    sources,
    to_float_rgb,
)

# ---------------------------------------------------------------------------------------------
# offline sets, on the real data
# ---------------------------------------------------------------------------------------------

# name -> (n_classes, image size, total images)
OFFLINE = {
    "digits": (10, (8, 8), 1797),
    "animal": (10, (28, 28), 10000),
    "lfw-faces": (2, (25, 25), 200),
    "shapes": (10, (32, 32), 2000),
    "mnist": (10, (28, 28), 5000),
}
DOWNLOADABLE = ["cifar10", "cifar100", "svhn", "stl10", "mnist-full", "fashion-mnist", "gtsrb"]


@pytest.fixture(autouse=True)
def _fashion_from_the_data_root_only(tmp_path_factory, monkeypatch: pytest.MonkeyPatch):
    """No system copy of Fashion-MNIST (the variable names a folder that does not exist), and the
    content digests are those of the fixture files ``_mnist_writer`` writes."""
    nowhere = tmp_path_factory.mktemp("no-system-fashion") / "absent"
    monkeypatch.setenv(sources.FASHION_DIR_ENV, str(nowhere))
    for file, content in _mnist_fixture_files().items():
        monkeypatch.setitem(sources.FASHION_SHA256, file, hashlib.sha256(content).hexdigest())


def test_registry_lists_every_set_offline_first():
    names = list_datasets()
    assert set(names) == set(OFFLINE) | set(DOWNLOADABLE)
    assert names[: len(OFFLINE)] == sorted(OFFLINE)
    assert list_datasets(offline_only=True) == sorted(OFFLINE)
    assert "fashion-mnist" not in list_datasets(offline_only=True)  # no system copy here
    assert dataset_spec("mnist").offline and not dataset_spec("mnist-full").offline
    with pytest.raises(DatasetError, match="unknown data set"):
        dataset_spec("imagenet-21k")


@pytest.mark.parametrize("name", list(OFFLINE))
def test_offline_set_has_common_layout(name: str):
    n_classes, size, total = OFFLINE[name]
    ds = load_dataset(name, seed=0)
    spec = dataset_spec(name)
    assert (spec.n_classes, spec.image_size, spec.offline) == (n_classes, size, True)
    assert ds.name == name and ds.offline and ds.n_classes == n_classes == len(ds.classes)
    assert ds.image_size == size
    assert len(ds.y_train) + len(ds.y_test) == total
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == (len(y), 3, *size)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert float(x.max()) > 0.5  # really scaled to [0, 1], not left at 1/255 or 1/16
        # Stratified: every class on both sides.
        assert torch.bincount(y, minlength=n_classes).min() > 0
        assert int(y.max()) < n_classes
    frac = len(ds.y_test) / total
    assert 0.18 <= frac <= 0.27


@pytest.mark.parametrize("name", list(OFFLINE))
def test_offline_split_is_fixed_by_seed(name: str):
    load = dataset_spec(name).load  # the loader itself: load_dataset would return the memo
    a, b, c = load(None, False, 0), load(None, False, 0), load(None, False, 1)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_test, c.x_test)
    # Splits are disjoint: no test image appears in train (exact-duplicate check on a few rows).
    train_rows = {bytes(r.numpy().tobytes()) for r in a.x_train.flatten(1)}
    assert sum(bytes(r.numpy().tobytes()) in train_rows for r in a.x_test[:20].flatten(1)) <= 1


@pytest.mark.parametrize("name", ["digits", "shapes", "mnist"])
def test_subsample_keeps_per_class_counts(name: str):
    ds = load_dataset(name, seed=0)
    small = ds.subsample(5, seed=3)
    assert torch.bincount(small.y_train).tolist() == [5] * ds.n_classes
    assert torch.equal(small.x_test, ds.x_test)
    assert torch.equal(ds.subsample(5, seed=3).x_train, small.x_train)
    assert not torch.equal(ds.subsample(5, seed=4).x_train, small.x_train)
    test_small = ds.subsample(2, seed=0, split="test")
    assert torch.bincount(test_small.y_test).tolist() == [2] * ds.n_classes
    assert ds.subsample(None, seed=0) is ds


def test_lfw_faces_come_first():
    ds = load_dataset("lfw-faces", seed=0)
    assert ds.classes == ("face", "non-face")
    y = torch.cat([ds.y_train, ds.y_test])
    assert torch.bincount(y).tolist() == [100, 100]


def test_animal_classes_are_the_ten_animals_in_label_order():
    ds = load_dataset("animal", seed=0)
    assert ds.classes == offline.ANIMAL_CLASSES
    assert ds.classes[0] == "bear" and ds.classes[-1] == "zebra"
    assert torch.bincount(torch.cat([ds.y_train, ds.y_test])).tolist() == [1000] * 10


def test_shapes_are_deterministic_from_seed_and_visible():
    x1, y1 = offline.generate_shapes(7, per_class=20)
    x2, y2 = offline.generate_shapes(7, per_class=20)
    x3, _ = offline.generate_shapes(8, per_class=20)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert x1.shape == (200, 3, 32, 32) and x1.dtype == torch.float32
    assert torch.bincount(y1).tolist() == [20] * 10
    # Foreground and background differ by >= 0.35 per channel: every image has real contrast.
    spread = x1.flatten(2).amax(-1) - x1.flatten(2).amin(-1)
    assert float(spread.max(dim=1).values.min()) > 0.3
    # Classes differ in shape, not only in noise: the mean silhouettes of two classes differ.
    ink = (x1 - x1.flatten(2).median(-1).values[..., None, None]).abs().mean(1)
    means = torch.stack([ink[y1 == c].mean(0) for c in range(10)])
    assert torch.cdist(means.flatten(1), means.flatten(1)).fill_diagonal_(1e9).min() > 0.1


# ---------------------------------------------------------------------------------------------
# to_float_rgb
# ---------------------------------------------------------------------------------------------


def test_to_float_rgb_grey_rgba_and_channels_last():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (4, 5, 6), dtype=np.uint8)
    out = to_float_rgb(grey)
    assert out.shape == (4, 3, 5, 6) and out.dtype == torch.float32
    assert torch.equal(out[:, 0], out[:, 2])
    assert torch.allclose(out[:, 1], torch.from_numpy(grey).float() / 255)

    rgba = rng.integers(0, 256, (2, 7, 7, 4), dtype=np.uint8)
    out = to_float_rgb(rgba)
    assert out.shape == (2, 3, 7, 7)
    assert torch.allclose(out, torch.from_numpy(rgba[..., :3]).permute(0, 3, 1, 2).float() / 255)

    # Float images in 0..255, channels last, are rescaled.
    rgb = rng.uniform(0, 255, (3, 9, 9, 3)).astype(np.float32)
    out = to_float_rgb(rgb)
    assert torch.allclose(out, torch.from_numpy(rgb).permute(0, 3, 1, 2) / 255)

    # Channels first with one channel is repeated; an explicit layout wins over the guess.
    one = rng.uniform(0, 1, (2, 1, 4, 4)).astype(np.float32)
    assert torch.allclose(to_float_rgb(one), torch.from_numpy(one).repeat(1, 3, 1, 1))
    ambiguous = rng.integers(0, 256, (2, 3, 3, 3), dtype=np.uint8)
    forced = to_float_rgb(ambiguous, channels_last=True)
    assert torch.allclose(forced, torch.from_numpy(ambiguous).permute(0, 3, 1, 2).float() / 255)
    with pytest.raises(ValueError):
        to_float_rgb(np.zeros((2, 2), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------
# downloadable sets: fixtures written in the official formats
# ---------------------------------------------------------------------------------------------

Expected = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...] | None]


def _images(rng: np.random.Generator, n: int, c: int, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)


def _labels(n: int, n_classes: int) -> np.ndarray:
    return np.arange(n) % n_classes  # every class present when n >= n_classes


def _write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path) -> Expected:
    rng = np.random.default_rng(10)
    folder = root / "cifar-10-batches-py"
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()
    xs, ys = [], []
    for i in range(1, 6):
        # Labels shift per batch so the five batches together cover every class.
        x, y = _images(rng, 4, 3, 32, 32), (_labels(4, 10) + 2 * i) % 10
        _write_pickle(
            folder / f"data_batch_{i}",
            {
                "batch_label": f"training batch {i} of 5",
                "labels": y.tolist(),
                "data": x.reshape(4, -1),
                "filenames": [f"f{j}.png" for j in range(4)],
            },
        )
        xs.append(x)
        ys.append(y)
    x_test, y_test = _images(rng, 10, 3, 32, 32), _labels(10, 10)
    _write_pickle(
        folder / "test_batch", {"labels": y_test.tolist(), "data": x_test.reshape(10, -1)}
    )
    _write_pickle(folder / "batches.meta", {"label_names": names, "num_vis": 3072})
    return np.concatenate(xs), np.concatenate(ys), x_test, y_test, tuple(names)


def write_cifar100(root: Path) -> Expected:
    rng = np.random.default_rng(100)
    folder = root / "cifar-100-python"
    names = [f"fine{i}" for i in range(100)]
    x_train, y_train = _images(rng, 6, 3, 32, 32), np.array([0, 5, 99, 42, 7, 5])
    x_test, y_test = _images(rng, 3, 3, 32, 32), np.array([99, 0, 1])
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        _write_pickle(
            folder / split,
            {
                "fine_labels": y.tolist(),
                "coarse_labels": (y // 5).tolist(),
                "data": x.reshape(len(x), -1),
            },
        )
    _write_pickle(
        folder / "meta",
        {"fine_label_names": names, "coarse_label_names": [f"c{i}" for i in range(20)]},
    )
    return x_train, y_train, x_test, y_test, tuple(names)


def write_svhn(root: Path) -> Expected:
    from scipy.io import savemat

    rng = np.random.default_rng(7)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for split, n in (("train", 12), ("test", 10)):
        x, y = _images(rng, n, 3, 32, 32), _labels(n, 10)
        # MATLAB layout: X (H, W, C, N); the digit 0 is stored as 10.
        mat_y = np.where(y == 0, 10, y).astype(np.uint8)[:, None]
        savemat(root / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": mat_y})
        out += [x, y]
    return out[0], out[1], out[2], out[3], None


def write_stl10(root: Path) -> Expected:
    rng = np.random.default_rng(11)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    names = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    out = []
    for split, n in (("train", 10), ("test", 3)):
        x, y = _images(rng, n, 3, 96, 96), _labels(n, 10)
        # Column-major per image: W varies slowest within a channel.
        x.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")
        (y + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")
        out += [x, y]
    return out[0], out[1], out[2], out[3], names


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _mnist_fixture_arrays() -> dict[str, np.ndarray]:
    """File name -> array of the small MNIST-layout fixture (the same every call)."""
    rng = np.random.default_rng(28)
    arrays = {}
    for prefix, n in (("train", 12), ("t10k", 10)):
        arrays[f"{prefix}-images-idx3-ubyte"] = _images(rng, n, 1, 28, 28)[:, 0]
        arrays[f"{prefix}-labels-idx1-ubyte"] = _labels(n, 10)
    return arrays


def _mnist_fixture_files() -> dict[str, bytes]:
    """File name -> decompressed idx content of the fixture."""
    return {f: _idx_bytes(a) for f, a in _mnist_fixture_arrays().items()}


def _mnist_writer(raw: str, gz_train: bool) -> Callable[[Path], Expected]:
    def write(root: Path) -> Expected:
        folder = root / raw / "raw"
        folder.mkdir(parents=True)
        for file, data in _mnist_fixture_files().items():
            path = folder / file
            if gz_train and file.startswith("train"):  # one split gz'd, one not: both are read
                path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
            else:
                path.write_bytes(data)
        arrays = _mnist_fixture_arrays()
        out = []
        for prefix in ("train", "t10k"):
            x = arrays[f"{prefix}-images-idx3-ubyte"]
            out += [np.repeat(x[:, None], 3, axis=1), arrays[f"{prefix}-labels-idx1-ubyte"]]
        return out[0], out[1], out[2], out[3], None

    return write


def _write_ppm(path: Path, colour: tuple[int, int, int], size: tuple[int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="PPM")


def write_gtsrb(root: Path) -> Expected:
    base = root / "gtsrb"
    header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
    train_x, train_y = [], []
    for cls in (0, 14, 42):
        folder = base / "GTSRB" / "Training" / f"{cls:05d}"
        rows = []
        for j in range(2):
            colour = (cls * 5, 200 - cls, 10 * j + 3)
            name = f"00000_{j:05d}.ppm"
            _write_ppm(folder / name, colour, (40 + j * 13, 37))
            rows.append(f"{name};{40 + j * 13};37;5;5;30;30;{cls}\n")
            # Flat colours survive resizing exactly, so the pixels can be compared 1:1.
            train_x.append(np.broadcast_to(np.array(colour, np.uint8)[:, None, None], (3, 32, 32)))
            train_y.append(cls)
        (folder / f"GT-{cls:05d}.csv").write_text(header + "".join(rows))
    test_x, test_y, rows = [], [], []
    for j, cls in enumerate((42, 0, 7)):
        colour = (250, j * 40, cls)
        name = f"{j:05d}.ppm"
        _write_ppm(base / "GTSRB" / "Final_Test" / "Images" / name, colour, (29, 61))
        rows.append(f"{name};29;61;5;5;24;56;{cls}\n")
        test_x.append(np.broadcast_to(np.array(colour, np.uint8)[:, None, None], (3, 32, 32)))
        test_y.append(cls)
    (base / "GT-final_test.csv").write_text(header + "".join(rows))
    return (
        np.stack(train_x),
        np.array(train_y),
        np.stack(test_x),
        np.array(test_y),
        downloadable.GTSRB_CLASSES,
    )


WRITERS: dict[str, Callable[[Path], Expected]] = {
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "svhn": write_svhn,
    "stl10": write_stl10,
    "mnist-full": _mnist_writer("MNIST", gz_train=True),
    "fashion-mnist": _mnist_writer("FashionMNIST", gz_train=False),
    "gtsrb": write_gtsrb,
}


def _check_loaded(name: str, root: Path, expected: Expected, download: bool = False) -> None:
    x_train, y_train, x_test, y_test, classes = expected
    ds = load_dataset(name, root=root, download=download)
    spec = dataset_spec(name)
    assert ds.name == name and not ds.offline and not spec.offline
    assert ds.n_classes == spec.n_classes
    if classes is not None:
        assert ds.classes == classes
    for got_x, got_y, want_x, want_y in (
        (ds.x_train, ds.y_train, x_train, y_train),
        (ds.x_test, ds.y_test, x_test, y_test),
    ):
        assert got_x.dtype == torch.float32 and got_y.dtype == torch.int64
        assert got_x.shape == (len(want_y), 3, *spec.image_size)
        # Exact pixels in the official order: catches channel / row / column mix-ups.
        assert torch.allclose(got_x, torch.from_numpy(np.array(want_x)).float() / 255, atol=1e-6)
        assert got_y.tolist() == np.asarray(want_y).tolist()


def test_every_downloadable_set_has_a_writer():
    assert sorted(WRITERS) == sorted(DOWNLOADABLE)


@pytest.mark.parametrize("name", DOWNLOADABLE)
def test_downloadable_set_reads_official_layout(name: str, tmp_path: Path):
    expected = WRITERS[name](tmp_path)
    _check_loaded(name, tmp_path, expected)


@pytest.mark.parametrize("name", DOWNLOADABLE)
def test_missing_set_says_where_and_how(name: str, tmp_path: Path):
    root = tmp_path / "empty-root"
    with pytest.raises(DatasetError) as info:
        load_dataset(name, root=root)
    msg = str(info.value)
    assert str(root) in msg and name in msg
    assert "REPROG_DATA_ROOT" in msg and "--data-root" in msg and "--download" in msg
    assert not root.exists()  # nothing is created or fetched without download=True


def test_data_root_comes_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    expected = write_cifar10(tmp_path / "env-root")
    monkeypatch.setenv("REPROG_DATA_ROOT", str(tmp_path / "env-root"))
    _check_loaded("cifar10", None, expected)  # type: ignore[arg-type]


def test_corrupt_files_are_named(tmp_path: Path):
    write_cifar10(tmp_path / "c10")
    bad = tmp_path / "c10" / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path / "c10")

    _mnist_writer("MNIST", gz_train=False)(tmp_path / "mn")
    truncated = tmp_path / "mn" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte"):
        load_dataset("mnist-full", root=tmp_path / "mn")

    write_stl10(tmp_path / "stl")
    labels = tmp_path / "stl" / "stl10_binary" / "test_y.bin"
    labels.write_bytes(bytes([1, 2]))  # 2 labels for 3 images
    with pytest.raises(DatasetError, match="test_y.bin"):
        load_dataset("stl10", root=tmp_path / "stl")

    write_svhn(tmp_path / "sv")
    (tmp_path / "sv" / "test_32x32.mat").write_bytes(b"MATLAB 5.0 garbage")
    with pytest.raises(DatasetError, match="test_32x32.mat"):
        load_dataset("svhn", root=tmp_path / "sv")

    write_gtsrb(tmp_path / "gt")
    ppm = next((tmp_path / "gt" / "gtsrb" / "GTSRB" / "Training" / "00014").glob("*.ppm"))
    ppm.write_bytes(b"P6\n40 37\n255\n" + b"\x00" * 10)
    with pytest.raises(DatasetError, match=ppm.name):
        load_dataset("gtsrb", root=tmp_path / "gt")


# ---------------------------------------------------------------------------------------------
# download: only the network fetch is replaced; it serves archives in the official formats
# ---------------------------------------------------------------------------------------------


def _tar_gz(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(folder, arcname=folder.name)
    return buf.getvalue()


def _zip(base: Path, members: list[Path]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for member in members:
            for path in sorted([member, *member.rglob("*")] if member.is_dir() else [member]):
                zf.write(path, path.relative_to(base).as_posix())
    return buf.getvalue()


def _gz_of(path: Path) -> bytes:
    gz = path.with_name(path.name + ".gz")
    return gz.read_bytes() if gz.exists() else gzip.compress(path.read_bytes())


def _official_files(name: str, staging: Path) -> dict[str, bytes]:
    """Bytes of each official download (by file name) built from fixtures in ``staging``."""
    if name in ("cifar10", "cifar100", "stl10"):
        folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}.get(
            name, "stl10_binary"
        )
        (remote,) = sources.SOURCES[name].remotes
        return {remote.filename: _tar_gz(staging / folder)}
    if name == "svhn":
        return {f: (staging / f).read_bytes() for f in ("train_32x32.mat", "test_32x32.mat")}
    if name in ("mnist-full", "fashion-mnist"):
        raw = staging / ("MNIST" if name == "mnist-full" else "FashionMNIST") / "raw"
        return {f + ".gz": _gz_of(raw / f) for f in sources.MNIST_FILES}
    base = staging / "gtsrb"
    return {
        "GTSRB-Training_fixed.zip": _zip(base, [base / "GTSRB" / "Training"]),
        "GTSRB_Final_Test_Images.zip": _zip(base, [base / "GTSRB" / "Final_Test"]),
        "GTSRB_Final_Test_GT.zip": _zip(base, [base / "GT-final_test.csv"]),
    }


def _serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> list[str]:
    """Replace the network fetch with one that serves ``files`` by URL basename."""
    fetched: list[str] = []

    def fake_fetch(url: str, dest: Path) -> None:
        fetched.append(url)
        dest.write_bytes(files[url.rsplit("/", 1)[-1]])

    monkeypatch.setattr(fetch, "fetch_url", fake_fetch)
    return fetched


@pytest.mark.parametrize("name", DOWNLOADABLE)
def test_download_fetches_checks_and_unpacks(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    expected = WRITERS[name](tmp_path / "staging")
    files = _official_files(name, tmp_path / "staging")
    fetched = _serve(monkeypatch, files)
    # The real md5s belong to the real archives; give the served fixtures theirs.
    src = sources.SOURCES[name]
    remotes = tuple(
        dataclasses.replace(r, md5=hashlib.md5(files[r.filename]).hexdigest()) for r in src.remotes
    )
    monkeypatch.setitem(sources.SOURCES, name, dataclasses.replace(src, remotes=remotes))

    root = tmp_path / "root"
    _check_loaded(name, root, expected, download=True)
    assert len(fetched) == len(src.remotes)
    assert all(r.urls[0] in fetched for r in src.remotes)
    assert not list(root.rglob("*.partial"))
    # A second run finds the files and fetches nothing.
    dataset_spec(name).load(root, True, 0)
    assert len(fetched) == len(src.remotes)


def test_download_without_network_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def offline_fetch(url: str, dest: Path) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(fetch, "fetch_url", offline_fetch)
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", root=tmp_path, download=True)
    msg = str(info.value)
    assert "cifar-10-python.tar.gz" in msg and "https://www.cs.toronto.edu" in msg
    assert "name resolution" in msg
    assert not list(tmp_path.rglob("*.partial"))


def test_download_rejects_wrong_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # A mirror that answers with an error page instead of the file.
    page = b"<html>mirror error page</html>"
    _serve(monkeypatch, {f + ".gz": page for f in sources.MNIST_FILES})
    with pytest.raises(DatasetError, match="md5"):
        load_dataset("mnist-full", root=tmp_path, download=True)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing half-done is kept


# ---------------------------------------------------------------------------------------------
# reference: torchvision's own dataset classes read the same fixture files identically
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DOWNLOADABLE)
def test_fixtures_read_the_same_through_torchvision(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Guards the fixtures as much as the loaders: a format both sides misread would pass the
    tests above, but not torchvision's independent reader."""
    ensure_torchvision_importable()
    import torchvision.datasets as tvd
    from torchvision.datasets import cifar, stl10, svhn

    for module in (cifar, stl10, svhn):  # fixtures cannot carry the real files' md5s
        monkeypatch.setattr(module, "check_integrity", lambda *a, **k: True)
    if name in ("mnist-full", "fashion-mnist"):  # torchvision reads only the unpacked idx files
        _mnist_writer("MNIST" if name == "mnist-full" else "FashionMNIST", gz_train=False)(tmp_path)
    else:
        WRITERS[name](tmp_path)
    ds = load_dataset(name, root=tmp_path)
    cls = {
        "cifar10": tvd.CIFAR10,
        "cifar100": tvd.CIFAR100,
        "svhn": tvd.SVHN,
        "stl10": tvd.STL10,
        "mnist-full": tvd.MNIST,
        "fashion-mnist": tvd.FashionMNIST,
        "gtsrb": tvd.GTSRB,
    }[name]
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        if name in ("svhn", "stl10", "gtsrb"):
            reference = cls(str(tmp_path), split=split)
        else:
            reference = cls(str(tmp_path), train=split == "train")
        images, labels = [], []
        for i in range(len(reference)):
            image, label = reference[i]
            image = image.convert("RGB")
            if name == "gtsrb":
                image = image.resize((32, 32))
            images.append(np.asarray(image))
            labels.append(int(label))
        ref_x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
        assert torch.allclose(ref_x, x, atol=1e-6)
        if name == "gtsrb" and split == "train":
            # torchvision numbers the class folders present (ImageFolder); we use the folder's
            # number, which is the same once all 43 folders exist and stays right when some don't.
            folders = sorted({int(v) for v in y.tolist()})
            labels = [folders[v] for v in labels]
        assert labels == y.tolist()
