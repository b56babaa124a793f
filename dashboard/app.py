"""Entry point: ``streamlit run dashboard/app.py`` (``make app``).

Four pages (``views/``): Explore, Compare, Depth sweep, Learn. This file sets up the session (the
config from the URL) and the navigation; the pages draw.
"""

from __future__ import annotations

import os
import sys
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

# Each page's own URL parameters: not config fields, and not to be warned about as unknown.
PAGE_PARAMS = {
    "compare": ("n", "c1", "c2", "c3", "c4"),
    "depth-sweep": ("transforms", "depths", "stat", "source", "sweep"),
    "learn": ("alpha", "labels", "learn_eta", "gd_steps", "widths", "nn_depth", "seeds"),
}
# Never a config field's name: that would be read as the config and carried to every page (Learn's
# step size was once `lr`, which started Explore fits at Learn's η; tests check the names).

st.set_page_config(page_title="Model reprogramming × NTK", page_icon="🔭", layout="wide")
# Once per server process: compute the default views in the background (REPROG_WARM=0: off).
warm.start(ui.backend(), demos_cache.WARMERS)
ui.start_session([p for params in PAGE_PARAMS.values() for p in params])

_VIEWS = Path(__file__).resolve().parent / "views"
pages = [
    # The default page lives at the root URL ("/?depth=2..."): Streamlit ignores url_path there.
    st.Page(_VIEWS / "explore.py", title="Explore", default=True, icon=":material/insights:"),
    st.Page(
        _VIEWS / "compare.py", title="Compare", url_path="compare", icon=":material/compare_arrows:"
    ),
    st.Page(
        _VIEWS / "depth_sweep.py",
        title="Depth sweep",
        url_path="depth-sweep",
        icon=":material/stacked_line_chart:",
    ),
    st.Page(_VIEWS / "learn.py", title="Learn", url_path="learn", icon=":material/school:"),
]
page = st.navigation(pages)
st.session_state[ui.PAGES] = {p.url_path or "": p for p in pages}  # for ui.switch_to
# Widget identities include the page, so a widget drawn on two pages (the sidebar) is a new widget
# after a page switch and must be seeded again from the session's config (ui._seed_widget).
st.session_state[ui.PAGE_CHANGED] = st.session_state.get(ui.PAGE) != page.url_path
st.session_state[ui.PAGE] = page.url_path
page.run()
