"""What a reader of a plotly figure sees, as one string, for tests that look for words in it."""

from __future__ import annotations

import plotly.graph_objects as go


def figure_text(fig: go.Figure) -> str:
    """Every piece of text a reader sees: title, subtitle, annotations, trace names, axis titles."""
    lay = fig.layout
    parts = [lay.title.text or "", lay.title.subtitle.text or ""]
    parts += [a.text or "" for a in lay.annotations]
    parts += [t.name or "" for t in fig.data]
    for ax in ("xaxis", "yaxis", "xaxis2", "yaxis2", "xaxis3", "yaxis3"):
        if ax in lay and lay[ax].title.text:
            parts.append(lay[ax].title.text)
    return " | ".join(parts)
