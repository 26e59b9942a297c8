"""Label store: round trip, atomic replace, concurrent writers, damaged store, training CSV export."""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import threading
import warnings
from pathlib import Path

import pytest

from SeqClassifierLib.curation import label_store as ls
from SeqClassifierLib.curation.label_store import (CSV_FIELDS, CorruptLabelStoreError, LabelStore, LabelStoreError,
                                          LabelStoreWarning)
from SeqClassifierLib.labels import CLASS_NAMES, Plane, SequenceLabel
from SeqClassifierLib.records import Prediction, ResultRow, SeriesKey, SeriesRecord


def _rows(records, predictions) -> list[ResultRow]:
    return [ResultRow.from_series(r, p) for r, p in zip(records, predictions)]


def _record(uid: str, folder: Path, desc: str = "t2_tse_tra", number: int = 4) -> SeriesRecord:
    files = [str(folder / f"{i}.dcm") for i in range(3)]
    return SeriesRecord(series_uid=uid, study_uid="1.2.3", patient_id="P1", series_number=number,
                        description=desc, files=files, plane=Plane.AXIAL)


def _prediction(uid: str, label, conf=0.95, review=False, model="m@1") -> Prediction:
    probs = {c: (conf if c == (label.value if label else None) else (1 - conf) / 4) for c in CLASS_NAMES}
    return Prediction(uid, label, conf if label else None, probs if label else {}, review, model,
                      "" if label else "untrained")


def test_round_trip(tmp_path):
    store = LabelStore(tmp_path / "store" / "labels.json")
    data = tmp_path / "dicom"
    recs = [_record("1.1", data / "s4"), _record("1.2", data / "s7", "ep2d_diff", 7)]
    preds = [_prediction("1.1", SequenceLabel.T2w), _prediction("1.2", SequenceLabel.DWI, 0.6, True)]
    assert store.record_predictions(_rows(recs, preds), model="seq@2") == 2

    again = LabelStore(store.path)
    e = again.get("1.1")
    assert e.predicted_label == "T2w" and e.confidence == pytest.approx(0.95)
    assert e.model == "seq@2" and e.series_dir == str(data / "s4") and e.plane == "axial"
    assert e.series_number == 4 and e.description == "t2_tse_tra" and e.patient_id == "P1"
    assert e.confirmed_label is None and e.label == "T2w"
    assert set(e.probabilities) == set(CLASS_NAMES)

    confirmed = again.confirm("1.2", "adc", user="rad1")
    assert confirmed.confirmed_label == "ADC" and confirmed.confirmed_by == "rad1" and confirmed.confirmed_at
    key = lambda uid: SeriesKey("P1", "1.2.3", uid)  # noqa: E731
    assert again.confirmed_labels() == {key("1.2"): SequenceLabel.ADC}
    assert again.labels() == {key("1.1"): SequenceLabel.T2w, key("1.2"): SequenceLabel.ADC}

    # a new prediction never overwrites the confirmation
    store.record_predictions(_rows([recs[1]], [_prediction("1.2", SequenceLabel.DWI, 0.99)]))
    e2 = store.get("1.2")
    assert e2.confirmed_label == "ADC" and e2.predicted_label == "DWI" and e2.label == "ADC"
    assert [x.series_uid for x in store.all()] == ["1.1", "1.2"]

    # withdrawing a confirmation
    store.confirm("1.2", None, user="rad1")
    assert store.get("1.2").confirmed_label is None and store.get("1.2").confirmed_by is None

    doc = json.loads(store.path.read_text())
    assert doc["schema"] == ls.SCHEMA and doc["version"] == ls.SCHEMA_VERSION
    assert not list(store.path.parent.glob("*.tmp"))


def test_result_rows_and_untrained(tmp_path):
    store = LabelStore(tmp_path / "labels.json")
    rows = [{"series_uid": "9.1", "label": None, "confidence": None, "probabilities": None,
             "needs_review": True, "model": "untrained", "note": "untrained", "folder": str(tmp_path / "in"),
             "description": "x", "patient_id": "P", "study_uid": "S", "series_number": 3, "plane": "sagittal"}]
    store.record_predictions([ResultRow.from_dict(r) for r in rows])
    e = store.get("9.1")
    assert e.predicted_label is None and e.label is None and e.model == "untrained" and e.plane == "sagittal"
    assert store.labels() == {}


def test_store_never_inside_input_folder(tmp_path):
    data = tmp_path / "dicom"
    store = LabelStore(data / "s4" / "labels.json")
    with pytest.raises(LabelStoreError, match="inside the DICOM input folder"):
        store.record_predictions(_rows([_record("1.1", data / "s4")], [_prediction("1.1", SequenceLabel.T2w)]))
    assert not store.path.exists()


def test_default_location(monkeypatch, tmp_path):
    monkeypatch.setenv(ls.HOME_ENV, str(tmp_path / "home"))
    assert ls.default_store_path() == tmp_path / "home" / "labels.json"
    monkeypatch.delenv(ls.HOME_ENV)
    p = ls.default_store_path()
    assert p.name == "labels.json" and p.parent.name == "SeqClassifier"


def test_atomic_replace_leaves_old_or_new(tmp_path, monkeypatch):
    store = LabelStore(tmp_path / "labels.json")
    store.confirm("1.1", "T2w", user="a")
    old = store.path.read_bytes()

    # a crash in the middle of writing (before the rename) leaves the old content and no temp file
    real_replace = os.replace

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(ls.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        store.confirm("1.2", "DWI", user="a")
    monkeypatch.setattr(ls.os, "replace", real_replace)
    assert store.path.read_bytes() == old
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    # readers running during many rewrites always see a complete, valid store
    stop = threading.Event()
    bad = []

    def reader():
        while not stop.is_set():
            try:
                json.loads(store.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                bad.append("missing")
            except ValueError as exc:
                bad.append(str(exc))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(60):
            store.confirm(f"2.{i}", "ADC", user="a")
    finally:
        stop.set()
        t.join()
    assert bad == []
    assert len(store) == 61


def _writer(path: str, worker: int, n: int) -> None:
    store = LabelStore(path)
    for i in range(n):
        if i % 2:
            store.confirm(f"{worker}.{i}", "DWI", user=f"w{worker}")
        else:
            store.record_predictions([ResultRow.from_dict({"series_uid": f"{worker}.{i}", "label": "T2w",
                                                           "confidence": 0.9, "model": "m", "folder": ""})])


def test_concurrent_writers_all_land(tmp_path):
    path = str(tmp_path / "labels.json")
    workers, n = 4, 15
    ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
    procs = [ctx.Process(target=_writer, args=(path, w, n)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    entries = {k.series_uid: e for k, e in LabelStore(path).load().items()}
    assert set(entries) == {f"{w}.{i}" for w in range(workers) for i in range(n)}
    for w in range(workers):
        for i in range(n):
            e = entries[f"{w}.{i}"]
            if i % 2:
                assert e.confirmed_label == "DWI" and e.confirmed_by == f"w{w}"
            else:
                assert e.predicted_label == "T2w"


@pytest.mark.parametrize("content", [b"{not json", b"", b'{"schema": "other", "version": 1, "series": {}}',
                                     b'{"schema": "seqclassifier-labels", "version": 1, "series": []}',
                                     b'{"schema": "seqclassifier-labels", "version": 1, '
                                     b'"series": {"1": {"predicted_label": "FLAIR"}}}'])
def test_damaged_store_moved_aside_and_reported(tmp_path, content):
    path = tmp_path / "labels.json"
    path.write_bytes(content)
    store = LabelStore(path)
    with pytest.warns(LabelStoreWarning, match="damaged"):
        store.confirm("1.1", "T2w", user="a")
    moved = list(tmp_path.glob("labels.json.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_bytes() == content  # nothing lost
    reports = store.pop_warnings()
    assert len(reports) == 1 and reports[0].moved_to == str(moved[0])
    assert store.get("1.1").confirmed_label == "T2w"  # the store works again


def test_damaged_store_raises_when_asked(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text("[1, 2")
    store = LabelStore(path, on_corrupt="raise")
    with pytest.raises(CorruptLabelStoreError) as info:
        store.all()
    assert info.value.moved_to and Path(info.value.moved_to).read_text() == "[1, 2"
    assert not path.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.all() == []


def test_csv_export_training_format(tmp_path):
    root = tmp_path / "data"
    store = LabelStore(tmp_path / "labels.json")
    recs = [_record("1.1", root / "P1" / "s4", "t2_tse_tra", 4),
            _record("1.2", root / "P1" / "s7", "ep2d_diff, tra", 7),
            _record("1.3", root / "P1" / "s9", "unknown", 9)]
    preds = [_prediction("1.1", SequenceLabel.T2w), _prediction("1.2", SequenceLabel.DWI),
             _prediction("1.3", None)]
    store.record_predictions(_rows(recs, preds))
    store.confirm("1.2", "ADC", user="r")

    out = tmp_path / "labels.csv"
    assert store.export_csv(out, relative_to=root) == 2  # the unlabeled series is left out
    raw = out.read_bytes()
    assert raw.startswith(b"series_dir,SeriesInstanceUID,label,SeriesDescription,note\r\n")
    rows = list(csv.DictReader(out.open(newline="")))
    assert tuple(rows[0].keys()) == CSV_FIELDS
    assert [(r["series_dir"], r["SeriesInstanceUID"], r["label"], r["SeriesDescription"]) for r in rows] == [
        ("P1/s4", "1.1", "T2w", "t2_tse_tra"), ("P1/s7", "1.2", "ADC", "ep2d_diff, tra")]

    only = tmp_path / "confirmed.csv"
    assert store.export_csv(only, confirmed_only=True) == 1
    rows = list(csv.DictReader(only.open(newline="")))
    assert rows == [{"series_dir": str(root / "P1" / "s7"), "SeriesInstanceUID": "1.2", "label": "ADC",
                     "SeriesDescription": "ep2d_diff, tra", "note": ""}]

    # same format as the project's reference labels.csv files
    shared = Path(__file__).resolve().parents[4] / "shared" / "data" / "prostatex" / "labels.csv"
    if shared.is_file():
        assert shared.read_bytes().split(b"\r\n", 1)[0] == raw.split(b"\r\n", 1)[0]

    js = tmp_path / "labels_export.json"
    assert store.export_json(js) == 3
    doc = json.loads(js.read_text())
    by_uid = {e["series_uid"]: e for e in doc["series"]}
    assert set(by_uid) == {"1.1", "1.2", "1.3"} and by_uid["1.2"]["confirmed_label"] == "ADC"
    assert {(e["patient_id"], e["study_uid"]) for e in doc["series"]} == {("P1", "1.2.3")}


def test_stale_temp_files_of_killed_writers_are_cleaned(tmp_path):
    import os
    import time as _time

    from SeqClassifierLib.curation.label_store import LabelStore

    store = LabelStore(tmp_path / "labels.json")
    stale = tmp_path / ".labels.json.abc123.tmp"
    fresh = tmp_path / ".labels.json.def456.tmp"
    stale.write_text("{partial")
    fresh.write_text("{partial")
    old = _time.time() - 2 * LabelStore.STALE_TEMP_SECONDS
    os.utime(stale, (old, old))
    store.confirm("1.2.3", "T2w")
    assert not stale.exists()          # a dead writer's leftover is removed
    assert fresh.exists()              # a live writer's file is not touched
    assert str(getattr(store.get("1.2.3").label, "value", store.get("1.2.3").label)) == "T2w"


def test_export_of_corrections_is_read_by_train(prostatex_discovery, prostatex_labels, prostatex, tmp_path):
    """The curation loop: predictions (here all wrong) corrected by a person, exported, read by `train`."""
    from SeqClassifierLib.training.train import labelled_series

    recs = prostatex_discovery.series
    store = LabelStore(tmp_path / "labels.json")
    store.record_predictions(_rows(recs, [_prediction(r.series_uid, SequenceLabel.OTHER, 0.4, True) for r in recs]))
    truth = {row["SeriesInstanceUID"]: row["label"] for row in prostatex_labels}
    assert store.confirm_many(truth, user="radiologist") == 18

    out = tmp_path / "export" / "labels.csv"
    out.parent.mkdir()
    assert store.export_csv(out, confirmed_only=True) == 18
    found = labelled_series([out], [prostatex], log=lambda *a: None)
    assert len(found) == 18
    assert {rec.series_uid: CLASS_NAMES[label] for rec, label, _ in found} == truth
    # by folder alone (a CSV whose UIDs were blanked): the series_dir column still finds every series
    rows = list(csv.DictReader(out.open(newline="")))
    blank = tmp_path / "export" / "by_dir.csv"
    with blank.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows({**r, "SeriesInstanceUID": ""} for r in rows)
    assert {rec.series_uid: CLASS_NAMES[label] for rec, label, _ in labelled_series([blank], [prostatex],
                                                                                     log=lambda *a: None)} == truth


def test_version_1_store_keyed_by_uid_is_read_and_migrated(tmp_path):
    """A store written before series keys (``"series"`` an object keyed by SeriesInstanceUID)."""
    path = tmp_path / "labels.json"
    old = {"schema": ls.SCHEMA, "version": 1, "updated_at": "2026-01-01T00:00:00+00:00", "series": {
        "1.1": {"series_uid": "1.1", "predicted_label": "T2w", "confidence": 0.9, "confirmed_label": "ADC",
                "confirmed_by": "rad", "patient_id": "P1", "study_uid": "S1", "series_number": 4},
        "1.2": {"series_uid": "1.2", "confirmed_label": "DWI", "confirmed_by": "rad"}}}
    path.write_text(json.dumps(old), encoding="utf-8")
    store = LabelStore(path)
    assert store.confirmed_labels() == {SeriesKey("P1", "S1", "1.1"): SequenceLabel.ADC,
                                        SeriesKey("", "", "1.2"): SequenceLabel.DWI}
    assert store.get(SeriesKey("P1", "S1", "1.1")).series_number == 4
    # a UID-only entry (no patient, no study recorded) stands for that UID under any patient
    assert store.get(SeriesKey("P9", "S9", "1.2")).confirmed_label == "DWI"
    assert store.get(SeriesKey("P9", "S9", "1.1")) is None  # never another patient's label
    assert json.loads(path.read_text())["version"] == 1  # reading changes nothing
    store.confirm(SeriesKey("P2", "S2", "1.3"), "T2w", user="rad")
    doc = json.loads(path.read_text())
    assert doc["version"] == ls.SCHEMA_VERSION == 2
    assert sorted((e["patient_id"], e["study_uid"], e["series_uid"], e["confirmed_label"]) for e in doc["series"]) \
        == [("", "", "1.2", "DWI"), ("P1", "S1", "1.1", "ADC"), ("P2", "S2", "1.3", "T2w")]


def test_two_patients_sharing_a_uid_never_change_each_others_label(tmp_path):
    store = LabelStore(tmp_path / "labels.json")
    a, b = _record("9.9", tmp_path / "A"), _record("9.9", tmp_path / "B")
    b.patient_id = "P2"
    store.record_predictions(_rows([a, b], [_prediction("9.9", SequenceLabel.T2w),
                                            _prediction("9.9", SequenceLabel.DWI)]))
    assert len(store) == 2
    store.confirm(b.key, "ADC", user="rad")
    assert store.get(a.key).label == "T2w" and store.get(a.key).confirmed_label is None
    assert store.get(b.key).label == "ADC"
    assert store.get(b.key).series_dir == str(tmp_path / "B")
    with pytest.raises(LabelStoreError, match="give its SeriesKey"):
        store.confirm("9.9", "OTHER", user="rad")  # a bare UID is ambiguous here
    assert store.remove(a.key) and store.get(b.key).label == "ADC"
    with pytest.raises(ValueError, match="listed twice"):
        ls._validate({"schema": ls.SCHEMA, "version": 2, "series": [b.key.to_dict(), b.key.to_dict()]})
