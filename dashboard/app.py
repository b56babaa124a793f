"""Entry point: ``streamlit run dashboard/app.py`` (``make app``).

Four pages (``views/``): Explore, Compare, Depth sweep, Learn, each a module whose ``render()``
draws it. This file sets up the session (the config from the URL), picks the page, draws the
config sidebar every page shares, then runs the page.

The sidebar is drawn here, before the page, as Streamlit documents for widgets shared across
pages: a widget drawn in the entry point is the same widget on every page, so its value survives
a page switch without being seeded again. Each page says what it takes from it (``PAGE_TABLE``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

# `streamlit run` puts dashboard/ on sys.path, not the project root that holds the package.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# A dashboard user who presses Cancel, or closes the tab, wants the work to stop, so that it does
# not hold a worker other sessions are waiting for (an operator can still choose 'finish').
os.environ.setdefault("REPROG_ORPHAN_POLICY", "cancel")

import streamlit as st  # noqa: E402

from dashboard import demos_cache, ui, warm  # noqa: E402
from dashboard.views import compare, depth_sweep, explore, learn  # noqa: E402

# Each page's own URL parameters: not config fields, and not to be warned about as unknown.
PAGE_PARAMS = {
    "compare": ("n", "c1", "c2", "c3", "c4"),
    "depth-sweep": ("transforms", "depths", "stat", "source", "sweep"),
    "learn": ("alpha", "labels", "learn_eta", "gd_steps", "widths", "nn_depth", "seeds"),
}
# Never a config field's name: that would be read as the config and carried to every page (Learn's
# step size was once `lr`, which started Explore fits at Learn's η; tests check the names).

Fixed = Mapping[str, str] | None  # field -> why the page sets it; None: no config sidebar


def _all_fields() -> Fixed:
    return {}


def _no_config() -> Fixed:
    return None


@dataclass(frozen=True)
class PageEntry:
    """One page: the function that draws it, its address and name, and what it takes from the
    config sidebar. ``fixed`` is asked on every run, before the sidebar is drawn: the fields the
    page sets itself (left out of the sidebar, their reason said instead), or None when the page
    uses no config (the sidebar holds none)."""

    render: Callable[[], None]
    title: str
    url_path: str
    icon: str
    fixed: Callable[[], Fixed] = _all_fields


PAGE_TABLE = (
    # The default page lives at the root URL ("/?depth=2..."): Streamlit ignores its url_path.
    PageEntry(explore.render, "Explore", "explore", ":material/insights:"),
    PageEntry(compare.render, "Compare", "compare", ":material/compare_arrows:"),
    # The sweep varies depth and transform itself; a saved sweep brings its own config.
    PageEntry(
        depth_sweep.render,
        "Depth sweep",
        "depth-sweep",
        ":material/stacked_line_chart:",
        depth_sweep.fixed_fields,
    ),
    PageEntry(learn.render, "Learn", "learn", ":material/school:", _no_config),
)


def _navigation() -> tuple[st.Page, PageEntry]:
    """The page this run draws (from the address or the navigation), and its entry."""
    pages = [
        st.Page(e.render, title=e.title, url_path=e.url_path, icon=e.icon, default=i == 0)
        for i, e in enumerate(PAGE_TABLE)
    ]
    page = st.navigation(pages)
    st.session_state[ui.PAGES] = {p.url_path: p for p in pages}  # for ui.switch_to
    st.session_state[ui.PAGE] = page.url_path
    return page, next(e for p, e in zip(pages, PAGE_TABLE) if p is page)


def main() -> None:
    st.set_page_config(page_title="Model reprogramming × NTK", page_icon="🔭", layout="wide")
    # Once per server process: compute the default views in the background (REPROG_WARM=0: off).
    warm.start(ui.backend(), demos_cache.WARMERS)
    ui.start_session([p for params in PAGE_PARAMS.values() for p in params])
    page, entry = _navigation()
    ui.config_sidebar(entry.fixed())
    page.run()


main()
