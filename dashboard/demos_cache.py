"""The Learn page's demonstrations, cached per setting in the server process.

They live here, not in the page script, so that the server's warm-up (``dashboard/warm.py``) can
compute the page's defaults before anyone opens it. Defaults match ``views/learn.py``.
"""

from __future__ import annotations

import streamlit as st

from reprog_core import demos

DEFAULT_CONVERGENCE = {"alpha": 1.0, "labels": "even", "step_size": 1.0, "steps": 200}
DEFAULT_WIDTH = {"widths": (16, 64, 256, 1024), "depth": 2, "seeds": 3}


@st.cache_data(show_spinner=False, max_entries=64)
def convergence(alpha: float, labels: str, step_size: float, steps: int) -> dict:
    return demos.spectrum_convergence(alpha=alpha, labels=labels, step_size=step_size, steps=steps)


@st.cache_data(show_spinner="Building networks and their kernels ...", max_entries=32)
def width(widths: tuple[int, ...], depth: int, seeds: int) -> dict:
    return demos.ntk_width_convergence(widths=widths, depth=depth, seeds=seeds)


def warm_convergence() -> None:
    convergence(**DEFAULT_CONVERGENCE)


def warm_width() -> None:
    width(**DEFAULT_WIDTH)


WARMERS = [warm_convergence, warm_width]
