"""A checkpoint trained on another metadata feature schema is refused with a clear message."""

from __future__ import annotations

import pytest

from SeqClassifierLib.inputs.features import FEATURE_SCHEMA_VERSION, N_FEATURES
from SeqClassifierLib.model.classifier import check_feature_schema


def test_same_schema_passes():
    check_feature_schema({"feature_schema_version": FEATURE_SCHEMA_VERSION,
                          "model": {"num_meta_features": N_FEATURES}}, "m.json")


@pytest.mark.parametrize("card", [
    {"feature_schema_version": "1.0", "model": {"num_meta_features": 144}},             # the old default model
    {"feature_schema_version": FEATURE_SCHEMA_VERSION, "model": {"num_meta_features": N_FEATURES + 1}},
    {"feature_schema_version": FEATURE_SCHEMA_VERSION.split(".")[0] + ".9", "model": {}},  # a minor bump too
    {"model": {"num_meta_features": N_FEATURES}},
])
def test_any_mismatch_is_refused_naming_both_schemas(card):
    with pytest.raises(ValueError) as err:
        check_feature_schema(card, "old.json")
    text = str(err.value)
    assert text.startswith("old.json: the model was trained on metadata feature schema")
    assert f"this SeqClassifier computes schema {FEATURE_SCHEMA_VERSION} with {N_FEATURES} features" in text
    assert "Retrain" in text


def test_cards_with_feature_names_are_compared_name_by_name():
    from SeqClassifierLib.inputs.features import FEATURE_NAMES

    names = list(FEATURE_NAMES)
    check_feature_schema({"feature_schema_version": FEATURE_SCHEMA_VERSION, "feature_names": names,
                          "model": {"num_meta_features": N_FEATURES}}, "m.json")
    older = [n for n in names if n not in ("num:flip", "miss:flip")] + ["num:gone", "miss:gone"]
    with pytest.raises(ValueError) as err:
        check_feature_schema({"feature_schema_version": FEATURE_SCHEMA_VERSION, "feature_names": older,
                              "model": {"num_meta_features": len(older)}}, "old.json")
    text = str(err.value)
    assert text.startswith("old.json: the model was trained on")
    assert "2 added in this SeqClassifier (num:flip, miss:flip)" in text and "2 missing from it (num:gone, miss:gone)" in text
    with pytest.raises(ValueError, match="another order"):
        check_feature_schema({"feature_names": names[::-1], "model": {"num_meta_features": N_FEATURES}}, "r.json")
    with pytest.raises(ValueError, match="meaning changed"):  # same names, another schema: still refused
        check_feature_schema({"feature_schema_version": "9.0", "feature_names": names,
                              "model": {"num_meta_features": N_FEATURES}}, "v.json")


def test_schema_is_checked_before_the_weights_are_read(tmp_path):
    """A model of another feature schema is refused from its card: the (here unreadable) weights
    are never hashed or read."""
    import json

    from SeqClassifierLib.model.classifier import Classifier, default_model_path

    shipped = default_model_path()
    if shipped is None:
        pytest.skip("no shipped model")
    card = json.loads(shipped.read_text())
    card["feature_names"] = list(card["feature_names"])[:-1] + ["a_feature_from_elsewhere"]
    (tmp_path / "m.json").write_text(json.dumps(card))
    (tmp_path / card["weights_file"]).write_bytes(b"not safetensors")  # would fail the hash check
    with pytest.raises(ValueError, match="a_feature_from_elsewhere"):
        Classifier(tmp_path / "m.json", device="cpu")
