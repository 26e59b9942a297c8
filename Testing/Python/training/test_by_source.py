"""Leave-one-source-out (training/by_source.py, seqclassifier by-source) on tiny synthetic + the real shared sources."""

from __future__ import annotations

import json

import pytest

from SeqClassifierLib.app import cli
from SeqClassifierLib.labels import SequenceLabel as L
from SeqClassifierLib.training.by_source import keyword_label, source_groups


def test_source_groups_balance_and_keep_each_source_whole():
    sizes = {"a": 50, "b": 30, "c": 20, "d": 10, "e": 10}
    groups = source_groups(sizes, 2)
    assert sorted(sum(groups, [])) == sorted(sizes)
    assert [sum(sizes[n] for n in g) for g in groups] == [60, 60]
    assert source_groups(sizes, None) == [["a"], ["b"], ["c"], ["d"], ["e"]]
    assert [b for b in source_groups(sizes, 9) if b] == source_groups(sizes, None)


@pytest.mark.parametrize("text,label", [("t2_tse_tra", L.T2w), ("ep2d_diff_b50_800", L.DWI), ("dADC", L.ADC),
                                        ("tfl_3d dynamic", L.DCE), ("localizer", L.OTHER), ("t2_flair", L.OTHER),
                                        ("", L.OTHER)])
def test_keyword_baseline(text, label):
    assert keyword_label(text) is label


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    from SeqClassifierLib.synth import generate_studies

    root = tmp_path_factory.mktemp("synth")
    generate_studies(root, studies=2, seed=5, size="tiny")
    return root


def test_by_source_end_to_end(tiny_synth, prostatex, vendors, tmp_path, capsys):
    out = tmp_path / "loso"
    code = cli.main(["by-source", "--labels", str(tiny_synth / "labels.csv"), str(prostatex / "labels.csv"),
                     str(vendors / "labels.csv"), "--data", str(tiny_synth), str(prostatex), str(vendors),
                     "--out", str(out), "--max-epochs", "1", "--patience", "1", "--device", "cpu", "--quiet"])
    assert code == 0
    doc = json.loads((out / "rows.json").read_text())
    # the synthetic root is never held out; every labelled real series is predicted once
    assert {r["source"] for r in doc["rows"]} == {prostatex.name, vendors.name}
    assert len(doc["rows"]) == 18 + 7
    assert all(set(r) >= {"confidence", "distances", "conflicts", "true", "predicted"} for r in doc["rows"])
    report = json.loads((out / "report.json").read_text())
    assert report["n_series"] == 25 and set(report["keyword_rule_macro_f1"]) == {prostatex.name, vendors.name,
                                                                                "pooled"}
    assert 0.5 <= report["review_rule"]["confidence"] <= 0.99
    assert (out / "risk_coverage.png").stat().st_size > 1000
    assert "review rule: confidence <" in capsys.readouterr().out
    # refit from the rows alone: same rule, no training
    code = cli.main(["by-source", "--rows", str(out / "rows.json"), "--out", str(tmp_path / "refit"), "--quiet"])
    assert code == 0
    assert json.loads((tmp_path / "refit" / "report.json").read_text())["review_rule"] == report["review_rule"]


def test_sample_folds_keep_each_real_source_whole_and_patients_together():
    from SeqClassifierLib.training.folds import sample_folds

    groups = [f"p{i % 9}" for i in range(60)] + ["x1"] * 5 + ["x2"] * 5 + ["y"] * 8
    sources = ["/s/synth"] * 60 + ["/c/srcA"] * 10 + ["/c/srcB/"] * 8
    folds = sample_folds(groups, sources, 4, 0, by_source=("srcA", "srcB"))
    assert len({f for f, s in zip(folds, sources) if s == "/c/srcA"}) == 1
    assert len({f for f, s in zip(folds, sources) if s == "/c/srcB/"}) == 1
    assert folds[60] != folds[70]                    # the two sources in different folds
    for g in {f"p{i}" for i in range(9)}:
        assert len({f for f, gg in zip(folds, groups) if gg == g}) == 1
    assert folds == sample_folds(groups, sources, 4, 0, ("srcB", "srcA"))  # the order named does not matter
    # without sources named, the patient folds
    from SeqClassifierLib.training.folds import group_folds

    assert sample_folds(groups, sources, 4, 0) == group_folds(groups, 4, 0)


def test_fold_by_source_ensemble_gives_out_of_source_rows(tiny_synth, prostatex, vendors, tmp_path, capsys):
    model = tmp_path / "m.json"
    code = cli.main(["train", "--labels", str(tiny_synth / "labels.csv"), str(prostatex / "labels.csv"),
                     str(vendors / "labels.csv"), "--data", str(tiny_synth), str(prostatex), str(vendors),
                     "--fold-by-source", str(prostatex), str(vendors), "--folds", "2", "--max-epochs", "1",
                     "--patience", "1", "--out", str(model), "--quiet"])
    assert code == 0
    card = json.loads(model.read_text())
    assert card["training"]["folds_by_source"] == sorted([prostatex.name, vendors.name])
    assert {s["name"] for s in card["data"]["sources"]} == {tiny_synth.name, prostatex.name, vendors.name}
    assert "/" not in json.dumps(card["data"]["sources"])   # names, never this machine's paths
    out = tmp_path / "oof"
    code = cli.main(["by-source", "--model", str(model), "--labels", str(tiny_synth / "labels.csv"),
                     str(prostatex / "labels.csv"), str(vendors / "labels.csv"), "--data", str(tiny_synth),
                     str(prostatex), str(vendors), "--out", str(out), "--into-card", str(model), "--quiet"])
    assert code == 0
    doc = json.loads((out / "rows.json").read_text())
    assert len(doc["rows"]) == 25 and {r["source"] for r in doc["rows"]} == {prostatex.name, vendors.name}
    assert sorted(sum(doc["groups"], [])) == sorted([prostatex.name, vendors.name])
    assert all(len(g) == 1 for g in doc["groups"])  # 2 folds, 2 sources: one each
    card = json.loads(model.read_text())
    assert card["review_rule"]["fitted"]["n_predictions"] == 25 and card["decision_rules"]
    assert card["leave_one_source_out"]["n_series"] == 25
    capsys.readouterr()
    # the card's rule is used when classifying
    from SeqClassifierLib.model.classifier import Classifier

    clf = Classifier(model, device="cpu", precision="fp32")
    assert clf.review_rule is not None and clf.review_threshold == card["review_rule"]["confidence"]
