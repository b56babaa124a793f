"""Issue 11: results stream in by stage, and a what-if reuses the stages it did not change.

Real computations on a tiny real config (animal -> digits), through the real backend.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from reprog_core import pipeline, serving
from reprog_core.backend import Backend, service
from reprog_core.config import ExperimentConfig
from reprog_core.source_model import training
from tests.configs import PIXEL

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
APP = str(ROOT / "dashboard" / "app.py")

TINY = ExperimentConfig(
    **PIXEL,
    source_per_class=12,
    source_epochs=1,
    target_per_class=12,
    n_kernel=8,
    steps=4,
    eval_every=2,
    seed=5,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def backend(tmp_path, monkeypatch):
    """A backend of its own, installed as the process-wide one (what the dashboard uses)."""
    monkeypatch.setenv("REPROG_CACHE_DIR", str(tmp_path))
    be = Backend(cache_dir=tmp_path / "results", device="cpu", cpu_workers=2, tasks=serving.TASKS)
    monkeypatch.setattr(service, "_default", be)
    yield be
    be.close()


def _no_training(*_a, **_k):
    raise AssertionError("the source model was trained again")


def _no_kernel(*_a, **_k):
    raise AssertionError("the kernel was computed again")


def test_a_new_transform_reuses_the_source_model(backend, monkeypatch):
    backend.run("source", TINY, {})
    monkeypatch.setattr(training, "train_source", _no_training)
    res = backend.run("explore", TINY.replace(transform="vp"), {})
    assert res["source"]["source_test_acc"] == backend.get("source", TINY)["source_test_acc"]


def test_a_new_step_count_reuses_the_kernel(backend, monkeypatch):
    backend.run("ntk", TINY.kernel_config(), {})
    monkeypatch.setattr(pipeline, "_target_kernel", _no_kernel)
    for changed in (TINY.replace(steps=6), TINY.replace(lr=0.01), TINY.replace(loss="mse")):
        assert changed.kernel_config() == TINY.kernel_config()
        res = backend.run("explore", changed, {})
        assert res["kernel"]["stats"] == backend.get("ntk", TINY.kernel_config())["stats"]
    # ...but a change the kernel depends on computes a new one.
    assert TINY.replace(n_kernel=10).kernel_config() != TINY.kernel_config()


def test_concurrent_stage_jobs_train_the_source_once(backend, monkeypatch):
    calls = []
    real = training.train_source

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(training, "train_source", counting)
    cfg = TINY.replace(seed=6)
    handles = [backend.submit(kind, c, {}) for kind, c in (("source", cfg), ("ntk", cfg))]
    for h in handles:
        h.result()
    assert len(calls) == 1


def test_the_explore_pages_three_requests_compute_and_store_each_stage_once(backend, monkeypatch):
    """What the Explore page submits at once (the source, the kernel at ``kernel_config`` and the
    experiment, issue 16): the source trains once, the kernel is computed once, and the stored
    experiment refers to the stored source and kernel instead of holding copies."""
    kernels, trained = [], []
    real_kernel, real_train = pipeline._target_kernel, training.train_source
    monkeypatch.setattr(
        pipeline, "_target_kernel", lambda *a, **k: kernels.append(1) or real_kernel(*a, **k)
    )
    monkeypatch.setattr(
        training, "train_source", lambda *a, **k: trained.append(1) or real_train(*a, **k)
    )
    cfg = TINY.replace(seed=8, transform="vp", steps=6)
    asked = (("source", cfg), ("ntk", cfg.kernel_config()), ("explore", cfg))
    source, kernel, explore = (h.result(300) for h in [backend.submit(k, c, {}) for k, c in asked])
    assert len(trained) == 1 and len(kernels) == 1
    assert explore["kernel"]["stats"] == kernel["stats"]
    assert explore["source"]["source_test_acc"] == source["source_test_acc"]
    stored = backend.store.get_json(backend.key("explore", cfg))
    for key in (backend.key("source", cfg), backend.key("ntk", cfg.kernel_config())):
        assert f'"$stored":"{key}"' in stored
    assert '"eigenvalues"' not in stored  # the kernel's spectrum is stored once, in its entry


def test_explore_page_shows_the_source_card_before_the_fit(backend):
    cfg = TINY.replace(seed=7)
    backend.run("source", cfg, {})  # a stored source model: its card is the first stage
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(
        {
            **{k: str(v) for k, v in PIXEL.items()},
            "source_per_class": "12",
            "source_epochs": "1",
            "target_per_class": "12",
            "n_kernel": "8",
            "steps": "4",
            "eval_every": "2",
            "seed": "7",
        }
    )
    at.run()
    assert not at.exception
    headers = [h.value for h in at.subheader]
    assert "Source model" in headers  # drawn from the stored source while the fit computes
    assert "The reprogramming fit" not in headers
    assert any("Computing" in i.value for i in at.info)
    # ...and says before anything trains that this tiny budget gives a weak source.
    warnings = " ".join(w.value for w in at.warning)
    assert "may stop before it converges" in warnings and "near chance" in warnings


def test_budget_warnings_before_a_source_trains():
    assert training.budget_warnings(ExperimentConfig()) == []  # the defaults converge
    assert training.budget_warnings(ExperimentConfig(**PIXEL)) == []  # ... and the pixel pair's
    msgs = training.budget_warnings(ExperimentConfig(**PIXEL, source_epochs=2, source_per_class=20))
    assert len(msgs) == 2 and "2 epoch" in msgs[0] and "20 source images" in msgs[1]
    shapes = ExperimentConfig(**{**PIXEL, "source_data": "shapes"})
    assert "chance" in training.budget_warnings(shapes)[0]
    assert training.near_chance(0.2, 10) and not training.near_chance(0.5, 10)
