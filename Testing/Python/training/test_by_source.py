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
    assert source_groups(sizes, 9) == source_groups(sizes, None)


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
