"""Memory estimates (``reprog_core.memory``): oversized requests are refused before anything is
allocated, with the size they need. The processes measured against them:
tests/integration/test_memory.py."""

from __future__ import annotations

import resource

import pytest

from reprog_core import memory, pipeline
from reprog_core.config import ExperimentConfig
from tests.configs import PIXEL

GIB = 2**30


@pytest.mark.parametrize(
    ("changes", "run", "stage"),
    [
        ({"source_size": 512, "depth": 6}, pipeline.run_source, "source training"),
        (
            {"transform": "fc", "source_size": 128, "target_size": 127},
            pipeline.run_fit,
            "reprogramming fit",
        ),
        ({"width": 1024, "depth": 12}, pipeline.run_source, "source training"),
    ],
)
def test_oversized_requests_are_refused_before_allocating(changes, run, stage, monkeypatch):
    cfg = ExperimentConfig(**{**PIXEL, **changes})  # sources trained here, pixel models
    tried: list[ExperimentConfig] = []
    monkeypatch.setattr(pipeline, "load_or_train_source", lambda c, **kw: tried.append(c) or 1 / 0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(memory.MemoryTooLarge) as err:
        run(cfg)
    assert tried == []  # refused, not tried
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB
    message = str(err.value)
    assert message.startswith(stage) and "needs about" in message and "GiB" in message
    assert "REPROG_MEMORY_BUDGET" in message and "\n" not in message
    assert err.value.needed_bytes > err.value.budget_bytes == memory.memory_budget()
    assert err.value.over_budget  # the backend reports it as OverBudget


def test_the_fc_example_counts_its_matrix():
    cfg = ExperimentConfig(**{**PIXEL, "transform": "fc", "source_size": 128}, target_size=127)
    est = memory.fit(cfg)
    w = 3 * 128 * 128 * 3 * 127 * 127 * 4  # the fc matrix alone: 9.5 GB
    assert est is not None and est.total > 4 * w


def test_a_raised_budget_lets_it_through(monkeypatch):
    cfg = ExperimentConfig(**PIXEL, width=1024, depth=12)
    need = memory.source_training(cfg).total
    monkeypatch.setenv("REPROG_MEMORY_BUDGET", str(need + 1))
    memory.check(cfg, "source")
    monkeypatch.setenv("REPROG_MEMORY_BUDGET", f"{need / GIB / 2:.1f}G")
    with pytest.raises(memory.MemoryTooLarge):
        memory.check(cfg, "source")
