"""Streamed, resumable ``classify --format jsonl --out F`` (app/stream.py) on real and replicated data."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from SeqClassifierLib.app import cli
from SeqClassifierLib.app.stream import (JsonlStream, local_results, plan_partitions, run_stream,
                                         series_stamp)
from SeqClassifierLib.model.classifier import Classifier

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import archive_gen  # noqa: E402  (Testing/benchmarks: the replicated-archive generator)


@pytest.fixture
def untrained(monkeypatch):
    monkeypatch.setattr("SeqClassifierLib.model.classifier.default_model_path", lambda: None)


@pytest.fixture
def small_batches(monkeypatch):
    """Partitions of 5, 10, 20, 20 ... files, so that 60 series make several."""
    monkeypatch.setattr("SeqClassifierLib.app.stream.BATCH_FILES", 20)
    monkeypatch.setattr("SeqClassifierLib.app.stream.FIRST_BATCH_FILES", 5)


@pytest.fixture(scope="module")
def small_archive(prostatex, tmp_path_factory) -> Path:
    """60 one-file series (6 studies) rewritten from real ProstateX files, plus one non-DICOM file."""
    root = archive_gen.one_file_series(tmp_path_factory.mktemp("arch") / "a", 60, prostatex, series_per_study=10)
    (root / "P0000002" / "notes.txt").write_text("not DICOM")
    return root


def events(path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def series_rows(path) -> dict[str, dict]:
    return {e["row"]["series_uid"]: e["row"] for e in events(path) if e["type"] == "series"}


def run(argv) -> int:
    return cli.main([str(a) for a in argv])


def test_partitions_cover_every_file_once_and_keep_folders_whole(small_archive):
    parts = plan_partitions([small_archive], batch_files=25, first_batch_files=5)
    assert len(parts) > 3
    assert [p.index for p in parts] == list(range(len(parts)))
    files = []
    for p in parts:
        for path in p.paths:
            files += [str(f) for f in Path(path).rglob("*") if f.is_file()] if os.path.isdir(path) else [path]
    every = sorted(str(f) for f in small_archive.rglob("*") if f.is_file())
    assert sorted(files) == every  # each file in exactly one partition (.complete marker included)
    assert sum(p.n_files for p in parts) == len(every)
    # folders go whole; single files only from a folder too big for one partition (here: the root)
    assert all(os.path.isdir(path) or Path(path).parent == small_archive for p in parts for path in p.paths)


def test_partitions_survive_a_symlink_loop(tmp_path, prostatex):
    root = tmp_path / "loop"
    shutil.copytree(prostatex / "ProstateX-0000" / "07-07-2011" / "4.000000-t2tsetra-00702", root / "s1")
    os.symlink(root, root / "s1" / "back")
    parts = plan_partitions([root], batch_files=5, first_batch_files=5)
    assert sum(p.n_files for p in parts) == len(list((root / "s1").glob("*.dcm")))


def test_stream_gives_the_rows_of_the_atomic_jsonl(prostatex, tmp_path, capsys):
    code = run(["classify", prostatex, "--format", "jsonl", "--quiet"])
    plain = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    out = tmp_path / "r.jsonl"
    assert run(["classify", prostatex, "--format", "jsonl", "--out", out, "--quiet"]) == code == 2
    streamed = events(out)
    assert {json.dumps(e["row"], sort_keys=True) for e in plain if e["type"] == "series"} == \
        {json.dumps(e["row"], sort_keys=True) for e in streamed if e["type"] == "series"}
    assert [e for e in plain if e["type"] == "skipped"] == [e for e in streamed if e["type"] == "skipped"]
    assert streamed[-1]["type"] == "summary" and streamed[-1]["n_series"] == 18 == len(series_rows(out))
    assert all(isinstance(e.get("stamp"), str) for e in streamed if e["type"] == "series")


def test_every_line_is_valid_as_soon_as_it_is_written(small_archive, tmp_path, untrained):
    out = tmp_path / "r.jsonl"
    stream = JsonlStream(out)
    seen = []

    def check(result):
        lines = out.read_text().splitlines(keepends=True)
        assert all(line.endswith("\n") for line in lines)
        seen.append(len([json.loads(line) for line in lines]))

    parts = plan_partitions([small_archive], batch_files=20, first_batch_files=5)
    run_stream(local_results(parts, Classifier()), stream, on_result=check)
    stream.close({"type": "summary"})
    assert len(seen) == len(parts) and seen == sorted(seen) and seen[0] < seen[-1]
    assert len(series_rows(out)) == 60


def _interrupted_run(src, out, n_partitions):
    """Classify the first partitions, then stop as a kill would: no summary, a torn last line."""
    stream = JsonlStream(out)
    parts = plan_partitions([src])
    results = local_results(parts[:n_partitions], Classifier())
    run_stream(results, stream)
    stream.close(None)
    with open(out, "a") as fh:
        fh.write('{"type": "series", "row": {"series_uid": "1.2.3", "pati')
    return len(series_rows_before_tear(out))


def series_rows_before_tear(path):
    lines = Path(path).read_text().splitlines(keepends=True)
    return [json.loads(line) for line in lines if line.endswith("\n") and '"type": "series"' in line]


def test_resumed_run_gives_the_file_of_an_uninterrupted_one(small_archive, tmp_path, capsys, untrained,
                                                             small_batches):
    full = tmp_path / "full.jsonl"
    assert run(["classify", small_archive, "--format", "jsonl", "--out", full, "--quiet"]) == 2
    part = tmp_path / "part.jsonl"
    done = _interrupted_run(small_archive, part, 3)
    assert 0 < done < 30
    assert run(["classify", small_archive, "--format", "jsonl", "--out", part, "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{done} series already classified" in err
    assert sorted(full.read_text().splitlines()) == sorted(part.read_text().splitlines())
    # and resuming a complete file changes nothing
    before = sorted(part.read_text().splitlines())
    assert run(["classify", small_archive, "--format", "jsonl", "--out", part, "--resume", "--quiet"]) == 2
    assert sorted(part.read_text().splitlines()) == before


def test_resume_redoes_changed_series_and_drops_gone_ones(small_archive, tmp_path, untrained, small_batches):
    src = tmp_path / "src"
    shutil.copytree(small_archive, src)
    out = tmp_path / "r.jsonl"
    assert run(["classify", src, "--format", "jsonl", "--out", out, "--quiet"]) == 2
    rows = series_rows(out)
    changed = src / "P0000001" / "study0000001" / "003" / "IM0.dcm"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    shutil.rmtree(src / "P0000005")
    assert run(["classify", src, "--format", "jsonl", "--out", out, "--resume", "--quiet"]) == 2
    after = events(out)
    uids = [e["row"]["series_uid"] for e in after if e["type"] == "series"]
    assert len(uids) == len(set(uids)) == 50  # 10 series gone, the changed one once
    fresh = tmp_path / "fresh.jsonl"
    assert run(["classify", src, "--format", "jsonl", "--out", fresh, "--quiet"]) == 2
    assert sorted(out.read_text().splitlines()) == sorted(fresh.read_text().splitlines())
    stamp = {e["row"]["series_uid"]: e["stamp"] for e in after if e["type"] == "series"}
    changed_uid = next(u for u, r in rows.items() if r["folder"] == str(changed.parent))
    assert stamp[changed_uid] == series_stamp([str(changed)])
    assert after[-1]["type"] == "summary" and after[-1]["n_series"] == 50


def test_resume_and_dask_need_the_streamed_format(prostatex, tmp_path, capsys):
    assert run(["classify", prostatex, "--resume", "--out", tmp_path / "x.csv", "--format", "csv"]) == 1
    assert "--resume needs --format jsonl --out" in capsys.readouterr().err
    assert run(["classify", prostatex, "--engine", "dask", "--format", "jsonl"]) == 1
    assert "--engine dask needs" in capsys.readouterr().err
