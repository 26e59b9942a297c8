"""One identity per series, (PatientID, StudyInstanceUID, SeriesInstanceUID), and one file per instance.

Generated data only: small MR images written with pydicom into ``tmp_path``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import corpus
from SeqClassifierLib.dicom.discovery import discover_series, series_key
from SeqClassifierLib.inputs.study import study_contexts
from SeqClassifierLib.curation.sorting import sort_series
from SeqClassifierLib.labels import SequenceLabel
from SeqClassifierLib.records import Prediction, ResultRow, SeriesKey


def _slices(folder: Path, key: str, patient: str, study: str, series: str, n: int = 3) -> list[Path]:
    """``n`` slices of one MR series (its UIDs fixed by the arguments) in ``folder``."""
    out = []
    for i in range(n):
        ds = corpus.minimal_object(corpus.MR_IMAGE, "MR", f"{key}-{i}", image=True)
        ds.PatientID = patient
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0, 0, float(i)]
        ds.SeriesDescription = f"t2 {key}"
        out.append(corpus.save(ds, folder / f"{key}_{i}.dcm"))
    return out


SERIES = "1.2.826.0.1.3680043.8.498.1001"
STUDY = "1.2.826.0.1.3680043.8.498.2001"


def test_same_series_uid_under_two_patients_stays_two_series(tmp_path):
    a = _slices(tmp_path / "A", "a", "PAT-A", STUDY, SERIES)
    b = _slices(tmp_path / "B", "b", "PAT-B", STUDY, SERIES, n=2)
    d = discover_series(tmp_path)
    assert d.skipped == []
    assert len(d.series) == 2
    by_patient = {s.patient_id: s for s in d.series}
    assert sorted(by_patient["PAT-A"].files) == sorted(map(str, a))
    assert sorted(by_patient["PAT-B"].files) == sorted(map(str, b))
    for s in d.series:
        assert s.series_uid == SERIES
        assert s.warnings == [f"SeriesInstanceUID {SERIES} repeats under patients PAT-A and PAT-B"]
    assert set(d.by_key()) == {("PAT-A", STUDY, SERIES), ("PAT-B", STUDY, SERIES)}


def test_same_series_uid_under_two_studies_of_one_patient(tmp_path):
    other = "1.2.826.0.1.3680043.8.498.2002"
    _slices(tmp_path / "s1", "s1", "PAT", STUDY, SERIES)
    _slices(tmp_path / "s2", "s2", "PAT", other, SERIES)
    d = discover_series(tmp_path)
    assert [series_key(s) for s in d.series] == sorted([("PAT", STUDY, SERIES), ("PAT", other, SERIES)])
    first, second = sorted([STUDY, other])
    for s in d.series:
        assert s.n_files == 3
        assert s.warnings == [f"SeriesInstanceUID {SERIES} repeats under studies {first} and {second}"]


def test_a_unique_series_gets_no_warning(tmp_path):
    _slices(tmp_path, "u", "PAT", STUDY, SERIES)
    _slices(tmp_path, "v", "PAT", STUDY, SERIES + ".7")
    d = discover_series(tmp_path)
    assert [s.warnings for s in d.series] == [[], []]


def test_a_shared_uid_never_takes_another_patients_study_context(tmp_path):
    """Two patients share a SeriesInstanceUID; PAT-B's series is alone in its study, PAT-A's has a sibling.
    Keyed by the UID alone, the lone series got n_study_series=2 (PAT-A's context)."""
    _slices(tmp_path / "A", "a", "PAT-A", STUDY, SERIES)
    _slices(tmp_path / "A2", "a2", "PAT-A", STUDY, SERIES + ".2")
    _slices(tmp_path / "B", "b", "PAT-B", STUDY, SERIES)
    d = discover_series(tmp_path)
    contexts = study_contexts(d.series)
    assert set(contexts) == {("PAT-A", STUDY, SERIES), ("PAT-A", STUDY, SERIES + ".2"), ("PAT-B", STUDY, SERIES)}
    lone = contexts[SeriesKey("PAT-B", STUDY, SERIES)]
    assert lone.n_study_series == 1 and not lone.available
    assert contexts[SeriesKey("PAT-A", STUDY, SERIES)].n_study_series == 2
    rows = [ResultRow.from_series(r, Prediction(r.series_uid, None, None, {}, True, "untrained"))
            for r in d.series]
    assert sorted(r.key for r in rows) == sorted(contexts)
    assert {r.folder for r in rows} == {str(tmp_path / f) for f in ("A", "A2", "B")}


def test_a_copied_file_is_counted_once(tmp_path):
    files = _slices(tmp_path / "a", "dup", "PAT", STUDY, SERIES)
    copy = tmp_path / "b" / "copy_of_1.dcm"
    copy.parent.mkdir()
    shutil.copyfile(files[1], copy)
    d = discover_series(tmp_path)
    (s,) = d.series
    assert s.files == [str(f) for f in files]
    assert [(k.path, k.reason) for k in d.skipped] == [
        (str(copy), f"duplicate of {files[1]} (same SOPInstanceUID)")]


def test_same_sop_instance_under_another_patient_is_not_a_duplicate(tmp_path):
    """An anonymised copy under another PatientID is that patient's series, not a duplicate."""
    (a,) = _slices(tmp_path / "a", "x", "PAT-A", STUDY, SERIES, n=1)
    ds = corpus.pydicom.dcmread(a)
    ds.PatientID = "PAT-B"
    b = corpus.save(ds, tmp_path / "b" / "x.dcm")
    d = discover_series(tmp_path)
    assert d.skipped == []
    assert sorted((s.patient_id, s.files) for s in d.series) == [("PAT-A", [str(a)]), ("PAT-B", [str(b)])]


def test_files_without_sop_instance_uid_are_all_kept(tmp_path):
    files = _slices(tmp_path, "nosop", "PAT", STUDY, SERIES)
    for f in files:
        ds = corpus.pydicom.dcmread(f)
        del ds.SOPInstanceUID
        del ds.file_meta.MediaStorageSOPInstanceUID
        ds.save_as(f)
    d = discover_series(tmp_path)
    assert d.skipped == [] and d.series[0].n_files == 3


def test_sort_files_each_copy_under_its_own_patient(tmp_path):
    """The bug this identity fixes: one merged record filed both patients' files under one patient."""
    src = tmp_path / "src"
    a = _slices(src / "A", "a", "PAT-A", STUDY, SERIES)
    b = _slices(src / "B", "b", "PAT-B", STUDY, SERIES)
    d = discover_series(src)
    rows = [ResultRow.from_series(r, Prediction(r.series_uid, SequenceLabel.T2w, 0.99, {}, False, "test"))
            for r in d.series]
    summary = sort_series(rows, tmp_path / "dest", sources=[src])
    assert summary.n_files == 6
    for patient, files in (("PAT-A", a), ("PAT-B", b)):
        copied = sorted(p.name for p in (tmp_path / "dest" / patient).rglob("*.dcm"))
        assert copied == sorted(f.name for f in files), patient
