"""The NTK engine: target NTK paths against each other, closed forms, rank, budget, Lanczos,
source NTK, and the empirical MLP kernel approaching its infinite-width limit.

Everything runs on tiny models (source 8-10 px, target 4-6 px, widths 4-8) so the whole file takes
well under a minute on one core. Float64 where two exact computations are compared.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

import reprog_core.ntk.target as target_mod
from reprog_core import transforms
from reprog_core.input_transform import build_transform
from reprog_core.label_mapping import IndexMapping, build_mapping
from reprog_core.ntk import (
    KernelTooLarge,
    eigendecompose,
    estimate_bytes,
    input_gradients,
    jacobian_ntk,
    relu_mlp_ntk,
    source_kernel,
    spectrum,
    target_ntk,
    topk_eigs,
    transform_kernel,
    transform_structure,
)
from reprog_core.reprogrammed import ReprogrammedModel
from reprog_core.source_model.clip_cnn import ClipCNN
from reprog_core.source_model.pixel import ConvStack, PixelCNN, PixelMLP
from tests.configs import PIXEL

F64 = torch.float64
TRANSFORMS = list(transforms.TRAINED)  # every transform with an NTK, from the registry
MAPPINGS = ["identity", "flm", "learned"]


# ----------------------------------------------------------------------------- builders


@pytest.fixture(scope="module")
def tiny_backbone():
    from reprog_core.source_model.clip import load_backbone, register_tiny_configs

    register_tiny_configs()
    return load_backbone("tiny-vit", "random", device="cpu", seed=0)


def make_source(family: str, s: int, c_s: int, width: int, depth: int, backbone=None) -> nn.Module:
    if family == "cnn":
        return PixelCNN(s, depth, width, c_s)
    if family == "mlp":
        return PixelMLP(s, depth, width, c_s)
    assert backbone is not None
    c, h, _ = backbone.feature_shape
    return ClipCNN(backbone, ConvStack(c, depth, width, c_s, pool=min(4, h)), s)


def make_model(
    family: str = "cnn",
    kind: str = "vp",
    mapping: str = "identity",
    *,
    s: int = 10,
    t: int = 6,
    c_s: int = 10,
    c_t: int = 4,
    width: int = 6,
    depth: int = 2,
    seed: int = 0,
    backbone=None,
    dtype: torch.dtype = F64,
) -> ReprogrammedModel:
    """A reprogrammed model with θ moved away from its (special) initial value, so that sigmoid'
    is not constant and the fc layer is not the resize matrix: bugs cannot hide behind symmetry."""
    torch.manual_seed(seed)
    source = make_source(family, s, c_s, width, depth, backbone)
    transform = build_transform(kind, s, t)
    b = build_mapping(mapping, c_s, c_t)
    with torch.no_grad():
        for p in transform.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if isinstance(b, IndexMapping):  # an FLM-like permutation, not the first c_t outputs
            b.set_indices(torch.randperm(c_s)[:c_t])
        else:
            for p in b.parameters():
                p.add_(0.2 * torch.randn_like(p))
    for p in source.parameters():
        p.requires_grad_(False)
    return ReprogrammedModel(source, transform, b).to(dtype)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ----------------------------------------------------------------------------- the two paths


@pytest.mark.parametrize("kernel", ["trace", "full"])
@pytest.mark.parametrize("kind", TRANSFORMS)
@pytest.mark.parametrize("family", ["cnn", "mlp", "clip-cnn"])
def test_structured_equals_jacobian(family, kind, kernel, tiny_backbone):
    mapping = MAPPINGS[(TRANSFORMS.index(kind) + (kernel == "full")) % 3]
    depth = 1 if family == "clip-cnn" else 2
    model = make_model(family, kind, mapping, depth=depth, backbone=tiny_backbone)
    x = torch.rand(5, 1, 8, 8, dtype=F64)  # grey, another size: the transform prepares it
    k_fast, info_fast = target_ntk(model, x, kernel=kernel, method="structured")
    k_ref, info_ref = target_ntk(model, x, kernel=kernel, method="jacobian")
    assert info_fast["method"] == "structured" and info_ref["method"] == "jacobian"
    rows = 5 if kernel == "trace" else 5 * 4
    assert k_fast.shape == k_ref.shape == (rows, rows)
    assert rel_err(k_fast, k_ref) <= 1e-5
    assert info_fast["n_outputs"] == 4
    assert info_fast["n_params"] == model.transform.n_params


def test_paths_agree_in_float32_and_auto_picks_structured():
    model = make_model("cnn", "vp-fc", "learned", dtype=torch.float32)
    x = torch.rand(6, 3, 6, 6)
    k_fast, info = target_ntk(model, x, kernel="full")
    k_ref, _ = target_ntk(model, x, kernel="full", method="jacobian")
    assert info["method"] == "structured" and k_fast.dtype == torch.float32
    assert rel_err(k_fast, k_ref) <= 1e-4  # float32 round-off


@pytest.mark.parametrize("method", ["structured", "jacobian"])
def test_float64_mode_leaves_the_callers_model_alone(method):
    model = make_model("cnn", "vp-fc", "learned", dtype=torch.float32)
    x = torch.rand(3, 3, 6, 6)
    k, info = target_ntk(model, x, dtype=F64, method=method)
    assert k.dtype == F64 and info["dtype"] == "float64"
    assert next(model.parameters()).dtype == torch.float32
    ref, _ = target_ntk(model.to(F64), x.to(F64), method="jacobian")
    assert rel_err(k, ref) <= 1e-10


def test_learned_mapping_is_frozen_in_the_kernel():
    """θ is the transform only: the learned mapping's parameters never enter the kernel."""
    model = make_model("mlp", "vp", "learned")
    x = torch.rand(4, 3, 6, 6, dtype=F64)
    k, info = target_ntk(model, x, method="jacobian")
    assert info["n_params_raw"] == sum(p.numel() for p in model.transform.parameters())
    assert not k.requires_grad


def test_transform_none_has_no_kernel():
    model = make_model("cnn", "vp")
    model.transform = build_transform("none", 10, 6).to(F64)
    with pytest.raises(ValueError, match="no trainable parameters"):
        target_ntk(model, torch.rand(2, 3, 6, 6, dtype=F64))
    assert transform_structure(model.transform) is None


def test_determinism():
    model = make_model("cnn", "vp-fc", "flm", dtype=torch.float32)
    x = torch.rand(6, 3, 6, 6)
    for method in ("structured", "jacobian"):
        a, _ = target_ntk(model, x, kernel="full", method=method)
        b, _ = target_ntk(model, x, kernel="full", method=method)
        assert torch.equal(a, b)


@pytest.mark.parametrize("method", ["structured", "jacobian"])
def test_chunking_does_not_change_the_kernel(method):
    model = make_model("cnn", "vp-fc", "flm")
    x = torch.rand(7, 3, 6, 6, dtype=F64)
    whole, info = target_ntk(model, x, kernel="full", method=method)
    parts, info3 = target_ntk(model, x, kernel="full", method=method, chunk_size=3)
    assert info["chunk_size"] == 7 and info3["chunk_size"] == 3
    assert rel_err(parts, whole) <= 1e-12


def test_chunk_size_follows_the_budget():
    """A chunk holds its input gradients and the frozen part's saved activations (measured)."""
    model = make_model("cnn", "vp", width=8)
    x = torch.rand(40, 3, 6, 6, dtype=F64)
    act = target_mod.activation_bytes(model, x)
    assert act > 0
    per_sample = act + 2 * 4 * 300 * 8  # activations + 2 copies of G (c=4, d_S=300, float64)
    budget = int(3.5 * per_sample / 0.25)  # a quarter of the budget for one chunk: 3 samples
    k, info = target_ntk(model, x, method="structured", budget_bytes=budget)
    assert info["chunk_size"] == 3
    assert rel_err(k, target_ntk(model, x, method="structured")[0]) <= 1e-12


# ----------------------------------------------------------------------------- properties


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    family=st.sampled_from(["cnn", "mlp"]),
    kind=st.sampled_from(TRANSFORMS),
    kernel=st.sampled_from(["trace", "full"]),
    n=st.integers(1, 6),
    s=st.sampled_from([6, 8]),
    t=st.integers(2, 5),
    width=st.integers(2, 6),
    depth=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_kernel_is_symmetric_psd(family, kind, kernel, n, s, t, width, depth, seed):
    model = make_model(
        family,
        kind,
        "identity",
        s=s,
        t=t,
        c_t=3,
        width=width,
        depth=depth,
        seed=seed,
        dtype=torch.float32,
    )
    x = torch.rand(n, 3, t + 1, t + 1, generator=torch.Generator().manual_seed(seed))
    k, _ = target_ntk(model, x, kernel=kernel)
    assert torch.equal(k, k.T)
    stats = spectrum(k)
    assert stats.n_negative == 0, stats.lambda_min_raw
    assert stats.lambda_max >= 0


# ----------------------------------------------------------------------------- closed forms


class Flatten(nn.Module):
    """A linear source model f_S(z) = vec(z): G = I for every z (Θ^A_S = I)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.flatten(1) + self.dummy


@pytest.mark.parametrize("kind", TRANSFORMS)
def test_linear_source_gives_identity_and_target_kernel_is_theta_a(kind):
    s, t = 6, 3
    d_s = 3 * s * s
    torch.manual_seed(1)
    transform = build_transform(kind, s, t)
    with torch.no_grad():
        for p in transform.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model = ReprogrammedModel(
        Flatten(), transform, IndexMapping("identity", torch.arange(d_s), d_s)
    )
    model = model.to(F64)
    x = torch.rand(3, 3, 5, 5, dtype=F64)
    z = model.transform(x).detach()
    g = input_gradients(model, z)
    assert torch.equal(g, torch.eye(d_s, dtype=F64).expand(3, d_s, d_s))  # Θ^A_S = G G^T = I
    theta_a = transform_kernel(model.transform, x).dense()
    for method in ("structured", "jacobian"):
        k, _ = target_ntk(model, x, kernel="full", method=method)
        assert torch.allclose(k, theta_a, rtol=1e-10, atol=1e-12), method


@pytest.mark.parametrize("kind", TRANSFORMS)
def test_transform_kernel_matches_the_transforms_own_jacobian(kind):
    torch.manual_seed(2)
    transform = build_transform(kind, 6, 4).to(F64)
    with torch.no_grad():
        for p in transform.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.rand(3, 3, 5, 5, dtype=F64)
    params = dict(transform.named_parameters())
    ref = jacobian_ntk(
        lambda p, xb: functional_call(transform, dict(p), (xb,)).flatten(1),
        params,
        x,
        kernel="full",
    )
    tk = transform_kernel(transform, x)
    assert torch.allclose(tk.dense(), ref, rtol=1e-10, atol=1e-12)
    if kind == "fc":  # (<u, u'> + 1) I
        u = transform.fc_features(x)
        assert torch.allclose(tk.block(0, 2), (u[0] @ u[2] + 1) * torch.eye(108, dtype=F64))
    if kind in ("vp", "vp-full"):  # a constant diagonal, the same for every pair
        assert torch.equal(tk.block(0, 1), tk.block(2, 2))


def test_fc_formula_through_a_nonlinear_source():
    """Θ_T(x, x') = (<u, u'> + 1) G G^T, assembled by hand from input gradients."""
    model = make_model("cnn", "fc", "identity")
    x = torch.rand(4, 3, 6, 6, dtype=F64)
    g = input_gradients(model, model.transform(x).detach())  # (N, c, d_S)
    u = model.transform.fc_features(x)
    by_hand = torch.einsum("iak,jbk->iajb", g, g) * (u @ u.T + 1)[:, None, :, None]
    k, _ = target_ntk(model, x, kernel="full", method="jacobian")
    assert rel_err(k, by_hand.reshape(16, 16)) <= 1e-10


# ----------------------------------------------------------------------------- rank


def test_vp_rank_bound_28_to_32():
    """vp 28 -> 32 has P = 3(32^2 - 28^2) = 720, so with N c_T = 800 > 720 the full kernel has
    rank <= 720 and at least 80 eigenvalues at round-off level. With a 16-channel conv layer the
    bound is attained (float64: float32's tolerance would hide eigenvalues below ~1e-4 λ_max)."""
    torch.manual_seed(0)
    model = ReprogrammedModel(
        PixelCNN(32, 1, 16, 10), build_transform("vp", 32, 28), build_mapping("identity", 10, 10)
    )
    for p in model.source.parameters():
        p.requires_grad_(False)
    x = torch.rand(80, 1, 8, 8)
    k, info = target_ntk(model, x, kernel="full", dtype=F64)
    assert info["method"] == "structured" and info["n_params"] == 720
    stats = spectrum(k)
    assert stats.rank == 720
    w = torch.tensor(stats.eigenvalues)
    assert int((w.abs() <= stats.rank_tol).sum()) >= 80
    assert stats.lambda_min > stats.rank_tol  # meaningful: above the stated tolerance
    assert stats.n_negative == 0


# ----------------------------------------------------------------------------- budget


def test_over_budget_is_refused_before_allocating(monkeypatch):
    """The default pair's fc (32 -> 28, P ~ 7.2M) at N = 512: the Jacobian path would hold
    ~150 GB. Refused from shapes alone; the compute functions are never reached."""

    def never(*args, **kwargs):
        raise AssertionError("computation started for a request over budget")

    monkeypatch.setattr(target_mod, "per_sample_jacobians", never)
    monkeypatch.setattr(target_mod, "_structured_ntk", never)
    model = ReprogrammedModel(
        PixelCNN(32, 3, 32, 10), build_transform("fc", 32, 28), build_mapping("identity", 10, 10)
    )
    x = torch.rand(512, 3, 28, 28)
    with pytest.raises(KernelTooLarge) as err:
        target_ntk(model, x, method="jacobian", budget_bytes=4 * 2**30)
    e = err.value
    assert e.over_budget is True
    assert e.needed_bytes > 100e9 and e.budget_bytes == 4 * 2**30
    assert "needs about" in str(e) and f"largest N that fits is {e.max_n}" in str(e)
    assert "method='structured'" in str(e)  # it says what would fit
    fits = estimate_bytes(model, e.max_n, method="jacobian", budget_bytes=4 * 2**30)
    over = estimate_bytes(model, e.max_n + 1, method="jacobian", budget_bytes=4 * 2**30)
    assert fits["fits"] and not over["fits"] and fits["max_n"] == e.max_n
    # The full-form kernel itself can be the limit too, for the structured path.
    with pytest.raises(KernelTooLarge, match="largest N that fits"):
        target_ntk(model, x, kernel="full", method="structured", budget_bytes=2**20)
    assert estimate_bytes(model, 512, method="auto")["fits"]  # structured, default budget


def test_budget_from_environment(monkeypatch):
    model = make_model("cnn", "vp")
    monkeypatch.setenv("REPROG_NTK_BUDGET", "1K")
    with pytest.raises(KernelTooLarge):
        target_ntk(model, torch.rand(4, 3, 6, 6, dtype=F64))


# ----------------------------------------------------------------------------- Lanczos


@pytest.mark.parametrize("kernel", ["trace", "full"])
def test_lanczos_top_k_matches_dense(kernel):
    model = make_model("cnn", "vp-fc", "learned", c_t=3)
    x = torch.rand(10, 3, 6, 6, dtype=F64)
    k, _ = target_ntk(model, x, kernel=kernel)
    w_dense, v_dense = eigendecompose(k)
    w, v, info = topk_eigs(model, x, 4, kernel=kernel, chunk_size=4)
    assert info["method"] == "lanczos" and info["n_matvec"] > 0
    assert torch.allclose(w, w_dense[:4], rtol=1e-8)
    overlap = (v.T @ v_dense[:, :4]).abs().diagonal()  # same eigenvectors up to sign
    assert torch.allclose(overlap, torch.ones(4, dtype=F64), atol=1e-6)


def test_lanczos_through_attention(tiny_backbone):
    """jvp through open_clip's attention needs the math SDPA kernel (see ntk._autodiff)."""
    model = make_model("clip-cnn", "vp", depth=1, c_t=2, backbone=tiny_backbone)
    x = torch.rand(6, 3, 6, 6, dtype=F64)
    k, _ = target_ntk(model, x)
    w, _, _ = topk_eigs(model, x, 2)
    assert torch.allclose(w, eigendecompose(k)[0][:2], rtol=1e-8)


# ----------------------------------------------------------------------------- source NTK


def test_source_kernel_of_clip_cnn_is_the_heads_ntk_on_features(tiny_backbone):
    torch.manual_seed(3)
    model = make_source("clip-cnn", 10, 3, 4, 1, tiny_backbone).to(F64)
    x = torch.rand(4, 3, 10, 10, dtype=F64)
    k, info = source_kernel(model, x, kernel="full")
    assert info["n_params"] == sum(p.numel() for p in model.head.parameters())
    # Reference: per-sample autograd gradients of the head, one output at a time.
    feats = model.backbone(x).detach()
    rows = []
    for i in range(4):
        out = model.head(feats[i : i + 1])[0]
        for c in range(3):
            grads = torch.autograd.grad(out[c], list(model.head.parameters()), retain_graph=True)
            rows.append(torch.cat([g.flatten() for g in grads]))
    jac = torch.stack(rows)
    assert rel_err(k, jac @ jac.T) <= 1e-10


def test_source_ntk_draws():
    from reprog_core.config import ExperimentConfig
    from reprog_core.ntk import source_ntk
    from reprog_core.source_model import build_source_model
    from reprog_core.source_model.training import source_draws

    cfg = ExperimentConfig(
        **{**PIXEL, "source_size": 8}, target_size=4, depth=1, width=4, source_per_class=20
    )
    torch.manual_seed(0)
    source = build_source_model(cfg, 10)
    out = source_ntk(source, source_draws(cfg, k_per_class=2, draws=3), 10)
    assert out["n"] == 20 and out["n_outputs"] == 10 and len(out["stats"]) == 3
    lam = out["lambda_min_draws"]
    assert len(set(lam)) == 3  # different samples in each draw
    assert out["lambda_min_mean"] == pytest.approx(float(np.mean(lam)))
    assert out["lambda_min_std"] == pytest.approx(float(np.std(lam, ddof=1)))
    assert all(s["n_negative"] == 0 and s["alignment"] is not None for s in out["stats"])
    json.dumps(out)  # the backend stores it as it is


# ----------------------------------------------------------------------------- infinite width


def test_empirical_mlp_ntk_approaches_the_analytic_one():
    """PixelMLP(ntk_init, centre=False): the relative error to relu_mlp_ntk falls with width,
    roughly like 1/sqrt(width)."""
    x = torch.rand(6, 3, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    analytic = relu_mlp_ntk(x, x, depth=2)
    widths, errors = [16, 128, 1024], []
    for width in widths:
        errs = []
        for seed in range(2):
            torch.manual_seed(seed)
            mlp = PixelMLP(4, 2, width, 2, ntk_init=True, centre=False).to(F64)
            k, _ = source_kernel(mlp, x)
            errs.append(rel_err(k / 2, analytic))  # trace over 2 outputs = 2 Θ
        errors.append(float(np.mean(errs)))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.15
    slope = math.log(errors[2] / errors[1]) / math.log(widths[2] / widths[1])
    assert -0.9 < slope < -0.2, errors


def test_relu_mlp_ntk_depth_zero_is_the_linear_kernel():
    x = torch.rand(4, 12, dtype=F64)
    k = relu_mlp_ntk(x, depth=0, readout_sigma_w=1.0, sigma_b=0.1)
    assert torch.allclose(k, x @ x.T / 12 + 0.01)


# ----------------------------------------------------------------------------- records


def test_target_kernel_result_dense_and_lanczos_fallback():
    from reprog_core.config import ExperimentConfig
    from reprog_core.ntk import target_kernel_result

    cfg = ExperimentConfig(
        **{**PIXEL, "source_size": 10, "target_size": 6, "transform": "vp"}, steps=30
    )
    model = make_model("cnn", "vp", c_t=3, dtype=torch.float32)
    x, y = torch.rand(8, 3, 6, 6), torch.arange(8) % 3
    dense = target_kernel_result(cfg, model, x, y, keep_gram=True)
    assert dense.method == "structured" and dense.wrt == "transform" and not dense.stats.partial
    assert dense.n == 8 and dense.n_outputs == 3 and dense.n_params == 192
    assert len(dense.gram) == 8 and dense.stats.alignment is not None
    assert dense.dynamics.step[0] == 0 and dense.dynamics.step[-1] == 30
    # Over a tiny budget: the top-k eigenvalues come from Lanczos instead.
    top = target_kernel_result(cfg, model, x, y, budget_bytes=1000, topk=3)
    assert top.method == "lanczos" and top.stats.partial and len(top.stats.eigenvalues) == 3
    assert np.allclose(top.stats.eigenvalues, dense.stats.eigenvalues[:3], rtol=1e-4)
    assert math.isnan(top.stats.trace)
    json_ready = dense.to_dict()
    assert json_ready["stats"]["rank"] == dense.stats.rank


def test_source_kernel_result_record():
    from reprog_core.config import ExperimentConfig
    from reprog_core.ntk import source_kernel_result
    from reprog_core.source_model import build_source_model
    from reprog_core.source_model.training import source_draws

    cfg = ExperimentConfig(
        **{**PIXEL, "source_size": 8}, target_size=4, depth=1, width=4, source_per_class=20
    )
    torch.manual_seed(0)
    draws = source_draws(cfg, k_per_class=1, draws=2)
    rec = source_kernel_result(cfg, build_source_model(cfg, 10), draws, 10)
    assert rec.wrt == "source" and rec.method == "jacobian" and rec.n == 10
    assert len(rec.lambda_min_draws) == 2 and rec.stats.lambda_min == rec.lambda_min_draws[0]
    json.dumps(rec.to_dict())
