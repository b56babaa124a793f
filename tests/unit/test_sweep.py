"""Sweeps: grids, the local executor through the backend's cache (and resuming), the Ray executor
on a local Ray instance, the CLI end to end, the results files and the figure builders.

Every computing test uses a tiny config (depth 1-2, width 8, 16x16 source, 12x12 target, 15
source images per class, 1 epoch, 10 target images per class, 10 steps, N = 8) and its own cache
directory, so the whole module runs in well under a minute and a half on one core.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from reprog_core.backend import Backend, Limits
from reprog_core.config import ExperimentConfig
from reprog_core.figures import (
    source_accuracy_figure,
    spectrum_depth_figure,
    stat_accuracy_figure,
    target_accuracy_figure,
)
from reprog_core.pipeline import TASKS
from reprog_core.sweep import (
    PRESETS,
    SWEEP_TASK,
    SweepGridError,
    build_grid,
    build_report,
    load_results,
    run_sweep,
    spearman,
    summarise,
)
from reprog_core.sweep.analysis import correlations
from reprog_core.sweep.outputs import write_results

ROOT = Path(__file__).resolve().parents[2]
TINY = {
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


# --------------------------------------------------------------------------------------- grids
def test_paper_depth_preset_is_the_papers_grid() -> None:
    grid = build_grid(ExperimentConfig(), preset="paper-depth")
    assert len(grid) == 54 == len(grid.points())
    assert grid.depths == (1, 2, 3, 4, 5, 6)
    assert grid.transforms == ("vp", "fc", "vp-fc")
    assert grid.seeds == (0, 1, 2)
    # Seed-major: an interrupted sweep already holds whole depth curves of the first seeds.
    first = grid.points()[:18]
    assert {p.seed for p in first} == {0}
    assert {(p.depth, p.transform) for p in first} == {
        (d, t) for d in range(1, 7) for t in ("vp", "fc", "vp-fc")
    }
    # Flags override a preset's axes; everything else comes from the base config.
    g = build_grid(ExperimentConfig(steps=7), preset="paper-depth", seeds="4", depths="2-3")
    assert [(p.depth, p.transform, p.seed, p.steps) for p in g.points()][:3] == [
        (2, "vp", 4, 7),
        (2, "fc", 4, 7),
        (2, "vp-fc", 4, 7),
    ]
    assert len(g) == 6 and "paper-depth" in PRESETS


def test_custom_grid_defaults_to_the_base_configs_values() -> None:
    g = build_grid(ExperimentConfig(depth=4, transform="fc", seed=9), transforms="vp,fc")
    assert [(p.depth, p.transform, p.seed) for p in g.points()] == [(4, "vp", 9), (4, "fc", 9)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"depths": "1,x"}, "not an integer"),
        ({"depths": "0,1"}, "out of range"),
        ({"depths": "1,1"}, "listed twice"),
        ({"depths": "3-1"}, "backwards"),
        ({"seeds": "0-2000000000"}, "more than 4096 values"),
        ({"seeds": "-1"}, "out of range"),
        ({"transforms": "vp,bogus"}, "unknown transform"),
        ({"transforms": "vp,,fc"}, "empty item"),
        ({"preset": "nope"}, "unknown preset"),
    ],
)
def test_bad_grid_values_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(SweepGridError, match=message):
        build_grid(ExperimentConfig(), **kwargs)


def test_invalid_point_and_sweep_size_limit() -> None:
    # vp pads the target inside the source input: it needs target_size < source_size.
    base = ExperimentConfig(transform="fc", source_size=16, target_size=16)
    with pytest.raises(SweepGridError, match="transform=vp.*target_size"):
        build_grid(base, transforms="fc,vp")
    with pytest.raises(SweepGridError, match="54 points.*max_sweep_points=10.*REPROG_MAX_SWEEP"):
        build_grid(ExperimentConfig(), preset="paper-depth", limits=Limits(max_sweep_points=10))
    with pytest.raises(SweepGridError, match="steps=300 is over the server limit"):
        build_grid(ExperimentConfig(), limits=Limits(max_steps=100))


# ------------------------------------------------------------------------------ local executor
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
    assert partial["finished"] is False and len(partial["rows"]) == 2

    # 2. The same sweep again: the two finished points are hits, the rest computed.
    with _backend(cache) as backend:
        record = run_sweep(grid, out, backend=backend)
    assert [p["cache"] for p in record["points"]] == ["hit", "hit", "computed", "computed"]
    assert record["finished"] is True and record["n_failed"] == 0

    res = load_results(out)
    assert [(r["depth"], r["transform"], r["seed"]) for r in res["rows"]] == [
        (1, "vp", 0),
        (1, "fc", 0),
        (2, "vp", 0),
        (2, "fc", 0),
    ]
    for r in res["rows"]:
        assert 0 <= r["source_test_acc"] <= 1 and 0 <= r["target_test_acc"] <= 1
        assert r["lambda_min"] > 0 and r["effective_rank"] >= 1
        assert r["weights"] == "none" and r["steps"] == 10 and r["width"] == 8
    assert res["grid"] == {
        "preset": None,
        "depths": [1, 2],
        "transforms": ["vp", "fc"],
        "seeds": [0],
        "n_points": 4,
    }
    assert res["config"]["n_kernel"] == 8 and "torch" in res["versions"]
    assert {s["transform"] for s in res["summary"]} == {"vp", "fc"}

    lines = (out / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + 4
    header = lines[0].split(",")
    assert header == res["columns"] and "target_test_acc" in header and "cache" in header

    page = (out / "report.html").read_text()
    assert page.count("<script type='text/javascript'>/**") == 1  # plotly.js inlined once
    assert "<script src" not in page and "Target accuracy against source depth" in page
    assert "RANDOM" not in page  # pixel CNN: no backbone, nothing to warn about

    # 3. A fresh backend process-view: everything is stored, nothing is recomputed.
    with _backend(cache) as backend:
        again = run_sweep(grid, None, backend=backend)
        assert backend.stats()["computations"] == 0
    assert [p["cache"] for p in again["points"]] == ["hit"] * 4
    assert [r["target_test_acc"] for r in again["rows"]] == [
        r["target_test_acc"] for r in res["rows"]
    ]


class _FakeBackend:
    """Stands in for the backend: 'computes' a fixed explore-shaped result, fails fc points."""

    def key(self, kind: str, cfg: ExperimentConfig, params: dict | None = None) -> str:
        return cfg.key(kind, **(params or {}))

    def run(self, kind: str, cfg: ExperimentConfig, params: dict, progress_cb=None) -> dict:
        from reprog_core.backend import TaskFailed

        if cfg.transform == "fc":
            raise TaskFailed("FloatingPointError: the fit diverged")
        return {
            "cache": "computed",
            "config": cfg.to_dict(),
            "weights": cfg.weights_label,
            "source": {"source_test_acc": 0.5},
            "fit": {
                "target_test_acc": 0.4,
                "baseline_test_acc": 0.1,
                "n_params_transform": 720,
                "stopped": "",
                "seconds": 1.0,
            },
            "kernel": {"stats": {"lambda_min": 1e-3, "effective_rank": 2.0}, "seconds": 0.5},
        }


def test_a_failing_point_is_reported_and_the_rest_written(tmp_path: Path) -> None:
    grid = build_grid(ExperimentConfig(), depths="1,2", transforms="vp,fc", seeds="0")
    record = run_sweep(grid, tmp_path, backend=_FakeBackend())
    assert record["n_failed"] == 2 and record["cache_counts"] == {"computed": 2, "failed": 2}
    failed = [p for p in record["points"] if p["error"]]
    assert [p["transform"] for p in failed] == ["fc", "fc"]
    assert "diverged" in failed[0]["error"] and failed[0]["cache"] is None
    res = load_results(tmp_path)
    assert [r["transform"] for r in res["rows"]] == ["vp", "vp"]
    assert math.isnan(res["rows"][0]["alignment"])  # missing from the kernel stats: NaN
    assert "2 point(s) failed" in (tmp_path / "report.html").read_text()


# -------------------------------------------------------------------------------- Ray executor
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
    assert [(p["cache"], p["executor"]) for p in record["points"]] == [("computed", "ray")] * 2
    assert record["executor"] == "ray" and "ray" in record["versions"]
    # The results are in the driver's cache: the local executor now finds them all.
    with _backend(cache) as backend:
        for cfg in grid.points():
            assert backend.get(SWEEP_TASK, cfg) is not None
        local = run_sweep(grid, None, backend=backend)
        assert backend.stats()["computations"] == 0
    assert [p["cache"] for p in local["points"]] == ["hit", "hit"]
    assert [r["target_test_acc"] for r in local["rows"]] == [
        r["target_test_acc"] for r in record["rows"]
    ]


def test_ray_tasks_ask_for_a_gpu_when_the_cluster_has_them() -> None:
    from reprog_core.sweep.executors import ray_task_options

    assert ray_task_options({"CPU": 16.0, "GPU": 4.0})["num_gpus"] == 1
    assert ray_task_options({"CPU": 2.0})["num_gpus"] == 0
    assert ray_task_options({"CPU": 2.0, "GPU": 0.0}, num_cpus=2)["num_cpus"] == 2


# ------------------------------------------------------------------------------------------ CLI
def _cli(args: list[str], cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REPROG_CACHE_DIR": str(cache), "REPROG_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "reprog_core", "sweep", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_sweep_end_to_end(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["--depths", "1", "--transforms", "vp", "--seeds", "0", *TINY_FLAGS, "--out", str(out)]
    proc = _cli(args, cache)
    assert proc.returncode == 0, proc.stderr
    assert "[1/1] depth 1 vp" in proc.stderr and "computed" in proc.stderr
    assert "target acc %" in proc.stdout and "wrote" in proc.stdout
    assert len(load_results(out)["rows"]) == 1

    proc = _cli([*args, "--json"], cache)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["cache_counts"] == {"hit": 1} and summary["n_failed"] == 0
    assert {"csv", "json", "html"} <= set(summary["files"])


@pytest.mark.parametrize(
    "bad",
    [["--depths", "0"], ["--transforms", "vp,nope"]],
)
def test_cli_bad_grid_value_exits_2(bad: list[str], cache: Path, tmp_path: Path) -> None:
    proc = _cli([*bad, "--out", str(tmp_path / "bad")], cache)
    assert proc.returncode == 2, proc.stderr
    assert "error" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


# -------------------------------------------------------------------- figures, analysis, files
def _rows() -> list[dict]:
    """Hand-made rows: 2 transforms x 3 depths x 2 seeds, target accuracy rising with depth."""
    rows = []
    for t, offset in (("vp", 0.0), ("fc", 0.2)):
        for d in (1, 2, 3):
            for s in (0, 1):
                rows.append(
                    {
                        "source_family": "clip-cnn",
                        "backbone": "tiny-vit",
                        "weights": "random",
                        "source_data": "animal",
                        "target": "digits",
                        "steps": 10,
                        "n_kernel": 8,
                        "kernel_form": "trace",
                        "transform": t,
                        "depth": d,
                        "seed": s,
                        "source_test_acc": 0.5 + 0.1 * d + 0.02 * s,
                        "target_test_acc": 0.3 + offset + 0.1 * d + 0.01 * s,
                        "baseline_test_acc": 0.1,
                        "lambda_min": 10.0 ** (-d) * (1 + s),
                        "effective_rank": 2.0 + d - 0.5 * s,
                        "alignment": math.nan if (d, s) == (1, 0) else 0.1 * d,
                        "condition_number": 100.0 * d,
                    }
                )
    return rows


def test_spearman_matches_scipy_and_skips_missing_pairs() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=20), rng.normal(size=20)
    rho, p, n = spearman(list(x), list(y))
    ref = spearmanr(x, y)
    assert n == 20 and rho == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40])[0] == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1])[0] == pytest.approx(-1.0)
    # NaN / None pairs are dropped; fewer than 3 pairs or a constant side give no rho.
    assert spearman([1, None, 3, math.nan, 5], [1, 2, 3, 4, 5])[2] == 3
    assert spearman([1, 2], [1, 2]) == (None, None, 2)
    assert spearman([1, 1, 1], [1, 2, 3])[0] is None


def test_summary_and_correlations_on_small_rows() -> None:
    rows = _rows()
    s = {(e["transform"], e["depth"]): e for e in summarise(rows)}
    e = s[("fc", 2)]
    assert e["n_seeds"] == 2
    assert e["target_test_acc_mean"] == pytest.approx(0.705)
    assert e["target_test_acc_std"] == pytest.approx(np.std([0.7, 0.71], ddof=1))
    assert s[("vp", 1)]["alignment_mean"] == pytest.approx(0.1)  # the NaN seed is skipped
    corr = {(c.stat, c.group): c for c in correlations(rows)}
    vp = [r for r in rows if r["transform"] == "vp"]
    ref = spearmanr([r["effective_rank"] for r in vp], [r["target_test_acc"] for r in vp])
    assert corr[("effective_rank", "vp")].rho == pytest.approx(ref.statistic)
    assert corr[("effective_rank", "vp")].p == pytest.approx(ref.pvalue)
    assert corr[("lambda_min", "all")].n == 12


def test_paper_claims_on_small_rows() -> None:
    from reprog_core.sweep import paper_claims

    claims = {c.claim: c for c in paper_claims(_rows())}
    src = claims["source accuracy rises with source depth"]
    # One source model per (depth, seed): 6 points, strictly rising with depth within a seed.
    ref = spearmanr(
        [1, 1, 2, 2, 3, 3], [0.5 + 0.1 * d + 0.02 * s for d in (1, 2, 3) for s in (0, 1)]
    )
    assert src.n == 6 and src.statistic == pytest.approx(ref.statistic)
    assert src.p == pytest.approx(ref.pvalue) and src.verdict == "holds"
    vp_fc = claims["vp beats fc"]
    assert vp_fc.n == 6 and vp_fc.statistic == pytest.approx(-0.2)
    assert vp_fc.verdict == "reversed" and "vp higher in 0/6" in vp_fc.detail


def test_figure_builders_on_small_rows() -> None:
    rows = _rows()
    fig = source_accuracy_figure(rows)
    mean = fig.data[0]
    # One source model per (depth, seed): mean over seeds 0, 1 of 0.5 + 0.1 d + 0.02 s.
    assert list(mean.x) == [1, 2, 3]
    assert list(mean.y) == pytest.approx([0.61, 0.71, 0.81])
    assert list(mean.error_y.array) == pytest.approx([0.01, 0.01, 0.01])  # max - mean
    assert "RANDOM" in fig.layout.title.text  # random backbone weights are said plainly

    fig = target_accuracy_figure(rows)
    names = [t.name for t in fig.data]
    assert "vp" in names and "fc" in names and any("baseline" in n for n in names)
    fc = next(t for t in fig.data if t.name == "fc")
    assert list(fc.y) == pytest.approx([0.605, 0.705, 0.805])

    fig = spectrum_depth_figure(rows)
    assert fig.layout.yaxis.type == "log"
    assert [t.name for t in fig.data].count("vp") == 2  # the mean in each of the two panels
    assert [t.name for t in fig.data].count("vp (single seeds)") == 2

    fig = stat_accuracy_figure(rows, "effective_rank")
    vp = [r for r in rows if r["transform"] == "vp"]
    ref = spearmanr([r["effective_rank"] for r in vp], [r["target_test_acc"] for r in vp])
    assert f"vp: ρ = {ref.statistic:.2f}" in fig.layout.title.subtitle.text
    assert "all points" in fig.layout.title.subtitle.text

    for builder in (source_accuracy_figure, target_accuracy_figure, spectrum_depth_figure):
        builder([])  # an empty sweep draws empty axes, it does not crash


def test_results_files_round_trip(tmp_path: Path) -> None:
    rows = _rows()
    record = {
        "format": "reprog-sweep",
        "format_version": 1,
        "grid": {"n_points": len(rows)},
        "config": {"backbone": "tiny-vit", "source_family": "clip-cnn"},
        "weights": "random",
        "rows": rows,
        "points": [],
    }
    write_results(record, tmp_path)
    back = load_results(tmp_path / "results.json")
    assert math.isnan(back["rows"][0]["alignment"]) and back["rows"][1]["alignment"] == 0.1
    assert json.loads((tmp_path / "results.json").read_text())["rows"][0]["alignment"] is None
    assert (tmp_path / "results.csv").read_text().splitlines()[1].count(",,") >= 1  # NaN: empty
    page = build_report(back, "effective_rank")
    assert "RANDOM" in page and "Spearman" in page
    (tmp_path / "results.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a sweep results file"):
        load_results(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_results(tmp_path / "nowhere")
