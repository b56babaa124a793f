"""One widget per config field, generated from the config's field metadata (``FieldInfo``).

The sidebar (``ui.config_sidebar``) and each Compare column draw their settings through
``widget``: its kind, label, tooltip, range, step and option names come from
``reprog_core.config.FIELDS``, so a new config field is one ``FieldInfo`` and appears everywhere
with the same label and limits. What only a page knows is passed in: the widget key, the options
that exist on this server (data sets, backbones) and what to do when it changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import streamlit as st

from reprog_core.config import FIELDS, ExperimentConfig

_TYPES = {f: ExperimentConfig.__dataclass_fields__[f].type for f in FIELDS}


def names_in(group: str, shown: Sequence[str]) -> list[str]:
    """The fields of a sidebar group among ``shown``, in field order."""
    return [name for name in shown if FIELDS[name].group == group]


def widget(
    name: str,
    key: str,
    ranges: Mapping[str, tuple[int, int]],
    *,
    options: Sequence[Any] | None = None,
    format_func: Callable[[Any], str] | None = None,
    on_change: Callable[..., None] | None = None,
    args: tuple[Any, ...] = (),
    **kw: Any,
) -> None:
    """Draw config field ``name`` under session-state ``key`` (which holds its value).

    A field with choices (or ``options``) is a select box; a bool a checkbox; an integer a slider
    when the dashboard narrows its range (``FieldInfo.ui``, the depth) and a number box in
    ``ranges`` otherwise; a float a slider over its UI range, else a number box from 0.
    """
    info = FIELDS[name]
    common: dict[str, Any] = {"key": key, "help": info.help or None, **kw}
    if on_change is not None:
        common.update(on_change=on_change, args=args)
    kind = str(_TYPES[name])
    if options is not None or info.choices is not None:
        opts = list(options if options is not None else _choices(name))
        if st.session_state.get(key) not in opts:  # e.g. a checkpoint name from the URL
            opts.append(st.session_state[key])
        st.selectbox(info.label, opts, format_func=format_func or info.option_name, **common)
    elif kind == "bool":
        st.checkbox(info.label, **common)
    elif kind == "int":
        lo, hi = ranges[name]
        if info.ui:
            st.slider(info.label, lo, hi, **common)
        else:
            st.number_input(info.label, min_value=lo, max_value=hi, step=int(info.step), **common)
    else:
        value = float(st.session_state.get(key, 0.0))
        if info.ui:
            lo, hi = float(info.ui[0]), float(info.ui[1])
            st.session_state[key] = min(hi, max(lo, value))
            st.slider(info.label, min_value=lo, max_value=hi, step=float(info.step), **common)
        else:
            st.session_state[key] = value
            st.number_input(
                info.label, min_value=0.0, step=float(info.step), format="%.4g", **common
            )


def _choices(name: str) -> list[str]:
    """The field's values in the order pages offer them: its named options, then the rest."""
    info = FIELDS[name]
    named = [value for value, _ in info.names]
    assert info.choices is not None
    return named + [e.value for e in info.choices if e.value not in named]
