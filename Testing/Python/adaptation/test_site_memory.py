"""The site memory: confirmed series adapt labels and flags, and nothing else changes.

Real data: confirmations of ProstateX-0000 (the CSV rows of its 7 series, or a
label store confirming them), the next study ProstateX-0001 classified with
them; the vendors' brain series as the unrelated data.  Generated data: a
memory with hand-made feature rows for the arithmetic.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from SeqClassifierLib.adaptation import build, sitefile
from SeqClassifierLib.adaptation.hook import SiteHook, features_of
from SeqClassifierLib.adaptation.memory import Geometry, SiteMemory
from SeqClassifierLib.app import cli
from SeqClassifierLib.curation.label_store import LabelStore
from SeqClassifierLib.dicom.discovery import discover_series
from SeqClassifierLib.model.classifier import Classifier


def run(args, capsys):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def rows_of(out: str) -> list:
    return json.loads(out)["series"]


@pytest.fixture(scope="module")
def classifier():
    c = Classifier(precision="fp32", device="cpu")
    if not c.is_trained:
        pytest.skip("no shipped model")
    return c


@pytest.fixture(scope="module")
def study0_csv(prostatex, tmp_path_factory) -> Path:
    """The labels.csv rows of ProstateX-0000 (series_dir relative to the prostatex folder)."""
    out = tmp_path_factory.mktemp("site") / "study0.csv"
    with open(prostatex / "labels.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["series_dir"].startswith("ProstateX-0000/")]
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow(dict(r, series_dir=str(prostatex / r["series_dir"])))
    return out


def classify_json(capsys, path, *extra):
    code, out, err = run(["classify", path, "--format", "json", "--precision", "fp32", "--device", "cpu", *extra],
                         capsys)
    assert code in (cli.EXIT_OK, cli.EXIT_SKIPPED), err
    return rows_of(out), err


def store_confirming_study0(tmp_path: Path, prostatex: Path, capsys) -> Path:
    """A label store that confirms the 7 series of ProstateX-0000, its site file built by ``adapt``."""
    store = LabelStore(tmp_path / "labels.json")
    with open(prostatex / "labels.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["series_dir"].startswith("ProstateX-0000/"):
                store.confirm(r["SeriesInstanceUID"], r["label"], user="reader1",
                              series_dir=str(prostatex / r["series_dir"]))
    code, out, err = run(["adapt", store.path], capsys)
    assert code == 0, err
    assert "7 confirmed series with features" in out and "reader1 7" in out
    return store.path


def test_features_leave_the_probabilities_bit_identical(prostatex, classifier):
    records = discover_series(prostatex / "ProstateX-0001").series
    plain = classifier.classify(records)
    recorded, hook = features_of(classifier, records)
    assert [p.to_dict() for p in plain] == [p.to_dict() for p in recorded]
    assert set(hook.rows) == {r.series_uid for r in records}
    width = sum(f * d for f, d in hook.geometry.layout().values())
    assert all(row.shape == (width,) and np.isfinite(row).all() for row in hook.rows.values())


def test_csv_confirmations_adapt_the_next_study_and_confirmed_series_keep_their_label(
        prostatex, study0_csv, capsys):
    shipped, _ = classify_json(capsys, prostatex)
    adapted, err = classify_json(capsys, prostatex, "--adapt", study0_csv)
    assert "7 confirmed series with features" in err
    truth = {r["SeriesInstanceUID"]: r["label"] for r in csv.DictReader(open(study0_csv, newline=""))}
    by = {r["series_uid"]: r for r in adapted}
    for uid, label in truth.items():
        assert by[uid]["label"] == label and by[uid]["adapted"]["confirmed"] is True
        assert by[uid]["needs_review"] is False and "confirmed" in by[uid]["note"]
    # the other study's series: every row says what the site did; the shipped answer travels along
    others = [r for r in adapted if r["series_uid"] not in truth]
    assert others and all(set(r["adapted"]) >= {"label_changed", "flag_changed", "neighbours", "shipped"}
                          for r in others)
    ship = {r["series_uid"]: r for r in shipped}
    assert any(r["adapted"]["neighbours"] > 0 for r in others)
    for r in others:
        assert r["adapted"]["shipped"]["probabilities"] == ship[r["series_uid"]]["probabilities"]
        if r["adapted"]["neighbours"] == 0 and not r["adapted"]["flag_changed"]:
            assert r["probabilities"] == ship[r["series_uid"]]["probabilities"]
            assert r["review_reasons"] == ship[r["series_uid"]]["review_reasons"]


def test_a_confirmed_label_wins_over_the_model(prostatex, tmp_path, capsys):
    """A reader who says the T2w axial of ProstateX-0001 is OTHER is shown OTHER, not the model's T2w."""
    with open(prostatex / "labels.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["series_dir"].startswith("ProstateX-0001/") and "/6.000000-t2tsetra" in r["series_dir"])
    f = tmp_path / "one.csv"
    f.write_text(f"SeriesInstanceUID,label\n{row['SeriesInstanceUID']},OTHER\n")
    rows, _ = classify_json(capsys, prostatex / "ProstateX-0001", "--adapt", f)
    r = next(r for r in rows if r["series_uid"] == row["SeriesInstanceUID"])
    assert r["label"] == "OTHER" and r["adapted"]["label_changed"] and r["adapted"]["shipped"]["label"] == "T2w"


def test_unrelated_series_keep_the_shipped_answer(vendors, prostatex, tmp_path, capsys):
    store = store_confirming_study0(tmp_path, prostatex, capsys)
    shipped, _ = classify_json(capsys, vendors)
    adapted, err = classify_json(capsys, vendors, "--adapt", store)
    assert "7 confirmed series with features" in err
    assert len(adapted) == len(shipped)
    unrelated = [(a, s) for a, s in zip(adapted, shipped)
                 if a["adapted"]["neighbours"] == 0 and not a["adapted"]["flag_changed"]]
    # brain DTI/fMRI/anatomy of five vendors vs a prostate study: (nearly) nothing is close
    assert len(unrelated) >= len(adapted) - 2
    for a, s in unrelated:
        assert {k: v for k, v in a.items() if k != "adapted"} == s  # bit for bit: probabilities, flags, note
    labelled_dwi = {r["SeriesInstanceUID"] for r in csv.DictReader(open(vendors / "labels.csv", newline=""))
                    if r["label"] == "DWI"}
    assert labelled_dwi <= {a["series_uid"] for a, _ in unrelated}


def test_deleting_the_site_files_restores_the_shipped_rows(prostatex, tmp_path, capsys):
    store = store_confirming_study0(tmp_path, prostatex, capsys)
    target = prostatex / "ProstateX-0001"
    shipped, _ = classify_json(capsys, target)
    adapted, _ = classify_json(capsys, target, "--adapt", store)
    assert any(r["adapted"]["neighbours"] for r in adapted)
    assert sitefile.delete(store) == 2
    again, err = classify_json(capsys, target, "--adapt", store)
    assert "no site memory" in err
    assert again == shipped


def test_a_site_file_of_another_model_is_refused(prostatex, tmp_path, capsys):
    store = store_confirming_study0(tmp_path, prostatex, capsys)
    json_path, _ = sitefile.site_paths(store)
    doc = json.loads(json_path.read_text())
    doc["model"] = {"name": "another@1", "weights_sha256": "0" * 64}
    json_path.write_text(json.dumps(doc))
    target = prostatex / "ProstateX-0001"
    shipped, _ = classify_json(capsys, target)
    rows, err = classify_json(capsys, target, "--adapt", store)
    lines = [l for l in err.splitlines() if "refused" in l]
    assert len(lines) == 1 and "another@1" in lines[0]
    assert rows == shipped
    code, out, err = run(["adapt", store], capsys)
    assert code == 1 and "refused" in err
    with pytest.raises(sitefile.SiteModelMismatch):
        sitefile.read(store, {"name": "x", "weights_sha256": "1" * 64})


@pytest.mark.parametrize("damage", ["json", "npy"])
def test_a_corrupt_site_file_gives_one_warning_and_the_shipped_rows(prostatex, tmp_path, capsys, damage):
    store = store_confirming_study0(tmp_path, prostatex, capsys)
    json_path, npy_path = sitefile.site_paths(store)
    if damage == "json":
        json_path.write_text('{"schema": "seqclassifier-site", "vers')
    else:
        npy_path.write_bytes(npy_path.read_bytes()[:-40])
    target = prostatex / "ProstateX-0001"
    shipped, _ = classify_json(capsys, target)
    rows, err = classify_json(capsys, target, "--adapt", store)
    warnings = [l for l in err.splitlines() if l.startswith("warning:")]
    assert len(warnings) == 1 and "site file" in warnings[0] and "not used" in warnings[0]
    assert rows == shipped


def test_export_import_between_readers(prostatex, tmp_path, capsys):
    store = store_confirming_study0(tmp_path / "a", prostatex, capsys)
    out = tmp_path / "shared" / "site0.site.json"
    out.parent.mkdir()
    code, _, err = run(["adapt", store, "--no-build", "--export", out], capsys)
    assert code == 0 and out.is_file() and out.with_suffix(".npy").is_file()
    other = LabelStore(tmp_path / "b" / "labels.json")
    other.confirm("2.25.1234", "T2w", user="reader2")  # reader 2's own (no features yet)
    code, out_text, err = run(["adapt", other.path, "--no-build", "--import", out, "--json"], capsys)
    assert code == 0, err
    report = json.loads(out_text)
    assert report["n_series"] == 7 and report["confirmed_by"] == {"reader1": 7}
    # reader 2's next run keeps the imported series although its own store does not confirm them
    rows, err = classify_json(capsys, prostatex / "ProstateX-0000", "--adapt", other.path)
    assert all(r["adapted"]["confirmed"] and r["adapted"]["confirmed_by"] == "reader1" for r in rows)


def test_a_confirmation_joins_the_site_without_another_model_run(prostatex, tmp_path, capsys):
    """classify --adapt STORE keeps the rows of what it saw; a confirmation then moves one into the site."""
    store = LabelStore(tmp_path / "labels.json")
    classify_json(capsys, prostatex / "ProstateX-0000", "--adapt", store.path)
    assert build.recent_path(store.path).is_file() and not sitefile.exists(store.path)
    with open(prostatex / "labels.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["series_dir"].startswith("ProstateX-0000/") and "/4.000000-t2tsetra" in r["series_dir"])
    store.confirm(row["SeriesInstanceUID"], "T2w", user="reader1")
    n, line = build.confirm_into_site(store.path, [row["SeriesInstanceUID"]])
    assert n == 1 and "+1" in line and sitefile.exists(store.path)
    rows, _ = classify_json(capsys, prostatex / "ProstateX-0001", "--adapt", store.path)
    t2 = [r for r in rows if r["adapted"]["neighbours"] and r["label"] == "T2w"]
    assert t2  # the other study's T2w series now have a confirmed neighbour
    store.confirm(row["SeriesInstanceUID"], None)  # withdrawn: forgotten, back to shipped
    n, line = build.confirm_into_site(store.path, [])
    assert n == 0 and not sitefile.exists(store.path)


# -- the arithmetic on generated rows ------------------------------------------------------------
def _toy_geometry(d: int = 4, folds: int = 2) -> Geometry:
    eye = np.stack([np.eye(d)] * folds)
    return Geometry(factors={"fused": eye, "header": eye}, thresholds={"fused": 2.0, "header": 2.0})


def test_blend_is_untouched_far_away_and_follows_a_near_twin():
    g = _toy_geometry()
    m = SiteMemory(g.layout())
    rng = np.random.default_rng(0)
    rows = rng.normal(0, 1, (3, 16)).astype(np.float32)
    m.add_many([{"series_uid": f"u{i}", "label": lab} for i, lab in enumerate(["T2w", "DWI", "ADC"])], rows)
    m.fit(g)
    probs = np.array([0.7, 0.2, 0.05, 0.03, 0.02], dtype=np.float32)
    far = m.neighbours(rows[0] + 100.0)
    out, w = m.blend(probs, far.voters)
    assert far.voters == [] and w == 0.0 and out is probs
    twin = m.neighbours(rows[1])  # the confirmed DWI itself: kernel 1, weight = how unsure the model is
    out, w = m.blend(probs, twin.voters)
    assert w == pytest.approx(1.0 - 0.7) and out.sum() == pytest.approx(1.0, abs=1e-6)
    unsure = np.array([0.4, 0.35, 0.1, 0.1, 0.05], dtype=np.float32)
    out, w = m.blend(unsure, twin.voters)
    assert int(np.argmax(out)) == 1 and w == pytest.approx(0.6)  # an unsure model follows its twin
    sure = np.array([0.99, 0.0025, 0.0025, 0.0025, 0.0025], dtype=np.float32)
    out, w = m.blend(sure, twin.voters)
    assert int(np.argmax(out)) == 0 and w == pytest.approx(0.01, abs=1e-6)  # a sure one is not overruled
    assert m.known_places(twin.nearest) == ["fused", "header"]
    m.remove(["u1"])
    assert len(m) == 2 and "u1" not in m
    m.add_many([{"series_uid": "u9", "label": "DWI"}, {"series_uid": "u9", "label": "ADC"}], rows[:2])
    assert len(m) == 3 and m.label_of("u9") == "ADC"  # the same series twice in one batch: the last wins


def test_building_a_thousand_series_site_roundtrips(tmp_path):
    g = _toy_geometry(d=256, folds=4)
    m = SiteMemory(g.layout())
    rows = np.random.default_rng(1).normal(0, 1, (1000, 2048)).astype(np.float32)
    m.add_many([{"series_uid": f"2.25.{i}", "label": "OTHER", "confirmed_by": "r"} for i in range(1000)], rows)
    ident = {"name": "m@1", "weights_sha256": "a" * 64}
    sitefile.save(m, tmp_path / "labels.json", ident)
    back = sitefile.read(tmp_path / "labels.json", ident)
    assert len(back) == 1000 and np.array_equal(back.vectors, m.vectors)
    assert not list(tmp_path.glob("*.pkl")) and sorted(p.name for p in tmp_path.iterdir()) == [
        "labels.site.json", "labels.site.npy"]
