"""Compare: two to four what-if configurations side by side, their differences highlighted, their
spectra and fit curves overlaid.

The sidebar holds the shared (base) settings; each column overrides a few of them. The URL stores
each column as its overrides (``c2=depth:6,transform:fc``), so changing the base moves every
column that did not override that setting.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import downloads, fields, jobs, state, ui
from dashboard.views import compare_presets
from dashboard.views.compare_presets import LETTERS, MAX_CONFIGS, VARY, _wkey
from reprog_core import cautions, data, figures, presets
from reprog_core.config import (
    FIXED_WEIGHTS,
    PRETRAINED_CLASSIFIERS,
    ConfigError,
    ExperimentConfig,
    LossKind,
    OptimizerKind,
    Regime,
)
from reprog_core.pipeline import sweep_row
from reprog_core.source_model.training import budget_warnings


def _default_variant(i: int, base: ExperimentConfig) -> dict[str, object]:
    """What a column shows before anyone touches it. On a pretrained source (the default): the
    paper's second claim, the same model with random weights (B), then the other transforms.
    Otherwise the paper's first question, the padding prompt against the fully connected layer
    (B is the other one of vp and fc), then a shallower and a deeper source."""
    if base.weights_model is not None and base.weights != "random":
        other = [t for t in ("fc", "vp-full", "vp") if t != base.transform]
        return {
            1: {"weights": "random"},
            2: {"transform": other[0]},
            3: {"transform": other[1]},
        }.get(i, {})
    if i == 1:
        return {"transform": "vp" if base.transform == "fc" else "fc"}
    if i == 2:
        return {"depth": 1 if base.depth != 1 else 2}
    if i == 3:
        return {"depth": 6 if base.depth != 6 else 5}
    return {}


def _regime_changed(i: int) -> None:
    """A column's regime: kernel means sgd + mse; back to practical from sgd + mse means the
    defaults (sgd + mse would be the kernel regime again)."""
    opt, loss = _wkey(i, "optimizer"), _wkey(i, "loss")
    if st.session_state[_wkey(i, "regime")] == Regime.KERNEL.value:
        st.session_state[opt], st.session_state[loss] = OptimizerKind.SGD.value, LossKind.MSE.value
    elif (st.session_state.get(opt), st.session_state.get(loss)) == ("sgd", "mse"):
        st.session_state[opt] = state.DEFAULT.optimizer
        st.session_state[loss] = state.DEFAULT.loss


def _fit_changed(i: int) -> None:
    kernel = (st.session_state.get(_wkey(i, "optimizer")), st.session_state.get(_wkey(i, "loss")))
    st.session_state[_wkey(i, "regime")] = (
        Regime.KERNEL.value if kernel == ("sgd", "mse") else Regime.PRACTICAL.value
    )


st.session_state.pop("cmp.switch", None)  # set by a one-click comparison: we are here
st.title("Compare what-ifs")
st.markdown(
    "Change one or two settings per column and see what they do to the kernel and to the fit. "
    "The sidebar holds the settings all columns share; a column's own choices override them. "
    "Highlighted cells in the table below are the settings that differ from configuration A."
)
st.markdown("**One click:**")
for _col, _comp in zip(st.columns(len(presets.COMPARISONS)), presets.COMPARISONS):
    _col.button(
        _comp.button or _comp.label,
        key=f"cmp.preset.{_comp.key}",
        on_click=compare_presets.apply,
        args=(_comp.key,),
        help=_comp.lesson,
        width="stretch",
    )
base = ui.config_sidebar()
if base is None:
    st.stop()

warnings: list[str] = []
if ui.first_visit("compare"):
    n, warnings = state.parse_number("n", ui.page_param("n"), 2, MAX_CONFIGS, 2, integer=True)
    st.session_state["cmp.n"] = int(n)
    limits = ui.allowed_ranges()  # over-limit values are clamped to these, with a warning
    for i in range(MAX_CONFIGS):
        raw = ui.page_param(f"c{i + 1}")
        over, w = state.parse_overrides(f"c{i + 1}", raw, base, VARY, limits)
        warnings += w
        if raw is None:
            over = _default_variant(i, base)
        for name in VARY:
            st.session_state[_wkey(i, name)] = over.get(name, getattr(base, name))
    st.session_state["cmp.prev_base"] = base.to_dict()
    st.session_state["cmp.warnings"] = warnings
ui.show_url_warnings(st.session_state.get("cmp.warnings", []))

# A column follows the base in every setting it has not changed.
prev = st.session_state.get("cmp.prev_base", base.to_dict())
if prev != base.to_dict():
    for i in range(MAX_CONFIGS):
        for name in VARY:
            k = _wkey(i, name)
            if k not in st.session_state or st.session_state[k] == prev[name]:
                st.session_state[k] = getattr(base, name)
    st.session_state["cmp.prev_base"] = base.to_dict()
    st.session_state["cmp.warnings"] = []
for i in range(MAX_CONFIGS):  # re-seed what Streamlit dropped while the page was not shown
    for name in VARY:
        st.session_state.setdefault(_wkey(i, name), getattr(base, name))

n = st.segmented_control("Configurations", [2, 3, 4], key="cmp.n", required=True)
n = int(n or 2)

datasets = data.list_datasets()
configs: list[ExperimentConfig | None] = []
columns = st.columns(n)
for i, col in enumerate(columns):
    with col:
        st.markdown(f"#### {LETTERS[i]}")
        ranges = ui.allowed_ranges()

        def draw(name: str, **kw: object) -> None:
            fields.widget(name, _wkey(i, name), ranges, **kw)  # noqa: B023 - drawn at once

        draw("source_family")
        family = st.session_state[_wkey(i, "source_family")]
        if family in ("clip-cnn", *PRETRAINED_CLASSIFIERS):
            model = base.backbone if family == "clip-cnn" else family
            opts = [*FIXED_WEIGHTS.get(model, ())]
            opts = list(dict.fromkeys([*opts, "random", st.session_state[_wkey(i, "weights")]]))
            if st.session_state[_wkey(i, "weights")] not in opts:
                st.session_state[_wkey(i, "weights")] = opts[0]
            draw("weights", options=opts, accept_new_options=model not in FIXED_WEIGHTS)
        if family not in PRETRAINED_CLASSIFIERS:  # a pretrained classifier is not trained here
            draw("depth")
            draw("source_data", options=datasets)
        draw("target", options=datasets)
        draw("transform")
        draw("mapping")
        with st.expander("kernel and fit"):
            draw("n_kernel")
            draw("kernel_form")
            draw("regime", on_change=_regime_changed, args=(i,))
            if st.session_state[_wkey(i, "regime")] == Regime.KERNEL.value:
                st.caption(
                    f"optimizer sgd, loss mse, full batch; η = ρ·N/λ_max with ρ = {base.rho:g} "
                    "(sidebar)"
                )
            else:
                draw("optimizer", on_change=_fit_changed, args=(i,))
                draw("loss", on_change=_fit_changed, args=(i,))
            draw("steps")
            draw("seed")
        values = {name: st.session_state[_wkey(i, name)] for name in VARY}
        try:
            cfg_i = ExperimentConfig.from_dict({**base.to_dict(), **values})
            problem = state.server_problem(cfg_i)  # e.g. weights typed as a server path
        except ConfigError as exc:
            cfg_i, problem = None, str(exc)
        if problem:
            st.error(
                f"{LETTERS[i]}: these settings cannot be used: {state.public_message(problem)}"
            )
            cfg_i = None
        configs.append(cfg_i)

ui.sync_url(
    base,
    {
        "n": str(n),
        **{
            f"c{i + 1}": state.format_overrides(
                {k: st.session_state[_wkey(i, k)] for k in VARY}, base
            )
            for i in range(n)
        },
    },
)

valid = [(LETTERS[i], c) for i, c in enumerate(configs) if c is not None]
if len(valid) < 2:
    st.stop()
for _comp in presets.COMPARISONS:  # the lesson of a one-click comparison, while it is shown
    if [c.to_dict() for c in _comp.configs()] == [c.to_dict() for _, c in valid]:
        st.info(f"**{_comp.label}.** {_comp.lesson}", icon="💡")

# ---- what differs ----------------------------------------------------------------------------
dicts = [c.to_dict() for _, c in valid]
diff = state.differing_fields(dicts)
st.subheader("Settings that differ")
if not diff:
    st.info("All configurations are the same: change a setting in one of the columns.")
else:
    table = pd.DataFrame(
        {letter: [state.to_param(d[f]) for f in diff] for (letter, _), d in zip(valid, dicts)},
        index=[state.FIELD_LABELS.get(f, f) for f in diff],
    )
    first = table.columns[0]
    styled = table.style.apply(
        lambda col: [
            ""
            if col.name == first or v == table[first].iloc[j]
            else "background-color: #fff3bf; font-weight: 600"
            for j, v in enumerate(col)
        ],
        axis=0,
    )
    st.dataframe(styled, width="stretch")

labels = [
    f"{letter}: " + (", ".join(f"{f} {state.to_param(c.to_dict()[f])}" for f in diff) or "base")
    for letter, c in valid
]

# ---- results ---------------------------------------------------------------------------------
reqs = [jobs.Request("explore", c, f"Configuration {letter}") for letter, c in valid]
_budget = {}  # said once per message, naming the columns it concerns
for letter, c in valid:
    for msg in budget_warnings(c):
        _budget.setdefault(msg, []).append(letter)
for msg, letters in _budget.items():
    st.warning(state.md_text(f"{', '.join(letters)}: {msg}", limit=2000), icon="⚠️")
keys = [r.key for r in reqs]
jobs.drop_stale(keys)
for _, c in valid:
    ui.random_weights_banner(c.weights_label, c.to_dict())
    if c.weights_label == "random":
        break
results = [jobs.fetch(r) for r in reqs]
progress_area = st.container()  # filled last (``watch``), above the results
ready = [(lab, r) for lab, r in zip(labels, results) if r is not None]
if not ready:
    with progress_area:
        jobs.watch(keys)
    st.stop()

st.subheader("Results")
rows = [{"configuration": lab, **sweep_row(r)} for lab, r in ready]
summary = pd.DataFrame(
    {
        "configuration": [r["configuration"] for r in rows],
        "weights": [r["weights"] for r in rows],
        "source acc.": [figures.pct(r["source_test_acc"]) for r in rows],
        "target acc.": [figures.pct(r["target_test_acc"]) for r in rows],
        "baseline (none)": [figures.pct(r["baseline_test_acc"]) for r in rows],
        "kernel regression acc.": [figures.pct(r["regression_acc"]) for r in rows],
        "λ_min": [figures.fmt(r["lambda_min"], 3) for r in rows],
        "λ_max": [figures.fmt(r["lambda_max"], 3) for r in rows],
        "input-independent share": [figures.pct(r["common_share"]) for r in rows],
        "rank": [figures.fmt(r["rank"]) for r in rows],
        "effective rank": [figures.fmt(r["effective_rank"], 3) for r in rows],
        "condition number": [figures.fmt(r["condition_number"], 3) for r in rows],
        "alignment": [figures.fmt(r["alignment"], 3) for r in rows],
    }
)
krs = [r["fit"].get("kernel_regime") or {} for _, r in ready]
if any(krs):
    summary["η·λ_max/N"] = [figures.fmt(k.get("lr_lambda_max_over_n"), 3) for k in krs]
    summary["prediction holds until step"] = [
        figures.fmt(k.get("agree_until")) if k else "— (practical)" for k in krs
    ]
    summary["kernel drift (end)"] = [figures.fmt(k.get("drift"), 2) for k in krs]
st.dataframe(summary, hide_index=True, width="stretch")
verdict = figures.statistics_verdict(rows, [lab.split(":")[0] for lab, _ in ready])
if verdict:
    st.markdown(state.md_text(verdict, limit=2000))
if len(ready) < len(reqs):
    st.caption(f"{len(ready)} of {len(reqs)} configurations are ready; the rest appear when done.")
# Each caution once, naming the configurations it concerns (the same words for A and B are one).
_cautions: dict[str, list[str]] = {}
for lab, r in ready:
    for m in cautions.result_cautions(r):
        _cautions.setdefault(m, []).append(lab.split(":")[0])
if _cautions:
    st.warning(
        "\n".join(
            f"- **{', '.join(who)}**: {state.md_text(m, limit=2000)}"
            for m, who in _cautions.items()
        ),
        icon="⚠️",
    )

spec_fig = figures.spectra_overlay_figure(
    [r.get("kernel") for _, r in ready], [lab for lab, _ in ready]
)
ui.plot(spec_fig, "cmp.spectra")
curves_fig = figures.curves_overlay_figure(
    [r["fit"] for _, r in ready], [r.get("kernel") for _, r in ready], [lab for lab, _ in ready]
)
ui.plot(curves_fig, "cmp.curves")
for lab, r in ready:
    kr = r["fit"].get("kernel_regime")
    text = (
        figures.kernel_regime_caption(kr)
        if kr
        else figures.spectrum_timescales(r.get("kernel"), r["config"])
    )
    if text:
        st.caption(f"**{lab.split(':')[0]}** · {state.md_text(text, limit=2000)}")

st.subheader("Downloads")
c1, c2, c3, c4 = st.columns(4)
with c1:
    ui.download(
        "Comparison table (CSV)",
        lambda: downloads.rows_csv(rows, "comparison of reprogramming configurations"),
        "compare.csv",
        "text/csv",
        "cmp.dl.csv",
    )
with c2:
    ui.download(
        "All results (JSON)",
        lambda: downloads.result_json([r for _, r in ready]),
        "compare.json",
        "application/json",
        "cmp.dl.json",
    )
with c3:
    ui.figure_download("Spectra figure (HTML)", spec_fig, "compare-spectra.html", "cmp.dl.spec")
with c4:
    ui.figure_download("Curves figure (HTML)", curves_fig, "compare-curves.html", "cmp.dl.curves")
with progress_area:
    jobs.watch(keys)
