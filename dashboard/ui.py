"""Streamlit pieces every page shares: the session and its URL, the config sidebar, drawing and
downloads. Requests to the backend and their progress are ``jobs.py``.

State model (one browser tab = one Streamlit session):

* ``st.session_state[CFG]`` holds the config as a dict: the one truth of the session. It is read
  from the URL on the session's first run (``start_session``), then changed only by the sidebar.
  Sidebar widgets are keyed ``cfg.<field>`` and re-seeded from it whenever Streamlit dropped them
  (it drops the state of widgets a page does not draw, e.g. on the Learn page).
* At the end of every run the page writes the URL (``sync_url``): the config's non-default fields
  plus the page's own settings. So the address bar always reproduces the view.
* ``st.session_state[PAGE]`` is the page drawn in this run (set by ``app.py``); ``jobs.py`` files
  each request under the page that asked for it.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st

from dashboard import state
from reprog_core import data, figures
from reprog_core.config import (
    ConfigError,
    ExperimentConfig,
    KernelForm,
    LossKind,
    OptimizerKind,
    Regime,
)
from reprog_core.serving import default_backend

CFG = "_cfg"
PAGE = "_page"  # url_path of the page drawn in this run
PAGE_CHANGED = "_page_changed"  # True on the first run of a page after another one
URL_WARNINGS = "_url_warnings"

FAMILY_NAMES = {
    "cnn": "pixel CNN (cnn)",
    "mlp": "pixel MLP (mlp)",
    "clip-cnn": "CLIP tower + CNN head (clip-cnn)",
}
MAPPING_NAMES = {
    "identity": "fixed: first c_T source classes (identity)",
    "flm": "frequency label mapping (flm)",
    "ilm": "iterative label mapping (ilm)",
    "learned": "learned linear map (learned; beyond the paper)",
}
HELP = {
    "source_family": "The frozen source model f_S. Pixel models are cheap on a CPU; clip-cnn is "
    "the paper's setting: a frozen CLIP image tower feeding a trainable CNN head.",
    "weights": "How the CLIP tower is initialised: 'random', a pretrained tag (downloads where a "
    "network exists), or the name of a checkpoint in the server's weights folder (never a path). "
    "Random weights are flagged everywhere.",
    "depth": "Depth L of the source model (of the CNN head for clip-cnn). The paper varies it "
    "from 1 to 6.",
    "transform": "The input transformation a_θ, the only part that is trained.",
    "mapping": "The output label mapping b from source classes to target classes. The paper "
    "assumes a fixed map.",
    "n_kernel": "N: number of target training images the NTK is computed on.",
    "kernel_form": "trace: an N×N matrix summed over outputs. full: the (N·c_T)×(N·c_T) matrix.",
    "steps": "Gradient steps of the reprogramming fit.",
    "seed": "Seeds data subsets, initialisation and training.",
    "optimizer": "adam: minibatch Adam (practical). sgd: full-batch gradient descent on the "
    "kernel samples (what the NTK prediction models).",
    "loss": "ce: cross-entropy. mse: squared loss (what the NTK prediction models).",
    "lr": "0 means the default: Adam's per-transform rate, or for sgd η = ρ·N/λ_max of the "
    "full target NTK.",
    "regime": "Kernel regime: full-batch gradient descent on squared loss over the N kernel "
    "samples, with the step size from the spectrum, so the NTK prediction describes the fit; "
    "the page measures how long they agree and the kernel drift that makes them part. Off: the "
    "practical fit (optimizer and loss as set under Advanced), with no prediction on its axes.",
    "rho": "ρ = η·λ_max/N: the step size as a fraction of what the stiffest direction of the "
    "full target NTK allows (gradient descent diverges above 2). η = ρ·N/λ_max.",
}


# --------------------------------------------------------------------------- session and URL
def backend():
    """The process-wide backend: every session shares its cache, queue and workers."""
    return default_backend()


def allowed_ranges() -> dict[str, tuple[int, int]]:
    return state.ranges(backend().limits.to_dict())


def start_session(extra_keys: Iterable[str]) -> None:
    """On a session's first run, take the config from the URL (and keep the warnings)."""
    if CFG in st.session_state:
        return
    params = st.query_params.to_dict()
    cfg, warnings = state.parse_config(
        params, allowed_ranges=allowed_ranges(), extra_keys=extra_keys
    )
    st.session_state[CFG] = cfg.to_dict()
    st.session_state[URL_WARNINGS] = warnings


def first_visit(page: str) -> bool:
    """True once per session and page: the moment to read the page's own URL settings."""
    flag = f"_visited.{page}"
    if st.session_state.get(flag):
        return False
    st.session_state[flag] = True
    return True


def show_url_warnings(extra: Sequence[str] = ()) -> None:
    """The URL's problems, each naming its parameter; shown until the session changes a setting."""
    for msg in [*st.session_state.get(URL_WARNINGS, []), *extra]:
        st.warning(msg, icon="⚠️")


def current_config() -> ExperimentConfig:
    return ExperimentConfig.from_dict(st.session_state[CFG])


def sync_url(cfg: ExperimentConfig, page_params: Mapping[str, str] | None = None) -> None:
    """Make the address bar reproduce this view (written only when it changed)."""
    wanted = {**state.config_to_params(cfg), **(page_params or {})}
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def page_param(name: str) -> Any:
    """A page setting from the URL (None when absent)."""
    return st.query_params.get(name)


# --------------------------------------------------------------------------- sidebar
def _wkey(name: str) -> str:
    return f"cfg.{name}"


def _seed_widget(name: str) -> None:
    # Streamlit forgets a widget's value on runs that do not draw it, and treats the same key on
    # another page as a new widget; the session config keeps the value across both.
    if _wkey(name) not in st.session_state or st.session_state.get(PAGE_CHANGED, False):
        st.session_state[_wkey(name)] = st.session_state[CFG][name]


def _select(
    name: str, options: Sequence[Any], fmt: Callable[[Any], str] | None = None, **kw: Any
) -> None:
    _seed_widget(name)
    opts = list(options)
    if st.session_state[_wkey(name)] not in opts:  # e.g. a checkpoint path from the URL
        opts.append(st.session_state[_wkey(name)])
    st.selectbox(
        state.FIELD_LABELS[name],
        opts,
        key=_wkey(name),
        format_func=fmt or str,
        help=HELP.get(name),
        **kw,
    )


def _int(name: str, step: int = 1, **kw: Any) -> None:
    _seed_widget(name)
    lo, hi = allowed_ranges()[name]
    st.number_input(
        state.FIELD_LABELS[name],
        min_value=lo,
        max_value=hi,
        step=step,
        key=_wkey(name),
        help=HELP.get(name),
        **kw,
    )


def _dataset_label(name: str) -> str:
    spec = data.dataset_spec(name)
    suffix = "" if spec.offline else " (needs a local copy)"
    return f"{name}{suffix}"


@st.cache_resource(show_spinner="Loading the list of CLIP backbones ...")
def _backbones() -> list[str]:
    from reprog_core.source_model.clip import list_backbones

    return list_backbones()


@st.cache_resource(show_spinner=False, max_entries=16)
def _weight_tags(name: str) -> list[str]:
    from reprog_core.source_model.clip import list_named_checkpoints, list_weight_tags

    try:  # the tags, then the checkpoints of the operator's weights folder (by name)
        return [*list_weight_tags(name), *list_named_checkpoints()]
    except Exception:  # an unknown backbone name: the sidebar still offers 'random'
        return []


def config_sidebar(fixed: Mapping[str, str] | None = None) -> ExperimentConfig | None:
    """The config widgets. ``fixed``: fields this page sets itself (field -> why), not drawn.

    Returns the config, or None (with the reason shown) when the widgets' combination is invalid.
    """
    fixed = fixed or {}
    sb = st.sidebar
    drawn: list[str] = []

    def draw(name: str, fn: Callable[..., None], *args: Any, **kw: Any) -> None:
        if name in fixed:
            return
        fn(name, *args, **kw)
        drawn.append(name)

    datasets = data.list_datasets()
    with sb:
        st.header("Settings")
        st.caption("The address bar always holds this view: copy it to share or bookmark it.")
        st.subheader("Source model f_S (frozen)")
        draw("source_family", _select, list(FAMILY_NAMES), FAMILY_NAMES.get)
        if st.session_state.get(_wkey("source_family")) == "clip-cnn":
            draw("backbone", _select, _backbones())
            draw(
                "weights",
                _select,
                ["random", *_weight_tags(st.session_state[CFG]["backbone"])],
                accept_new_options=True,
            )
        draw("depth", _depth_slider)
        draw("source_data", _select, datasets, _dataset_label)
        st.subheader("Target task")
        draw("target", _select, datasets, _dataset_label)
        draw("transform", _select, list(figures.TRANSFORM_NAMES), figures.TRANSFORM_NAMES.get)
        draw("mapping", _select, list(MAPPING_NAMES), MAPPING_NAMES.get)
        st.subheader("Kernel and fit")
        draw("n_kernel", _int, step=8)
        draw("kernel_form", _select, [k.value for k in KernelForm])
        draw("steps", _int, step=10)
        draw("seed", _int)
        draw("regime", _regime_toggle)
        if "regime" not in fixed and (
            st.session_state.get(_wkey("regime"))
            or st.session_state.get(_wkey("optimizer"), st.session_state[CFG]["optimizer"])
            == OptimizerKind.SGD.value
        ):
            draw("rho", _rho_slider)
        with st.expander("Advanced"):
            for name in (
                "width",
                "source_size",
                "target_size",
                "source_per_class",
                "source_epochs",
                "target_per_class",
                "batch_size",
                "eval_every",
            ):
                draw(name, _int)
            draw("ntk_init", _checkbox)
            draw("loss", _select, [k.value for k in LossKind], on_change=_fit_choice_changed)
            draw(
                "optimizer",
                _select,
                [k.value for k in OptimizerKind],
                on_change=_fit_choice_changed,
            )
            draw("lr", _float)
        for name, why in fixed.items():
            st.caption(f"{state.FIELD_LABELS.get(name, name)}: {why}")
        st.button("Reset to defaults", on_click=_reset, width="stretch")

    values = dict(st.session_state[CFG])
    for name in drawn:
        values[name] = st.session_state[_wkey(name)]
    if "regime" in drawn:  # a toggle: True/False for 'kernel'/'practical'
        values["regime"] = Regime.KERNEL.value if values["regime"] else Regime.PRACTICAL.value
    if isinstance(values.get("weights"), str):
        values["weights"] = values["weights"].strip() or "random"
    try:
        cfg = ExperimentConfig.from_dict(values)
        problem = state.server_problem(cfg)  # backbone/weights typed in: never a server path
    except ConfigError as exc:
        problem = str(exc)
    if problem:
        msg = state.public_message(problem)
        st.sidebar.error(f"These settings do not go together: {msg}")
        st.error(f"The settings in the sidebar do not go together: {msg}. Change one of them.")
        return None
    if values != st.session_state[CFG]:
        st.session_state[CFG] = cfg.to_dict()
        st.session_state[URL_WARNINGS] = []  # the user has moved on from the URL's problems
    return cfg


def _depth_slider(name: str) -> None:
    _seed_widget(name)
    lo, hi = allowed_ranges()[name]
    st.slider(state.FIELD_LABELS[name], lo, hi, key=_wkey(name), help=HELP.get(name))


def _checkbox(name: str) -> None:
    _seed_widget(name)
    st.checkbox(state.FIELD_LABELS[name], key=_wkey(name), help=HELP.get(name))


def _float(name: str) -> None:
    _seed_widget(name)
    st.session_state[_wkey(name)] = float(st.session_state[_wkey(name)])
    st.number_input(
        state.FIELD_LABELS[name],
        min_value=0.0,
        step=0.01,
        format="%.4g",
        key=_wkey(name),
        help=HELP.get(name),
    )


def _regime_toggle(name: str) -> None:
    """The kernel regime as a toggle. It sets optimizer sgd and loss mse (the config does the
    same), so the Advanced selectors follow it, and turning it off returns them to Adam and
    cross-entropy (sgd + mse *is* the kernel regime)."""
    key = _wkey(name)
    if key not in st.session_state or st.session_state.get(PAGE_CHANGED, False):
        st.session_state[key] = st.session_state[CFG][name] == Regime.KERNEL.value
    st.toggle(state.FIELD_LABELS[name], key=key, help=HELP.get(name), on_change=_regime_changed)


def _regime_changed() -> None:
    on = bool(st.session_state.get(_wkey("regime")))
    opt, loss = _wkey("optimizer"), _wkey("loss")
    if on:
        st.session_state[opt], st.session_state[loss] = OptimizerKind.SGD.value, LossKind.MSE.value
    elif (
        st.session_state.get(opt, st.session_state[CFG]["optimizer"]) == OptimizerKind.SGD.value
        and st.session_state.get(loss, st.session_state[CFG]["loss"]) == LossKind.MSE.value
    ):
        st.session_state[opt] = state.DEFAULT.optimizer
        st.session_state[loss] = state.DEFAULT.loss


def _fit_choice_changed() -> None:
    """Optimizer or loss changed under Advanced: sgd + mse is the kernel regime, anything else is
    not, so the toggle follows."""
    opt = st.session_state.get(_wkey("optimizer"), st.session_state[CFG]["optimizer"])
    loss = st.session_state.get(_wkey("loss"), st.session_state[CFG]["loss"])
    st.session_state[_wkey("regime")] = (
        opt == OptimizerKind.SGD.value and loss == LossKind.MSE.value
    )


def _rho_slider(name: str) -> None:
    _seed_widget(name)
    st.session_state[_wkey(name)] = min(1.0, max(0.01, float(st.session_state[_wkey(name)])))
    st.slider(
        state.FIELD_LABELS[name],
        min_value=0.01,
        max_value=1.0,
        step=0.01,
        key=_wkey(name),
        help=HELP.get(name),
    )


def _reset() -> None:
    st.session_state[CFG] = state.DEFAULT.to_dict()
    st.session_state[URL_WARNINGS] = []
    for name in state.URL_FIELDS:
        st.session_state.pop(_wkey(name), None)


# --------------------------------------------------------------------------- drawing helpers
def plot(fig: go.Figure, key: str) -> None:
    st.plotly_chart(
        fig,
        width="stretch",
        key=key,
        config={"displaylogo": False, "toImageButtonOptions": {"scale": 2}},
    )


def _detached(make: Callable[[], str]) -> Callable[[], str]:
    """``make`` with globals that hold only the names its code uses.

    A page's ``lambda: downloads.result_json(result)`` is defined at the page's top level, so its
    globals are the whole page namespace: every figure and result of that run. Streamlit keeps a
    deferred download's callable for as long as the session lives (a closed tab for a while
    too), so the callable must not pin all of that.
    """
    code = getattr(make, "__code__", None)
    if code is None or not isinstance(getattr(make, "__globals__", None), dict):
        return make
    g = make.__globals__
    slim = {n: g[n] for n in code.co_names if n in g}
    slim["__builtins__"] = g.get("__builtins__", __builtins__)
    return types.FunctionType(code, slim, make.__name__, make.__defaults__, make.__closure__)


def download(label: str, make: Callable[[], str], file_name: str, mime: str, key: str) -> None:
    """A download button whose file is built only when clicked (figures inline plotly.js, ~5 MB).

    ``make`` may use anything the page has; only the names it uses are kept (``_detached``).
    """
    st.download_button(
        label,
        data=_detached(make),
        file_name=file_name,
        mime=mime,
        key=key,
        on_click="ignore",
        width="stretch",
    )


def figure_download(label: str, fig: go.Figure, file_name: str, key: str) -> None:
    """A figure as a standalone HTML download. The figure is kept as its JSON (tens of kB), not
    as the figure object, until the session ends."""
    spec = fig.to_json()
    download(
        label,
        lambda: figures.to_standalone_html(pio.from_json(spec, skip_invalid=True)),
        file_name,
        "text/html",
        key,
    )


def random_weights_banner(weights: str | None) -> None:
    if figures.weights_note(weights):
        st.warning(
            "**The CLIP backbone has RANDOM weights** (not pretrained). Everything below describes "
            "a randomly initialised tower, not CLIP as trained by OpenAI. Choose a pretrained tag "
            "or a checkpoint file under *backbone weights* for the paper's setting.",
            icon="⚠️",
        )


def result_footer(result: Mapping[str, Any]) -> None:
    how = {
        "hit": "from the cache",
        "joined": "shared with another session",
        "computed": "computed now",
    }.get(str(result.get("cache")), str(result.get("cache")))
    versions = ", ".join(f"{k} {v}" for k, v in (result.get("versions") or {}).items())
    st.caption(f"Result {how} · key `{result.get('key')}` · {versions}")
