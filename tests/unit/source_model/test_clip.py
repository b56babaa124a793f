"""The frozen open_clip encoder of ``clip-cnn``: tiny configs, weights from tags / files / random,
fast offline failures, torch.func through the tower, and the feature cache.

Everything runs on the tiny configs (~0.01 s a forward pass); no test touches the network.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from reprog_core._compat import import_open_clip
from reprog_core.runtime import cache_dir
from reprog_core.source_model import clip
from reprog_core.source_model.clip import (
    BackboneError,
    BackboneWeightsError,
    backbone_features,
    list_backbones,
    list_weight_tags,
    load_backbone,
    offline,
    register_tiny_configs,
    save_checkpoint,
)

# vmap over scaled-dot-product attention falls back to a loop on CPU: correct, only slower.
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")

TINY = {"tiny-vit": (64, 4, 4), "tiny-rn": (256, 2, 2)}


@pytest.fixture(scope="module")
def tiny_vit() -> clip.FrozenBackbone:
    return _load("tiny-vit", "random", seed=1)


def _load(name: str, weights: str, **kw) -> clip.FrozenBackbone:
    """The tests compare numbers exactly: always the CPU, whatever the machine has."""
    return load_backbone(name, weights, "cpu", **kw)


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- registry


def test_register_tiny_configs_is_idempotent():
    open_clip = import_open_clip()
    names = register_tiny_configs()
    n_models = len(open_clip.list_models())
    assert register_tiny_configs() == names == ["tiny-vit", "tiny-rn"]
    assert len(open_clip.list_models()) == n_models
    assert set(names) <= set(open_clip.list_models())


def test_list_backbones_and_tags():
    names = list_backbones()
    assert names[:2] == ["tiny-vit", "tiny-rn"]
    assert {"ViT-B-32", "RN50"} <= set(names)
    assert set(names) <= set(import_open_clip().list_models())
    assert list_weight_tags("tiny-vit") == []
    assert "openai" in list_weight_tags("RN50")


def test_unknown_and_unsupported_names_list_choices():
    with pytest.raises(BackboneError, match="tiny-vit") as info:
        _load("no-such-model", "random")
    assert "RN50" in str(info.value)
    with pytest.raises(BackboneError, match="not supported"):
        _load("convnext_tiny", "random")  # a timm image tower


# ----------------------------------------------------------------------------- the tower


@pytest.mark.parametrize("name", list(TINY))
def test_tiny_configs_give_spatial_features(name):
    b = _load(name, "random")
    assert b.feature_shape == TINY[name]
    assert b.weights_label == "random" and b.weights_kind == "random"
    assert b.native_size == (32 if name == "tiny-vit" else 64)
    assert b.n_params == sum(p.numel() for p in b.parameters()) > 0
    # Any input size is resized to the native one: upsampling and (anti-aliased) shrinking.
    for size in (12, b.native_size, 2 * b.native_size):
        assert b(_images(3, size)).shape == (3, *TINY[name])


def test_vit_features_are_the_token_grid():
    """Independent reference: run the tower by hand, drop the class token, reshape the grid."""
    b = _load("tiny-vit", "random", seed=2)
    x = _images(2, 32)
    v = b.visual
    tokens = v.ln_post(v.transformer(v._embeds((x - b.mean) / b.std)))[:, 1:]  # (N, 16, 64)
    ref = tokens.reshape(2, 4, 4, 64).permute(0, 3, 1, 2)
    torch.testing.assert_close(b(x), ref)


def test_resnet_features_are_the_layer4_map():
    b = _load("tiny-rn", "random", seed=2)
    x = _images(2, 64)
    v = b.visual
    ref = v.layer4(v.layer3(v.layer2(v.layer1(v.stem((x - b.mean) / b.std)))))
    torch.testing.assert_close(b(x), ref)


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    x = _images(2, 32)
    state = torch.random.get_rng_state()
    a = _load("tiny-vit", "random", seed=5)(x)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.testing.assert_close(_load("tiny-vit", "random", seed=5)(x), a)
    assert not torch.allclose(_load("tiny-vit", "random", seed=6)(x), a)


@pytest.mark.parametrize("name", list(TINY))
def test_frozen_but_differentiable_in_the_input(name):
    b = _load(name, "random")
    assert all(not p.requires_grad for p in b.parameters())
    b.train()  # a parent's .train() must not unfreeze BatchNorm statistics
    assert not b.training and not any(m.training for m in b.modules())

    x = _images(1, 12).requires_grad_(True)
    b(x)[0].mean(dim=(1, 2))[3].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in b.parameters())

    # torch.func: per-sample Jacobians of the channel means w.r.t. the (upsampled) input.
    f = lambda z: b(z[None])[0].mean(dim=(1, 2))  # (3, 12, 12) -> (C,)
    jac = torch.func.vmap(torch.func.jacrev(f))(torch.cat([x.detach(), _images(1, 12, seed=1)]))
    assert jac.shape == (2, TINY[name][0], 3, 12, 12)
    torch.testing.assert_close(jac[0, 3], x.grad[0], rtol=1e-4, atol=1e-6)

    params = {k: v for k, v in b.named_parameters()}
    out = torch.func.functional_call(b, params, (x.detach(),))
    torch.testing.assert_close(out, b(x.detach()))


def test_jacrev_through_the_shrinking_resize(tiny_vit):
    x = _images(1, 40)
    jac = torch.func.jacrev(lambda z: tiny_vit(z).sum(dim=(2, 3)))(x)  # (1, C, 1, 3, 40, 40)
    assert jac.shape == (1, 64, 1, 3, 40, 40) and torch.isfinite(jac).all()


# ----------------------------------------------------------------------------- checkpoint files


@pytest.mark.parametrize(
    "filename, training_layout",
    [("plain.pt", False), ("weights.safetensors", False), ("ddp.pt", True), ("model.bin", False)],
)
def test_checkpoint_round_trip_through_open_clip(tmp_path, tiny_vit, filename, training_layout):
    path = save_checkpoint(tiny_vit, tmp_path / filename, training_layout=training_layout)
    if training_layout:
        keys = torch.load(path, weights_only=True)["state_dict"]
        assert all(k.startswith("module.") for k in keys)
    loaded = _load("tiny-vit", str(path))
    assert loaded.weights_label == str(path.resolve()) and loaded.weights_kind == "file"
    x = _images(4, 32)
    torch.testing.assert_close(loaded(x), tiny_vit(x), rtol=0, atol=0)
    fresh = _load("tiny-vit", "random", seed=0)  # tiny_vit has seed 1
    assert not torch.allclose(fresh(x), loaded(x))


def test_resnet_checkpoint_round_trip_keeps_batchnorm_buffers(tmp_path):
    b = _load("tiny-rn", "random", seed=3)
    with torch.no_grad():  # non-default running statistics, so the buffers must travel too
        for m in b.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    loaded = _load("tiny-rn", str(save_checkpoint(b, tmp_path / "rn.safetensors")))
    x = _images(2, 64)
    torch.testing.assert_close(loaded(x), b(x), rtol=0, atol=0)


def test_whole_clip_model_checkpoint(tmp_path):
    open_clip = import_open_clip()
    torch.manual_seed(11)
    model = open_clip.create_model("tiny-vit")
    loaded = _load("tiny-vit", str(save_checkpoint(model, tmp_path / "clip.pt")))
    for k, v in model.visual.state_dict().items():
        torch.testing.assert_close(loaded.visual.state_dict()[k], v, rtol=0, atol=0)


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "ckpt.pt"
    with pytest.raises(BackboneWeightsError, match="file not found") as info:
        _load("tiny-vit", str(missing))
    assert str(missing) in str(info.value)


def _corrupt(kind: str, tmp_path: Path, good: dict[str, torch.Tensor]) -> Path:
    if kind == "garbage.pt":
        (p := tmp_path / kind).write_bytes(b"\x00not a checkpoint\xff" * 50)
    elif kind == "garbage.safetensors":
        (p := tmp_path / kind).write_bytes(b"x" * 200)
    elif kind == "wrong-keys.pt":
        torch.save({"foo.weight": torch.zeros(3)}, p := tmp_path / kind)
    elif kind == "wrong-shapes.pt":
        bad = dict(good, **{"visual.conv1.weight": torch.zeros(64, 3, 4, 4)})
        torch.save(bad, p := tmp_path / kind)
    else:  # a pickled list: readable, but no state_dict
        torch.save([1, 2, 3], p := tmp_path / kind)
    return p


@pytest.mark.parametrize(
    "kind, says",
    [
        ("garbage.pt", "not a readable checkpoint"),
        ("garbage.safetensors", "not a readable checkpoint"),
        ("wrong-keys.pt", "missing"),
        ("wrong-shapes.pt", "shape mismatch"),
        ("list.pt", "not a state_dict"),
    ],
)
def test_corrupt_checkpoint_gives_a_clear_error(tmp_path, tiny_vit, kind, says):
    good = torch.load(save_checkpoint(tiny_vit, tmp_path / "good.pt"), weights_only=True)
    path = _corrupt(kind, tmp_path, good)
    with pytest.raises(BackboneWeightsError) as info:
        _load("tiny-vit", str(path))
    msg = str(info.value)
    assert str(path) in msg and says in msg
    assert "Traceback" not in msg and len(msg) < 800


# ----------------------------------------------------------------------------- tags


def _never_online(monkeypatch) -> list[str]:
    """Record any probe of the host and any tag handed to open_clip (its ~46 s of retries)."""
    calls: list[str] = []
    open_clip = import_open_clip()
    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: calls.append("create") or 1 / 0)
    return calls


def test_offline_tag_fails_fast_with_how_to(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = _never_online(monkeypatch)
    monkeypatch.setattr(offline, "_reachable", lambda *a, **k: calls.append("probe") or False)
    with pytest.raises(BackboneWeightsError) as info:
        _load("ViT-B-32", "openai")
    assert calls == []  # decided by the flag: no probe, no download attempt
    msg = str(info.value)
    assert "--weights" in msg and "random" in msg and "HF_HUB_OFFLINE" in msg


@pytest.mark.parametrize("how", ["REPROG_OFFLINE", "probe"])
def test_offline_is_detected_without_hf_flag(monkeypatch, how):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("REPROG_OFFLINE", raising=False)
    if how == "REPROG_OFFLINE":
        monkeypatch.setenv("REPROG_OFFLINE", "1")
    else:  # the hub host is unreachable: never hand the tag to open_clip (~46 s of retries)
        monkeypatch.setattr(offline, "_reachable", lambda host, port, timeout=0.5: False)
    calls = _never_online(monkeypatch)
    with pytest.raises(BackboneWeightsError, match="--weights"):
        _load("RN50", "openai")
    assert calls == []


def test_reachability_probe_is_quick(monkeypatch):
    """The probe gives up at its timeout, even while the connect (DNS included) still hangs."""
    monkeypatch.setattr(offline, "_PROBES", {})
    assert offline._reachable("127.0.0.1", 9, timeout=0.3) is False  # discard port: nothing listens
    release, finished = threading.Event(), threading.Event()

    def hang(*args, **kwargs):
        release.wait(60)
        finished.set()
        raise OSError("released")

    monkeypatch.setattr(offline.socket, "create_connection", hang)
    try:
        assert offline._reachable("hangs.invalid", 443, timeout=0.1) is False
        assert not finished.is_set()  # it answered without waiting for the hanging connect
    finally:
        release.set()


def test_unknown_tag_lists_valid_tags():
    with pytest.raises(BackboneWeightsError) as info:
        _load("RN50", "not-a-tag")
    msg = str(info.value)
    assert all(t in msg for t in ("openai", "yfcc15m", "cc12m")) and "--weights" in msg
    with pytest.raises(BackboneWeightsError, match="no pretrained tags"):
        _load("tiny-vit", "openai")


def test_cached_tag_loads_offline_through_open_clip(tmp_path, monkeypatch, tiny_vit):
    """A tag whose weights sit in the Hugging Face cache loads offline, fast, via open_clip."""
    import huggingface_hub.constants as hf_constants

    open_clip = import_open_clip()
    tag_cfg = open_clip.pretrained._pcfg(hf_hub="reprog-test/tiny-vit/")
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "tiny-vit", {"unit_test": tag_cfg})
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--reprog-test--tiny-vit"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    save_checkpoint(tiny_vit, repo / "snapshots" / commit / "open_clip_model.safetensors")

    # Offline by REPROG_OFFLINE only: huggingface_hub itself believes it is online, so the
    # loader must switch it to its cache (no retries); the spy checks that it did.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("REPROG_OFFLINE", "1")
    real_download, seen = open_clip.pretrained.hf_hub_download, []

    def spy(*args, **kwargs):
        seen.append(hf_constants.is_offline_mode())
        return real_download(*args, **kwargs)

    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", spy)
    b = _load("tiny-vit", "Unit-Test")  # open_clip's tag spelling is normalised
    assert seen and all(seen) and not hf_constants.is_offline_mode()  # from the cache, no retries
    assert b.weights_label == "unit_test" and b.weights_kind == "tag"
    x = _images(2, 32)
    torch.testing.assert_close(b(x), tiny_vit(x), rtol=0, atol=0)


# ----------------------------------------------------------------------------- feature cache


def _counting(backbone: clip.FrozenBackbone) -> list[int]:
    calls: list[int] = []
    backbone.register_forward_hook(lambda mod, args, out: calls.append(len(args[0])))
    return calls


def test_backbone_features_are_cached_and_reused(tmp_path):
    b = _load("tiny-vit", "random", seed=0)
    calls = _counting(b)
    x = _images(10, 16)
    first = backbone_features(b, x, cache_key="unit-digits", batch_size=4)
    assert calls == [4, 4, 2]
    assert first.shape == (10, 64, 4, 4) and not first.requires_grad
    calls.clear()
    again = backbone_features(b, x, cache_key="unit-digits", batch_size=4)
    assert calls == [] and torch.equal(again, first)
    torch.testing.assert_close(first, b(x))

    # Same key, other images (e.g. another subsample): recomputed, never the stale file.
    calls.clear()
    backbone_features(b, _images(10, 16, seed=9), cache_key="unit-digits")
    assert calls == [10]
    # No key: no cache.
    calls.clear()
    backbone_features(b, x, cache_key=None)
    backbone_features(b, x, cache_key=None)
    assert calls == [10, 10]


def test_backbone_features_are_distinct_per_weights(tmp_path):
    x = _images(6, 16)
    a = _load("tiny-vit", "random", seed=0)
    fa = backbone_features(a, x, cache_key="unit-weights")
    before = set(cache_dir("features").glob("unit-weights-*"))

    other_seed = _load("tiny-vit", "random", seed=1)
    calls = _counting(other_seed)
    fb = backbone_features(other_seed, x, cache_key="unit-weights")
    assert calls == [6] and not torch.allclose(fa, fb)

    # A checkpoint of ``a``: keyed by the file's content, so not mistaken for random seed 0 ...
    from_file = _load("tiny-vit", str(save_checkpoint(a, tmp_path / "a.pt")))
    calls = _counting(from_file)
    fc = backbone_features(from_file, x, cache_key="unit-weights")
    assert calls == [6] and torch.equal(fc, fa)
    # ... and a copy of the same file elsewhere reuses it.
    copy = _load("tiny-vit", str(save_checkpoint(a, tmp_path / "sub" / "copy.pt")))
    calls = _counting(copy)
    backbone_features(copy, x, cache_key="unit-weights")
    assert calls == []
    assert len(set(cache_dir("features").glob("unit-weights-*")) - before) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tower_takes_cpu_images():
    b = load_backbone("tiny-rn", "random", "cuda", seed=4)
    assert b.mean.device.type == "cuda" and next(b.parameters()).device.type == "cuda"
    x = _images(5, 20)
    out = b(x)  # moved to the tower's device inside forward
    assert out.device.type == "cuda"
    feats = backbone_features(b, x, cache_key="unit-cuda", batch_size=2)
    assert feats.device == x.device
    torch.testing.assert_close(feats, out.cpu(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(backbone_features(b, x, cache_key="unit-cuda"), feats)
