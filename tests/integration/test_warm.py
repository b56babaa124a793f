"""The dashboard's start-up warm-up: the default views are computed in the background."""

from __future__ import annotations

import threading
import time

import pytest

from dashboard import warm
from reprog_core.backend import Backend
from reprog_core.config import ExperimentConfig
from reprog_core.serving import TASKS
from tests.configs import PIXEL

TINY = ExperimentConfig(
    **PIXEL,
    source_per_class=10,
    source_epochs=1,
    target_per_class=10,
    n_kernel=8,
    steps=3,
    eval_every=3,
)


@pytest.fixture
def fresh_warm(monkeypatch):
    monkeypatch.setattr(warm, "_started", False)
    monkeypatch.setattr(warm, "_status", {"state": "off", "done": [], "errors": []})
    return warm


def test_defaults_warmed_are_the_default_pages_configs():
    items = warm.default_items()
    cfgs = [cfg for _, cfg, _ in items]
    assert cfgs[0] == ExperimentConfig()
    # Explore's default and the default Compare's other column: the same model, random weights.
    assert [c.weights for c in cfgs] == ["imagenet", "random"]
    assert cfgs[1] == ExperimentConfig(weights="random")


@pytest.mark.slow
def test_warm_up_computes_in_the_background_and_once(fresh_warm, monkeypatch, tmp_path):
    monkeypatch.setenv(warm.ENV, "1")
    monkeypatch.setattr(
        warm, "default_items", lambda: [("explore", TINY, "tiny"), ("explore", TINY, "again")]
    )
    # The what-ifs after the defaults (the presets' comparisons: pretrained models, minutes each
    # on a CPU), here one tiny what-if.
    what_if = TINY.replace(transform="vp")
    monkeypatch.setattr(warm, "what_if_items", lambda: [("explore", what_if, "tiny what-if")])
    demo_ran, release = threading.Event(), threading.Event()

    def demo() -> None:  # held until released: the warm-up cannot be done before that
        demo_ran.set()
        release.wait(60)

    backend = Backend(cache_dir=tmp_path / "cache", device="cpu", cpu_workers=1, tasks=TASKS)
    try:
        assert warm.start(backend, [demo])
        # The caller (the server) does not wait for it: start returned while it still runs.
        assert warm.status()["state"] == "running"
        assert not warm.start(backend, [])  # once per process
        release.set()
        deadline = time.monotonic() + 600
        while warm.status()["state"] != "done" and time.monotonic() < deadline:
            time.sleep(0.2)
        st = warm.status()
        assert st["state"] == "done" and not st["errors"], st
        assert st["done"][-1] == "tiny what-if"  # the what-ifs last, after the defaults
        assert demo_ran.is_set()
        assert backend.get("explore", TINY, {}) is not None  # the first visitor gets a hit
        assert backend.get("explore", what_if, {}) is not None
    finally:
        release.set()
        backend.close()


def test_warm_up_off(fresh_warm, monkeypatch):
    monkeypatch.setenv(warm.ENV, "0")
    assert not warm.start(object(), [])
    assert warm.status()["state"] == "off"
