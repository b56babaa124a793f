"""Issue 11's speed paths: float32 input gradients with a float64 Gram (and when it falls back),
one eigendecomposition per kernel record, the thread policy and ``bench/explore.py``'s device
logic, on tiny models (source 10 px, target 6 px). The fresh processes (the OpenMP wait policy,
the CLI's torch-free cached answer, the benchmark run): tests/integration/test_speed_paths.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import reprog_core.ntk.target as target_mod
from reprog_core.config import ExperimentConfig
from reprog_core.input_transform import build_transform
from reprog_core.label_mapping import build_mapping
from reprog_core.ntk import spectrum
from reprog_core.ntk.spectral import default_rank_tol
from reprog_core.ntk.target import target_ntk, target_ntk_eig
from reprog_core.reprogrammed import ReprogrammedModel
from reprog_core.source_model.pixel import PixelCNN
from tests.configs import PIXEL

ROOT = Path(__file__).resolve().parents[2]
F32, F64 = torch.float32, torch.float64
sys.path.insert(0, str(ROOT / "bench"))


def tiny_model(kind: str = "vp", *, c_t: int = 4, seed: int = 0) -> ReprogrammedModel:
    """A float32 reprogrammed model (cnn source 10 px, target 6 px), θ moved off its init."""
    torch.manual_seed(seed)
    source = PixelCNN(10, 2, 6, 10)
    transform = build_transform(kind, 10, 6)
    with torch.no_grad():
        for p in transform.parameters():
            p.add_(0.3 * torch.randn_like(p))
    for p in source.parameters():
        p.requires_grad_(False)
    return ReprogrammedModel(source, transform, build_mapping("identity", 10, c_t))


def images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 6, 6, generator=torch.Generator().manual_seed(seed))


def rank(w: torch.Tensor) -> int:
    return int((w > default_rank_tol(w, len(w), F64)).sum())


# ----------------------------------------------------------------------------- mixed precision


@pytest.mark.parametrize("kind,kernel", [("vp", "trace"), ("fc", "trace"), ("vp-fc", "full")])
def test_float32_gradients_match_the_float64_kernel(kind, kernel):
    """Equal rank; eigenvalues >= 1e-6 λ_max within 1e-6 relative; float32 G was really used."""
    model, x = tiny_model(kind), images(12)
    k64, (w64, _), info64 = target_ntk_eig(
        model, x, kernel=kernel, dtype=F64, grad_dtype=F64, vectors=False
    )
    k, (w, _), info = target_ntk_eig(
        model, x, kernel=kernel, dtype=F64, grad_dtype=F32, vectors=False
    )
    assert info64["grad_dtype"] == "float64" and "precision" not in info64
    assert info["grad_dtype"] == "float32" and info["dtype"] == "float64"
    assert k.dtype == F64
    check = info["precision"]
    assert not check["fallback"], check["reason"]
    assert 0 < check["probe_error"] < 1e-5
    assert rank(w) == rank(w64) == len(w64)
    keep = w64 >= 1e-6 * w64[0]
    assert float(((w[keep] - w64[keep]).abs() / w64[keep]).max()) <= 1e-6
    # ...and it is not the float64 kernel under another name.
    assert 0 < float((k - k64).norm() / k64.norm()) < 1e-6


def test_rank_deficient_kernel_falls_back_to_float64():
    """A full vp kernel with more rows (N c_T = 4 x 64 = 256) than parameters (3(10^2 - 6^2) =
    192) has a null space: float32 G would lift it to round-off level (rank changes), so the check
    rejects it, and the result is the all-float64 kernel."""
    model, x = tiny_model("vp"), images(64)
    k64, (w64, _), _ = target_ntk_eig(model, x, kernel="full", dtype=F64, vectors=False)
    k, (w, _), info = target_ntk_eig(
        model, x, kernel="full", dtype=F64, grad_dtype=F32, vectors=False
    )
    check = info["precision"]
    assert check["fallback"] and "recomputed" in check["reason"]
    assert check["lambda_min_raw"] < check["margin"] * check["floor"]
    assert info["grad_dtype"] == "float64"
    assert rank(w64) == 192 and rank(w) == 192
    torch.testing.assert_close(k, k64, rtol=1e-12, atol=1e-14 * float(k64.abs().max()))


def test_a_bad_probe_skips_the_float32_kernel(monkeypatch):
    """G too far from float64 on the probe (as with TF32 on a GPU): straight to float64."""
    monkeypatch.setattr(target_mod, "MAX_PROBE_ERROR", 0.0)
    calls = []
    real = target_mod._structured_ntk
    monkeypatch.setattr(
        target_mod, "_structured_ntk", lambda m, *a, **k: calls.append(m) or real(m, *a, **k)
    )
    model, x = tiny_model("vp"), images(8)
    k, info = target_ntk(model, x, dtype=F64, grad_dtype=F32)
    assert info["precision"]["fallback"] and "probe error" in info["precision"]["reason"]
    assert len(calls) == 1 and next(calls[0].parameters()).dtype == F64
    torch.testing.assert_close(k, target_ntk(model, x, dtype=F64)[0], rtol=1e-12, atol=0)


def test_caller_model_is_left_in_float32():
    model = tiny_model("fc")
    target_ntk(model, images(4), dtype=F64, grad_dtype=F32)
    assert all(p.dtype == F32 for p in model.parameters())


def test_memory_plan_counts_the_float64_model_copy():
    from reprog_core.ntk import estimate_bytes

    model = tiny_model("fc")
    plan = estimate_bytes(model, 16, dtype=F64, grad_dtype=F32)
    copy = plan["parts"]["model copy"]
    params = sum(p.numel() for p in model.parameters())
    assert copy >= 8 * params


# ----------------------------------------------------------------------------- records


def test_full_kernel_record_decomposes_once(monkeypatch):
    """Spectrum, precision check and dynamics share one eigh (it was eigvalsh + eigh)."""
    from reprog_core.ntk.records import target_kernel_result

    counts = {"eigh": 0, "eigvalsh": 0}
    for name in counts:
        real = getattr(torch.linalg, name)

        def counted(*a, _real=real, _name=name, **k):
            counts[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(torch.linalg, name, counted)
    cfg = ExperimentConfig(**PIXEL, kernel_form="full", steps=10, mapping="identity")
    model, x = tiny_model("vp"), images(6)
    y = torch.arange(6) % 4
    res = target_kernel_result(cfg, model, x, y, dtype=F64)
    assert counts == {"eigh": 1, "eigvalsh": 0}
    assert res.stats.rank == 24 and res.dynamics and len(res.dynamics.loss) > 1
    # The same statistics as decomposing separately.
    k, _ = target_ntk(model, x, kernel="full", dtype=F64, grad_dtype=F32)
    ref = spectrum(k, y, n_classes=4)
    assert res.stats.rank == ref.rank
    assert res.stats.lambda_min == pytest.approx(ref.lambda_min, rel=1e-9)


def test_spectrum_rejects_eigenvalues_of_another_size():
    with pytest.raises(ValueError, match="eigenvalues"):
        spectrum(torch.eye(3, dtype=F64), eigenvalues=torch.ones(4, dtype=F64))


# ----------------------------------------------------------------------------- threads


def test_threads_per_worker(monkeypatch):
    from reprog_core import runtime

    monkeypatch.delenv("REPROG_THREADS", raising=False)
    monkeypatch.setattr(runtime, "available_cores", lambda: 2)
    assert runtime.default_threads() == 2
    assert runtime.default_threads(workers=2) == 1
    assert runtime.default_threads(workers=5) == 1
    monkeypatch.setenv("REPROG_THREADS", "3")
    assert runtime.default_threads(workers=2) == 3
    monkeypatch.setenv("REPROG_THREADS", "two")
    with pytest.raises(ValueError, match="REPROG_THREADS"):
        runtime.default_threads()
    before = torch.get_num_threads()
    try:
        assert runtime.pin_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- the benchmark


def test_explore_benchmark_device_logic_on_cpu():
    import explore

    explore._sync(torch.device("cpu"))  # a no-op off CUDA
    w = torch.tensor([1.0, 0.5, 1e-3, 1e-20], dtype=F64)
    same = explore.compare_eigenvalues(w, w * (1 + 1e-9), 4)
    assert same["ok"] and same["rank_float64"] == 3
    off = explore.compare_eigenvalues(w, w * torch.tensor([1, 1, 1 + 1e-5, 1], dtype=F64), 4)
    assert not off["ok"]
    lifted = explore.compare_eigenvalues(w, torch.tensor([1.0, 0.5, 1e-3, 1e-9], dtype=F64), 4)
    assert not lifted["ok"] and lifted["rank_mixed"] == 4
    if not torch.cuda.is_available():
        assert explore.main(["--device", "cuda"]) == 2
