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

Everything read is validated before use: a path that is not a regular file,
an empty file, a file that is not SQLite (checked by its 16-byte header) or
an SQLite file without CTK's tables raises :class:`SlicerDatabaseError` (one
line naming the file and the reason); an ``Images`` row whose ``Filename`` is
not usable text (a number, binary, a NUL byte, longer than
:data:`MAX_FILENAME`) is left out and, when a ``problems`` list is given,
reported there.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Union

PathLike = Union[str, os.PathLike]
DATABASE_FILENAME = "ctkDICOM.sql"
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Tables read (CTK's schema); a database without them is not a Slicer DICOM database.
REQUIRED_TABLES = ("Images", "Series", "Studies", "Patients")
#: Longest file name accepted from the database (characters; PATH_MAX is 4096 on Linux).
MAX_FILENAME = 4096


class SlicerDatabaseError(ValueError):
    """The database cannot be used; the message names the file and the reason in one line."""


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
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise FileNotFoundError(f"no Slicer DICOM database at {p}") from None
    except OSError as exc:
        raise SlicerDatabaseError(f"Slicer DICOM database {p}: cannot open: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SlicerDatabaseError(f"Slicer DICOM database {p}: a folder, not a database file")
    if not stat.S_ISREG(st.st_mode):
        raise SlicerDatabaseError(f"Slicer DICOM database {p}: not a regular file; not read")
    if st.st_size == 0:
        raise SlicerDatabaseError(f"Slicer DICOM database {p}: empty file (0 bytes), not an SQLite database")
    try:
        with open(p, "rb") as fh:
            magic = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise SlicerDatabaseError(f"Slicer DICOM database {p}: cannot read: {exc.strerror or exc}") from None
    if magic != SQLITE_MAGIC:
        raise SlicerDatabaseError(f"Slicer DICOM database {p}: not an SQLite database (no SQLite header)")
    return p


def _connect(db_file: Path) -> sqlite3.Connection:
    uri = db_file.resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=10.0)
    conn.row_factory = sqlite3.Row
    return conn


def _filename(value) -> tuple[Optional[str], str]:
    """(usable file name or None, why not) for an ``Images.Filename`` value of any SQLite type."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None, "Filename is binary, not text"
    if not isinstance(value, str):
        return None, f"Filename is a {type(value).__name__}, not text"
    if "\x00" in value:
        return None, "Filename contains a NUL character"
    if len(value) > MAX_FILENAME:
        return None, f"Filename is {len(value)} characters long (more than {MAX_FILENAME})"
    return value, ""


def _check_tables(conn: sqlite3.Connection, db_file: Path) -> None:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    missing = [t for t in REQUIRED_TABLES if t not in names]
    if missing:
        raise SlicerDatabaseError(f"Slicer DICOM database {db_file}: not a Slicer DICOM database "
                                  f"(no table {', '.join(missing)})")


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
    except (TypeError, ValueError, OverflowError):
        return None


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return "" if value is None else str(value).strip()


def read_slicer_db(db_path: PathLike, series_uids: Optional[Iterable[str]] = None,
                   check_exists: bool = False, problems: Optional[list[str]] = None) -> list[DatabaseSeries]:
    """Every series of the database (or only ``series_uids``) with patient/study info and files.

    ``files`` are absolute paths ordered by file name.  ``check_exists``
    drops files that are no longer on disk.  Series are ordered by patient,
    study date, study, series number.  Unusable ``Images`` rows are left out
    and described in ``problems`` (when given).  Raises
    :class:`SlicerDatabaseError` when the database cannot be used at all.
    """
    db_file = database_file(db_path)
    try:
        return _read(db_file, series_uids, check_exists, problems if problems is not None else [])
    except sqlite3.Error as exc:
        raise SlicerDatabaseError(f"Slicer DICOM database {db_file}: cannot read: {exc}") from None


def _read(db_file: Path, series_uids: Optional[Iterable[str]], check_exists: bool,
          problems: list[str]) -> list[DatabaseSeries]:
    base = db_file.parent.resolve()
    wanted = set(series_uids) if series_uids is not None else None
    conn = _connect(db_file)
    try:
        _check_tables(conn, db_file)
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
        for r in conn.execute("SELECT SeriesInstanceUID, Filename, rowid FROM Images ORDER BY Filename"):
            uid = _text(r[0])
            if r[1] is None or r[1] == "" or r[1] == b"":
                continue  # known by URL only (not retrieved)
            if wanted is not None and uid not in wanted:
                continue
            name, why = _filename(r[1])
            if name is None or not uid:
                problems.append(f"Slicer DICOM database {db_file}: Images row {r[2]}: "
                                f"{why or 'no SeriesInstanceUID'}; left out")
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
                                check_exists: bool = False,
                                problems: Optional[list[str]] = None) -> dict[str, list[str]]:
    """SeriesInstanceUID -> absolute file paths, read from ``ctkDICOM.sql`` (file or folder)."""
    return {s.series_uid: list(s.files) for s in read_slicer_db(db_path, series_uids, check_exists, problems)}


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
