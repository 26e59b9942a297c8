"""A header cache file of the wrong shape is ignored with one warning line and rebuilt, never a traceback.

Generated data only: small MR images written with pydicom into ``tmp_path``;
the cache files are written by hand.
"""

from __future__ import annotations

import json
import re
import os
import time
from pathlib import Path

import pytest

import corpus
from SeqClassifierLib.app import cli
from SeqClassifierLib.dicom.discovery import discover_series
from SeqClassifierLib.dicom.header_cache import HeaderCache
from SeqClassifierLib.model import classifier as classifier_module


def _images(folder: Path, n: int = 3) -> list[Path]:
    out = []
    for i in range(n):
        ds = corpus.minimal_object(corpus.MR_IMAGE, "MR", f"cache-{i}", image=True)
        ds.StudyInstanceUID = corpus.uid("cache", "study")
        ds.SeriesInstanceUID = corpus.uid("cache", "series")
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0, 0, float(i)]
        p = corpus.save(ds, folder / f"{i}.dcm")
        old = time.time() - 60  # older than HeaderCache.RACY_SECONDS: cacheable
        os.utime(p, (old, old))
        out.append(p)
    return out


def _good_cache(folder: Path, store: Path) -> dict:
    cache = HeaderCache(store)
    discover_series(folder, cache=cache, workers=1)
    cache.save(inputs=[folder])
    return json.loads(store.read_text())


def _deep(n: int) -> str:
    return "[" * n + "]" * n


def _entry_damage(doc: dict, how) -> str:
    doc = json.loads(json.dumps(doc))
    key = sorted(doc["entries"])[0]
    how(doc["entries"][key][1])
    return json.dumps(doc)


#: whole-file damage: (text of the cache file given the good document) -> the reason in the warning
FILE_CASES = {
    "empty list": (lambda doc: "[]", r"a JSON list, not a header cache object"),
    "null": (lambda doc: "null", r"a JSON NoneType"),
    "a number": (lambda doc: "42", r"a JSON int"),
    "not JSON": (lambda doc: "{not json", r"not JSON"),
    "binary": (lambda doc: "\udcff", r"not JSON"),
    "no stamp": (lambda doc: json.dumps({"entries": doc["entries"]}), r"no version stamp"),
    "stamp not text": (lambda doc: json.dumps({"stamp": 7, "entries": {}}), r"no version stamp"),
    "entries a list": (lambda doc: json.dumps({"stamp": doc["stamp"], "entries": []}), r"entries is not an object"),
    "entries missing": (lambda doc: json.dumps({"stamp": doc["stamp"]}), r"entries is not an object"),
    "entry a string": (lambda doc: json.dumps({"stamp": doc["stamp"], "entries": {"/x": "y"}}), r"wrong shape"),
    "entry of three": (lambda doc: json.dumps({"stamp": doc["stamp"], "entries": {"/x": [1, 2, 3]}}),
                       r"wrong shape"),
    "stat key of text": (lambda doc: json.dumps({"stamp": doc["stamp"], "entries": {"/x": [["a"] * 4, "r"]}}),
                         r"wrong shape"),
    "stat key of booleans": (lambda doc: json.dumps({"stamp": doc["stamp"],
                                                     "entries": {"/x": [[True] * 4, "r"]}}), r"wrong shape"),
    "value a number": (lambda doc: json.dumps({"stamp": doc["stamp"], "entries": {"/x": [[1, 2, 3, 4], 5]}}),
                       r"wrong shape"),
    "nested 100,000 deep": (lambda doc: _deep(100_000), r"nested too deeply"),
    "deep inside entries": (lambda doc: json.dumps({"stamp": doc["stamp"], "entries": {}})[:-3]
                            + '{"/x": ' + _deep(100_000) + "}}", r"nested too deeply"),
}


def _write(store: Path, text: str) -> None:
    with open(store, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(text)


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_damaged_cache_file_is_ignored_and_rebuilt(tmp_path, name):
    files = _images(tmp_path / "in")
    store = tmp_path / "cache" / "headers.json"
    doc = _good_cache(tmp_path / "in", store)
    make, reason = FILE_CASES[name]
    _write(store, make(doc))
    cache = HeaderCache(store)
    assert cache.load() is False
    assert len(cache) == 0
    (line,) = cache.pop_warnings()
    assert line.startswith(f"header cache {store} ignored and rebuilt: ") and "\n" not in line
    assert re.search(reason, line), line
    assert cache.pop_warnings() == []
    d = discover_series(tmp_path / "in", cache=cache, workers=1)
    assert [s.n_files for s in d.series] == [len(files)] and cache.hits == 0
    cache.save(inputs=[tmp_path / "in"])
    again = HeaderCache(store)
    assert again.load() is True and again.pop_warnings() == []
    discover_series(tmp_path / "in", cache=again, workers=1)
    assert again.hits == len(files) and again.misses == 0


def _drop(key):
    return lambda v: v.pop(key)


#: damage inside one entry's header: found at lookup, the file read again
ENTRY_CASES = {
    "missing key": _drop("series_uid"),
    "extra key": lambda v: v.update(path="/elsewhere"),
    "uid a number": lambda v: v.update(series_uid=5),
    "series number text": lambda v: v.update(series_number="7"),
    "series number boolean": lambda v: v.update(series_number=True),
    "mosaic negative": lambda v: v.update(mosaic_tiles=-1),
    "header a list": lambda v: v.update(header=[]),
    "header value an object": lambda v: v["header"].update(EchoTime={"x": 1}),
    "frames empty": lambda v: v.update(frames=[]),
    "frames an object": lambda v: v.update(frames={}),
    "frame of two": lambda v: v.update(frames=[[0, None]]),
    "frame position of text": lambda v: v["frames"][0].__setitem__(1, ["a", "b", "c"]),
    "frame orientation of 5": lambda v: v["frames"][0].__setitem__(2, [1, 0, 0, 0, 1]),
    "frame b-value text": lambda v: v["frames"][0].__setitem__(3, "800"),
    "frame index a float": lambda v: v["frames"][0].__setitem__(0, 0.5),
    "NaN position": lambda v: v["frames"][0].__setitem__(1, [float("nan"), 0, 0]),
}


@pytest.mark.parametrize("name", list(ENTRY_CASES))
def test_damaged_entry_is_read_again(tmp_path, name):
    files = _images(tmp_path / "in")
    store = tmp_path / "cache" / "headers.json"
    doc = _good_cache(tmp_path / "in", store)
    fresh = discover_series(tmp_path / "in", workers=1)
    store.write_text(_entry_damage(doc, ENTRY_CASES[name]))
    cache = HeaderCache(store)
    assert cache.load() is True and cache.pop_warnings() == []
    d = discover_series(tmp_path / "in", cache=cache, workers=1)
    assert d.series == fresh.series and d.skipped == fresh.skipped
    assert (cache.hits, cache.misses) == (len(files) - 1, 1)
    (line,) = cache.pop_warnings()
    assert line.startswith(f"header cache {store}: 1 damaged entry ignored and read again (first: ")
    cache.save(inputs=[tmp_path / "in"])
    again = HeaderCache(store)
    again.load()
    discover_series(tmp_path / "in", cache=again, workers=1)
    assert again.hits == len(files) and again.pop_warnings() == []


def test_cli_prints_one_warning_line_for_a_damaged_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(classifier_module, "default_model_path", lambda: None)  # untrained: no model load
    _images(tmp_path / "in")
    store = tmp_path / "cache" / "headers.json"
    store.parent.mkdir()
    store.write_text(_deep(50_000))
    code = cli.main(["classify", str(tmp_path / "in"), "--cache", str(store), "--format", "json",
                     "--out", str(tmp_path / "r.json"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err
    assert [ln for ln in err.splitlines() if "header cache" in ln] == [
        f"warning: header cache {store} ignored and rebuilt: nested too deeply to be a header cache"]
    assert json.loads(store.read_text())["entries"], "the cache was rebuilt"
