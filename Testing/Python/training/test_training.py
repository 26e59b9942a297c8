"""Training pieces with concrete values, and a tiny end-to-end train -> classify -> evaluate on synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from SeqClassifierLib.app import cli
from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.training.folds import group_folds
from SeqClassifierLib.training.train import (augment_images, class_weights, classification_metrics,
                                       expected_calibration_error, fit_temperature, review_threshold)


def test_group_folds_never_split_a_patient():
    groups = [f"p{i % 7}" for i in range(50)]
    folds = group_folds(groups, 4, seed=3)
    for g in set(groups):
        assert len({f for f, gg in zip(folds, groups) if gg == g}) == 1
    assert set(folds) == {0, 1, 2, 3}
    assert folds == group_folds(groups, 4, seed=3)  # deterministic


def test_class_weights_inverse_frequency():
    w = class_weights([0, 0, 0, 1, 2, 2])
    # counts 3,1,2,0,0 -> inverse 2,6,3 over present classes, normalised to mean 1
    np.testing.assert_allclose(w.numpy(), [2 / 11 * 3, 6 / 11 * 3, 3 / 11 * 3, 0, 0], rtol=1e-6)


def test_temperature_scaling_recovers_the_scale():
    torch.manual_seed(0)
    y = torch.randint(0, 5, (400,))
    logits = torch.randn(400, 5)
    logits[torch.arange(400), y] += 3.0
    t1 = fit_temperature(logits, y)
    t4 = fit_temperature(logits * 4.0, y)
    assert t4 == pytest.approx(4.0 * t1, rel=1e-3)
    assert fit_temperature(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)) == 1.0


def test_review_threshold_sits_above_the_most_confident_error():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    y = np.array([0, 1, 1, 1])  # the 0.6-confident prediction is wrong
    assert review_threshold(probs, y) == pytest.approx(0.601)


def test_metrics_and_ece_concrete_values():
    y = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 2])
    m = classification_metrics(y, pred)
    assert m["accuracy"] == 0.8
    assert m["per_class"]["T2w"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert m["per_class"]["DWI"]["precision"] == pytest.approx(0.6667, abs=1e-4)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1.0) / 3, abs=1e-4)
    assert m["confusion"][0] == [1, 1, 0, 0, 0]
    probs = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert expected_calibration_error(probs, np.array([0, 1])) == pytest.approx(0.5)


def test_augmentation_keeps_shape_and_range():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 32, 32)
    out = augment_images(x, gen)
    assert out.shape == x.shape and float(out.min()) >= 0.0 and out.max() <= torch.tensor(1.2)
    assert not torch.allclose(out, x)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    from SeqClassifierLib.synth import generate_studies

    root = tmp_path_factory.mktemp("synth")
    generate_studies(root, studies=3, seed=11, size="tiny")
    return root


def test_train_classify_evaluate_end_to_end(tiny_study, tmp_path, capsys):
    model = tmp_path / "tiny.json"
    code = cli.main(["train", "--labels", str(tiny_study / "labels.csv"), "--data", str(tiny_study),
                     "--out", str(model), "--folds", "3", "--max-epochs", "2", "--batch-size", "16", "--quiet"])
    assert code == 0
    card = json.loads(model.read_text())
    assert card["n_folds"] == 3 and card["classes"] == list(CLASS_NAMES)
    assert card["training"]["recipe"] == "scratch" and card["training"]["strategy"] == "joint"
    assert card["data"]["n_patients"] == 3 and sum(card["data"]["per_class"].values()) == card["data"]["n_series"]
    assert 0.05 <= card["temperature"] <= 20 and 0.5 <= card["review_threshold"] <= 0.95
    assert "train --labels" in card["training"]["command"] or card["training"]["command"].startswith("seqclassifier")
    assert len(card["history"]) >= 3 * 1
    capsys.readouterr()
    code = cli.main(["classify", str(tiny_study), "--model", str(model), "--format", "json", "--quiet"])
    rows = json.loads(capsys.readouterr().out)["series"]
    assert code == cli.EXIT_SKIPPED  # labels.csv beside the study is not DICOM
    assert rows and all(r["label"] in CLASS_NAMES for r in rows)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-3 for r in rows)
    out_dir = tmp_path / "report"
    code = cli.main(["evaluate", "--models", str(model), "--labels", str(tiny_study / "labels.csv"),
                     "--data", str(tiny_study), "--out", str(out_dir)])
    text = capsys.readouterr().out
    assert code == 0 and "macro-F1" in text and "joint" in text
    assert (out_dir / "report.json").is_file()
    assert len(list(out_dir.glob("confusion_*.png"))) == 1 and len(list(out_dir.glob("reliability_*.png"))) == 1
