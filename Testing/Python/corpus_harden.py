"""Run-level bad-input corpus: what a new user can hand the command line, one case per situation.

:mod:`corpus` holds bad *files* beside a GOOD series (what discovery must
report); this module holds bad *runs*: output targets, sources named through
a Slicer database, undecodable and control-character file names, hostile
header text, damaged label stores, unusable databases, sort destinations and
full disks.  Every builder prepares a folder and returns a :class:`RunCase`:
the command line to run, the trees whose every byte must stay as it was
(:func:`corpus.tree_digest` before and after), the exit codes allowed, and a
regular expression the stderr must match (the input named with its reason).

Cases are grouped by the CLASS of problem they belong to (:data:`CLASSES`);
``test_hardening.py`` runs every case and the per-class tests.
"""

from __future__ import annotations

import os
import socket
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
CLASSES = (SOURCE, TARGET, NAMES, HEADER, STORE, DATABASE, SORT, DISK)


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


# ----------------------------------------------------------------------------
# 1. never write into a source (whatever named it)
# ----------------------------------------------------------------------------

def src_out_db_listed_file(root: Path) -> RunCase:
    g, db = db_of_good(root)
    target = sorted(g.iterdir())[0]
    return RunCase("--out is a DICOM file the database lists", SOURCE,
                   classify("--slicer-db", db, out=target), [g, db.parent], (1,),
                   rf"--out {target}.*is a file listed by the Slicer DICOM database", good=False)


def src_out_db_relative_file(root: Path) -> RunCase:
    dbdir = root / "db"
    inside = dbdir / "dicom" / "1.2" / "series"
    corpus.copy_good(inside)
    names = [f"dicom/1.2/series/{p.name}" for p in sorted(inside.iterdir())]
    db = make_db(dbdir, names)
    target = sorted(inside.iterdir())[1]
    return RunCase("--out is a file the database holds (relative name)", SOURCE,
                   classify("--slicer-db", db, out=target), [dbdir], (1,),
                   r"--out .*(file listed by|inside) the Slicer DICOM database", good=False)


def src_out_db_file(root: Path) -> RunCase:
    g, db = db_of_good(root)
    return RunCase("--out is the database file", SOURCE, classify("--slicer-db", db, out=db), [g, db.parent], (1,),
                   r"--out .*ctkDICOM\.sql is the Slicer DICOM database", good=False)


def src_out_db_folder(root: Path) -> RunCase:
    g, db = db_of_good(root)
    return RunCase("--out new file in the database folder", SOURCE,
                   classify("--slicer-db", db, out=db.parent / "r.json"), [g, db.parent], (1,),
                   r"inside the Slicer DICOM database folder", good=False)


def src_out_db_listed_folder(root: Path) -> RunCase:
    g, db = db_of_good(root)
    return RunCase("--out new file in a folder the database lists", SOURCE,
                   classify("--slicer-db", db, out=g / "r.json"), [g, db.parent], (1,),
                   r"inside the folder .* of files listed by the Slicer DICOM database", good=False)


def src_out_link_to_db_listed(root: Path) -> RunCase:
    g, db = db_of_good(root)
    link = outdir(root) / "latest.json"
    os.symlink(sorted(g.iterdir())[0], link)
    return RunCase("--out is a symlink to a file the database lists", SOURCE,
                   classify("--slicer-db", db, out=link), [g, db.parent], (1,),
                   r"resolves to .* is a file listed by", good=False)


def src_out_through_linked_folder(root: Path) -> RunCase:
    g = good(root)
    link = outdir(root) / "g"
    os.symlink(g, link)
    return RunCase("--out through a symlinked folder into the input", SOURCE,
                   classify(g, out=link / "r.json"), [g], (1,), r"inside the input folder", good=False)


def src_out_positional_file(root: Path) -> RunCase:
    g = good(root)
    f = sorted(g.iterdir())[0]
    return RunCase("--out is the input file itself", SOURCE, classify(f, out=f), [g], (1,),
                   r"is the input file", good=False)


def src_out_dotdot(root: Path) -> RunCase:
    g = good(root)
    (root / "o").mkdir()
    return RunCase("--out with .. into the input folder", SOURCE,
                   classify(g, out=root / "o" / ".." / "good" / "r.json"), [g], (1,),
                   r"inside the input folder", good=False)


def src_out_hardlink(root: Path) -> RunCase:
    """A hard link to a source file: the atomic rename replaces the link's name, never the source's bytes."""
    g = good(root)
    out = outdir(root) / "r.json"
    os.link(sorted(g.iterdir())[0], out)
    return RunCase("--out is a hard link of a source file", SOURCE, classify(g, out=out), [g], (0,), out=out)


def _cache_case(kind: str, root: Path, argv_fn: Callable[[Path, Path, Path], list[str]], err: str) -> RunCase:
    g, db = db_of_good(root)
    out = outdir(root) / "r.json"
    return RunCase(kind, SOURCE, argv_fn(g, db, out), [g, db.parent], (0,),
                   rf"warning: header cache not saved: --cache .*{err}", out=out)


def src_cache_db_listed(root: Path) -> RunCase:
    return _cache_case("--cache in a folder the database lists", root,
                       lambda g, db, out: classify("--slicer-db", db, "--cache", g / "h.json", out=out),
                       "inside the folder")


def src_cache_db_file(root: Path) -> RunCase:
    return _cache_case("--cache is the database file", root,
                       lambda g, db, out: classify("--slicer-db", db, "--cache", db, out=out),
                       "is the Slicer DICOM database")


def src_cache_positional(root: Path) -> RunCase:
    return _cache_case("--cache inside the input folder", root,
                       lambda g, db, out: classify(g, "--cache", g / "h.json", out=out), "inside the input folder")


def src_cache_link_to_source(root: Path) -> RunCase:
    def argv(g: Path, db: Path, out: Path) -> list[str]:
        link = root / "o" / "h.json"
        os.symlink(sorted(g.iterdir())[0], link)
        return classify(g, "--cache", link, out=out)
    return _cache_case("--cache is a symlink to a source file", root, argv, "resolves to")


def _sort_case(kind: str, root: Path, dest_fn: Callable[[Path, Path], Path], err: str,
               with_db: bool = True) -> RunCase:
    g, db = db_of_good(root)
    empty = root / "empty"
    empty.mkdir()
    store = store_with_good(root / "store" / "labels.json")
    dest = dest_fn(g, db)
    argv = ["sort", str(empty if with_db else g), str(dest), "--labels", "--store", str(store)]
    argv += ["--slicer-db", str(db)] if with_db else []
    return RunCase(kind, SOURCE, argv, [g, db.parent, empty], (1,), err, good=False)


def src_sort_dest_db_listed(root: Path) -> RunCase:
    return _sort_case("sort DEST in a folder the database lists", root, lambda g, db: g / "sorted",
                      r"destination .* is inside the")


def src_sort_dest_db_folder(root: Path) -> RunCase:
    return _sort_case("sort DEST in the database folder", root, lambda g, db: db.parent / "sorted",
                      r"destination .* is inside the")


def src_sort_dest_contains_db_listed(root: Path) -> RunCase:
    return _sort_case("sort DEST contains a folder the database lists", root, lambda g, db: root,
                      r"destination .* contains the")


def src_sort_link_inside_dest(root: Path) -> RunCase:
    def dest(g: Path, db: Path) -> Path:
        d = root / "sorted"
        d.mkdir()
        os.symlink(g, d / "ProstateX-0000")  # the patient folder sort would create, pointing into the source
        return d
    return _sort_case("sort DEST/<patient> is a symlink into the source", root, dest,
                      r"series folder .* is inside the", with_db=False)


def src_store_in_source(root: Path) -> RunCase:
    g = good(root)
    return RunCase("label store inside the input folder", SOURCE,
                   ["sort", str(g), str(root / "sorted"), "--labels", "--store", str(g / "labels.json")],
                   [g], (1,), r"label store .* inside the input folder", good=False)


def src_store_is_db(root: Path) -> RunCase:
    g, db = db_of_good(root)
    return RunCase("label store is the database file", SOURCE,
                   ["sort", str(g), str(root / "sorted"), "--labels", "--store", str(db), "--slicer-db", str(db)],
                   [g, db.parent], (1,), r"label store .*(is the Slicer DICOM database|inside)", good=False)


# ----------------------------------------------------------------------------
# 2. one write rule for what --out names
# ----------------------------------------------------------------------------

def tgt_dev_null(root: Path) -> RunCase:
    g = good(root)
    return RunCase("--out /dev/null", TARGET, classify(g, out=Path("/dev/null")), [g], (0,), good=False,
                   check=_is_kind(Path("/dev/null"), stat.S_ISCHR))


def tgt_dev_full(root: Path) -> RunCase:
    g = good(root)
    return RunCase("--out /dev/full (a device that is always full)", TARGET, classify(g, out=Path("/dev/full")),
                   [g], (1,), r"cannot write --out /dev/full: No space left on device", good=False,
                   check=_is_kind(Path("/dev/full"), stat.S_ISCHR))


def tgt_fifo_reader(root: Path) -> RunCase:
    import select
    import threading

    g = good(root)
    fifo = outdir(root) / "pipe"
    os.mkfifo(fifo)
    got: dict = {}

    def setup(_mp: Any) -> Callable[[], None]:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there before the writer comes

        def read() -> None:
            data = b""
            while True:
                ready, _, _ = select.select([fd], [], [], 30)
                if not ready:
                    break
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                data += chunk
            got["data"] = data
        t = threading.Thread(target=read, daemon=True)
        t.start()
        got["thread"] = t
        return lambda: os.close(fd)

    def check(result: dict) -> None:
        got["thread"].join(30)
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
        import json
        doc = json.loads(got.get("data", b"").decode("utf-8"))
        assert [r["n_files"] for r in doc["series"]] == [5], doc

    return RunCase("--out a FIFO with a reader", TARGET, classify(g, out=fifo), [g], (0,), check=check,
                   setup=setup, good=False)


def tgt_fifo_no_reader(root: Path) -> RunCase:
    g = good(root)
    fifo = outdir(root) / "pipe"
    os.mkfifo(fifo)
    return RunCase("--out a FIFO nobody reads", TARGET, classify(g, out=fifo), [g], (1,),
                   r"--out .*pipe: a named pipe \(FIFO\) that nobody reads", good=False,
                   check=_is_kind(fifo, stat.S_ISFIFO))


def tgt_link_to_regular(root: Path) -> RunCase:
    g = good(root)
    o = outdir(root)
    (o / "runs").mkdir()
    (o / "runs" / "7.json").write_text("old")
    os.symlink("runs/7.json", o / "latest.json")

    def check(result: dict) -> None:
        assert os.path.islink(o / "latest.json") and os.readlink(o / "latest.json") == "runs/7.json"
        assert (o / "runs" / "7.json").read_text().startswith("{")
    return RunCase("--out a symlink to a regular file", TARGET, classify(g, out=o / "latest.json"), [g], (0,),
                   out=o / "runs" / "7.json", check=check)


def tgt_dangling_link(root: Path) -> RunCase:
    g = good(root)
    o = outdir(root)
    os.symlink(root / "nowhere" / "x.json", o / "dangling.json")
    return RunCase("--out a dangling symlink", TARGET, classify(g, out=o / "dangling.json"), [g], (1,),
                   r"--out .*dangling\.json: a symbolic link to a missing file", good=False,
                   check=_is_kind(o / "dangling.json", stat.S_ISLNK))


def tgt_folder(root: Path) -> RunCase:
    g = good(root)
    o = outdir(root)
    return RunCase("--out an existing folder", TARGET, classify(g, out=o), [g], (1,),
                   r"--out .*/o: it is a folder, not a file", good=False, check=_is_kind(o, stat.S_ISDIR))


def tgt_socket(root: Path) -> RunCase:
    g = good(root)
    path = outdir(root) / "s.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    return RunCase("--out a socket", TARGET, classify(g, out=path), [g], (1,), r"it is a socket, not a file",
                   good=False, check=_is_kind(path, stat.S_ISSOCK))


def tgt_parent_missing(root: Path) -> RunCase:
    g = good(root)
    return RunCase("--out in a folder that does not exist", TARGET, classify(g, out=root / "nope" / "r.json"),
                   [g], (1,), r"--out folder does not exist", good=False)


def tgt_parent_is_file(root: Path) -> RunCase:
    g = good(root)
    f = outdir(root) / "file.txt"
    f.write_text("x")
    return RunCase("--out under a file (file.txt/r.json)", TARGET, classify(g, out=f / "r.json"), [g], (1,),
                   r"--out .*file\.txt/r\.json: Not a directory", good=False)


def tgt_link_to_dev_null(root: Path) -> RunCase:
    g = good(root)
    link = outdir(root) / "null.json"
    os.symlink("/dev/null", link)
    return RunCase("--out a symlink to /dev/null", TARGET, classify(g, out=link), [g], (0,), good=False,
                   check=_is_kind(link, stat.S_ISLNK))


def tgt_link_chain(root: Path) -> RunCase:
    g = good(root)
    o = outdir(root)
    (o / "c.json").write_text("old")
    os.symlink("c.json", o / "b.json")
    os.symlink("b.json", o / "a.json")

    def check(result: dict) -> None:
        assert os.path.islink(o / "a.json") and os.path.islink(o / "b.json")
    return RunCase("--out a chain of symlinks", TARGET, classify(g, out=o / "a.json"), [g], (0,),
                   out=o / "c.json", check=check)


def tgt_existing_regular(root: Path) -> RunCase:
    g = good(root)
    o = outdir(root)
    (o / "r.json").write_text("old")

    def check(result: dict) -> None:
        assert sorted(p.name for p in o.iterdir()) == ["r.json"], list(o.iterdir())  # no temp file left
    return RunCase("--out an existing regular file", TARGET, classify(g, out=o / "r.json"), [g], (0,),
                   out=o / "r.json", check=check)


# ----------------------------------------------------------------------------
# 3. file names: undecodable bytes, newlines, control characters
# ----------------------------------------------------------------------------

BAD_FILE_NAMES = {  # raw name -> its escaped form in every output
    "non-UTF-8 byte": (b"bad\xff.dcm", r"bad\xff.dcm"),
    "newline": (b"bad\nline.dcm", r"bad\nline.dcm"),
    "terminal title escape": (b"\x1b]0;pwned\x07.dcm", r"\x1b]0;pwned\x07.dcm"),
    "tab and carriage return": (b"tab\tcr\r.dcm", r"tab\tcr\r.dcm"),
    "right-to-left override": ("rlo\u202egpj.dcm".encode(), r"rlo\u202egpj.dcm"),
    "C1 controls (NEL, CSI)": ("c1\u0085\u009b.dcm".encode(), r"c1\x85\x9b.dcm"),
    "only undecodable bytes": (b"\x80\x81", r"\x80\x81"),
    "Latin-1 name": (b"caf\xe9.txt", r"caf\xe9.txt"),
    "DEL": (b"del\x7f.dcm", r"del\x7f.dcm"),
    "spreadsheet formula": (b"=HYPERLINK(1).txt", "=HYPERLINK(1).txt"),
}


def _bad_name_case(label: str) -> Callable[[Path], RunCase]:
    raw, escaped = BAD_FILE_NAMES[label]

    def build(root: Path) -> RunCase:
        g = good(root)
        bad = root / "bad"
        bad.mkdir()
        with open(os.path.join(os.fsencode(bad), raw), "wb") as fh:
            fh.write(b"not a DICOM file " * 10)
        out = outdir(root) / "r.json"
        expected = str(bad) + "/" + escaped

        def check(result: dict) -> None:
            skipped = {s["path"]: s["reason"] for s in result["doc"]["skipped"]}
            assert set(skipped) == {expected}, skipped
            assert skipped[expected].startswith("not a DICOM file"), skipped
            assert f"skipped {expected}: not a DICOM file" in result["err"]
        return RunCase(f"bad file named with {label}", NAMES, classify(g, bad, out=out), [g, bad], (2,),
                       out=out, check=check)
    return build


GOOD_FOLDER_NAMES = {  # (raw folder name, escaped, format)
    "non-UTF-8 folder (JSON)": (b"good\xff", r"good\xff", "json"),
    "newline folder (JSON)": (b"good\nnl", r"good\nnl", "json"),
    "ANSI colour folder (JSON)": (b"\x1b[31mred", r"\x1b[31mred", "json"),
    "formula folder (CSV)": (b"=cmd|' /C calc'!A0", "/=cmd|' /C calc'!A0", "csv"),
    "minus folder (CSV)": (b"-rf", "/-rf", "csv"),
    "at-sign folder (CSV)": (b"@SUM(1)", "/@SUM(1)", "csv"),
    "non-UTF-8 folder (CSV, stdout)": (b"g\xfe\xff", r"g\xfe\xff", "csv"),
    "non-UTF-8 folder (JSONL, stdout)": (b"g\xfe\xff", r"g\xfe\xff", "jsonl"),
    "non-UTF-8 folder (table, stdout)": (b"g\xfe\xff", "", "table"),
}


def _good_folder_case(label: str) -> Callable[[Path], RunCase]:
    raw, escaped, fmt = GOOD_FOLDER_NAMES[label]

    def build(root: Path) -> RunCase:
        folder = Path(os.fsdecode(os.path.join(os.fsencode(root / "in"), raw)))
        corpus.copy_good(folder)
        to_stdout = "stdout" in label
        out = None if to_stdout else outdir(root) / f"r.{fmt}"

        def check(result: dict) -> None:
            text = result["stdout"] if to_stdout else result["out_bytes"].decode("utf-8")
            text.encode("utf-8")  # strict: no lone surrogate reached the output
            if escaped:
                assert as_written(escaped, fmt) in text, (escaped, text[:2000])
        return RunCase(f"GOOD series in a folder: {label}", NAMES, classify(root / "in", out=out, fmt=fmt),
                       [root / "in"], (0,),
                       out=out, fmt=fmt, check=check, good=fmt == "json")
    return build


# ----------------------------------------------------------------------------
# 4. header text: terminals and spreadsheets
# ----------------------------------------------------------------------------

HEADER_TEXT = {  # label -> (keyword, value (str or raw bytes), charset, format, text that must appear)
    "ESC colour sequence in SeriesDescription": ("SeriesDescription", "t2\x1b[2J\x1b[31mred", None, "json",
                                                  r"t2\x1b[2J\x1b[31mred"),
    "newline in SeriesDescription": ("SeriesDescription", "t2\nFAKE ROW", None, "csv", r"t2\nFAKE ROW"),
    "formula = in SeriesDescription": ("SeriesDescription", "=1+1", None, "csv", "'=1+1"),
    "formula + in SeriesDescription": ("SeriesDescription", "+1", None, "csv", "'+1"),
    "formula - in SeriesDescription": ("SeriesDescription", "-2+3", None, "csv", "'-2+3"),
    "formula @ in SeriesDescription": ("SeriesDescription", "@SUM(A1)", None, "csv", "'@SUM(A1)"),
    "control characters in PatientID": ("PatientID", "P\x07\x08\x1b1", None, "json", r"P\x07\x08\x1b1"),
    "bidi override in SeriesDescription": ("SeriesDescription", "adc\u202etxt.exe", "ISO_IR 192", "table",
                                           r"adc\u202etxt.exe"),
    "NUL in Manufacturer": ("Manufacturer", "SIE\x00MENS", None, "json", ""),
    "10,000-character SeriesDescription": ("SeriesDescription", "t2_" + "x" * 10_000, None, "json", "t2_xxx"),
    "invalid UTF-8 bytes (ISO_IR 192)": ("SeriesDescription", b"bad\xff\xfe\x1b[31m", "ISO_IR 192", "json", ""),
    # (pydicom strips the trailing NEL, U+0085, as whitespace)
    "C1 CSI under ISO_IR 100": ("SeriesDescription", b"c1\x9b31m\x85", "ISO_IR 100", "table", r"c1\x9b31m"),
    "formula in PatientID (CSV)": ("PatientID", "=HYPERLINK(\"http://x\")", None, "csv", "'=HYPERLINK"),
}


def _header_case(label: str) -> Callable[[Path], RunCase]:
    keyword, value, charset, fmt, expect = HEADER_TEXT[label]

    def build(root: Path) -> RunCase:
        g = good(root)
        ds = corpus.retag(corpus.good_slice(), "header-" + label)
        if charset:
            ds.SpecificCharacterSet = charset
        if isinstance(value, bytes):
            ds[keyword].value = value
        else:
            setattr(ds, keyword, value)
        corpus.save(ds, root / "hostile" / "h.dcm")
        to_stdout = fmt == "table"
        out = None if to_stdout else outdir(root) / f"r.{fmt}"

        def check(result: dict) -> None:
            text = result["stdout"] if to_stdout else result["out_bytes"].decode("utf-8")
            text.encode("utf-8")
            bad = [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F
                   or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"]
            assert not bad, f"raw control characters in the output: {bad[:5]}"
            if expect:
                assert as_written(expect, fmt) in text, (expect, text[:3000])
        return RunCase(f"header text: {label}", HEADER, classify(g, root / "hostile", out=out, fmt=fmt),
                       [g, root / "hostile"],
                       (0,), out=out, fmt=fmt, check=check, good=fmt == "json")
    return build


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


# ----------------------------------------------------------------------------
# 5. label stores
# ----------------------------------------------------------------------------

def _entry(**fields: Any) -> str:
    import json

    entry = {"series_uid": good_uid(), "confirmed_label": "T2w", **fields}
    return json.dumps({"schema": "seqclassifier-labels", "version": 1, "series": {good_uid(): entry}})


STORES = {  # label -> (builder of the store path given the folder, stderr regex)
    "a folder": (lambda d: (d / "labels.json").mkdir(parents=True) or d / "labels.json",
                 r"label store .*labels\.json is a folder, not a file"),
    "JSON nested 100,000 deep": (lambda d: _write(d, "[" * 100_000 + "]" * 100_000),
                                 r"damaged \(invalid JSON: nested too deeply\)"),
    "confidence is text": (lambda d: _write(d, _entry(confidence="high")), r"confidence is not a number"),
    "confidence NaN": (lambda d: _write(d, _entry().replace('"T2w"', '"T2w", "confidence": NaN')),
                       r"confidence nan is not in \[0, 1\]"),
    "confidence 1e400 (infinite)": (lambda d: _write(d, _entry().replace('"T2w"', '"T2w", "confidence": 1e400')),
                                    r"confidence inf is not in \[0, 1\]"),
    "probability 5": (lambda d: _write(d, _entry(probabilities={"T2w": 5})), r"probability of T2w 5 is not in"),
    "series_number 1e30": (lambda d: _write(d, _entry(series_number=10 ** 30)), r"series_number is not a 32-bit"),
    "series_number true": (lambda d: _write(d, _entry(series_number=True)), r"series_number is not a 32-bit"),
    "unknown label": (lambda d: _write(d, _entry(confirmed_label="FLAIR")), r"damaged \(wrong schema"),
    "label is a number": (lambda d: _write(d, _entry(confirmed_label=3)), r"confirmed_label is not text"),
    "description is a list": (lambda d: _write(d, _entry(description=["a"])), r"description is not text"),
    "needs_review is text": (lambda d: _write(d, _entry(needs_review="yes")), r"needs_review is not true/false"),
    "top level is a list": (lambda d: _write(d, "[]"), r"top level is not an object"),
    "invalid UTF-8": (lambda d: _write(d, b"{\"schema\": \"\xff\"}"), r"invalid JSON"),
    "empty file": (lambda d: _write(d, ""), r"damaged \(empty file\)"),
    "newer version": (lambda d: _write(d, _entry().replace('"version": 1', '"version": 99')), r"version 99 is newer"),
    "its folder is a file": (lambda d: _write(d, "x") and (d / "labels.json" / "labels.json"),
                             r"label store .*: (cannot open|cannot create its folder): Not a directory"),
    "a dangling symlink": (lambda d: _link(d, d / "gone.json"), r"label store .* symbolic link to a missing file"),
    "a FIFO": (lambda d: _fifo(d), r"label store .* is not a regular file"),
}


def _write(d: Path, text: Any) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / "labels.json"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def _link(d: Path, to: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    os.symlink(to, d / "labels.json")
    return d / "labels.json"


def _fifo(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    os.mkfifo(d / "labels.json")
    return d / "labels.json"


def _store_case(label: str) -> Callable[[Path], RunCase]:
    make, err = STORES[label]

    def build(root: Path) -> RunCase:
        g = good(root)
        store = make(root / "store")
        return RunCase(f"label store: {label}", STORE, ["sort", str(g), str(root / "sorted"), "--labels",
                                                        "--store", str(store)],
                       [g], (1,), err, good=False,
                       check=lambda r: (not (root / "sorted").exists()) or None)
    return build


# ----------------------------------------------------------------------------
# 6. Slicer databases
# ----------------------------------------------------------------------------

def _db_file_case(label: str, make: Callable[[Path], Path], err: str) -> Callable[[Path], RunCase]:
    def build(root: Path) -> RunCase:
        g = good(root)
        db = make(root / "db")
        out = outdir(root) / "r.json"
        return RunCase(f"--slicer-db {label}", DATABASE, classify("--slicer-db", db, out=out), [g, root / "db"],
                       (1,), err, good=False)
    return build


def _sqlite_without_tables(d: Path) -> Path:
    d.mkdir(parents=True)
    conn = sqlite3.connect(d / "ctkDICOM.sql")
    conn.execute("CREATE TABLE Other (x)")
    conn.commit()
    conn.close()
    return d / "ctkDICOM.sql"


def _truncated_sqlite(d: Path) -> Path:
    db = make_db(d, ["x"] * 200)
    raw = db.read_bytes()
    db.write_bytes(raw[:4096 + 100])
    return db


DB_FILES = {
    "is a text file": (lambda d: _write(d, "not a database").rename(d / "ctkDICOM.sql"),
                       r"ctkDICOM\.sql: not an SQLite database"),
    "is empty (0 bytes)": (lambda d: _write(d, "").rename(d / "ctkDICOM.sql"), r"empty file \(0 bytes\)"),
    "is SQLite without CTK's tables": (_sqlite_without_tables, r"not a Slicer DICOM database \(no table Images"),
    "is a truncated SQLite file": (_truncated_sqlite, r"ctkDICOM\.sql: (cannot read|not a Slicer)"),
    "is a folder without ctkDICOM.sql": (lambda d: d.mkdir(parents=True) or d,
                                         r"no Slicer DICOM database at .*ctkDICOM\.sql"),
    "is a folder named ctkDICOM.sql": (lambda d: (d / "x" / "ctkDICOM.sql").mkdir(parents=True) or d / "x" /
                                       "ctkDICOM.sql" / "ctkDICOM.sql", r"no Slicer DICOM database"),
    "is a FIFO": (lambda d: d.mkdir(parents=True) or os.mkfifo(d / "ctkDICOM.sql") or d / "ctkDICOM.sql",
                  r"ctkDICOM\.sql: not a regular file"),
}


def _db_rows_case(label: str, extra: list[Any], err: str, code: int) -> Callable[[Path], RunCase]:
    def build(root: Path) -> RunCase:
        g = good(root)
        (root / "extra").mkdir()
        names = [str(f) for f in sorted(g.iterdir())] + [v(root) if callable(v) else v for v in extra]
        db = make_db(root / "db", names)
        out = outdir(root) / "r.json"
        return RunCase(f"--slicer-db row: {label}", DATABASE, classify("--slicer-db", db, out=out),
                       [g, root / "db", root / "extra"], (code,), err, out=out)
    return build


DB_ROWS = {
    # CTK declares Filename VARCHAR: SQLite's TEXT affinity stores a number as text, a relative name
    "Filename is a number": ([12345], r"skipped .*db/12345: no such file", 2),
    "Filename is binary": ([b"\xff\xfe\x00"], r"Images row \d+: Filename is binary, not text", 0),
    "Filename has a NUL": (["/tmp/a\x00b.dcm"], r"Images row \d+: Filename contains a NUL", 0),
    "Filename 10,000 characters": (["/" + "a" * 10_000], r"Filename is 10001 characters long", 0),
    "file is missing": ([lambda r: str(r / "extra" / "gone.dcm")], r"skipped .*gone\.dcm: no such file", 2),
    "file is a FIFO": ([lambda r: (os.mkfifo(r / "extra" / "p.dcm"), str(r / "extra" / "p.dcm"))[1]],
                       r"skipped .*p\.dcm: not a regular file", 2),
    "file is a folder": ([lambda r: ((r / "extra" / "adir").mkdir(), str(r / "extra" / "adir"))[1]], r"", 0),
}


def db_bad_with_positional(root: Path) -> RunCase:
    g = good(root)
    db = _write(root / "db", "garbage").rename(root / "db" / "ctkDICOM.sql")
    out = outdir(root) / "r.json"

    def check(result: dict) -> None:
        skipped = {s["path"]: s["reason"] for s in result["doc"]["skipped"]}
        assert "not an SQLite database" in skipped[str(db)], skipped
    return RunCase("--slicer-db garbage beside a good input folder: the run goes on", DATABASE,
                   classify(g, "--slicer-db", db, out=out), [g, root / "db"], (2,),
                   r"skipped .*ctkDICOM\.sql: .*not an SQLite database", out=out, check=check)


def db_bad_series_number(root: Path) -> RunCase:
    g = good(root)
    db = make_db(root / "db", [str(f) for f in sorted(g.iterdir())], series_number="not a number")
    out = outdir(root) / "r.json"
    return RunCase("--slicer-db SeriesNumber is text", DATABASE, classify("--slicer-db", db, out=out),
                   [g, root / "db"], (0,), out=out)


# ----------------------------------------------------------------------------
# 7. sort writes, 8. full disk
# ----------------------------------------------------------------------------

def sort_onto_file(root: Path) -> RunCase:
    g = good(root)
    store = store_with_good(root / "store" / "labels.json")
    dest = root / "dest.txt"
    dest.write_text("a file")
    return RunCase("sort onto a file", SORT, ["sort", str(g), str(dest), "--labels", "--store", str(store)],
                   [g, dest], (1,), r"destination .*dest\.txt: .*dest\.txt is a file, not a folder", good=False)


def sort_under_file(root: Path) -> RunCase:
    g = good(root)
    store = store_with_good(root / "store" / "labels.json")
    f = root / "f.txt"
    f.write_text("a file")
    return RunCase("sort into a folder under a file", SORT,
                   ["sort", str(g), str(f / "sub"), "--labels", "--store", str(store)],
                   [g, f], (1,), r"f\.txt is a file, not a folder", good=False)


def _enospc(*_a: Any, **_k: Any) -> None:
    import errno
    raise OSError(errno.ENOSPC, "No space left on device")


def sort_full_disk(root: Path) -> RunCase:
    g = good(root)
    store = store_with_good(root / "store" / "labels.json")
    dest = root / "sorted"

    def setup(mp: Any) -> None:
        mp.setattr("SeqClassifierLib.curation.sorting.os.fsync", _enospc)

    def check(result: dict) -> None:
        left = [p for p in dest.rglob("*") if p.is_file()]
        assert left == [], f"files left after a failed copy: {left}"
    return RunCase("sort on a full disk (fsync ENOSPC)", SORT,
                   ["sort", str(g), str(dest), "--labels", "--store", str(store)], [g], (1,),
                   r"error: cannot copy .* No space left on device \(0 files copied so far; no partial file left\)",
                   good=False, setup=setup, check=check)


def sort_rerun_after_kill(root: Path) -> RunCase:
    """A killed run left a stale temporary copy: the rerun removes it and copies every file."""
    import time

    g = good(root)
    store = store_with_good(root / "store" / "labels.json")
    dest = root / "sorted"
    from SeqClassifierLib.curation.sorting import TEMP_SUFFIX

    state: dict = {}

    def setup(mp: Any) -> None:
        # where the series will go: found by a dry run of the same command
        from SeqClassifierLib.app import cli
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
            cli.main(["sort", str(g), str(dest), "--labels", "--store", str(store), "--dry-run"])
        folder = dest / out.getvalue().split("-> ")[1].strip()
        folder.mkdir(parents=True)
        stale = folder / f".{sorted(g.iterdir())[0].name}.abc{TEMP_SUFFIX}"
        stale.write_bytes(b"half a file")
        old = time.time() - 3600
        os.utime(stale, (old, old))
        state["stale"] = stale

    def check(result: dict) -> None:
        assert not state["stale"].exists()
        copies = sorted(p for p in dest.rglob("*") if p.is_file())
        assert [p.read_bytes() for p in copies] == [f.read_bytes() for f in sorted(g.iterdir())]
    return RunCase("sort rerun after a killed run (stale temporary copy)", SORT,
                   ["sort", str(g), str(dest), "--labels", "--store", str(store)], [g], (0,),
                   good=False, setup=setup, check=check)


def disk_out_fsync(root: Path) -> RunCase:
    g = good(root)
    o = outdir(root)
    (o / "r.json").write_text("previous result")

    def setup(mp: Any) -> None:
        mp.setattr("SeqClassifierLib.atomic.os.fsync", _enospc)

    def check(result: dict) -> None:
        assert (o / "r.json").read_text() == "previous result"
        assert sorted(p.name for p in o.iterdir()) == ["r.json"]
    return RunCase("--out on a full disk (fsync ENOSPC): the previous file stays", DISK,
                   classify(g, out=o / "r.json"), [g], (1,),
                   r"error: cannot write --out .*r\.json: No space left on device", good=False, setup=setup,
                   check=check)


def disk_out_write(root: Path) -> RunCase:
    g = good(root)
    o = outdir(root)

    def setup(mp: Any) -> None:
        real_open = open

        class Full:
            def __init__(self, fh: Any) -> None:
                self.fh = fh

            def __enter__(self) -> "Full":
                return self

            def __exit__(self, *a: Any) -> None:
                self.fh.close()

            def write(self, data: bytes) -> None:
                _enospc()

            def flush(self) -> None:
                pass

        def fake_open(path: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
            fh = real_open(path, mode, *a, **k)
            return Full(fh) if mode == "wb" and os.path.basename(str(path)).startswith(".r.json.") else fh
        mp.setattr("builtins.open", fake_open)

    def check(result: dict) -> None:
        assert list(o.iterdir()) == []
    return RunCase("--out on a full disk (write ENOSPC): nothing left", DISK, classify(g, out=o / "r.json"), [g],
                   (1,), r"cannot write --out .*No space left on device", good=False, setup=setup, check=check)


def disk_out_tmpfs(root: Path) -> RunCase:
    """A really full file system: a 64 KB tmpfs filled up (needs root and mount; else the case is skipped)."""
    import subprocess

    g = good(root)
    tiny = root / "tiny"
    tiny.mkdir()
    state: dict = {}

    def setup(mp: Any) -> Callable[[], None]:
        import pytest

        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)], capture_output=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode(errors='replace').strip()}")
        fd = os.open(tiny / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"x" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        state["mounted"] = True
        return lambda: subprocess.run(["umount", str(tiny)], check=True)

    def check(result: dict) -> None:
        assert sorted(p.name for p in tiny.iterdir()) == ["filler"]
    return RunCase("--out on a full tmpfs", DISK, classify(g, out=tiny / "r.json"), [g], (1,),
                   r"cannot write --out .*r\.json: No space left on device", good=False, setup=setup, check=check)


# ----------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[Path], RunCase]] = {}


def _register() -> None:
    for name, fn in list(globals().items()):
        if name.startswith(("src_", "tgt_", "db_bad", "sort_", "disk_")) and callable(fn):
            BUILDERS[name] = fn
    for label in BAD_FILE_NAMES:
        BUILDERS[f"name_file_{label}"] = _bad_name_case(label)
    for label in GOOD_FOLDER_NAMES:
        BUILDERS[f"name_folder_{label}"] = _good_folder_case(label)
    for label in HEADER_TEXT:
        BUILDERS[f"header_{label}"] = _header_case(label)
    for label in STORES:
        BUILDERS[f"store_{label}"] = _store_case(label)
    for label, (make, err) in DB_FILES.items():
        BUILDERS[f"db_file_{label}"] = _db_file_case(label, make, err)
    for label, (extra, err, code) in DB_ROWS.items():
        BUILDERS[f"db_row_{label}"] = _db_rows_case(label, extra, err, code)


_register()
