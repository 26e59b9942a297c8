"""Distance to training data (model/ood.py), review reasons on real predictions, and the shortcut audit.

A small joint model is trained once on tiny synthetic studies (seconds); its checkpoint carries the
distance statistics, and classification of unlike inputs must say so.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from SeqClassifierLib.app import cli
from SeqClassifierLib.dicom.discovery import discover_series
from SeqClassifierLib.labels import SequenceLabel
from SeqClassifierLib.model import checkpoint as ckpt
from SeqClassifierLib.model.classifier import Classifier
from SeqClassifierLib.model.ood import distances, fit_statistics, stats_from_tensors, stats_to_tensors, threshold
from SeqClassifierLib.model.reasons import KINDS, reason_kind, review_reasons
from SeqClassifierLib.inputs.quality import ImageQuality
from SeqClassifierLib.training.audit import shortcut_audit


def test_mahalanobis_statistics_concrete():
    torch.manual_seed(0)
    x = torch.cat([torch.randn(200, 3) + torch.tensor([5.0, 0, 0]), torch.randn(200, 3) - torch.tensor([5.0, 0, 0])])
    y = torch.cat([torch.zeros(200, dtype=torch.long), torch.ones(200, dtype=torch.long)])
    stats = fit_statistics(x, y, num_classes=3)
    assert torch.isnan(stats["means"][2]).all() and stats["means"][0, 0] == pytest.approx(5.0, abs=0.2)
    d = distances(torch.tensor([[5.0, 0, 0], [-5.0, 0, 0], [0.0, 0, 40.0]]), stats)
    assert d[0] < 0.5 and d[1] < 0.5 and d[2] > 20
    assert threshold(np.arange(101.0), 0.01) == pytest.approx(99.0)
    back = stats_from_tensors(stats_to_tensors([{"meta": stats}]), 1)
    assert torch.equal(back[0]["meta"]["precision"], stats["precision"])
    with pytest.raises(ValueError, match="unexpected OOD tensor"):
        stats_from_tensors({"ood.fold0.nowhere.means": stats["means"]}, 1)


def test_review_reasons_order_and_kinds():
    q = ImageQuality(0.1, 1.0, 0.9, 0.0, ["low signal-to-noise (1.0)"])
    reasons = review_reasons(0.4, 0.8, image_note="", unlike=["unlike training data (meta distance 30.0 > 20.0)"],
                             conflicts=["ImageType says ADC"], quality=q)
    assert [reason_kind(r) for r in reasons] == list(KINDS[:4])
    assert reasons[0] == "low confidence (0.40 < 0.80)" and reasons[2] == "evidence conflict: ImageType says ADC"
    assert review_reasons(0.95, 0.8) == []


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from SeqClassifierLib.synth import generate_studies

    root = tmp_path_factory.mktemp("synth_ood")
    generate_studies(root, studies=3, seed=21, size="tiny")
    model = root.parent / "ood_model" / "m.json"
    code = cli.main(["train", "--labels", str(root / "labels.csv"), "--data", str(root), "--out", str(model),
                     "--folds", "3", "--max-epochs", "20", "--batch-size", "16", "--quiet"])
    assert code == 0
    return root, model


def test_checkpoint_carries_hash_checked_ood_statistics(tiny_model, tmp_path):
    root, model = tiny_model
    card = json.loads(model.read_text())
    assert set(card["ood"]["thresholds"]) == {"image", "meta", "fused", "header"}
    assert all(0 <= v <= 0.1 for v in card["ood"]["held_out_flagged"].values())
    ens, _ = ckpt.load_checkpoint(model)
    assert ens.ood is not None and ens.ood.places == ["image", "meta", "fused", "header"]
    # the statistics live in the weights file: changing one byte of it is refused by the hash check
    weights = model.with_suffix(".safetensors")
    bad = tmp_path / "m.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    bad.write_bytes(bytes(data))
    (tmp_path / "m.json").write_text(model.read_text())
    with pytest.raises(ckpt.CheckpointError, match="SHA-256"):
        ckpt.load_checkpoint(tmp_path / "m.json")


def _scores(clf, records):
    """Predictions and the per-place distances of ``records``."""
    seen = {}
    original = clf._model.forward_with_scores

    def spy(*args, **kwargs):
        probs, scores = original(*args, **kwargs)
        for place, values in scores.items():
            seen.setdefault(place, []).extend(float(v) for v in values)
        return probs, scores

    clf._model.forward_with_scores = spy
    try:
        preds = clf.classify(records)
    finally:
        clf._model.forward_with_scores = original
    return preds, {k: np.array(v) for k, v in seen.items()}


def test_unlike_inputs_are_flagged_and_reasons_explain_the_flag(tiny_model, monkeypatch):
    root, model = tiny_model
    clf = Classifier(model, device="cpu", precision="fp32")
    records = discover_series(root).series
    _, base = _scores(clf, records)
    # An MR header with parameters no series had, over an image of pure noise.
    from SeqClassifierLib.inputs import prepared as C  # where the classifier reads the slice
    rng = np.random.default_rng(0)
    monkeypatch.setattr(C, "load_center_slice", lambda rec: rng.normal(1000, 300, (64, 64)).clip(0))
    odd = [dataclasses.replace(r, series_uid=r.series_uid + ".9", description="zq_unusual_name",
                               header={**r.header, "EchoTime": 900.0, "RepetitionTime": 90000.0,
                                       "FlipAngle": 179.0, "ImageType": ["ORIGINAL", "PRIMARY", "ZZZ"]})
           for r in records[:8]]
    _, far = _scores(clf, odd)
    for place in ("image", "header"):  # farther than the training series themselves
        assert np.median(far[place]) > 1.3 * np.median(base[place]), place
    # With thresholds just above the training series' own distances, every odd series is flagged
    # "unlike training data" with its distance and threshold, and no training series is.
    clf._model.ood.thresholds = {p: 1.05 * float(base[p].max()) for p in ("image", "header")}
    preds = clf.classify(odd)
    assert all(any(reason_kind(x) == "unlike training data" for x in p.review_reasons) for p in preds)
    assert all(any(reason_kind(x) == "low image quality" for x in p.review_reasons) for p in preds)
    monkeypatch.undo()
    again = clf.classify(records)
    assert not any(reason_kind(x) == "unlike training data" for p in again for x in p.review_reasons)
    assert all(p.needs_review == bool(p.review_reasons) for p in preds + again)


def test_adc_typed_series_predicted_dwi_is_an_evidence_conflict(tiny_model):
    root, model = tiny_model
    clf = Classifier(model, device="cpu", precision="fp32")
    rec = next(r for r in discover_series(root).series if "ADC" in r.header.get("ImageType", []))
    probs = np.array([0.0, 0.97, 0.01, 0.01, 0.01])  # a sure DWI
    pred = clf._to_prediction(rec, probs, "")
    assert pred.label is SequenceLabel.DWI and pred.needs_review
    assert "evidence conflict: ImageType says ADC" in pred.review_reasons


def test_shortcut_audit_counts_flips_per_group(tiny_model):
    root, model = tiny_model
    from SeqClassifierLib.training.train import labelled_series

    found = labelled_series([root / "labels.csv"], [root], log=lambda m: None)
    clf = Classifier(model, device="cpu", precision="fp32")
    report = shortcut_audit(clf, [r for r, _, _ in found], [y for _, y, _ in found])
    groups = [r.group for r in report.rows]
    assert groups[-1] == "context" and "names" in groups and "contrast_timing" in groups
    for row in report.rows:
        assert sum(n for n, _ in row.per_class.values()) == len(found)
        assert all(0 <= k <= n for n, k in row.per_class.values())
    assert report.passed == all(r.max_rate <= 0.05 for r in report.rows if r.group != "context")
    assert "PASS" in report.table() or "FAIL" in report.table()

    class Shortcut:  # a "model" that only reads ContrastBolusAgent: the audit must catch it
        def classify(self, records):
            from SeqClassifierLib.records import Prediction

            return [Prediction(r.series_uid, SequenceLabel.DCE if r.header.get("ContrastBolusAgent") else
                               SequenceLabel.OTHER, 0.9, {}, False, "shortcut") for r in records]

    bad = shortcut_audit(Shortcut(), [r for r, _, _ in found], [y for _, y, _ in found])
    assert not bad.passed and bad.worst[0] == "contrast_timing" and bad.worst[1] == "DCE" and bad.worst[2] == 1.0


def test_reasons_are_typed_values_that_read_as_before():
    import json
    import pickle

    from SeqClassifierLib.model.reasons import Reason, ReasonKind, as_reason

    u = Reason.unlike_training("image", 31.26, 20.0)
    assert u == "unlike training data (image distance 31.3 > 20.0)" and u.kind is ReasonKind.UNLIKE_TRAINING
    assert u.place == "image" and json.dumps([u]) == '["unlike training data (image distance 31.3 > 20.0)"]'
    back = pickle.loads(pickle.dumps(u))
    assert (back, back.kind, back.place) == (u, u.kind, "image")
    low = as_reason("low confidence (0.50 < 0.80)")  # text read back from a file
    assert low.kind is ReasonKind.LOW_CONFIDENCE and reason_kind(low) == "low confidence"
    with pytest.raises(ValueError):
        as_reason("no such reason")
