"""Issue 17, the last integrity holes, each attacked with real files: checkpoint names that are
links out of the weights folder, store rows that would hang (a FIFO) or crash (JSON nested
100 000 deep), a feature cache with its samples permuted, a store whose database was truncated to
0 bytes or whose settings were edited, and a disk that is full before the first result.

Each test here fails (or hangs, cut short by a timeout) on the code before issue 17.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reprog_core.backend import Backend, Store, cache_info, cache_ls
from reprog_core.config import ExperimentConfig
from tests.integration.payload import CFG, payload_task, runs

TASKS = {"integrity-payload": payload_task}


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    b = Backend(cache_dir=tmp_path / "cache", device="cpu", cpu_workers=1, tasks=TASKS)
    yield b
    b.close()


def within(fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    """``fn()`` in a thread; the test fails (instead of hanging) if it blocks."""
    out: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"blocked for {timeout} s"
    if errors:
        raise errors[0]
    return out[0]


def release_fifo(fifo: Path) -> None:
    """Unblock whoever opened ``fifo`` for reading (so a failing test leaves no stuck thread)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# ------------------------------------------------------------------------------ 1: checkpoints
@pytest.fixture
def weights_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$REPROG_WEIGHTS_DIR with one real checkpoint, a link to it, and every kind of name that
    must not count: links out of the folder, a FIFO, a folder, a broken link, a link loop."""
    from reprog_core.source_model.clip import load_backbone, save_checkpoint

    folder = tmp_path / "weights"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    bb = load_backbone("tiny-vit", "random", "cpu", seed=3)
    save_checkpoint(bb, folder / "mine.pt")
    save_checkpoint(bb, outside / "other.pt")  # a real, loadable checkpoint outside the folder
    (folder / "inside-link.pt").symlink_to("mine.pt")
    (folder / "out-link.pt").symlink_to(outside / "other.pt")
    (folder / "rel-out.pt").symlink_to("../elsewhere/other.pt")
    (folder / "passwd.pt").symlink_to("/etc/passwd")
    os.mkfifo(folder / "fifo.pt")
    (folder / "dir.pt").mkdir()
    (folder / "broken.pt").symlink_to("nowhere.pt")
    (folder / "loop.pt").symlink_to("loop.pt")
    monkeypatch.setenv("REPROG_WEIGHTS_DIR", str(folder))
    monkeypatch.chdir(outside)  # a name must not fall back to a file of the working folder
    return folder


REFUSED = ["out-link.pt", "rel-out.pt", "passwd.pt", "fifo.pt", "dir.pt", "broken.pt", "loop.pt"]


def test_checkpoint_names_resolve_inside_the_weights_folder_only(weights_folder: Path) -> None:
    from reprog_core.source_model.clip import (
        BackboneWeightsError,
        check_weights,
        list_named_checkpoints,
        named_checkpoint,
    )

    # The sidebar's list: only what really lies in the folder as a regular file.
    assert within(list_named_checkpoints) == ["inside-link.pt", "mine.pt"]
    assert named_checkpoint("inside-link.pt") == (weights_folder / "mine.pt").resolve()
    for name in REFUSED:
        assert within(lambda name=name: named_checkpoint(name)) is None, name
        with pytest.raises(BackboneWeightsError) as err:  # a URL's check
            within(lambda name=name: check_weights("tiny-vit", name, allow_paths=False))
        assert str(weights_folder) not in str(err.value) and "/etc" not in str(err.value)
    assert check_weights("tiny-vit", "inside-link.pt", allow_paths=False) == "named"


def test_a_link_out_of_the_weights_folder_is_never_loaded(weights_folder: Path) -> None:
    from reprog_core.source_model.clip import BackboneWeightsError, load_backbone

    for name in ("out-link.pt", "passwd.pt", "fifo.pt"):
        with pytest.raises(BackboneWeightsError):
            within(lambda name=name: load_backbone("tiny-vit", name, "cpu"))
    bb = load_backbone("tiny-vit", "inside-link.pt", "cpu")  # a link inside the folder is fine
    assert bb.weights_label == "inside-link.pt" and bb.weights_kind == "file"
    assert (
        bb.weights_sha256 == hashlib.sha256((weights_folder / "mine.pt").read_bytes()).hexdigest()
    )


# ------------------------------------------------------------------------------ 2: store rows
def test_a_value_file_replaced_by_a_fifo_is_discarded_not_waited_on(backend, tmp_path, caplog):
    counter = tmp_path / "count"
    params = {"counter": str(counter), "pad": 100_000}  # over 32 KiB: a value file of its own
    backend.run("integrity-payload", CFG, params)
    (val,) = backend.store.directory.rglob("*.val")
    val.unlink()
    os.mkfifo(val)
    try:
        with caplog.at_level(logging.WARNING, "reprog_core.backend"):
            assert within(lambda: cache_ls(backend)) == []  # `cache ls`: discarded, not listed
        assert len(warnings_about(caplog, "discarding corrupt cache entry")) == 1
        assert "a FIFO" in caplog.text
        assert not val.exists()  # the row and its FIFO are gone
        val.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(val)  # again, now for `fit`: the request path
        key = backend.key("integrity-payload", CFG, params)
        con = sqlite3.connect(backend.store.db_path)
        con.execute(
            "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, tag, size, mode,"
            " filename, value) VALUES (?, 1, 0, NULL, 0, NULL, 0, 1, ?, NULL)",
            (key, str(val.relative_to(backend.store.directory))),
        )
        con.commit()
        con.close()
        result = within(lambda: backend.run("integrity-payload", CFG, params, timeout=30))
        assert result["cache"] == "computed" and runs(counter) == 2
        assert backend.run("integrity-payload", CFG, params)["cache"] == "hit"
    finally:
        release_fifo(val)


def entry(key: str, kind: str, payload: bytes, header: bytes | None = None) -> bytes:
    """A stored entry as ``Store.put`` writes it, with a correct checksum over any payload."""
    head = (
        header
        or json.dumps(
            {
                "format": 1,
                "key": key,
                "kind": kind,
                "created": time.time(),
                "size": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
            },
            sort_keys=True,
        ).encode()
    )
    return head + b"\n" + payload


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "what",
    ["deep-payload", "deep-object", "deep-header", "list-payload", "not-json", "deep-file"],
)
def test_a_row_that_would_crash_the_reader_is_discarded_and_recomputed(
    backend, tmp_path, caplog, what
):
    counter = tmp_path / "count"
    params = {"counter": str(counter)}
    key = backend.key("integrity-payload", CFG, params)
    payload = {
        "deep-payload": DEEP,
        "deep-object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        "list-payload": b"[1,2,3]",
        "not-json": b'{"a": nope}',
        "deep-file": b'{"pad":"' + b"p" * 40_000 + b'","x":' + DEEP + b"}",
    }.get(what, b'{"depth":3}')
    header = DEEP if what == "deep-header" else None
    backend.store.cache.set(key, entry(key, "integrity-payload", payload, header), retry=False)
    with caplog.at_level(logging.WARNING, "reprog_core.backend"):
        assert backend.get("integrity-payload", CFG, params) is None  # no RecursionError
    assert len(warnings_about(caplog, "discarding corrupt cache entry")) == 1
    assert backend.run("integrity-payload", CFG, params)["cache"] == "computed"
    assert backend.run("integrity-payload", CFG, params)["cache"] == "hit"
    assert runs(counter) == 1


def test_a_value_file_over_the_size_limit_or_a_link_is_not_read(tmp_path, caplog):
    store = Store(tmp_path / "results", size_limit_bytes=1024**2)
    assert store.put("big", "t", json.dumps({"pad": "x" * 100_000}))
    assert store.put("linked", "t", json.dumps({"pad": "y" * 100_000}))
    (big, linked) = sorted(
        (tmp_path / "results").rglob("*.val"), key=lambda p: b"y" in p.read_bytes()
    )
    with open(big, "ab") as f:  # grows past the store's size limit
        f.truncate(2 * 1024**2)
    outside = tmp_path / "outside.val"
    outside.write_bytes(linked.read_bytes())  # a valid entry, but not the store's own file
    linked.unlink()
    linked.symlink_to(outside)
    with caplog.at_level(logging.WARNING, "reprog_core.backend"):
        assert store.get("big") is None and store.get("linked") is None
    assert "over the 1048576-byte bound" in caplog.text and "symbolic link" in caplog.text
    assert outside.exists() and len(store) == 0
    store.close()


# ------------------------------------------------------------------------------ 3: features
def test_a_permuted_feature_file_is_recomputed_with_a_warning(tmp_path, monkeypatch, caplog):
    import torch

    from reprog_core.runtime import cache_dir
    from reprog_core.source_model.clip import backbone_features, load_backbone

    monkeypatch.setenv("REPROG_CACHE_DIR", str(tmp_path / "cache"))
    bb = load_backbone("tiny-vit", "random", "cpu", seed=0)
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    first = backbone_features(bb, x, cache_key="integrity")
    (path,) = cache_dir("features").glob("integrity-*.pt")
    stored = torch.load(path, weights_only=True)
    perm = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])
    stored["features"] = stored["features"][perm].clone()  # same shape, samples swapped
    with open(path, "wb") as f:
        torch.save(stored, f)
    with caplog.at_level(logging.WARNING):
        again = backbone_features(bb, x, cache_key="integrity")
    assert torch.equal(again, first), "the permuted features were used"
    assert "checksum mismatch" in caplog.text and "recomputing" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the recomputed file is good again
        assert torch.equal(backbone_features(bb, x, cache_key="integrity"), first)
    assert caplog.text == ""

    # A file from before checksums, a FIFO and a link are not used either (and nothing blocks).
    del stored["sha256"]
    with open(path, "wb") as f:
        torch.save(stored, f)
    with caplog.at_level(logging.WARNING):
        assert torch.equal(backbone_features(bb, x, cache_key="integrity"), first)
    assert "no checksum" in caplog.text
    path.unlink()
    os.mkfifo(path)
    try:
        assert torch.equal(within(lambda: backbone_features(bb, x, cache_key="integrity")), first)
    finally:
        release_fifo(path)
    assert path.is_file() and not path.is_symlink()


# ------------------------------------------------------------------------------ 4: metadata
def test_orphans_of_a_database_truncated_to_zero_bytes_are_swept_and_counted(tmp_path, caplog):
    directory = tmp_path / "results"
    store = Store(directory)
    for i in range(5):
        assert store.put(f"k{i}", "t", json.dumps({"i": i, "pad": "p" * 50_000}))
    store.close()
    assert len(list(directory.rglob("*.val"))) == 5
    for name in ("cache.db-wal", "cache.db-shm"):
        (directory / name).unlink(missing_ok=True)
    os.truncate(directory / "cache.db", 0)

    with caplog.at_level(logging.WARNING, "reprog_core.backend"):
        store = Store(directory)
    assert list(directory.rglob("*.val")) == []  # no orphan left, nothing held beyond `size`
    assert store.repairs and "removed 5 orphaned value file(s)" in store.repairs[0]
    assert "removed 5 orphaned value file(s)" in caplog.text
    assert len(store) == 0 and store.volume() < 200_000
    assert store.put("k0", "t", json.dumps({"i": 0, "pad": "p" * 50_000}))
    assert len(list(directory.rglob("*.val"))) == 1
    store.close()


def test_an_empty_store_sweeps_only_orphans_older_than_a_minute(tmp_path):
    directory = tmp_path / "results"
    Store(directory).close()
    old = directory / "ab" / "cd" / "old.val"
    new = directory / "ab" / "cd" / "new.val"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x" * 1000)
    new.write_bytes(b"y" * 1000)  # perhaps another process's entry, its row not yet committed
    os.utime(old, (time.time() - 120, time.time() - 120))
    store = Store(directory)
    assert not old.exists() and new.exists()
    assert store.repairs == [
        "removed 1 orphaned value file(s), 1000 bytes, that no database row refers to"
    ]
    store.close()


def test_invalid_settings_are_reset_with_a_warning(tmp_path, caplog):
    directory = tmp_path / "cache" / "results"
    store = Store(directory)
    assert store.put("k1", "t", '{"a":1}')
    store.close()
    con = sqlite3.connect(directory / "cache.db")
    for key, value in [
        ("eviction_policy", "bogus"),
        ("sqlite_journal_mode", "wal; DROP TABLE Cache"),
        ("cull_limit", "ten"),
        ("size", "lots"),
        ("count", -7),
    ]:
        con.execute("UPDATE Settings SET value = ? WHERE key = ?", (value, key))
    con.execute("INSERT INTO Settings VALUES ('close', 1)")  # would shadow Cache.close
    con.commit()
    con.close()

    with caplog.at_level(logging.WARNING, "reprog_core.backend"):
        backend = Backend(cache_dir=directory.parent, device="cpu", cpu_workers=1, tasks=TASKS)
    store = backend.store
    assert store.get("k1") == {"a": 1} and len(store) == 1  # nothing stored was lost
    text = "\n".join(store.repairs)
    for needle in (
        "eviction_policy='bogus' is not valid; reset to 'least-recently-stored'",
        "sqlite_journal_mode='wal; DROP TABLE Cache' is not valid; reset to 'wal'",
        "cull_limit='ten' is not valid; reset to 10",
        "size='lots' is not valid; reset to 0",
        "count=-7 is not valid; reset to 1",
        "unknown setting 'close' removed",
    ):
        assert needle in text and needle in caplog.text, needle
    assert cache_info(backend)["repaired"] == store.repairs
    assert store.put("k2", "t", '{"a":2}') and len(store) == 2
    backend.close()
    store = Store(directory)  # repaired for good: nothing to say the next time
    assert store.repairs == [] and store.get("k2") == {"a": 2}
    store.close()


# ------------------------------------------------------------------------------ 5: full disk
# A source model small enough to train in a second or two (the request path of `fit` and
# `train-source` is the same up to the task: look up the store, compute, store).
TINY = (
    "--source-family cnn --source-data animal --target digits --width 8 --depth 1 "
    "--source-per-class 20 --source-epochs 1 --source-size 16 --target-size 8"
).split()


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``mount_tmpfs(options)``: a real tmpfs (root only; skipped where it cannot be mounted)."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        mnt = tmp_path / f"tmpfs{len(mounted)}"
        mnt.mkdir()
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True
        )
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path) -> None:
    """Fill ``mnt`` until every write is ENOSPC."""
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_cli_on_a_disk_full_before_the_first_result(mount_tmpfs, run_cli, monkeypatch):
    mnt = mount_tmpfs("size=64k")
    fill(mnt)
    cache = mnt / "cache"  # no cache yet
    monkeypatch.setenv("REPROG_CACHE_DIR", str(cache))
    proc = run_cli("train-source", *TINY, check=False)
    full = f"disk full at {cache / 'results'}: free space or set REPROG_CACHE_DIR"
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"python -m reprog_core train-source: warning: {full}\n" in proc.stderr  # as later
    assert "test acc" in proc.stdout and "[computed]" in proc.stdout
    for action in ("info", "ls"):
        assert run_cli("cache", action, check=False).returncode == 0


def test_cli_when_not_even_the_cache_folder_fits(mount_tmpfs, run_cli, monkeypatch):
    mnt = mount_tmpfs("size=64k,nr_inodes=2")  # the root folder and the filler: no inode left
    fill(mnt)
    cache = mnt / "cache"
    monkeypatch.setenv("REPROG_CACHE_DIR", str(cache))
    for argv in (["train-source", *TINY], ["cache", "info"]):
        proc = run_cli(*argv, check=False)
        line = f"disk full at {cache}: free space or set REPROG_CACHE_DIR"
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr == f"python -m reprog_core {argv[0]}: {line}\n"


# ------------------------------------------------------------------------------ stored sources
def test_a_stored_source_replaced_by_a_fifo_is_retrained_not_waited_on(tmp_path, monkeypatch):
    """A stored source model is read like the store's own files: a FIFO in its place (torch.load
    would block on it) is a corrupt entry, and the source is trained again."""
    from reprog_core.source_model.training import load_or_train_source, stored_source_path
    from tests.configs import PIXEL

    monkeypatch.setenv("REPROG_CACHE_DIR", str(tmp_path / "cache"))
    cfg = ExperimentConfig(
        **{**PIXEL, "source_size": 12, "depth": 1, "width": 4},
        source_per_class=10,
        source_epochs=1,
    )
    _, first = load_or_train_source(cfg, device="cpu")
    path = stored_source_path(cfg)
    path.unlink()
    os.mkfifo(path)
    try:
        _, again = within(lambda: load_or_train_source(cfg, device="cpu"), timeout=60)
    finally:
        release_fifo(path)
    assert again.source_test_acc == first.source_test_acc  # retrained: the same seeded model
    assert path.is_file()
