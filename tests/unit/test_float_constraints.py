"""A float config field is validated from its declared ``Interval`` alone, the same way at every
boundary: the config, the CLI flags, the URL and the sidebar widget (issue 16).

The table covers the real float fields (``lr``: [0, largest float32], 0 meaning the default;
``rho``: (0, 2), the stability limit) and a throwaway ``weight_decay`` in [0, 1) on a scratch
subclass of ``ExperimentConfig``: a field nobody wrote CLI, URL or widget code for.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import state
from reprog_core.cli import main
from reprog_core.config import ConfigError, ExperimentConfig, Interval
from reprog_core.config_args import add_config_flags, config_from_args, flag
from reprog_core.config_fields import _f, field_table


@dataclass(frozen=True)
class Scratch(ExperimentConfig):
    """``ExperimentConfig`` with one more float field, declared like the real ones."""

    weight_decay: float = _f(
        0.0,
        "weight decay",
        help="A throwaway float field: only its metadata says what it accepts.",
        interval=Interval(0, 1, closed="left"),
        step=0.05,
        role="fit",
    )


# field -> (config class, a valid value, the default it falls back to)
FLOATS = {
    "lr": (ExperimentConfig, "0.3", 0.0),
    "rho": (ExperimentConfig, "0.5", 0.1),
    "weight_decay": (Scratch, "0.25", 0.0),
}
BAD = ["nan", "inf", "-inf", "-1", "1e308", "abc"]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("name", list(FLOATS))
def test_the_config_refuses_what_the_interval_excludes(name: str, bad: str) -> None:
    cls, _, _ = FLOATS[name]
    with pytest.raises(ConfigError, match=f"^{name} must be"):
        cls.from_dict({name: bad})
    for value in (True, bad, 10**400):  # a bool, a string, an int beyond any float
        with pytest.raises(ConfigError, match=f"^{name} must be"):
            cls(**{name: value})


@pytest.mark.parametrize("name", list(FLOATS))
def test_the_config_takes_a_value_inside(name: str) -> None:
    cls, good, default = FLOATS[name]
    assert getattr(cls.from_dict({name: good}), name) == float(good)
    assert getattr(cls(), name) == default


def test_the_ends_of_an_interval() -> None:
    assert ExperimentConfig(lr=0.0).lr == 0.0  # 0 means the transform's default
    assert ExperimentConfig(lr=1e30).lr == 1e30  # past the stability limit: a thing to show
    assert Scratch(weight_decay=0.0).weight_decay == 0.0  # closed on the left ...
    with pytest.raises(ConfigError, match=r"weight_decay must be a finite number in \[0, 1\)"):
        Scratch(weight_decay=1.0)  # ... open on the right
    for rho in (0.0, 2.0):
        with pytest.raises(ConfigError, match="stability limit"):
            ExperimentConfig(rho=rho)


def test_a_float_field_without_an_interval_is_refused_at_once() -> None:
    @dataclass(frozen=True)
    class Unbounded(ExperimentConfig):
        momentum: float = _f(0.9, "momentum")

    with pytest.raises(TypeError, match="momentum: a float field must declare its interval"):
        field_table(Unbounded)


# ------------------------------------------------------------------------------ CLI
def _parse(cls: type[ExperimentConfig], name: str, text: str) -> ExperimentConfig:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_config_flags(p, config=cls)
    return config_from_args(p.parse_args([f"{flag(name, cls)}={text}"]), config=cls)


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("name", list(FLOATS))
def test_the_cli_refuses_a_flag_outside_the_interval(name: str, bad: str) -> None:
    cls, _, _ = FLOATS[name]
    if bad == "abc":  # not a number: argparse's own error, one line in the real CLI
        with pytest.raises(argparse.ArgumentError, match="invalid float value"):
            _parse(cls, name, bad)
    else:
        with pytest.raises(ConfigError, match=f"^{name} must be"):
            _parse(cls, name, bad)


@pytest.mark.parametrize("name", list(FLOATS))
def test_the_cli_takes_a_flag_inside_and_says_the_interval_in_its_help(name: str) -> None:
    cls, good, _ = FLOATS[name]
    assert getattr(_parse(cls, name, good), name) == float(good)
    p = argparse.ArgumentParser()
    add_config_flags(p, config=cls)
    (action,) = [a for a in p._actions if a.dest == name]
    assert str(field_table(cls)[name].interval) in action.help


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("name", ["lr", "rho"])
def test_the_real_cli_exits_2_with_one_line(name: str, bad: str, capsys) -> None:
    try:
        rc = main(["fit", f"{flag(name)}={bad}", "--steps", "1"])
    except SystemExit as exc:  # argparse: not a number
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert f"argument {flag(name)}: invalid float value" in err or f"error: {name} must be" in err


# ------------------------------------------------------------------------------ URL
@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("name", list(FLOATS))
def test_the_url_warns_and_falls_back_to_the_default(name: str, bad: str) -> None:
    cls, _, default = FLOATS[name]
    cfg, warnings = state.parse_config({name: bad}, config=cls)
    assert getattr(cfg, name) == default
    assert len(warnings) == 1 and f"`{name}={bad}`" in warnings[0]


@pytest.mark.parametrize("name", list(FLOATS))
def test_the_url_takes_a_value_inside(name: str) -> None:
    cls, good, _ = FLOATS[name]
    cfg, warnings = state.parse_config({name: good}, config=cls)
    assert getattr(cfg, name) == float(good) and warnings == []


def test_the_url_refuses_what_the_dashboard_does_not_offer() -> None:
    # rho's slider offers 0.01 to 1 (FieldInfo.ui): 1.5 is a valid rho, but the widget could not
    # show it, so the URL says so instead of letting the slider clamp it silently.
    cfg, warnings = state.parse_config({"rho": "1.5"})
    assert cfg.rho == 0.1 and "the dashboard offers 0.01 to 1, got 1.5" in warnings[0]


# ------------------------------------------------------------------------------ widget
def test_the_widget_bounds_come_from_the_interval() -> None:
    floats = state.float_ranges(Scratch)
    assert floats["weight_decay"] == (0.0, math.nextafter(1.0, 0.0))  # open end: the float below
    assert floats["lr"] == field_table(ExperimentConfig)["lr"].interval.bounds()
    assert floats["rho"] == (0.01, 1.0)  # narrowed to what the dashboard offers


def _widgets_app() -> None:
    import streamlit as st

    from dashboard import fields
    from reprog_core.config import ExperimentConfig
    from tests.unit.test_float_constraints import Scratch

    st.session_state.setdefault("wd", 5.0)  # outside [0, 1): brought inside before drawing
    st.session_state.setdefault("lr", 0.3)
    st.session_state.setdefault("rho", 0.1)
    fields.widget("weight_decay", "wd", {}, config=Scratch)
    fields.widget("lr", "lr", {}, config=ExperimentConfig)
    fields.widget("rho", "rho", {})


def test_the_widget_takes_min_and_max_from_the_interval() -> None:
    at = AppTest.from_function(_widgets_app).run(timeout=60)
    assert not at.exception
    wd, lr = at.number_input(key="wd"), at.number_input(key="lr")
    assert (wd.min, wd.max) == (0.0, math.nextafter(1.0, 0.0)) and wd.value < 1.0
    assert (lr.min, lr.max) == field_table(ExperimentConfig)["lr"].interval.bounds()
    rho = at.slider(key="rho")
    assert (rho.min, rho.max, rho.value) == (0.01, 1.0, 0.1)
