"""Explore: one source model and one input transformation; its NTK spectrum next to its fit."""

from __future__ import annotations

import streamlit as st

from dashboard import downloads, jobs, state, ui
from reprog_core import cautions, data, figures, presets
from reprog_core.fit import TARGET_TEST_PER_CLASS
from reprog_core.source_model.training import budget_warnings

st.title("Explore one reprogrammed model")
st.markdown(
    "A frozen **source model** f_S, trained on one task, is reused for a new **target** task "
    "by training only a small **input transformation** a_θ in front of it (and mapping its "
    "output classes to the target's). By default f_S is an EfficientNet-Lite0 trained on "
    "ImageNet photos, and the target is handwritten digits (MNIST): a learned frame around each "
    "digit (a visual prompt) turns a photo classifier into a digit classifier. The **neural "
    "tangent kernel** (NTK) of the transformation predicts how fast and how far such a fit can "
    "go: large eigenvalues are directions it learns quickly, tiny ones it barely learns. Pick the "
    "settings in the sidebar; see **Learn** for the ideas behind each figure."
)
_cols = st.columns([1] + [3] * len(presets.SETUPS))
_cols[0].markdown("**Start from:**")
for _col, _setup in zip(_cols[1:], presets.SETUPS):
    _col.button(
        _setup.label,
        key=f"explore.setup.{_setup.key}",
        on_click=ui.set_config,
        args=(_setup.config(),),
        help=_setup.description,
        width="stretch",
    )
ui.show_url_warnings()
cfg = ui.config_sidebar()
if cfg is None:
    st.stop()
ui.sync_url(cfg)

req = jobs.Request("explore", cfg, "Reprogramming fit and baseline")
# Stages stream in: the source card as soon as the source model is ready, the spectrum as soon as
# the kernel is, the fit last. The kernel request leaves out the fit-only settings
# (``kernel_config``), so a what-if on steps, step size or loss reuses the stored kernel.
src_req = jobs.Request("source", cfg, "Source model")
ker_req = (
    jobs.Request("ntk", cfg.kernel_config(), "Target NTK") if cfg.transform != "none" else None
)
stage_reqs = [r for r in (src_req, ker_req) if r is not None]
jobs.drop_stale([req.key] + [r.key for r in stage_reqs])
ui.random_weights_banner(cfg.weights_label, cfg.to_dict())
for msg in budget_warnings(cfg):  # before anything trains, not after
    st.warning(state.md_text(msg, limit=2000), icon="⚠️")
result = jobs.fetch(req, start=False)
if result is None:
    # Submitted before the fit: they come first.
    staged = {r.kind: jobs.fetch(r) for r in stage_reqs}
    result = jobs.fetch(req)
if result is None:
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
    keys = [r.key for r in stage_reqs] + [req.key]
    if jobs.pending(keys):
        st.info(
            "Computing: the source model is trained (or loaded from the cache), then the target "
            "NTK, then the fit. Each part appears here as soon as it is ready; settings that were "
            "computed before appear at once.",
            icon="⏳",
        )
    jobs.watch(keys)
    st.stop()

fit, src, kernel = result["fit"], result["source"], result.get("kernel")
weights = result.get("weights")
rcfg = result["config"]

# ---- headline numbers ----------------------------------------------------------------------
c1, c2, c3, c6, c4, c5 = st.columns(6)
if src.get("evaluated_on"):  # a pretrained classifier: its ImageNet accuracy
    c1.metric(
        "source top-1",
        figures.pct(src.get("native_test_acc")),
        help=f"f_S on {src['evaluated_on']}, at 224×224 (its training resolution); at the "
        f"{rcfg['source_size']}×{rcfg['source_size']} input it gets here: "
        f"{figures.pct(src['source_test_acc'])}",
    )
else:
    c1.metric(
        "source test accuracy",
        figures.pct(src["source_test_acc"]),
        help=f"f_S on {rcfg['source_data']}'s test images",
    )
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
st.caption(
    f"Target: **{rcfg['target']}**, {state.md_text(data.dataset_spec(rcfg['target']).description)}"
    f"; the fit trains on up to {rcfg['target_per_class']} images per class and is tested on up "
    f"to {TARGET_TEST_PER_CLASS} per class (the curve during the fit on "
    f"{fit['curves'].get('test_subset') or 'all'} of them)."
)
# ---- what the figures below must not be read without ------------------------------------------
for msg in cautions.result_cautions(result):
    st.warning(state.md_text(msg, limit=2000), icon="⚠️")

# ---- source model card ---------------------------------------------------------------------
st.subheader("Source model")
st.dataframe(figures.source_card_rows(src, rcfg), hide_index=True, width="stretch")

# ---- spectrum ------------------------------------------------------------------------------
st.subheader("Spectrum of the target NTK")
if kernel is None:
    st.info("Transform `none` has no trainable parameters, so there is no kernel to take.")
    spec_fig = None
else:
    st.caption(
        "Each eigenvalue is one direction in the space of predictions on the N kernel samples. "
        "Gradient descent shrinks the error along direction i by a factor e^(−η λ_i) per unit "
        "of time: the orange line (λ_min) is the slowest direction that can still be fitted; "
        "past the green line (the rank) nothing can be fitted at all."
    )
    spec_fig = figures.spectrum_figure(kernel, weights)
    ui.plot(spec_fig, "spectrum")
    # A table, not a data grid: its cells wrap, so the "what it means" column is never cut off.
    st.table(figures.spectrum_stats_rows(kernel), hide_index=True)
    timescales = figures.spectrum_timescales(kernel, rcfg)
    if timescales:
        st.markdown("**What this spectrum says about the speed of a fit**")
        st.caption(state.md_text(timescales, limit=2000))

# ---- fit curves ----------------------------------------------------------------------------
st.subheader("The reprogramming fit")
kr = fit.get("kernel_regime")
if kr:
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
else:
    st.caption(
        "Middle panel: the measured squared loss on the kernel samples. No NTK prediction is "
        "drawn on it: this fit (optimizer "
        f"{rcfg.get('optimizer')}, loss {rcfg.get('loss')}) is not the full-batch gradient "
        "descent on squared loss that the prediction models. What the spectrum says about speed "
        "is under the spectrum; the **Kernel regime** switch in the sidebar runs a fit it does "
        "describe."
    )
curves_fig = figures.fit_curves_figure(fit, kernel, weights)
ui.plot(curves_fig, "curves")

# ---- images --------------------------------------------------------------------------------
st.subheader("What the source model sees")
img_fig = figures.transform_examples_figure(fit)
ui.plot(img_fig, "images")

# ---- downloads -----------------------------------------------------------------------------
st.subheader("Downloads")
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
    if kernel is not None:
        ui.download(
            "Eigenvalues (CSV)",
            lambda: downloads.eigenvalues_csv(result),
            f"{stem}-eigenvalues.csv",
            "text/csv",
            "dl.eig",
        )
    ui.figure_download(
        "Fit curves figure (HTML)", curves_fig, f"{stem}-curves.html", "dl.curves.html"
    )
with cols[2]:
    if spec_fig is not None:
        ui.figure_download(
            "Spectrum figure (HTML)", spec_fig, f"{stem}-spectrum.html", "dl.spec.html"
        )
    ui.figure_download("Images figure (HTML)", img_fig, f"{stem}-images.html", "dl.img.html")
ui.result_footer(result)
