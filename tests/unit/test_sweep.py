"""Sweeps without computing: grids and their limits, a failing point (a stand-in backend), Ray's
task options, the results files and the figure builders on hand-made rows. The computing sweeps
(local and Ray executors, the CLI): tests/integration/test_sweep.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from reprog_core.analysis import correlations
from reprog_core.backend import Limits
from reprog_core.config import ExperimentConfig
from reprog_core.figures import (
    source_accuracy_figure,
    spectrum_depth_figure,
    stat_accuracy_figure,
    target_accuracy_figure,
)
from reprog_core.sweep import (
    PRESETS,
    SweepGridError,
    build_grid,
    build_report,
    load_results,
    run_sweep,
    spearman,
    summarise,
)
from reprog_core.sweep.outputs import write_results
from tests.configs import PIXEL
from tests.records import tiny_explore


# --------------------------------------------------------------------------------------- grids
def test_paper_depth_preset_is_the_papers_grid() -> None:
    # Depth axes: a source trained here (the pixel pair), where depth shapes the source.
    grid = build_grid(ExperimentConfig(**PIXEL), preset="paper-depth")
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
    g = build_grid(
        ExperimentConfig(**PIXEL, steps=7), preset="paper-depth", seeds="4", depths="2-3"
    )
    assert [(p.depth, p.transform, p.seed, p.steps) for p in g.points()][:3] == [
        (2, "vp", 4, 7),
        (2, "fc", 4, 7),
        (2, "vp-fc", 4, 7),
    ]
    assert len(g) == 6 and "paper-depth" in PRESETS


def test_custom_grid_defaults_to_the_base_configs_values() -> None:
    g = build_grid(ExperimentConfig(**PIXEL, depth=4, seed=9), transforms="vp,fc")
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
    base = ExperimentConfig(**{**PIXEL, "transform": "fc", "source_size": 16}, target_size=16)
    with pytest.raises(SweepGridError, match="transform=vp.*target_size"):
        build_grid(base, transforms="fc,vp")
    with pytest.raises(SweepGridError, match="54 points.*max_sweep_points=10.*REPROG_MAX_SWEEP"):
        build_grid(
            ExperimentConfig(**PIXEL), preset="paper-depth", limits=Limits(max_sweep_points=10)
        )
    with pytest.raises(SweepGridError, match="steps=300 is over the server limit"):
        build_grid(ExperimentConfig(), limits=Limits(max_steps=100))


# ------------------------------------------------------------------------------ a failing point
class _FakeBackend:
    """Stands in for the backend: 'computes' a fixed explore-shaped result, fails fc points."""

    def key(self, kind: str, cfg: ExperimentConfig, params: dict | None = None) -> str:
        return cfg.key(kind, **(params or {}))

    def run(self, kind: str, cfg: ExperimentConfig, params: dict, progress_cb=None) -> dict:
        from reprog_core.backend import TaskFailed

        if cfg.transform == "fc":
            raise TaskFailed("FloatingPointError: the fit diverged")
        result = tiny_explore(transform=cfg.transform)  # a real record, with this point's config
        result["config"] = cfg.to_dict()
        result["kernel"]["stats"]["alignment"] = None  # a statistic the kernel could not give
        return {**result, "cache": "computed"}


@pytest.mark.slow  # a real tiny explore record per transform (pipeline.run_explore)
def test_a_failing_point_is_reported_and_the_rest_written(tmp_path: Path) -> None:
    grid = build_grid(ExperimentConfig(**PIXEL), depths="1,2", transforms="vp,fc", seeds="0")
    record = run_sweep(grid, tmp_path, backend=_FakeBackend())
    assert record.n_failed == 2 and record.cache_counts == {"computed": 2, "failed": 2}
    failed = [p for p in record.points if p["error"]]
    assert [p["transform"] for p in failed] == ["fc", "fc"]
    assert "diverged" in failed[0]["error"] and failed[0]["cache"] is None
    res = load_results(tmp_path)
    assert [r["transform"] for r in res.rows] == ["vp", "vp"]
    assert math.isnan(res.rows[0]["alignment"])  # not given by the kernel: NaN in the row
    assert "2 point(s) failed" in (tmp_path / "report.html").read_text()


# -------------------------------------------------------------------------------- Ray executor
def test_ray_tasks_ask_for_a_gpu_when_the_cluster_has_them() -> None:
    from reprog_core.sweep.executors import ray_task_options

    assert ray_task_options({"CPU": 16.0, "GPU": 4.0})["num_gpus"] == 1
    assert ray_task_options({"CPU": 2.0})["num_gpus"] == 0
    assert ray_task_options({"CPU": 2.0, "GPU": 0.0}, num_cpus=2)["num_cpus"] == 2


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
    assert math.isnan(back.rows[0]["alignment"]) and back.rows[1]["alignment"] == 0.1
    assert json.loads((tmp_path / "results.json").read_text())["rows"][0]["alignment"] is None
    assert (tmp_path / "results.csv").read_text().splitlines()[1].count(",,") >= 1  # NaN: empty
    page = build_report(back, "effective_rank")
    assert "RANDOM" in page and "Spearman" in page
    (tmp_path / "results.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a sweep results file"):
        load_results(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_results(tmp_path / "nowhere")
