"""What the frozen source model sees: target images before and after the trained input
transformation a_θ, and the learned prompt."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reprog_core.figures.theme import TOP_PX, TRANSFORM_NAMES, title_layout
from reprog_core.results import FitResult


def image_to_uint8(image: Any) -> np.ndarray:
    """A 3xHxW (or HxW) nested list / array in [0, 1] -> an HxWx3 uint8 array for display."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 2:
        a = np.repeat(a[None], 3, axis=0)
    if a.ndim != 3:
        raise ValueError(f"expected a 3xHxW image, got shape {a.shape}")
    if a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.transpose(a, (1, 2, 0))
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return (np.clip(np.nan_to_num(a), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def transform_examples_figure(
    fit: FitResult, max_examples: int = 6, weights: str | None = None
) -> go.Figure:
    """Target images before and after a_θ, and the learned prompt.

    Top row: the target image resized to the source size; bottom row: what the frozen source model
    actually sees after the transformation; right: the prompt itself (vp, vp-full, vp-fc).
    """
    before = list(fit.examples_before)[:max_examples]
    after = list(fit.examples_after)[:max_examples]
    prompt = fit.prompt
    n = max(len(before), len(after), 1)
    cols = n + (1 if prompt is not None else 0)
    specs: list[list[dict[str, Any] | None]] = [[{} for _ in range(cols)] for _ in range(2)]
    titles = [f"target {i + 1}" for i in range(n)]
    if prompt is not None:
        specs[0][-1] = {"rowspan": 2}
        specs[1][-1] = None
        titles.append("learned prompt")
    titles += [f"after a_θ {i + 1}" for i in range(n)]
    fig = make_subplots(
        rows=2,
        cols=cols,
        specs=specs,
        subplot_titles=titles,
        horizontal_spacing=0.015,
        vertical_spacing=0.1,
    )
    for i, img in enumerate(before):
        fig.add_trace(go.Image(z=image_to_uint8(img), hoverinfo="skip"), row=1, col=i + 1)
    for i, img in enumerate(after):
        fig.add_trace(go.Image(z=image_to_uint8(img), hoverinfo="skip"), row=2, col=i + 1)
    if prompt is not None:
        fig.add_trace(go.Image(z=image_to_uint8(prompt), hoverinfo="skip"), row=1, col=cols)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    what = TRANSFORM_NAMES.get(fit.transform, fit.transform)
    weights = weights if weights is not None else fit.weights
    fig.update_layout(
        title=title_layout(
            "What the frozen source model sees",
            f"top: target images resized to the source size · bottom: after the trained "
            f"transformation ({what})"
            + (" · right: the learned prompt" if prompt is not None else ""),
            weights,
        ),
        template="plotly_white",
        height=380,
        margin={"l": 10, "r": 10, "t": TOP_PX, "b": 10},
    )
    return fig
