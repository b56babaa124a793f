"""Claims controlled for depth (issue 15, item 3): the partial Spearman given depth, the
within-depth permutation test, Holm's adjustment, the scale-free derived statistics, and
``bench/spectrum_ranks.py`` (text and ``--json``) on rows files written here.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr
from scipy.stats import t as student_t

from reprog_core.analysis import (
    SCALE_FREE_STATS,
    SCALE_STATS,
    depth_controlled,
    holm,
    lambda_min_over_max,
    partial_spearman,
    stat_kind,
    with_derived,
    within_spearman,
)
from reprog_core.sweep.outputs import FORMAT, FORMAT_VERSION, write_results

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "spectrum_ranks", ROOT / "bench" / "spectrum_ranks.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _sweep(signal: float, seeds: int = 10, seed: int = 0) -> list[dict[str, Any]]:
    """Rows where depth drives both the statistic and the outcome; ``signal`` is how much of
    the outcome's within-depth noise the statistic also carries (0: none)."""
    rng = np.random.default_rng(seed)
    rows = []
    for depth in range(1, 7):
        for s in range(seeds):
            u, v = rng.normal(), rng.normal()
            rows.append(
                {
                    "transform": "vp",
                    "depth": depth,
                    "seed": s,
                    "kernel_form": "trace",
                    # grows ×e per depth; within a depth, noise (v) plus ``signal`` × u
                    "lambda_min": math.exp(depth) * (1 + 0.1 * (signal * u + v)),
                    "lambda_max": math.exp(2 * depth),
                    "kernel_loss_drop": 0.1 * depth + 0.03 * u,
                }
            )
    return rows


# ----------------------------------------------------------------------- partial Spearman
def test_partial_spearman_hand_computed() -> None:
    # No ties, so rho = 1 − 6Σd²/(n(n²−1)), n = 5 (denominator 120):
    # r_xy: d = (0, −1, 1, −1, 1), Σd² = 4 → 0.8; r_xz: d = (−1, 1, −1, 1, 0) → 0.8;
    # r_yz: d = (−1, 2, −2, 2, −1), Σd² = 14 → 0.3.
    # r_xy·z = (0.8 − 0.8·0.3)/√((1 − 0.64)(1 − 0.09)) = 0.56/(0.6·√0.91).
    res = partial_spearman([1, 2, 3, 4, 5], [1, 3, 2, 5, 4], [2, 1, 4, 3, 5])
    assert res.n == 5
    assert res.r_xy == pytest.approx(0.8) and res.r_xz == pytest.approx(0.8)
    assert res.r_yz == pytest.approx(0.3)
    r = 0.56 / (0.6 * math.sqrt(0.91))
    assert res.rho == pytest.approx(r, abs=1e-12)
    t = r * math.sqrt(2 / (1 - r * r))  # n − 3 = 2 degrees of freedom
    assert res.p == pytest.approx(2 * student_t.sf(t, 2), rel=1e-10)
    # Order of x and y does not matter; non-finite triples are dropped.
    swapped = partial_spearman([1, 3, 2, 5, 4, None], [1, 2, 3, 4, 5, 9], [2, 1, 4, 3, 5, 1])
    assert swapped.rho == pytest.approx(r) and swapped.n == 5


def test_partial_spearman_equals_spearman_when_depth_is_independent() -> None:
    # z has rank correlation exactly 0 with x and with y: the partial rho is the plain one.
    x, y, z = list(range(1, 8)), [2, 1, 4, 3, 7, 5, 6], [2, 7, 3, 4, 6, 1, 5]
    assert spearmanr(x, z).statistic == pytest.approx(0, abs=1e-12)
    assert spearmanr(y, z).statistic == pytest.approx(0, abs=1e-12)
    res = partial_spearman(x, y, z)
    plain = float(spearmanr(x, y).statistic)
    assert res.rho == pytest.approx(plain, abs=1e-12)
    t = plain * math.sqrt((7 - 3) / (1 - plain**2))
    assert res.p == pytest.approx(2 * student_t.sf(abs(t), 4), rel=1e-10)
    # And on a large random sample with an independent z, close to scipy's rho.
    rng = np.random.default_rng(3)
    a = rng.normal(size=2000)
    b = a + rng.normal(size=2000)
    c = rng.integers(1, 7, size=2000)
    big = partial_spearman(a, b, c)
    assert big.rho == pytest.approx(float(spearmanr(a, b).statistic), abs=0.01)


def test_partial_spearman_refuses_what_it_cannot_compute() -> None:
    one_depth = partial_spearman([1, 2, 3, 4], [2, 1, 4, 3], [3, 3, 3, 3])
    assert one_depth.rho is None and one_depth.p is None and "one value" in one_depth.note
    assert one_depth.r_xy == pytest.approx(0.6)
    too_few = partial_spearman([1, 2, 3], [1, 2, 3], [1, 2, 3])
    assert too_few.rho is None and too_few.n == 3
    perfect = partial_spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], [10, 20, 30, 40, 50])
    assert perfect.rho is None and "perfect" in perfect.note


# ---------------------------------------------------------------------- within-depth test
def test_within_spearman_exact_and_reproducible() -> None:
    # Two depths of 3: within each, x and y agree perfectly → rho 1; of the 6 × 6 within-depth
    # permutations, 1 gives +1 and 1 gives −1 → exact two-sided p = 2/36.
    x = [1, 2, 3, 10, 20, 30]
    y = [5, 6, 7, 1, 2, 3]
    z = [1, 1, 1, 2, 2, 2]
    res = within_spearman(x, y, z)
    assert res.rho == pytest.approx(1.0) and res.exact and res.n_perm == 36
    assert res.p == pytest.approx(2 / 36)
    assert [(d, n) for d, n, _ in res.per_stratum] == [(1.0, 3), (2.0, 3)]
    # Monte Carlo (forced): seeded, so the same p twice; near the exact one.
    a = within_spearman(x, y, z, max_exact=1, n_perm=4000, seed=7)
    b = within_spearman(x, y, z, max_exact=1, n_perm=4000, seed=7)
    assert not a.exact and a.p == b.p and a.p == pytest.approx(2 / 36, abs=0.02)
    # A depth with one point, or where one side is constant, does not count.
    none = within_spearman([1, 2, 3], [1, 1, 1], [1, 1, 1])
    assert none.rho is None and none.p is None and none.note


# ---------------------------------------------------------------------------- Holm
def test_holm_known_example() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 (m = 4): ×4 = 0.02, ×3 = 0.03, ×2 = 0.06, ×1 = 0.04 → 0.06
    # (monotone); back in input order.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # None / NaN pass through and do not count in m; capped at 1.
    out = holm([0.2, None, math.nan, 0.6])
    assert out[1] is None and out[2] is None
    assert out[0] == pytest.approx(0.4) and out[3] == pytest.approx(0.6)
    assert holm([0.3, 0.02]) == pytest.approx([0.3, 0.04])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 2 × 0.8 capped at 1, then monotone
    assert holm([]) == []


# ------------------------------------------------------------------- the depth-controlled table
def test_depth_alone_gives_large_plain_rho_and_partial_near_zero() -> None:
    # 6 depths × 30 seeds (fixed rng seed): the partial rho's s.e. is about 0.075.
    table = depth_controlled(_sweep(signal=0.0, seeds=30), ["lambda_min"], "kernel_loss_drop")
    (row,) = table.rows
    assert row.rho is not None and row.rho > 0.9 and row.p_holm is not None
    assert row.p_holm < 1e-10
    assert row.partial_rho is not None and abs(row.partial_rho) < 0.2
    assert row.within_rho is not None and abs(row.within_rho) < 0.2
    assert row.within_p is not None and row.within_p_holm is not None
    assert row.within_p > 0.05 and row.partial_p_holm > 0.05  # type: ignore[operator]
    assert row.verdict == "not shown"
    assert table.correction == "Holm-Bonferroni" and table.family_size == 3
    (alone,) = table.depth_alone
    assert alone.rho is not None and alone.rho > 0.9


def test_signal_within_depth_survives() -> None:
    table = depth_controlled(_sweep(signal=1.0, seeds=30), ["lambda_min"], "kernel_loss_drop")
    (row,) = table.rows
    assert row.partial_rho is not None and row.partial_rho > 0.5
    assert row.within_rho is not None and row.within_rho > 0.5
    assert row.partial_p_holm is not None and row.partial_p_holm < 0.01
    assert row.within_p_holm is not None and row.within_p_holm < 0.01
    assert row.verdict == "survives (+)"


def test_scale_free_statistics_and_skipped_columns() -> None:
    rows = [{"lambda_min": 2.0, "lambda_max": 8.0}, {"condition_number": 4.0}, {}]
    assert [lambda_min_over_max(r) for r in rows[:2]] == [0.25, 0.25]
    assert math.isnan(lambda_min_over_max(rows[2]))
    assert with_derived(rows)[0]["lambda_min_over_max"] == 0.25
    assert stat_kind("lambda_min") == "scale" and stat_kind("lambda_min_over_max") == "scale-free"
    assert "lambda_min_over_max" in SCALE_FREE_STATS and "lambda_min" in SCALE_STATS
    # An older sweep: no regression_acc / common_share columns → skipped, with the reason.
    table = depth_controlled(_sweep(signal=0.0), outcome="kernel_loss_drop")
    assert {"regression_acc", "common_share", "effective_rank", "alignment"} <= set(table.skipped)
    assert {r.stat for r in table.rows} == {"lambda_min_over_max", "lambda_min", "lambda_max"}
    assert {r.kind for r in table.rows if r.stat.startswith("lambda_m")} == {
        "scale",
        "scale-free",
    }
    # lambda_max is a perfect function of depth here: nothing left to test once depth is out.
    (lmax,) = [r for r in table.rows if r.stat == "lambda_max"]
    assert lmax.partial_rho is None and lmax.verdict == "cannot control"


def test_one_depth_says_so() -> None:
    rows = [r for r in _sweep(signal=3.0) if r["depth"] == 3]
    table = depth_controlled(rows, ["lambda_min"], "kernel_loss_drop")
    (row,) = table.rows
    assert row.rho is not None and row.n_depths == 1
    assert row.partial_rho is None and row.within_rho is None
    assert row.verdict.startswith("one depth:") and "fixed depth" in row.note
    assert table.family_size == 1 and any("one depth" in n for n in table.notes)


# ------------------------------------------------------------------ bench/spectrum_ranks.py
def _rows_with_new_columns() -> list[dict[str, Any]]:
    rows = []
    for t in ("vp", "fc"):
        for r in _sweep(signal=3.0, seeds=3, seed=1 if t == "vp" else 2):
            rows.append(
                {
                    **r,
                    "transform": t,
                    "effective_rank": r["depth"] + 0.1 * r["seed"],
                    "alignment": 0.01 * r["depth"],
                    "regression_acc": 0.1 + 0.01 * r["seed"] * r["depth"],
                    "common_share": 0.5,
                    "target_test_acc": 0.2,
                    "kernel_drift": 0.1 * r["depth"],
                    "source_size": 32,
                }
            )
    return rows


def test_spectrum_ranks_json_on_a_results_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _bench()
    rows = _rows_with_new_columns()
    write_results({"format": FORMAT, "format_version": FORMAT_VERSION, "rows": rows}, tmp_path)
    assert bench.main([str(tmp_path), "--json", "--outcome", "kernel_loss_drop"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["correction"] == "Holm-Bonferroni" and doc["control"] == "depth"
    assert doc["source"].endswith("results.json") and doc["n_rows"] == 36
    assert doc["kernel_forms"] == ["trace"]
    # common_share is constant: every test is undefined, so it is not in the family.
    got = {(r["stat"], r["group"]) for r in doc["rows"]}
    assert ("regression_acc", "vp") in got and ("lambda_min_over_max", "fc") in got
    finite = [r[k] for r in doc["rows"] for k in ("p", "partial_p", "within_p")]
    assert doc["family_size"] == sum(p is not None for p in finite)
    lm = next(r for r in doc["rows"] if r["stat"] == "lambda_min" and r["group"] == "vp")
    assert lm["partial_rho"] > 0.5 and lm["p_holm"] >= lm["p"]
    assert {e["transform"] for e in doc["per_depth"]} == {"vp", "fc"}
    assert doc["skipped"] == {}
    # The same folder's CSV gives the same table (the CSV path is the fallback).
    (tmp_path / "results.json").unlink()
    assert bench.main([str(tmp_path), "--json", "--outcome", "kernel_loss_drop"]) == 0
    doc_csv = json.loads(capsys.readouterr().out)
    assert doc_csv["source"].endswith("results.csv")
    assert doc_csv["rows"] == doc["rows"]


def test_spectrum_ranks_old_sweep_one_depth_text_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _bench()
    old_columns = ("transform", "depth", "seed", "kernel_form", "lambda_min", "lambda_max")
    rows = [
        {k: r[k] for k in (*old_columns, "kernel_loss_drop")}
        for r in _sweep(signal=3.0)
        if r["depth"] == 4
    ]
    path = tmp_path / "rows.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert bench.main([str(path)]) == 0
    text = capsys.readouterr().out
    assert "Holm-Bonferroni over a family of" in text
    assert "Skipped regression_acc" in text and "Skipped common_share" in text
    assert "depth cannot be controlled" in text
    assert bench.main([str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["control_values"] == [4.0]
    assert all(r["partial_rho"] is None and r["within_p"] is None for r in doc["rows"])
    # Only the plain tests (lambda_max is constant at one depth here: no test at all).
    assert doc["family_size"] == sum(r["p"] is not None for r in doc["rows"]) == 2
    # A folder without rows is an error, not a traceback.
    assert bench.main([str(tmp_path / "nowhere")]) == 2


def test_the_shipped_depth_experiment_reproduces_its_table(tmp_path, capsys) -> None:
    """docs/results.md's depth experiment on the pretrained encoder is recomputed from the rows
    kept in docs/data: the per-depth means, depth alone against accuracy, and no spectral
    statistic surviving the depth control."""

    csv_path = (
        Path(__file__).resolve().parents[2] / "docs" / "data" / "pretrained-encoder-depth.csv"
    )
    assert _bench().main([str(csv_path), "--outcome", "target_test_acc", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_rows"] == 18 and out["family_size"] == 21
    (alone,) = out["depth_alone"]
    assert alone["rho"] == pytest.approx(-0.80, abs=0.005) and alone["p"] < 1e-4
    means = {d["depth"]: d["target_test_acc_mean"] for d in out["per_depth"]}
    assert means[1.0] == pytest.approx(0.695, abs=5e-4) and means[6.0] == pytest.approx(
        0.511, abs=5e-4
    )
    assert not any(r["verdict"].startswith("survives") for r in out["rows"])
