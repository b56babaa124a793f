"""Issue 15, items 1 and 2, through the real code on a tiny pixel pair: a baseline that trains
what the fit's mapping trains, and a kernel regime that runs only what its prediction describes
(ILM frozen at θ₀, ``learned`` refused), with the offset-free loss and the scaled-kernel
horizons in its record. The pure parts: tests/unit/test_kernel_regime_honesty.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reprog_core import ntk, pipeline
from reprog_core.config import ConfigError, ExperimentConfig
from reprog_core.config_args import flag
from reprog_core.figures import kernel_regime_caption
from reprog_core.fit import (
    baseline_accuracy,
    baseline_step_size,
    initial_model,
    readout_lambda_max,
    reprogram,
    target_data,
)
from reprog_core.kernel_regime import agreement, fit_with_spectrum, full_kernel
from reprog_core.ntk.dynamics import offset_split
from reprog_core.source_model import n_source_classes
from reprog_core.source_model.training import load_or_train_source
from tests.configs import PIXEL

# A pixel CNN trained here for a few seconds (about 0.27 test accuracy on its 10 animal classes),
# reprogrammed to the default target of the pixel pair: digits, 10 classes, 100 per class.
SMALL = {
    **PIXEL,
    "source_size": 12,
    "target_size": 8,
    "depth": 1,
    "width": 8,
    "source_per_class": 30,
    "source_epochs": 3,
    "n_kernel": 16,
    "steps": 8,
    "eval_every": 4,
}
CHANCE = 0.1  # digits: 10 classes, a class-balanced test split
FLAGS = [arg for name, value in SMALL.items() for arg in (flag(name), str(value))]


@pytest.fixture(scope="module")
def source():
    cfg = ExperimentConfig(**SMALL)
    model, _ = load_or_train_source(cfg, device="cpu")
    return model


def _fit(source, **changes):
    cfg = ExperimentConfig(**{**SMALL, **changes})
    td = target_data(cfg)
    model, res = fit_with_spectrum(cfg, source, td, n_source=n_source_classes(cfg))
    return cfg, td, model, res


# ----------------------------------------------------------------------------- item 1: baselines
@pytest.mark.parametrize("mapping", ["flm", "ilm", "learned"])
@pytest.mark.parametrize("transform", ["fc", "vp"])
def test_a_fitted_or_trained_baseline_is_above_chance(source, transform, mapping):
    """The 'none' baseline fits (FLM, ILM) or trains (learned) the mapping the fit uses; a learned
    read-out at 'none''s own step size 0.0 stayed at its initialisation, below chance (0.039 on
    the default pixel pair, measured)."""
    cfg = ExperimentConfig(**{**SMALL, "transform": transform, "mapping": mapping, "steps": 300})
    td = target_data(cfg)
    base = baseline_accuracy(cfg, source, td, 10)
    assert base > CHANCE, (transform, mapping, base)


def test_the_learned_baseline_trains_the_read_out_at_the_fits_step_size(source):
    cfg = ExperimentConfig(**{**SMALL, "transform": "vp", "mapping": "learned", "steps": 300})
    td = target_data(cfg)
    assert baseline_step_size(cfg, source, td, 10) == 0.05  # Adam's step size for vp
    assert baseline_step_size(cfg.replace(transform="fc"), source, td, 10) == 1e-3
    assert baseline_step_size(cfg.replace(lr=0.2), source, td, 10) == 0.2
    # The learned read-out starts as the identity selection: trained, it beats it.
    trained = baseline_accuracy(cfg, source, td, 10)
    untrained = baseline_accuracy(cfg.replace(mapping="identity"), source, td, 10)
    assert trained > untrained + 0.2, (trained, untrained)
    # ...and the record says what the baseline trained.
    _, _, _, res = _fit(source, transform="vp", mapping="learned", steps=2)
    assert res.baseline_note.startswith("the learned 10×10 read-out trained alone for 2 steps")
    assert "at lr 0.05 (Adam's step size for vp" in res.baseline_note


def test_under_sgd_the_learned_baseline_uses_the_fits_rule_on_its_own_kernel(source):
    """sgd: eta = rho N / lambda_max of the kernel of what is trained, here the read-out's:
    (Z Z^T + 1) (x) I_c on the source logits of the resized kernel samples."""
    cfg = ExperimentConfig(**{**SMALL, "transform": "fc", "mapping": "learned", "optimizer": "sgd"})
    td = target_data(cfg)
    model = initial_model(cfg.replace(transform="none"), source, td, 10)
    x = td.x_kernel
    z = model.source(model.transform(x)).detach().double()
    # The read-out's full kernel from its Jacobian, w.r.t. (W, b), against the closed form.
    jac = torch.func.jacrev(lambda w, b: F.linear(z, w, b), argnums=(0, 1))(
        model.mapping.linear.weight.detach().double(), model.mapping.linear.bias.detach().double()
    )
    j = torch.cat([jac[0].reshape(len(x) * 10, -1), jac[1].reshape(len(x) * 10, -1)], 1)
    lam = float(torch.linalg.eigvalsh(j @ j.T)[-1])
    assert readout_lambda_max(z) == pytest.approx(lam, rel=1e-9)
    lr = baseline_step_size(cfg, source, td, 10)
    assert lr == pytest.approx(cfg.rho * len(x) / lam, rel=1e-6)
    _, res = reprogram(cfg.replace(transform="none"), source, td, n_source=10, lr=lr)
    assert res.curves.train_loss[-1] < res.curves.train_loss[0]  # it trains, and is stable


def test_identity_and_flm_baselines_fit_or_train_nothing_and_say_so(source):
    _, _, _, ident = _fit(source, mapping="identity")
    assert ident.baseline_note.startswith("nothing trained or fitted")
    _, _, _, ilm = _fit(source, mapping="ilm")
    assert ilm.baseline_note.startswith("FLM fitted on the resized training images")
    assert "ILM is FLM here" in ilm.baseline_note
    # A config whose transform is 'none' is its own baseline: at lr 0 nothing is trained.
    _, _, _, none = _fit(source, transform="none", mapping="learned")
    assert none.baseline_note.startswith("nothing trained") and "set lr" in none.baseline_note


# ----------------------------------------------------------------------------- item 2: mappings
@pytest.mark.parametrize("mapping", ["identity", "flm", "ilm"])
def test_the_kernel_regime_runs_the_mappings_its_prediction_describes(source, mapping):
    cfg, td, _, res = _fit(source, mapping=mapping, regime="kernel")
    kr = res.kernel_regime
    assert kr.mapping == mapping and res.config.mapping == mapping
    assert kr.predicted_loss[0] == pytest.approx(kr.measured_loss[0], rel=1e-5)
    assert (kr.mapping_note != "") == (mapping == "ilm")


def test_ilm_is_frozen_at_theta0_in_the_kernel_regime(source):
    """ILM refits its assignment every eval_every steps in a practical fit; in the kernel regime
    it keeps θ₀'s, so the fit is exactly FLM's (whose assignment is θ₀'s too) and says so."""
    _, _, _, ilm = _fit(source, mapping="ilm", regime="kernel", eval_every=1)
    _, _, _, flm = _fit(source, mapping="flm", regime="kernel", eval_every=1)
    a, b = ilm.kernel_regime, flm.kernel_regime
    assert a.measured_loss == b.measured_loss and ilm.mapping == flm.mapping
    assert "ILM frozen at θ₀" in a.mapping_note and b.mapping_note == ""
    assert "ILM frozen at θ₀" in kernel_regime_caption(a)


def test_learned_is_refused_in_the_kernel_regime_everywhere(run_cli):
    with pytest.raises(ConfigError, match="mapping 'learned' cannot run in the kernel regime"):
        ExperimentConfig(**SMALL, mapping="learned", regime="kernel")
    with pytest.raises(ConfigError, match="read-out"):  # sgd + mse is the kernel regime
        ExperimentConfig.from_dict({"mapping": "learned", "optimizer": "sgd", "loss": "mse"})
    ran = run_cli("fit", *FLAGS, "--regime", "kernel", "--mapping", "learned", check=False)
    assert ran.returncode == 2
    lines = [line for line in ran.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot run in the kernel regime" in lines[0]
    # The practical regime keeps it.
    assert ExperimentConfig(**SMALL, mapping="learned").regime == "practical"


# ----------------------------------------------------------------------------- item 2: the record
def test_the_offset_free_loss_is_measured_at_every_step(source):
    """The record's offset-free loss at step t is that of the model after t steps, recomputed
    here from a fit that stops at t (full-batch GD on the CPU repeats itself exactly)."""
    cfg, td, _, res = _fit(source, regime="kernel", steps=6)
    kr = res.kernel_regime
    assert kr.steps == list(range(7))
    for t in (0, 3, 6):
        model_t = _fit(source, regime="kernel", steps=t)[2]
        raw, free = offset_split(ntk.initial_residuals(model_t, td.x_kernel, td.y_kernel))
        assert kr.measured_loss_offset_free[t] == pytest.approx(free, rel=1e-5)
        assert kr.measured_loss[t] == pytest.approx(raw, rel=1e-5)
    # Prediction and measurement start together; the offset is a share of the loss at θ₀.
    assert kr.predicted_loss_offset_free[0] == pytest.approx(
        kr.measured_loss_offset_free[0], rel=1e-6
    )
    share = 1 - kr.measured_loss_offset_free[0] / kr.measured_loss[0]
    assert kr.offset_share == pytest.approx(share, rel=1e-5) and 0 < share < 1
    for raw_t, free_t in zip(kr.measured_loss, kr.measured_loss_offset_free):
        assert free_t <= raw_t


def test_the_scaled_kernel_horizons_are_those_of_the_same_prediction(source):
    cfg, td, _, res = _fit(source, regime="kernel", steps=12)
    kr = res.kernel_regime
    model0 = initial_model(cfg, source, td, 10)
    x, y = td.x_kernel, td.y_kernel
    w, v = torch.linalg.eigh(full_kernel(model0, x))
    r0 = ntk.initial_residuals(model0, x, y)
    for key, factor in (("agree_until_half_kernel", 0.5), ("agree_until_double_kernel", 2.0)):
        pred = ntk.ntk_dynamics((factor * w, v), r0, lr=kr.lr, steps=12)["loss"]
        last, _ = agreement(kr.measured_loss, pred)
        assert getattr(kr, key) == (kr.steps[last] if last >= 0 else None)
    horizon = -1 if kr.agree_until is None else kr.agree_until
    scaled = [
        -1 if getattr(kr, k) is None else getattr(kr, k)
        for k in ("agree_until_half_kernel", "agree_until_double_kernel")
    ]
    assert kr.band_discriminates == all(s < horizon for s in scaled)


def test_the_cli_json_carries_the_offset_free_loss_beside_the_raw_one(run_cli):
    import json

    ran = run_cli("fit", *FLAGS, "--regime", "kernel", "--mapping", "ilm", "--json")
    out = json.loads(ran.stdout)
    kr = out["kernel_regime"]
    for key in (
        "measured_loss_offset_free",
        "predicted_loss_offset_free",
        "offset_share",
        "agree_until_half_kernel",
        "agree_until_double_kernel",
        "band_discriminates",
    ):
        assert key in kr
    assert len(kr["measured_loss_offset_free"]) == len(kr["measured_loss"])
    assert "ILM frozen" in kr["mapping_note"] and out["baseline_note"]


def test_run_fit_returns_the_baseline_and_what_it_trained(source):
    res = pipeline.run_fit(ExperimentConfig(**SMALL, mapping="learned"), device="cpu")
    assert res["baseline_test_acc"] is not None
    assert res["baseline_note"].startswith("the learned 10×10 read-out trained alone")
