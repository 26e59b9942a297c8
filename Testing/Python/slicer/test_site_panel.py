"""The review panel's session learns the site: a confirmation changes the next classification.

Plain Python (the session runs the real command line in a child process, as
inside Slicer); real data: ProstateX-0000 classified and one series confirmed,
then ProstateX-0001 classified.
"""

from __future__ import annotations

import csv

import pytest

from SeqClassifierLib.adaptation import build, sitefile
from SeqClassifierLib.curation.label_store import LabelStore
from SeqClassifierSlicer import site
from SeqClassifierSlicer.session import ClassificationSession


def test_a_confirmation_adapts_the_next_classification_without_a_restart(prostatex, tmp_path):
    s = ClassificationSession(LabelStore(tmp_path / "labels.json"))
    assert s.command(["/x"])[-2:] == ["--adapt", str(s.store.path)]
    rows = s.run([str(prostatex / "ProstateX-0000")], device="cpu")
    if not s.model_trained:
        pytest.skip("no trained model: nothing to adapt")
    assert all(r.result.adapted is None for r in rows)  # nothing confirmed yet: the shipped rows
    assert "Adapted" not in s.model_status_text()
    assert build.recent_path(s.store.path).is_file()
    t2 = next(r for r in rows if r.description == "t2_tse_tra")
    s.confirm_label(t2.series_uid, "T2w", user="reader1")
    assert "+1" in s.site_note and sitefile.exists(s.store.path)

    rows = s.run([str(prostatex / "ProstateX-0001")], device="cpu")
    assert "Adapted to 1 confirmed series of this site." in s.model_status_text()
    near = [r for r in rows if r.result.adapted and r.result.adapted["neighbours"]]
    truth = {r["SeriesInstanceUID"]: r["label"] for r in csv.DictReader(open(prostatex / "labels.csv"))}
    # the confirmed T2w pulls its look-alikes; a localizer close to it stays OTHER (ruled by its ImageType)
    assert any(r.predicted_label == "T2w" for r in near)
    assert all(r.predicted_label == truth[r.series_uid] for r in near)
    # the switch: the shipped model's own answer, confirmations kept
    shipped = {r.series_uid: r for r in s.review_rows(shipped=True)}
    for r in near:
        old = shipped[r.series_uid]
        assert old.result.adapted is None
        assert old.probabilities == r.result.adapted["shipped"]["probabilities"]
        assert old.predicted_label == r.result.adapted["shipped"]["label"]
    assert "shipped model" in s.model_status_text(shipped=True)

    # withdrawn: forgotten; the site files go and the next run is the shipped one again
    s.confirm_label(t2.series_uid, None)
    assert not sitefile.exists(s.store.path)
    rows = s.run([str(prostatex / "ProstateX-0001")], device="cpu")
    assert all(r.result.adapted is None for r in rows)


def test_shipped_result_is_the_row_itself_without_adaptation():
    from SeqClassifierLib.records import ResultRow

    row = ResultRow(series_uid="1.2.3", label="T2w", confidence=0.99)
    assert site.shipped_result(row) is row
    adapted = ResultRow(series_uid="1.2.3", label="ADC", confidence=0.95, needs_review=False, adapted={
        "label_changed": True, "shipped": {"label": "DWI", "confidence": 0.6, "needs_review": True,
                                           "review_reasons": ["low confidence (0.60 < 0.90)"],
                                           "probabilities": {"DWI": 0.6, "ADC": 0.4}, "note": "x"}})
    back = site.shipped_result(adapted)
    assert (back.label, back.confidence, back.needs_review, back.adapted) == ("DWI", 0.6, True, None)
