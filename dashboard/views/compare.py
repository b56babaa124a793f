"""Compare: two to four what-if configurations side by side, their differences highlighted, their
spectra and fit curves overlaid.

The sidebar holds the shared (base) settings; each column overrides a few of them. The URL stores
each column as its overrides (``c2=depth:6,transform:fc``), so changing the base moves every
column that did not override that setting. ``render()`` draws the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd
import plotly.graph_objects as go
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
    Regime,
)
from reprog_core.results import ExperimentRecord
from reprog_core.source_model.training import budget_warnings


@dataclass(frozen=True)
class Ready:
    """A column whose result is ready: its label ("B: transform vp"), record and cache key."""

    label: str
    record: ExperimentRecord
    key: str

    @property
    def letter(self) -> str:
        return self.label.split(":")[0]


def render() -> None:
    """The page: the one-click comparisons, the columns over the sidebar's base, the results."""
    st.session_state.pop("cmp.switch", None)  # set by a one-click comparison: we are here
    _intro()
    base = ui.page_config()
    if base is None:
        return
    _read_url_once(base)
    ui.show_url_warnings(st.session_state.get("cmp.warnings", []))
    _follow_base(base)
    n = int(st.segmented_control("Configurations", [2, 3, 4], key="cmp.n", required=True) or 2)
    configs = [_column(col, i, base) for i, col in enumerate(st.columns(n))]
    _sync_url(base, n)
    valid = [(LETTERS[i], c) for i, c in enumerate(configs) if c is not None]
    if len(valid) < 2:
        return
    _lesson(valid)
    labels = _differences(valid)
    _results(valid, labels)


def _intro() -> None:
    st.title("Compare what-ifs")
    st.markdown(
        "Change one or two settings per column and see what they do to the kernel and to the "
        "fit. The sidebar holds the settings all columns share; a column's own choices override "
        "them. Highlighted cells in the table below are the settings that differ from "
        "configuration A."
    )
    st.markdown("**One click:**")
    for col, comp in zip(st.columns(len(presets.COMPARISONS)), presets.COMPARISONS):
        col.button(
            comp.button or comp.label,
            key=f"cmp.preset.{comp.key}",
            on_click=compare_presets.apply,
            args=(comp.key,),
            help=comp.lesson,
            width="stretch",
        )


# --------------------------------------------------------------------------- the columns' state
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


def _read_url_once(base: ExperimentConfig) -> None:
    """The number of columns and each column's overrides, from the URL on the first visit."""
    if not ui.first_visit("compare"):
        return
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


def _follow_base(base: ExperimentConfig) -> None:
    """A column follows the base in every setting it has not changed; what Streamlit dropped
    while the page was not shown is seeded again."""
    prev = st.session_state.get("cmp.prev_base", base.to_dict())
    if prev != base.to_dict():
        for i in range(MAX_CONFIGS):
            for name in VARY:
                k = _wkey(i, name)
                if k not in st.session_state or st.session_state[k] == prev[name]:
                    st.session_state[k] = getattr(base, name)
        st.session_state["cmp.prev_base"] = base.to_dict()
        st.session_state["cmp.warnings"] = []
    for i in range(MAX_CONFIGS):
        for name in VARY:
            st.session_state.setdefault(_wkey(i, name), getattr(base, name))


def _sync_url(base: ExperimentConfig, n: int) -> None:
    overrides = {
        f"c{i + 1}": state.format_overrides({k: st.session_state[_wkey(i, k)] for k in VARY}, base)
        for i in range(n)
    }
    ui.sync_url(base, {"n": str(n), **overrides})


# --------------------------------------------------------------------------- one column
def _column(col: Any, i: int, base: ExperimentConfig) -> ExperimentConfig | None:
    """Column ``i``: its widgets, then its config (None, with the reason, when invalid)."""
    with col:
        st.markdown(f"#### {LETTERS[i]}")
        _column_widgets(i, base)
        return _column_config(i, base)


def _column_widgets(i: int, base: ExperimentConfig) -> None:
    """The settings a column can change (``VARY``), as the sidebar's widgets of those fields."""
    ranges = ui.allowed_ranges()
    datasets = data.list_datasets()

    def draw(name: str, **kw: Any) -> None:
        fields.widget(name, _wkey(i, name), ranges, **kw)

    draw("source_family")
    family = st.session_state[_wkey(i, "source_family")]
    if family in ("clip-cnn", *PRETRAINED_CLASSIFIERS):
        _column_weights(i, base, family, draw)
    if family not in PRETRAINED_CLASSIFIERS:  # a pretrained classifier is not trained here
        draw("depth")
        draw("source_data", options=datasets)
    draw("target", options=datasets)
    draw("transform")
    draw("mapping")
    with st.expander("kernel and fit"):
        _column_fit(i, base, draw)


def _column_weights(i: int, base: ExperimentConfig, family: str, draw: Any) -> None:
    """The weights a column's model offers (a value it does not have becomes its first)."""
    model = base.backbone if family == "clip-cnn" else family
    key = _wkey(i, "weights")
    opts = list(dict.fromkeys([*FIXED_WEIGHTS.get(model, ()), "random", st.session_state[key]]))
    if st.session_state[key] not in opts:
        st.session_state[key] = opts[0]
    draw("weights", options=opts, accept_new_options=model not in FIXED_WEIGHTS)


def _column_fit(i: int, base: ExperimentConfig, draw: Any) -> None:
    """Kernel and fit: the regime, and the optimizer and loss that follow it (``ui.RegimeLink``)."""
    link = ui.RegimeLink(partial(_wkey, i), toggle=False)
    draw("n_kernel")
    draw("kernel_form")
    draw("regime", on_change=link.regime_changed)
    if st.session_state[_wkey(i, "regime")] == Regime.KERNEL.value:
        st.caption(
            f"optimizer sgd, loss mse, full batch; η = ρ·N/λ_max with ρ = {base.rho:g} (sidebar)"
        )
    else:
        draw("optimizer", on_change=link.fit_changed)
        draw("loss", on_change=link.fit_changed)
    draw("steps")
    draw("seed")


def _column_config(i: int, base: ExperimentConfig) -> ExperimentConfig | None:
    values = {name: st.session_state[_wkey(i, name)] for name in VARY}
    try:
        cfg = ExperimentConfig.from_dict({**base.to_dict(), **values})
        problem = state.server_problem(cfg)  # e.g. weights typed as a server path
    except ConfigError as exc:
        cfg, problem = None, str(exc)
    if problem:
        st.error(f"{LETTERS[i]}: these settings cannot be used: {state.public_message(problem)}")
        return None
    return cfg


# --------------------------------------------------------------------------- what differs
def _lesson(valid: list[tuple[str, ExperimentConfig]]) -> None:
    """The lesson of a one-click comparison, while it is what the columns show."""
    shown = [c.to_dict() for _, c in valid]
    for comp in presets.COMPARISONS:
        if [c.to_dict() for c in comp.configs()] == shown:
            st.info(f"**{comp.label}.** {comp.lesson}", icon="💡")


def _differences(valid: list[tuple[str, ExperimentConfig]]) -> list[str]:
    """The settings that differ, as a highlighted table; returns each column's label, which
    names them ("B: transform vp")."""
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
    return [
        f"{letter}: " + (", ".join(f"{f} {state.to_param(d[f])}" for f in diff) or "base")
        for (letter, _), d in zip(valid, dicts)
    ]


# --------------------------------------------------------------------------- results
def _results(valid: list[tuple[str, ExperimentConfig]], labels: list[str]) -> None:
    """Each column's result as it arrives: a summary table, cautions, overlays, downloads."""
    reqs = [jobs.Request("explore", c, f"Configuration {letter}") for letter, c in valid]
    keys = [r.key for r in reqs]
    _budget_warnings(valid)
    jobs.drop_stale(keys)
    _random_weights_banner(valid)
    records = [jobs.fetch(r) for r in reqs]
    progress_area = st.container()  # filled last (``watch``), above the results
    ready = [
        Ready(lab, rec, req.key) for lab, rec, req in zip(labels, records, reqs) if rec is not None
    ]
    if ready:
        rows = _summary(ready, len(reqs))
        _cautions(ready)
        spec_fig, curves_fig = _overlays(ready)
        _downloads(rows, ready, spec_fig, curves_fig)
    with progress_area:
        jobs.watch(keys)


def _budget_warnings(valid: list[tuple[str, ExperimentConfig]]) -> None:
    """Each budget warning once, naming the columns it concerns."""
    said: dict[str, list[str]] = {}
    for letter, c in valid:
        for msg in budget_warnings(c):
            said.setdefault(msg, []).append(letter)
    for msg, letters in said.items():
        st.warning(state.md_text(f"{', '.join(letters)}: {msg}", limit=2000), icon="⚠️")


def _random_weights_banner(valid: list[tuple[str, ExperimentConfig]]) -> None:
    """The random-weights banner once, for the first column with random weights."""
    for _, c in valid:
        ui.random_weights_banner(c.weights_label, c)
        if c.weights_label == "random":
            break


def _summary(ready: list[Ready], n_asked: int) -> list[dict[str, Any]]:
    """The results side by side, and the verdict on the statistics; returns the table's rows."""
    st.subheader("Results")
    rows = [{"configuration": r.label, **r.record.sweep_row()} for r in ready]
    summary = pd.DataFrame(
        {
            "configuration": [row["configuration"] for row in rows],
            "weights": [row["weights"] for row in rows],
            "source acc.": [figures.pct(row["source_test_acc"]) for row in rows],
            "target acc.": [figures.pct(row["target_test_acc"]) for row in rows],
            "baseline (none)": [figures.pct(row["baseline_test_acc"]) for row in rows],
            "kernel regression acc.": [figures.pct(row["regression_acc"]) for row in rows],
            "λ_min": [figures.fmt(row["lambda_min"], 3) for row in rows],
            "λ_max": [figures.fmt(row["lambda_max"], 3) for row in rows],
            "input-independent share": [figures.pct(row["common_share"]) for row in rows],
            "rank": [figures.fmt(row["rank"]) for row in rows],
            "effective rank": [figures.fmt(row["effective_rank"], 3) for row in rows],
            "condition number": [figures.fmt(row["condition_number"], 3) for row in rows],
            "alignment": [figures.fmt(row["alignment"], 3) for row in rows],
        }
    )
    _kernel_regime_columns(summary, ready)
    st.dataframe(summary, hide_index=True, width="stretch")
    verdict = figures.statistics_verdict(rows, [r.letter for r in ready])
    if verdict:
        st.markdown(state.md_text(verdict, limit=2000))
    if len(ready) < n_asked:
        st.caption(
            f"{len(ready)} of {n_asked} configurations are ready; the rest appear when done."
        )
    return rows


def _kernel_regime_columns(summary: pd.DataFrame, ready: list[Ready]) -> None:
    """Where a column fits in the kernel regime: how long its NTK prediction holds."""
    krs = [r.record.fit.kernel_regime for r in ready]
    if any(k is not None for k in krs):
        summary["η·λ_max/N"] = [figures.fmt(k.lr_lambda_max_over_n if k else None, 3) for k in krs]
        summary["prediction holds until step"] = [
            figures.fmt(k.agree_until) if k else "— (practical)" for k in krs
        ]
        summary["kernel drift (end)"] = [figures.fmt(k.drift if k else None, 2) for k in krs]


def _cautions(ready: list[Ready]) -> None:
    """Each caution once, naming the configurations it concerns (the same words for A and B are
    one)."""
    said: dict[str, list[str]] = {}
    for r in ready:
        for m in cautions.result_cautions(r.record):
            said.setdefault(m, []).append(r.letter)
    if said:
        st.warning(
            "\n".join(
                f"- **{', '.join(who)}**: {state.md_text(m, limit=2000)}" for m, who in said.items()
            ),
            icon="⚠️",
        )


def _overlays(ready: list[Ready]) -> tuple[go.Figure, go.Figure]:
    """The spectra and the fit curves overlaid, and what each column's regime says."""
    labels = [r.label for r in ready]
    kernels = [r.record.kernel for r in ready]
    spec_fig = figures.spectra_overlay_figure(kernels, labels)
    ui.plot(spec_fig, "cmp.spectra")
    curves_fig = figures.curves_overlay_figure([r.record.fit for r in ready], kernels, labels)
    ui.plot(curves_fig, "cmp.curves")
    for r in ready:
        kr = r.record.fit.kernel_regime
        text = (
            figures.kernel_regime_caption(kr)
            if kr is not None
            else figures.spectrum_timescales(r.record.kernel, r.record.config)
        )
        if text:
            st.caption(f"**{r.letter}** · {state.md_text(text, limit=2000)}")
    return spec_fig, curves_fig


def _downloads(
    rows: list[dict[str, Any]], ready: list[Ready], spec_fig: go.Figure, curves_fig: go.Figure
) -> None:
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
        records, keys = [r.record for r in ready], [r.key for r in ready]
        ui.download(
            "All results (JSON)",
            lambda: downloads.result_json(records, keys),
            "compare.json",
            "application/json",
            "cmp.dl.json",
        )
    with c3:
        ui.figure_download("Spectra figure (HTML)", spec_fig, "compare-spectra.html", "cmp.dl.spec")
    with c4:
        ui.figure_download(
            "Curves figure (HTML)", curves_fig, "compare-curves.html", "cmp.dl.curves"
        )
