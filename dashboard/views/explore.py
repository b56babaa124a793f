"""Explore: one source model and one input transformation; its NTK spectrum next to its fit.

``render()`` draws the page (``app.py`` runs it); each part of the page is one function below.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import streamlit as st

from dashboard import downloads, jobs, state, ui
from reprog_core import cautions, data, figures, presets
from reprog_core.config import ExperimentConfig
from reprog_core.fit import TARGET_TEST_PER_CLASS
from reprog_core.source_model.training import budget_warnings

Result = dict[str, Any]


def render() -> None:
    """The page: what it shows and where to start, then the result of the sidebar's config."""
    _intro()
    _setup_buttons()
    ui.show_url_warnings()
    cfg = ui.page_config()
    if cfg is None:
        return
    ui.sync_url(cfg)
    result = _result_or_stages(cfg)
    if result is not None:
        _draw_result(result)


def _intro() -> None:
    st.title("Explore one reprogrammed model")
    st.markdown(
        "A frozen **source model** f_S, trained on one task, is reused for a new **target** task "
        "by training only a small **input transformation** a_θ in front of it (and mapping its "
        "output classes to the target's). By default f_S is an EfficientNet-Lite0 trained on "
        "ImageNet photos, and the target is handwritten digits (MNIST): a learned frame around "
        "each digit (a visual prompt) turns a photo classifier into a digit classifier. The "
        "**neural tangent kernel** (NTK) of the transformation predicts how fast and how far such "
        "a fit can go: large eigenvalues are directions it learns quickly, tiny ones it barely "
        "learns. Pick the settings in the sidebar; see **Learn** for the ideas behind each figure."
    )


def _setup_buttons() -> None:
    """The set-ups one click away (``presets.SETUPS``): each loads its whole config."""
    cols = st.columns([1] + [3] * len(presets.SETUPS))
    cols[0].markdown("**Start from:**")
    for col, setup in zip(cols[1:], presets.SETUPS):
        col.button(
            setup.label,
            key=f"explore.setup.{setup.key}",
            on_click=ui.set_config,
            args=(setup.config(),),
            help=setup.description,
            width="stretch",
        )


# --------------------------------------------------------------------------- requests and stages
def _result_or_stages(cfg: ExperimentConfig) -> Result | None:
    """The whole result if it is ready; otherwise the stages that are (the source card as soon as
    the source model is ready, the spectrum as soon as the kernel is) and the progress.

    The kernel request leaves out the fit-only settings (``kernel_config``), so a what-if on
    steps, step size or loss reuses the stored kernel.
    """
    req = jobs.Request("explore", cfg, "Reprogramming fit and baseline")
    stage_reqs = [jobs.Request("source", cfg, "Source model")]
    if cfg.transform != "none":
        stage_reqs.append(jobs.Request("ntk", cfg.kernel_config(), "Target NTK"))
    jobs.drop_stale([req.key] + [r.key for r in stage_reqs])
    ui.random_weights_banner(cfg.weights_label, cfg.to_dict())
    for msg in budget_warnings(cfg):  # before anything trains, not after
        st.warning(state.md_text(msg, limit=2000), icon="⚠️")
    result = jobs.fetch(req, start=False)
    if result is not None:
        return result
    staged = {r.kind: jobs.fetch(r) for r in stage_reqs}  # submitted before the fit: first
    result = jobs.fetch(req)
    if result is None:
        _draw_stages(staged, cfg)
        _progress([r.key for r in stage_reqs] + [req.key])
    return result


def _draw_stages(staged: dict[str, Result | None], cfg: ExperimentConfig) -> None:
    """The parts of the result that are ready while the fit computes."""
    if staged.get("source"):
        st.subheader("Source model")
        st.dataframe(
            figures.source_card_rows(staged["source"], cfg.to_dict()),
            hide_index=True,
            width="stretch",
        )
    if staged.get("ntk"):
        st.subheader("Spectrum of the target NTK")
        ui.plot(figures.spectrum_figure(staged["ntk"], cfg.weights_label), "spectrum-early")


def _progress(keys: list[str]) -> None:
    if jobs.pending(keys):
        st.info(
            "Computing: the source model is trained (or loaded from the cache), then the target "
            "NTK, then the fit. Each part appears here as soon as it is ready; settings that were "
            "computed before appear at once.",
            icon="⏳",
        )
    jobs.watch(keys)


# --------------------------------------------------------------------------- the result
def _draw_result(result: Result) -> None:
    """The finished result, top to bottom: numbers, cautions, source, spectrum, fit, images."""
    _headline(result)
    _target_caption(result)
    for msg in cautions.result_cautions(result):  # what the figures must not be read without
        st.warning(state.md_text(msg, limit=2000), icon="⚠️")
    st.subheader("Source model")
    st.dataframe(
        figures.source_card_rows(result["source"], result["config"]),
        hide_index=True,
        width="stretch",
    )
    figs = {"spectrum": _spectrum(result), "curves": _fit(result), "images": _images(result)}
    _downloads(result, figs)
    ui.result_footer(result)


def _headline(result: Result) -> None:
    """The headline numbers: source, fit, baseline, kernel regression, λ_min, effective rank."""
    fit, kernel = result["fit"], result.get("kernel")
    c1, c2, c3, c6, c4, c5 = st.columns(6)
    _source_metric(c1, result)
    c2.metric(
        "target acc. (fit)",
        figures.pct(fit["target_test_acc"]),
        delta=f"{100 * (fit['target_test_acc'] - fit['initial_test_acc']):+.1f} points vs before",
        help="target test accuracy of f_T = b ∘ f_S ∘ a_θ after training θ",
    )
    c3.metric(
        "baseline (none)",
        figures.pct(fit.get("baseline_test_acc")),
        help="the same source model on resized target images: "
        + (fit.get("baseline_note") or "nothing trained"),
    )
    stats = (kernel or {}).get("stats") or {}
    c6.metric(
        "kernel regression",
        figures.pct((kernel or {}).get("regression_acc")),
        help="ridge regression with the target NTK from the N kernel samples to as many held-out "
        "test images: whether the kernel itself carries the target task",
    )
    c4.metric(
        "λ_min (NTK)",
        figures.fmt(stats.get("lambda_min"), 3),
        help="smallest eigenvalue above the tolerance",
    )
    c5.metric(
        "effective rank",
        figures.fmt(stats.get("effective_rank"), 3),
        help="how many directions carry the kernel's weight",
    )


def _source_metric(col: Any, result: Result) -> None:
    """A pretrained classifier's own (ImageNet) accuracy, else the source's test accuracy."""
    src, rcfg = result["source"], result["config"]
    if src.get("evaluated_on"):
        col.metric(
            "source top-1",
            figures.pct(src.get("native_test_acc")),
            help=f"f_S on {src['evaluated_on']}, at 224×224 (its training resolution); at the "
            f"{rcfg['source_size']}×{rcfg['source_size']} input it gets here: "
            f"{figures.pct(src['source_test_acc'])}",
        )
    else:
        col.metric(
            "source test accuracy",
            figures.pct(src["source_test_acc"]),
            help=f"f_S on {rcfg['source_data']}'s test images",
        )


def _target_caption(result: Result) -> None:
    rcfg, fit = result["config"], result["fit"]
    description = state.md_text(data.dataset_spec(rcfg["target"]).description)
    st.caption(
        f"Target: **{rcfg['target']}**, {description}"
        f"; the fit trains on up to {rcfg['target_per_class']} images per class and is tested on "
        f"up to {TARGET_TEST_PER_CLASS} per class (the curve during the fit on "
        f"{fit['curves'].get('test_subset') or 'all'} of them)."
    )


def _spectrum(result: Result) -> go.Figure | None:
    """The spectrum, its statistics and what it says about speed (None: no kernel to take)."""
    kernel = result.get("kernel")
    st.subheader("Spectrum of the target NTK")
    if kernel is None:
        st.info("Transform `none` has no trainable parameters, so there is no kernel to take.")
        return None
    st.caption(
        "Each eigenvalue is one direction in the space of predictions on the N kernel samples. "
        "Gradient descent shrinks the error along direction i by a factor e^(−η λ_i) per unit "
        "of time: the orange line (λ_min) is the slowest direction that can still be fitted; "
        "past the green line (the rank) nothing can be fitted at all."
    )
    fig = figures.spectrum_figure(kernel, result.get("weights"))
    ui.plot(fig, "spectrum")
    # A table, not a data grid: its cells wrap, so the "what it means" column is never cut off.
    st.table(figures.spectrum_stats_rows(kernel), hide_index=True)
    timescales = figures.spectrum_timescales(kernel, result["config"])
    if timescales:
        st.markdown("**What this spectrum says about the speed of a fit**")
        st.caption(state.md_text(timescales, limit=2000))
    return fig


def _fit(result: Result) -> go.Figure:
    """The fit's curves, with what the middle panel shows for this regime."""
    st.subheader("The reprogramming fit")
    kr = result["fit"].get("kernel_regime")
    if kr:
        _kernel_regime_caption(kr)
        _kernel_regime_metrics(kr)
    else:
        _practical_caption(result["config"])
    fig = figures.fit_curves_figure(result["fit"], result.get("kernel"), result.get("weights"))
    ui.plot(fig, "curves")
    return fig


def _kernel_regime_caption(kr: Result) -> None:
    st.caption(
        "Kernel regime: the fit is full-batch gradient descent on squared loss over the kernel "
        "samples, the setting the NTK prediction models. Middle panel: the measured loss and the "
        "prediction from the full kernel at θ₀, drawn only while the two agree within "
        f"{kr.get('agreement_tol', 0.1):.0%}; the dotted line marks where they part, and the "
        "kernel drift there says why (the kernel has moved, so the model is no longer linear). "
        "The dotted lighter curves: the same losses with the offset common to every sample "
        "removed. The accuracy is that of a fit on the N kernel samples only."
        + (f" {kr['mapping_note']}." if kr.get("mapping_note") else "")
    )
    with st.expander("Why they part, and what moves the parting step"):
        st.markdown(
            "The prediction is exact for the model linearised at θ₀. The real fit leaves it as the "
            "kernel moves: for `fc` because the source model's input gradient changes as the "
            "transformed inputs cross ReLU boundaries; for `vp` also because the sigmoid-squashed "
            "prompt stiffens as it grows (its Jacobian σ′(δ) shrinks), so the measured loss falls "
            "more slowly than predicted. A smaller ρ takes more steps for the same loss drop but "
            "follows the same path, so it does not postpone the parting in terms of loss; a "
            "shorter horizon stays closer to θ₀; an unsquashed prompt (`vp-full`) drifts only "
            "through the source. See `docs/science.md`, section 5 (Regimes)."
        )


def _kernel_regime_metrics(kr: Result) -> None:
    """How long the NTK prediction holds, and why it stops."""
    k1, k2, k3, k4 = st.columns(4)
    k1.metric(
        "prediction holds until step",
        "—" if kr.get("agree_until") is None else f"{kr['agree_until']:,}",
        help=f"last step with |predicted − measured| / measured ≤ {kr.get('agreement_tol', 0.1)}",
    )
    k2.metric(
        "loss drop within it",
        figures.pct(kr.get("loss_drop")),
        help="fraction of the measured loss gone by that step",
    )
    k3.metric(
        "kernel drift (end)",
        figures.fmt(kr.get("drift"), 2),
        help="‖Θ(θ_end) − Θ(θ₀)‖_F / ‖Θ(θ₀)‖_F: 0 in the lazy (linear) regime",
    )
    k4.metric(
        "η·λ_max/N",
        figures.fmt(kr.get("lr_lambda_max_over_n"), 3),
        help=f"η = {figures.fmt(kr.get('lr'), 3)}; gradient descent diverges above 2",
    )


def _practical_caption(rcfg: Result) -> None:
    st.caption(
        "Middle panel: the measured squared loss on the kernel samples. No NTK prediction is "
        "drawn on it: this fit (optimizer "
        f"{rcfg.get('optimizer')}, loss {rcfg.get('loss')}) is not the full-batch gradient "
        "descent on squared loss that the prediction models. What the spectrum says about speed "
        "is under the spectrum; the **Kernel regime** switch in the sidebar runs a fit it does "
        "describe."
    )


def _images(result: Result) -> go.Figure:
    st.subheader("What the source model sees")
    fig = figures.transform_examples_figure(result["fit"])
    ui.plot(fig, "images")
    return fig


def _downloads(result: Result, figs: dict[str, go.Figure | None]) -> None:
    """The result, its curves and eigenvalues, and each figure, as files (built when clicked)."""
    st.subheader("Downloads")
    rcfg = result["config"]
    stem = f"explore-d{rcfg['depth']}-{rcfg['transform']}-{rcfg['target']}-seed{rcfg['seed']}"
    cols = st.columns(3)
    with cols[0]:
        ui.download(
            "Results (JSON)",
            lambda: downloads.result_json(result),
            f"{stem}.json",
            "application/json",
            "dl.json",
        )
        ui.download(
            "Fit curves (CSV)",
            lambda: downloads.curves_csv(result),
            f"{stem}-curves.csv",
            "text/csv",
            "dl.curves",
        )
    with cols[1]:
        if result.get("kernel") is not None:
            ui.download(
                "Eigenvalues (CSV)",
                lambda: downloads.eigenvalues_csv(result),
                f"{stem}-eigenvalues.csv",
                "text/csv",
                "dl.eig",
            )
        ui.figure_download(
            "Fit curves figure (HTML)", figs["curves"], f"{stem}-curves.html", "dl.curves.html"
        )
    with cols[2]:
        if figs["spectrum"] is not None:
            ui.figure_download(
                "Spectrum figure (HTML)", figs["spectrum"], f"{stem}-spectrum.html", "dl.spec.html"
            )
        ui.figure_download(
            "Images figure (HTML)", figs["images"], f"{stem}-images.html", "dl.img.html"
        )
