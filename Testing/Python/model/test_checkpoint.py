"""Tests of trusted checkpoints (safetensors weights + JSON card)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
pytest.importorskip("safetensors")

_LIB_PARENT = Path(__file__).resolve().parents[3] / "SeqClassifier"
if str(_LIB_PARENT) not in sys.path:
    sys.path.insert(0, str(_LIB_PARENT))

from SeqClassifierLib.model.checkpoint import (  # noqa: E402
    CARD_FORMAT_VERSION,
    CheckpointError,
    EnsembleModel,
    load_checkpoint,
    read_card,
    save_checkpoint,
    sha256_file,
)
from SeqClassifierLib.model.fusion import STRATEGIES, create_model  # noqa: E402
from SeqClassifierLib.model.lora import apply_lora  # noqa: E402
from SeqClassifierLib.labels import CLASS_NAMES, SequenceLabel  # noqa: E402

N_META = 5


def _folds(strategy="joint", n=2, backbone="vit_tiny_test", lora=False):
    models = []
    for seed in range(n):
        torch.manual_seed(100 + seed)
        m = create_model(strategy, backbone, num_meta_features=N_META)
        if lora:
            apply_lora(m, rank=2)
            for p in m.adapter_parameters():  # make adapters non-trivial
                torch.nn.init.normal_(p, std=0.1)
        models.append(m.eval())
    return models


def _batch(size=32, n=3):
    torch.manual_seed(7)
    return torch.randn(n, 3, size, size), torch.randn(n, N_META)


def _expected_probs(models, image, meta, temperature=1.0, **kw):
    with torch.no_grad():
        probs = [torch.softmax(m(image, meta, **kw) / temperature, dim=1) for m in models]
    return torch.stack(probs).mean(0)


CARD = {
    "feature_schema_version": 3,
    "preprocessing": {"input_size": 32, "window": [0.5, 99.5]},
    "training_data": {"n_series": 120, "sites": ["a", "b"], "counts": np.array([10, 20, 30, 40, 20])},
    "metrics": {"macro_f1": np.float64(0.97), "auc": float("nan")},
    "temperature": 1.5,
    "review_threshold": 0.8,
    "default_label": SequenceLabel.OTHER,
}


def test_round_trip_identical_outputs(tmp_path):
    models = _folds("joint", n=2)
    card_path = save_checkpoint(tmp_path / "model", models, CARD)
    assert card_path == tmp_path / "model.json"
    weights = tmp_path / "model.safetensors"
    assert weights.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]  # no temp files

    image, meta = _batch()
    expected = _expected_probs(models, image, meta, temperature=1.5)
    for path in (card_path, weights, tmp_path / "model", str(tmp_path / "model")):
        ensemble, card = load_checkpoint(path)
        assert isinstance(ensemble, EnsembleModel) and not ensemble.training
        assert len(ensemble.models) == 2 and ensemble.card == card
        with torch.no_grad():
            probs = ensemble(image, meta)
        assert probs.shape == (3, len(CLASS_NAMES))
        assert torch.allclose(probs.sum(1), torch.ones(3), atol=1e-5)
        assert torch.allclose(probs, expected, atol=1e-6)
    for original, loaded in zip(models, ensemble.models):
        for (k1, v1), (k2, v2) in zip(original.state_dict().items(), loaded.state_dict().items()):
            assert k1 == k2 and torch.equal(v1, v2)
    assert ensemble.input_size == 32 and ensemble.backbone_name == "vit_tiny_test"
    assert ensemble.strategy == "joint" and ensemble.temperature == 1.5


def test_card_contents(tmp_path):
    models = _folds("joint", n=2)
    card_path = save_checkpoint(tmp_path / "m.json", models, CARD)
    card = json.loads(card_path.read_text())
    assert card == read_card(tmp_path / "m")
    assert card["format_version"] == CARD_FORMAT_VERSION
    assert card["classes"] == list(CLASS_NAMES)
    assert card["model"] == models[0].config
    assert card["n_folds"] == 2
    assert card["weights_file"] == "m.safetensors"
    assert card["weights_sha256"] == sha256_file(tmp_path / "m.safetensors")
    assert card["feature_schema_version"] == 3
    assert card["training_data"]["counts"] == [10, 20, 30, 40, 20]
    assert card["metrics"] == {"macro_f1": 0.97, "auc": None}  # strict JSON: NaN -> null
    assert card["review_threshold"] == 0.8 and card["temperature"] == 1.5
    assert card["default_label"] == "OTHER"


def test_safetensors_header_is_minimal(tmp_path):
    from safetensors import safe_open

    save_checkpoint(tmp_path / "m", _folds("image", n=3), {})
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
        keys = list(fh.keys())
    assert set(meta) <= {"format", "seqclassifier", "format_version", "n_folds"}
    assert meta["n_folds"] == "3"
    assert {k.split(".", 1)[0] for k in keys} == {"fold0", "fold1", "fold2"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_round_trip_every_strategy(tmp_path, strategy):
    models = _folds(strategy, n=2)
    save_checkpoint(tmp_path / "m", models, {})
    ensemble, card = load_checkpoint(tmp_path / "m")
    assert "temperature" not in card.raw and card.temperature == ensemble.temperature == 1.0
    image, meta = _batch()
    present = torch.tensor([True, False, True])
    with torch.no_grad():
        got = ensemble(image, meta, present, present)
    assert torch.allclose(got, _expected_probs(models, image, meta, image_present=present, meta_present=present),
                          atol=1e-6)


def test_round_trip_lora(tmp_path):
    models = _folds("joint", n=2, lora=True)
    save_checkpoint(tmp_path / "m", models, {})
    ensemble, card = load_checkpoint(tmp_path / "m")
    assert card.raw["model"]["lora"]["rank"] == card.model.lora.rank == 2
    image, meta = _batch()
    with torch.no_grad():
        assert torch.allclose(ensemble(image, meta), _expected_probs(models, image, meta), atol=1e-6)


def test_tampered_weights_are_refused(tmp_path):
    save_checkpoint(tmp_path / "m", _folds("image", n=1), {})
    weights = tmp_path / "m.safetensors"
    good = sha256_file(weights)
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # flip a byte inside the tensor data
    weights.write_bytes(bytes(data))
    bad = sha256_file(weights)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "m.json")
    msg = str(info.value)
    assert str(weights) in msg and good in msg and bad in msg


def test_card_pointing_to_missing_weights(tmp_path):
    save_checkpoint(tmp_path / "m", _folds("metadata", n=1), {})
    (tmp_path / "m.safetensors").unlink()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "m.json")
    assert "m.safetensors" in str(info.value) and "does not exist" in str(info.value)


def test_missing_card(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "nothing.safetensors")
    assert "nothing.json" in str(info.value)


def test_wrong_classes_or_newer_format_are_refused(tmp_path):
    card_path = save_checkpoint(tmp_path / "m", _folds("metadata", n=1), {})
    card = json.loads(card_path.read_text())
    card["classes"] = ["T2w", "DWI", "ADC", "DCE", "FLAIR"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="classes"):
        load_checkpoint(card_path)
    card["classes"] = list(CLASS_NAMES)
    card["format_version"] = CARD_FORMAT_VERSION + 1
    card_path.write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="format_version"):
        load_checkpoint(card_path)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "m", _folds("image", n=1), {})

    def forbidden(*a, **k):
        raise AssertionError("pickle loading is not allowed")

    monkeypatch.setattr(torch, "load", forbidden)
    import pickle

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    ensemble, _ = load_checkpoint(tmp_path / "m")
    assert len(ensemble.models) == 1


def test_save_validation(tmp_path):
    a = create_model("joint", "vit_tiny_test", num_meta_features=N_META)
    b = create_model("joint", "vit_tiny_test", num_meta_features=N_META + 1)
    with pytest.raises(ValueError, match="configuration"):
        save_checkpoint(tmp_path / "m", [a, b], {})
    with pytest.raises(ValueError, match="weights_sha256"):
        save_checkpoint(tmp_path / "m", [a], {"weights_sha256": "0" * 64})
    with pytest.raises(ValueError, match="classes"):
        save_checkpoint(tmp_path / "m", [a], {"classes": ["a", "b", "c", "d", "e"]})
    with pytest.raises(ValueError, match="temperature"):
        save_checkpoint(tmp_path / "m", [a], {"temperature": 0})
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "m", [create_model("image", "vit_tiny_test", num_classes=3)], {})
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "m", [], {})
    assert not any(tmp_path.iterdir())


def test_overwrite_replaces_both_files(tmp_path):
    save_checkpoint(tmp_path / "m", _folds("image", n=1), {"note": "first"})
    models = _folds("joint", n=2)
    save_checkpoint(tmp_path / "m", models, {"note": "second"})
    ensemble, card = load_checkpoint(tmp_path / "m")
    assert card.raw["note"] == "second" and card.n_folds == 2 and ensemble.strategy == "joint"
    assert math.isclose(float(ensemble(*_batch()).sum()), 3.0, rel_tol=1e-5)


@pytest.mark.parametrize("strategy", ["joint", "metadata"])
@pytest.mark.parametrize("dtype", [None, torch.float16])
def test_builtin_models_load_without_initialising(tmp_path, strategy, dtype):
    """Ours (compact_cnn, or no backbone) are built on the meta device and take the checkpoint's
    tensors: the same values as an ordinary build + copy, fp32 even from fp16, and no random numbers
    drawn (the global RNG is where it was)."""
    models = _folds(strategy, n=2, backbone="compact_cnn")
    save_checkpoint(tmp_path / "m", models, {}, dtype=dtype)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    ensemble, _ = load_checkpoint(tmp_path / "m")
    assert torch.equal(torch.get_rng_state(), before)
    for original, loaded in zip(models, ensemble.models):
        a, b = original.state_dict(), loaded.state_dict()
        assert list(a) == list(b)
        for k in a:
            want = a[k].to(dtype).to(a[k].dtype) if dtype is not None and a[k].is_floating_point() else a[k]
            assert b[k].dtype == a[k].dtype and not b[k].is_meta and torch.equal(b[k], want), k
    image, meta = torch.randn(2, 3, 128, 128), torch.randn(2, N_META)
    with torch.no_grad():
        assert ensemble(image, meta).shape == (2, len(CLASS_NAMES))


def test_a_tensor_outside_the_state_dict_is_built_the_ordinary_way(tmp_path, monkeypatch):
    """A module that makes a tensor in __init__ and does not save it (a non-persistent buffer) would
    keep it on the meta device: such a model is built and initialised as before."""
    import SeqClassifierLib.model.checkpoint as checkpoint

    save_checkpoint(tmp_path / "m", _folds("metadata", n=1, backbone="compact_cnn"), {})
    original = checkpoint.model_from_config

    def with_buffer(config):
        model = original(config)
        model.register_buffer("grid", torch.arange(3.0), persistent=False)
        return model

    monkeypatch.setattr(checkpoint, "model_from_config", with_buffer)
    ensemble, _ = load_checkpoint(tmp_path / "m")
    assert torch.equal(ensemble.models[0].grid, torch.arange(3.0))
    assert not any(t.is_meta for t in ensemble.parameters())


def test_mismatched_tensors_are_refused_on_both_paths(tmp_path):
    """A fold whose tensors do not fit the card's architecture is refused, built on meta or not."""
    for backbone in ("compact_cnn", "vit_tiny_test"):
        save_checkpoint(tmp_path / backbone, _folds("joint", n=1, backbone=backbone), {})
        card = json.loads((tmp_path / f"{backbone}.json").read_text())
        card["model"]["meta_hidden"] = 7  # the saved tensors are 128 wide
        (tmp_path / f"{backbone}.json").write_text(json.dumps(card))
        with pytest.raises(CheckpointError, match="do not match the model config"):
            load_checkpoint(tmp_path / backbone)
