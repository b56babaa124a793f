"""The Learn page's demonstrations (``reprog_core.demos``) drawn: gradient descent against the
spectral prediction, and the empirical NTK approaching the infinite-width kernel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reprog_core.figures.theme import INK, MUTED, PALETTE, PREDICTION_COLOR, log_ticks

Demo = Mapping[str, Any]  # a demonstration's computed values (plain, never stored)


def convergence_demo_figure(demo: Demo) -> go.Figure:
    """``reprog_core.demos.spectrum_convergence`` output: the kernel's eigenvalues, and the loss of
    real gradient descent against the spectral prediction, split by eigen-direction."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("the kernel's eigenvalues", "squared loss during gradient descent"),
        column_widths=[0.38, 0.62],
        horizontal_spacing=0.1,
    )
    eig = np.asarray(demo["eigenvalues"], dtype=float)
    fig.add_trace(
        go.Scatter(
            x=np.arange(1, eig.size + 1),
            y=eig,
            mode="markers",
            name="eigenvalue λ_i",
            showlegend=False,
            marker={"color": PALETTE[0]},
        ),
        row=1,
        col=1,
    )
    steps = demo["step"]
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=demo["loss_measured"],
            mode="lines",
            name="measured (real GD)",
            line={"color": INK, "width": 3},
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=demo["loss_predicted"],
            mode="lines",
            name="predicted from the eigenvalues",
            line={"color": PREDICTION_COLOR, "width": 2, "dash": "dash"},
        ),
        row=1,
        col=2,
    )
    for j, (name, part) in enumerate(demo["loss_by_group"].items()):
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=part,
                mode="lines",
                name=f"part along {name}",
                line={"color": PALETTE[(j + 2) % len(PALETTE)], "width": 1.5, "dash": "dot"},
            ),
            row=1,
            col=2,
        )
    fig.update_yaxes(type="log", row=1, col=1, title="λ_i", **log_ticks(eig))
    losses = [demo["loss_measured"], demo["loss_predicted"], *demo["loss_by_group"].values()]
    fig.update_yaxes(type="log", row=1, col=2, title="loss", **log_ticks(*losses))
    fig.update_xaxes(title="index i", row=1, col=1)
    fig.update_xaxes(title="gradient-descent step", row=1, col=2)
    fig.update_layout(
        template="plotly_white",
        height=400,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "v", "x": 1.01, "y": 1},
    )
    return fig


def width_demo_figure(demo: Demo) -> go.Figure:
    """``reprog_core.demos.ntk_width_convergence`` output: Θ(x₀, x(γ)) along a circle of inputs,
    empirical at each width against the analytic infinite-width kernel, and the error vs width."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("NTK between x₀ and points on a circle", "relative error vs width"),
        column_widths=[0.6, 0.4],
        horizontal_spacing=0.1,
    )
    gamma = demo["angle"]
    widths = demo["widths"]
    for j, w in enumerate(widths):
        color = PALETTE[j % len(PALETTE)]
        for s, curve in enumerate(demo["empirical"][j]):
            fig.add_trace(
                go.Scatter(
                    x=gamma,
                    y=curve,
                    mode="lines",
                    name=f"width {w}",
                    legendgroup=str(w),
                    showlegend=s == 0,
                    line={"color": color, "width": 1},
                    opacity=0.75,
                ),
                row=1,
                col=1,
            )
    fig.add_trace(
        go.Scatter(
            x=gamma,
            y=demo["analytic"],
            mode="lines",
            name="analytic (infinite width)",
            line={"color": INK, "width": 3},
        ),
        row=1,
        col=1,
    )
    err = np.asarray(demo["error_mean"], dtype=float)
    fig.add_trace(
        go.Scatter(
            x=widths,
            y=err,
            mode="lines+markers",
            name="measured error",
            error_y={"type": "data", "array": demo["error_std"], "visible": True},
            line={"color": PALETTE[0]},
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    ref = err[0] * np.sqrt(widths[0] / np.asarray(widths, dtype=float))
    fig.add_trace(
        go.Scatter(
            x=widths, y=ref, mode="lines", name="∝ 1/√width", line={"color": MUTED, "dash": "dash"}
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title="angle γ between x₀ and x (radians)", row=1, col=1)
    fig.update_yaxes(title="Θ(x₀, x)", row=1, col=1)
    fig.update_xaxes(type="log", title="hidden width", tickvals=widths, row=1, col=2)
    fig.update_yaxes(
        type="log",
        title="‖Θ_emp − Θ‖_F / ‖Θ‖_F",
        row=1,
        col=2,
        **log_ticks(err, ref, err + np.asarray(demo["error_std"], dtype=float)),
    )
    fig.update_layout(
        template="plotly_white",
        height=420,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.2, "x": 0},
    )
    return fig
