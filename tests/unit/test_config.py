"""The experiment config (``reprog_core.config``): validation messages and stable cache keys."""

from __future__ import annotations

import pytest

from reprog_core.config import ConfigError, ExperimentConfig
from tests.configs import PIXEL


def test_config_validation_messages():
    with pytest.raises(ConfigError, match="depth must be between"):
        ExperimentConfig(depth=0)
    with pytest.raises(ConfigError, match="unknown data set"):
        ExperimentConfig(target="imagenet-21k")
    with pytest.raises(ConfigError, match="smaller than source_size"):
        ExperimentConfig(transform="vp", target_size=32, source_size=32)
    with pytest.raises(ConfigError, match="transform must be one of"):
        ExperimentConfig.from_dict({"transform": "zoom"})
    with pytest.raises(ConfigError, match="depth must be int"):
        ExperimentConfig.from_dict({"depth": "three"})


def test_cache_keys_are_stable_and_separate_source_from_fit():
    a = ExperimentConfig(**PIXEL)  # a source trained here: depth shapes it
    assert a.key("fit") == ExperimentConfig.from_dict(a.to_dict()).key("fit")
    b = a.replace(transform="vp")
    assert a.source_key() == b.source_key() and a.key("fit") != b.key("fit")
    assert a.source_key() != a.replace(depth=4).source_key()
    # backbone settings do not matter to a pixel model
    assert a.key("fit") == a.replace(backbone="RN50").key("fit")
