"""Experiment records for tests that need one, built by the real pipeline on a tiny config.

Figures, tables and sweep writers read ``ExperimentRecord.to_dict()`` shapes; a test that wrote
such a dict by hand would keep passing after a field was renamed while the pages went blank.
These come from ``pipeline.run_explore`` itself (about a second, once per test session).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from reprog_core import pipeline
from reprog_core.config import ExperimentConfig
from tests.configs import PIXEL

# The pixel pair (a tiny CNN), not the product's default pretrained model.
TINY = {
    **PIXEL,
    "source_size": 12,
    "target_size": 8,
    "depth": 1,
    "width": 4,
    "source_per_class": 10,
    "source_epochs": 1,
    "target_per_class": 4,
    "n_kernel": 16,
    "steps": 5,
    "eval_every": 5,
    "batch_size": 8,
}


@functools.lru_cache(maxsize=8)
def _explore(items: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return pipeline.run_explore(ExperimentConfig(**{**TINY, **dict(items)}), device="cpu")


def tiny_explore(**changes: Any) -> dict[str, Any]:
    """A fresh copy of the explore record of the tiny config with ``changes``."""
    return copy.deepcopy(_explore(tuple(sorted(changes.items()))))
