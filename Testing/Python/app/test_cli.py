"""The ``seqclassifier`` command line: formats, fields, exit codes, read-only inputs."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from corpus import tree_digest as _hash_tree  # sha256 + size + mtime of every path, links unfollowed
from SeqClassifierLib.app import cli
from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.app.output import ROW_FIELDS
from SeqClassifierLib.dicom.pydicom_compat import PYDICOM_VERSION

REPO = Path(__file__).resolve().parents[3]


def run(args, capsys):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def untrained(monkeypatch, tmp_path):
    """Force the untrained path (no shipped model) so the test does not depend on one."""
    monkeypatch.setattr("SeqClassifierLib.model.classifier.default_model_path", lambda: None)


def test_json_lists_the_18_series_with_every_field(prostatex, prostatex_labels, capsys, untrained):
    code, out, err = run(["classify", prostatex, "--format", "json", "--quiet"], capsys)
    doc = json.loads(out)
    rows = doc["series"]
    assert len(rows) == 18
    assert {r["series_uid"] for r in rows} == {r["SeriesInstanceUID"] for r in prostatex_labels}
    for r in rows:
        assert set(ROW_FIELDS) <= set(r)
    by = {(r["patient_id"], r["description"]): r for r in rows}
    assert by[("ProstateX-0000", "t2_tse_sag")]["plane"] == "sagittal"
    assert by[("ProstateX-0000", "t2_tse_tra")]["plane"] == "axial"
    assert by[("ProstateX-0000", "t2_tse_cor")]["plane"] == "coronal"
    assert by[("ProstateX-0000", "ep2d_diff_tra_DYNDIST")]["b_values"] == [50.0, 400.0, 800.0]
    assert by[("ProstateX-0000", "ep2d_diff_tra_DYNDIST")]["n_files"] == 57
    # the labels.csv beside the data is reported, not fatal: exit code 2
    assert code == cli.EXIT_SKIPPED
    assert [Path(s["path"]).name for s in doc["skipped"]] == ["labels.csv"]
    # untrained: no invented labels, and it says so
    assert doc["model"]["trained"] is False and doc["model"]["name"] == "untrained"
    assert all(r["label"] is None and r["confidence"] is None for r in rows)
    assert all("untrained" in r["note"] for r in rows)


def test_table_says_untrained(prostatex, capsys, untrained):
    code, out, err = run(["classify", prostatex / "ProstateX-0000", "--quiet"], capsys)
    assert code == cli.EXIT_OK
    assert out.startswith("MODEL: UNTRAINED")
    assert len(out.strip().splitlines()) == 2 + 7  # banner + header + 7 series
    assert "t2_tse_sag" in out


def test_csv_and_jsonl_formats(prostatex, capsys, untrained):
    folder = prostatex / "ProstateX-0001"
    code, out, _ = run(["classify", folder, "--format", "csv", "--quiet"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 11 and all(f"p_{c}" in rows[0] for c in CLASS_NAMES)
    assert {r["plane"] for r in rows} == {"axial", "sagittal", "coronal"}
    code, out, _ = run(["classify", folder, "--format", "jsonl", "--quiet"], capsys)
    events = [json.loads(line) for line in out.splitlines()]
    types = [e["type"] for e in events]
    assert types.count("series") == 11 and types[-1] == "summary"
    assert "progress" in types  # progress events for the Slicer background runner
    assert events[-1]["exit_code"] == cli.EXIT_OK == code


def test_out_file_is_written_and_never_inside_inputs(prostatex, tmp_path, capsys, untrained):
    out_file = tmp_path / "result.json"
    code, out, _ = run(["classify", prostatex / "ProstateX-0000", "--format", "json", "--out", out_file, "--quiet"], capsys)
    assert code == 0 and out == ""
    assert len(json.loads(out_file.read_text())["series"]) == 7
    code, _, err = run(["classify", prostatex, "--out", prostatex / "result.csv"], capsys)
    assert code == cli.EXIT_ERROR and "never writes into DICOM input folders" in err
    assert not (prostatex / "result.csv").exists()


def test_nothing_found_exit_code(tmp_path, capsys, untrained):
    (tmp_path / "a.txt").write_text("hello")
    code, _, err = run(["classify", tmp_path], capsys)
    assert code == cli.EXIT_NOTHING
    assert "a.txt: not a DICOM file" in err


def test_console_script_entry_point_runs():
    # `python -m SeqClassifierLib.app.cli --help` works from the module folder (as in Slicer)
    res = subprocess.run([sys.executable, "-m", "SeqClassifierLib.app.cli", "--help"], cwd=REPO / "SeqClassifier",
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "classify" in res.stdout and "Exit codes" in res.stdout


def test_sort_with_confirmed_labels_leaves_sources_untouched(prostatex, prostatex_labels, tmp_path, capsys, untrained):
    from SeqClassifierLib.curation.label_store import LabelStore

    src = prostatex / "ProstateX-0000"
    before = _hash_tree(src)
    store = LabelStore(tmp_path / "store" / "labels.json")
    for row in prostatex_labels:
        if row["series_dir"].startswith("ProstateX-0000"):
            store.confirm(row["SeriesInstanceUID"], row["label"])
    dest = tmp_path / "sorted"
    code, out, err = run(["sort", src, dest, "--labels", "--store", store.path, "--only", "T2w,ADC",
                          "--plane", "axial", "--quiet"], capsys)
    assert code == cli.EXIT_OK, err
    folders = sorted(p.relative_to(dest).as_posix() for p in dest.glob("*/*/*"))
    assert [f.split("/")[0] for f in folders] == ["ProstateX-0000"] * 2
    assert sorted(f.split("/")[-1] for f in folders) == ["ADC_axial_7", "T2w_axial_4"]
    assert all(len(list((dest / f).iterdir())) == 19 for f in folders)  # both series have 19 files
    assert _hash_tree(src) == before


def test_classify_reads_a_slicer_database(prostatex, tmp_path, capsys, untrained):
    import sqlite3

    src = prostatex / "ProstateX-0000" / "07-07-2011" / "4.000000-t2tsetra-00702"
    db = tmp_path / "ctkDICOM.sql"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE Images (SOPInstanceUID TEXT, Filename TEXT, URL TEXT, SeriesInstanceUID TEXT,"
                       " InsertTimestamp TEXT);"
                       "CREATE TABLE Series (SeriesInstanceUID TEXT, StudyInstanceUID TEXT, SeriesNumber INT,"
                       " SeriesDescription TEXT, Modality TEXT, InsertTimestamp TEXT);"
                       "CREATE TABLE Studies (StudyInstanceUID TEXT, PatientsUID INT, StudyDate TEXT,"
                       " StudyDescription TEXT, InsertTimestamp TEXT);"
                       "CREATE TABLE Patients (UID INTEGER PRIMARY KEY, PatientsName TEXT, PatientID TEXT,"
                       " InsertTimestamp TEXT);")
    conn.execute("INSERT INTO Patients VALUES (1, 'X', 'ProstateX-0000', 't')")
    conn.execute("INSERT INTO Studies VALUES ('1.2', 1, '20110707', '', 't')")
    conn.execute("INSERT INTO Series VALUES ('9.9', '1.2', 4, 't2_tse_tra', 'MR', 't')")
    conn.executemany("INSERT INTO Images VALUES (?, ?, NULL, '9.9', 't')",
                     [(str(i), str(f)) for i, f in enumerate(sorted(src.iterdir()))])
    conn.commit()
    conn.close()
    code, out, _ = run(["classify", "--slicer-db", db, "--format", "json", "--quiet"], capsys)
    rows = json.loads(out)["series"]
    assert code == cli.EXIT_OK
    assert [(r["description"], r["n_files"], r["plane"]) for r in rows] == [("t2_tse_tra", 19, "axial")]


def test_cache_skips_unchanged_files_on_the_next_run(prostatex, tmp_path, capsys, untrained):
    cache = tmp_path / "cache" / "headers.json"
    study = prostatex / "ProstateX-0000"
    n_files = sum(1 for p in study.rglob("*") if p.is_file())
    code1, out1, err1 = run(["classify", study, "--format", "json", "--cache", cache], capsys)
    assert code1 == cli.EXIT_OK and cache.is_file()
    assert f"0 of {n_files} files unchanged" in err1
    code2, out2, err2 = run(["classify", study, "--format", "json", "--cache", cache], capsys)
    assert f"{n_files} of {n_files} files unchanged" in err2
    assert json.loads(out1)["series"] == json.loads(out2)["series"]


@pytest.mark.skipif(PYDICOM_VERSION < (3, 0), reason="synth writes DICOM with pydicom 3's save_as "
                    "(enforce_file_format); its pydicom 2.4 writer is the synth helper's part")
def test_cache_is_never_written_inside_an_input_folder(tmp_path, capsys, untrained):
    study = tmp_path / "study"
    assert run(["synth", study, "--studies", "1", "--seed", "3"], capsys)[0] == 0
    code, out, err = run(["classify", study, "--cache", study / "headers.json", "--quiet"], capsys)
    assert code == cli.EXIT_SKIPPED  # synth writes labels.csv beside the DICOM: reported, not fatal
    assert "header cache not saved" in err and "inside the input folder" in err
    assert not (study / "headers.json").exists()
