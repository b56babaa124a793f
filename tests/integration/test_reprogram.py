"""Source training and reprogramming fits on real offline data (small, CPU-fast configs). The
config checks and cache keys: tests/unit/test_config.py."""

from __future__ import annotations

import math

import pytest
import torch

from reprog_core.config import ExperimentConfig
from reprog_core.fit import baseline_accuracy, reprogram, target_data
from reprog_core.source_model.training import load_or_train_source, stored_source_path
from tests.configs import PIXEL

# Every test here trains (or loads) a real source model: the slow lane.
pytestmark = pytest.mark.slow

# The pixel pair (a source trained here): small enough for a 2-core CI machine, large enough to
# learn something real.
SMALL = dict(
    **PIXEL,
    width=16,
    depth=2,
    source_per_class=60,
    source_epochs=4,
    target_per_class=40,
    n_kernel=16,
    steps=120,
    eval_every=40,
)


@pytest.fixture(scope="module")
def trained():
    cfg = ExperimentConfig(**SMALL)
    model, record = load_or_train_source(cfg, device="cpu")
    return cfg, model, record


def test_source_training_beats_chance_and_reports_accuracy(trained):
    cfg, model, record = trained
    assert record.source_test_acc > 0.3  # 10 classes: chance is 0.1
    assert 0 <= record.source_train_acc <= 1
    assert record.weights == "none" and record.n_params_frozen == 0
    assert record.n_params_trainable == sum(p.numel() for p in model.parameters())
    assert not any(p.requires_grad for p in model.parameters())


def test_same_config_never_retrains(trained, monkeypatch):
    cfg, model, record = trained
    assert stored_source_path(cfg).exists()
    import reprog_core.source_model.training as training

    monkeypatch.setattr(training, "train_source", lambda *a, **k: pytest.fail("retrained"))
    model2, record2 = load_or_train_source(cfg, device="cpu")
    assert record2.source_test_acc == record.source_test_acc
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(model(x), model2(x))


def test_corrupt_stored_source_is_discarded_and_retrained(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROG_CACHE_DIR", str(tmp_path))
    cfg = ExperimentConfig(**{**SMALL, "source_per_class": 10, "source_epochs": 1})
    path = stored_source_path(cfg)
    path.write_bytes(b"not a torch file")
    _, record = load_or_train_source(cfg, device="cpu")
    assert record.source_test_acc >= 0 and path.stat().st_size > 1000


def test_fit_beats_the_none_baseline(trained):
    cfg, model, _ = trained
    cfg = cfg.replace(transform="fc")
    td = target_data(cfg)
    _, res = reprogram(cfg, model, td, n_source=10)
    base = baseline_accuracy(cfg, model, td, 10)
    assert res.target_test_acc > base + 0.2, (res.target_test_acc, base)
    assert res.curves.train_loss[-1] < res.curves.train_loss[0]
    assert res.curves.eval_step[0] == 0 and res.curves.eval_step[-1] == cfg.steps
    assert len(res.examples_after) == len(res.examples_before) > 0
    assert res.prompt is None and res.stopped == ""


def test_vp_fit_returns_its_prompt_and_only_trains_theta(trained):
    cfg, model, _ = trained
    before = [p.clone() for p in model.parameters()]
    _, res = reprogram(cfg.replace(steps=30, transform="vp"), model, target_data(cfg), n_source=10)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    prompt = torch.tensor(res.prompt)
    assert prompt.shape == (3, 32, 32) and 0 <= prompt.min() and prompt.max() <= 1
    assert res.n_params_transform == 720


def test_same_seed_gives_same_curves_on_cpu(trained):
    cfg, model, _ = trained
    cfg = cfg.replace(steps=25, eval_every=5)
    a = reprogram(cfg, model, target_data(cfg), n_source=10)[1].curves
    b = reprogram(cfg, model, target_data(cfg), n_source=10)[1].curves
    assert a.train_loss == b.train_loss and a.test_acc == b.test_acc
    c = reprogram(cfg.replace(seed=1), model, target_data(cfg.replace(seed=1)), n_source=10)[1]
    assert c.curves.train_loss != a.train_loss


@pytest.mark.parametrize("mapping", ["identity", "ilm", "learned"])
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_every_mapping_and_loss_fits(trained, mapping, loss):
    cfg, model, _ = trained
    cfg = cfg.replace(mapping=mapping, loss=loss, steps=10, eval_every=5)
    _, res = reprogram(cfg, model, target_data(cfg), n_source=10)
    assert all(math.isfinite(v) for v in res.curves.train_loss)
    assert (res.mapping is None) == (mapping == "learned")


def test_nan_stops_the_fit_with_a_clear_message(trained):
    cfg, model, _ = trained
    cfg = cfg.replace(transform="vp-full", lr=1e30, steps=50, optimizer="sgd", loss="mse")
    _, res = reprogram(cfg, model, target_data(cfg), n_source=10)
    assert "stopped" in res.stopped and "learning rate" in res.stopped
    assert len(res.curves.step) < 50
    assert math.isfinite(res.target_test_acc)
