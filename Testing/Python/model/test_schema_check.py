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
