"""Depth sweep: the paper's experiment. Source models of depth 1 to 6, each reprogrammed with the
chosen transformations; accuracy and spectral statistics against depth, and a statistic against
target accuracy with its rank correlation.

Points come from the cache first: one computed by the Explore page, the Compare page or a CLI
sweep (``python -m reprog_core sweep``) appears at once. Missing points are computed only when
asked (a grid is up to 6 x 5 fits, and the worker queue is shared with everyone). ``render()``
draws the page; ``fixed_fields()`` tells the entry point what the sidebar leaves out here.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import downloads, jobs, state, ui
from dashboard.views import saved_sweep
from reprog_core import figures, presets
from reprog_core.config import ExperimentConfig
from reprog_core.results import ExperimentRecord
from reprog_core.sweep.grid import SWEEP_TASK, grid_points

TRANSFORMS = list(figures.TRANSFORM_NAMES)
DEFAULT_TRANSFORMS = ["vp", "fc"]
DEPTH_RANGE = state.ranges()["depth"]  # what the dashboard offers (config.FieldInfo.ui)
DEPTHS = list(range(DEPTH_RANGE[0], DEPTH_RANGE[1] + 1))
# Points come either from this app's cache (computed on demand) or from a saved sweep folder.
MODES = {"cache": "computed here (from the cache)", "saved": "a saved sweep (CLI output folder)"}
FIXED = {"depth": "set by the sweep on this page", "transform": "set by the sweep on this page"}


def mode() -> str:
    """Where the points come from: the radio's choice, first taken from the URL's ``source=``."""
    if "sw.mode" not in st.session_state:
        st.session_state["sw.mode"] = "saved" if ui.page_param("source") == "saved" else "cache"
    return str(st.session_state["sw.mode"])


def fixed_fields() -> Mapping[str, str] | None:
    """What this page takes from the config sidebar (asked before the sidebar is drawn): all but
    depth and transform, which the sweep varies itself; nothing for a saved sweep, which
    carries its own config (None)."""
    return None if mode() == "saved" else FIXED


def render() -> None:
    """The page: points from a saved sweep, or computed here from the sidebar's config."""
    _intro()
    mode()  # the radio's first value, from the URL
    source = st.radio(
        "points from", list(MODES), format_func=MODES.get, horizontal=True, key="sw.mode"
    )
    if source == "saved":
        saved_sweep.render(ui.page_param("sweep"))
        return
    cfg = ui.page_config()
    if cfg is None:
        return
    if cfg.is_pretrained_classifier:
        _no_depth_to_vary(cfg)
        return
    _read_url_once()
    ui.show_url_warnings(st.session_state.get("sw.warnings", []))
    transforms, depths, stat = _grid_widgets()
    url = {"transforms": ",".join(transforms), "depths": ",".join(map(str, depths)), "stat": stat}
    ui.sync_url(cfg, url)
    if not transforms or not depths:
        st.info("Choose at least one transformation and one depth.")
        return
    _sweep(cfg, depths, transforms, stat)


def _intro() -> None:
    st.title("Depth sweep")
    st.markdown(
        "The paper's experiment: train source models of depth 1 to 6, reprogram each to the "
        "target task, and ask whether the spectrum of the reprogrammed model's NTK tracks how "
        "well it does. The paper reports that source accuracy rises with depth, that target "
        "accuracy follows it, and that the padding prompt (vp) beats the fully connected "
        "transformation (fc). Points are computed here from the sidebar's settings, or read from "
        "a sweep saved by `python -m reprog_core sweep`."
    )


def _no_depth_to_vary(cfg: ExperimentConfig) -> None:
    """A classifier used as it is has no depth: the paper's set-up puts a CNN head of depth L on
    a frozen encoder, here the same ImageNet EfficientNet-Lite0, one click away."""
    st.info(
        f"The source model in the sidebar ({cfg.source_family}) is a pretrained classifier used "
        "as it is: it has no depth to vary. The paper's experiment puts a CNN head of depth 1 to "
        "6 on a frozen pretrained encoder and trains the head on a source data set.",
        icon="ℹ️",
    )
    st.button(
        "Use the paper's set-up: the ImageNet encoder + a CNN head trained on the source data",
        on_click=ui.set_config,
        args=(presets.ENCODER_HEAD.config(),),
    )


# --------------------------------------------------------------------------- the grid
def _read_url_once() -> None:
    """The grid's transformations, depths and statistic, from the URL on the first visit."""
    if ui.first_visit("depth-sweep"):
        param = ui.page_param
        ts, w1 = state.parse_choices(
            "transforms", param("transforms"), TRANSFORMS, DEFAULT_TRANSFORMS
        )
        ds, w2 = state.parse_int_list("depths", param("depths"), *DEPTH_RANGE, DEPTHS)
        stat, w3 = state.parse_choice(
            "stat", param("stat"), list(figures.SPECTRAL_STATS), "lambda_min"
        )
        st.session_state.update(
            {"sw.transforms": ts, "sw.depths": ds, "sw.stat": stat, "sw.warnings": w1 + w2 + w3}
        )
    st.session_state.setdefault("sw.transforms", DEFAULT_TRANSFORMS)
    st.session_state.setdefault("sw.depths", DEPTHS)
    st.session_state.setdefault("sw.stat", "lambda_min")


def _grid_widgets() -> tuple[list[str], list[int], str]:
    """The grid's widgets, in two rows so that the long names are not cut off; returns the
    transformations and depths in their natural order, and the statistic."""
    c1, c2 = st.columns([3, 2])
    transforms = c1.multiselect(
        "transformations", TRANSFORMS, key="sw.transforms", format_func=figures.TRANSFORM_NAMES.get
    )
    depths = c2.pills("source depths", DEPTHS, selection_mode="multi", key="sw.depths")
    c3, _ = st.columns([3, 2])
    stat = c3.selectbox(
        "statistic against accuracy",
        list(figures.SPECTRAL_STATS),
        key="sw.stat",
        format_func=lambda s: figures.SPECTRAL_STATS[s][0],
    )
    return [t for t in TRANSFORMS if t in transforms], sorted(depths or []), str(stat)


# --------------------------------------------------------------------------- the points
def _sweep(cfg: ExperimentConfig, depths: list[int], transforms: list[str], stat: str) -> None:
    """The grid's points from the cache, the rest computed on a click; figures of what is ready."""
    points, invalid = grid_points(cfg, depths, transforms, [cfg.seed])
    for why in invalid:  # e.g. vp needs target_size < source_size
        st.warning(f"Skipped: {state.md_text(why, limit=2000)}")
    reqs = [jobs.Request(SWEEP_TASK, p, f"depth {p.depth}, {p.transform}") for p in points]
    keys = [r.key for r in reqs]
    jobs.drop_stale(keys)
    ui.random_weights_banner(cfg.weights_label, cfg)
    asked = st.session_state.setdefault("sw.asked", set())
    records = [jobs.fetch(r, start=r.key in asked) for r in reqs]
    status = st.container()
    with status:
        _status(reqs, records, asked)
    ready = [(rec, req.key) for rec, req in zip(records, reqs) if rec is not None]
    if ready:
        rows = [rec.sweep_row() for rec, _ in ready]
        figs = saved_sweep.draw_figures(rows, stat, "sw")
        with st.expander("All points as a table"):
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        _downloads(cfg, rows, ready, figs)
    with status:
        jobs.watch(keys)  # last: the progress of running points, below the figures


def _ask(keys: list[str]) -> None:
    """The button's callback: runs before the page, with the points the user saw as missing."""
    st.session_state.setdefault("sw.asked", set()).update(keys)


def _status(
    reqs: list[jobs.Request], records: list[ExperimentRecord | None], asked: set[str]
) -> None:
    """How many points are ready, and a button for the missing ones not asked for yet."""
    missing = [r for r, rec in zip(reqs, records) if rec is None and r.key not in asked]
    n_ready = sum(rec is not None for rec in records)
    st.markdown(f"**{n_ready} of {len(reqs)} points ready.**")
    # Always written (emptied when there is nothing to offer), so no earlier run's button stays.
    offer = st.empty()
    if not missing:
        offer.empty()
        return
    with offer.container():
        st.caption(
            f"{len(missing)} points are not in the cache. Each trains a source model "
            "(shared between transformations of the same depth) and runs one fit."
        )
        # A fixed key and a callback: the click counts even when the number of missing points
        # (the label) changed meanwhile, e.g. because another session computed one.
        st.button(
            f"Compute the {len(missing)} missing points",
            type="primary",
            key="sw.compute",
            on_click=_ask,
            args=([r.key for r in missing],),
        )


def _downloads(
    cfg: ExperimentConfig,
    rows: list[dict],
    ready: list[tuple[ExperimentRecord, str]],
    figs: dict[str, go.Figure],
) -> None:
    """The table, the records (each with its cache key) and the two main figures, as files."""
    st.subheader("Downloads")
    d1, d2, d3, d4 = st.columns(4)
    with d1:
        what = f"depth sweep ({cfg.source_data} -> {cfg.target})"
        ui.download(
            "Sweep table (CSV)",
            lambda: downloads.rows_csv(rows, what),
            "depth-sweep.csv",
            "text/csv",
            "sw.dl.csv",
        )
    with d2:
        records, keys = [rec for rec, _ in ready], [key for _, key in ready]
        ui.download(
            "All results (JSON)",
            lambda: downloads.result_json(records, keys),
            "depth-sweep.json",
            "application/json",
            "sw.dl.json",
        )
    with d3:
        ui.figure_download(
            "Target accuracy figure (HTML)", figs["target"], "depth-sweep-target.html", "sw.dl.t"
        )
    with d4:
        ui.figure_download(
            "Scatter figure (HTML)", figs["scatter"], "depth-sweep-scatter.html", "sw.dl.s"
        )
