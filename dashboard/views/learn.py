"""Learn: the idea in plain words and formulas, with live demonstrations.

Two small ones run in this process (well under a second each, cached per setting; numbers from
``reprog_core.demos``); two pairs of real experiments come from the backend (the one-click
comparisons of ``reprog_core.presets``, computed by the server's warm-up). ``render()`` draws the
page, one function per section.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from dashboard import demos_cache, jobs, state, ui
from dashboard.views import compare_presets
from reprog_core import figures, presets

WIDTHS = [16, 32, 64, 128, 256, 512, 1024]
LABEL_NAMES = {
    "even": "spread evenly over all directions",
    "fast": "along the large eigenvalues",
    "slow": "along the small eigenvalues",
}
DEFAULTS: dict[str, Any] = {
    "learn.alpha": 1.0,
    "learn.labels": "even",
    "learn.lr": 1.0,
    "learn.gd_steps": 200,
    "learn.widths": [16, 64, 256, 1024],
    "learn.nn_depth": 2,
    "learn.seeds": 3,
}
Row = dict[str, Any]  # a ``pipeline.sweep_row``


def render() -> None:
    """The page, section by section; its URL holds the demonstrations' settings."""
    if ui.first_visit("learn"):
        _read_url()
    for k, v in DEFAULTS.items():
        st.session_state.setdefault(k, list(v) if isinstance(v, list) else v)
    st.title("Learn: why the kernel's spectrum matters")
    ui.show_url_warnings(st.session_state.get("learn.warnings", []))
    with st.sidebar:
        st.caption(
            "This page has no experiment settings. The other pages' settings are kept: go back "
            "and they are as you left them."
        )
    _reprogramming()
    _the_kernel()
    _eigenvalues_and_speed()
    _width()
    _real_models()
    _reading_the_pages()
    _what_the_paper_reports()
    ui.sync_url(ui.current_config(), _url_params())


# --------------------------------------------------------------------------- URL settings
def _read_url() -> None:
    """The demonstrations' settings from the URL, once per session (warnings kept to show)."""
    param = ui.page_param
    alpha, w1 = state.parse_number("alpha", param("alpha"), 0.0, 3.0, 1.0)
    labels, w2 = state.parse_choice("labels", param("labels"), list(LABEL_NAMES), "even")
    # Not `lr`: that is a config field, and a Learn URL carrying it started Explore fits at it.
    lr, w3 = state.parse_number("learn_eta", param("learn_eta"), 0.1, 1.9, 1.0)
    gd_steps, w4 = state.parse_number("gd_steps", param("gd_steps"), 20, 1000, 200, integer=True)
    widths, w5 = _read_widths()
    nn_depth, w6 = state.parse_number("nn_depth", param("nn_depth"), 1, 3, 2, integer=True)
    seeds, w7 = state.parse_number("seeds", param("seeds"), 1, 5, 3, integer=True)
    st.session_state.update(
        {
            "learn.alpha": float(alpha),
            "learn.labels": labels,
            "learn.lr": float(lr),
            "learn.gd_steps": int(gd_steps),
            "learn.widths": widths,
            "learn.nn_depth": int(nn_depth),
            "learn.seeds": int(seeds),
            "learn.warnings": w1 + w2 + w3 + w4 + w5 + w6 + w7,
        }
    )


def _read_widths() -> tuple[list[int], list[str]]:
    """The URL's widths, among those offered (``WIDTHS``)."""
    widths, warns = state.parse_int_list(
        "widths", ui.page_param("widths"), 1, 1024, DEFAULTS["learn.widths"]
    )
    if any(x not in WIDTHS for x in widths):
        warns.append(
            f"URL parameter `widths`: only {', '.join(map(str, WIDTHS))} are offered; "
            "the others were dropped."
        )
    return [x for x in widths if x in WIDTHS] or list(DEFAULTS["learn.widths"]), warns


def _url_params() -> dict[str, str]:
    """The demonstrations' settings as the page's URL parameters."""
    s = st.session_state
    return {
        "alpha": state.to_param(float(s["learn.alpha"])),
        "labels": str(s["learn.labels"]),
        "learn_eta": state.to_param(float(s["learn.lr"])),
        "gd_steps": str(s["learn.gd_steps"]),
        "widths": ",".join(map(str, sorted(s["learn.widths"]))),
        "nn_depth": str(s["learn.nn_depth"]),
        "seeds": str(s["learn.seeds"]),
    }


# --------------------------------------------------------------------------- 1 to 3: the idea
def _reprogramming() -> None:
    st.header("1 · Model reprogramming")
    st.markdown(
        "Training a large model for every new task is expensive. **Model reprogramming** reuses "
        "a model trained on one task (the **source**) for another task (the **target**) without "
        "changing it: a small **input transformation** a_θ turns a target image into an input "
        "the source model understands, and a fixed **label mapping** b reads the target's "
        "classes off the source's outputs. Only θ is trained."
    )
    st.latex(
        r"f_T(x) \;=\; b\big(f_S(a_\theta(x))\big), \qquad \text{only } \theta \text{ is trained}"
    )
    st.markdown(
        """
| transformation | what it does to a target image |
|---|---|
| `vp`, padding visual prompt | shrink the image into the middle, learn a frame of pixels around it|
| `vp-full`, watermark | resize the image, add a learned pattern over all of it |
| `fc`, fully connected | a learned linear map from the target image to a source input |
| `vp-fc` | `fc` for the middle, a learned frame around it |
| `none` | just resize: the source model as it is (the baseline) |
"""
    )


def _the_kernel() -> None:
    st.header("2 · The neural tangent kernel of a reprogrammed model")
    st.markdown(
        "Suppose one gradient step on θ lowers the error on an image x. How much does that step "
        "change the model's output on another image x′? To first order the answer is the "
        "**neural tangent kernel** (NTK), built from the Jacobian J of the outputs with respect "
        "to θ:"
    )
    st.latex(
        r"\Theta_T(x, x') \;=\; J(x)\,J(x')^\top, \qquad "
        r"J(x) = \frac{\partial f_T(x)}{\partial\theta}\in \mathbb{R}^{c_T \times P}"
    )
    st.markdown(
        "It is taken **with respect to θ only**: the source model is frozen. On N target images "
        "it is a matrix, in one of two forms, and every figure says which: the **full** form, "
        "(N·c_T)×(N·c_T), one row per image and class; or the **trace** form, N×N, summed over "
        "the c_T classes. The paper shows (its Proposition 1) that the two have equivalent "
        "spectra."
    )


def _eigenvalues_and_speed() -> None:
    """Section 3: the convergence demonstration, on a model linear in its parameters."""
    st.header("3 · Eigenvalues set how fast a fit can go")
    st.markdown(
        "Write the kernel as eigenvalues λ_i with eigenvectors v_i. In the NTK regime, gradient "
        "descent with step size η on the squared loss shrinks the error r on the training images "
        "along each eigenvector at its own rate:"
    )
    st.latex(r"r(t) \;=\; \sum_i e^{-\eta \lambda_i t}\, \langle v_i, r(0)\rangle\, v_i")
    st.markdown(
        "Large λ_i: that part of the error disappears in a few steps. Small λ_i: it lingers. "
        "λ_i = 0: it never goes away. So **λ_min** (the slowest direction), the **rank** (how "
        "many directions can be fitted at all) and where the labels lie (**alignment**) decide "
        "how fast and how far a reprogramming fit can go. Try it below on a model that is linear "
        "in its parameters, where the formula is exact: choose how fast the eigenvalues fall off "
        "(λ_i = i^−α) and where the labels lie."
    )
    alpha, labels, lr, gd_steps = _convergence_widgets()
    demo = demos_cache.convergence(float(alpha), str(labels), float(lr), int(gd_steps))
    m1, m2, m3 = st.columns(3)
    m1.metric(
        "steps to 1% of the initial loss",
        demo["steps_to_1pct"] if demo["steps_to_1pct"] is not None else f"more than {gd_steps}",
    )
    m2.metric("condition number λ_max/λ_min", figures.fmt(demo["condition_number"], 3))
    m3.metric("kernel-target alignment", figures.fmt(demo["alignment"], 3))
    ui.plot(figures.convergence_demo_figure(demo), "learn.conv")
    st.caption(
        f"{demo['n']} training points, {demo['n_params']} parameters. Black: the loss of real "
        "gradient descent. Dashed: the loss the eigenvalues predict. Dotted: the part of the "
        "loss along each third of the eigenvectors; the part along the small eigenvalues is the "
        "one that lingers. Try α = 0, then α = 2; then move the labels to the large or the small "
        "eigenvalues."
    )


def _convergence_widgets() -> tuple[float, str, float, int]:
    """The decay α, where the labels lie, the step size and the number of steps."""
    a, b, c, d = st.columns(4)
    alpha = a.slider(
        "decay α of the eigenvalues",
        0.0,
        3.0,
        step=0.25,
        key="learn.alpha",
        help="λ_i = i^(−α): α = 0 makes all eigenvalues equal",
    )
    labels = b.radio(
        "the labels lie", list(LABEL_NAMES), key="learn.labels", format_func=LABEL_NAMES.get
    )
    lr = c.slider(
        "step size η·λ_max",
        0.1,
        1.9,
        step=0.1,
        key="learn.lr",
        help="above 2 gradient descent diverges along the largest eigenvalue",
    )
    gd_steps = d.select_slider("steps", [20, 50, 100, 200, 500, 1000], key="learn.gd_steps")
    return float(alpha), str(labels), float(lr), int(gd_steps)


# --------------------------------------------------------------------------- 4: width
def _width() -> None:
    """Section 4: empirical kernels of random networks against the infinite-width one."""
    st.header("4 · Wide networks have a fixed kernel")
    st.markdown(
        "Why trust a linear picture of a neural network? Because as a network gets wider, its "
        "NTK at initialisation stops being random: it converges to a fixed, analytic kernel, and "
        "stays nearly constant during training. Below: ReLU networks of several widths, each "
        "initialised at random a few times, against the infinite-width kernel. Inputs lie on a "
        "circle, so the kernel between x₀ and x depends only on the angle γ between them."
    )
    a, b, c = st.columns([3, 1, 1])
    widths = sorted(a.multiselect("widths", WIDTHS, key="learn.widths"))
    nn_depth = b.selectbox("hidden layers", [1, 2, 3], key="learn.nn_depth")
    seeds = c.selectbox("initialisations per width", [1, 2, 3, 4, 5], key="learn.seeds")
    if not widths:
        st.info("Choose at least one width.")
        return
    wdemo = demos_cache.width(tuple(widths), int(nn_depth), int(seeds))
    ui.plot(figures.width_demo_figure(wdemo), "learn.width")
    st.caption(
        "Left: thin lines are the empirical kernels of individual random networks, the black "
        "line the analytic one. Right: the relative difference falls roughly like 1/√width "
        f"(dashed). Widest network: {figures.fmt(wdemo['n_params'][-1])} parameters."
    )


# --------------------------------------------------------------------------- 5: real models
def _real_models() -> None:
    """Section 5: the paper's two claims, each one pair of real experiments (from the backend)."""
    st.header("5 · Two questions, answered on real models")
    st.markdown(
        "The paper's two claims, each shown by one pair of experiments computed here (and "
        "cached: the server computes them when it starts). **Which transformation?** The "
        "transformation's kernel decides. **Which source model?** Its quality decides."
    )
    waiting = _pair_demo("prompt-shape", _explain_prompts)
    waiting += _pair_demo("weights", _explain_weights)
    if st.session_state.pop("cmp.switch", False):  # an "Open on Compare" button was pressed
        ui.switch_to("compare")
    if waiting:
        jobs.watch(waiting)


def _pair_demo(key: str, explain: Callable[[list[Row]], str]) -> list[str]:
    """One one-click comparison, live: spectra overlaid, the numbers side by side, a sentence
    computed from them. Returns the keys still being computed."""
    comp = presets.comparison(key)
    assert comp is not None
    st.subheader(comp.label[0].upper() + comp.label[1:])
    reqs = [
        jobs.Request("explore", cfg, f"Learn: {comp.key}, {letter}")
        for letter, cfg in zip("AB", comp.configs()[:2])
    ]
    asked = st.session_state.setdefault("learn.asked", set())
    fetched = [jobs.fetch(r, start=r.key in asked) for r in reqs]
    records = [rec for rec in fetched if rec is not None]
    if len(records) < len(reqs):
        keys = [r.key for r in reqs]
        if any(k in asked for k in keys):
            return keys  # computing: the progress is drawn below
        _offer_to_compute(key, keys)
        return []
    dicts = [c.to_dict() for c in comp.configs()[:2]]
    diff = state.differing_fields(dicts)  # what tells the two apart, named in both labels
    labels = [
        f"{letter}: {', '.join(f'{f} {state.to_param(d[f])}' for f in diff)}"
        for letter, d in zip("AB", dicts)
    ]
    rows = [rec.sweep_row() for rec in records]
    ui.plot(
        figures.spectra_overlay_figure([rec.kernel for rec in records], labels),
        f"learn.{key}.spectra",
    )
    _pair_table(labels, rows)
    st.markdown(state.md_text(explain(rows), limit=2000))
    st.button(
        "Open this comparison on the Compare page",
        key=f"learn.open.{key}",
        on_click=compare_presets.apply,
        args=(key,),
    )
    return []


def _offer_to_compute(key: str, keys: list[str]) -> None:
    """A pair this server has not computed (it was started with WARM=0): one click computes it."""
    st.info(
        "These two experiments are not computed yet on this server (it computes them at "
        "start-up unless started with WARM=0).",
        icon="⏳",
    )
    st.button(
        "Compute them (a minute or two each on a laptop CPU)",
        key=f"learn.compute.{key}",
        on_click=lambda: st.session_state.setdefault("learn.asked", set()).update(keys),
    )


def _pair_table(labels: list[str], rows: list[Row]) -> None:
    st.dataframe(
        {
            "": labels,
            "target acc.": [figures.pct(r["target_test_acc"]) for r in rows],
            "baseline (none)": [figures.pct(r["baseline_test_acc"]) for r in rows],
            "kernel regression acc.": [figures.pct(r["regression_acc"]) for r in rows],
            "λ_min": [figures.fmt(r["lambda_min"], 3) for r in rows],
            "effective rank": [figures.fmt(r["effective_rank"], 3) for r in rows],
            "alignment": [figures.fmt(r["alignment"], 3) for r in rows],
            "input-independent share": [figures.pct(r["common_share"]) for r in rows],
        },
        hide_index=True,
        width="stretch",
    )


def _gain(r: Row) -> str:
    return f"{100 * (r['target_test_acc'] - r['baseline_test_acc']):+.0f} points"


def _explain_prompts(rows: list[Row]) -> str:
    vp, full = rows
    return (
        f"The border prompt's Jacobian is {figures.pct(vp['common_share'])} input-independent: "
        "it adds nearly the same change to every image, so it moves every image's outputs the "
        f"same way, and its kernel has few directions (effective rank "
        f"{figures.fmt(vp['effective_rank'], 3)}). The full-image prompt's share is "
        f"{figures.pct(full['common_share'])} (effective rank "
        f"{figures.fmt(full['effective_rank'], 3)}). Before any training, that predicts which "
        f"one can separate the classes; the fits agree: {_gain(vp)} against {_gain(full)} over "
        "the baseline."
    )


def _explain_weights(rows: list[Row]) -> str:
    pre, rnd = rows
    return (
        f"Same network, same prompt, same budget: with ImageNet weights the fit gains {_gain(pre)} "
        f"over its baseline, with random weights {_gain(rnd)} (a random network is not beyond "
        "reprogramming: other random seeds, or twice the steps, gain about 20 points; the "
        "pretrained one gains 30 to 60). The kernel's own regression accuracy ranks "
        f"them the same way ({figures.pct(pre['regression_acc'])} against "
        f"{figures.pct(rnd['regression_acc'])}), and so does λ_min "
        f"({figures.fmt(pre['lambda_min'], 3)} against {figures.fmt(rnd['lambda_min'], 3)}). "
        "Summaries of the spectrum's shape need not: compare the effective ranks and the "
        "alignments above. A kernel can be well spread over many directions and still carry "
        "nothing about the target task."
    )


# --------------------------------------------------------------------------- 6 and 7: reading
def _reading_the_pages() -> None:
    st.header("6 · Reading the other pages")
    st.markdown(
        """
- **Spectrum**: the eigenvalues of the target NTK from largest to smallest, on a log scale.
  Grey crosses are numerically zero (below the stated tolerance): directions no fit can move.
- **λ_min**: the smallest eigenvalue above the tolerance. Larger: the slowest direction is
  fitted faster.
- **Rank**: how many eigenvalues are above the tolerance. A `vp` prompt on a 32×32 source with a
  28×28 target has only 3·(32²−28²) = 720 parameters, so its full kernel has rank at most 720
  however many images you use.
- **Effective rank**: how many directions carry the kernel's weight (exp of the entropy of the
  normalised eigenvalues).
- **Alignment**: how much of the labels lies along the large eigenvalues (near 1: most).
- **Σ|Θ(x,x′)|/N**: the term in the paper's bound on the generalisation gap.
- **NTK-predicted loss**: the formula of section 3 applied to the real (full) kernel. It
  describes full-batch gradient descent on squared loss while the kernel stays put, so it is
  drawn only in the **kernel regime** (the sidebar's switch; step size η = ρ·N/λ_max), and only
  up to the step where it stops agreeing with the measured loss; a dotted line marks that step
  and names the **kernel drift** ‖Θ(θ_t) − Θ(θ₀)‖_F / ‖Θ(θ₀)‖_F that explains it. A practical
  fit (Adam, cross-entropy, minibatches) gets no prediction on its axes, only the time scales
  its spectrum implies.
- **RANDOM weights**: the control for a pretrained model. The default EfficientNet-Lite0 with
  random weights is the same network with its seeded initialisation (and its BatchNorm statistics
  as initialised), knowing nothing; without a network, no pretrained CLIP weights can be
  downloaded here, so a `clip-cnn` source on an open_clip tower is random unless you supply a
  checkpoint. Random weights are marked in red on every figure.
- **Kernel regression accuracy**: ridge regression with the kernel itself from the N kernel
  samples to as many held-out images: whether the kernel carries the target task at all.
- **Input-independent share**: ‖mean_i J_i‖² / mean_i ‖J_i‖², how much of what θ does to the
  outputs is the same for every image.
"""
    )


def _what_the_paper_reports() -> None:
    st.header("7 · What the paper reports")
    st.markdown(
        "Chung et al., *Model Reprogramming Demystified: A Neural Tangent Kernel Perspective* "
        "(arXiv 2506.00620, 2025). With CLIP as a frozen feature extractor and a trainable CNN of "
        "depth 1 to 6 on top: source accuracy rises with depth, target accuracy rises with "
        "source depth, and the padding prompt beats the fully connected transformation. The "
        "**Depth sweep** page runs that experiment on the data sets available here, with a "
        "frozen ImageNet encoder in CLIP's place; `docs/results.md` says which of the claims "
        "held on this machine and which did not."
    )
