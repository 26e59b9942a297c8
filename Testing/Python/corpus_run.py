"""Shared parts of the run-level corpus: :class:`RunCase`, the classes of problems, builders' helpers.

See :mod:`corpus_harden` for what the corpus is and how it is run.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pydicom

import corpus

#: The classes of problems (each case belongs to exactly one).
SOURCE = "never write into a source"
TARGET = "one write rule for non-regular targets"
NAMES = "undecodable / control-character file names"
HEADER = "header text safe for terminals and spreadsheets"
STORE = "label store validated"
DATABASE = "Slicer database validated"
SORT = "sort writes safely"
DISK = "full disk"
MODEL = "model card validated"
CLASSES = (SOURCE, TARGET, NAMES, HEADER, STORE, DATABASE, SORT, DISK, MODEL)


@dataclass
class RunCase:
    kind: str
    klass: str
    argv: list[str]
    #: trees (folders or files) that must not change by one byte
    sources: list[Path]
    codes: tuple[int, ...]
    #: regex stderr must match (re.search, case-insensitive); "" = anything
    err: str = ""
    #: the JSON (or other) result file to read back, when there is one
    out: Optional[Path] = None
    fmt: str = "json"
    #: the GOOD series must be classified as in a clean run
    good: bool = True
    #: extra assertions on the run: check(result) with result = {"code", "err", "stdout", "doc", "out_bytes"}
    check: Optional[Callable[[dict], None]] = None
    #: set up before the run (monkeypatch, FIFO reader...): setup(monkeypatch) -> optional teardown callable
    setup: Optional[Callable[[Any], Optional[Callable[[], None]]]] = None
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

def good(root: Path, name: str = "good") -> Path:
    folder = root / name
    corpus.copy_good(folder)
    return folder


def good_uid() -> str:
    return str(pydicom.dcmread(corpus.good_files(1)[0], stop_before_pixels=True).SeriesInstanceUID)


def outdir(root: Path) -> Path:
    o = root / "o"
    o.mkdir(parents=True, exist_ok=True)
    return o


_DB_SCHEMA = ("CREATE TABLE Images (SOPInstanceUID TEXT, Filename TEXT, URL TEXT, SeriesInstanceUID TEXT,"
              " InsertTimestamp TEXT);"
              "CREATE TABLE Series (SeriesInstanceUID TEXT, StudyInstanceUID TEXT, SeriesNumber INT,"
              " SeriesDescription TEXT, Modality TEXT, InsertTimestamp TEXT);"
              "CREATE TABLE Studies (StudyInstanceUID TEXT, PatientsUID INT, StudyDate TEXT,"
              " StudyDescription TEXT, InsertTimestamp TEXT);"
              "CREATE TABLE Patients (UID INTEGER PRIMARY KEY, PatientsName TEXT, PatientID TEXT,"
              " InsertTimestamp TEXT);")


def make_db(db_dir: Path, filenames: list[Any], series_number: Any = 4) -> Path:
    """A CTK-schema ctkDICOM.sql in ``db_dir`` listing ``filenames`` (any SQLite value) in one series."""
    db_dir.mkdir(parents=True, exist_ok=True)
    db = db_dir / "ctkDICOM.sql"
    conn = sqlite3.connect(db)
    conn.executescript(_DB_SCHEMA)
    conn.execute("INSERT INTO Patients VALUES (1, 'X', 'ProstateX-0000', 't')")
    conn.execute("INSERT INTO Studies VALUES ('1.2', 1, '20110707', '', 't')")
    conn.execute("INSERT INTO Series VALUES (?, '1.2', ?, 't2_tse_tra', 'MR', 't')", (good_uid(), series_number))
    conn.executemany("INSERT INTO Images VALUES (?, ?, NULL, ?, 't')",
                     [(str(i), f, good_uid()) for i, f in enumerate(filenames)])
    conn.commit()
    conn.close()
    return db


def db_of_good(root: Path) -> tuple[Path, Path]:
    """(GOOD folder, database listing its files by absolute path in root/db)."""
    g = good(root)
    return g, make_db(root / "db", [str(f) for f in sorted(g.iterdir())])


def classify(*args: Any, out: Optional[Path] = None, fmt: str = "json") -> list[str]:
    argv = ["classify", *map(str, args), "--format", fmt, "--device", "cpu"]
    return argv + (["--out", str(out)] if out is not None else [])


def store_with_good(path: Path) -> Path:
    """A label store confirming the GOOD series as T2w (sort --labels needs no model then)."""
    from SeqClassifierLib.curation.label_store import LabelStore

    LabelStore(path).confirm(good_uid(), "T2w", user="corpus")
    return path


def _is_kind(path: Path, test: Callable[[int], bool]) -> Callable[[dict], None]:
    def check(result: dict) -> None:
        assert test(os.lstat(path).st_mode), f"{path} changed kind: {stat.filemode(os.lstat(path).st_mode)}"
    return check



def as_written(text: str, fmt: str) -> str:
    """How ``text`` (a value after safe_text) appears in a file of format ``fmt`` (JSON escapes backslashes)."""
    import json

    return json.dumps(text, ensure_ascii=False)[1:-1] if fmt in ("json", "jsonl") else text


def csv_cells_safe(text: str) -> None:
    """No CSV cell a spreadsheet would run as a formula (= + @, or - not followed by a number)."""
    import csv
    import io

    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            assert not cell.startswith(("=", "+", "@")), cell
            assert not (cell.startswith("-") and not _is_number(cell)), cell


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _write(d: Path, text: Any) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / "labels.json"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def _enospc(*_a: Any, **_k: Any) -> None:
    import errno
    raise OSError(errno.ENOSPC, "No space left on device")
