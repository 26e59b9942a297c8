"""Tests of the backbone registry, pretrained-weight resolution and fusion models.

No network and no real pretrained weights: models are built with
``pretrained=False`` (or tiny registered test configs), downloads are mocked.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
import torch.nn.functional as F  # noqa: E402

_LIB_PARENT = Path(__file__).resolve().parents[3] / "SeqClassifier"
if str(_LIB_PARENT) not in sys.path:
    sys.path.insert(0, str(_LIB_PARENT))

from SeqClassifierLib.model import backbones as B  # noqa: E402
from SeqClassifierLib.model.backbones import (  # noqa: E402
    BackboneConfig,
    PretrainedSource,
    WeightsIntegrityError,
    WeightsNotFoundError,
    create_backbone,
    get_backbone_config,
    list_backbones,
    resolve_pretrained_weights,
    sha256_file,
)
from SeqClassifierLib.model.backbones import registry as R  # noqa: E402
from SeqClassifierLib.model.fusion import (  # noqa: E402
    STRATEGIES,
    create_model,
    model_from_config,
)
from SeqClassifierLib.model.lora import LoRALinear, apply_lora  # noqa: E402
from SeqClassifierLib.labels import CLASSES  # noqa: E402

N_META = 6
FOUNDATION = ("vit_b16", "vit_l16", "dinov2_s14", "dinov2_b14", "dinov2_l14", "biomedclip_b16")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _batch(n=4, size=32):
    return torch.randn(n, 3, size, size), torch.randn(n, N_META)


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------


def test_registry_has_expected_names():
    names = list_backbones()
    for name in FOUNDATION + ("vit_tiny_test", "compact_cnn"):
        assert name in names


@pytest.mark.parametrize("name", list_backbones())
def test_registry_config_complete(name):
    cfg = get_backbone_config(name)
    assert isinstance(cfg, BackboneConfig)
    assert cfg.name == name
    assert cfg.family in ("timm", "open_clip", "builtin")
    assert cfg.arch
    assert isinstance(cfg.input_size, int) and cfg.input_size > 0
    assert len(cfg.mean) == 3 and len(cfg.std) == 3
    assert all(0 <= m <= 1 for m in cfg.mean) and all(s > 0 for s in cfg.std)
    assert cfg.feature_dim > 0
    assert cfg.description
    json.dumps(cfg.to_dict())  # JSON-able
    if name in FOUNDATION:
        src = cfg.pretrained
        assert isinstance(src, PretrainedSource)
        assert src.hf_hub_id and "/" in src.hf_hub_id
        assert src.hf_filename and src.hf_filename.endswith((".safetensors", ".bin"))
        assert src.url and src.url.startswith("https://")
        assert src.url.endswith(src.hf_filename)
        assert src.license
        assert cfg.input_size == 224


def test_registry_values_match_paper_models():
    assert get_backbone_config("vit_b16").arch == "vit_base_patch16_224.augreg2_in21k_ft_in1k"
    assert get_backbone_config("vit_l16").arch == "vit_large_patch16_224.augreg_in21k_ft_in1k"
    for size in "sbl":
        cfg = get_backbone_config(f"dinov2_{size}14")
        assert cfg.arch.endswith("_patch14_dinov2.lvd142m")
        assert cfg.mean == B.IMAGENET_MEAN and cfg.std == B.IMAGENET_STD
    bio = get_backbone_config("biomedclip_b16")
    assert bio.family == "open_clip"
    assert bio.pretrained.hf_hub_id == "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    assert bio.mean == B.OPENAI_CLIP_MEAN and bio.std == B.OPENAI_CLIP_STD
    assert bio.kwargs["vision_cfg"]["timm_model_name"] == "vit_base_patch16_224"
    cnn = get_backbone_config("compact_cnn")
    assert cnn.input_size == 128 and cnn.mean == (0.5, 0.5, 0.5) and cnn.std == (0.5, 0.5, 0.5)


def test_list_backbones_filters_by_pattern_and_family():
    assert list_backbones("dinov2_*") == ["dinov2_s14", "dinov2_b14", "dinov2_l14"]
    assert list_backbones(family="open_clip") == ["biomedclip_b16"]
    assert list_backbones(family="builtin") == ["compact_cnn"]
    assert list_backbones("vit_*", family="timm") == ["vit_b16", "vit_l16", "vit_tiny_test"]
    assert list_backbones("nothing*") == []
    with pytest.raises(ValueError, match="unknown backbone family 'keras'"):
        list_backbones(family="keras")


def test_package_reexports_the_submodules_objects():
    from SeqClassifierLib.model.backbones import builders, compact_cnn, weights

    for name in B.__all__:
        assert hasattr(B, name), name
    assert B.create_backbone is builders.create_backbone
    assert B.get_backbone_config is R.get_backbone_config
    assert B.resolve_pretrained_weights is weights.resolve_pretrained_weights
    assert B.CompactCNN is compact_cnn.CompactCNN
    assert type(create_backbone("compact_cnn").body) is compact_cnn.CompactCNN


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(KeyError) as info:
        get_backbone_config("resnet9000")
    assert "compact_cnn" in str(info.value) and "vit_b16" in str(info.value)


# --------------------------------------------------------------------------------------
# Backbones
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,dim", [("vit_tiny_test", 32), ("compact_cnn", 256)])
def test_small_backbone_forward(name, dim):
    bb = create_backbone(name)
    size = bb.config.input_size
    out = bb(torch.randn(2, 3, size, size))
    assert out.shape == (2, dim)
    assert bb.num_features == dim
    assert torch.isfinite(out).all()


def test_compact_cnn_size():
    n = sum(p.numel() for p in create_backbone("compact_cnn").parameters())
    assert 0.5e6 <= n <= 2e6


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compact_cnn_residual_sum_lands_in_the_branch_output_at_inference_with_the_same_bits(precision):
    torch.manual_seed(3)
    net = create_backbone("compact_cnn").eval().to(memory_format=torch.channels_last)
    x = torch.rand(5, 3, 128, 128).contiguous(memory_format=torch.channels_last)
    stages = net.body.stages
    stage = stages[1]
    branch = []
    stage.conv.register_forward_hook(lambda mod, inp, out: branch.append(out))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        with torch.inference_mode():
            feats = net(x)
            h0 = stages[0](x)
            h = stage.down(h0)
            ref = stage.act(h + stage.conv(h))  # the sum in a new tensor, as in training
            out = stage(h0)
        assert out.data_ptr() == branch[-1].data_ptr()  # the branch's own output, no third activation
        assert torch.equal(out, ref) and out.dtype == ref.dtype
        # with autograd: a new tensor, and gradients flow as before
        xg = x.clone().requires_grad_(True)
        branch.clear()
        outs = []
        stage.register_forward_hook(lambda mod, inp, o: outs.append(o))
        y = net(xg)
        y.float().sum().backward()
    assert outs[-1].data_ptr() != branch[-1].data_ptr()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()
    assert torch.isfinite(feats).all()


@pytest.mark.parametrize("name,dim", [("vit_b16", 768), ("dinov2_s14", 384), ("biomedclip_b16", 512)])
def test_foundation_backbone_builds_without_weights(name, dim):
    bb = create_backbone(name, pretrained=False)
    assert bb.num_features == dim
    assert bb.weights_path is None
    with torch.no_grad():
        out = bb.eval()(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, dim)


def test_biomedclip_is_vision_tower_only():
    bb = create_backbone("biomedclip_b16")
    keys = list(bb.body.state_dict())
    assert any(k.startswith("trunk.blocks.") for k in keys)
    assert "head.proj.weight" in keys
    assert not any("text" in k or "transformer.embeddings" in k for k in keys)


# --------------------------------------------------------------------------------------
# Pretrained weight resolution (offline, mocked)
# --------------------------------------------------------------------------------------

TEST_HUB_ID = "testorg/tiny-vit-test"
TEST_URL = "https://example.invalid/testorg/tiny-vit-test/model.safetensors"


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """Fresh HF cache / package cache / HOME under tmp; downloads forbidden unless a test allows them."""
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    for var in ("HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", B.OFFLINE_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(B.CACHE_ENV, str(tmp_path / "seqcache"))

    def no_network(*a, **k):  # pragma: no cover - only on failure
        raise AssertionError("unexpected network access")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path


def _register_tiny(monkeypatch, sha256=None, url=TEST_URL, name="tiny_pretrained_test"):
    base = get_backbone_config("vit_tiny_test")
    cfg = dataclasses.replace(
        base,
        name=name,
        pretrained=PretrainedSource(
            hf_hub_id=TEST_HUB_ID, hf_filename="model.safetensors", url=url, sha256=sha256, license="test"
        ),
    )
    monkeypatch.setitem(R._REGISTRY, name, cfg)
    return cfg


def _reference_weights(path: Path) -> dict:
    """Save the weights of a freshly initialised tiny ViT (plus a classifier head,
    which must be dropped when loading) and return the backbone state dict."""
    from safetensors.torch import save_file

    torch.manual_seed(123)
    ref = create_backbone("vit_tiny_test")
    sd = {k: v.clone() for k, v in ref.body.state_dict().items()}
    to_save = dict(sd)
    to_save["head.weight"] = torch.randn(10, 32)
    to_save["head.bias"] = torch.randn(10)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(to_save, str(path))
    return sd


def _assert_loaded(bb, sd):
    own = bb.body.state_dict()
    assert set(own) == set(sd)
    for k, v in sd.items():
        assert torch.equal(own[k], v), k


def test_pretrained_found_in_hf_cache(isolated_env, monkeypatch):
    _register_tiny(monkeypatch)
    snap = isolated_env / "hub" / "models--testorg--tiny-vit-test" / "snapshots" / "0123abcd"
    sd = _reference_weights(snap / "model.safetensors")
    bb = create_backbone("tiny_pretrained_test", pretrained=True)
    _assert_loaded(bb, sd)
    assert bb.weights_source == "hf_cache"
    assert Path(bb.weights_path) == snap / "model.safetensors"
    assert bb.weights_sha256 == sha256_file(snap / "model.safetensors")


def test_hf_cache_prefers_refs_main(isolated_env, monkeypatch):
    _register_tiny(monkeypatch)
    repo = isolated_env / "hub" / "models--testorg--tiny-vit-test"
    _reference_weights(repo / "snapshots" / "old" / "model.safetensors")
    _reference_weights(repo / "snapshots" / "new" / "model.safetensors")
    os.utime(repo / "snapshots" / "new" / "model.safetensors", (1, 1))  # older mtime
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("new")
    res = resolve_pretrained_weights("tiny_pretrained_test")
    assert res.path == repo / "snapshots" / "new" / "model.safetensors"


def test_hf_cache_hit_verified_against_declared_sha(isolated_env, monkeypatch):
    _register_tiny(monkeypatch, sha256="0" * 64)
    snap = isolated_env / "hub" / "models--testorg--tiny-vit-test" / "snapshots" / "x"
    _reference_weights(snap / "model.safetensors")
    with pytest.raises(WeightsIntegrityError) as info:
        resolve_pretrained_weights("tiny_pretrained_test")
    assert "0" * 64 in str(info.value)


def test_pretrained_explicit_file_safetensors_and_pth(isolated_env, monkeypatch, tmp_path):
    sd = _reference_weights(tmp_path / "mine.safetensors")
    bb = create_backbone("vit_tiny_test", pretrained=tmp_path / "mine.safetensors")
    _assert_loaded(bb, sd)
    assert bb.weights_source == "file"
    torch.save({"state_dict": sd}, tmp_path / "mine.pth")
    bb2 = create_backbone("vit_tiny_test", pretrained=str(tmp_path / "mine.pth"))
    _assert_loaded(bb2, sd)
    named = r"absent.safetensors does not exist .*folder " + re.escape(str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=named):
        create_backbone("vit_tiny_test", pretrained=tmp_path / "absent.safetensors")
    with pytest.raises(WeightsNotFoundError, match="is a folder, not a weights file"):
        create_backbone("vit_tiny_test", pretrained=tmp_path)


def test_pickle_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(pickle.UnpicklingError):
        B.load_weights_file(tmp_path / "evil.pth")


class _FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _fake_urlopen(payload: bytes, calls: list):
    def urlopen(request, timeout=None):
        url = request.full_url if hasattr(request, "full_url") else request
        calls.append(url)
        return _FakeResponse(payload)

    return urlopen


def test_download_with_correct_sha_moves_into_cache(isolated_env, monkeypatch, tmp_path):
    sd = _reference_weights(tmp_path / "src" / "model.safetensors")
    payload = (tmp_path / "src" / "model.safetensors").read_bytes()
    digest = sha256_file(tmp_path / "src" / "model.safetensors")
    _register_tiny(monkeypatch, sha256=digest)
    calls: list = []
    monkeypatch.setattr(urllib.request, "urlopen", _fake_urlopen(payload, calls))
    progress = []
    cache = tmp_path / "cache"
    bb = create_backbone(
        "tiny_pretrained_test", pretrained=True, cache_dir=cache, progress=lambda d, t: progress.append((d, t))
    )
    _assert_loaded(bb, sd)
    dest = cache / "tiny_pretrained_test" / "model.safetensors"
    assert dest.is_file() and sha256_file(dest) == digest
    assert bb.weights_source == "download" and calls == [TEST_URL]
    assert progress[-1] == (len(payload), len(payload))
    assert [p.name for p in dest.parent.iterdir()] == ["model.safetensors"]  # no temp files left
    # second time: served from the cache, no network
    res = resolve_pretrained_weights("tiny_pretrained_test", cache_dir=cache)
    assert res.source == "cache" and len(calls) == 1


def test_download_with_wrong_sha_is_refused_and_leaves_nothing(isolated_env, monkeypatch, tmp_path):
    _reference_weights(tmp_path / "src" / "model.safetensors")
    payload = (tmp_path / "src" / "model.safetensors").read_bytes()
    _register_tiny(monkeypatch, sha256="f" * 64)
    monkeypatch.setattr(urllib.request, "urlopen", _fake_urlopen(payload, []))
    cache = tmp_path / "cache"
    with pytest.raises(WeightsIntegrityError) as info:
        resolve_pretrained_weights("tiny_pretrained_test", cache_dir=cache)
    assert "f" * 64 in str(info.value)
    leftovers = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert leftovers == []


def test_download_without_sha_records_hash(isolated_env, monkeypatch, tmp_path):
    _reference_weights(tmp_path / "src" / "model.safetensors")
    payload = (tmp_path / "src" / "model.safetensors").read_bytes()
    digest = sha256_file(tmp_path / "src" / "model.safetensors")
    _register_tiny(monkeypatch, sha256=None)
    monkeypatch.setattr(urllib.request, "urlopen", _fake_urlopen(payload, []))
    res = resolve_pretrained_weights("tiny_pretrained_test", cache_dir=tmp_path / "cache")
    assert res.sha256 == digest
    sidecar = res.path.with_name(res.path.name + ".sha256")
    assert sidecar.read_text().split()[0] == digest


def test_offline_env_skips_download(isolated_env, monkeypatch):
    _register_tiny(monkeypatch)
    monkeypatch.setenv(B.OFFLINE_ENV, "1")
    calls: list = []
    monkeypatch.setattr(urllib.request, "urlopen", _fake_urlopen(b"x", calls))
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_pretrained_weights("tiny_pretrained_test")
    assert calls == []
    assert B.OFFLINE_ENV in str(info.value)


def test_missing_weights_message_says_what_to_put_where(isolated_env, monkeypatch):
    monkeypatch.setenv(B.OFFLINE_ENV, "1")
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_pretrained_weights("vit_b16")
    msg = str(info.value)
    hub_id = "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"
    expected = (
        isolated_env / "hub" / "models--timm--vit_base_patch16_224.augreg2_in21k_ft_in1k"
        / "snapshots" / "main" / "model.safetensors"
    )
    assert hub_id in msg
    assert str(expected) in msg
    assert "--pretrained" in msg
    assert get_backbone_config("vit_b16").pretrained.url in msg
    # and the file put there by hand is then found
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"placeholder")
    assert resolve_pretrained_weights("vit_b16").path == expected


def test_download_failure_reports_not_found(isolated_env, monkeypatch):
    _register_tiny(monkeypatch)

    def failing(*a, **k):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", failing)
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_pretrained_weights("tiny_pretrained_test", cache_dir=isolated_env / "c")
    assert "no route to host" in str(info.value) and TEST_HUB_ID in str(info.value)
    assert not any(p.is_file() for p in (isolated_env / "c").rglob("*"))


def test_open_clip_checkpoint_keys_are_remapped(isolated_env, monkeypatch, tmp_path):
    """An open_clip checkpoint (``visual.*`` + text tower, pickled .bin) loads into the vision tower."""
    cfg = BackboneConfig(
        name="tiny_clip_test",
        family="open_clip",
        arch="vit_tiny_patch16_224",
        input_size=224,
        mean=B.OPENAI_CLIP_MEAN,
        std=B.OPENAI_CLIP_STD,
        feature_dim=16,
        pretrained=PretrainedSource("testorg/tiny-clip", "open_clip_pytorch_model.bin", None, None, "test"),
        description="tiny open_clip tower for tests",
        kwargs={"embed_dim": 16, "vision_cfg": {"timm_model_name": "vit_tiny_patch16_224",
                                                 "timm_pool": "", "timm_proj": "linear", "image_size": 224}},
    )
    monkeypatch.setitem(R._REGISTRY, cfg.name, cfg)
    torch.manual_seed(5)
    ref = create_backbone(cfg.name)
    sd = {f"visual.{k}": v.clone() for k, v in ref.body.state_dict().items()}
    sd["text.transformer.embeddings.weight"] = torch.randn(4, 4)
    sd["logit_scale"] = torch.tensor(4.6)
    torch.save(sd, tmp_path / "open_clip_pytorch_model.bin")
    torch.manual_seed(6)
    bb = create_backbone(cfg.name, pretrained=tmp_path / "open_clip_pytorch_model.bin")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(bb.eval()(x), ref.eval()(x), atol=1e-6)


# --------------------------------------------------------------------------------------
# Fusion models
# --------------------------------------------------------------------------------------


def _model(strategy, **kw):
    return create_model(strategy, "vit_tiny_test", num_meta_features=N_META, **kw)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_forward_backward(strategy):
    model = _model(strategy)
    model.train()
    image, meta = _batch()
    logits = model(image, meta)
    assert logits.shape == (4, len(CLASSES))
    target = torch.tensor([0, 1, 2, 3])
    loss = sum(F.cross_entropy(out, target) for out in model.loss_logits(image, meta))
    loss.backward()
    head = model.head_parameters()
    assert head and any(p.grad is not None and p.grad.abs().sum() > 0 for p in head)
    backbone = model.backbone_parameters()
    if strategy == "metadata":
        assert backbone == [] and model.backbone_name is None and model.input_size is None
    elif strategy == "early":
        assert all(p.grad is None for p in backbone)
        assert all(not p.requires_grad for p in backbone)
    else:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone)


def test_early_fusion_backbone_stays_in_eval_mode():
    model = _model("early", dropout=0.0)
    model.train()
    assert all(not m.training for m in model.backbones()[0].modules())
    model.unfreeze_backbone()
    assert all(not p.requires_grad for p in model.backbone_parameters())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_missing_modality_masks(strategy):
    model = _model(strategy).eval()
    image, meta = _batch()
    full = model(image, meta)
    image_present = torch.tensor([True, False, True, True])
    meta_present = torch.tensor([True, True, False, True])
    # garbage where a modality is absent must not matter
    image[1] = float("nan")
    meta[2] = float("nan")
    masked = model(image, meta, image_present, meta_present)
    assert torch.isfinite(masked).all()
    assert torch.allclose(masked[[0, 3]], full[[0, 3]], atol=1e-5)
    if model.uses_image:
        assert not torch.allclose(masked[1], full[1])
    if model.uses_metadata:
        assert not torch.allclose(masked[2], full[2])
    # whole modality absent: None is accepted by the fusion models
    if model.uses_image and model.uses_metadata:
        assert torch.isfinite(model(None, meta.nan_to_num())).all()
        assert torch.isfinite(model(image.nan_to_num(), None)).all()


def test_masked_training_has_finite_gradients():
    model = _model("joint").train()
    image, meta = _batch()
    meta[0] = float("nan")
    out = model(image, meta, torch.tensor([1, 0, 1, 1]).bool(), torch.tensor([0, 1, 1, 1]).bool())
    F.cross_entropy(out, torch.tensor([0, 1, 2, 3])).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.image_branch.missing_image.grad is not None
    assert model.meta_branch.missing_meta.grad is not None


def test_late_fusion_output_is_mean_of_member_probabilities():
    model = _model("late").eval()
    image, meta = _batch()
    img_logits, meta_logits, _, _ = model.member_logits(image, meta)
    expected = (img_logits.softmax(1) + meta_logits.softmax(1)) / 2
    assert torch.allclose(model(image, meta).softmax(1), expected, atol=1e-6)
    assert torch.allclose(model(image, meta).exp().sum(1), torch.ones(4), atol=1e-5)
    # metadata missing for every sample -> the image member alone
    only_img = model(image, meta, meta_present=torch.zeros(4, dtype=torch.bool))
    assert torch.allclose(only_img.softmax(1), img_logits.softmax(1), atol=1e-6)
    assert len(model.loss_logits(image, meta)) == 2


def test_freeze_unfreeze_toggles_requires_grad():
    model = _model("joint")
    assert all(p.requires_grad for p in model.backbone_parameters())
    model.freeze_backbone()
    assert not any(p.requires_grad for p in model.backbone_parameters())
    assert all(p.requires_grad for p in model.head_parameters())
    model.unfreeze_backbone()
    assert all(p.requires_grad for p in model.backbone_parameters())


def test_head_parameters_exclude_backbone():
    model = _model("joint")
    head = {id(p) for p in model.head_parameters()}
    backbone = {id(p) for p in model.backbone_parameters()}
    assert head and backbone and not head & backbone
    assert head | backbone == {id(p) for p in model.parameters()}


def test_unknown_strategy():
    with pytest.raises(ValueError) as info:
        create_model("fancy", "vit_tiny_test", num_meta_features=N_META)
    for s in STRATEGIES:
        assert s in str(info.value)
    with pytest.raises(ValueError):
        create_model("joint", "vit_tiny_test", num_meta_features=0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_model_from_config_rebuilds_architecture(strategy):
    model = _model(strategy, meta_dim=16, fusion_hidden=24).eval()
    cfg = model.config
    json.dumps(cfg)
    assert cfg["strategy"] == strategy and model.strategy == strategy
    rebuilt = model_from_config(json.loads(json.dumps(cfg))).eval()
    assert rebuilt.config == cfg
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    image, meta = _batch()
    assert torch.allclose(rebuilt(image, meta), model(image, meta), atol=1e-6)


def test_sequence_model_preprocessing_attributes():
    model = create_model("joint", num_meta_features=N_META)  # default compact_cnn
    assert model.backbone_name == "compact_cnn"
    assert model.input_size == 128 and model.mean == (0.5, 0.5, 0.5) and model.std == (0.5, 0.5, 0.5)
    out = model(torch.randn(2, 3, 128, 128), torch.randn(2, N_META))
    assert out.shape == (2, len(CLASSES))


# --------------------------------------------------------------------------------------
# LoRA
# --------------------------------------------------------------------------------------


def test_lora_adapters():
    model = _model("joint").eval()
    image, meta = _batch()
    before = model(image, meta)
    apply_lora(model, rank=2, alpha=4)
    wrapped = [m for m in model.modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == 4  # qkv + proj in each of the 2 blocks
    assert torch.equal(model(image, meta), before)  # B is zero at init
    adapters = {id(p) for p in model.adapter_parameters()}
    for p in model.backbone_parameters():
        assert p.requires_grad == (id(p) in adapters)
    model.freeze_backbone()
    assert not any(p.requires_grad for p in model.backbone_parameters())
    model.unfreeze_backbone()
    for p in model.backbone_parameters():
        assert p.requires_grad == (id(p) in adapters)
    # training moves only adapters (and head), base weights untouched
    base = wrapped[0].base.weight.clone()
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    F.cross_entropy(model(image, meta), torch.tensor([0, 1, 2, 3])).backward()
    assert wrapped[0].base.weight.grad is None and wrapped[0].lora_B.grad is not None
    opt.step()
    assert torch.equal(wrapped[0].base.weight, base)
    # recorded and rebuilt
    assert model.config["lora"] == {"rank": 2, "alpha": 4.0, "targets": ["qkv", "proj"], "dropout": 0.0}
    rebuilt = model_from_config(model.config)
    assert sum(isinstance(m, LoRALinear) for m in rebuilt.modules()) == 4
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_lora_rejected_where_meaningless():
    with pytest.raises(ValueError):
        apply_lora(_model("early"))
    with pytest.raises(ValueError):
        apply_lora(create_model("image", "compact_cnn"))
    m = apply_lora(_model("image"))
    with pytest.raises(ValueError):
        apply_lora(m)


def test_absent_images_are_zeroed_and_present_ones_passed_as_they_are():
    """The image branch sees zeros for an absent sample (no NaN reaches the backbone or its
    gradients) and, when every sample is present, the very tensor it was given (no copy)."""
    from SeqClassifierLib.model.fusion import _zero_missing

    x = torch.randn(3, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    x[1] = float("nan")
    out = _zero_missing(x, torch.tensor([True, False, True]))
    assert torch.equal(out[1], torch.zeros(3, 8, 8))
    assert torch.equal(out[0], x[0]) and torch.equal(out[2], x[2])
    assert out.is_contiguous(memory_format=torch.channels_last)
    y = torch.randn(2, 4)
    assert _zero_missing(y, torch.tensor([True, True])) is y
