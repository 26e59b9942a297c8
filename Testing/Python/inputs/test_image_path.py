"""One image path: training's sample loader and the classifier's preparation give the same input tensor.

Real ProstateX series (with the shipped model's preprocessing, compact_cnn: 384, 320 and 256 px slices shrunk,
128 x 84 DWI padded) and synthetic series (40-56 px, upsampled to another backbone's 224 px) go
through ``load_samples`` -> ``_Tensors`` -> ``_forward_batch`` with augmentation off, and through
``Classifier._prepare``; the tensors must be identical, bit for bit.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from SeqClassifierLib.inputs.features import FEATURE_SCHEMA_VERSION, N_FEATURES
from SeqClassifierLib.inputs.image import load_center_slice, model_slice, prepare_image, standardize
from SeqClassifierLib.model.backbones import get_backbone_config
from SeqClassifierLib.model.card import Preprocessing
from SeqClassifierLib.model.checkpoint import save_checkpoint
from SeqClassifierLib.model.classifier import Classifier
from SeqClassifierLib.model.fusion import create_model
from SeqClassifierLib.training import train as T


def _training_inputs(samples, model) -> torch.Tensor:
    """What the training loop feeds the model for ``samples`` with augmentation off (validation batches)."""
    cfg = T.TrainConfig()
    data = T._Tensors(samples, model.input_size, "cpu")
    idx = np.arange(len(samples))
    gen = torch.Generator().manual_seed(0)
    images, *_ = T._forward_batch(model, data, idx, cfg, False, gen, np.random.default_rng(0))
    return images


def _assert_same_inputs(samples, classifier: Classifier, model) -> None:
    assert samples and all(s.image is not None for s in samples)
    trained_on = _training_inputs(samples, model)
    for s, x in zip(samples, trained_on):
        prepared = classifier._prepare(s.record, None)  # a PreparedInput
        img, note = prepared.image, prepared.image_note
        assert note == "" and img is not None, note
        assert img.dtype == np.float32 and img.shape == tuple(x.shape)
        assert torch.equal(x, torch.from_numpy(img)), (
            f"{s.record.description}: max difference {float((x - torch.from_numpy(img)).abs().max())}")


@pytest.fixture(scope="module")
def default_classifier(tmp_path_factory):
    """A classifier with the shipped model's architecture and preprocessing (compact_cnn, 128 px, 0.5/0.5),
    from a checkpoint written here: the image path is tested whichever model ships."""
    torch.manual_seed(0)
    model = create_model("joint", backbone="compact_cnn", num_meta_features=N_FEATURES).eval()
    card = {"feature_schema_version": FEATURE_SCHEMA_VERSION,
            "preprocessing": {"input_size": model.input_size, "mean": list(model.mean), "std": list(model.std)}}
    path = save_checkpoint(tmp_path_factory.mktemp("model") / "m.json", [model, model], card)
    clf = Classifier(path, device="cpu", precision="fp32")
    assert clf.is_trained and clf.card.uses_image
    assert clf.card.preprocessing == Preprocessing(128, (0.5,) * 3, (0.5,) * 3)
    return clf


def test_real_series_same_input_in_training_and_inference(prostatex, default_classifier):
    size = default_classifier.card.preprocessing.input_size
    samples = T.load_samples([prostatex / "labels.csv"], [prostatex], input_size=size, log=lambda m: None)
    assert len(samples) == 18
    fold = default_classifier._model.models[0]  # the classifier's own model: architecture and mean/std
    assert fold.input_size == size
    _assert_same_inputs(samples, default_classifier, fold)


def test_synthetic_series_same_input_at_another_size(tmp_path, default_classifier, monkeypatch):
    from SeqClassifierLib.synth import generate_studies

    generate_studies(tmp_path / "synth", studies=1, seed=5, size="tiny")
    # The preprocessing of another registered backbone (224 px, ImageNet mean/std instead of the shipped
    # model's 128 px and 0.5): the card of such a model asks the classifier for it, training reads it
    # from the model (input_size / mean / std / uses_image are all _forward_batch uses of the model).
    bb = get_backbone_config("dinov2_s14")
    size, mean, std = bb.input_size, bb.mean, bb.std
    model = SimpleNamespace(input_size=size, mean=mean, std=std, uses_image=True)
    monkeypatch.setattr(default_classifier, "card", dataclasses.replace(
        default_classifier.card, preprocessing=Preprocessing(size, tuple(mean), tuple(std))))
    samples = T.load_samples([tmp_path / "synth" / "labels.csv"], [tmp_path / "synth"], input_size=size,
                             log=lambda m: None)
    assert len(samples) >= 5
    shapes = {load_center_slice(s.record).shape for s in samples}
    assert all(max(h, w) < size for h, w in shapes), shapes  # every slice is upsampled
    _assert_same_inputs(samples, default_classifier, model)


def test_prepare_image_is_standardized_model_slice(prostatex_discovery):
    rec = prostatex_discovery.series[0]
    sq = model_slice(rec, 128)
    assert sq.shape == (128, 128) and sq.dtype == np.float32 and 0.0 <= sq.min() and sq.max() <= 1.0
    x = prepare_image(rec, 128, (0.2, 0.4, 0.6), (0.5, 0.25, 0.125))
    np.testing.assert_array_equal(x, standardize(sq, (0.2, 0.4, 0.6), (0.5, 0.25, 0.125)))
    np.testing.assert_allclose(x[2], (sq - 0.6) / 0.125, rtol=1e-6)
    with pytest.raises(ValueError, match="square 2D image"):
        standardize(np.zeros((4, 5), np.float32), (0.5,) * 3, (0.5,) * 3)


def test_augmentation_changes_the_training_input_and_only_it(prostatex, default_classifier):
    samples = T.load_samples([prostatex / "labels.csv"], [prostatex], input_size=128, log=lambda m: None)[:4]
    fold = default_classifier._model.models[0]
    cfg = T.TrainConfig(p_drop_meta=0.0, p_drop_image=0.0)
    data = T._Tensors(samples, 128, "cpu")
    off = _training_inputs(samples, fold)
    on, *_ = T._forward_batch(fold, data, np.arange(4), cfg, True, torch.Generator().manual_seed(1),
                              np.random.default_rng(1))
    assert on.shape == off.shape
    assert all(not torch.equal(a, b) for a, b in zip(on, off))
    assert torch.equal(off, _training_inputs(samples, fold))  # evaluation input is deterministic


def test_training_refuses_samples_cached_at_another_size(prostatex, tmp_path):
    samples = T.load_samples([prostatex / "labels.csv"], [prostatex], input_size=64, log=lambda m: None)
    with pytest.raises(ValueError, match=r"cached at \(64, 64\) px but backbone 'compact_cnn' takes 128 x 128"):
        T.train(samples, T.TrainConfig(folds=2, max_epochs=1, device="cpu"), tmp_path / "m.json", log=lambda m: None)
