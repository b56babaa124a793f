"""Spectrum statistics on matrices with known answers, and the linearised training prediction
against real full-batch gradient-descent fits (``fit.reprogram`` with sgd + mse)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from reprog_core.config import ExperimentConfig
from reprog_core.fit import TargetData, reprogram
from reprog_core.ntk import (
    alignment,
    eigendecompose,
    initial_residuals,
    ntk_dynamics,
    spectrum,
    target_ntk,
)
from reprog_core.reprogrammed import build_reprogrammed
from reprog_core.source_model.pixel import PixelMLP
from tests.configs import PIXEL

F64 = torch.float64


# ----------------------------------------------------------------------------- spectrum


def test_diagonal_matrix():
    stats = spectrum(torch.diag(torch.tensor([1.0, 4.0, 2.0, 3.0], dtype=F64)))
    assert stats.eigenvalues == [4.0, 3.0, 2.0, 1.0]
    assert (stats.lambda_max, stats.lambda_min, stats.lambda_min_raw) == (4.0, 1.0, 1.0)
    assert stats.rank == 4 and stats.n_negative == 0
    assert stats.condition_number == pytest.approx(4.0)
    assert stats.trace == pytest.approx(10.0)
    assert stats.abs_sum_over_n == pytest.approx(10.0 / 4)
    p = np.array([4, 3, 2, 1]) / 10
    assert stats.effective_rank == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert stats.rank_tol == pytest.approx(4 * np.finfo(np.float64).eps * 4.0)
    assert stats.alignment is None and stats.alignment_targets == "none"
    assert not stats.partial


def test_rank_deficient_matrix_reports_rank_and_a_meaningful_lambda_min():
    a = torch.randn(8, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    k = a @ a.T
    stats = spectrum(k)
    w_true = torch.linalg.eigvalsh(a.T @ a)  # the 3 nonzero eigenvalues
    assert stats.rank == 3
    assert stats.lambda_min == pytest.approx(float(w_true.min()), rel=1e-10)
    assert abs(stats.lambda_min_raw) <= stats.rank_tol  # the unclipped zero, at round-off level
    assert stats.condition_number == pytest.approx(float(w_true.max() / w_true.min()), rel=1e-10)
    assert stats.n_negative == 0


def test_float32_kernel_gets_the_float32_tolerance():
    k = torch.diag(torch.tensor([1.0, 1e-3, 1e-7]))
    stats = spectrum(k)
    assert stats.rank_tol == pytest.approx(3 * np.finfo(np.float32).eps)
    assert stats.rank == 2 and stats.lambda_min == pytest.approx(1e-3)
    assert spectrum(k, rank_rtol=1e-8).rank == 3  # a stated rtol overrides


def test_negative_eigenvalues_are_reported_not_clipped():
    stats = spectrum(torch.diag(torch.tensor([3.0, 1.0, -0.5], dtype=F64)))
    assert stats.n_negative == 1
    assert stats.lambda_min_raw == -0.5
    assert stats.lambda_min == 1.0 and stats.rank == 2
    assert stats.eigenvalues == [3.0, 1.0, -0.5]


def test_symmetrised_before_decomposition():
    k = torch.tensor([[2.0, 1.0], [0.0, 2.0]], dtype=F64)  # (K + K^T)/2 = [[2, .5], [.5, 2]]
    assert spectrum(k).eigenvalues == pytest.approx([2.5, 1.5])


def test_power_law_decay_exponent():
    w = torch.arange(1, 41, dtype=F64) ** -2.0
    q, _ = torch.linalg.qr(
        torch.randn(40, 40, dtype=F64, generator=torch.Generator().manual_seed(1))
    )
    stats = spectrum(q @ torch.diag(w) @ q.T)
    assert stats.decay_exponent == pytest.approx(2.0, abs=1e-6)
    assert spectrum(torch.eye(2, dtype=F64)).decay_exponent is None  # too few eigenvalues


def test_alignment_with_centred_one_hot_targets():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    yc = torch.nn.functional.one_hot(y, 3).double()
    yc = yc - yc.mean(0)
    ideal = yc @ yc.T
    stats = spectrum(ideal, y)
    assert stats.alignment == pytest.approx(1.0)
    assert "centred one-hot" in stats.alignment_targets and "trace" in stats.alignment_targets
    # The full form (N*c rows) aligns with vec(Y) sample-major.
    v = yc.reshape(-1)
    full = spectrum(torch.outer(v, v), y)
    assert full.alignment == pytest.approx(1.0) and "full" in full.alignment_targets
    assert full.abs_sum_over_n == pytest.approx(float(torch.outer(v, v).abs().sum()) / 6)
    # A constant kernel carries no class information once targets are centred.
    a, _ = alignment(torch.ones(6, 6, dtype=F64), y)
    assert a == pytest.approx(0.0, abs=1e-12)


def test_eigendecompose_is_descending_with_matching_vectors():
    a = torch.randn(5, 5, dtype=F64, generator=torch.Generator().manual_seed(2))
    k = a @ a.T
    w, v = eigendecompose(k)
    assert torch.all(w[:-1] >= w[1:])
    assert torch.allclose(k @ v, v * w, atol=1e-10)


# ----------------------------------------------------------------------------- dynamics


def test_trace_form_dynamics_equals_full_form_when_prop1_is_exact():
    """K_full = (K_trace / c) ⊗ I_c: both forms predict the same curve."""
    a = torch.randn(6, 4, dtype=F64, generator=torch.Generator().manual_seed(3))
    k_trace = a @ a.T
    c = 3
    k_full = torch.kron(k_trace / c, torch.eye(c, dtype=F64))
    r0 = torch.randn(6, c, dtype=F64, generator=torch.Generator().manual_seed(4))
    lr = 0.5 * 6 / float(torch.linalg.eigvalsh(k_full).max())
    full = ntk_dynamics(k_full, r0, lr=lr, steps=20)
    trace = ntk_dynamics(k_trace, r0, lr=lr, steps=20)
    assert full["kernel"] == "full" and trace["kernel"] == "trace"
    assert "Prop. 1" in trace["approximation"]
    assert np.allclose(full["loss"], trace["loss"], rtol=1e-12)
    assert full["loss"][0] == pytest.approx(0.5 * float((r0**2).sum()) / 6)
    # The part of r0 outside the kernel's range never moves.
    assert full["loss"][-1] > 0


def test_top_k_dynamics_keeps_the_unseen_residual():
    k = torch.diag(torch.tensor([2.0, 1.0, 0.5], dtype=F64))
    r0 = torch.ones(3, 1, dtype=F64)
    w, v = eigendecompose(k)
    top = ntk_dynamics((w[:1], v[:, :1]), r0, lr=1.0, steps=200)
    assert top["loss"][-1] == pytest.approx(0.5 * 2 / 3, rel=1e-6)  # two directions never learnt
    assert top["stable"] and top["lr_lambda_max_over_n"] == pytest.approx(2 / 3)
    assert not ntk_dynamics(k, r0, lr=4.0, steps=3)["stable"]


class LinearSource(nn.Module):
    """f_S(z) = W vec(z) + b: with the fc transform f_T is affine in θ; linearising is exact."""

    def __init__(self, d: int, c: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d, c)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z.flatten(1))


def _fit_setup(transform: str, source: nn.Module, n: int, n_classes: int, steps: int):
    cfg = ExperimentConfig(
        **{**PIXEL, "source_size": 8, "transform": transform},
        target_size=4,
        mapping="identity",
        loss="mse",
        optimizer="sgd",
        steps=steps,
        eval_every=1,
        n_kernel=n,
        lr=1.0,
    )
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 6, 6, generator=g)
    y = torch.arange(n) % n_classes
    td = TargetData(x, y, x[:4], y[:4], x, y, tuple(str(i) for i in range(n_classes)))
    for p in source.parameters():
        p.requires_grad_(False)
    # The model the fit starts from: transforms initialise deterministically.
    model = build_reprogrammed(cfg, source, n_classes, source(torch.zeros(1, 3, 8, 8)).shape[1])
    return cfg, td, model


def _predict_and_fit(cfg, td, model, source, rate: float, kernel: str):
    k, _ = target_ntk(model, td.x_kernel, kernel=kernel, dtype=F64)
    r0 = initial_residuals(model, td.x_kernel, td.y_kernel)
    n, c = r0.shape
    lam_max = float(eigendecompose(k, vectors=False)[0][0]) / (c if kernel == "trace" else 1)
    lr = rate * n / lam_max  # η λ_max / N = rate
    pred = ntk_dynamics(k, r0, lr=lr, steps=cfg.steps)
    _, res = reprogram(cfg.replace(lr=lr), source, td, n_source=n_classes_of(source))
    return pred, res


def n_classes_of(source: nn.Module) -> int:
    return int(source(torch.zeros(1, 3, 8, 8)).shape[1])


def test_dynamics_match_an_sgd_fit_of_a_linear_model_exactly():
    source = LinearSource(3 * 8 * 8, 3)
    torch.manual_seed(0)
    cfg, td, model = _fit_setup("fc", source, n=12, n_classes=3, steps=8)
    pred, res = _predict_and_fit(cfg, td, model, source, rate=1.2, kernel="full")
    # fit: train_loss[s-1] = L(θ_{s-1}) (before step s's update); kernel_loss[s] = L(θ_s).
    assert np.allclose(res.curves.train_loss, pred["loss"][:-1], rtol=1e-4)
    assert np.allclose(res.curves.kernel_loss, pred["loss"], rtol=1e-4)
    assert pred["loss"][-1] < 0.95 * pred["loss"][0]  # it did learn something


@pytest.mark.parametrize("kernel, tolerance", [("full", 0.02), ("trace", 0.05)])
def test_dynamics_predict_a_nearly_linear_fit(kernel, tolerance):
    """A few small steps of an additive prompt through a tiny ReLU MLP: the linearised prediction
    follows the real loss to within 2% of the initial loss (5% for the trace form, which adds
    Prop. 1's approximation). θ enters through the frozen net's *input*, so a wider source does
    not make this more linear; small steps do."""
    torch.manual_seed(0)
    source = PixelMLP(8, 1, 64, 3, ntk_init=True)
    cfg, td, model = _fit_setup("vp-full", source, n=10, n_classes=3, steps=5)
    pred, res = _predict_and_fit(cfg, td, model, source, rate=0.1, kernel=kernel)
    real = np.array(res.curves.kernel_loss)
    assert np.abs(real - np.array(pred["loss"])).max() <= tolerance * real[0]
    assert real[-1] < 0.9 * real[0]  # the loss moved: the comparison is not trivial


def test_failed_device_eigh_falls_back_to_float64_on_the_cpu(monkeypatch, caplog):
    """cuSOLVER's float32 eigh can fail on degenerate spectra; simulated here on the CPU."""
    import reprog_core.ntk.spectral as spectrum_mod

    def fails(k, vectors):
        raise torch.linalg.LinAlgError("the algorithm failed to converge")

    monkeypatch.setattr(spectrum_mod, "_use_device_eigh", lambda k: True)
    monkeypatch.setattr(spectrum_mod, "_device_eigh", fails)
    k = torch.diag(torch.tensor([3.0, 2.0, 2.0]))
    with caplog.at_level("WARNING"):
        w, v = eigendecompose(k)
    assert w.dtype == F64 and w.tolist() == [3.0, 2.0, 2.0]
    assert "float64 on the CPU" in caplog.text


def test_dynamics_at_given_eval_steps_and_checked_form():
    k = torch.diag(torch.tensor([2.0, 1.0], dtype=F64))
    r0 = torch.ones(2, 1, dtype=F64)
    every = ntk_dynamics(k, r0, lr=0.5, steps=10)
    picked = ntk_dynamics(k, r0, lr=0.5, steps=10, eval_steps=[0, 5, 10], kernel_form="trace")
    assert picked["step"] == [0, 5, 10]
    assert picked["loss"] == [every["loss"][i] for i in (0, 5, 10)]
    k_full = torch.kron(k, torch.eye(2, dtype=F64))
    with pytest.raises(ValueError, match="full form"):
        ntk_dynamics(k_full, torch.ones(2, 2, dtype=F64), lr=0.5, steps=3, kernel_form="trace")
