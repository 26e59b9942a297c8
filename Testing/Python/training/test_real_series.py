"""The real-series manifest data/real_series.csv (scripts/real_corpus.py): complete, valid, no reserved source."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "data" / "real_series.csv"


def _tool():
    spec = importlib.util.spec_from_file_location("real_corpus", ROOT / "scripts" / "real_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows():
    with open(MANIFEST, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_manifest_is_valid_and_names_no_reserved_repository():
    tool = _tool()
    rows = _rows()
    assert list(rows[0]) == tool.COLUMNS
    assert tool.problems(rows) == []
    sources = {r["source"] for r in rows}
    assert len(sources) >= 8
    for r in rows:
        if r["commit"]:
            assert len(r["commit"]) == 40 and int(r["commit"], 16) >= 0


def test_every_shared_series_is_in_the_manifest(prostatex, vendors):
    uids = {r["SeriesInstanceUID"]: r for r in _rows()}
    for root in (prostatex, vendors):
        with open(root / "labels.csv", newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                assert r["SeriesInstanceUID"] in uids, r["series_dir"]
                assert uids[r["SeriesInstanceUID"]]["label"] == r["label"]


def test_problems_are_found():
    tool = _tool()
    good = {"source": "s", "repository": "a/b", "commit": "0" * 40, "path": "x", "StudyInstanceUID": "1",
            "SeriesInstanceUID": "1.2", "label": "DWI", "manufacturer": "GE", "note": "b=1000"}
    assert tool.problems([good]) == []
    assert "reserved" in tool.problems([dict(good, repository="neurolabusc/dcm_qa_ge")])[0]
    assert "twice" in tool.problems([good, dict(good)])[0]
    assert "not one of" in tool.problems([dict(good, label="T1w")])[0]
    assert "no reason" in tool.problems([dict(good, note=" ")])[0]
