"""Read a 3D Slicer DICOM database (``ctkDICOM.sql``) without Slicer.

Slicer's DICOM browser keeps an SQLite index of imported files, with the
schema of CTK's ``Libs/DICOM/Core/Resources/dicom-schema.sql``:

* ``Patients(UID, PatientsName, PatientID, PatientsBirthDate, ...)``
* ``Studies(StudyInstanceUID, PatientsUID -> Patients.UID, StudyDate, StudyDescription, ...)``
* ``Series(SeriesInstanceUID, StudyInstanceUID, SeriesNumber, SeriesDescription, Modality, ...)``
* ``Images(SOPInstanceUID, Filename, URL, SeriesInstanceUID, ...)``

``Images.Filename`` is stored relative to the database folder when the file
lies inside it (files copied into the database's ``dicom/`` folder) and
absolute otherwise; CTK resolves relative names against the folder that holds
``ctkDICOM.sql`` (``ctkDICOMDatabase::absolutePathFromInternal``), and so does
this module.  Images with no file name (known only by URL, not retrieved yet)
are left out.

The database is opened read-only (``file:...?mode=ro`` URI): this module
never changes it, even while Slicer has it open.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Union

PathLike = Union[str, os.PathLike]
DATABASE_FILENAME = "ctkDICOM.sql"


@dataclass
class DatabaseSeries:
    """One series of a Slicer DICOM database with its patient and study."""

    series_uid: str
    study_uid: str = ""
    series_number: Optional[int] = None
    description: str = ""
    modality: str = ""
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    study_description: str = ""
    files: list[str] = field(default_factory=list)


def database_file(path: PathLike) -> Path:
    """The ``ctkDICOM.sql`` file for ``path`` (the file itself or the database folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / DATABASE_FILENAME
    if not p.is_file():
        raise FileNotFoundError(f"no Slicer DICOM database at {p}")
    return p


def _connect(db_file: Path) -> sqlite3.Connection:
    uri = db_file.resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=10.0)
    conn.row_factory = sqlite3.Row
    return conn


def _resolve(filename: str, base: Path) -> str:
    """CTK's absolutePathFromInternal: relative names are relative to the database folder."""
    if os.path.isabs(filename):
        return os.path.normpath(filename)
    if len(filename) > 2 and filename[1] == ":" and filename[2] in "/\\":
        return filename  # a Windows drive path read on another system: leave it as stored
    # CTK stores internal paths with "/" (QDir); os.path.normpath turns them native.
    return os.path.normpath(os.path.join(str(base), filename))


def _int(value) -> Optional[int]:
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def read_slicer_db(db_path: PathLike, series_uids: Optional[Iterable[str]] = None,
                   check_exists: bool = False) -> list[DatabaseSeries]:
    """Every series of the database (or only ``series_uids``) with patient/study info and files.

    ``files`` are absolute paths ordered by file name.  ``check_exists``
    drops files that are no longer on disk.  Series are ordered by patient,
    study date, study, series number.
    """
    db_file = database_file(db_path)
    base = db_file.parent.resolve()
    wanted = set(series_uids) if series_uids is not None else None
    conn = _connect(db_file)
    try:
        series_rows = conn.execute(
            """
            SELECT se.SeriesInstanceUID AS series_uid, se.StudyInstanceUID AS study_uid,
                   se.SeriesNumber AS series_number, se.SeriesDescription AS description,
                   se.Modality AS modality,
                   st.StudyDate AS study_date, st.StudyDescription AS study_description,
                   p.PatientID AS patient_id, p.PatientsName AS patient_name
            FROM Series se
            LEFT JOIN Studies st ON st.StudyInstanceUID = se.StudyInstanceUID
            LEFT JOIN Patients p ON p.UID = st.PatientsUID
            """
        ).fetchall()
        by_uid: dict[str, DatabaseSeries] = {}
        for r in series_rows:
            uid = _text(r["series_uid"])
            if not uid or (wanted is not None and uid not in wanted):
                continue
            by_uid[uid] = DatabaseSeries(
                series_uid=uid,
                study_uid=_text(r["study_uid"]),
                series_number=_int(r["series_number"]),
                description=_text(r["description"]),
                modality=_text(r["modality"]),
                patient_id=_text(r["patient_id"]),
                patient_name=_text(r["patient_name"]),
                study_date=_text(r["study_date"]),
                study_description=_text(r["study_description"]),
            )
        for r in conn.execute("SELECT SeriesInstanceUID, Filename FROM Images ORDER BY Filename"):
            uid = _text(r[0])
            name = r[1]
            if not name:
                continue  # known by URL only (not retrieved)
            if wanted is not None and uid not in wanted:
                continue
            series = by_uid.get(uid)
            if series is None:  # images whose series row is missing: keep them, info unknown
                series = by_uid[uid] = DatabaseSeries(series_uid=uid)
            path = _resolve(str(name), base)
            if check_exists and not os.path.isfile(path):
                continue
            series.files.append(path)
    finally:
        conn.close()
    out = [s for s in by_uid.values() if s.files]
    out.sort(key=lambda s: (s.patient_id, s.study_date, s.study_uid,
                            s.series_number if s.series_number is not None else 1 << 30, s.series_uid))
    return out


def series_files_from_slicer_db(db_path: PathLike, series_uids: Optional[Iterable[str]] = None,
                                check_exists: bool = False) -> dict[str, list[str]]:
    """SeriesInstanceUID -> absolute file paths, read from ``ctkDICOM.sql`` (file or folder)."""
    return {s.series_uid: list(s.files) for s in read_slicer_db(db_path, series_uids, check_exists)}


def series_info_from_slicer_db(db_path: PathLike,
                               series_uids: Optional[Iterable[str]] = None) -> dict[str, dict]:
    """SeriesInstanceUID -> patient/study/series info (no file lists), from ``ctkDICOM.sql``."""
    out = {}
    for s in read_slicer_db(db_path, series_uids):
        out[s.series_uid] = {
            "series_uid": s.series_uid, "study_uid": s.study_uid, "series_number": s.series_number,
            "description": s.description, "modality": s.modality, "patient_id": s.patient_id,
            "patient_name": s.patient_name, "study_date": s.study_date,
            "study_description": s.study_description, "n_files": len(s.files),
        }
    return out


def default_database_folders() -> list[Path]:
    """Usual locations of Slicer's DICOM database (existing ones only), newest Slicer first.

    Slicer stores it in ``<Documents>/SlicerDICOMDatabase`` by default
    (the user may choose another folder in the DICOM module).
    """
    candidates = [Path.home() / "Documents" / "SlicerDICOMDatabase", Path.home() / "SlicerDICOMDatabase"]
    return [c for c in candidates if (c / DATABASE_FILENAME).is_file()]
