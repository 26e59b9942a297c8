"""Run-level cases: damaged label stores, unusable Slicer databases and model cards."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Callable

from corpus_run import (DATABASE, MODEL, STORE, RunCase, _write, classify, good, good_uid, make_db, outdir)


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
# 9. model cards: every number that sizes an allocation is range-checked first
# ----------------------------------------------------------------------------

def _assets() -> Path:
    from SeqClassifierLib.model.classifier import assets_dir

    return assets_dir()


def _shipped_card() -> dict:
    import json

    from SeqClassifierLib.model.classifier import DEFAULT_MODEL_NAME

    return json.loads((_assets() / DEFAULT_MODEL_NAME).read_text(encoding="utf-8"))


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """Set the dotted entry ``path`` of a card (e.g. ``preprocessing.input_size``) to ``value``."""
    def mutate(card: dict) -> None:
        *parents, last = path.split(".")
        obj = card
        for key in parents:
            if not isinstance(obj.get(key), dict):
                obj[key] = {}
            obj = obj[key]
        obj[last] = value
    return mutate


def _lora(card: dict) -> None:
    card["model"]["lora"] = {"rank": 10 ** 9, "alpha": 8.0, "targets": ["qkv"], "dropout": 0.0}


CARDS = {  # label -> (change to the shipped card, stderr regex: the card file and the field)
    "image size 10^9": (_set("preprocessing.input_size", 10 ** 9),
                        r"m\.json: preprocessing\.input_size = 1000000000 is out of range"),
    "model image size -1": (_set("model.input_size", -1), r"m\.json: model\.input_size = -1 is out of range"),
    "10^12 metadata features": (_set("model.num_meta_features", 10 ** 12),
                                r"m\.json: model\.num_meta_features = 1000000000000 is out of range"),
    "hidden width 10^9": (_set("model.meta_hidden", 10 ** 9), r"m\.json: model\.meta_hidden = 1000000000 is out"),
    "fusion width 1e300": (_set("model.fusion_hidden", 1e300), r"m\.json: model\.fusion_hidden = 1e\+300 is out of range"),
    "meta_dim is text": (_set("model.meta_dim", "64"), r"m\.json: model\.meta_dim = '64' is not an integer"),
    "10^9 classes": (_set("model.num_classes", 10 ** 9), r"m\.json: model\.num_classes = 1000000000 is out"),
    "10^6 folds": (_set("n_folds", 10 ** 6), r"m\.json: n_folds = 1000000 is out of range"),
    "LoRA rank 10^9": (_lora, r"m\.json: model\.lora\.rank = 1000000000 is out of range"),
    "10,000 image channels": (_set("preprocessing.mean", [0.5] * 10_000),
                              r"m\.json: preprocessing\.mean has 10000 values; the model's image has 3 channels"),
    "std 0": (_set("preprocessing.std", [0.5, 0.0, 0.5]), r"m\.json: preprocessing\.std\[1\] = 0\.0 is out of range"),
    "temperature NaN": (_set("temperature", float("nan")), r"m\.json: temperature = nan is out of range"),
    "review threshold 5": (_set("review_threshold", 5), r"m\.json: review_threshold = 5 is out of range"),
    "dropout 2": (_set("model.dropout", 2.0), r"m\.json: model\.dropout = 2\.0 is out of range"),
}


def _card_case(label: str) -> Callable[[Path], RunCase]:
    import json

    mutate, err = CARDS[label]

    def build(root: Path) -> RunCase:
        g = good(root)
        card = _shipped_card()
        mutate(card)
        folder = root / "model"
        folder.mkdir()
        (folder / "m.json").write_text(json.dumps(card), encoding="utf-8")  # (NaN written as NaN)
        # the shipped weights beside it (their hash matches): only the changed field is wrong
        os.symlink(_assets() / card["weights_file"], folder / card["weights_file"])
        return RunCase(f"model card: {label}", MODEL, classify(g, "--model", folder / "m.json"), [g, folder], (1,),
                       r"error: cannot load model: checkpoint card .*" + err, good=False)
    return build


def model_card_2gb(root: Path) -> RunCase:
    """A 2 GB (sparse) card file: refused from its size, never read."""
    g = good(root)
    folder = root / "model"
    folder.mkdir()
    with open(folder / "m.json", "wb") as fh:
        fh.truncate(2 * 1024 ** 3)
    return RunCase("model card: a 2 GB file", MODEL, classify(g, "--model", folder / "m.json"), [g], (1,),
                   r"checkpoint card .*m\.json is 2147483648 bytes; a card is at most 16 MiB \(not read\)", good=False)
