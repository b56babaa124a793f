"""Seeded builds are the same whatever else runs: the backend computes in threads of one process,
and the global RNGs are one per process (runtime.rng_lock).

Found while looking at the default Compare page: the random-weights column, computed in one
backend thread while the ImageNet column was built in the other, came out as a different random
network (36.3 % target accuracy) than the same config computed alone (16.7 %)."""

from __future__ import annotations

import threading

import torch

from reprog_core.fit import initial_model, target_data
from reprog_core.source_model.efficientnet import EfficientNetLite0
from reprog_core.source_model.training import load_or_train_source
from tests.configs import PIXEL


def _state(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def _noise(stop: threading.Event) -> None:
    """Another job, through the product's own code: builds other seeded random networks (each
    seeds the global RNGs and draws from them) as fast as it can."""
    while not stop.is_set():
        EfficientNetLite0(16, "random", seed=7)


def _in_threads(fn, n: int = 3) -> list:
    out: list = [None] * n
    stop = threading.Event()
    noise = threading.Thread(target=_noise, args=(stop,))
    workers = [threading.Thread(target=lambda i=i: out.__setitem__(i, fn())) for i in range(n)]
    noise.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    noise.join()
    return out


def test_a_random_efficientnet_is_the_same_network_whatever_runs_beside_it() -> None:
    alone = _state(EfficientNetLite0(32, "random", seed=0).net)
    for other in _in_threads(lambda: _state(EfficientNetLite0(32, "random", seed=0).net)):
        assert all(torch.equal(a, b) for a, b in zip(alone, other))


def test_theta_zero_is_the_same_whatever_runs_beside_it(tmp_path, monkeypatch) -> None:
    from reprog_core.config import ExperimentConfig

    monkeypatch.setenv("REPROG_CACHE_DIR", str(tmp_path / "cache"))
    cfg = ExperimentConfig(
        **{**PIXEL, "source_size": 12, "depth": 1, "width": 4, "mapping": "learned"},
        source_per_class=10,
        source_epochs=1,
        target_per_class=4,
        n_kernel=8,
    )
    source, _ = load_or_train_source(cfg, device="cpu")
    td = target_data(cfg)

    def theta0() -> list[torch.Tensor]:
        return _state(initial_model(cfg, source, td, 10))

    alone = theta0()
    for other in _in_threads(theta0):
        assert all(torch.equal(a, b) for a, b in zip(alone, other))
