"""The trust boundaries of SECURITY.md, attacked with real malicious files.

* A pickle whose ``__reduce__`` would run code (it would create a canary file) must not run.
* A URL must not make the server open a file: ``weights=../../etc/passwd``, an absolute path, a
  FIFO (opening one for reading blocks, so a test that returns at all shows it was not opened).
* Bounded URL ranges, escaped markdown, sanitised error text, checksummed source models, learning
  rates, ``sweep --out``, and Compare's clamping.
"""

from __future__ import annotations

import builtins
import gzip
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from reprog_core.data import DatasetError, load_dataset
from reprog_core.data.safe_pickle import UnsafePickleError, restricted_loads


# ------------------------------------------------------------------------------ malicious pickles
class _RunsCode:
    """Unpickling this executes Python that writes ``canary``."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.canary)!r}, 'w').write('ran')",))


def _evil_pickle(canary: Path, protocol: int = 2, wrap: bool = True) -> bytes:
    payload = _RunsCode(canary)
    obj = {"data": np.zeros((1, 3072), np.uint8), "labels": [payload]} if wrap else payload
    return pickle.dumps(obj, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_refuses_code(tmp_path: Path, protocol: int) -> None:
    canary = tmp_path / "canary"
    blob = _evil_pickle(canary, protocol)
    with pytest.raises(UnsafePickleError, match="builtins.exec"):
        restricted_loads(blob)
    assert not canary.exists()
    # The same bytes really do run code under plain pickle (the test's own control).
    pickle.loads(blob)
    assert canary.read_text() == "ran"


@pytest.mark.parametrize("protocol", [2, 5])
def test_restricted_unpickler_reads_what_cifar_holds(protocol: int) -> None:
    obj = {
        "batch_label": "training batch 1 of 5",
        "labels": [1, 2, 3],
        "data": np.arange(12, dtype=np.uint8).reshape(2, 6),
        "filenames": ["a.png", b"b.png"],
        "scalar": np.int64(7),
        "f": np.float32(0.5) * np.ones((2, 2), np.float32, order="F"),
    }
    out = restricted_loads(pickle.dumps(obj, protocol=protocol), encoding="latin1")
    assert out["labels"] == [1, 2, 3] and out["filenames"] == ["a.png", b"b.png"]
    np.testing.assert_array_equal(out["data"], obj["data"])
    np.testing.assert_array_equal(out["f"], obj["f"])
    assert out["scalar"] == 7


def test_restricted_unpickler_refuses_other_globals() -> None:
    for obj in ({1, 2}, Path("/x"), np.random.default_rng(0)):
        with pytest.raises(UnsafePickleError):
            restricted_loads(pickle.dumps(obj, protocol=2))


def _write_cifar10(root: Path, evil: bytes | None, which: str = "data_batch_3") -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"c{i}" for i in range(10)]
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"labels": list(range(10)), "data": np.zeros((10, 3072), np.uint8)}
        (folder / f).write_bytes(pickle.dumps(entry, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))
    if evil is not None:
        (folder / which).write_bytes(evil)


@pytest.mark.parametrize("which", ["data_batch_3", "batches.meta", "test_batch"])
def test_cifar_data_root_with_a_code_running_pickle(tmp_path: Path, which: str) -> None:
    canary = tmp_path / "canary"
    root = tmp_path / f"root-{which}"
    _write_cifar10(root, _evil_pickle(canary), which)
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", root=root)
    assert not canary.exists(), "loading the data root ran code from a pickle"
    msg = str(err.value)
    assert "refused" in msg and "builtins.exec" in msg and which in msg
    assert "\n" not in msg


def test_cifar_clean_root_still_loads(tmp_path: Path) -> None:
    _write_cifar10(tmp_path / "ok", None)
    ds = load_dataset("cifar10", root=tmp_path / "ok")
    assert tuple(ds.x_train.shape) == (50, 3, 32, 32) and ds.classes[0] == "c0"


def test_animal_gz_pickles_are_read_restricted(tmp_path: Path) -> None:
    from reprog_core.data.offline import _read_pickle_gz

    canary = tmp_path / "canary"
    evil = tmp_path / "animal_data_version_3.gz"
    with gzip.open(evil, "wb") as f:
        f.write(_evil_pickle(canary, protocol=4, wrap=False))
    with pytest.raises(DatasetError, match="refused"):
        _read_pickle_gz(evil)
    assert not canary.exists()
    good = tmp_path / "good.gz"
    with gzip.open(good, "wb") as f:
        pickle.dump(np.ones((3, 28, 28), np.uint8), f)
    assert _read_pickle_gz(good).shape == (3, 28, 28)


def test_no_plain_unpickling_left_in_the_package() -> None:
    """Audit: no module of reprog_core or dashboard calls pickle.load(s) / np.load with pickles /
    torch.load without weights_only=True, except the restricted unpickler itself."""
    root = Path(__file__).resolve().parent.parent
    offenders = []
    for path in [*(root / "reprog_core").rglob("*.py"), *(root / "dashboard").rglob("*.py")]:
        if path.name == "safe_pickle.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            bad = (
                "pickle.load" in code
                or "allow_pickle=True" in code
                or ("torch.load(" in code and "weights_only=True" not in code)
            )
            if bad:
                offenders.append(f"{path.relative_to(root)}:{i}: {line.strip()}")
    assert not offenders, offenders


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


# ------------------------------------------------------------------------------ stored models
SMALL_SOURCE = dict(
    source_family="cnn",
    depth=1,
    width=8,
    source_data="animal",
    source_per_class=10,
    source_epochs=1,
    source_size=16,
    target_size=8,
)


def _weights(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REPROG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_stored_source_with_flipped_bytes_is_retrained(fresh_cache: Path, caplog) -> None:
    import torch

    from reprog_core.config import ExperimentConfig
    from reprog_core.source_model.training import load_or_train_source, stored_source_path

    cfg = ExperimentConfig(**SMALL_SOURCE)
    model, _ = load_or_train_source(cfg, device="cpu")
    good = _weights(model)
    path = stored_source_path(cfg)
    raw = bytearray(path.read_bytes())
    # 64 bytes of the first conv kernel's data, found by its bytes inside the (uncompressed) zip.
    kernel = next(v for v in good.values() if v.numel() * v.element_size() >= 64)
    at = raw.find(kernel.contiguous().view(-1).view(torch.uint8).numpy().tobytes()[:64])
    assert at > 0
    raw[at : at + 64] = bytes(b ^ 0xFF for b in raw[at : at + 64])
    path.write_bytes(bytes(raw))
    with caplog.at_level("WARNING"):
        model2, _ = load_or_train_source(cfg, device="cpu")
    assert "checksum mismatch" in caplog.text and "retraining" in caplog.text
    assert _same(_weights(model2), good), "the tampered weights were used"
    model3, _ = load_or_train_source(cfg, device="cpu")  # the retrained file is good again
    assert _same(_weights(model3), good)


def test_stored_source_with_nan_weights_is_retrained(fresh_cache: Path, caplog) -> None:
    import torch

    from reprog_core.config import ExperimentConfig
    from reprog_core.source_model import training

    cfg = ExperimentConfig(**SMALL_SOURCE)
    model, result = training.load_or_train_source(cfg, device="cpu")
    good = _weights(model)
    path = training.stored_source_path(cfg)
    stored = torch.load(path, weights_only=True)
    nan_state = {k: torch.full_like(v, float("nan")) for k, v in stored["state_dict"].items()}
    training.save_source(nan_state, stored["result"], path)  # a valid checksum over NaNs
    with caplog.at_level("WARNING"):
        model2, _ = training.load_or_train_source(cfg, device="cpu")
    assert "non-finite" in caplog.text
    assert _same(_weights(model2), good)
    # A file from before checksums (the old layout) is not trusted either.
    torch.save({"state_dict": nan_state, "result": stored["result"]}, path)
    caplog.clear()
    with caplog.at_level("WARNING"):
        model3, _ = training.load_or_train_source(cfg, device="cpu")
    assert "no checksum" in caplog.text and _same(_weights(model3), good)


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 16 KiB tmpfs, filled up (a real full disk); skipped where mounting is not allowed."""
    import subprocess

    mnt = tmp_path / "tiny"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        (mnt / "cache" / "sources").mkdir(parents=True)
        with open(mnt / "filler", "wb", buffering=0) as f:  # fill it: every write is ENOSPC
            try:
                while True:
                    f.write(b"\0" * 1024)
            except OSError:
                pass
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_source_model_on_a_full_disk(full_disk: Path, monkeypatch, caplog) -> None:
    from reprog_core.backend.errors import DiskFull
    from reprog_core.config import ExperimentConfig
    from reprog_core.source_model import training

    monkeypatch.setenv("REPROG_CACHE_DIR", str(full_disk / "cache"))
    cfg = ExperimentConfig(**SMALL_SOURCE)
    with caplog.at_level("WARNING"):
        model, result = training.load_or_train_source(cfg, device="cpu")
    assert result.source_test_acc >= 0  # the model serves this request
    line = f"disk full at {full_disk / 'cache'}: free space or set REPROG_CACHE_DIR"
    assert line in caplog.text
    assert list((full_disk / "cache" / "sources").iterdir()) == []  # no partial file left
    with pytest.raises(DiskFull) as err:
        training.save_source(model.state_dict(), result.to_dict(), training.stored_source_path(cfg))
    assert str(err.value) == line
