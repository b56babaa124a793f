"""The Compare page's columns as session state, and its one-click comparisons
(``reprog_core.presets``): shared by the Compare page and the Learn page's "Open on Compare"."""

from __future__ import annotations

import streamlit as st

from dashboard import ui
from reprog_core import presets
from reprog_core.config import FIELDS

LETTERS = "ABCD"
MAX_CONFIGS = 4
# The settings a column can change (``FieldInfo.vary``), in field order; the rest come from the
# sidebar.
VARY: tuple[str, ...] = tuple(name for name, info in FIELDS.items() if info.vary)


def _wkey(i: int, name: str) -> str:
    return f"cmp.{i}.{name}"


def apply(key: str) -> None:
    """A one-click comparison: its setup becomes the sidebar's config, its columns the Compare
    page's columns (a widget callback: it runs before the next script run)."""
    comp = presets.comparison(key)
    if comp is None:
        return
    base_cfg = comp.setup.config()
    ui.set_config(base_cfg)
    st.session_state["cmp.n"] = len(comp.columns)
    configs = comp.configs()
    for i in range(MAX_CONFIGS):
        col = configs[i] if i < len(configs) else base_cfg
        for name in VARY:
            st.session_state[_wkey(i, name)] = getattr(col, name)
    st.session_state["cmp.prev_base"] = base_cfg.to_dict()
    st.session_state["cmp.warnings"] = []
    st.session_state["_visited.compare"] = True  # the URL must not overwrite these columns
    st.session_state["cmp.switch"] = True
