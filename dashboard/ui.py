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

from dashboard import fields, state
from reprog_core import data, figures
from reprog_core.config import (
    FIELDS,
    FIXED_WEIGHTS,
    PRETRAINED_CLASSIFIERS,
    SOURCE_TRAINING_FIELDS,
    ConfigError,
    ExperimentConfig,
    LossKind,
    OptimizerKind,
    Regime,
)
from reprog_core.serving import default_backend

CFG = "_cfg"
PAGE = "_page"  # url_path of the page drawn in this run
PAGE_CHANGED = "_page_changed"  # True on the first run of a page after another one
URL_WARNINGS = "_url_warnings"
PAGES = "_pages"  # url_path -> st.Page of this run (set by app.py)

# Labels, tooltips, ranges and option names of the config fields: ``config.FIELDS`` (FieldInfo);
# the widgets themselves: ``dashboard/fields.py``.


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


def switch_to(url_path: str) -> None:
    """Go to the page at ``url_path`` (its config and settings come along in the session)."""
    page = st.session_state.get(PAGES, {}).get(url_path)
    if page is not None:
        st.switch_page(page)


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


def _current(name: str) -> Any:
    """The value field ``name``'s widget will show in this run (before it is drawn)."""
    if _wkey(name) not in st.session_state or st.session_state.get(PAGE_CHANGED, False):
        return st.session_state[CFG][name]
    return st.session_state[_wkey(name)]


def _field(name: str, **kw: Any) -> None:
    """Config field ``name`` as its widget (``fields.widget``), seeded from the session config."""
    _seed_widget(name)
    fields.widget(name, _wkey(name), allowed_ranges(), **kw)


def _dataset_label(name: str) -> str:
    spec = data.dataset_spec(name)
    suffix = "" if spec.offline else " (needs a local copy)"
    return f"{name}{suffix}"


@st.cache_resource(show_spinner="Loading the list of encoders ...")
def _backbones() -> list[str]:
    from reprog_core.source_model.encoders import list_encoders

    return list_encoders()


@st.cache_resource(show_spinner=False, max_entries=16)
def _weight_tags(name: str) -> list[str]:
    """The named weights of model ``name`` besides 'random': 'imagenet' for the EfficientNet;
    an open_clip encoder's tags, then the checkpoints of the operator's weights folder."""
    from reprog_core.config import FIXED_WEIGHTS
    from reprog_core.source_model.clip import list_named_checkpoints
    from reprog_core.source_model.encoders import encoder_weight_tags

    if name in FIXED_WEIGHTS:
        return [w for w in FIXED_WEIGHTS[name] if w != "random"]
    try:
        return [*encoder_weight_tags(name), *list_named_checkpoints()]
    except Exception:  # an unknown backbone name: the sidebar still offers 'random'
        return []


SIDEBAR_GROUPS = (  # FieldInfo.group -> the sidebar's heading; 'advanced' is folded away
    ("source", "Source model f_S (frozen)"),
    ("target", "Target task"),
    ("fit", "Kernel and fit"),
    ("advanced", "Advanced"),
)


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
    family = _current("source_family")
    clip = family == "clip-cnn"
    pretrained = family in PRETRAINED_CLASSIFIERS  # used as it is: no source training fields
    regime = _current("regime")  # the toggle's True/False, or the config's value
    sgd = regime in (True, Regime.KERNEL.value) or _current("optimizer") == OptimizerKind.SGD.value
    # What only this server knows, and what changes together (the regime and the fit's choices).
    special: dict[str, dict[str, Any]] = {
        "source_data": {"options": datasets, "format_func": _dataset_label},
        "target": {"options": datasets, "format_func": _dataset_label},
        "loss": {"on_change": _fit_choice_changed},
        "optimizer": {"on_change": _fit_choice_changed},
    }
    if clip or pretrained:
        model = _current("backbone") if clip else family
        tags = _weight_tags(model)
        special["weights"] = {
            "options": [*tags, "random"],
            "accept_new_options": model not in FIXED_WEIGHTS,
        }
        if _current("weights") not in special["weights"]["options"]:
            # the family or encoder changed under weights it does not have: take its first
            st.session_state[_wkey("weights")] = special["weights"]["options"][0]
    if clip:
        special["backbone"] = {"options": _backbones(), "on_change": _encoder_changed}
    hidden = set() if clip else {"backbone"}
    if not (clip or pretrained):
        hidden.add("weights")
    if pretrained:
        hidden |= set(SOURCE_TRAINING_FIELDS)
    if not sgd:
        hidden.add("rho")
    shown = [name for name in state.URL_FIELDS if name not in hidden]
    with sb:
        st.header("Settings")
        st.caption("The address bar always holds this view: copy it to share or bookmark it.")
        for group, title in SIDEBAR_GROUPS:
            with st.expander(title) if group == "advanced" else st.container():
                if group != "advanced":
                    st.subheader(title)
                for name in fields.names_in(group, shown):
                    if name == "regime":
                        draw(name, _regime_toggle)
                    else:
                        draw(name, _field, **special.get(name, {}))
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


def _encoder_changed() -> None:
    """A new encoder: offer its own weights (the first named ones, else 'random')."""
    tags = _weight_tags(st.session_state[_wkey("backbone")])
    st.session_state[_wkey("weights")] = tags[0] if tags else "random"


def _regime_toggle(name: str) -> None:
    """The kernel regime as a toggle. It sets optimizer sgd and loss mse (the config does the
    same), so the Advanced selectors follow it, and turning it off returns them to Adam and
    cross-entropy (sgd + mse *is* the kernel regime)."""
    key = _wkey(name)
    if key not in st.session_state or st.session_state.get(PAGE_CHANGED, False):
        st.session_state[key] = st.session_state[CFG][name] == Regime.KERNEL.value
    st.toggle(state.FIELD_LABELS[name], key=key, help=FIELDS[name].help, on_change=_regime_changed)


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


def _reset() -> None:
    set_config(state.DEFAULT)


def set_config(cfg: ExperimentConfig) -> None:
    """Make ``cfg`` the session's config (the sidebar's widgets are re-seeded from it)."""
    st.session_state[CFG] = cfg.to_dict()
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


def random_weights_banner(weights: str | None, config: Mapping[str, Any] | None = None) -> None:
    if figures.weights_note(weights):
        st.warning(figures.random_weights_text(config or {}), icon="⚠️")


def result_footer(result: Mapping[str, Any]) -> None:
    how = {
        "hit": "from the cache",
        "joined": "shared with another session",
        "computed": "computed now",
    }.get(str(result.get("cache")), str(result.get("cache")))
    versions = ", ".join(f"{k} {v}" for k, v in (result.get("versions") or {}).items())
    st.caption(f"Result {how} · key `{result.get('key')}` · {versions}")
