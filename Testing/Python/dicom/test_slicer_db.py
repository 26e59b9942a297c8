"""Reading a Slicer DICOM database (ctkDICOM.sql) headless, with CTK's schema."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from SeqClassifierLib.dicom.slicer_db import (read_slicer_db, series_files_from_slicer_db,
                                        series_info_from_slicer_db)

# The tables and columns of CTK's Libs/DICOM/Core/Resources/dicom-schema.sql (schema 0.8.1)
# that SeqClassifier reads, with their real names, types and keys.
SCHEMA = """
CREATE TABLE 'SchemaInfo' ( 'Version' VARCHAR(1024) NOT NULL );
INSERT INTO 'SchemaInfo' VALUES('0.8.1');
CREATE TABLE 'Images' (
  'SOPInstanceUID' VARCHAR(64) NOT NULL, 'Filename' VARCHAR(1024) NULL, 'URL' VARCHAR(2048) NULL,
  'SeriesInstanceUID' VARCHAR(64) NOT NULL, 'InsertTimestamp' VARCHAR(20) NOT NULL,
  'DisplayedFieldsUpdatedTimestamp' DATETIME NULL, PRIMARY KEY ('SOPInstanceUID'));
CREATE TABLE 'Patients' (
  'UID' INTEGER PRIMARY KEY AUTOINCREMENT, 'PatientsName' VARCHAR(255) NULL, 'PatientID' VARCHAR(255) NULL,
  'PatientsBirthDate' DATE NULL, 'PatientsBirthTime' TIME NULL, 'PatientsSex' VARCHAR(1) NULL,
  'PatientsAge' VARCHAR(10) NULL, 'PatientsComments' VARCHAR(255) NULL, 'InsertTimestamp' VARCHAR(20) NOT NULL,
  'DisplayedPatientsName' VARCHAR(255) NULL, 'DisplayedNumberOfStudies' INT NULL,
  'DisplayedLastStudyDate' DATE NULL, 'DisplayedFieldsUpdatedTimestamp' DATETIME NULL,
  'Connections' VARCHAR(2048) NULL);
CREATE TABLE 'Studies' (
  'StudyInstanceUID' VARCHAR(64) NOT NULL, 'PatientsUID' INT NOT NULL, 'StudyID' VARCHAR(255) NULL,
  'StudyDate' DATE NULL, 'StudyTime' VARCHAR(20) NULL, 'StudyDescription' VARCHAR(255) NULL,
  'AccessionNumber' VARCHAR(255) NULL, 'ModalitiesInStudy' VARCHAR(255) NULL,
  'InstitutionName' VARCHAR(255) NULL, 'ReferringPhysician' VARCHAR(255) NULL,
  'PerformingPhysiciansName' VARCHAR(255) NULL, 'InsertTimestamp' VARCHAR(20) NOT NULL,
  'DisplayedNumberOfSeries' INT NULL, 'DisplayedFieldsUpdatedTimestamp' DATETIME NULL,
  PRIMARY KEY ('StudyInstanceUID'));
CREATE TABLE 'Series' (
  'SeriesInstanceUID' VARCHAR(64) NOT NULL, 'StudyInstanceUID' VARCHAR(64) NOT NULL, 'SeriesNumber' INT NULL,
  'SeriesDate' DATE NULL, 'SeriesTime' VARCHAR(20) NULL, 'SeriesDescription' VARCHAR(255) NULL,
  'Modality' VARCHAR(20) NULL, 'BodyPartExamined' VARCHAR(255) NULL, 'FrameOfReferenceUID' VARCHAR(64) NULL,
  'AcquisitionNumber' INT NULL, 'ContrastAgent' VARCHAR(255) NULL, 'ScanningSequence' VARCHAR(45) NULL,
  'EchoNumber' INT NULL, 'TemporalPosition' INT NULL, 'InsertTimestamp' VARCHAR(20) NOT NULL,
  'DisplayedCount' INT NULL, 'DisplayedSize' VARCHAR(20) NULL, 'DisplayedNumberOfFrames' INT NULL,
  'DisplayedFieldsUpdatedTimestamp' DATETIME NULL, PRIMARY KEY ('SeriesInstanceUID'));
CREATE INDEX IF NOT EXISTS 'ImagesSeriesIndex' ON 'Images' ('SeriesInstanceUID');
CREATE INDEX IF NOT EXISTS 'SeriesStudyIndex' ON 'Series' ('StudyInstanceUID');
CREATE INDEX IF NOT EXISTS 'StudiesPatientIndex' ON 'Studies' ('PatientsUID');
"""
TS = "2026-01-01 10:00:00"


@pytest.fixture()
def database(tmp_path):
    """A Slicer-like database: files copied inside (relative names) and linked in place (absolute)."""
    db_dir = tmp_path / "SlicerDICOMDatabase"
    outside = tmp_path / "elsewhere" / "MR" / "s7"
    (db_dir / "dicom" / "1.2.3" / "1.2.3.4").mkdir(parents=True)
    outside.mkdir(parents=True)
    inside_files = []
    for i in range(3):
        f = db_dir / "dicom" / "1.2.3" / "1.2.3.4" / f"1.2.3.4.{i}"
        f.write_bytes(b"x")
        inside_files.append(f)
    outside_files = []
    for i in range(2):
        f = outside / f"IM{i}.dcm"
        f.write_bytes(b"y")
        outside_files.append(f)
    db = db_dir / "ctkDICOM.sql"
    conn = sqlite3.connect(db)
    conn.executescript(SCHEMA)
    conn.execute("INSERT INTO Patients (PatientsName, PatientID, InsertTimestamp) VALUES (?,?,?)",
                 ("Doe^John", "P001", TS))
    conn.execute("INSERT INTO Studies (StudyInstanceUID, PatientsUID, StudyDate, StudyDescription, "
                 "InsertTimestamp) VALUES (?,?,?,?,?)", ("1.2.3", 1, "20110707", "MR prostate", TS))
    conn.executemany("INSERT INTO Series (SeriesInstanceUID, StudyInstanceUID, SeriesNumber, SeriesDescription, "
                     "Modality, InsertTimestamp) VALUES (?,?,?,?,?,?)",
                     [("1.2.3.4", "1.2.3", 4, "t2_tse_tra", "MR", TS),
                      ("1.2.3.7", "1.2.3", 7, "ep2d_diff_tra", "MR", TS),
                      ("1.2.3.9", "1.2.3", 9, "not retrieved", "MR", TS)])
    rows = [(f"1.2.3.4.{i}", f"dicom/1.2.3/1.2.3.4/1.2.3.4.{i}", None, "1.2.3.4", TS) for i in (2, 0, 1)]
    rows += [(f"1.2.3.7.{i}", str(f), None, "1.2.3.7", TS) for i, f in enumerate(outside_files)]
    rows += [("1.2.3.9.0", None, "dicomweb://server/1.2.3.9.0", "1.2.3.9", TS)]  # known by URL only
    conn.executemany("INSERT INTO Images (SOPInstanceUID, Filename, URL, SeriesInstanceUID, InsertTimestamp) "
                     "VALUES (?,?,?,?,?)", rows)
    conn.commit()
    conn.close()
    return db, inside_files, outside_files


def test_series_files(database):
    db, inside, outside = database
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    files = series_files_from_slicer_db(db)
    assert set(files) == {"1.2.3.4", "1.2.3.7"}  # the URL-only series has no files
    assert files["1.2.3.4"] == [str(f) for f in inside]  # relative names resolved against the db folder
    assert files["1.2.3.7"] == [str(f) for f in outside]
    assert all(Path(p).is_absolute() and Path(p).is_file() for ps in files.values() for p in ps)
    # the folder works as well as the file, and a subset can be asked for
    assert series_files_from_slicer_db(db.parent, ["1.2.3.7"]) == {"1.2.3.7": [str(f) for f in outside]}
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # opened read-only


def test_series_info(database):
    db, _, _ = database
    info = series_info_from_slicer_db(db)
    assert info["1.2.3.4"] == {
        "series_uid": "1.2.3.4", "study_uid": "1.2.3", "series_number": 4, "description": "t2_tse_tra",
        "modality": "MR", "patient_id": "P001", "patient_name": "Doe^John", "study_date": "20110707",
        "study_description": "MR prostate", "n_files": 3}
    series = read_slicer_db(db)
    assert [s.series_number for s in series] == [4, 7]


def test_missing_files_and_database(database, tmp_path):
    db, inside, _ = database
    inside[0].unlink()
    assert len(series_files_from_slicer_db(db, check_exists=True)["1.2.3.4"]) == 2
    assert len(series_files_from_slicer_db(db)["1.2.3.4"]) == 3
    with pytest.raises(FileNotFoundError):
        series_files_from_slicer_db(tmp_path / "nowhere")


def test_read_only_mode(database):
    db, _, _ = database
    from SeqClassifierLib.dicom import slicer_db

    conn = slicer_db._connect(db)
    try:
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("DELETE FROM Images")
    finally:
        conn.close()
