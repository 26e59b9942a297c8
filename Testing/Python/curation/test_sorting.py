"""sort_series: sources untouched, documented tree, symlinks, unsafe destinations refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corpus import tree_digest as _hash_tree  # sha256 + size + mtime of every path, links unfollowed
from SeqClassifierLib.labels import SequenceLabel
from SeqClassifierLib.records import Prediction, ResultRow
from SeqClassifierLib.curation.sorting import SortError, safe_name, sort_series, study_folder_name


@pytest.fixture()
def source(tmp_path):
    root = tmp_path / "src"
    rows = []
    spec = [("4", "T2w", "axial", 4), ("5", "T2w", "sagittal", 5), ("7", "DWI", "axial", 7),
            ("8", "ADC", "axial", 8), ("2", "OTHER", "axial", 2), ("9", None, "unknown", None)]
    for folder, label, plane, number in spec:
        d = root / "Pat 01" / "study" / folder
        d.mkdir(parents=True)
        files = []
        for i in range(3):
            f = d / f"IM{i}.dcm"
            f.write_bytes(os.urandom(256))
            files.append(str(f))
        rows.append(ResultRow.from_dict({"series_uid": f"1.2.{folder}", "files": files, "label": label,
                                         "plane": plane, "series_number": number, "patient_id": "Pat 01/../x",
                                         "study_uid": "1.2.840.1", "study_date": "20110707"}))
    return root, rows


def test_copy_tree_and_sources_unchanged(source, tmp_path):
    root, rows = source
    before = _hash_tree(root)
    dest = tmp_path / "sorted"
    summary = sort_series(rows, dest, only="T2w,DWI,ADC", plane="axial")
    assert _hash_tree(root) == before  # every source byte (and mtime) unchanged

    study = study_folder_name("20110707", "1.2.840.1")
    assert study.startswith("20110707_") and len(study) == len("20110707_") + 8
    patient = safe_name("Pat 01/../x")
    assert patient == "Pat_01_x" and "/" not in patient
    expected = {f"{patient}/{study}/T2w_axial_4", f"{patient}/{study}/DWI_axial_7",
                f"{patient}/{study}/ADC_axial_8"}
    assert {s.folder for s in summary.series} == expected
    assert summary.n_series == 3 and summary.n_files == 9 and not summary.conflicts
    for folder in expected:
        files = sorted(p.name for p in (dest / folder).iterdir())
        assert files == ["IM0.dcm", "IM1.dcm", "IM2.dcm"]
        assert all(not (dest / folder / f).is_symlink() for f in files)
    src = Path(rows[0].files[0])
    copied = dest / f"{patient}/{study}/T2w_axial_4/IM0.dcm"
    assert copied.read_bytes() == src.read_bytes()
    assert int(copied.stat().st_mtime) == int(src.stat().st_mtime)  # copy2 keeps metadata
    skipped = dict(summary.skipped)
    assert set(skipped) == {"1.2.5", "1.2.2", "1.2.9"}

    # running again changes nothing and reports the existing identical files
    again = sort_series(rows, dest, only=["T2w", "DWI", "ADC"], plane="axial")
    assert again.n_files == 0 and again.n_existing == 9 and not again.conflicts


def test_labels_override_and_unlabeled(source, tmp_path):
    root, rows = source
    dest = tmp_path / "out"
    summary = sort_series(rows, dest, labels={"1.2.2": SequenceLabel.DCE, "1.2.4": "OTHER"})
    folders = {s.series_uid: s.folder.rsplit("/", 1)[1] for s in summary.series}
    assert folders["1.2.2"] == "DCE_axial_2"  # confirmed label wins over the prediction
    assert folders["1.2.4"] == "OTHER_axial_4"
    assert folders["1.2.9"].startswith("unlabeled_unknown_x")  # no label, no series number
    assert summary.n_series == 6


def test_link_makes_symlinks(source, tmp_path):
    root, rows = source
    before = _hash_tree(root)
    dest = tmp_path / "links"
    summary = sort_series(rows, dest, only=[SequenceLabel.ADC], link=True)
    assert summary.n_series == 1 and summary.link
    linked = list((dest).rglob("*.dcm"))
    assert len(linked) == 3
    for p in linked:
        assert p.is_symlink() and os.path.isabs(os.readlink(p))
        assert Path(os.path.realpath(p)).parent == Path(rows[3].files[0]).parent
    assert _hash_tree(root) == before


def test_destination_inside_source_refused(source):
    root, rows = source
    for dest in (root / "Pat 01" / "study" / "4", root / "Pat 01" / "study" / "4" / "out"):
        with pytest.raises(SortError, match="inside the source folder"):
            sort_series(rows, dest)
    for dest in (root, root.parent):  # a destination holding the sources is refused as well
        with pytest.raises(SortError, match="contains the source folder"):
            sort_series(rows, dest)
    # extra source roots (the command line's SRC) are protected too
    with pytest.raises(SortError, match="inside the source folder"):
        sort_series(rows[:1], root / "sorted", sources=[root])
    assert not (root / "sorted").exists() and not (root / "Pat 01" / "study" / "4" / "out").exists()


def test_conflicting_target_not_overwritten(source, tmp_path):
    root, rows = source
    dest = tmp_path / "c"
    first = sort_series(rows[:1], dest)
    target = dest / first.series[0].folder / "IM0.dcm"
    target.write_bytes(b"someone else's file")
    second = sort_series(rows[:1], dest)
    assert second.conflicts == [str(target)] and target.read_bytes() == b"someone else's file"


def test_records_and_predictions(prostatex, tmp_path):
    from SeqClassifierLib.dicom.discovery import discover_series

    study = prostatex / "ProstateX-0000"
    found = discover_series([study])
    records = found.series
    labels = {"t2_tse_tra": SequenceLabel.T2w, "ep2d_diff_tra_DYNDIST_ADC": SequenceLabel.ADC}
    preds = [Prediction(r.series_uid, labels.get(r.description, SequenceLabel.OTHER), 0.9, {}, False, "m")
             for r in records]
    before = _hash_tree(study)
    dest = tmp_path / "px"
    summary = sort_series([ResultRow.from_series(r, p) for r, p in zip(records, preds)], dest, only="T2w,ADC")
    assert _hash_tree(study) == before
    names = sorted(s.folder.split("/")[-1] for s in summary.series)
    assert names == ["ADC_axial_7", "T2w_axial_4"]
    assert all(s.folder.startswith("ProstateX-0000/20110707_") for s in summary.series)
    # anything but result rows is refused by name
    with pytest.raises(TypeError, match="ResultRow"):
        sort_series(list(zip(records, preds)), tmp_path / "px2", only="T2w,ADC")


def test_safe_names():
    assert safe_name("..") == "unknown"
    assert safe_name("CON") == "_CON"
    assert safe_name("nul.txt") == "_nul.txt"
    assert safe_name("a" * 200).startswith("a" * 50) and len(safe_name("a" * 200)) == 64
    assert safe_name("Müller^Hans") == "M_ller_Hans"
