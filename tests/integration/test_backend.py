"""The cached compute backend: dedup, cross-process locks, faults, cancellation, limits, store.

The tasks here are small sleep-and-count functions, so these tests exercise the backend's logic,
not the models. Computations are counted by appending a line per run to a file, which works
across threads and processes alike.
"""

from __future__ import annotations

import ast
import errno
import gc
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reprog_core.backend import (
    Backend,
    Cancelled,
    JobStatus,
    Limits,
    OutOfMemory,
    OverBudget,
    Progress,
    TaskFailed,
    TaskSpec,
    UnknownTask,
    WorkerCrashed,
    cache_clear,
    cache_info,
    cache_ls,
    warm,
)
from reprog_core.config import ExperimentConfig
from reprog_core.sweep.grid import build_grid, warm_items
from tests.configs import PIXEL

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parents[1]
# A pixel config: its depth is part of every key (a pretrained classifier's is not), so
# CFG.replace(depth=...) is another request.
CFG = ExperimentConfig(**PIXEL)


# --------------------------------------------------------------------------- test tasks
# Module-level, so that they pickle by reference: a worker process gets them by importing this
# module.
def count_task(cfg: ExperimentConfig, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Append a line to ``params['counter']``, sleep ``params['seconds']``, return a record with
    a small 'gram' and optionally a large 'pad' string (so the entry lives in its own file)."""
    with open(params["counter"], "a") as f:
        f.write(f"{os.getpid()}\n")
    seconds = float(params.get("seconds", 0.0))
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        progress.update((time.monotonic() - start) / seconds, "counting")
        time.sleep(0.01)
    progress.update(1.0, "counted")
    return {
        "depth": cfg.depth,
        "curve": [1.0, 0.5, 0.25],
        "spectrum": {"eigenvalues": [3.0, 2.0, 1.0], "gram": [[1.0, 0.0], [0.0, 1.0]]},
        "gram": [[2.0, 1.0], [1.0, 2.0]],
        "pad": "x" * int(params.get("pad", 0)),
    }


def pid_task(cfg: ExperimentConfig, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Write this process's id to ``params['pid_file']``. The first attempt then runs for up to
    30 s (long enough to be killed); later attempts return at once."""
    pid_file = Path(params["pid_file"])
    first = not pid_file.exists()
    with open(pid_file, "a") as f:
        f.write(f"{os.getpid()}\n")
    if first:
        for _ in range(3000):
            progress.update(0.5, "waiting to be killed")
            time.sleep(0.01)
    attempts = len(pid_file.read_text().split())
    return {"attempt": attempts, "pid": os.getpid()}


GATES: dict[str, threading.Event] = {}
EVENTS: dict[str, list[str]] = {}


def gate_task(cfg: ExperimentConfig, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Block until ``GATES[params['gate']]`` is set; records 'started' / 'cancelled'."""
    name = params["gate"]
    EVENTS.setdefault(name, []).append("started")
    try:
        while not GATES[name].wait(0.01):
            progress.update(0.5, "at the gate")
    except Cancelled:
        EVENTS[name].append("cancelled")
        raise
    return {"gate": name}


class SimulatedOutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, without needing CUDA."""


SimulatedOutOfMemoryError.__name__ = "OutOfMemoryError"


def stubborn_task(cfg: ExperimentConfig, params: dict[str, Any], progress: Progress) -> dict:
    """Ignores cancellation: sleeps without ever calling progress."""
    Path(params["pid_file"]).write_text(f"{os.getpid()}\n")
    time.sleep(30)
    return {}


def oom_task(cfg: ExperimentConfig, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    if params.get("how") == "cuda":
        raise SimulatedOutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")
    raise MemoryError("cannot allocate 40 GiB")


class KernelTooLarge(RuntimeError):
    over_budget = True


def budget_task(cfg: ExperimentConfig, params: dict[str, Any], progress: Progress) -> dict:
    raise KernelTooLarge("a full 64000 x 64000 kernel needs 32 GB; the budget is 4 GB")


def fail_task(cfg: ExperimentConfig, params: dict[str, Any], progress: Progress) -> dict:
    raise ValueError("the prompt went NaN")


def fake_explore(cfg: ExperimentConfig, params: dict[str, Any], progress: Progress) -> dict:
    return {"depth": cfg.depth, "transform": cfg.transform, "lambda_min": 0.1 * cfg.depth}


# What every backend here is handed.
TASKS = {
    "test-count": count_task,
    "test-pid": pid_task,
    "test-gate": gate_task,
    "test-stubborn": stubborn_task,
    "test-oom": oom_task,
    "test-budget": budget_task,
    "test-fail": fail_task,
}


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def make_backend(tmp_path: Path) -> Iterator[Callable[..., Backend]]:
    """Backends on a per-test cache dir (CPU only) serving ``TASKS``; closed after the test."""
    made: list[Backend] = []

    def make(**kwargs: Any) -> Backend:
        kwargs.setdefault("tasks", TASKS)
        kwargs.setdefault("cache_dir", tmp_path / "cache")
        kwargs.setdefault("device", "cpu")
        kwargs.setdefault("cpu_workers", 2)
        backend = Backend(**kwargs)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def gate() -> Iterator[Callable[[], str]]:
    """Fresh gate names; every gate is opened at the end so no worker stays blocked."""
    names: list[str] = []

    def new() -> str:
        name = uuid.uuid4().hex[:8]
        GATES[name] = threading.Event()
        names.append(name)
        return name

    yield new
    for name in names:
        GATES[name].set()


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def count_lines(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


def run_python(script: str, *args: str) -> subprocess.Popen[str]:
    """Start a Python process that can import this test module (for its task functions)."""
    prelude = f"import sys; sys.path.insert(0, {str(TESTS_DIR)!r})\n"
    return subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "REPROG_THREADS": "1"},
    )


# --------------------------------------------------------------------------- dedup and hits
def test_twenty_concurrent_identical_requests_compute_once(make_backend, tmp_path):
    backend = make_backend()
    counter = tmp_path / "count"
    params = {"counter": str(counter), "seconds": 0.5}
    barrier = threading.Barrier(20)
    results: list[dict[str, Any]] = []

    def session() -> None:
        barrier.wait()
        results.append(backend.run("test-count", CFG, params, timeout=30))

    threads = [threading.Thread(target=session) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert count_lines(counter) == 1
    caches = Counter(r["cache"] for r in results)
    assert len(results) == 20 and caches["computed"] == 1
    assert caches["joined"] + caches["hit"] == 19
    stripped = [{k: v for k, v in r.items() if k != "cache"} for r in results]
    assert all(s == stripped[0] for s in stripped)
    assert backend.stats()["computations"] == 1


def test_second_request_is_a_hit_also_for_a_fresh_backend(make_backend, tmp_path):
    counter = tmp_path / "count"
    params = {"counter": str(counter)}
    backend = make_backend()
    first = backend.run("test-count", CFG, params)
    second = backend.run("test-count", CFG, params)
    assert (first["cache"], second["cache"]) == ("computed", "hit")
    assert first["key"] == second["key"] == CFG.key("test-count", **params)
    assert backend.get("test-count", CFG, params)["cache"] == "hit"
    assert make_backend().run("test-count", CFG, params)["cache"] == "hit"  # same dir, new object
    assert count_lines(counter) == 1
    # A different config is a different key: computed again.
    assert backend.run("test-count", CFG.replace(depth=4), params)["cache"] == "computed"
    assert count_lines(counter) == 2


def test_gram_is_stored_only_when_asked_for(make_backend, tmp_path):
    backend = make_backend()
    counter = str(tmp_path / "count")
    plain = backend.run("test-count", CFG, {"counter": counter})
    assert "gram" not in plain and "gram" not in plain["spectrum"]
    assert plain["spectrum"]["eigenvalues"] == [3.0, 2.0, 1.0] and plain["curve"]
    kept = backend.run("test-count", CFG, {"counter": counter, "keep_gram": True})
    assert kept["gram"] == [[2.0, 1.0], [1.0, 2.0]]
    assert backend.get("test-count", CFG, {"counter": counter, "keep_gram": True})["gram"]


@pytest.mark.slow
def test_two_processes_sharing_a_cache_compute_once(tmp_path):
    cache, counter, go = tmp_path / "cache", tmp_path / "count", tmp_path / "go"
    script = """
        import json, os, time
        import test_backend as t
        from reprog_core.backend import Backend
        cache, counter, go, name = sys.argv[1:5]
        backend = Backend(cache_dir=cache, device="cpu", cpu_workers=1, tasks=t.TASKS)
        open(go + "." + name, "w").close()
        while not os.path.exists(go):  # start both requests at the same moment
            time.sleep(0.005)
        result = backend.run("test-count", t.CFG, {"counter": counter, "seconds": 1.0})
        print(json.dumps(result["cache"]))
        backend.close()
    """
    procs = [run_python(script, str(cache), str(counter), str(go), n) for n in ("a", "b")]
    wait_until(
        lambda: all(Path(f"{go}.{n}").exists() for n in "ab") or any(p.poll() for p in procs),
        timeout=60,
        what="both processes ready",
    )
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    caches = sorted(json.loads(out.strip().splitlines()[-1]) for out, _ in outs)
    assert count_lines(counter) == 1
    assert caches == ["computed", "joined"]


# --------------------------------------------------------------------------- crashes
@pytest.mark.slow
def test_kill_9_of_a_worker_process_leaves_no_entry_and_a_retry_succeeds(make_backend, tmp_path):
    backend = make_backend(
        isolation="process", cpu_workers=1, orphan_policy="cancel", cancel_grace_s=1.0
    )
    pid_file = tmp_path / "pids"
    params = {"pid_file": str(pid_file)}
    handle = backend.submit("test-pid", CFG, params)
    wait_until(lambda: count_lines(pid_file) == 1, timeout=60, what="the worker to start the job")
    worker_pid = int(pid_file.read_text().split()[0])
    assert worker_pid != os.getpid() and worker_pid in backend.worker_pids()

    os.kill(worker_pid, signal.SIGKILL)
    with pytest.raises(WorkerCrashed, match="died"):
        handle.result(timeout=30)
    assert handle.status().state == "failed"
    assert backend.get("test-pid", CFG, params) is None
    assert handle.key not in backend.store

    retry = backend.run("test-pid", CFG, params, timeout=60)
    assert retry["cache"] == "computed" and retry["attempt"] == 2
    assert retry["pid"] != worker_pid  # a fresh worker process
    assert backend.run("test-pid", CFG, params)["cache"] == "hit"

    # The worker process goes on serving after per-request faults, too.
    with pytest.raises(OutOfMemory, match="out of memory"):
        backend.run("test-oom", CFG, {"how": "cuda"}, timeout=30)
    with pytest.raises(TaskFailed, match="ValueError: the prompt went NaN"):
        backend.run("test-fail", CFG, timeout=30)
    assert backend.worker_pids() == [retry["pid"]]

    # Cancellation reaches the worker process: a task that reports progress stops at once ...
    other = tmp_path / "pids-other"
    handle = backend.submit("test-pid", CFG, {"pid_file": str(other)})
    wait_until(lambda: count_lines(other) == 1, what="the job to start")
    handle.cancel()
    wait_until(lambda: backend.stats()["cancelled"] == 1, what="the job to be cancelled")
    assert backend.worker_pids() == [retry["pid"]]
    # ... and one that ignores it is killed after the grace period; the next job gets a new worker.
    stubborn = tmp_path / "pids-stubborn"
    handle = backend.submit("test-stubborn", CFG, {"pid_file": str(stubborn)})
    wait_until(lambda: count_lines(stubborn) == 1, what="the stubborn job to start")
    handle.cancel()
    wait_until(lambda: backend.stats()["cancelled"] == 2, what="the stubborn job to be stopped")
    assert backend.worker_pids() == []
    fresh = backend.run("test-pid", CFG.replace(depth=1), params, timeout=60)  # not a 1st attempt
    assert fresh["pid"] != retry["pid"]


@pytest.mark.slow
def test_kill_9_of_the_computing_server_releases_its_lock(make_backend, tmp_path):
    cache, pid_file = tmp_path / "cache", tmp_path / "pids"
    script = """
        import test_backend as t
        from reprog_core.backend import Backend
        backend = Backend(cache_dir=sys.argv[1], device="cpu", cpu_workers=1, tasks=t.TASKS)
        backend.run("test-pid", t.CFG, {"pid_file": sys.argv[2]})
    """
    proc = run_python(script, str(cache), str(pid_file))
    wait_until(lambda: count_lines(pid_file) == 1, timeout=60, what="the server to start")
    assert int(pid_file.read_text().split()[0]) == proc.pid  # computing in the server itself
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)

    backend = make_backend(cache_dir=cache)
    params = {"pid_file": str(pid_file)}
    assert backend.get("test-pid", CFG, params) is None
    result = backend.run("test-pid", CFG, params, timeout=30)  # would hang if the lock were held
    assert result["cache"] == "computed" and result["attempt"] == 2


# --------------------------------------------------------------------------- corruption
@pytest.mark.parametrize("damage", ["flip-byte", "not-bytes", "wrong-key"])
def test_corrupt_small_entry_is_discarded_and_recomputed(make_backend, tmp_path, caplog, damage):
    backend = make_backend()
    counter = tmp_path / "count"
    params = {"counter": str(counter)}
    key = backend.run("test-count", CFG, params)["key"]
    raw = backend.store.cache.get(key)
    assert isinstance(raw, bytes)
    if damage == "flip-byte":
        bad: Any = raw[:-5] + bytes([raw[-5] ^ 0x01]) + raw[-4:]
    elif damage == "not-bytes":
        bad = {"eigenvalues": [1.0]}
    else:  # a valid entry copied under another key
        other = backend.run("test-count", CFG.replace(depth=5), params)["key"]
        bad = backend.store.cache.get(other)
    backend.store.cache.set(key, bad)
    n = count_lines(counter)

    with caplog.at_level(logging.WARNING, logger="reprog_core.backend"):
        again = backend.run("test-count", CFG, params)
    assert again["cache"] == "computed" and count_lines(counter) == n + 1
    assert "discarding corrupt cache entry" in caplog.text
    assert backend.run("test-count", CFG, params)["cache"] == "hit"


@pytest.mark.parametrize("damage", ["overwrite", "truncate"])
def test_corrupt_entry_file_on_disk_is_discarded_and_recomputed(make_backend, tmp_path, damage):
    backend = make_backend()
    counter = tmp_path / "count"
    params = {"counter": str(counter), "pad": 100_000}  # large: diskcache keeps it in a file
    key = backend.run("test-count", CFG, params)["key"]
    with backend.store.cache.get(key, read=True) as fh:
        path = Path(fh.name)
    assert path.is_relative_to(backend.store.directory)
    data = path.read_bytes()
    if damage == "overwrite":
        path.write_bytes(data[:5000] + b"\x00" * 64 + data[5064:])
    else:
        path.write_bytes(data[: len(data) // 2])

    assert backend.get("test-count", CFG, params) is None  # detected and discarded
    again = backend.run("test-count", CFG, params)
    assert again["cache"] == "computed" and again["pad"] == "x" * 100_000
    assert count_lines(counter) == 2


# --------------------------------------------------------------------------- limits and faults
def test_over_budget_request_is_refused_before_computing(make_backend, tmp_path):
    backend = make_backend(limits=Limits(max_n_kernel=100, max_steps=400))
    counter = tmp_path / "count"
    params = {"counter": str(counter)}
    with pytest.raises(OverBudget) as err:
        backend.submit("test-count", CFG.replace(n_kernel=200), params)
    message = str(err.value)
    assert "n_kernel=200" in message and "max_n_kernel=100" in message
    assert "REPROG_MAX_N" in message
    with pytest.raises(OverBudget, match="steps=500 .*max_steps=400.*REPROG_MAX_STEPS"):
        backend.run("test-count", CFG, {**params, "steps": 500})
    with pytest.raises(OverBudget, match="sweep points=80"):
        backend.run("test-count", CFG, {**params, "grid": {"depth": list(range(8)), "s": [0] * 10}})
    assert count_lines(counter) == 0 and backend.stats()["over_budget"] == 3
    # The next request is served.
    assert backend.run("test-count", CFG, params)["cache"] == "computed"


def test_over_budget_raised_by_the_task_is_reported(make_backend, tmp_path):
    backend = make_backend(cpu_workers=1)
    with pytest.raises(OverBudget, match="needs 32 GB; the budget is 4 GB"):
        backend.run("test-budget", CFG)
    assert backend.run("test-count", CFG, {"counter": str(tmp_path / "c")})["cache"] == "computed"


@pytest.mark.parametrize("how", ["host", "cuda"])
def test_out_of_memory_is_caught_and_the_worker_goes_on(make_backend, tmp_path, how):
    backend = make_backend(cpu_workers=1)
    handle = backend.submit("test-oom", CFG, {"how": how})
    with pytest.raises(OutOfMemory, match="ran out of memory.*Lower n_kernel"):
        handle.result(timeout=10)
    status = handle.status()
    assert status.state == "failed" and "out of memory" in status.message
    assert backend.run("test-count", CFG, {"counter": str(tmp_path / "c")})["cache"] == "computed"
    assert backend.stats()["failed"] == 1


def test_task_error_is_reported_with_its_type_and_not_stored(make_backend, tmp_path):
    backend = make_backend(cpu_workers=1)
    with pytest.raises(TaskFailed, match="ValueError: the prompt went NaN"):
        backend.run("test-fail", CFG)
    assert backend.get("test-fail", CFG, {}) is None
    with pytest.raises(UnknownTask, match="unknown task kind 'no-such-task'.*test-count"):
        backend.submit("no-such-task", CFG)


def test_disk_full_is_reported_and_the_result_still_returned(make_backend, tmp_path, monkeypatch):
    backend = make_backend()

    def no_space(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(backend.store.cache, "set", no_space)
    params = {"counter": str(tmp_path / "count")}
    handle = backend.submit("test-count", CFG, params)
    result = handle.result(timeout=10)
    assert result["cache"] == "computed" and result["curve"] == [1.0, 0.5, 0.25]
    assert any("disk full" in w for w in result["warnings"])
    assert handle.status().state == "done" and "disk full" in handle.status().message
    assert backend.stats()["disk_full"] == 1
    assert backend.get("test-count", CFG, params) is None


def test_limits_from_environment_and_constructor(monkeypatch):
    monkeypatch.setenv("REPROG_MAX_N", "10")
    monkeypatch.setenv("REPROG_MAX_STEPS", "7")
    limits = Limits.from_env(max_steps=9)
    assert (limits.max_n_kernel, limits.max_steps, limits.max_sweep_points) == (10, 9, 72)
    monkeypatch.setenv("REPROG_MAX_N", "lots")
    with pytest.raises(ValueError, match="REPROG_MAX_N must be an integer"):
        Limits.from_env()
    with pytest.raises(ValueError, match="positive integer"):
        Limits(max_steps=0)


# --------------------------------------------------------------------------- queue and cancel
def test_queue_positions_and_progress_are_reported(make_backend, gate):
    backend = make_backend(cpu_workers=1, orphan_policy="cancel")
    g = gate()
    first = backend.submit("test-gate", CFG, {"gate": g})
    wait_until(lambda: first.status().state == "running", what="the first job to run")
    second = backend.submit("test-gate", CFG.replace(depth=1), {"gate": g})
    third = backend.submit("test-gate", CFG.replace(depth=2), {"gate": g})
    assert (second.status().state, second.status().queue_position) == ("queued", 1)
    assert third.status().queue_position == 2
    wait_until(lambda: first.status().stage == "at the gate", what="progress from the task")
    assert first.status().progress == 0.5 and first.status().queue_position is None

    assert second.cancel()
    assert second.status().state == "cancelled"
    assert third.status().queue_position == 1
    with pytest.raises(Cancelled):
        second.result(timeout=1)

    GATES[g].set()
    assert third.result(timeout=10)["gate"] == g
    final = first.status()
    assert final == JobStatus("done", None, 1.0, "at the gate", "")


def test_run_reports_progress_to_its_callback(make_backend, tmp_path):
    backend = make_backend()
    seen: list[JobStatus] = []
    params = {"counter": str(tmp_path / "count"), "seconds": 0.3}
    backend.run("test-count", CFG, params, progress_cb=seen.append)
    assert seen[-1].state == "done" and seen[-1].progress == 1.0
    assert any(s.state == "running" and 0 < s.progress < 1 for s in seen)


def test_cancel_stops_a_running_job_when_policy_is_cancel(make_backend, gate):
    backend = make_backend(orphan_policy="cancel")
    g = gate()
    handle = backend.submit("test-gate", CFG, {"gate": g})
    wait_until(lambda: EVENTS.get(g) == ["started"], what="the job to start")
    assert handle.cancel()
    with pytest.raises(Cancelled):
        handle.result(timeout=5)
    wait_until(lambda: "cancelled" in EVENTS[g], what="the task to see the cancellation")
    wait_until(lambda: backend.stats()["cancelled"] == 1, what="the job to end")
    assert backend.get("test-gate", CFG, {"gate": g}) is None
    # Asking again computes afresh.
    again = backend.submit("test-gate", CFG, {"gate": g})
    GATES[g].set()
    assert again.result(timeout=10)["cache"] == "computed"


def test_cancel_with_policy_finish_completes_in_the_background(make_backend, gate):
    backend = make_backend(orphan_policy="finish")
    g = gate()
    handle = backend.submit("test-gate", CFG, {"gate": g})
    wait_until(lambda: EVENTS.get(g) == ["started"], what="the job to start")
    handle.cancel()
    with pytest.raises(Cancelled):
        handle.result(timeout=1)
    GATES[g].set()
    wait_until(lambda: backend.get("test-gate", CFG, {"gate": g}) is not None, what="the result")
    assert EVENTS[g] == ["started"]


def test_a_job_lives_while_any_requester_waits(make_backend, gate):
    backend = make_backend(orphan_policy="cancel")
    g = gate()
    first = backend.submit("test-gate", CFG, {"gate": g})
    second = backend.submit("test-gate", CFG, {"gate": g})
    assert (first.cache, second.cache) == ("computed", "joined")
    first.cancel()
    GATES[g].set()
    assert second.result(timeout=10)["cache"] == "joined"
    assert EVENTS[g] == ["started"]


def test_dropped_handles_cancel_the_job_when_policy_is_cancel(make_backend, gate):
    backend = make_backend(orphan_policy="cancel")
    g = gate()
    handle = backend.submit("test-gate", CFG, {"gate": g})
    wait_until(lambda: EVENTS.get(g) == ["started"], what="the job to start")
    del handle
    gc.collect()
    wait_until(lambda: "cancelled" in EVENTS[g], what="the orphaned job to be cancelled")


# --------------------------------------------------------------------------- admin helpers
def test_cache_info_ls_and_clear(make_backend, tmp_path, gate):
    backend = make_backend(size_limit_bytes=64 * 1024**2)
    backend.run("test-count", CFG, {"counter": str(tmp_path / "count")})
    g = gate()
    GATES[g].set()
    backend.run("test-gate", CFG, {"gate": g})

    info = cache_info(backend)
    assert info["count"] == 2 and info["limit"] == 64 * 1024**2 and info["size"] > 0
    assert info["dir"] == str(backend.store.directory)
    listing = cache_ls(backend)
    assert sorted(e["kind"] for e in listing) == ["test-count", "test-gate"]
    assert all(e["size"] > 0 and e["created"].endswith("Z") for e in listing)
    json.dumps(listing)  # JSON-safe, for --json
    assert cache_clear(backend, kind="test-count") == 1
    assert [e["kind"] for e in cache_ls(backend)] == ["test-gate"]
    assert cache_clear(backend) == 1 and cache_info(backend)["count"] == 0


def test_warm_default_preset(make_backend):
    backend = make_backend(tasks={"explore": fake_explore})
    seen: list[tuple[int, int]] = []
    # The depth axis on a source trained here (on the pretrained default, depth changes nothing).
    items = warm_items(build_grid(ExperimentConfig(**PIXEL), preset="default"))
    entries = warm(backend, items, lambda i, n, entry: seen.append((i, n)))
    assert len(entries) == 18 and seen[-1] == (18, 18)
    assert {(e["depth"], e["transform"]) for e in entries} == {
        (d, t) for d in range(1, 7) for t in ("vp", "fc", "vp-fc")
    }
    assert all(e["cache"] == "computed" and e["error"] is None for e in entries)
    assert all(e["cache"] == "hit" for e in warm(backend, items))
    with pytest.raises(ValueError, match="unknown preset"):
        build_grid(ExperimentConfig(), preset="nope")


def test_a_backend_serves_the_tasks_it_was_handed(make_backend, tmp_path):
    """No registry behind its back: each backend knows the kinds it was handed, and no other
    (no test-only task ships in the product)."""
    bare = make_backend(tasks=None, cache_dir=tmp_path / "bare")
    assert bare.tasks == {}
    with pytest.raises(UnknownTask, match=r"unknown task kind 'test-count'; registered: \[\]"):
        bare.submit("test-count", CFG, {"counter": str(tmp_path / "c")})
    assert make_backend().task("test-count").fn is count_task


def test_the_backend_never_imports_the_pipeline():
    """The dependency is one-way: whoever creates a backend hands it the pipeline's tasks."""
    backend_dir = ROOT / "reprog_core" / "backend"
    for path in backend_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            assert not any(
                n.split(".")[0] == "importlib" or n.startswith("reprog_core.pipeline")
                for n in names
            ), path


def test_pipeline_tasks_reach_a_worker_process_by_reference():
    # Lazy: the pipeline loads torch, and every worker process of these tests imports this module.
    from reprog_core.pipeline import run_explore
    from reprog_core.serving import TASKS

    assert pickle.loads(pickle.dumps(TASKS["explore"].fn)).fn is run_explore


def test_put_stores_a_result_computed_elsewhere_as_the_backend_would(make_backend, tmp_path):
    backend = make_backend()
    params = {"counter": str(tmp_path / "count")}
    computed = count_task(CFG, params, Progress())
    stored = backend.put("test-count", CFG, computed, params)
    assert stored["key"] == backend.key("test-count", CFG, params) and "gram" not in stored
    hit = backend.run("test-count", CFG, params)
    assert hit["cache"] == "hit" and hit == {**stored, "cache": "hit"}
    assert count_lines(tmp_path / "count") == 1  # only the run above, outside the backend


def test_source_and_target_size_have_server_caps(make_backend, tmp_path, monkeypatch):
    """Issue 9: ``?source_size=512`` was accepted by the server with no cap."""
    monkeypatch.setenv("REPROG_MAX_SOURCE_SIZE", "64")
    limits = Limits.from_env()
    assert limits.max_source_size == 64 and Limits().max_target_size == 128
    backend = make_backend(limits=limits)
    with pytest.raises(OverBudget, match="source_size=96 .*max_source_size=64.*REPROG_MAX_SOURCE"):
        backend.submit("test-count", CFG.replace(source_size=96), {"counter": str(tmp_path / "c")})
    with pytest.raises(OverBudget, match="target_size=200 .*max_target_size=128"):
        make_backend(limits=Limits(max_source_size=512)).submit(
            "test-count",
            CFG.replace(source_size=256, target_size=200),
            {"counter": str(tmp_path / "c")},
        )
    assert count_lines(tmp_path / "c") == 0

    sys.path.insert(0, str(ROOT))
    from dashboard.state import ranges

    assert ranges(limits.to_dict())["source_size"][1] == 64
    assert ranges(Limits().to_dict())["target_size"][1] <= 128


# --------------------------------------------------------------------------- task inputs
def whole_task(cfg: ExperimentConfig, params: dict[str, Any], progress: Progress) -> dict:
    """Built from the stored 'part' it is handed (``TaskSpec.inputs``)."""
    progress.update(1.0, "whole")
    return {"part": params["inputs"]["part"], "own": cfg.depth}


def _part_of(cfg: ExperimentConfig, params: dict[str, Any]) -> dict[str, Any]:
    return {"part": ("test-count", cfg, {"counter": params["counter"], "seconds": 0.3})}


def test_a_task_gets_its_inputs_computed_once_and_stores_them_once(make_backend, tmp_path):
    """The explore task's shape: a page asks for the part (the kernel) and the whole (the
    experiment built on it) at once. The part is computed once, under its own key; the whole's
    entry refers to it instead of holding a copy, reads back whole, and is computed again (part
    first) when the part is gone."""
    counter = tmp_path / "counter"
    tasks = {**TASKS, "test-whole": TaskSpec("test-whole", whole_task, inputs=_part_of)}
    backend = make_backend(tasks=tasks)
    params = {"counter": str(counter)}
    part_req = ("test-count", CFG, {"counter": str(counter), "seconds": 0.3})
    handles = [backend.submit(*part_req), backend.submit("test-whole", CFG, params)]
    part, whole = (h.result(30) for h in handles)
    assert len(counter.read_text().split()) == 1  # one computation of the part
    assert whole["part"]["curve"] == part["curve"] == [1.0, 0.5, 0.25]
    assert whole["part"]["depth"] == CFG.depth and whole["own"] == CFG.depth
    stored = backend.store.get_json(backend.key("test-whole", CFG, params))
    assert stored is not None and '"$stored"' in stored and "curve" not in stored
    assert backend.get("test-whole", CFG, params)["part"]["curve"] == [1.0, 0.5, 0.25]

    assert backend.store.delete(backend.key(*part_req))
    assert backend.get("test-whole", CFG, params) is None  # its part is gone: a miss
    again = backend.run("test-whole", CFG, params, timeout=30)
    assert again["cache"] == "computed" and again["part"]["curve"] == [1.0, 0.5, 0.25]
    assert len(counter.read_text().split()) == 2
