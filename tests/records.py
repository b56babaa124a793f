"""Experiment records for tests that need one, built by the real pipeline on a tiny config.

Figures, cautions and sweep writers read typed ``ExperimentRecord``s (and the backend stores
their ``to_dict()``); a test that wrote such a record by hand would keep passing after a field was
renamed while the pages went blank. These come from ``pipeline.run_explore`` itself (about a
second, once per test session).
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from reprog_core import pipeline
from reprog_core.config import ExperimentConfig
from reprog_core.results import ExperimentRecord, json_safe
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
    """A fresh copy of the explore result of the tiny config with ``changes``, as the backend
    stores it (``ExperimentRecord.to_dict()``)."""
    return copy.deepcopy(_explore(tuple(sorted(changes.items()))))


def tiny_record(**changes: Any) -> ExperimentRecord:
    """The same result as the typed record the pages, figures and cautions read: parsed from
    strict JSON, as it leaves the backend (NaN stored as null)."""
    stored = json.loads(json.dumps(json_safe(tiny_explore(**changes)), allow_nan=False))
    return ExperimentRecord.from_dict(stored)
