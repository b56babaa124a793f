"""Issue 10: step sizes from the spectrum and the kernel regime's comparisons, on small tensors.
The real fits and the defaults that reprogram: tests/integration/test_kernel_regime.py."""

from __future__ import annotations

import pytest
import torch

from reprog_core.config import ConfigError, ExperimentConfig, sgd_step_size
from reprog_core.kernel_regime import agreement, trace_form_gap, trace_from_full


# ----------------------------------------------------------------------------- config boundary
def test_kernel_regime_is_full_batch_gd_on_squared_loss():
    cfg = ExperimentConfig(regime="kernel")
    assert (cfg.optimizer, cfg.loss) == ("sgd", "mse")
    # ...and sgd + mse *is* the kernel regime: one experiment, one name, one cache key.
    same = ExperimentConfig(optimizer="sgd", loss="mse")
    assert same.regime == "kernel" and same.key("fit") == cfg.key("fit")
    assert ExperimentConfig.from_dict({"regime": "kernel"}).optimizer == "sgd"
    assert ExperimentConfig(optimizer="sgd").regime == "practical"  # sgd + ce: not the theory's


@pytest.mark.parametrize("rho", [0.0, -0.1, 2.0, 5.0, float("nan"), float("inf")])
def test_rho_outside_the_stability_limit_is_refused(rho):
    with pytest.raises(ConfigError, match="rho"):
        ExperimentConfig(rho=rho)


def test_sgd_step_size_comes_from_the_spectrum_not_a_table():
    cfg = ExperimentConfig(optimizer="sgd")
    assert cfg.lr_from_spectrum
    with pytest.raises(ValueError, match="spectrum"):
        _ = cfg.effective_lr
    assert sgd_step_size(0.5, 64, 128.0) == pytest.approx(0.25)
    assert sgd_step_size(0.5, 64, 0.0) == 0.0  # a zero kernel has nothing to move
    assert ExperimentConfig(optimizer="sgd", lr=0.3).effective_lr == 0.3
    assert not ExperimentConfig().lr_from_spectrum  # Adam keeps its per-transform default


def test_trace_form_gap_is_zero_when_outputs_decouple_and_not_otherwise():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 5, generator=g, dtype=torch.float64)
    kt = a @ a.T
    decoupled = torch.kron(kt, torch.eye(3, dtype=torch.float64))
    assert torch.allclose(trace_from_full(decoupled, 3), 3 * kt)
    assert trace_form_gap(decoupled, 3) == pytest.approx(0.0, abs=1e-12)
    b = torch.randn(15, 15, generator=g, dtype=torch.float64)
    assert trace_form_gap(b @ b.T, 3) > 0.1


def test_agreement_finds_the_step_where_prediction_and_fit_part():
    measured = [10.0, 8.0, 6.0, 5.0, 4.0]
    predicted = [10.0, 8.1, 6.3, 4.0, 2.0]  # 1 %, 5 %, then 20 % off
    last, worst = agreement(measured, predicted)
    assert last == 2 and worst == pytest.approx(0.05)
    assert agreement(measured, measured) == (4, 0.0)
