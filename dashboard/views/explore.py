"""Explore: one source model and one input transformation; its NTK spectrum next to its fit.

``render()`` draws the page (``app.py`` runs it); each part of the page is one function below.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import plotly.graph_objects as go
import streamlit as st

from dashboard import downloads, jobs, state, ui
from reprog_core import cautions, data, figures, presets
from reprog_core.config import ExperimentConfig
from reprog_core.fit import TARGET_TEST_PER_CLASS
from reprog_core.results import ExperimentRecord, KernelRegime, KernelResult, SourceResult
from reprog_core.source_model.training import budget_warnings


class Figures(NamedTuple):
    """The figures the page drew, for their downloads (no spectrum without a kernel)."""

    spectrum: go.Figure | None
    curves: go.Figure
    images: go.Figure


def render() -> None:
    """The page: what it shows and where to start, then the result of the sidebar's config."""
    _intro()
    _setup_buttons()
    ui.show_url_warnings()
    cfg = ui.page_config()
    if cfg is None:
        return
    ui.sync_url(cfg)
    req = jobs.Request("explore", cfg, "Reprogramming fit and baseline")
    record = _record_or_stages(req)
    if record is not None:
        _draw_record(record, req)


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
def _record_or_stages(req: jobs.Request) -> ExperimentRecord | None:
    """The whole record if it is ready; otherwise the stages that are (the source card as soon as
    the source model is ready, the spectrum as soon as the kernel is) and the progress.

    The kernel request leaves out the fit-only settings (``kernel_config``), so a what-if on
    steps, step size or loss reuses the stored kernel.
    """
    cfg = req.cfg
    src_req = jobs.Request("source", cfg, "Source model")
    ker_req = jobs.Request("ntk", cfg.kernel_config(), "Target NTK")
    stage_reqs = [src_req, ker_req] if cfg.transform != "none" else [src_req]
    jobs.drop_stale([req.key] + [r.key for r in stage_reqs])
    ui.random_weights_banner(cfg.weights_label, cfg)
    for msg in budget_warnings(cfg):  # before anything trains, not after
        st.warning(state.md_text(msg, limit=2000), icon="⚠️")
    record = jobs.fetch(req, start=False)
    if record is not None:
        return record
    staged = [jobs.fetch(r) for r in stage_reqs]  # submitted before the fit: they come first
    record = jobs.fetch(req)
    if record is None:
        _draw_stages(cfg, *staged)
        _progress([r.key for r in stage_reqs] + [req.key])
    return record


def _draw_stages(
    cfg: ExperimentConfig, source: SourceResult | None, kernel: KernelResult | None = None
) -> None:
    """The parts of the result that are ready while the fit computes."""
    if source is not None:
        st.subheader("Source model")
        st.dataframe(figures.source_card_rows(source, cfg), hide_index=True, width="stretch")
    if kernel is not None:
        st.subheader("Spectrum of the target NTK")
        ui.plot(figures.spectrum_figure(kernel, cfg.weights_label), "spectrum-early")


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
def _draw_record(record: ExperimentRecord, req: jobs.Request) -> None:
    """The finished result, top to bottom: numbers, cautions, source, spectrum, fit, images."""
    _headline(record)
    _target_caption(record)
    for msg in cautions.result_cautions(record):  # what the figures must not be read without
        st.warning(state.md_text(msg, limit=2000), icon="⚠️")
    st.subheader("Source model")
    st.dataframe(
        figures.source_card_rows(record.source, record.config), hide_index=True, width="stretch"
    )
    figs = Figures(_spectrum(record), _fit(record), _images(record))
    _downloads(record, req.key, figs)
    ui.result_footer(record, jobs.how(req), req.key)


def _headline(record: ExperimentRecord) -> None:
    """The headline numbers: source, fit, baseline, kernel regression, λ_min, effective rank."""
    fit, kernel = record.fit, record.kernel
    stats = kernel.stats if kernel is not None else None
    c1, c2, c3, c6, c4, c5 = st.columns(6)
    _source_metric(c1, record)
    c2.metric(
        "target acc. (fit)",
        figures.pct(fit.target_test_acc),
        delta=f"{100 * (fit.target_test_acc - fit.initial_test_acc):+.1f} points vs before",
        help="target test accuracy of f_T = b ∘ f_S ∘ a_θ after training θ",
    )
    c3.metric(
        "baseline (none)",
        figures.pct(fit.baseline_test_acc),
        help="the same source model on resized target images: "
        + (fit.baseline_note or "nothing trained"),
    )
    c6.metric(
        "kernel regression",
        figures.pct(kernel.regression_acc if kernel is not None else None),
        help="ridge regression with the target NTK from the N kernel samples to as many held-out "
        "test images: whether the kernel itself carries the target task",
    )
    c4.metric(
        "λ_min (NTK)",
        figures.fmt(stats.lambda_min if stats is not None else None, 3),
        help="smallest eigenvalue above the tolerance",
    )
    c5.metric(
        "effective rank",
        figures.fmt(stats.effective_rank if stats is not None else None, 3),
        help="how many directions carry the kernel's weight",
    )


def _source_metric(col: Any, record: ExperimentRecord) -> None:
    """A pretrained classifier's own (ImageNet) accuracy, else the source's test accuracy."""
    source, cfg = record.source, record.config
    if source.evaluated_on:
        col.metric(
            "source top-1",
            figures.pct(source.native_test_acc),
            help=f"f_S on {source.evaluated_on}, at 224×224 (its training resolution); at the "
            f"{cfg.source_size}×{cfg.source_size} input it gets here: "
            f"{figures.pct(source.source_test_acc)}",
        )
    else:
        col.metric(
            "source test accuracy",
            figures.pct(source.source_test_acc),
            help=f"f_S on {cfg.source_data}'s test images",
        )


def _target_caption(record: ExperimentRecord) -> None:
    cfg = record.config
    description = state.md_text(data.dataset_spec(cfg.target).description)
    st.caption(
        f"Target: **{cfg.target}**, {description}"
        f"; the fit trains on up to {cfg.target_per_class} images per class and is tested on "
        f"up to {TARGET_TEST_PER_CLASS} per class (the curve during the fit on "
        f"{record.fit.curves.test_subset or 'all'} of them)."
    )


def _spectrum(record: ExperimentRecord) -> go.Figure | None:
    """The spectrum, its statistics and what it says about speed (None: no kernel to take)."""
    kernel = record.kernel
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
    fig = figures.spectrum_figure(kernel, record.weights)
    ui.plot(fig, "spectrum")
    # A table, not a data grid: its cells wrap, so the "what it means" column is never cut off.
    st.table(figures.spectrum_stats_rows(kernel), hide_index=True)
    timescales = figures.spectrum_timescales(kernel, record.config)
    if timescales:
        st.markdown("**What this spectrum says about the speed of a fit**")
        st.caption(state.md_text(timescales, limit=2000))
    return fig


def _fit(record: ExperimentRecord) -> go.Figure:
    """The fit's curves, with what the middle panel shows for this regime."""
    st.subheader("The reprogramming fit")
    kr = record.fit.kernel_regime
    if kr is not None:
        _kernel_regime_caption(kr)
        _kernel_regime_metrics(kr)
    else:
        _practical_caption(record.config)
    fig = figures.fit_curves_figure(record.fit, record.kernel, record.weights)
    ui.plot(fig, "curves")
    return fig


def _kernel_regime_caption(kr: KernelRegime) -> None:
    st.caption(
        "Kernel regime: the fit is full-batch gradient descent on squared loss over the kernel "
        "samples, the setting the NTK prediction models. Middle panel: the measured loss and the "
        "prediction from the full kernel at θ₀, drawn only while the two agree within "
        f"{kr.agreement_tol:.0%}; the dotted line marks where they part, and the "
        "kernel drift there says why (the kernel has moved, so the model is no longer linear). "
        "The dotted lighter curves: the same losses with the offset common to every sample "
        "removed. The accuracy is that of a fit on the N kernel samples only."
        + (f" {kr.mapping_note}." if kr.mapping_note else "")
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


def _kernel_regime_metrics(kr: KernelRegime) -> None:
    """How long the NTK prediction holds, and why it stops."""
    k1, k2, k3, k4 = st.columns(4)
    k1.metric(
        "prediction holds until step",
        "—" if kr.agree_until is None else f"{kr.agree_until:,}",
        help=f"last step with |predicted − measured| / measured ≤ {kr.agreement_tol}",
    )
    k2.metric(
        "loss drop within it",
        figures.pct(kr.loss_drop),
        help="fraction of the measured loss gone by that step",
    )
    k3.metric(
        "kernel drift (end)",
        figures.fmt(kr.drift, 2),
        help="‖Θ(θ_end) − Θ(θ₀)‖_F / ‖Θ(θ₀)‖_F: 0 in the lazy (linear) regime",
    )
    k4.metric(
        "η·λ_max/N",
        figures.fmt(kr.lr_lambda_max_over_n, 3),
        help=f"η = {figures.fmt(kr.lr, 3)}; gradient descent diverges above 2",
    )


def _practical_caption(cfg: ExperimentConfig) -> None:
    st.caption(
        "Middle panel: the measured squared loss on the kernel samples. No NTK prediction is "
        "drawn on it: this fit (optimizer "
        f"{cfg.optimizer}, loss {cfg.loss}) is not the full-batch gradient "
        "descent on squared loss that the prediction models. What the spectrum says about speed "
        "is under the spectrum; the **Kernel regime** switch in the sidebar runs a fit it does "
        "describe."
    )


def _images(record: ExperimentRecord) -> go.Figure:
    st.subheader("What the source model sees")
    fig = figures.transform_examples_figure(record.fit)
    ui.plot(fig, "images")
    return fig


def _downloads(record: ExperimentRecord, key: str, figs: Figures) -> None:
    """The record, its curves and eigenvalues, and each figure, as files (built when clicked)."""
    st.subheader("Downloads")
    cfg = record.config
    stem = f"explore-d{cfg.depth}-{cfg.transform}-{cfg.target}-seed{cfg.seed}"
    cols = st.columns(3)
    with cols[0]:
        ui.download(
            "Results (JSON)",
            lambda: downloads.result_json(record, key),
            f"{stem}.json",
            "application/json",
            "dl.json",
        )
        ui.download(
            "Fit curves (CSV)",
            lambda: downloads.curves_csv(record, key),
            f"{stem}-curves.csv",
            "text/csv",
            "dl.curves",
        )
    with cols[1]:
        if record.kernel is not None:
            ui.download(
                "Eigenvalues (CSV)",
                lambda: downloads.eigenvalues_csv(record, key),
                f"{stem}-eigenvalues.csv",
                "text/csv",
                "dl.eig",
            )
        ui.figure_download(
            "Fit curves figure (HTML)", figs.curves, f"{stem}-curves.html", "dl.curves.html"
        )
    with cols[2]:
        if figs.spectrum is not None:
            ui.figure_download(
                "Spectrum figure (HTML)", figs.spectrum, f"{stem}-spectrum.html", "dl.spec.html"
            )
        ui.figure_download(
            "Images figure (HTML)", figs.images, f"{stem}-images.html", "dl.img.html"
        )
