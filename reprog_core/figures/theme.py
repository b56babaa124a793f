"""The house style every figure shares: colours and names, numbers for people, the title with its
subtitle, the random-weights marks, the legend under the plot, notes and level lines, log ticks.

A figure made with a randomly initialised backbone says so in its title and with a watermark and
a red note in the title row, because a random-weights result looks just like a pretrained one and
must never be mistaken for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from reprog_core import transforms
from reprog_core.config import ExperimentConfig

TOP_PX = 115  # room above the plot area: title, a two-line subtitle, subplot titles

# One colour and one name per transform, so that every page draws vp / fc / ... alike.
TRANSFORM_COLORS = {k: t.colour for k, t in transforms.SPECS.items()}
TRANSFORM_NAMES = {k: t.label for k, t in transforms.SPECS.items()}
PALETTE = ["#3b5bdb", "#e8590c", "#0ca678", "#ae3ec9", "#f59f00", "#1098ad", "#c2255c", "#5c940d"]
RANDOM_COLOR = "#c92a2a"
MUTED = "#868e96"
INK = "#1f2430"  # a reference curve: what is measured, or the limit others approach
PREDICTION_COLOR = "#e8590c"
ACCURACY_COLOR = "#0ca678"


# --------------------------------------------------------------------------- numbers for people
def fmt(value: Any, digits: int = 4) -> str:
    """A number for people: None/NaN as '—', large or tiny values in scientific notation."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def duration(seconds: Any) -> str:
    """A duration for people: '0.8 s', '46 s', '7 min 40 s', '2 h 05 min'; None/NaN as '—'."""
    try:
        x = float(seconds)
    except (TypeError, ValueError):
        return "—"
    if math.isnan(x) or x < 0:
        return "—"
    if x < 10:
        return f"{x:.1f} s"
    total = round(x)
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"


def pct(value: Any) -> str:
    """An accuracy in [0, 1] as a percentage."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * float(value):.1f}%"


# --------------------------------------------------------------------------- title and layout
def weights_note(weights: str | None) -> str | None:
    """A warning line for a randomly initialised pretrained part (an encoder or a whole
    classifier); None when there is nothing to warn."""
    if weights == "random":
        return "RANDOM weights: the source model was not pretrained"
    return None


def random_weights_text(config: ExperimentConfig) -> str:
    """What 'random weights' means for this config, in one paragraph (markdown)."""
    family, backbone = config.source_family, config.backbone
    model = family if family == "efficientnet-lite0" else backbone
    if model == "efficientnet-lite0":
        return (
            "**RANDOM weights**: the EfficientNet-Lite0 here has the architecture's seeded "
            "initialisation (timm's), *not* its ImageNet training, and its BatchNorm layers use "
            "their statistics as initialised (mean 0, variance 1; nothing re-estimated). This is "
            "the control for the pretrained model: the same network, no knowledge. Choose "
            "weights 'imagenet' for the pretrained model."
        )
    return (
        f"**The encoder {backbone} has RANDOM weights** (open_clip's seeded initialisation, not "
        "pretrained). Everything below describes a randomly initialised tower, not CLIP as "
        "trained by OpenAI. Choose a pretrained tag or a checkpoint under *weights* for the "
        "paper's setting."
    )


def _which(random_in: Sequence[str]) -> str:
    """': B' (or ': B, C') naming the configurations of an overlay that have random weights."""
    return f": {', '.join(random_in)}" if random_in else ""


def title_layout(
    text: str, subtitle: str, weights: str | None, random_in: Sequence[str] = ()
) -> dict[str, Any]:
    """The title (with 'RANDOM weights' in red when ``weights`` is 'random'; in an overlay of
    several configurations, ``random_in`` names those that have them) and its subtitle, at the
    top left."""
    if weights_note(weights):
        text = (
            f"{text} — <span style='color:{RANDOM_COLOR}'>RANDOM weights{_which(random_in)}</span>"
        )
    return {"text": text, "subtitle": {"text": subtitle}, "x": 0.01, "xanchor": "left"}


def random_banner(
    fig: go.Figure,
    weights: str | None,
    plot_height: float,
    top: int,
    random_in: Sequence[str] = (),
) -> None:
    """A large translucent 'RANDOM WEIGHTS' watermark across the plot area and a red note at the
    right of the title row: both survive cropping, screenshots and HTML export, and neither hides
    data. In an overlay, ``random_in`` names the configurations with random weights."""
    note = weights_note(weights)
    if not note:
        return
    if random_in:
        note = f"RANDOM weights in {', '.join(random_in)}: not pretrained"
    fig.add_annotation(
        text=f"RANDOM WEIGHTS{_which(random_in)}",
        name="random-weights-watermark",
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        textangle=-12,
        opacity=0.13,
        font={"color": RANDOM_COLOR, "size": 64},
    )
    fig.add_annotation(
        text=f"⚠ {note}",
        xref="paper",
        yref="paper",
        x=1,
        y=1 + (top - 14) / max(plot_height, 1),
        xanchor="right",
        yanchor="top",
        showarrow=False,
        font={"color": "white", "size": 12},
        bgcolor=RANDOM_COLOR,
        borderpad=4,
    )


def below_px(height: int, bottom: int, px: float, top: int = TOP_PX) -> float:
    """Paper y coordinate ``px`` pixels under the plot area (plotly places legends and notes in
    fractions of the plot area, which changes with the figure's height)."""
    return -px / max(height - top - bottom, 1)


def base_layout(
    fig: go.Figure,
    height: int,
    bottom: int = 110,
    legend_px: float = 52,
    vertical_legend: bool = False,
    weights: str | None = None,
    top: int = TOP_PX,
    right: int = 20,
    random_in: Sequence[str] = (),
) -> go.Figure:
    """Shared look: title and subtitle on top, the legend under the x axis title, and the
    random-weights marks when ``weights`` is 'random' (naming ``random_in`` in an overlay)."""
    random_banner(fig, weights, height - top - bottom, top, random_in)
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 70, "r": right, "t": top, "b": bottom},
        legend={
            "orientation": "v" if vertical_legend else "h",
            "yanchor": "top",
            "y": below_px(height, bottom, legend_px, top),
            "xanchor": "left",
            "x": 0,
        },
        hovermode="closest",
    )
    return fig


# --------------------------------------------------------------------------- notes and lines
def level(
    fig: go.Figure, y: float, text: str, color: str, dash: str, where: str, log: bool = True
) -> None:
    """A horizontal line across the plot with a label at its right or left end.

    Not ``add_hline``'s own label: on a log axis plotly places annotations at log10(y), and
    add_hline passes y unchanged, which put the label decades away from its line.
    """
    fig.add_hline(y=y, line={"dash": dash, "color": color, "width": 1.2})
    fig.add_annotation(
        text=text,
        xref="paper",
        x=1 if where.endswith("right") else 0,
        xanchor="right" if where.endswith("right") else "left",
        y=math.log10(y) if log else y,
        yanchor="bottom" if where.startswith("top") else "top",
        showarrow=False,
        font={"color": color, "size": 12},
        bgcolor="rgba(255,255,255,0.7)",
    )


def footnote(fig: go.Figure, text: str, y: float = -0.22) -> None:
    fig.add_annotation(
        text=text,
        xref="paper",
        yref="paper",
        x=0,
        y=y,
        xanchor="left",
        yanchor="top",
        showarrow=False,
        align="left",
        font={"size": 11, "color": "#495057"},
    )


def wrap(text: str, width: int = 130) -> str:
    """Break a long note into lines for a plotly annotation (which never wraps by itself)."""
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    if line:
        lines.append(line)
    return "<br>".join(lines)


# --------------------------------------------------------------------------- log axes
def decade_dtick(fig: go.Figure) -> int | str | None:
    """One tick per decade when the data span two decades or more (plotly otherwise labels the
    2s and 5s in between, which crowds a spectrum); None leaves plotly's choice."""
    ys = [np.asarray(t.y, dtype=float) for t in fig.data if getattr(t, "y", None) is not None]
    v = np.concatenate(ys) if ys else np.array([])
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return None
    # Under two decades: label 2 and 5 between the powers of ten, not every digit.
    return 1 if np.log10(v.max() / v.min()) >= 2 else "D2"


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def log_ticks(*values: Any) -> dict[str, Any]:
    """Tick positions and labels for a log axis over ``values``, every one labelled in full.

    Plotly's own log ticks label the 2s and 5s between the powers of ten with a bare small digit,
    which reads as stray numbers. Here: one tick per decade (thinned to at most 8) when the data
    span 1.5 decades or more; otherwise 1, 2 and 5 times each power of ten, each written out.
    """
    arrays = [np.asarray(v, dtype=float).ravel() for v in values]
    v = np.concatenate(arrays) if arrays else np.array([])
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return {"exponentformat": "power"}
    lo, hi = math.floor(math.log10(v.min())), math.ceil(math.log10(v.max()))
    if math.log10(v.max() / v.min()) >= 1.5:
        step = max(1, math.ceil((hi - lo + 1) / 8))
        ticks = [10.0**e for e in range(lo, hi + 1, step)]
    else:
        ticks = [m * 10.0**e for e in range(lo, hi + 1) for m in (1, 2, 5)]
        ticks = [t for t in ticks if v.min() / 2 <= t <= v.max() * 2]

    def label(t: float) -> str:
        e = math.floor(math.log10(t) + 1e-9)
        m = round(t / 10.0**e)
        if -2 <= e <= 3:
            return f"{t:g}"
        power = f"10{str(e).translate(_SUPERSCRIPT)}"
        return power if m == 1 else f"{m}×{power}"

    return {"tickvals": ticks, "ticktext": [label(t) for t in ticks], "minor": {"showgrid": False}}


def to_standalone_html(fig: go.Figure) -> str:
    """A figure as one self-contained HTML page (plotly.js inlined, works offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)
