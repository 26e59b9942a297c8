"""One series identity and one output contract, end to end.

* Every map, store and resume file is keyed by (PatientID, StudyInstanceUID,
  SeriesInstanceUID): two patients sharing a SeriesInstanceUID never change
  each other's study context, label, thumbnail or resume line.
* Every JSON / JSON-lines output (``classify --format jsonl``, its thumbnail
  events, the streamed archive file) is written by one event writer under one
  text rule, and names files so that a program can open them.

Generated data only: small MR images written with pydicom into ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest

import corpus
from SeqClassifierLib.app import cli, thumbnails
from SeqClassifierLib.app.output import format_jsonl
from SeqClassifierLib.app.stream import JsonlStream, PartitionResult, local_results, plan_partitions, run_stream
from SeqClassifierLib.curation.label_store import LabelStore
from SeqClassifierLib.curation.sorting import sort_series
from SeqClassifierLib.dicom.discovery import discover_series
from SeqClassifierLib.inputs.study import study_contexts
from SeqClassifierLib.model.classifier import Classifier
from SeqClassifierLib.records import ResultRow, SeriesKey, SkippedFile

SERIES = "1.2.826.0.1.3680043.8.498.3001"
STUDY_A = "1.2.826.0.1.3680043.8.498.4001"
STUDY_B = "1.2.826.0.1.3680043.8.498.4002"


@pytest.fixture
def untrained(monkeypatch):
    monkeypatch.setattr("SeqClassifierLib.model.classifier.default_model_path", lambda: None)


def _slices(folder: Path, key: str, patient: str, study: str, series: str, n: int = 3,
            description: str = "t2 tra") -> list[Path]:
    out = []
    for i in range(n):
        ds = corpus.minimal_object(corpus.MR_IMAGE, "MR", f"{key}-{i}", image=True)
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, study, series
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0, 0, float(i)]
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SeriesDescription = description
        out.append(corpus.save(ds, folder / f"{key}_{i}.dcm"))
    return out


def _shared_uid_archive(root: Path) -> Path:
    """PAT-A: two series in one study (one of them SERIES); PAT-B: SERIES alone in another study."""
    _slices(root / "A" / "s1", "a1", "PAT-A", STUDY_A, SERIES)
    _slices(root / "A" / "s2", "a2", "PAT-A", STUDY_A, SERIES + ".2")
    _slices(root / "B" / "s1", "b1", "PAT-B", STUDY_B, SERIES)
    return root


A = SeriesKey("PAT-A", STUDY_A, SERIES)
B = SeriesKey("PAT-B", STUDY_B, SERIES)


def test_a_lone_series_sharing_a_uid_keeps_its_own_context_label_thumbnail_and_resume(tmp_path, untrained,
                                                                                      monkeypatch):
    root = _shared_uid_archive(tmp_path / "in")
    d = discover_series(root)
    assert sorted(r.key for r in d.series) == sorted([A, B, SeriesKey("PAT-A", STUDY_A, SERIES + ".2")])
    rows = [ResultRow.from_series(r, p) for r, p in zip(d.series, Classifier().classify(d.series))]
    # study context: PAT-B's series is alone in its study (it got PAT-A's context when keyed by UID)
    ctx = study_contexts(d.series)
    assert ctx[B].n_study_series == 1 and not ctx[B].available and ctx[A].n_study_series == 2

    # label store: confirming PAT-B's series leaves PAT-A's alone
    store = LabelStore(tmp_path / "store" / "labels.json")
    store.record_predictions(rows)
    store.confirm(B, "ADC", user="rad")
    assert store.get(A).confirmed_label is None and store.get(B).confirmed_label == "ADC"
    labels = store.confirmed_labels()
    assert labels == {B: "ADC"}

    # sort --labels: only PAT-B's copy is filed as ADC
    summary = sort_series(rows, tmp_path / "dest", labels=labels, sources=[root])
    assert sorted((Path(s.folder).parts[-3], s.label) for s in summary.series) == [
        ("PAT-A", None), ("PAT-A", None), ("PAT-B", "ADC")]

    # thumbnails: each row gets its own record's picture
    monkeypatch.setattr(thumbnails, "series_thumbnail", lambda record, size=64: {"of": record.patient_id})
    events = [json.loads(line) for line in thumbnails.format_jsonl_with_thumbnails(rows, [], d.series).splitlines()]
    assert sorted((e["row"]["patient_id"], e["thumbnail"]["of"]) for e in events) == [
        ("PAT-A", "PAT-A"), ("PAT-A", "PAT-A"), ("PAT-B", "PAT-B")]

    # stream resume: the second run finds all three series done (two share the UID)
    out = tmp_path / "r.jsonl"
    first = JsonlStream(out)
    run_stream(local_results(plan_partitions([root]), Classifier()), first)
    first.close({"type": "summary"})
    again = JsonlStream(out, resume=True)
    assert set(again.done) == {A, B, SeriesKey("PAT-A", STUDY_A, SERIES + ".2")}
    results = list(local_results(plan_partitions([root]), Classifier(), done=again.done))
    assert sum(r.n_resumed for r in results) == 3 and not any(r.rows for r in results)
    run_stream(results, again)
    again.close({"type": "summary"})
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(e["row"]["patient_id"] for e in lines if e["type"] == "series") == ["PAT-A", "PAT-A", "PAT-B"]


def test_the_three_jsonl_outputs_write_a_u202e_description_the_same_way(tmp_path):
    row = ResultRow(series_uid="1.2.3", patient_id="P\u202e1", description="adc\u202etxt.exe",
                    folder=str(tmp_path / "in\u202e"), n_files=1)
    skipped = [SkippedFile(str(tmp_path / "x\u202e.txt"), "not a DICOM file")]
    plain = format_jsonl([row], skipped)
    with_thumbs = thumbnails.format_jsonl_with_thumbnails([row], skipped, [])
    out = tmp_path / "stream.jsonl"
    stream = JsonlStream(out)
    stream.write_result(PartitionResult(index=0, rows=[row.to_dict()], stamps=["s"],
                                        skipped=[(s.path, s.reason) for s in skipped]))
    stream.close(None)
    streamed = out.read_text(encoding="utf-8")
    texts = {"jsonl": plain, "thumbnails": with_thumbs, "stream": streamed}
    events = {}
    for name, text in texts.items():
        assert "\u202e" not in text, name  # no raw bidirectional override reaches a terminal
        parsed = [json.loads(line) for line in text.splitlines()]
        events[name] = ([e["row"] for e in parsed if e["type"] == "series"],
                        [e for e in parsed if e["type"] == "skipped"])
    for name, (series, skip) in events.items():
        assert series == events["jsonl"][0], name
        assert skip == events["jsonl"][1], name
    (r,), (s,) = events["jsonl"]
    assert r["description"] == r"adc\u202etxt.exe" and r["patient_id"] == r"P\u202e1"  # header text: escaped
    assert r["folder"] == row.folder and s["path"] == skipped[0].path  # file names: lossless


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_a_program_opens_the_files_a_json_output_names(tmp_path, untrained, fmt):
    folder = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path / "in"), b"new\nline \xe2\x80\xae rlo \xff")))
    files = _slices(folder, "s", "P", STUDY_A, SERIES, n=2)
    odd = Path(os.fsdecode(os.path.join(os.fsencode(folder), b"notes\n\xe2\x80\xaetxt.\xfe")))
    odd.write_bytes(b"not a DICOM file at all " * 8)
    out = tmp_path / f"r.{fmt}"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["classify", str(tmp_path / "in"), "--format", fmt, "--out", str(out), "--device", "cpu"])
    assert code == cli.EXIT_SKIPPED, err.getvalue()
    text = out.read_bytes().decode("utf-8")  # strict UTF-8
    assert "\u202e" not in text  # written as the JSON escape \\u202e
    if fmt == "json":
        doc = json.loads(text)
        series, skipped = doc["series"], doc["skipped"]
    else:
        events = [json.loads(line) for line in text.splitlines()]
        series = [e["row"] for e in events if e["type"] == "series"]
        skipped = [e for e in events if e["type"] == "skipped"]
    (row,) = series
    assert row["folder"] == str(folder)
    assert sorted(os.listdir(row["folder"])) == sorted(p.name for p in [*files, odd])
    (skip,) = skipped
    with open(skip["path"], "rb") as fh:  # the very file, by the name the JSON gives
        assert fh.read() == odd.read_bytes()
    assert os.fsencode(skip["path"]).endswith(b"notes\n\xe2\x80\xaetxt.\xfe")
    if fmt == "json":  # the terminal keeps its escaped form
        assert r"notes\n\u202etxt.\xfe" in err.getvalue(), err.getvalue()
