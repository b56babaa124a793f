"""The trust boundaries of SECURITY.md for stored source models: checksummed, retrained when
damaged, and nothing partial left on a full disk (each trains a small source model). The other
boundaries: tests/unit/test_security.py."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    from reprog_core.config import ExperimentConfig
    from reprog_core.files import DiskFull  # what a computation raises (the backend: a subclass)
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
