"""The result store under attack and under faults: planted pickles, a database locked by another
process, a corrupted page, a full disk (a real 1 MiB tmpfs when run as root).

Every test here fails on the store before issue 9: it unpickled rows, moved the whole store aside
on a locked or full database, and ended ``cache clear`` / ``cache ls`` in a traceback on a
corrupted page.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache
import pytest

from reprog_core.backend import (
    Backend,
    DiskFull,
    Store,
    StoreBusy,
    cache_clear,
    cache_info,
    cache_ls,
)
from reprog_core.backend import store as store_mod
from tests.integration.payload import CFG, payload_task, runs

PROJECT = Path(__file__).resolve().parents[2]


TASKS = {"robust-payload": payload_task}


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    b = Backend(cache_dir=tmp_path / "cache", device="cpu", cpu_workers=1, tasks=TASKS)
    yield b
    b.close()


class Planted:
    """A pickle that creates ``path`` when unpickled (as a code-running pickle would)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


# ------------------------------------------------------------------------------ item 3: no pickle
@pytest.mark.parametrize("where", ["in-database", "in-file"])
def test_a_pickled_row_is_never_unpickled(backend, tmp_path, where):
    canary = tmp_path / "canary"
    counter = tmp_path / "count"
    params = {"counter": str(counter)}
    key = backend.key("robust-payload", CFG, params)
    value: Any = Planted(canary)
    if where == "in-file":  # over diskcache's 32 KiB: the pickle lives in its own value file
        value = (Planted(canary), "p" * 100_000)
    plain = diskcache.Cache(str(backend.store.directory))  # diskcache's pickling Disk
    plain.set(key, value)
    mode, filename = plain._sql("SELECT mode, filename FROM Cache WHERE key = ?", (key,)).fetchone()
    assert mode == diskcache.core.MODE_PICKLE and (filename is None) == (where == "in-database")
    plain.close()

    assert backend.get("robust-payload", CFG, params) is None  # discarded as corrupt
    assert not canary.exists()
    assert backend.run("robust-payload", CFG, params)["cache"] == "computed"
    assert backend.run("robust-payload", CFG, params)["cache"] == "hit"
    assert runs(counter) == 1 and not canary.exists()


def test_a_pickled_key_is_never_unpickled_by_ls_or_clear(backend, tmp_path):
    canary = tmp_path / "canary"
    backend.run("robust-payload", CFG, {"counter": str(tmp_path / "count")})
    plain = diskcache.Cache(str(backend.store.directory))
    plain.set(Planted(canary), b"planted")  # a key that is not str/bytes: diskcache pickles it
    plain.close()

    assert [e["kind"] for e in cache_ls(backend)] == ["robust-payload"]
    assert cache_info(backend)["count"] == 2
    assert cache_clear(backend) == 2 and cache_info(backend)["count"] == 0
    assert not canary.exists()


def test_a_row_naming_a_file_outside_the_store_neither_reads_nor_deletes_it(backend, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    params = {"counter": str(tmp_path / "count"), "pad": 100_000}
    key = backend.run("robust-payload", CFG, params)["key"]
    con = sqlite3.connect(backend.store.directory / "cache.db")
    con.execute("UPDATE Cache SET filename = ? WHERE key = ?", ("../../victim.txt", key))
    con.commit()
    con.close()

    assert backend.get("robust-payload", CFG, params) is None
    assert victim.read_text() == "keep me"
    assert backend.run("robust-payload", CFG, params)["cache"] == "computed"


def test_the_store_refuses_to_pickle(tmp_path):
    store = Store(tmp_path / "results")
    with pytest.raises(TypeError):
        store.cache.set(("a", "tuple", "key"), b"x")
    store.cache.set("json", {"eigenvalues": [1.0, 2.0]})  # JSON, under SafeDisk's own tag
    assert store.cache.get("json") == {"eigenvalues": [1.0, 2.0]}
    assert store.get_json("json") is None  # not a result entry: discarded
    store.close()


# ------------------------------------------------------------------------------ item 7: locked
HOLD_LOCK = """
import select, sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
select.select([sys.stdin], [], [], 120)  # held until the test releases it (at most 2 minutes)
con.execute("ROLLBACK")
"""


def hold_lock(db: Path) -> subprocess.Popen[str]:
    """A process holding an exclusive lock on ``db`` until ``release(proc)``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(10)


def test_a_locked_database_is_waited_for_never_set_aside(tmp_path):
    directory = tmp_path / "cache" / "results"
    store = Store(directory)
    assert store.put("k1", "t", '{"a":1}')
    store.close()

    holder = hold_lock(directory / "cache.db")
    try:
        busy = Store(directory, busy_timeout_s=0.5)  # opened while another process writes
        assert busy.read_only == "locked by another process"
        assert busy.get("k1") == {"a": 1} and len(busy) == 1  # reads still served
        assert [e.key for e in busy.entries()] == ["k1"]
        with pytest.raises(StoreBusy, match="locked by another process.*nothing was lost"):
            busy.put("k2", "t", '{"a":2}')
        assert holder.poll() is None  # it gave up while the lock was still held
    finally:
        release(holder)
    assert store.corrupt_folders() == [] and sorted(os.listdir(directory.parent)) == ["results"]
    assert busy.put("k2", "t", '{"a":2}')  # the lock is gone: writable again by itself
    assert busy.read_only is None and len(busy) == 2 and busy.get("k1") == {"a": 1}
    busy.close()


def test_cache_info_waits_out_a_lock_and_loses_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROG_CACHE_TIMEOUT_S", "0.5")
    first = Backend(cache_dir=tmp_path / "cache", device="cpu", cpu_workers=1, tasks=TASKS)
    first.run("robust-payload", CFG, {"counter": str(tmp_path / "count")})
    first.close()
    holder = hold_lock(first.store.db_path)
    try:
        second = Backend(cache_dir=tmp_path / "cache", device="cpu", cpu_workers=1, tasks=TASKS)
        info = cache_info(second)
        assert info["count"] == 1 and info["corrupt"] == []
        assert info["read_only"] == "locked by another process"
        with pytest.raises(StoreBusy):
            cache_clear(second)
    finally:
        release(holder)
    assert cache_info(second)["count"] == 1
    assert second.run("robust-payload", CFG, {"counter": str(tmp_path / "count")})["cache"] == "hit"
    second.close()


# ------------------------------------------------------------------------------ item 7: corrupt
def fill(directory: Path, n: int = 300) -> None:
    store = Store(directory)
    for i in range(n):
        store.put(f"k{i:03d}", "t", json.dumps({"i": i, "pad": "p" * 150}))
    store.close()


def corrupt_a_page(db: Path) -> None:
    """Overwrite one page in the middle of the database (not its header) with 0xff."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = con.execute("PRAGMA page_size").fetchone()[0]
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    with open(db, "r+b") as f:
        f.seek(page * (pages // 2))
        f.write(b"\xff" * page)


def fill_and_corrupt_a_page(directory: Path, n: int = 300) -> None:
    fill(directory, n)
    corrupt_a_page(directory / "cache.db")


def test_a_corrupted_page_is_detected_rebuilt_and_admin_commands_work(tmp_path):
    root = tmp_path / "cache"
    fill_and_corrupt_a_page(root / "results")
    backend = Backend(cache_dir=root, device="cpu", cpu_workers=1, tasks=TASKS)

    info = cache_info(backend)
    assert len(info["corrupt"]) == 1 and info["corrupt"][0]["size"] > 0
    assert Path(info["corrupt"][0]["dir"]).name.startswith("results.corrupt-")
    assert store_mod.integrity_problem(backend.store.db_path) is None  # the new one is sound
    kept = cache_ls(backend)
    assert 0 < len(kept) <= 300 and info["count"] == len(kept)  # what verified was kept
    assert backend.store.get(kept[0]["key"])["pad"] == "p" * 150

    counter = tmp_path / "count"
    backend.run("robust-payload", CFG, {"counter": str(counter)})  # results are stored again
    assert backend.run("robust-payload", CFG, {"counter": str(counter)})["cache"] == "hit"
    assert cache_clear(backend) == len(kept) + 1
    after = cache_info(backend)
    assert after["count"] == 0 and after["corrupt"] == []
    assert not list(root.glob("results.corrupt-*"))
    backend.close()


def test_a_store_rebuilt_by_another_process_is_reopened(tmp_path):
    directory = tmp_path / "cache" / "results"
    fill(directory, 200)
    server = Store(directory)  # a long-running server, open before the damage
    corrupt_a_page(directory / "cache.db")

    cli = Store(directory)  # another process detects it and sets it aside
    (aside,) = cli.corrupt_folders()
    assert server.put("late", "t", '{"pad":"%s"}' % ("x" * 100_000))  # a value file
    assert cli.get("late") == {"pad": "x" * 100_000}  # in the new store
    assert not list(aside.rglob("*.val"))  # no orphan value file in the moved one
    assert len(list(directory.rglob("*.val"))) == 1
    cli.close()
    server.close()


# ------------------------------------------------------------------------------ item 9: full disk
def test_database_full_at_open_is_not_corruption(tmp_path, monkeypatch):
    directory = tmp_path / "results"
    store = Store(directory)
    store.put("k1", "t", '{"a":1}')
    store.close()

    def full(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store_mod, "_SafeCache", full)
    ro = Store(directory)
    assert ro.read_only == "disk full" and ro.get("k1") == {"a": 1} and len(ro) == 1
    with pytest.raises(
        DiskFull, match=r"^disk full at .*results: free space or set REPROG_CACHE_DIR$"
    ):
        ro.put("k2", "t", "{}")
    assert ro.corrupt_folders() == []
    monkeypatch.undo()  # space is back
    assert ro.put("k2", "t", '{"a":2}') and ro.read_only is None and len(ro) == 2
    ro.close()


def test_enospc_writing_a_value_file_leaves_no_partial_file(tmp_path, monkeypatch):
    store = Store(tmp_path / "results")
    real_write = store_mod.diskcache.Disk._write

    def half_then_full(self, full_path, iterator, mode, encoding=None):
        def chunks() -> Iterator[bytes]:
            yield b"half"
            raise OSError(errno.ENOSPC, "No space left on device")

        return real_write(self, full_path, chunks(), mode, encoding)

    monkeypatch.setattr(store_mod.diskcache.Disk, "_write", half_then_full)
    with pytest.raises(DiskFull):
        store.put("big", "t", '{"pad":"%s"}' % ("x" * 100_000))
    monkeypatch.setattr(store_mod.diskcache.Disk, "_write", real_write)
    assert not list((tmp_path / "results").rglob("*.val")) and len(store) == 0
    assert store.put("big", "t", '{"pad":"%s"}' % ("x" * 100_000))
    store.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (root only; skipped where it cannot be mounted)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_disk(mnt: Path) -> Path:
    """Write a filler file until the disk is full; returns it."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REPROG_CACHE_DIR": str(cache), "REPROG_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "reprog_core", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT,
        timeout=120,
    )


@pytest.mark.slow
def test_full_disk_loses_nothing_admin_works_and_service_resumes(tiny_disk, tmp_path):
    cache = tiny_disk / "cache"
    params = {"counter": str(tmp_path / "count"), "pad": 60_000}  # counter: off the tiny disk
    backend = Backend(cache_dir=cache, device="cpu", cpu_workers=1, tasks=TASKS)
    stored = [backend.run("robust-payload", CFG.replace(depth=d), params) for d in (1, 2, 3)]
    filler = fill_disk(tiny_disk)

    new = backend.run("robust-payload", CFG.replace(depth=4), params)
    assert new["cache"] == "computed" and new["pad"] == "x" * 60_000  # the result is still returned
    full = f"disk full at {cache / 'results'}: free space or set REPROG_CACHE_DIR"
    assert new["warnings"] == [full]
    for r in stored:  # nothing already stored is lost or moved
        assert backend.store.get(r["key"])["pad"] == "x" * 60_000
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == [
        "locks",
        "results",
    ]
    backend.close()
    del backend, r
    gc.collect()  # the worker threads' connections too: the last one removes the -wal and -shm
    assert not list((cache / "results").glob("cache.db-*"))
    # What a process that tried to open the store on the full disk leaves: an empty WAL and a
    # shared-memory file it could not extend (seen with `fit` on a full 2 MiB tmpfs).
    filler.unlink()
    (cache / "results" / "cache.db-wal").write_bytes(b"")
    (cache / "results" / "cache.db-shm").write_bytes(b"\0\0\0")
    filler = fill_disk(tiny_disk)

    # A new process (the CLI) on the full disk: the admin commands work, read-only.
    info = cli("cache", "info", cache=cache)
    assert info.returncode == 0, info.stderr
    assert "count: 3" in info.stdout and "corrupt: []" in info.stdout
    assert "read_only: disk full" in info.stdout
    ls = cli("cache", "ls", cache=cache)
    assert ls.returncode == 0 and len(ls.stdout.splitlines()) == 3, ls.stderr
    clear = cli("cache", "clear", cache=cache)  # cannot write: says so in one line, loses nothing
    assert clear.returncode == 1 and clear.stderr == f"python -m reprog_core cache: {full}\n"

    # A server started now.
    backend = Backend(cache_dir=cache, device="cpu", cpu_workers=1, tasks=TASKS)
    assert backend.store.read_only == "disk full"
    assert len(cache_ls(backend)) == 3 and not list(cache.parent.glob("results.corrupt-*"))
    for d in (1, 2, 3):  # still served from the store
        assert backend.run("robust-payload", CFG.replace(depth=d), params)["cache"] == "hit"
    assert len(list(cache.rglob("*.val"))) == 3  # no orphan value file from the failed write

    filler.unlink()  # space is back: the same backend stores again
    again = backend.run("robust-payload", CFG.replace(depth=4), params)
    assert again["cache"] == "computed" and "warnings" not in again
    assert backend.store.read_only is None
    assert backend.run("robust-payload", CFG.replace(depth=4), params)["cache"] == "hit"
    assert cache_info(backend)["count"] == 4
    backend.close()
