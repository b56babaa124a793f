"""Config fields carry their metadata, and the CLI, the URL and the widgets are generated from it:
every field appears in each with the same name, label, range and choices."""

from __future__ import annotations

import pytest

from dashboard import state
from reprog_core import transforms
from reprog_core.cli import build_parser
from reprog_core.config import (
    FIELDS,
    LIMITS,
    ROW_FIELDS,
    SOURCE_FIELDS,
    ExperimentConfig,
    int_ranges,
)
from reprog_core.config_args import flag
from reprog_core.config_fields import field_kinds


def _fit_flags() -> dict[str, object]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {a.dest: a for a in sub.choices["fit"]._actions}


@pytest.mark.parametrize("name", list(FIELDS))
def test_every_field_has_a_flag_with_its_default_and_choices(name: str) -> None:
    action = _fit_flags()[name]
    info = FIELDS[name]
    assert flag(name) in action.option_strings
    # The flag's default is the field's own (weights: '', the model's default weights), and a
    # config built from it has the config's default value.
    assert action.default == ExperimentConfig.__dataclass_fields__[name].default
    assert getattr(ExperimentConfig(**{name: action.default}), name) == getattr(
        ExperimentConfig(), name
    )
    if info.choices is not None:
        assert list(action.choices) == [e.value for e in info.choices]
    assert info.label and (info.help or info.label) in action.help.replace("%%", "%")


def test_url_fields_labels_and_ranges_come_from_the_metadata() -> None:
    assert "data_root" not in state.URL_FIELDS  # a URL never names a server folder
    assert set(state.URL_FIELDS) == {n for n, i in FIELDS.items() if i.url}
    assert all(state.FIELD_LABELS[n] == FIELDS[n].label for n in FIELDS)
    ranges = state.ranges({"max_n_kernel": 128})
    assert ranges["depth"] == (1, 6)  # what the dashboard offers (FieldInfo.ui) ...
    assert LIMITS["depth"] == (1, 12)  # ... inside what the config accepts
    assert ranges["n_kernel"] == (2, 128)  # narrowed by the server cap FieldInfo.cap names


def test_source_fields_and_transform_names_come_from_the_metadata() -> None:
    assert SOURCE_FIELDS[0] == "source_family" and "seed" in SOURCE_FIELDS
    assert "transform" not in SOURCE_FIELDS  # a new transform never retrains the source
    assert dict(FIELDS["transform"].names) == {k: s.label for k, s in transforms.SPECS.items()}


def test_the_one_integer_list_syntax() -> None:
    assert int_ranges("1,2,5") == [(1, 1), (2, 2), (5, 5)]
    assert int_ranges("1-6, ,3") == [(1, 6), (3, 3)]
    assert int_ranges("-2") == [(-2, -2)]  # a leading '-' is a sign
    assert int_ranges("1-300000000") == [(1, 300000000)]  # nothing expanded here
    with pytest.raises(ValueError, match="'x' is not an integer"):
        int_ranges("1,x")


def test_every_float_field_declares_its_interval_and_help_shows_it() -> None:
    floats = [n for n, kind in field_kinds(ExperimentConfig).items() if kind is float]
    assert floats == ["lr", "rho"]
    flags = _fit_flags()
    for name in floats:
        interval = FIELDS[name].interval
        assert interval is not None and str(interval) in flags[name].help


def test_compare_columns_and_sweep_rows_come_from_the_metadata() -> None:
    # What Compare's columns may change (dashboard/views/compare_presets.VARY is this, in field
    # order; that page module imports the whole dashboard, so the metadata is read here).
    vary = [n for n, i in FIELDS.items() if i.vary]
    assert set(vary) == {
        "source_family",
        "weights",
        "depth",
        "source_data",
        "target",
        "transform",
        "mapping",
        "n_kernel",
        "kernel_form",
        "regime",
        "optimizer",
        "loss",
        "steps",
        "seed",
    }
    assert set(ROW_FIELDS) == {
        "source_family",
        "backbone",
        "weights",
        "source_data",
        "target",
        "depth",
        "width",
        "source_size",
        "transform",
        "mapping",
        "seed",
        "steps",
        "n_kernel",
        "kernel_form",
        "regime",
    }
    assert list(ROW_FIELDS) == [n for n in FIELDS if n in ROW_FIELDS]
