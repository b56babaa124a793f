"""Issue 11's speed paths in fresh processes (the process is the subject): the OpenMP wait policy
before torch loads, the CLI's torch-free cached answer, and ``bench/explore.py --quick``, on a
tiny config. The kernels and the thread policy in-process: tests/unit/test_speed_paths.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reprog_core.config import ExperimentConfig
from tests.configs import PIXEL, PIXEL_FLAGS

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- threads


def _fresh_python(code: str, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "REPROG_THREADS")}
    full.update(env)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


@pytest.mark.slow
def test_openmp_wait_policy_is_passive_before_torch_loads():
    code = (
        "import os, sys; import reprog_core; assert 'torch' not in sys.modules; "
        "import torch; from reprog_core.runtime import thread_policy; p = thread_policy(); "
        "print(os.environ['OMP_WAIT_POLICY'], p['wait_policy_effective'])"
    )
    assert _fresh_python(code) == "PASSIVE True"
    assert _fresh_python(code, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE True"
    late = "import torch, reprog_core; from reprog_core.runtime import thread_policy; "
    assert _fresh_python(late + "print(thread_policy()['wait_policy_effective'])") == "False"


# ----------------------------------------------------------------------------- CLI cached answer

TINY = [
    *PIXEL_FLAGS,  # a tiny pixel CNN, not the default pretrained model
    "--source-per-class",
    "5",
    "--source-epochs",
    "1",
    "--target-per-class",
    "5",
    "--width",
    "4",
    "--depth",
    "1",
    "--steps",
    "2",
    "--eval-every",
    "1",
    "--n",
    "4",
]


def test_lookup_key_needs_no_torch_and_equals_the_full_key():
    from reprog_core import config, data

    assert config._data_version() == data.DATA_VERSION
    # A pixel source: depth is part of its key (a pretrained classifier's key leaves it out).
    cfg = ExperimentConfig(**{**PIXEL, "transform": "fc"}, depth=2, n_kernel=16)
    looked = ExperimentConfig.for_lookup({**PIXEL, "transform": "fc", "depth": 2, "n_kernel": 16})
    assert looked == cfg and looked.key("fit") == cfg.key("fit")
    assert ExperimentConfig.for_lookup({}) == ExperimentConfig()  # the defaults' weights too
    with pytest.raises(ValueError, match="depth"):
        ExperimentConfig.for_lookup({"depth": 99})
    code = (
        "import sys; from reprog_core.config import ExperimentConfig as C; "
        f"k = C.for_lookup({{**{PIXEL!r}, 'depth': 2}}).key('fit'); "
        "print('torch' in sys.modules, k)"
    )
    torchless, key = _fresh_python(code).split()
    assert torchless == "False" and key == ExperimentConfig(**PIXEL, depth=2).key("fit")


@pytest.mark.slow
def test_cached_cli_answer_does_not_import_torch(tmp_path):
    """A fit already in the result store is answered from it without loading torch; the answer
    is the backend's own hit (same fields)."""
    from reprog_core.backend import Backend
    from reprog_core.cli import build_parser, config_from_args
    from reprog_core.serving import TASKS

    env = {"REPROG_CACHE_DIR": str(tmp_path), "REPROG_THREADS": "1"}
    cfg = config_from_args(build_parser().parse_args(["fit", *TINY]))
    backend = Backend(tmp_path, cpu_workers=1, device="cpu", tasks=TASKS)
    try:
        computed = backend.run("fit", cfg)
        hit = backend.get("fit", cfg)
    finally:
        backend.close()
    assert computed["cache"] == "computed" and hit is not None
    code = (
        "import sys; from reprog_core.cli import main; rc = main(sys.argv[1:]); "
        "sys.stderr.write(f'TORCH {\"torch\" in sys.modules}\\n'); raise SystemExit(rc)"
    )
    full = {**os.environ, **env}
    out = subprocess.run(
        [sys.executable, "-c", code, "fit", "--json", *TINY],
        capture_output=True,
        text=True,
        env=full,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TORCH False" in out.stderr
    answer = json.loads(out.stdout)
    assert answer["cache"] == "hit" and answer["key"] == hit["key"]
    assert answer["target_test_acc"] == hit["target_test_acc"]
    # A request that is not stored still computes through the backend (and loads torch).
    miss = subprocess.run(
        [sys.executable, "-c", code, "fit", "--json", *TINY[:-1], "5"],
        capture_output=True,
        text=True,
        env=full,
        cwd=ROOT,
    )
    assert miss.returncode == 0, miss.stderr[-2000:]
    assert "TORCH True" in miss.stderr and json.loads(miss.stdout)["cache"] == "computed"


# ----------------------------------------------------------------------------- the benchmark


@pytest.mark.slow
def test_explore_benchmark_quick_json():
    out = subprocess.run(
        [sys.executable, "bench/explore.py", "--quick", "--json", "--transforms", "vp"],
        capture_output=True,
        text=True,
        env={**os.environ, "REPROG_THREADS": "1"},
        cwd=ROOT,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout)
    for key in ("setups", "threads", "load", "kernel_paths"):
        assert key in res, key
    # The pixel pair (the source trained here), as before the pretrained default.
    pixel = res["setups"]["pixel"]
    for key in (
        "cold_s",
        "whatif_cached_source_s",
        "whatif_new_source_s",
        "first_result_s",
        "cached_s",
        "stages",
    ):
        assert key in pixel, key
    stages = pixel["stages"]
    assert stages["cold"]["cache"] == "computed" and stages["cached"]["cache"] == "hit"
    # The what-if with a new transform reuses the stored source model: its source stage is a
    # load, far shorter than the cold run's training.
    assert stages["whatif_cached_source"]["source"] < stages["cold"]["source"]
    assert pixel["first_result_s"] <= pixel["whatif_cached_source_s"]
    assert pixel["cached_s"] < pixel["cold_s"]
    # The default Explore (the pretrained model, loaded): cold, the what-ifs the pages offer next
    # (random weights, another transform) computed, a reload a hit.
    pretrained = res["setups"]["pretrained"]
    assert pretrained["configs"]["cold"]["source_family"] == ExperimentConfig().source_family
    for key in ("cold_s", "whatif_weights_s", "whatif_transform_s", "cached_s", "stages"):
        assert key in pretrained, key
    stages = pretrained["stages"]
    assert [stages[s]["cache"] for s in ("cold", "whatif_weights", "whatif_transform")] == [
        "computed"
    ] * 3
    assert stages["cached"]["cache"] == "hit" and pretrained["cached_s"] < pretrained["cold_s"]
    assert res["threads"]["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    (row,) = res["kernel_paths"]
    assert row["ok"] and row["rank_float64"] == row["rank_mixed"]
