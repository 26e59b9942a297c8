"""The shipped default model: trusted loading, and correct labels on the real studies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from SeqClassifierLib.model.checkpoint import load_checkpoint, read_card, sha256_file
from SeqClassifierLib.inputs.features import FEATURE_SCHEMA_VERSION
from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.model.classifier import Classifier, default_model_path
from SeqClassifierLib.model.decision import RULES as DECISION_RULES

REPO = Path(__file__).resolve().parents[3]
MODEL = REPO / "SeqClassifier" / "SeqClassifierLib" / "model" / "assets" / "seqclassifier_default.json"


def test_default_model_ships_with_a_complete_card():
    assert default_model_path() == MODEL
    card = read_card(MODEL)
    weights = MODEL.with_suffix(".safetensors")
    assert weights.stat().st_size < 25 * 1024 * 1024
    assert card["weights_sha256"] == sha256_file(weights)
    assert card["classes"] == list(CLASS_NAMES)
    assert card["feature_schema_version"] == FEATURE_SCHEMA_VERSION
    assert card["n_folds"] == 4 and card["model"]["strategy"] == "joint"
    assert "scripts/train_default.sh" in card["training"]["command"]
    assert card["training"]["wall_time_s"] > 0 and card["training"]["device"]
    assert 0.5 <= card["review_threshold"] <= 0.99 and card["temperature"] > 0
    assert card["metrics"]["out_of_fold"]["macro_f1"] >= 0.95
    # honest validation in the card: every real series predicted by a fold model that never saw its
    # source, and the review rule fitted on those predictions (training.by_source, model.review_rule)
    loso = card["leave_one_source_out"]
    assert loso["n_series"] >= 250 and len(loso["sources"]) >= 8
    assert loso["pooled"]["macro_f1"] >= 0.95 and loso["pooled"]["expected_calibration_error"] <= 0.03
    assert loso["pooled"]["macro_f1"] > loso["keyword_rule_macro_f1"]["pooled"]
    rule = card["review_rule"]
    assert rule == loso["review_rule"] and rule["fitted"]["n_predictions"] == loso["n_series"]
    assert rule["fitted"]["coverage"] >= 0.9 and rule["fitted"]["false_alarm_rate"] <= 0.1
    assert loso["review_rule_cross_validated"]["coverage"] >= 0.85
    assert set(card["decision_rules"]) == set(DECISION_RULES)
    assert set(loso["sources"]) <= set(card["training"]["folds_by_source"])  # (sources of '?' rows only: none)
    # data sources by name, never this machine's paths
    assert {s["name"] for s in card["data"]["sources"]} >= set(loso["sources"])
    assert "/work/" not in json.dumps(card["data"]) and "/work/" not in json.dumps(card["training"])
    assert set(card["ood"]["thresholds"]) == {"image", "meta", "fused", "header"}
    assert card["feature_schema_version"] == FEATURE_SCHEMA_VERSION and "attribute_group_dropout" in card["training"]
    from SeqClassifierLib.inputs.features import FEATURE_NAMES

    assert card["feature_names"] == list(FEATURE_NAMES)  # written into the card; the weights untouched


def test_default_model_classifies_every_real_series_correctly(prostatex_discovery, prostatex_labels):
    truth = {r["SeriesInstanceUID"]: r["label"] for r in prostatex_labels}
    clf = Classifier(device="cpu")
    assert clf.is_trained and clf.model_name.startswith("seqclassifier_default")
    preds = clf.classify(prostatex_discovery.series)
    got = {p.series_uid: p.label.value for p in preds}
    assert got == truth
    assert all(abs(sum(p.probabilities.values()) - 1.0) < 1e-3 for p in preds)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_both_precisions_give_the_same_labels(prostatex_discovery, prostatex_labels, precision):
    """bf16 (auto on a GPU or an AMX CPU) and fp32 agree on every real series, probabilities within 0.01."""
    truth = {r["SeriesInstanceUID"]: r["label"] for r in prostatex_labels}
    clf = Classifier(device="cpu", precision=precision)
    assert clf.precision == precision
    preds = clf.classify(prostatex_discovery.series)
    assert {p.series_uid: p.label.value for p in preds} == truth
    ref = {p.series_uid: p.probabilities for p in Classifier(device="cpu", precision="fp32").classify(
        prostatex_discovery.series)}
    worst = max(abs(p.probabilities[c] - ref[p.series_uid][c]) for p in preds for c in CLASS_NAMES)
    assert worst < (1e-6 if precision == "fp32" else 0.01)


def test_precision_auto_and_bad_values(monkeypatch):
    from SeqClassifierLib.model import classifier as predict

    monkeypatch.setattr(predict, "_cpu_has_native_bf16", lambda: False)
    assert predict.resolve_precision("auto", "cpu") == "fp32"
    assert predict.resolve_precision("auto", "cuda") == "bf16"
    monkeypatch.setattr(predict, "_cpu_has_native_bf16", lambda: True)
    assert predict.resolve_precision("auto", "cpu") == "bf16"
    assert predict.resolve_precision("fp32", "cuda") == "fp32"
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        Classifier(device="cpu", precision="fp16")


def test_metadata_only_when_the_image_is_unreadable(prostatex_discovery, monkeypatch):
    """A series whose pixels cannot be read is still classified from its headers, and flagged."""
    from SeqClassifierLib.inputs import prepared as predict  # where the classifier reads the slice
    from SeqClassifierLib.inputs.image import ImageUnavailable

    def broken(*args, **kwargs):
        raise ImageUnavailable("pixel data unreadable (test)")

    monkeypatch.setattr(predict, "load_center_slice", broken)
    t2 = [s for s in prostatex_discovery.series if s.description == "t2_tse_tra"]
    preds = Classifier(device="cpu").classify(t2)
    assert [p.label.value for p in preds] == ["T2w"] * len(t2)
    assert all(p.needs_review and "metadata only" in p.note for p in preds)


def test_tampered_default_model_is_refused(tmp_path):
    from SeqClassifierLib.model.checkpoint import CheckpointError

    card = tmp_path / "m.json"
    weights = tmp_path / "m.safetensors"
    data = bytearray(MODEL.with_suffix(".safetensors").read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    c = json.loads(MODEL.read_text())
    c["weights_file"] = weights.name
    card.write_text(json.dumps(c))
    with pytest.raises(CheckpointError, match="SHA-256|sha256|hash"):
        load_checkpoint(card)


EXPECTED = Path(__file__).resolve().parent / "expected_prostatex.json"


def test_default_model_matches_the_stored_result(prostatex_discovery):
    """Refactors must not change what the shipped model says: labels, groups and reasons exactly,
    probabilities within 1e-4 (fp32), against the result stored when the model was shipped
    (``Testing/Python/model/expected_prostatex.json``, written by ``scripts/store_expected.py``)."""
    expected = json.loads(EXPECTED.read_text())
    assert expected["model_sha256"] == read_card(MODEL)["weights_sha256"], "re-run scripts/store_expected.py"
    preds = {p.series_uid: p for p in Classifier(device="cpu", precision="fp32").classify(prostatex_discovery.series)}
    assert set(preds) == set(expected["series"])
    for uid, e in expected["series"].items():
        p = preds[uid]
        assert (p.label.value, p.group, p.review_reasons) == (e["label"], e["group"], e["review_reasons"]), uid
        assert max(abs(p.probabilities[c] - e["probabilities"][c]) for c in CLASS_NAMES) < 1e-4, uid
