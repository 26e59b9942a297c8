"""Run-level cases: undecodable / control-character file names, hostile header text."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import corpus
from corpus_run import HEADER, NAMES, RunCase, as_written, classify, good, outdir


# ----------------------------------------------------------------------------
# 3. file names: undecodable bytes, newlines, control characters
# ----------------------------------------------------------------------------

BAD_FILE_NAMES = {  # raw name -> its escaped form on the terminal (JSON carries the name itself)
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
        real = os.fsdecode(os.path.join(os.fsencode(bad), raw))

        def check(result: dict) -> None:
            skipped = {s["path"]: s["reason"] for s in result["doc"]["skipped"]}
            assert set(skipped) == {real}, skipped  # lossless: the name a program can open
            assert os.path.isfile(real) and skipped[real].startswith("not a DICOM file"), skipped
            assert f"skipped {expected}: not a DICOM file" in result["err"]  # the terminal: escaped
        return RunCase(f"bad file named with {label}", NAMES, classify(g, bad, out=out), [g, bad], (2,),
                       out=out, check=check)
    return build


GOOD_FOLDER_NAMES = {  # (raw folder name, escaped (table / CSV), format); JSON / JSONL carry it losslessly
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
            if fmt in ("json", "jsonl"):
                docs = [json.loads(text)] if fmt == "json" else [json.loads(x) for x in text.splitlines()]
                rows = docs[0]["series"] if fmt == "json" else [d["row"] for d in docs if d["type"] == "series"]
                assert [r["folder"] for r in rows] == [str(folder)], rows  # lossless: a program opens it
                assert os.path.isdir(rows[0]["folder"])
            elif escaped:
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
