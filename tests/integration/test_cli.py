"""``python -m reprog_core`` end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

TINY = [
    "--width",
    "8",
    "--depth",
    "1",
    "--source-per-class",
    "20",
    "--source-epochs",
    "1",
    "--target-per-class",
    "15",
    "--steps",
    "20",
    "--eval-every",
    "10",
    "--n",
    "12",
]


def cli(*args: str, cache, check: bool = True) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "REPROG_CACHE_DIR": str(cache),
        "HF_HUB_OFFLINE": "1",
        "REPROG_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "reprog_core", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def test_datasets_lists_offline_and_downloadable_sets(tmp_path):
    out = json.loads(cli("datasets", "--json", cache=tmp_path).stdout)
    names = {d["name"]: d for d in out["datasets"]}
    for name in ("digits", "animal", "lfw-faces", "shapes"):
        assert names[name]["offline"]
    for name in ("cifar10", "cifar100", "svhn", "stl10", "mnist", "fashion-mnist", "gtsrb"):
        assert not names[name]["offline"]


def test_fit_json_has_the_documented_fields_and_is_cached(tmp_path):
    first = json.loads(cli("fit", "--json", "--transform", "fc", *TINY, cache=tmp_path).stdout)
    for key in (
        "config",
        "weights",
        "source_test_acc",
        "target_test_acc",
        "baseline_test_acc",
        "curves",
        "cache",
    ):
        assert key in first, key
    assert first["weights"] == "none" and first["cache"] == "computed"
    assert first["config"]["transform"] == "fc"
    assert len(first["curves"]["train_loss"]) == 20
    second = json.loads(cli("fit", "--json", "--transform", "fc", *TINY, cache=tmp_path).stdout)
    assert second["cache"] == "hit"
    assert second["target_test_acc"] == first["target_test_acc"]


def test_train_source_json(tmp_path):
    out = json.loads(cli("train-source", "--json", *TINY, cache=tmp_path).stdout)
    assert 0 <= out["source_test_acc"] <= 1 and out["weights"] == "none"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["fit", "--depth", "three"], "--depth"),
        (["fit", "--transform", "zoom"], "--transform"),
        (["fit", "--no-such-flag"], "--no-such-flag"),
        (["fit", "--depth", "0"], "depth must be between"),
        (["fit", "--target", "imagenet"], "unknown data set"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(tmp_path, args, needle):
    proc = cli(*args, cache=tmp_path, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_offline_weight_tag_fails_fast_and_says_how_to_supply_weights(tmp_path):
    t0 = time.perf_counter()
    proc = cli(
        "train-source",
        "--source-family",
        "clip-cnn",
        "--backbone",
        "ViT-B-32",
        "--weights",
        "openai",
        *TINY,
        cache=tmp_path,
        check=False,
    )
    assert proc.returncode == 1
    assert "--weights" in proc.stderr and "Traceback" not in proc.stderr
    # Process start-up and imports dominate; open_clip itself would retry for ~46 s.
    assert time.perf_counter() - t0 < 30


def test_ntk_json_fields_and_over_budget_refusal(tmp_path):
    out = json.loads(cli("ntk", "--json", *TINY, cache=tmp_path).stdout)
    for key in (
        "config",
        "weights",
        "method",
        "kernel",
        "n",
        "eigenvalues",
        "lambda_max",
        "lambda_min",
        "rank",
        "rank_tol",
        "effective_rank",
        "condition_number",
        "alignment",
        "seconds",
        "cache",
    ):
        assert key in out, key
    assert out["method"] == "structured" and out["n"] == 12 and out["kernel"] == "trace"
    assert out["eigenvalues"] == sorted(out["eigenvalues"], reverse=True)
    # The generic Jacobian of fc (P ~ 7.2M) for 12 samples needs ~3.5 GB of float64 Jacobian
    # and more: over a 1 GiB budget it is refused before anything is allocated.
    env_budget = {"REPROG_NTK_BUDGET": str(2**30)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reprog_core",
            "ntk",
            "--transform",
            "fc",
            "--method",
            "jacobian",
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "REPROG_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", **env_budget},
    )
    assert proc.returncode == 1
    assert "OverBudget" in proc.stderr and "largest N that fits" in proc.stderr
