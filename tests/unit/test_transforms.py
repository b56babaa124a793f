"""Input transformations and label mappings: shapes, parameter counts, structure."""

from __future__ import annotations

import pytest
import torch

from reprog_core import transforms
from reprog_core.config import ExperimentConfig
from reprog_core.input_transform import border_mask, build_transform, list_transforms
from reprog_core.label_mapping import build_mapping, fit_frequency_mapping, frequency_assignment

S, T = 32, 28


@pytest.mark.parametrize("kind", transforms.KINDS)
@pytest.mark.parametrize("shape", [(4, 1, 8, 8), (4, 3, 28, 28), (4, 3, 40, 30), (4, 4, 16, 16)])
def test_every_transform_maps_any_target_to_source_shape(kind, shape):
    t = build_transform(kind, S, T)
    out = t(torch.rand(*shape))
    assert out.shape == (shape[0], 3, S, S)
    assert torch.isfinite(out).all()


def test_parameter_counts_follow_science_md():
    d_s, d_t = 3 * S * S, 3 * T * T
    assert build_transform("vp", S, T).n_params == 3 * (S * S - T * T) == 720
    assert build_transform("vp-full", S, T).n_params == d_s
    assert build_transform("fc", S, T).n_params == d_s * d_t + d_s
    assert build_transform("vp-fc", S, T).n_params == d_t * d_t + d_t + 720
    none = build_transform("none", S, T)
    assert none.n_params == 0 and list(none.parameters()) == []


def test_vp_leaves_the_interior_untouched_and_only_border_params_matter():
    t = build_transform("vp", S, T)
    with torch.no_grad():
        t.delta.normal_(0, 3.0)  # any prompt
    x = torch.rand(3, 3, T, T)
    out = t(x)
    lo = (S - T) // 2
    assert torch.equal(out[:, :, lo : lo + T, lo : lo + T], x)
    # Gradient w.r.t. delta vanishes on the interior: only 3(s^2 - t^2) entries are effective.
    out.sum().backward()
    inner = t.delta.grad[:, lo : lo + T, lo : lo + T]
    assert inner.abs().max() == 0
    assert (t.delta.grad != 0).sum() == 720


def test_border_mask_counts():
    m = border_mask(S, T)
    assert m.sum() == 720 and m.shape == (3, S, S)


def test_fc_starts_as_plain_resize():
    x = torch.rand(5, 3, T, T)
    assert torch.allclose(
        build_transform("fc", S, T)(x), build_transform("none", S, T)(x), atol=1e-5
    )


def test_vp_fc_starts_as_vp():
    x = torch.rand(5, 3, T, T)
    assert torch.allclose(
        build_transform("vp-fc", S, T)(x), build_transform("vp", S, T)(x), atol=1e-6
    )


def test_unknown_transform_is_a_clear_error():
    with pytest.raises(ValueError, match="choose one of"):
        build_transform("zoom", S, T)
    assert set(list_transforms()) == {"vp", "vp-full", "fc", "vp-fc", "none"}


def test_identity_mapping_selects_first_k():
    m = build_mapping("identity", 10, 3)
    logits = torch.arange(20.0).reshape(2, 10)
    assert torch.equal(m(logits), logits[:, :3])


def test_index_mapping_needs_enough_source_classes():
    with pytest.raises(ValueError, match="learned"):
        build_mapping("flm", 2, 10)


def test_flm_assigns_each_target_class_its_most_predicted_source_class():
    # target class k is mostly predicted as source class (k + 3) % 10.
    y = torch.arange(10).repeat_interleave(20)
    pred = (y + 3) % 10
    pred[::7] = 0  # some noise
    idx = frequency_assignment(pred, y, 10, 10)
    assert idx.tolist() == [(k + 3) % 10 for k in range(10)]
    assert len(set(idx.tolist())) == 10  # one-to-one


def test_ilm_refit_updates_in_place():
    m = build_mapping("ilm", 5, 3)
    logits = torch.zeros(30, 5)
    y = torch.arange(3).repeat(10)
    logits[torch.arange(30), 4 - y] = 1.0
    assert fit_frequency_mapping(m, logits, y) == [4, 3, 2]
    assert m.as_list() == [4, 3, 2]


def test_learned_mapping_starts_at_identity_and_is_trainable():
    m = build_mapping("learned", 10, 4)
    logits = torch.randn(6, 10)
    assert torch.allclose(m(logits), logits[:, :4])
    assert all(p.requires_grad for p in m.parameters())
    m2 = build_mapping("learned", 3, 5)  # more target than source classes is allowed
    assert m2(torch.randn(2, 3)).shape == (2, 5)


@pytest.mark.parametrize("kind", transforms.KINDS)
def test_each_spec_describes_its_module(kind):
    """The registry (``reprog_core/transforms.py``) is what every other module reads: its
    parameter names and counts must be the module's own."""
    spec = transforms.spec(kind)
    module = build_transform(kind, 12, 8)
    assert {name for name, _ in module.named_parameters()} == spec.params
    assert sum(p.numel() for p in module.parameters()) == spec.n_params(12, 8)
    assert ExperimentConfig(transform=kind).effective_lr == spec.adam_lr
    with pytest.raises(ValueError, match="choose one of"):
        transforms.spec(kind + "-x")
