"""One test per hardening class, on the library directly (the command-line corpus is test_hardening.py)."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import sqlite3
import stat

import pytest

import corpus
from SeqClassifierLib import atomic
from SeqClassifierLib.app.output import csv_cell, format_csv, format_json, safe_text
from SeqClassifierLib.curation import sorting
from SeqClassifierLib.curation.label_store import LabelStore, LabelStoreError, LabelStoreWriteError
from SeqClassifierLib.dicom.slicer_db import SlicerDatabaseError, read_slicer_db
from SeqClassifierLib.records import ResultRow, SkippedFile
from SeqClassifierLib.safe_paths import Sources, UnsafeTargetError, check_writable


def test_one_source_check_whatever_named_the_source(tmp_path):
    """Positional paths, a database's file, folder and file list, links and '..' all protect their sources."""
    data = tmp_path / "data"
    listed = data / "s1" / "IM0"
    listed.parent.mkdir(parents=True)
    listed.write_bytes(b"x")
    db = tmp_path / "db" / "ctkDICOM.sql"
    db.parent.mkdir()
    db.write_bytes(b"x")
    given = tmp_path / "given"
    given.mkdir()
    s = Sources.of([given], db_file=db, db_files=[listed])
    (tmp_path / "link").symlink_to(listed)
    refused = {
        listed: "is a file listed by", db: "is the Slicer DICOM database", db.parent / "new.json": "database folder",
        data / "s1" / "new.json": "of files listed by", given / "x": "inside the input folder .*given",
        tmp_path / "link": "resolves to", given / ".." / "given" / "y": "inside the input folder",
    }
    for target, why in refused.items():
        with pytest.raises(UnsafeTargetError, match=why):
            check_writable(target, s, "--out")
    check_writable(tmp_path / "elsewhere.json", s, "--out")  # fine
    check_writable(data / "s2" / "new.json", s, "--out")  # a sibling folder the database does not list
    with pytest.raises(UnsafeTargetError, match="contains"):  # a folder that receives files
        check_writable(tmp_path, s, "sort destination", folder=True)


def test_one_write_rule_for_every_kind_of_target(tmp_path):
    plan = atomic.write_plan
    assert plan(tmp_path / "new.json") == (atomic.ATOMIC, tmp_path / "new.json")
    (tmp_path / "reg").write_text("old")
    assert plan(tmp_path / "reg")[0] == atomic.ATOMIC
    (tmp_path / "link").symlink_to("reg")
    assert plan(tmp_path / "link") == (atomic.ATOMIC, tmp_path / "reg")  # followed: the link stays
    atomic.atomic_write_text(tmp_path / "link", "new")
    assert os.path.islink(tmp_path / "link") and (tmp_path / "reg").read_text() == "new"
    assert plan("/dev/null")[0] == atomic.IN_PLACE
    atomic.atomic_write_text("/dev/null", "x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    os.mkfifo(tmp_path / "fifo")
    assert plan(tmp_path / "fifo")[0] == atomic.IN_PLACE
    with pytest.raises(atomic.TargetError, match="nobody reads"):
        atomic.atomic_write_text(tmp_path / "fifo", "x")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    sock.close()
    for target, why in ((tmp_path, "it is a folder"), (tmp_path / "dangling", "symbolic link to a missing file"),
                        (tmp_path / "sock", "it is a socket")):
        with pytest.raises(atomic.TargetError, match=why) as info:
            atomic.atomic_write_text(target, "x")
        assert str(info.value).startswith(f"cannot write {target}: ")
    with pytest.raises(OSError) as info:
        atomic.atomic_write_text("/dev/full", "x")
    assert info.value.errno == errno.ENOSPC


def test_text_is_escaped_one_way_in_every_format():
    name = os.fsdecode(b"/d/a\xff\n\x1b[31m\xe2\x80\xae.dcm")
    assert safe_text(name) == r"/d/a\xff\n\x1b[31m\u202e.dcm"
    assert safe_text("Ünïcødé 日本 \\ back") == "Ünïcødé 日本 \\ back"  # printable text untouched
    assert [csv_cell(v) for v in ("=1", "+1", "-x", "@a", "a=1", 3, -1.5, float("nan"))] == [
        "'=1", "'+1", "'-x", "'@a", "a=1", 3, -1.5, None]
    row = ResultRow.from_dict({"series_uid": "1.2", "description": "=cmd\x1b", "folder": name,
                               "confidence": 0.5})
    row.confidence = float("nan")
    text = format_json([row], [SkippedFile(name, "bad\nreason")], {})
    text.encode("utf-8")  # strict: no lone surrogate
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\ud800-\udfff]", text), repr(text)
    doc = json.loads(text)
    # file names are lossless in JSON (escaped by JSON itself); header text goes through safe_text
    assert doc["series"][0]["folder"] == name and doc["series"][0]["confidence"] is None
    assert os.fsencode(doc["series"][0]["folder"]) == b"/d/a\xff\n\x1b[31m\xe2\x80\xae.dcm"
    assert doc["series"][0]["description"] == r"=cmd\x1b"
    assert doc["skipped"] == [{"path": name, "reason": r"bad\nreason"}]
    csv_text = format_csv([row])
    assert "'=cmd\\x1b" in csv_text and "\x1b" not in csv_text
    assert safe_text(name) in csv_text  # tables keep the terminal-safe escape of file names


def test_label_store_inputs_are_validated(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    with pytest.raises(LabelStoreError, match="is a folder, not a file"):
        LabelStore(folder).load()
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    store = LabelStore(deep)
    with pytest.warns(UserWarning):
        assert store.load() == {}
    assert "nested too deeply" in str(store.pop_warnings()[0])
    for bad in ({"confidence": float("inf")}, {"probabilities": {"T2w": -0.1}}, {"series_number": 1.5},
                {"note": 3}, {"review_reasons": "text"}):
        p = tmp_path / f"bad{len(os.listdir(tmp_path))}.json"
        p.write_text(json.dumps({"schema": "seqclassifier-labels", "version": 1,
                                 "series": {"1.2": {"predicted_label": "T2w", **bad}}}))
        with pytest.raises(LabelStoreError, match="wrong schema"):
            LabelStore(p, on_corrupt="raise").load()


def test_label_store_on_a_full_disk_keeps_the_old_store(tmp_path, monkeypatch):
    store = LabelStore(tmp_path / "labels.json")
    store.confirm("1.1", "T2w", user="a")
    old = store.path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(LabelStoreWriteError, match="cannot write: No space left on device"):
        store.confirm("1.2", "DWI", user="a")
    monkeypatch.undo()
    assert store.path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.json", "labels.json.lock"]


def test_sort_never_leaves_a_truncated_file(tmp_path, monkeypatch):
    src = tmp_path / "src"
    files = corpus.copy_good(src, 2)
    before = corpus.tree_digest(src)
    rows = [ResultRow.from_dict({"series_uid": "1.2", "label": "T2w", "plane": "axial", "series_number": 4,
                                 "files": [str(f) for f in files]})]
    real_write = os.fdopen

    class Half:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sorting.os, "fdopen", lambda fd, mode: Half(real_write(fd, mode)))
    with pytest.raises(sorting.SortError, match="No space left on device"):
        sorting.sort_series(rows, tmp_path / "dest")
    monkeypatch.undo()
    assert [p for p in (tmp_path / "dest").rglob("*") if p.is_file()] == []
    summary = sorting.sort_series(rows, tmp_path / "dest")  # the rerun copies everything, no "conflict"
    assert summary.n_files == 2 and not summary.conflicts
    copies = sorted(p for p in (tmp_path / "dest").rglob("*") if p.is_file())
    assert [p.read_bytes() for p in copies] == [f.read_bytes() for f in files]
    assert corpus.tree_digest(src) == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(sorting.SortError, match="is a file, not a folder"):
        sorting.sort_series(rows, tmp_path / "file")


def test_slicer_database_is_validated(tmp_path):
    for content, why in ((b"", "empty file"), (b"hello", "not an SQLite database")):
        p = tmp_path / f"db{len(content)}.sql"
        p.write_bytes(content)
        with pytest.raises(SlicerDatabaseError, match=why):
            read_slicer_db(p)
    empty = tmp_path / "empty.sql"
    sqlite3.connect(empty).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(SlicerDatabaseError, match="no table Images, Series, Studies, Patients"):
        read_slicer_db(empty)
    db = tmp_path / "ok.sql"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE Images (SOPInstanceUID, Filename, URL, SeriesInstanceUID);"
                       "CREATE TABLE Series (SeriesInstanceUID, StudyInstanceUID, SeriesNumber, SeriesDescription,"
                       " Modality); CREATE TABLE Studies (StudyInstanceUID, PatientsUID, StudyDate, StudyDescription);"
                       "CREATE TABLE Patients (UID, PatientsName, PatientID);")
    conn.executemany("INSERT INTO Images VALUES (?, ?, NULL, '1.2')",
                     [("a", "/x/ok.dcm"), ("b", 7), ("c", b"\xff\xfe"), ("d", "/x/\x00.dcm")])
    conn.execute("INSERT INTO Series VALUES ('1.2', '1', 1e400, x'ff', 'MR')")
    conn.commit()
    conn.close()
    problems: list[str] = []
    (series,) = read_slicer_db(db, problems=problems)
    assert series.files == ["/x/ok.dcm"] and series.series_number is None
    assert sorted(p.split(": ", 2)[-1] for p in problems) == [
        "Filename contains a NUL character; left out", "Filename is a int, not text; left out",
        "Filename is binary, not text; left out"]
