"""Issue 15, items 1 and 2, on small tensors and hand-made records: the offset-free part of the
predicted loss against an explicit gradient-descent loop, the learned mapping refused in the
kernel regime, and what the caption, the cautions, the figure and the CSV say. The real fits:
tests/integration/test_kernel_regime_honesty.py."""

from __future__ import annotations

import csv
import dataclasses
import io

import pytest
import torch

from dashboard import downloads, state
from reprog_core import cautions, figures
from reprog_core.config import ConfigError, ExperimentConfig
from reprog_core.ntk.dynamics import ntk_dynamics, offset_split
from reprog_core.results import KernelRegime
from tests.configs import PIXEL
from tests.unit.test_figures import fake_explore


# ----------------------------------------------------------------------------- the offset
def _gd_losses(k: torch.Tensor, r0: torch.Tensor, lr: float, steps: int):
    """(loss, offset-free loss) per step of r <- (I - lr K / N) r, explicitly."""
    n, c = r0.shape
    r = r0.reshape(-1).clone()
    out = []
    for _ in range(steps + 1):
        out.append(offset_split(r.reshape(n, c)))
        r = r - lr / n * (k @ r)
    return out


def _psd(rows: int, rank: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(rows, rank, generator=g, dtype=torch.float64)
    return a @ a.T


@pytest.mark.parametrize("rho", [0.1, 1.5])  # 1.5: the stiffest mode overshoots, sign flips
def test_the_predicted_offset_free_loss_is_that_of_gradient_descent(rho):
    n, c = 6, 3
    k = _psd(n * c, 10, 0)  # rank-deficient: part of r_0 never moves
    r0 = torch.randn(n, c, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.7
    lam = float(torch.linalg.eigvalsh(k)[-1])
    lr = rho * n / lam
    dyn = ntk_dynamics(k, r0, lr=lr, steps=9, offsets=True)
    want = _gd_losses(k, r0, lr, 9)
    assert dyn["loss"] == pytest.approx([w[0] for w in want], rel=1e-9)
    assert dyn["loss_offset_free"] == pytest.approx([w[1] for w in want], rel=1e-9, abs=1e-12)
    assert dyn["offset"] == pytest.approx([w[0] - w[1] for w in want], rel=1e-8, abs=1e-12)
    # A top-k decomposition: the unseen part of r_0 stays, its mean included.
    w, v = torch.linalg.eigh(k)
    top = ntk_dynamics((w[-4:], v[:, -4:]), r0, lr=lr, steps=9, offsets=True)
    k4 = v[:, -4:] @ torch.diag(w[-4:]) @ v[:, -4:].T
    want4 = _gd_losses(k4, r0, lr, 9)
    assert top["loss_offset_free"] == pytest.approx([x[1] for x in want4], rel=1e-9)


def test_the_trace_form_offset_matches_the_full_form_when_outputs_decouple():
    n, c = 5, 4
    kt = _psd(n, n, 2)
    full = torch.kron(kt / c, torch.eye(c, dtype=torch.float64))
    r0 = torch.randn(n, c, generator=torch.Generator().manual_seed(3), dtype=torch.float64) - 0.3
    a = ntk_dynamics(kt, r0, lr=0.4, steps=7, offsets=True)
    b = ntk_dynamics(full, r0, lr=0.4, steps=7, offsets=True)
    assert a["loss_offset_free"] == pytest.approx(b["loss_offset_free"], rel=1e-9)
    assert "offset" not in ntk_dynamics(kt, r0, lr=0.4, steps=7)  # stored records unchanged


def test_offset_split_removes_each_outputs_mean_residual():
    r = torch.tensor([[1.0, -2.0], [3.0, 0.0], [2.0, 2.0]])
    raw, free = offset_split(r)
    assert raw == pytest.approx(0.5 * float((r**2).sum()) / 3)
    assert free == pytest.approx(0.5 * float(((r - r.mean(0)) ** 2).sum()) / 3)
    assert raw - free == pytest.approx(0.5 * float((r.mean(0) ** 2).sum()))
    assert offset_split(r - r.mean(0))[1] == pytest.approx(free)


# ----------------------------------------------------------------------------- the config
def test_learned_in_the_kernel_regime_is_refused_with_one_line():
    with pytest.raises(ConfigError) as err:
        ExperimentConfig(**PIXEL, mapping="learned", regime="kernel")
    msg = str(err.value)
    assert "\n" not in msg and "read-out" in msg and "identity, flm or ilm" in msg
    for mapping in ("identity", "flm", "ilm"):
        assert ExperimentConfig(**PIXEL, mapping=mapping, regime="kernel").regime == "kernel"
    assert ExperimentConfig(**PIXEL, mapping="learned").mapping == "learned"  # practical: kept
    # A URL asking for both keeps the first and says why the second was dropped.
    cfg, warnings = state.parse_config({"mapping": "learned", "regime": "kernel"})
    assert cfg.mapping == "learned" and cfg.regime == "practical"
    assert any("cannot run in the kernel regime" in w for w in warnings)


# ----------------------------------------------------------------------------- what is said
def _kr(**changes) -> KernelRegime:
    kr = {
        "steps": list(range(11)),
        "measured_loss": [10.0 * 0.9**t for t in range(11)],
        "predicted_loss": [10.0 * 0.9**t for t in range(11)],
        "rho": 0.1,
        "lr": 2.0,
        "lr_lambda_max_over_n": 0.1,
        "lambda_max_full": 32.0,
        "n": 16,
        "n_outputs": 10,
        "agreement_tol": 0.1,
        "agree_until": 6,
        "parted_at": 7,
        "worst_error": 0.08,
        "loss_drop": 0.47,
        "drift": 0.3,
        "drift_at_parting": 0.2,
        "trace_form_gap": 0.8,
        "measured_loss_offset_free": [3.0 * 0.97**t for t in range(11)],
        "predicted_loss_offset_free": [3.0 * 0.96**t for t in range(11)],
        "offset_share": 0.7,
        "agree_until_half_kernel": 2,
        "agree_until_double_kernel": 1,
        "band_discriminates": True,
        "mapping": "flm",
        "mapping_note": "",
    }
    return KernelRegime(**{**kr, **changes})


def test_the_caption_says_what_the_accuracy_and_the_offset_mean():
    text = figures.kernel_regime_caption(_kr())
    assert "trains on the N = 16 kernel samples only" in text
    assert "70% of the squared loss is the offset common to every sample" in text
    assert "the largest eigen-direction removes it first" in text
    assert "halved stays within it up to step 2, doubled up to step 1" in text
    assert "so the band tells them apart" in text and "ILM" not in text


def test_the_caption_says_when_the_band_cannot_tell_the_kernels_apart():
    kr = _kr(agree_until_half_kernel=10, band_discriminates=False, mapping_note="ILM frozen at θ₀")
    text = figures.kernel_regime_caption(kr)
    assert "cannot tell the right kernel from the halved one" in text
    assert "weak evidence" in text and "ILM frozen at θ₀." in text
    # Without the offset-free loss the caption says what it knows, nothing more.
    bare = _kr(measured_loss_offset_free=[], predicted_loss_offset_free=[], offset_share=None)
    text = figures.kernel_regime_caption(bare)
    assert "offset" not in text and "kernel samples only" in text


def test_the_figure_draws_the_offset_free_curves_in_the_kernel_regime_only():
    res = fake_explore()
    practical = figures.fit_curves_figure(res.fit, res.kernel, res.weights)
    assert not any("offset" in (t.name or "") for t in practical.data)
    kr = _kr()
    fit = dataclasses.replace(res.fit, kernel_regime=kr)
    fig = figures.fit_curves_figure(fit, res.kernel, res.weights)
    free = [t for t in fig.data if "offset removed" in (t.name or "")]
    assert [t.xaxis for t in free] == ["x2", "x2"]
    measured, predicted = free
    assert list(measured.y) == kr.measured_loss_offset_free
    assert "70% of the loss at θ₀" in measured.name
    assert max(predicted.x) == kr.agree_until  # drawn where the prediction is
    lo, _ = fig.layout.yaxis2.range  # the axis holds the offset-free curve
    low = min(kr.measured_loss_offset_free)
    assert (10**lo if fig.layout.yaxis2.type == "log" else lo) <= low


def test_curves_csv_carries_only_what_the_page_draws():
    res = fake_explore()  # Adam + cross-entropy: its kernel record has a predicted curve
    assert res.kernel.dynamics.step
    header = _csv(downloads.curves_csv(res))[0]
    assert "ntk_predicted_loss" not in header
    kr = _kr()
    res.fit.kernel_regime = kr
    rows = _csv(downloads.curves_csv(res))
    assert rows[0] == [
        "step",
        "train_loss",
        "train_acc",
        "test_acc",
        "kernel_loss",
        "ntk_predicted_loss",
        "kernel_loss_offset_free",
        "ntk_predicted_loss_offset_free",
    ]
    by_step = {int(r[0]): dict(zip(rows[0], r)) for r in rows[1:]}
    assert float(by_step[6]["ntk_predicted_loss"]) == pytest.approx(kr.predicted_loss[6])
    assert by_step[7]["ntk_predicted_loss"] == "" and by_step[7]["kernel_loss_offset_free"]
    assert float(by_step[3]["kernel_loss"]) == pytest.approx(kr.measured_loss[3])


def _csv(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return list(csv.reader(io.StringIO("\n".join(lines))))


def test_cautions_say_why_the_kernel_regime_can_end_below_its_baseline():
    res = fake_explore()
    res.fit.target_test_acc, res.fit.baseline_test_acc = 0.14, 0.20
    plain = " | ".join(cautions.result_cautions(res))
    assert "ends below its baseline" in plain and "kernel samples only" not in plain
    res.fit.kernel_regime = _kr()
    text = " | ".join(cautions.result_cautions(res))
    assert "trains on the N = 16 kernel samples only" in text
    assert "offset common to every sample (70.0% of it at θ₀ here)" in text


def test_cautions_say_when_the_baseline_is_below_chance():
    res = fake_explore()
    res.fit.baseline_test_acc = 0.039
    res.fit.baseline_note = "nothing trained or fitted: target class k reads source output k"
    res.config = res.fit.config = res.config.replace(mapping="identity")
    text = " | ".join(cautions.result_cautions(res))
    assert "The baseline is below chance: 3.9%" in text and "10.0%" in text
    assert "mapping 'identity'" in text and "nothing trained or fitted" in text
    res.fit.baseline_test_acc = 0.2
    assert "below chance" not in " | ".join(cautions.result_cautions(res))
