"""Plot builders (reprog_core.figures), Learn-page demos (reprog_core.demos) and the dashboard's
pure helpers (URL <-> config, downloads), without a browser or a Streamlit session, on hand-made
results. The figures of results the real pipeline computed: tests/integration/test_figures.py."""

from __future__ import annotations

import ast
import csv
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

# dashboard/ is not an installed package (it is an app folder next to the library): import it from
# the project root, as `streamlit run dashboard/app.py` does.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dashboard import downloads, state  # noqa: E402
from reprog_core import demos, figures, transforms  # noqa: E402
from reprog_core.config import SOURCE_FIELDS, ExperimentConfig  # noqa: E402
from reprog_core.results import (  # noqa: E402
    Dynamics,
    ExperimentRecord,
    FitCurves,
    FitResult,
    KernelResult,
    SourceResult,
    SpectrumStats,
)
from tests.configs import CLIP_TOWER, PIXEL
from tests.figure_text import figure_text as _texts


# --------------------------------------------------------------------------- small typed results
def fake_explore(
    weights: str = "none",
    transform: str = "vp",
    n: int = 16,
    kernel_form: str = "trace",
    optimizer: str = "adam",
    loss: str = "ce",
    depth: int = 3,
    rank: int | None = None,
    stopped: str = "",
) -> ExperimentRecord:
    """An explore record like those pipeline.run_explore computes (small, deterministic), as the
    pages, figures and cautions read it; ``tests/integration/test_figures.py`` checks its stored
    shape against a record the real pipeline computed."""
    # The pixel pair (weights 'none'), or clip-cnn on the open_clip tower with ``weights``.
    model = PIXEL if weights == "none" else {**PIXEL, "source_family": "clip-cnn", **CLIP_TOWER}
    cfg = ExperimentConfig(
        **{**model, "weights": "random" if weights == "none" else weights, "transform": transform},
        kernel_form=kernel_form,
        n_kernel=n,
        optimizer=optimizer,
        loss=loss,
        depth=depth,
        steps=20,
        eval_every=5,
    )
    c = 10
    size = n if kernel_form == "trace" else n * c
    rank = size - 3 if rank is None else rank
    eig = [10.0 * (i + 1) ** -1.5 for i in range(rank)] + [1e-14, 0.0, -1e-15][: size - rank]
    eig += [0.0] * (size - len(eig))
    stats = {
        "eigenvalues": eig,
        "lambda_max": eig[0],
        "lambda_min": eig[rank - 1],
        "lambda_min_raw": eig[-1],
        "rank": rank,
        "rank_tol": 1e-10,
        "condition_number": eig[0] / eig[rank - 1],
        "trace": float(sum(eig)),
        "effective_rank": 4.2,
        "decay_exponent": 1.5,
        "alignment": 0.31,
        "alignment_targets": "centred one-hot targets",
        "abs_sum_over_n": 2.5,
        "n_negative": 0,
        "partial": False,
    }
    img = np.linspace(0, 1, 3 * 32 * 32).reshape(3, 32, 32).round(3).tolist()
    steps = list(range(1, 21))
    # Through the typed records, as the pipeline builds them: a field renamed there fails here.
    fit = FitResult(
        config=cfg,
        weights=weights,
        transform=transform,
        n_params_transform=720,
        source_test_acc=0.8,
        target_test_acc=0.6,
        initial_test_acc=0.1,
        baseline_test_acc=0.12,
        curves=FitCurves(
            step=steps,
            train_loss=[2.0 / s for s in steps],
            train_acc=[min(1.0, 0.05 * s) for s in steps],
            eval_step=[0, 5, 10, 15, 20],
            test_acc=[0.1, 0.3, 0.45, 0.55, 0.6],
            kernel_loss=[0.5, 0.3, 0.2, 0.15, 0.12],
        ),
        mapping=list(range(10)),
        examples_before=[img] * 3,
        examples_after=[img] * 3,
        prompt=img if transforms.SPECS[transform].prompt else None,
        seconds=1.0,
        stopped=stopped,
    )
    kernel = KernelResult(
        config=cfg,
        weights=weights,
        wrt="transform",
        kernel=kernel_form,
        method="structured",
        n=n,
        n_outputs=c,
        n_params=720,
        stats=SpectrumStats(**stats),
        seconds=0.1,
        dynamics=Dynamics(
            step=list(range(0, 21)),
            loss=[0.5 * 0.9**t for t in range(21)],
            loss_flow=[0.5 * math.exp(-0.1 * t) for t in range(21)],
            lr=0.05,
            lr_lambda_max_over_n=0.1,
            note="linearised prediction",
        ),
    )
    source = SourceResult(
        key="source-abc",
        config={k: getattr(cfg, k) for k in SOURCE_FIELDS},
        weights=weights,
        source_train_acc=0.9,
        source_test_acc=0.8,
        n_params_trainable=94_500,
        n_params_frozen=0 if weights == "none" else 22_600_000,
        epochs_run=1,
        seconds=2.0,
    )
    return ExperimentRecord(
        config=cfg,
        versions={"reprog_core": "0.1.0", "torch": "2.13.0"},
        weights=weights,
        source=source,
        fit=fit,
        kernel=None if transform == "none" else kernel,
    )


# --------------------------------------------------------------------------- spectrum
@pytest.mark.parametrize("form", ["trace", "full"])
def test_spectrum_names_form_n_and_wrt(form: str) -> None:
    res = fake_explore(kernel_form=form)
    fig = figures.spectrum_figure(res.kernel, res.weights)
    text = _texts(fig)
    assert f"{form} form" in text
    assert "N = 16" in text
    assert "w.r.t. θ" in text and "P = 720" in text
    assert fig.layout.yaxis.type == "log"
    assert "RANDOM" not in text


def test_spectrum_marks_lambda_min_rank_and_zero_eigenvalues() -> None:
    res = fake_explore(rank=10)
    fig = figures.spectrum_figure(res.kernel)
    text = _texts(fig)
    assert "λ_min =" in text and "rank = 10 of 16" in text and "tolerance" in text
    main, zeros = fig.data[0], fig.data[1]
    assert len(main.x) == 10 and len(zeros.x) == 6
    # Zero eigenvalues sit below the tolerance on the log axis, never at 0 (which log drops).
    assert all(0 < y < 1e-10 for y in zeros.y)


def test_random_weights_are_never_silent() -> None:
    res = fake_explore(weights="random")
    for fig in (
        figures.spectrum_figure(res.kernel, res.weights),
        figures.fit_curves_figure(res.fit, res.kernel, res.weights),
        figures.spectra_overlay_figure([res.kernel], ["A"]),
        figures.curves_overlay_figure([res.fit], [res.kernel], ["A"]),
    ):
        assert "RANDOM" in fig.layout.title.text
        assert any("RANDOM" in (a.text or "") for a in fig.layout.annotations)
    rows = figures.source_card_rows(res.source, res.config)
    assert "RANDOM" in rows[1]["value"]


def test_pretrained_weights_are_named_not_flagged() -> None:
    res = fake_explore(weights="openai")
    fig = figures.spectrum_figure(res.kernel, res.weights)
    assert "RANDOM" not in _texts(fig)
    assert "'openai'" in figures.source_card_rows(res.source, res.config)[1]["value"]


def test_stats_rows_cover_the_statistics() -> None:
    rows = figures.spectrum_stats_rows(fake_explore().kernel)
    names = [r["statistic"] for r in rows]
    for want in (
        "λ_max",
        "λ_min",
        "numerical rank",
        "condition number",
        "effective rank",
        "kernel-target alignment",
        "Σ|Θ(x,x')| / N",
        "negative eigenvalues",
    ):
        assert want in names
    assert all(r["value"] and r["what it means"] for r in rows)


# --------------------------------------------------------------------------- fit curves
def test_fit_curves_show_an_early_stop() -> None:
    res = fake_explore(stopped="loss became nan at step 7")
    text = _texts(figures.fit_curves_figure(res.fit, res.kernel))
    assert "STOPPED EARLY" in text and "step 7" in text


def test_transform_none_has_no_kernel_and_still_draws() -> None:
    res = fake_explore(transform="none")
    fig = figures.fit_curves_figure(res.fit, res.kernel)
    assert "No NTK prediction" in _texts(fig)
    img = figures.transform_examples_figure(res.fit)
    assert sum(isinstance(t, go.Image) for t in img.data) == 6  # no prompt for 'none'


def test_transform_examples_include_the_prompt() -> None:
    fig = figures.transform_examples_figure(fake_explore().fit)
    assert sum(isinstance(t, go.Image) for t in fig.data) == 7
    assert "learned prompt" in [a.text for a in fig.layout.annotations]


def test_image_to_uint8_layout_and_range() -> None:
    img = figures.image_to_uint8([[[0.0, 1.0]], [[0.5, 2.0]], [[-1.0, float("nan")]]])
    assert img.shape == (1, 2, 3) and img.dtype == np.uint8
    assert img[0, 0].tolist() == [0, 128, 0] and img[0, 1].tolist() == [255, 255, 0]


# --------------------------------------------------------------------------- compare / sweep
def test_overlays_label_each_config() -> None:
    a, b = fake_explore(), fake_explore(kernel_form="full", transform="fc")
    fig = figures.spectra_overlay_figure([a.kernel, b.kernel], ["A", "B"])
    text = _texts(fig)
    assert "A · trace form, N = 16" in text and "B · full form, N = 16" in text
    fig = figures.curves_overlay_figure([a.fit, None], [a.kernel, None], ["A", "B"])
    assert [t.name for t in fig.data if t.showlegend is not False] == ["A"]
    # A cross-entropy fit's squared loss may rise while it learns: the overlay says so, for A only.
    assert "A trained on cross-entropy" in _texts(fig) and "can rise" in _texts(fig)
    kernel_fit = fake_explore(optimizer="sgd", loss="mse").fit
    quiet = figures.curves_overlay_figure([kernel_fit], [None], ["A"])
    assert "cross-entropy" not in _texts(quiet)


def sweep_rows() -> list[dict]:
    rows = []
    for t in ("vp", "fc"):
        for d in range(1, 7):
            record = fake_explore(transform=t, depth=d)
            record.source.source_test_acc = 0.5 + 0.05 * d
            record.fit.target_test_acc = 0.3 + 0.04 * d + (0.1 if t == "vp" else 0)
            record.kernel.stats.lambda_min = 1e-3 * d
            rows.append(record.sweep_row())
    return rows


def test_sweep_figures_draw_live_depth_rows() -> None:
    """The Depth sweep page draws explore results (one seed) with the sweep's builders."""
    rows = sweep_rows()
    fig = figures.target_accuracy_figure(rows)
    assert {t.name for t in fig.data} >= {"vp", "fc"}
    scatter = figures.stat_accuracy_figure(rows, "lambda_min")
    text = _texts(scatter)
    assert "Spearman" in text and "vp: ρ = 1" in text
    assert scatter.layout.xaxis.type == "log"


def test_standalone_html_inlines_plotly() -> None:
    html = figures.to_standalone_html(figures.spectrum_figure(fake_explore().kernel))
    assert "<html>" in html[:100] and "plotly.js" in html.lower() and len(html) > 1_000_000


def test_fmt_and_pct() -> None:
    assert figures.fmt(None) == "—" and figures.fmt(float("nan")) == "—"
    assert figures.fmt(1234567) == "1,234,567" and figures.fmt(1.5e-7) == "1.500e-07"
    assert figures.pct(0.4567) == "45.7%"


# --------------------------------------------------------------------------- demos
def test_convergence_demo_follows_its_eigenvalues() -> None:
    d = demos.spectrum_convergence(n=20, alpha=1.0, steps=50)
    assert np.allclose(d["loss_measured"], d["loss_predicted"], rtol=1e-9, atol=1e-12)
    fast = demos.spectrum_convergence(n=20, labels="fast", steps=300)["steps_to_1pct"]
    slow = demos.spectrum_convergence(n=20, labels="slow", steps=300)["steps_to_1pct"]
    assert fast < slow
    fig = figures.convergence_demo_figure(d)
    assert len(fig.data) == 3 + 3


def test_width_demo_error_shrinks_with_width() -> None:
    d = demos.ntk_width_convergence(widths=(16, 256), depth=1, n_angles=9, seeds=2)
    assert d["error_mean"][1] < d["error_mean"][0]
    assert len(d["empirical"][0]) == 2 and len(d["analytic"]) == 9
    figures.width_demo_figure(d)


# --------------------------------------------------------------------------- URL <-> config
def test_config_round_trips_through_params() -> None:
    cfg = ExperimentConfig(
        depth=5, transform="fc", n_kernel=32, lr=0.01, ntk_init=True, regime="kernel", rho=0.3
    )
    params = state.config_to_params(cfg)
    assert params == {
        "depth": "5",
        "ntk_init": "true",
        "transform": "fc",
        "loss": "mse",
        "optimizer": "sgd",
        "lr": "0.01",
        "regime": "kernel",
        "rho": "0.3",
        "n_kernel": "32",
    }
    back, warnings = state.parse_config(params)
    assert back == cfg and warnings == []
    assert state.config_to_params(ExperimentConfig()) == {}


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"depth": "abc"}, "depth", "must be int"),
        ({"depth": "9"}, "depth", "offers 1 to 6"),
        ({"transform": "zoom"}, "transform", "must be one of"),
        ({"target": "imagenet"}, "target", "unknown data set"),
        ({"n_kernel": "999999"}, "n_kernel", "between"),
    ],
)
def test_bad_params_warn_and_fall_back(params: dict, field: str, words: str) -> None:
    cfg, warnings = state.parse_config({**params, "seed": "3"})
    assert getattr(cfg, field) == getattr(state.DEFAULT, field)
    assert cfg.seed == 3  # the good parameter is kept
    assert len(warnings) == 1 and f"`{field}=" in warnings[0] and words in warnings[0]


def test_unknown_params_and_page_params() -> None:
    _, warnings = state.parse_config({"bogus": "1", "stat": "rank"}, extra_keys=["stat"])
    assert warnings == ["Unknown URL parameter `bogus` was ignored."]


def test_params_valid_together_are_accepted_together() -> None:
    cfg, warnings = state.parse_config({"source_size": "16", "target_size": "12"})
    assert (cfg.source_size, cfg.target_size, warnings) == (16, 12, [])


def test_page_setting_parsers() -> None:
    assert state.parse_int_list("depths", "1-3,6", 1, 6, [1]) == ([1, 2, 3, 6], [])
    vals, w = state.parse_int_list("depths", "0,2,9", 1, 6, [1])
    assert vals == [2] and "dropped" in w[0]
    assert state.parse_int_list("depths", "x", 1, 6, [1, 2])[0] == [1, 2]
    assert state.parse_choices("t", "vp,zz", ["vp", "fc"], ["fc"])[0] == ["vp"]
    assert state.parse_number("lr", "5", 0, 2, 1.0) == (
        1.0,
        ["URL parameter `lr=5` is outside 0 to 2; using 1.0."],
    )
    base = ExperimentConfig()
    over, w = state.parse_overrides(
        "c2", "depth:6,transform:fc,depth:x", base, ["depth", "transform"]
    )
    assert over == {"depth": 6, "transform": "fc"} and len(w) == 1
    assert state.format_overrides({"depth": 6, "transform": base.transform}, base) == "depth:6"


@pytest.mark.parametrize("base_regime", ["kernel", "practical"])
def test_a_compare_column_keeps_its_regime_optimizer_and_loss_through_the_url(base_regime) -> None:
    """The three are coupled (kernel regime = sgd + mse): a column's settings, written as its
    differences from the base, come back as the column had them whatever the base's regime (a
    practical adam/ce column over a kernel-regime base came back as kernel regime)."""
    from dashboard.views.compare_presets import VARY

    base = ExperimentConfig(regime=base_regime)
    for col in (
        ExperimentConfig(),
        ExperimentConfig(optimizer="sgd"),
        ExperimentConfig(loss="mse"),
        ExperimentConfig(regime="kernel", steps=50),
    ):
        text = state.format_overrides({k: getattr(col, k) for k in VARY}, base)
        over, warnings = state.parse_overrides("c2", text, base, VARY)
        back = base.replace(**over)
        assert not warnings
        assert (back.regime, back.optimizer, back.loss) == (col.regime, col.optimizer, col.loss)


def test_differing_fields() -> None:
    a, b = ExperimentConfig().to_dict(), ExperimentConfig(depth=2, transform="fc").to_dict()
    assert state.differing_fields([a, b]) == ["depth", "transform"]


# --------------------------------------------------------------------------- downloads
def _read_csv(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


def test_eigenvalue_csv_has_metadata_and_values() -> None:
    res = fake_explore(weights="random")
    text = downloads.eigenvalues_csv(res)
    assert "# weights: random" in text and "RANDOM" in text and "# seed: 0" in text
    assert "# versions:" in text and '"depth": 3' in text
    rows = _read_csv(text)
    assert len(rows) == 16 and float(rows[0]["eigenvalue"]) == pytest.approx(10.0)


def test_curves_csv_merges_steps_and_carries_no_prediction_for_a_practical_fit() -> None:
    """An Adam + cross-entropy fit: the page draws no NTK prediction on its axes, so its download
    carries none either (the kernel regime's columns: test_kernel_regime_honesty)."""
    rows = _read_csv(downloads.curves_csv(fake_explore()))
    by_step = {int(r["step"]): r for r in rows}
    assert by_step[0]["kernel_loss"] == "0.5" and by_step[0]["train_loss"] == ""
    assert "ntk_predicted_loss" not in rows[0]


def test_result_json_round_trips() -> None:
    res = fake_explore()
    assert json.loads(downloads.result_json(res))["config"]["depth"] == 3


def test_page_parameters_are_not_config_fields() -> None:
    """A Learn URL once carried `lr=1` into Explore as the config's learning rate."""
    tree = ast.parse((Path(__file__).resolve().parents[2] / "dashboard" / "app.py").read_text())
    node = next(
        n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "PAGE_PARAMS"
    )
    page_params = ast.literal_eval(node.value)
    assert "learn_eta" in page_params["learn"] and "lr" not in page_params["learn"]
    for page, names in page_params.items():
        assert not set(names) & set(state.URL_FIELDS), page
    cfg, warnings = state.parse_config({"learn_eta": "1"}, extra_keys=page_params["learn"])
    assert cfg.lr == 0.0 and not warnings


def test_an_overlay_names_the_configurations_with_random_weights() -> None:
    """The default Compare overlays an ImageNet column (A) and a random one (B): the red marks
    must say which one is random, not brand the whole figure."""
    pretrained = fake_explore()
    rnd = fake_explore(weights="random")
    labels = ["A: weights imagenet", "B: weights random"]
    for fig in (
        figures.spectra_overlay_figure([pretrained.kernel, rnd.kernel], labels),
        figures.curves_overlay_figure(
            [pretrained.fit, rnd.fit], [pretrained.kernel, rnd.kernel], labels
        ),
    ):
        marks = [a.text for a in fig.layout.annotations if "RANDOM" in (a.text or "")]
        assert "RANDOM WEIGHTS: B" in marks and "RANDOM weights: B" in fig.layout.title.text
    both = figures.spectra_overlay_figure([rnd.kernel, rnd.kernel], ["A: x", "B: y"])
    assert "RANDOM WEIGHTS" in [a.text for a in both.layout.annotations]
