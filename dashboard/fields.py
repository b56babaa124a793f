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

from dashboard import state
from reprog_core.config import FIELDS, ExperimentConfig
from reprog_core.config_fields import field_kinds, field_table


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
    config: type[ExperimentConfig] = ExperimentConfig,
    **kw: Any,
) -> None:
    """Draw config field ``name`` of ``config`` under session-state ``key`` (which holds its value).

    A field with choices (or ``options``) is a select box; a bool a checkbox; an integer a slider
    when the dashboard narrows its range (``FieldInfo.ui``, the depth) and a number box in
    ``ranges`` otherwise; a float a slider over its UI range, else a number box bounded by its
    declared interval (``state.float_ranges``: what the URL accepts too). A session value outside
    those bounds (the URL refuses one, but a preset or an older session may hold it) is brought
    inside before the widget is drawn: Streamlit refuses a value outside min and max.
    """
    info = field_table(config)[name]
    common: dict[str, Any] = {"key": key, "help": info.help or None, **kw}
    if on_change is not None:
        common.update(on_change=on_change, args=args)
    kind = field_kinds(config)[name]
    if options is not None or info.choices is not None:
        opts = list(options if options is not None else _choices(name, config))
        if st.session_state.get(key) not in opts:  # e.g. a checkpoint name from the URL
            opts.append(st.session_state[key])
        st.selectbox(info.label, opts, format_func=format_func or info.option_name, **common)
    elif kind is bool:
        st.checkbox(info.label, **common)
    elif kind is int:
        lo, hi = ranges[name]
        if info.ui:
            st.slider(info.label, lo, hi, **common)
        else:
            st.number_input(info.label, min_value=lo, max_value=hi, step=int(info.step), **common)
    else:
        flo, fhi = state.float_ranges(config)[name]
        value = float(st.session_state.get(key, config.__dataclass_fields__[name].default))
        if flo is not None:
            value = max(flo, value)
        st.session_state[key] = value if fhi is None else min(fhi, value)
        if info.ui:
            st.slider(info.label, min_value=flo, max_value=fhi, step=float(info.step), **common)
        else:
            box = {"min_value": flo, "max_value": fhi, "step": float(info.step), "format": "%.4g"}
            st.number_input(info.label, **box, **common)


def _choices(name: str, config: type[ExperimentConfig] = ExperimentConfig) -> list[str]:
    """The field's values in the order pages offer them: its named options, then the rest."""
    info = field_table(config)[name]
    named = [value for value, _ in info.names]
    assert info.choices is not None
    return named + [e.value for e in info.choices if e.value not in named]
