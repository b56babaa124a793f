"""Figures and cautions of results the real pipeline computed on tiny settings (issue 10): what
the loss panel shows and what it says instead. Hand-made results: tests/unit/test_figures.py."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import plotly.graph_objects as go
import pytest

from reprog_core import cautions, figures, pipeline
from reprog_core.config import ExperimentConfig
from reprog_core.results import ExperimentRecord, json_safe
from tests.configs import PIXEL
from tests.figure_text import figure_text as _texts

# --------------------------------------------------------------------------- issue 10: real fits
# Results built by the real pipeline on tiny settings of the pixel pair (a 2-epoch source on 20
# images per class, 16 kernel samples, 20 fit steps), once per module: a practical fit (Adam +
# cross-entropy, minibatches), a kernel-regime fit at rho = 0.5 (its prediction and the fit part
# within the 20 steps: the kernel drifts), and a kernel-regime fit at a step size far past the
# stability limit.
TINY = dict(**PIXEL, steps=20, source_per_class=20, source_epochs=2, n_kernel=16)


def _explore(**kw: object) -> ExperimentRecord:
    # As the backend hands it to the pages: strict JSON, parsed into the typed record.
    stored = pipeline.run_explore(ExperimentConfig(**TINY, **kw))
    return ExperimentRecord.from_dict(json.loads(json.dumps(json_safe(stored), allow_nan=False)))


@pytest.fixture(scope="module")
def practical() -> ExperimentRecord:
    return _explore()


@pytest.fixture(scope="module")
def kernel_regime() -> ExperimentRecord:
    return _explore(regime="kernel", rho=0.5)


@pytest.fixture(scope="module")
def unstable() -> ExperimentRecord:
    return _explore(regime="kernel", lr=500.0)


def _loss_panel(fig: go.Figure) -> list[go.Scatter]:
    return [t for t in fig.data if t.xaxis == "x2"]


@pytest.mark.slow
def test_practical_fit_has_no_prediction_on_its_axes(practical: ExperimentRecord) -> None:
    fit, kernel = practical.fit, practical.kernel
    assert kernel is not None and kernel.dynamics is not None
    assert (fit.config.optimizer, fit.config.loss) == ("adam", "ce")
    assert fit.kernel_regime is None
    assert kernel.dynamics.step  # a prediction exists in the result ...
    fig = figures.fit_curves_figure(fit, kernel, practical.weights)
    # ... and is not drawn on the measured-loss axes of a fit it does not describe.
    assert [t.name for t in _loss_panel(fig)] == ["measured squared loss (kernel samples)"]
    assert not any("NTK" in (t.name or "") or "predict" in (t.name or "") for t in fig.data)
    assert not fig.layout.shapes  # no parting marker either
    text = _texts(fig)
    assert "No NTK prediction on these axes" in text and "adam" in text
    lo, hi = fig.layout.yaxis2.range
    measured = fit.curves.kernel_loss
    assert lo <= min(measured) and max(measured) <= hi <= 1.2 * max(measured)
    overlay = figures.curves_overlay_figure([fit], [kernel], ["A: fc"])
    assert not any("NTK" in (t.name or "") for t in overlay.data)
    # What the spectrum does say, in its own place: the time scales of its modes at rho.
    scales = figures.spectrum_timescales(kernel, practical.config)
    assert "Top mode (λ_max): 10 steps" in scales and "indicative" in scales


@pytest.mark.slow
def test_kernel_regime_prediction_stops_where_it_parts_from_the_fit(
    kernel_regime: ExperimentRecord,
) -> None:
    fit, kernel = kernel_regime.fit, kernel_regime.kernel
    kr = fit.kernel_regime
    assert kr is not None
    assert len(kr.steps) == len(kr.measured_loss) == len(kr.predicted_loss) == 21
    assert kr.parted_at is not None and kr.agree_until is not None
    assert kr.agree_until < kr.steps[-1]
    fig = figures.fit_curves_figure(fit, kernel, kernel_regime.weights)
    measured, pred = _loss_panel(fig)[:2]  # then their offset-free parts
    assert list(measured.x) == kr.steps
    # The prediction is drawn up to agree_until, never beyond: within 10% of the fit there.
    assert pred.name.startswith("NTK prediction, full kernel") and pred.line.dash == "solid"
    assert max(pred.x) == kr.agree_until and len(pred.x) == kr.agree_until + 1
    for t, p in zip(pred.x, pred.y):
        m = kr.measured_loss[kr.steps.index(t)]
        assert abs(p - m) <= 0.1 * m
    # The step where they part is marked, with the kernel drift that explains it.
    assert [s.x0 for s in fig.layout.shapes if s.xref == "x2"] == [kr.parted_at]
    drift = figures.fmt(kr.drift_at_parting, 2)
    assert f"prediction and fit part here (kernel drift {drift})" in _texts(fig)
    caption = figures.kernel_regime_caption(kr)
    for part in (
        "ρ = 0.5",
        f"η = ρ·N/λ_max = {figures.fmt(kr.lr, 3)}",
        "η·λ_max/N = 0.5",
        f"up to step {kr.agree_until}",
        "falls by",
        f"Kernel drift at the end (step 20): {figures.fmt(kr.drift, 2)}",
    ):
        assert part in caption
    assert caption[:40] in _texts(fig).replace("<br>", " ")
    # The y-range follows the measured loss, whatever the undrawn prediction does.
    lo, hi = fig.layout.yaxis2.range
    assert lo <= min(kr.measured_loss) and max(kr.measured_loss) <= hi
    overlay = figures.curves_overlay_figure([fit], [kernel], ["A: kernel"])
    dashed = [t for t in overlay.data if t.line.dash == "dash"]
    assert len(dashed) == 1 and max(dashed[0].x) == kr.agree_until
    assert [s.x0 for s in overlay.layout.shapes] == [kr.parted_at]


@pytest.mark.slow
def test_an_exploding_prediction_and_a_diverged_fit_are_said_not_plotted(
    unstable: ExperimentRecord,
) -> None:
    fit = unstable.fit
    kr = fit.kernel_regime
    assert kr is not None
    assert kr.lr_lambda_max_over_n > 2  # lr set by hand, past the stability limit
    fig = figures.fit_curves_figure(fit, unstable.kernel, unstable.weights)
    text = _texts(fig).replace("<br>", " ")
    assert "The NTK prediction explodes" in text
    preds = [t for t in fig.data if (t.name or "").startswith("NTK prediction")]
    assert all(max(t.y) <= 1.1 * max(v for v in kr.measured_loss if v) for t in preds)
    finite = [v for v in kr.measured_loss if v is not None and np.isfinite(v)]
    lo, hi = fig.layout.yaxis2.range
    top = 10**hi if fig.layout.yaxis2.type == "log" else hi
    assert top <= 2 * max(finite)  # never stretched to the prediction's 1e+something
    notes = cautions.result_cautions(unstable)
    assert any("The NTK prediction explodes" in m for m in notes)
    assert any("above 2: gradient descent diverges" in m for m in notes)
    if fit.stopped:
        assert "STOPPED EARLY" in text
        assert any(m.startswith("The fit did not run to the end") for m in notes)


@pytest.mark.slow
def test_cautions_name_each_condition(
    practical: ExperimentRecord, kernel_regime: ExperimentRecord
) -> None:
    # Real: a 2-epoch source on 20 images per class is near chance and cut off by its epoch cap;
    # 16 kernel samples for 10 classes are too few; the trace form is shown.
    assert practical.source.stopped_by == "epoch cap"
    notes = cautions.result_cautions(practical)
    joined = " | ".join(notes)
    assert "The source model is near chance" in joined
    assert "stopped at its epoch cap" in joined
    assert "N = 16 samples for c_T = 10" in joined
    assert "trace form" in joined and "not the kernel the dynamics use" in joined
    assert "switch on the kernel regime to measure the gap" in joined  # said qualitatively
    assert "η·λ_max/N" not in joined  # Adam: no gradient-descent step size to state
    kr = kernel_regime.fit.kernel_regime
    assert kr is not None
    knotes = " | ".join(cautions.result_cautions(kernel_regime))
    gap = figures.fmt(kr.trace_form_gap, 2)
    assert f"‖K_full − (K_trace/c)⊗I‖_F / ‖K_full‖_F = {gap}" in knotes
    assert "η·λ_max/N = 0.5 for the full kernel" in knotes

    # The same real result with one number changed at a time, for the conditions a tiny run
    # does not produce by itself, and for their absence.
    def changed(part: str, **values: object) -> list[str]:
        r = copy.deepcopy(practical)
        setattr(r, part, dataclasses.replace(getattr(r, part), **values))
        return cautions.result_cautions(r)

    base = practical.fit.baseline_test_acc
    assert base is not None
    assert any("ends below its baseline" in m for m in changed("fit", target_test_acc=base - 0.05))
    assert not any("ends below its baseline" in m for m in changed("fit", target_test_acc=base))
    good_source = changed("source", source_test_acc=0.9, stopped_by="plateau")
    assert not any("near chance" in m or "epoch cap" in m for m in good_source)
    assert practical.kernel is not None
    stats = practical.kernel.stats
    near_tol = dataclasses.replace(stats, lambda_min=1.2 * stats.rank_tol)
    assert any(
        "set by the numerical tolerance, not the data" in m
        for m in changed("kernel", stats=near_tol)
    )
    far_from_tol = dataclasses.replace(stats, lambda_min=20 * stats.rank_tol)
    assert not any("numerical tolerance" in m for m in changed("kernel", stats=far_from_tol))
    assert not any("N = 20 samples" in m for m in changed("kernel", n=20))
    assert not any("trace form" in m for m in changed("kernel", n=20, kernel="full"))


def _shape(value: object) -> object:
    """The keys of every nested dict (values' types left out): a record's shape."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    return None


@pytest.mark.slow  # one tiny real explore (pipeline.run_explore)
def test_the_unit_tests_small_results_have_the_real_records_shape() -> None:
    """tests/unit/test_figures.py draws figures of small typed records; stored, they must have the
    shape of what the pipeline stores, or the figures would be tested on something the pages
    never see."""
    from tests.records import tiny_record
    from tests.unit.test_figures import fake_explore

    real, small = tiny_record(transform="vp"), fake_explore(transform="vp")
    real_shape, small_shape = _shape(real.to_dict()), _shape(small.to_dict())
    assert set(small_shape) == set(real_shape)
    for part in ("source", "fit", "kernel"):
        assert set(small_shape[part]) == set(real_shape[part]), part
