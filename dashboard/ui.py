"""Streamlit pieces every page shares: the session and its URL, the config sidebar, drawing and
downloads. Requests to the backend and their progress are ``jobs.py``.

State model (one browser tab = one Streamlit session):

* ``st.session_state[CFG]`` holds the config as a dict: the one truth of the session. It is read
  from the URL on the session's first run (``start_session``), then changed only by the sidebar
  (and by buttons that load a whole config: ``set_config``).
* The sidebar is drawn once per run by the entry point (``app.py``), before the page, as
  Streamlit documents for widgets that several pages share: so each widget keeps its identity
  from page to page. Its widgets are keyed ``cfg.<field>`` and seeded from the session config
  when Streamlit dropped them (it drops the state of widgets a run does not draw: on the Learn
  page, or a field a page sets itself). A page reads the outcome with ``page_config``.
* At the end of every run the page writes the URL (``sync_url``): the config's non-default fields
  plus the page's own settings. So the address bar always reproduces the view.
* ``st.session_state[PAGE]`` is the page drawn in this run (set by ``app.py``); ``jobs.py`` files
  each request under the page that asked for it.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
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
from reprog_core.results import Record
from reprog_core.serving import default_backend

CFG = "_cfg"
PAGE = "_page"  # url_path of the page drawn in this run
CFG_PROBLEM = "_cfg_problem"  # why this run's sidebar settings do not go together (None: fine)
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


def _widget_value(name: str) -> Any:
    """Field ``name`` of the session config in its widget's form (the regime toggle holds True
    for 'kernel')."""
    value = st.session_state[CFG][name]
    return value == Regime.KERNEL.value if name == "regime" else value


def _seed_widget(name: str) -> None:
    # Streamlit forgets a widget's value on runs that do not draw it (the Learn page, the fields a
    # page sets itself); the session config keeps the value meanwhile.
    if _wkey(name) not in st.session_state:
        st.session_state[_wkey(name)] = _widget_value(name)


def _current(name: str) -> Any:
    """The value field ``name``'s widget will show in this run (before it is drawn)."""
    return st.session_state.get(_wkey(name), _widget_value(name))


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
    """The config widgets, drawn once per run by the entry point (``app.py``) before the page.

    Drawn there, each widget keeps its identity from page to page (a widget drawn inside a page
    is another widget on the next page), so a page switch loses nothing. ``fixed``: fields the
    page sets itself (field -> why), shown as that reason instead of a widget. ``fixed=None``:
    the page has no use for the config, and the sidebar holds none of it.

    Returns the config, or None when the widgets' combination is invalid (the reason is shown in
    the sidebar); either way the outcome is kept for the page (``page_config``).
    """
    st.session_state[CFG_PROBLEM] = None
    if fixed is None:
        return current_config()
    family = _current("source_family")
    options = _widget_options(family)  # before the fields: it may correct the weights
    drawn = [name for name in _shown_fields(family) if name not in fixed]
    with st.sidebar:
        st.header("Settings")
        st.caption("The address bar always holds this view: copy it to share or bookmark it.")
        for group, title in SIDEBAR_GROUPS:
            _sidebar_group(group, title, fields.names_in(group, drawn), options)
        for name, why in fixed.items():
            st.caption(f"{state.FIELD_LABELS.get(name, name)}: {why}")
        st.button("Reset to defaults", on_click=_reset, width="stretch")
    return _sidebar_config(drawn)


def _shown_fields(family: str) -> list[str]:
    """The fields that mean something for the current choices: a backbone for clip-cnn only,
    weights for the models that have named ones, no source training for a classifier used as
    it is, and ρ (the kernel regime's step size) for gradient descent only."""
    clip = family == "clip-cnn"
    pretrained = family in PRETRAINED_CLASSIFIERS
    hidden = set() if clip else {"backbone"}
    if not (clip or pretrained):
        hidden.add("weights")
    if pretrained:
        hidden |= set(SOURCE_TRAINING_FIELDS)
    if not (_current("regime") or _current("optimizer") == OptimizerKind.SGD.value):
        hidden.add("rho")
    return [name for name in state.URL_FIELDS if name not in hidden]


def _widget_options(family: str) -> dict[str, dict[str, Any]]:
    """What only this server knows (its data sets, encoders and weights), and the callbacks that
    keep the regime and the fit's choices together, as extra arguments of the fields' widgets."""
    datasets = data.list_datasets()
    options: dict[str, dict[str, Any]] = {
        "source_data": {"options": datasets, "format_func": _dataset_label},
        "target": {"options": datasets, "format_func": _dataset_label},
        "loss": {"on_change": SIDEBAR_REGIME.fit_changed},
        "optimizer": {"on_change": SIDEBAR_REGIME.fit_changed},
    }
    if family == "clip-cnn":
        options["backbone"] = {"options": _backbones(), "on_change": _encoder_changed}
    if family == "clip-cnn" or family in PRETRAINED_CLASSIFIERS:
        options["weights"] = _weights_options(
            _current("backbone") if family == "clip-cnn" else family
        )
    return options


def _weights_options(model: str) -> dict[str, Any]:
    """The weights ``model`` offers; a value it does not have (the family or encoder changed
    under it) becomes its first."""
    offered = [*_weight_tags(model), "random"]
    if _current("weights") not in offered:
        st.session_state[_wkey("weights")] = offered[0]
    return {"options": offered, "accept_new_options": model not in FIXED_WEIGHTS}


def _sidebar_group(
    group: str, title: str, names: Sequence[str], options: Mapping[str, Mapping[str, Any]]
) -> None:
    """One heading of the sidebar and its fields ('advanced' folded into an expander)."""
    with st.expander(title) if group == "advanced" else st.container():
        if group != "advanced":
            st.subheader(title)
        for name in names:
            if name == "regime":
                _regime_toggle(name)
            else:
                _field(name, **options.get(name, {}))


def _sidebar_config(drawn: Sequence[str]) -> ExperimentConfig | None:
    """The config the widgets hold (the session's for the rest), once checked; it becomes the
    session's config. None when it is invalid, with the reason in the sidebar."""
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
        st.session_state[CFG_PROBLEM] = msg
        st.sidebar.error(f"These settings do not go together: {msg}")
        return None
    if values != st.session_state[CFG]:
        st.session_state[CFG] = cfg.to_dict()
        st.session_state[URL_WARNINGS] = []  # the user has moved on from the URL's problems
    return cfg


def page_config() -> ExperimentConfig | None:
    """The config of this run's sidebar, for a page that computes from it. None when its
    settings do not go together: the reason is then said on the page too, where the results
    would be, and the page draws nothing that needs the config."""
    problem = st.session_state.get(CFG_PROBLEM)
    if problem:
        st.error(f"The settings in the sidebar do not go together: {problem}. Change one of them.")
        return None
    return current_config()


def _encoder_changed() -> None:
    """A new encoder: offer its own weights (the first named ones, else 'random')."""
    tags = _weight_tags(st.session_state[_wkey("backbone")])
    st.session_state[_wkey("weights")] = tags[0] if tags else "random"


def _regime_toggle(name: str) -> None:
    """The kernel regime as a toggle; the optimizer and loss under Advanced follow it
    (``SIDEBAR_REGIME``)."""
    _seed_widget(name)
    st.toggle(
        state.FIELD_LABELS[name],
        key=_wkey(name),
        help=FIELDS[name].help,
        on_change=SIDEBAR_REGIME.regime_changed,
    )


# --------------------------------------------------------------------------- regime coupling
KERNEL_FIT = (OptimizerKind.SGD.value, LossKind.MSE.value)


@dataclass(frozen=True)
class RegimeLink:
    """The regime, optimizer and loss widgets of one config (the sidebar, a Compare column),
    kept consistent: the kernel regime *is* full-batch sgd + mse (the config sets the same).

    Turning the regime on sets sgd + mse; turning it off from sgd + mse returns them to the
    defaults (Adam, cross-entropy), since sgd + mse would be the kernel regime again; choosing
    the optimizer and loss by hand sets the regime to whether they are sgd + mse. Both methods
    are widget callbacks: they run before the next script run.
    """

    key: Callable[[str], str]  # field name -> its widget's session-state key
    toggle: bool  # the regime is a toggle (True = kernel), else a select box of Regime values

    def _value(self, name: str) -> Any:
        return st.session_state.get(self.key(name), st.session_state[CFG][name])

    def regime_changed(self) -> None:
        regime = st.session_state.get(self.key("regime"))
        kernel = bool(regime) if self.toggle else regime == Regime.KERNEL.value
        if kernel:
            self._set_fit(*KERNEL_FIT)
        elif (self._value("optimizer"), self._value("loss")) == KERNEL_FIT:
            self._set_fit(state.DEFAULT.optimizer, state.DEFAULT.loss)

    def fit_changed(self) -> None:
        kernel = (self._value("optimizer"), self._value("loss")) == KERNEL_FIT
        regime = Regime.KERNEL.value if kernel else Regime.PRACTICAL.value
        st.session_state[self.key("regime")] = kernel if self.toggle else regime

    def _set_fit(self, optimizer: str, loss: str) -> None:
        st.session_state[self.key("optimizer")] = optimizer
        st.session_state[self.key("loss")] = loss


SIDEBAR_REGIME = RegimeLink(_wkey, toggle=True)


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

    Streamlit keeps a deferred download's callable for as long as the session lives (a closed tab
    for a while too), so the callable must pin no more than its file needs. A page's
    ``lambda: downloads.result_json(result)`` holds ``result`` in its closure, and the page
    module's whole namespace as its globals; this keeps only the globals it names.
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


def random_weights_banner(weights: str | None, config: ExperimentConfig | None = None) -> None:
    """The warning a randomly initialised source model gets before anything else on the page;
    what 'random' means depends on the model (``config``; without one, the short note)."""
    note = figures.weights_note(weights)
    if note:
        st.warning(figures.random_weights_text(config) if config else note, icon="⚠️")


CACHE_WORDS = {
    "hit": "from the cache",
    "joined": "shared with another session",
    "computed": "computed now",
}


def result_footer(record: Record, how: str, key: str) -> None:
    """Where a result came from (``how``: ``jobs.how``), its cache key and the code versions."""
    versions = ", ".join(f"{k} {v}" for k, v in record.versions.items())
    st.caption(f"Result {CACHE_WORDS.get(how, how)} · key `{key}` · {versions}")
