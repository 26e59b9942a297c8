"""The typed model card: the shipped card parses unchanged; every sizing number is range-checked first."""

from __future__ import annotations

import json
import shutil

import pytest

from SeqClassifierLib.model import card as C
from SeqClassifierLib.model import checkpoint as ckpt
from SeqClassifierLib.model.classifier import DEFAULT_MODEL_NAME, assets_dir

SHIPPED = assets_dir() / DEFAULT_MODEL_NAME


def _raw() -> dict:
    return json.loads(SHIPPED.read_text(encoding="utf-8"))


def test_shipped_card_parses_to_its_own_values():
    raw = _raw()
    card = C.load_card(SHIPPED)
    assert card.path == SHIPPED and card.raw == raw
    assert card.classes == tuple(raw["classes"]) and card.n_folds == raw["n_folds"]
    assert card.model.strategy == raw["model"]["strategy"] and card.model.config == raw["model"]
    assert card.model.num_meta_features == raw["model"]["num_meta_features"]
    assert card.preprocessing == C.Preprocessing(raw["preprocessing"]["input_size"],
                                                 tuple(raw["preprocessing"]["mean"]), tuple(raw["preprocessing"]["std"]))
    assert card.temperature == raw["temperature"] and card.review_threshold == raw["review_threshold"]
    assert dict(card.ood_thresholds) == raw["ood"]["thresholds"]
    assert card.weights_sha256 == raw["weights_sha256"] and card.display_name("x") == f"{raw['name']}@{raw['version']}"


#: (dotted field, a value past its range) for every number of LIMITS a card can hold
TOO_BIG = [(name, int(hi) + 1) for name, (lo, hi) in C.LIMITS.items()
           if name not in ("format_version", "training.seed")]


def _with(raw: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    obj = raw
    for key in parents:
        if not isinstance(obj.get(key), dict):
            obj[key] = {"rank": 2, "alpha": 8.0, "targets": [], "dropout": 0.0} if key == "lora" else {}
        obj = obj[key]
    obj[last] = value
    return raw


@pytest.mark.parametrize("field, value", TOO_BIG, ids=[f for f, _ in TOO_BIG])
def test_every_sizing_number_is_refused_before_anything_is_built(field, value, tmp_path, monkeypatch):
    """The card beside the real weights, one number past its range: one line naming the file and the field,
    and no model (nor any tensor) is built from it."""
    raw = _with(_raw(), field, value)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    shutil.copyfile(SHIPPED.with_suffix(".safetensors"), tmp_path / raw["weights_file"])
    built = []
    monkeypatch.setattr(ckpt, "model_from_config", lambda cfg: built.append(cfg))
    monkeypatch.setattr(ckpt, "_st_load_file", lambda *a, **k: built.append("weights"))
    with pytest.raises(C.CardError) as info:
        ckpt.load_checkpoint(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and f"{field} = {value}" in msg and "out of range" in msg, msg
    assert built == []


@pytest.mark.parametrize("bad, expect", [
    ({"model.num_meta_features": True}, "model.num_meta_features = True is not an integer"),
    ({"model.meta_hidden": "128"}, "model.meta_hidden = '128' is not an integer"),
    ({"preprocessing.mean": [0.5] * 4}, "preprocessing.mean has 4 values"),
    ({"preprocessing.std": [0.5, -1.0, 0.5]}, "preprocessing.std[1] = -1.0 is out of range"),
    ({"temperature": float("inf")}, "temperature = inf is out of range"),
    ({"review_threshold": -0.1}, "review_threshold = -0.1 is out of range"),
    ({"model.strategy": None}, "model.strategy is missing"),
    ({"feature_names": "a,b"}, "feature_names is not a list"),
    ({"weights_file": "../w.safetensors"}, "names a weights file outside its folder"),
])
def test_wrong_types_and_values_name_the_field(bad, expect):
    raw = _raw()
    for k, v in bad.items():
        _with(raw, k, v)
    with pytest.raises(C.CardError, match="^checkpoint card m.json") as info:
        C.parse_card(raw, "m.json")
    assert expect in str(info.value), str(info.value)


def test_an_oversized_card_file_is_not_read(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    with open(path, "wb") as fh:
        fh.truncate(C.MAX_CARD_BYTES + 1)
    monkeypatch.setattr(C.json, "loads", lambda *a: pytest.fail("the oversized card was parsed"))
    with pytest.raises(C.CardError, match=r"m\.json is \d+ bytes; a card is at most 16 MiB \(not read\)"):
        C.load_card(path)


def test_classifier_from_an_ensemble_in_memory_predicts_as_the_loaded_one():
    """held_out builds its per-fold classifiers with Classifier.from_ensemble: same rows as loading the file."""
    import corpus
    from SeqClassifierLib.dicom.discovery import discover_series
    from SeqClassifierLib.model.classifier import Classifier
    from SeqClassifierLib.model.reasons import Reason, ReasonKind

    if not corpus.GOOD_SERIES.is_dir():
        pytest.skip(f"real test data not found at {corpus.DATA}")
    records = discover_series([corpus.GOOD_SERIES, corpus.OTHER_SERIES], workers=1).series
    assert len(records) == 2
    loaded = Classifier(SHIPPED, device="cpu", precision="fp32")
    ensemble, card = ckpt.load_checkpoint(SHIPPED)
    built = Classifier.from_ensemble(ensemble, card, device="cpu", precision="fp32")
    assert built.model_name == loaded.model_name and built.review_threshold == loaded.review_threshold
    a, b = loaded.classify(records), built.classify(records)
    assert a == b
    for p in a:  # typed reasons that are their own text
        assert all(isinstance(r, Reason) and isinstance(r.kind, ReasonKind) and r.startswith(r.kind.value)
                   for r in p.review_reasons)
