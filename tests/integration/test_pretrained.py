"""The pretrained source through the whole pipeline (integration: the real explore task on a tiny
config); its loading, weights and kernels: tests/unit/source_model/test_efficientnet.py."""

from __future__ import annotations

import pytest

from reprog_core import transforms
from reprog_core.config import ExperimentConfig


@pytest.mark.slow
@pytest.mark.parametrize("kind", transforms.KINDS)
def test_every_transform_runs_on_the_pretrained_source(kind, tmp_path, monkeypatch) -> None:
    """The whole pipeline (source, kernel with its precision check, fit, baseline) on the
    ImageNet classifier, each transform, a tiny config."""
    from reprog_core import pipeline

    monkeypatch.setenv("REPROG_CACHE_DIR", str(tmp_path / "cache"))
    cfg = ExperimentConfig(
        transform=kind,
        source_size=32,
        target_size=16,
        steps=3,
        eval_every=3,
        n_kernel=8,
        target_per_class=4,
        batch_size=8,
    )
    rec = pipeline.run_explore(cfg, device="cpu")
    assert rec["weights"] == "imagenet" and rec["source"]["native_test_acc"] >= 0.8
    fit = rec["fit"]
    assert len(fit["curves"]["step"]) == (0 if kind == "none" else 3)
    assert 0 <= fit["target_test_acc"] <= 1 and fit["baseline_test_acc"] is not None
    if kind == "none":
        assert rec["kernel"] is None
    else:
        kernel = rec["kernel"]
        assert kernel["method"] == "structured" and kernel["stats"]["n_negative"] == 0
        assert kernel["n_params"] == fit["n_params_transform"]
        assert 0 <= kernel["regression_acc"] <= 1 and 0 < kernel["common_share"] <= 1
