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
