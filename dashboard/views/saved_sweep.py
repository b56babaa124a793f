"""The Depth sweep page's second source of points: a folder written by
``python -m reprog_core sweep --out sweeps/NAME`` (``results.json``, see ``reprog_core.sweep``).

Only folders under the sweeps directory (``$REPROG_SWEEPS_DIR``, default ``<project>/sweeps``) are
offered, by name: a URL can choose among them but never point the server at another path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import ui
from reprog_core import figures
from reprog_core.results import SweepRecord
from reprog_core.sweep import load_results, paper_claims

_PROJECT = Path(__file__).resolve().parents[2]


def sweeps_dir() -> Path:
    return Path(os.environ.get("REPROG_SWEEPS_DIR") or _PROJECT / "sweeps")


def shown(path: Path) -> str:
    """A path as a page may show it: relative to the project (``sweeps/NAME``), or, for a folder
    elsewhere (``$REPROG_SWEEPS_DIR``), only its last parts; never the server's absolute path."""
    try:
        return path.resolve().relative_to(_PROJECT).as_posix()
    except ValueError:
        pass
    root = sweeps_dir()
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name
    return "$REPROG_SWEEPS_DIR" + ("" if rel == "." else f"/{rel}")


def saved_sweeps() -> list[str]:
    """Names of folders under ``sweeps_dir()`` that hold a ``results.json``, newest first."""
    root = sweeps_dir()
    if not root.is_dir():
        return []
    found = [p.parent for p in root.glob("*/results.json")]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def draw_figures(rows: list[dict], stat: str, key: str) -> dict[str, go.Figure]:
    """The sweep figures (shared by live and saved sweeps), each with a plain-words caption.

    ``rows``: ``pipeline.sweep_row`` dicts. Returns the figures by name, for downloads.
    """
    figs = {
        "source": figures.source_accuracy_figure(rows),
        "target": figures.target_accuracy_figure(rows),
        "spectrum": figures.spectrum_depth_figure(rows),
        "scatter": figures.stat_accuracy_figure(rows, stat),
    }
    captions = {
        "source": "How well each source model does on its own data, by depth.",
        "target": "How well it does on the target task after reprogramming; the dashed line is "
        "the same source with no transformation trained.",
        "spectrum": "The smallest eigenvalue λ_min of the target NTK (the slowest direction that "
        "can be fitted) and its effective rank (how many directions matter).",
        "scatter": "Spearman's ρ measures whether a larger statistic goes with a higher accuracy "
        "(ρ = 1: always, ρ = −1: always the opposite, ρ ≈ 0: no relation); with few points it "
        "is noisy.",
    }
    for name, fig in figs.items():
        ui.plot(fig, f"{key}.{name}")
        st.caption(captions[name])
    return figs


def render(requested: str | None) -> None:
    """Draw a saved sweep chosen by name (``requested`` comes from the URL's ``sweep=``)."""
    names = saved_sweeps()
    if not names:
        st.info(
            f"No saved sweeps in `{shown(sweeps_dir())}` yet. Run one, for example\n\n"
            "`python -m reprog_core sweep --preset paper-depth --out sweeps/paper-depth`\n\n"
            "and it appears here."
        )
        return
    name, stat = _choose(names, requested)
    folder = sweeps_dir() / name
    try:
        record = load_results(folder)
    except Exception as exc:  # a half-written or foreign file: say so, keep the page alive
        why = str(exc).replace(str(folder), shown(folder))
        st.error(f"Could not read the sweep in `{shown(folder)}`: {why}")
        return
    rows = record.rows
    if not rows:
        st.warning(f"`{shown(folder)}/results.json` holds no finished points.")
        return
    ui.random_weights_banner(record.weights, record.config)
    _summary(record)
    _claims(rows)
    draw_figures(rows, stat, "sw.saved")
    with st.expander("All points as a table"):
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    _file_downloads(folder, name)


def _choose(names: list[str], requested: str | None) -> tuple[str, str]:
    """The sweep (the URL's, else the newest) and the statistic; both go into the URL, which
    for a saved sweep holds no config (the sweep carries its own)."""
    if requested and requested not in names:
        st.warning(
            f"URL parameter `sweep={requested}` names no saved sweep in "
            f"`{shown(sweeps_dir())}`; "
            f"showing `{names[0]}` instead."
        )
        requested = None
    if "sw.saved" not in st.session_state or st.session_state["sw.saved"] not in names:
        st.session_state["sw.saved"] = requested or names[0]
    c1, c2 = st.columns([3, 2])
    name = c1.selectbox("saved sweep", names, key="sw.saved")
    stat = c2.selectbox(
        "statistic against accuracy",
        list(figures.SPECTRAL_STATS),
        key="sw.saved_stat",
        format_func=lambda s: figures.SPECTRAL_STATS[s][0],
    )
    wanted = {"source": "saved", "sweep": name, "stat": stat}
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)
    return str(name), str(stat)


def _summary(record: SweepRecord) -> None:
    """What the sweep is: its points, models and grid, when and how it ran, its command."""
    cfg = record.config
    models = (
        f"{cfg.source_family} on {cfg.source_data} → {cfg.target}" if cfg else "(no base config)"
    )
    st.markdown(
        f"**{len(record.rows)} points** · {models} · {record.grid_name} · "
        f"created {record.created} · executor {record.executor}"
        + ("" if record.finished else " · **interrupted: partial results**")
    )
    if record.command:
        st.code(record.command, language="bash")


def _claims(rows: list[dict]) -> None:
    """The paper's claims, each with its verdict on these points."""
    claims = paper_claims(rows)
    st.subheader("The paper's claims on this sweep")
    st.dataframe(
        pd.DataFrame(
            [
                {"claim": c.claim, "verdict": c.verdict, "numbers": c.detail, "test": c.test}
                for c in claims
            ]
        ),
        hide_index=True,
        width="stretch",
    )


def _file_downloads(folder: Path, name: str) -> None:
    """The sweep's own files, as the CLI wrote them."""
    st.subheader("Downloads")
    d1, d2, d3 = st.columns(3)
    for col, fname, mime in (
        (d1, "results.csv", "text/csv"),
        (d2, "results.json", "application/json"),
        (d3, "report.html", "text/html"),
    ):
        path = folder / fname
        if path.exists():
            col.download_button(
                fname,
                path.read_bytes(),
                file_name=f"{name}-{fname}",
                mime=mime,
                key=f"sw.saved.dl.{fname}",
            )
