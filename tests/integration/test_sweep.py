"""Computing sweeps: the local executor through the backend's cache (and resuming), the Ray
executor on a local Ray instance, and the CLI (in this process). Grids, files and figures on
hand-made rows: tests/unit/test_sweep.py.

Every computing test uses a tiny config of the pixel pair (a CNN of depth 1-2, width 8, 16x16
source, 12x12 target, 15 source images per class, 1 epoch, 10 target images per class, 10 steps,
N = 8) and its own cache directory, so the whole module runs in well under a minute and a half on
one core.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reprog_core.backend import Backend
from reprog_core.config import ExperimentConfig
from reprog_core.serving import TASKS
from reprog_core.sweep import (
    SWEEP_TASK,
    build_grid,
    load_results,
    run_sweep,
)
from tests.configs import PIXEL, PIXEL_FLAGS

TINY = {
    **PIXEL,
    "width": 8,
    "source_size": 16,
    "target_size": 12,
    "source_per_class": 15,
    "source_epochs": 1,
    "target_per_class": 10,
    "steps": 10,
    "eval_every": 5,
    "n_kernel": 8,
}
TINY_FLAGS = [
    *PIXEL_FLAGS,
    "--width=8",
    "--source-size=16",
    "--target-size=12",
    "--source-per-class=15",
    "--source-epochs=1",
    "--target-per-class=10",
    "--steps=10",
    "--eval-every=5",
    "--n=8",
]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache for this test: results and stored source models alike."""
    d = tmp_path / "cache"
    monkeypatch.setenv("REPROG_CACHE_DIR", str(d))
    return d


def _backend(cache: Path) -> Backend:
    return Backend(cache_dir=cache, device="cpu", cpu_workers=1, tasks=TASKS)


# ------------------------------------------------------------------------------ local executor
@pytest.mark.slow
def test_local_sweep_writes_results_and_resumes_after_an_interruption(
    cache: Path, tmp_path: Path
) -> None:
    grid = build_grid(ExperimentConfig(**TINY), depths="1,2", transforms="vp,fc", seeds="0")
    out = tmp_path / "sweep"

    # 1. Interrupted after two points: those two are written (finished: false) and cached.
    def interrupt_after_two(outcome, done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with _backend(cache) as backend, pytest.raises(KeyboardInterrupt):
        run_sweep(grid, out, backend=backend, on_point=interrupt_after_two)
    partial = load_results(out)
    assert partial.finished is False and len(partial.rows) == 2

    # 2. The same sweep again: the two finished points are hits, the rest computed.
    with _backend(cache) as backend:
        record = run_sweep(grid, out, backend=backend)
    assert [p["cache"] for p in record.points] == ["hit", "hit", "computed", "computed"]
    assert record.finished is True and record.n_failed == 0

    res = load_results(out)
    assert [(r["depth"], r["transform"], r["seed"]) for r in res.rows] == [
        (1, "vp", 0),
        (1, "fc", 0),
        (2, "vp", 0),
        (2, "fc", 0),
    ]
    for r in res.rows:
        assert 0 <= r["source_test_acc"] <= 1 and 0 <= r["target_test_acc"] <= 1
        assert r["lambda_min"] > 0 and r["effective_rank"] >= 1
        assert r["weights"] == "none" and r["steps"] == 10 and r["width"] == 8
    assert res.grid == {
        "preset": None,
        "depths": [1, 2],
        "transforms": ["vp", "fc"],
        "seeds": [0],
        "n_points": 4,
    }
    assert res.config.n_kernel == 8 and "torch" in res.versions
    assert {s["transform"] for s in res.summary} == {"vp", "fc"}

    lines = (out / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + 4
    header = lines[0].split(",")
    assert header == res.columns and "target_test_acc" in header and "cache" in header

    page = (out / "report.html").read_text()
    assert page.count("<script type='text/javascript'>/**") == 1  # plotly.js inlined once
    assert "<script src" not in page and "Target accuracy against source depth" in page
    assert "RANDOM" not in page  # pixel CNN: no backbone, nothing to warn about

    # 3. A fresh backend process-view: everything is stored, nothing is recomputed.
    with _backend(cache) as backend:
        again = run_sweep(grid, None, backend=backend)
        assert backend.stats()["computations"] == 0
    assert [p["cache"] for p in again.points] == ["hit"] * 4
    assert [r["target_test_acc"] for r in again.rows] == [r["target_test_acc"] for r in res.rows]


# -------------------------------------------------------------------------------- Ray executor
@pytest.mark.slow
def test_ray_executor_writes_results_into_the_drivers_cache(cache: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    grid = build_grid(ExperimentConfig(**TINY), depths="1", transforms="vp,fc", seeds="1")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        with _backend(cache) as backend:
            record = run_sweep(grid, tmp_path / "ray", executor="ray", backend=backend)
            assert backend.stats()["computations"] == 0  # the driver's backend computed nothing
    finally:
        ray.shutdown()
    assert [(p["cache"], p["executor"]) for p in record.points] == [("computed", "ray")] * 2
    assert record.executor == "ray" and "ray" in record.versions
    # The results are in the driver's cache: the local executor now finds them all.
    with _backend(cache) as backend:
        for cfg in grid.points():
            assert backend.get(SWEEP_TASK, cfg) is not None
        local = run_sweep(grid, None, backend=backend)
        assert backend.stats()["computations"] == 0
    assert [p["cache"] for p in local.points] == ["hit", "hit"]
    assert [r["target_test_acc"] for r in local.rows] == [r["target_test_acc"] for r in record.rows]


# ------------------------------------------------------------------------------------------ CLI
def test_cli_sweep_end_to_end(run_cli, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["--depths", "1", "--transforms", "vp", "--seeds", "0", *TINY_FLAGS, "--out", str(out)]
    proc = run_cli("sweep", *args, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "[1/1] depth 1 vp" in proc.stderr and "computed" in proc.stderr
    assert "target acc %" in proc.stdout and "wrote" in proc.stdout
    assert len(load_results(out).rows) == 1

    proc = run_cli("sweep", *args, "--json", check=False)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["cache_counts"] == {"hit": 1} and summary["n_failed"] == 0
    assert {"csv", "json", "html"} <= set(summary["files"])


@pytest.mark.parametrize(
    "bad",
    [["--depths", "0"], ["--transforms", "vp,nope"]],
)
def test_cli_bad_grid_value_exits_2(run_cli, bad: list[str], cache: Path, tmp_path: Path) -> None:
    proc = run_cli("sweep", *bad, "--out", str(tmp_path / "bad"), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "error" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
