"""Train a source model on its source data set once; store it on disk; reuse it for the same config.

Training is deterministic for a seed on the CPU, stops early on a held-out validation split, and
reports source train and test accuracy. For ``clip-cnn`` only the head is trained, on frozen
backbone features computed once per data set.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import filelock
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reprog_core import data
from reprog_core.config import SOURCE_FIELDS, ExperimentConfig
from reprog_core.files import DiskFull, disk_full, is_disk_full, read_regular_file
from reprog_core.results import SourceResult
from reprog_core.runtime import cache_dir, resolve_device, rng_lock, seed_everything
from reprog_core.source_model import build_source_model, count_params, n_source_classes

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]
SOURCE_TEST_PER_CLASS = 200  # cap on source test images per class: keeps evaluation cheap
# Epochs without a validation improvement before stopping: training runs to a plateau, and
# ``source_epochs`` is only a CPU budget. 2 stopped the default source while it still improved
# (0.81 test accuracy after 8 epochs); with 3 it converges at 0.89-0.90 in 14-22 epochs.
PATIENCE = 3


@dataclass
class SourceData:
    """Source images resized to s x s. x_* (N, 3, s, s) float32 in [0, 1], y_* (N,) int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]


def source_data(cfg: ExperimentConfig) -> SourceData:
    """The source training/test images for ``cfg`` (subsampled per class, seeded)."""
    ds = data.load_dataset(cfg.source_data, cfg.data_root or None, seed=cfg.seed)
    ds = ds.subsample(cfg.source_per_class, cfg.seed, "train")
    ds = ds.subsample(SOURCE_TEST_PER_CLASS, cfg.seed, "test")
    s = cfg.source_size
    return SourceData(
        data.resize(ds.x_train, s), ds.y_train, data.resize(ds.x_test, s), ds.y_test, ds.classes
    )


def draw_seed(seed: int, draw: int) -> int:
    """The sampling seed of draw ``draw`` for config seed ``seed`` (distinct for every pair)."""
    return int(np.random.SeedSequence([seed, draw]).generate_state(1)[0])


def source_draws(
    cfg: ExperimentConfig, k_per_class: int = 10, draws: int = 3
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``draws`` samples of ``k_per_class`` images per class from the source training split, each
    with seed ``draw_seed(cfg.seed, d)``: what the source NTK is taken on (ntk/source.py)."""
    if draws < 1 or k_per_class < 1:
        raise ValueError(f"need draws >= 1 and k_per_class >= 1, got {draws}, {k_per_class}")
    sd = source_data(cfg)
    out = []
    for d in range(draws):
        idx = data.per_class_indices(sd.y_train, k_per_class, draw_seed(cfg.seed, d))
        out.append((sd.x_train[idx], sd.y_train[idx]))
    return out


STORE_FORMAT = 2  # 2: the file carries ``sha256`` of its content (``_content_digest``)
STORED_SOURCE_MAX_BYTES = 1 << 30  # a stored source model larger than this is not one of ours


class StoredSourceInvalid(ValueError):
    """A stored source model that must not be used: unreadable, tampered with, or not finite."""


# Below these, measured sources stayed far from converged (docs/results.md, "Why these
# defaults"): the default source needs 14-22 epochs of 300 images per class to reach its plateau.
MIN_CONVERGED_EPOCHS = 10
MIN_PER_CLASS = 100
# Source set-ups measured at or near chance with the pixel models (docs/results.md).
NEAR_CHANCE = {
    "shapes": "a pixel CNN trained on 'shapes' (random colours per image) stayed at chance "
    "(9.5 % test accuracy, 200 images per class, 2026-11-30)",
}


def near_chance(test_acc: float, n_classes: int) -> bool:
    """A source model this close to guessing says little about reprogramming (chance + 0.15)."""
    return test_acc < 1.0 / max(1, n_classes) + 0.15


def budget_warnings(cfg: ExperimentConfig) -> list[str]:
    """What a person should know *before* training this source: budgets that stop it before it
    converges, and set-ups measured near chance. Plain sentences, no markup."""
    out: list[str] = []
    if cfg.is_pretrained_classifier:
        return out  # nothing is trained here
    if cfg.source_epochs < MIN_CONVERGED_EPOCHS:
        out.append(
            f"The source model may stop before it converges: its budget is {cfg.source_epochs} "
            f"epoch(s), and the default source needs 14-22 epochs to reach its plateau."
        )
    if cfg.source_per_class < MIN_PER_CLASS:
        out.append(
            f"With {cfg.source_per_class} source images per class the source model is likely to "
            f"be weak or near chance (the default uses 300)."
        )
    if not cfg.uses_backbone and cfg.source_data in NEAR_CHANCE:
        out.append(f"Expect a source near chance: {NEAR_CHANCE[cfg.source_data]}.")
    return out


def stored_source_path(cfg: ExperimentConfig) -> Path:
    return cache_dir("sources") / f"{cfg.source_key()}.pt"


def load_or_train_source(
    cfg: ExperimentConfig,
    *,
    device: str | torch.device | None = None,
    progress: ProgressFn | None = None,
    retrain: bool = False,
) -> tuple[nn.Module, SourceResult]:
    """The trained, frozen source model for ``cfg`` and its record.

    The same source config never retrains: the trained weights are stored under the source key
    in ``cache_dir('sources')``, with a sha256 of their content. A stored file that cannot be
    read, whose checksum does not match (bytes flipped on disk, an edited file, an older file
    without a checksum), or whose weights are not all finite is discarded with a warning and the
    model retrained. When the trained model cannot be stored because the disk is full, it is
    still returned for this request, with the one-line warning "disk full at <cache dir>: ...".
    """
    dev = resolve_device(str(device) if device is not None else None)
    if cfg.is_pretrained_classifier:
        return load_pretrained_classifier(cfg, dev, progress)
    path = stored_source_path(cfg)
    # One trainer per source key, across threads and processes: a page that asks for the source
    # card, the kernel and the fit at once (each a backend job) trains the source once; the
    # others wait here and load it. An flock, so a killed trainer never leaves it held.
    try:
        lock = filelock.FileLock(str(cache_dir("locks") / f"{path.stem}.lock"))
        lock.acquire()
    except OSError:  # no room for the lock file (full disk) or a read-only store: go unlocked
        lock = None
    try:
        return _load_or_train(cfg, dev, path, progress, retrain)
    finally:
        if lock is not None:
            lock.release()


def _load_or_train(
    cfg: ExperimentConfig,
    dev: torch.device,
    path: Path,
    progress: ProgressFn | None,
    retrain: bool,
) -> tuple[nn.Module, SourceResult]:
    n_classes = n_source_classes(cfg)
    if path.exists() and not retrain:
        try:
            state, result_dict = read_stored_source(path)
            with rng_lock():  # the global RNGs are shared by the backend's threads
                seed_everything(cfg.seed)
                model = build_source_model(cfg, n_classes, device=dev)
            _trainable(model).load_state_dict(state)
            result = SourceResult(**result_dict)
            if progress:
                progress(1.0, "source model loaded from store")
            return _freeze(model.to(dev)), result
        except Exception as exc:  # noqa: BLE001 - any unusable store entry means: retrain
            log.warning("stored source model %s is not usable (%s); retraining", path.name, exc)
            path.unlink(missing_ok=True)
    model, result = train_source(cfg, device=dev, progress=progress)
    try:
        save_source(_trainable(model).state_dict(), result.to_dict(), path)
    except DiskFull as exc:
        log.warning("%s (the source model is used for this request, not stored)", exc)
    return model, result


def load_pretrained_classifier(
    cfg: ExperimentConfig, dev: torch.device, progress: ProgressFn | None = None
) -> tuple[nn.Module, SourceResult]:
    """A pretrained classifier used as it is (nothing trained, nothing stored: its weights come
    verified from their package), with its record: top-1 accuracy on the ImageNet sample photos
    at the source size s (``source_test_acc``: the inputs it sees here are s x s) and at its
    native 224 px (``native_test_acc``), or NaN where the photos are not installed."""
    from reprog_core.source_model import efficientnet  # lazy: timm

    t0 = time.perf_counter()
    if progress:
        progress(0.0, f"loading {cfg.source_family} ({cfg.weights} weights)")
    model = build_source_model(cfg, n_source_classes(cfg), device=dev)
    at_s, native = _photo_accuracy(cfg.source_family, cfg.weights, cfg.seed, cfg.source_size)
    n_photos = native[1] if native else 0
    result = SourceResult(
        key=cfg.source_key(),
        config={k: getattr(cfg, k) for k in SOURCE_FIELDS},
        weights=cfg.weights_label,
        source_train_acc=math.nan,
        source_test_acc=at_s[0] / at_s[1] if at_s else math.nan,
        n_params_trainable=0,
        n_params_frozen=count_params(model),
        epochs_run=0,
        seconds=time.perf_counter() - t0,
        history=[],
        stopped_by="pretrained" if cfg.weights != "random" else "random init",
        evaluated_on=(
            f"the {n_photos} labelled ImageNet validation photos shipped with "
            f"{efficientnet.SAMPLE_WHEEL}"
            if n_photos
            else f"nothing: the ImageNet sample photos ({efficientnet.SAMPLE_WHEEL}) are not "
            "installed"
        ),
        native_test_acc=native[0] / native[1] if native else None,
    )
    if progress:
        progress(1.0, "source model loaded")
    return _freeze(model), result


@functools.lru_cache(maxsize=16)
def _photo_accuracy(
    family: str, weights: str, seed: int, size: int
) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """(correct, total) on the sample photos at ``size`` and at 224 px, once per process."""
    from reprog_core.source_model import efficientnet

    model = efficientnet.EfficientNetLite0(size, weights, seed=seed)
    return (
        efficientnet.sample_photo_accuracy(model, size),
        efficientnet.sample_photo_accuracy(model, efficientnet.NATIVE_SIZE),
    )


def save_source(state: dict[str, torch.Tensor], result: dict, path: Path) -> None:
    """Store a trained source model's ``state`` and ``result`` record at ``path`` with the sha256
    of its content, atomically. Raises ``DiskFull`` ("disk full at <cache dir>: free space or set
    REPROG_CACHE_DIR") when the disk is full; nothing partial is left behind."""
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    payload = {
        "format": STORE_FORMAT,
        "state_dict": state,
        "result": result,
        "sha256": _content_digest(state, result),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)  # into memory first: the disk write below fails as a plain OSError
    try:
        _atomic_write_bytes(buf.getvalue(), path)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(cache_dir()) from None
        raise


def read_stored_source(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The state_dict and result record stored at ``path``, verified: raises
    ``StoredSourceInvalid`` when the checksum is missing or wrong or a weight is not finite."""
    # A regular file within a bound, read without blocking (a FIFO put in its place would hang
    # torch.load): anything else is a corrupt entry, retrained like a bad checksum.
    blob, _ = read_regular_file(str(path), STORED_SOURCE_MAX_BYTES)
    stored = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    if not isinstance(stored, dict) or "sha256" not in stored:
        raise StoredSourceInvalid("no checksum (written by an older version)")
    state, result = stored.get("state_dict"), stored.get("result")
    if not isinstance(state, dict) or not isinstance(result, dict):
        raise StoredSourceInvalid("not a stored source model")
    if _content_digest(state, result) != stored["sha256"]:
        raise StoredSourceInvalid("checksum mismatch: the file was changed or corrupted on disk")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise StoredSourceInvalid(f"non-finite weights in {', '.join(bad[:3])}")
    return state, result


def _content_digest(state: dict[str, torch.Tensor], result: dict) -> str:
    """sha256 over the record (canonical JSON) and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    h.update(json.dumps(result, sort_keys=True, default=str).encode())
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def train_source(
    cfg: ExperimentConfig, *, device: torch.device, progress: ProgressFn | None = None
) -> tuple[nn.Module, SourceResult]:
    """Train a fresh source model on ``cfg.source_data``; returns it frozen, with its record."""
    t0 = time.perf_counter()
    if progress:
        progress(0.0, "loading source data")
    sd = source_data(cfg)
    with rng_lock():  # the global RNGs are shared by the backend's threads
        gen = seed_everything(cfg.seed)
        model = build_source_model(cfg, len(sd.classes), device=device).to(device)
    trainable = _trainable(model)

    # The frozen backbone runs once per data set; the head trains on its stored features.
    if hasattr(model, "backbone"):
        from reprog_core.source_model.clip import backbone_features  # lazy: open_clip

        if progress:
            progress(0.02, "computing frozen backbone features")
        tag = f"{cfg.source_data}-s{cfg.source_size}-k{cfg.source_per_class}-seed{cfg.seed}"
        x_train = backbone_features(model.backbone, sd.x_train.to(device), cache_key=tag + "-train")
        x_test = backbone_features(model.backbone, sd.x_test.to(device), cache_key=tag + "-test")
    else:
        x_train, x_test = sd.x_train.to(device), sd.x_test.to(device)
    y_train, y_test = sd.y_train.to(device), sd.y_test.to(device)

    # Hold out 10% of the training images for early stopping.
    perm = torch.randperm(len(y_train), generator=gen).to(device)
    n_val = max(len(sd.classes), len(y_train) // 10)
    val_idx, fit_idx = perm[:n_val], perm[n_val:]

    lr = 1e-2 if cfg.ntk_init else 2e-3
    opt = torch.optim.Adam(trainable.parameters(), lr=lr)
    best_val, best_state, bad_epochs, history = -1.0, None, 0, []
    stopped_by = "epoch cap"
    batch = 64
    n_batches = (len(fit_idx) + batch - 1) // batch
    epoch = 0
    for epoch in range(1, cfg.source_epochs + 1):
        trainable.train()
        order = fit_idx[torch.randperm(len(fit_idx), generator=gen).to(device)]
        total = 0.0
        for b in range(n_batches):
            idx = order[b * batch : (b + 1) * batch]
            loss = F.cross_entropy(trainable(x_train[idx]), y_train[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"source training diverged (loss {loss.item()}) at epoch {epoch}; "
                    "try a smaller width or ntk_init=False"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            if progress:
                progress(
                    0.05 + 0.9 * ((epoch - 1) + (b + 1) / n_batches) / cfg.source_epochs,
                    f"training source model: epoch {epoch}/{cfg.source_epochs}",
                )
        val_acc = _accuracy(trainable, x_train[val_idx], y_train[val_idx])
        history.append({"epoch": epoch, "loss": total / len(fit_idx), "val_acc": val_acc})
        if val_acc > best_val:
            best_val, best_state, bad_epochs = val_acc, copy.deepcopy(trainable.state_dict()), 0
        else:
            bad_epochs += 1
            if bad_epochs >= PATIENCE:
                stopped_by = "plateau"
                break
    if best_state is not None:
        trainable.load_state_dict(best_state)
    result = SourceResult(
        key=cfg.source_key(),
        config={k: getattr(cfg, k) for k in SOURCE_FIELDS},
        weights=cfg.weights_label,
        source_train_acc=_accuracy(trainable, x_train, y_train),
        source_test_acc=_accuracy(trainable, x_test, y_test),
        n_params_trainable=count_params(trainable),
        n_params_frozen=count_params(model) - count_params(trainable),
        epochs_run=epoch,
        seconds=time.perf_counter() - t0,
        history=history,
        stopped_by=stopped_by,
    )
    if progress:
        progress(1.0, "source model trained")
    return _freeze(model), result


def _trainable(model: nn.Module) -> nn.Module:
    """The part of a source model that source training updates (the head for clip-cnn)."""
    return model.head if hasattr(model, "head") else model


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    was_training = model.training
    model.eval()
    correct = sum(
        (model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
        for i in range(0, len(y), batch)
    )
    model.train(was_training)
    return correct / max(1, len(y))


def _atomic_write_bytes(blob: bytes, path: Path) -> None:
    """Write to a temp file in the same folder, then rename: a crash never leaves half a file,
    and a failed write (a full disk) leaves no temp file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
