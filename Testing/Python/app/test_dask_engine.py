"""The Dask engine (app/dask_engine.py): same rows as the local engine, model cached per worker."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from SeqClassifierLib.app import cli, dask_engine  # noqa: E402
from SeqClassifierLib.app.stream import plan_partitions  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import archive_gen  # noqa: E402  (Testing/benchmarks: the replicated-archive generator)


def series_lines(path) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return sorted(line for line in fh if json.loads(line)["type"] == "series")


def summary(path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.loads(fh.readlines()[-1])


@pytest.fixture(scope="module")
def replicated(prostatex, tmp_path_factory) -> Path:
    """Two studies of 1,500 files each: the real ProstateX series copied under new UIDs."""
    return archive_gen.big_studies(tmp_path_factory.mktemp("rep") / "r", 2, 1500, prostatex)


def test_dask_local_cluster_gives_the_rows_of_the_local_engine(prostatex, replicated, tmp_path):
    inputs = [str(prostatex), str(replicated)]
    parts = plan_partitions(inputs)
    assert len(parts) >= 4  # the 1,500-file studies are split by their series folders
    local, dask = tmp_path / "local.jsonl", tmp_path / "dask.jsonl"
    # fp32: bfloat16 (auto on a CPU with AMX) rounds differently with another batch composition
    assert cli.main(["classify", *inputs, "--format", "jsonl", "--out", str(local), "--quiet",
                     "--precision", "fp32"]) == 2
    assert cli.main(["classify", *inputs, "--format", "jsonl", "--out", str(dask), "--quiet",
                     "--precision", "fp32", "--engine", "dask", "--dask-workers", "2"]) == 2
    rows = series_lines(local)
    n_rep = sum(1 for _ in replicated.rglob("*.dcm"))
    assert n_rep == 3000
    assert len(rows) > 18 and rows == series_lines(dask)
    a, b = summary(local), summary(dask)
    assert a["n_files"] == b["n_files"] == 377 + n_rep + 1  # with labels.csv and .complete (skipped)
    assert a["n_series"] == b["n_series"] == len(rows)
    assert a["model"]["name"] == b["model"]["name"] and a["model"]["trained"]


def test_worker_cache_loads_a_model_once_and_checks_its_hash(tmp_path):
    spec = dask_engine.model_spec(None, "cpu", "fp32", 8)
    assert spec["sha256"] and spec["path"].endswith(".json")
    first = dask_engine.worker_classifier(spec)
    assert dask_engine.worker_classifier(dict(spec)) is first
    with pytest.raises(RuntimeError, match="SHA-256 mismatch"):
        dask_engine.worker_classifier({**spec, "sha256": "0" * 64})


def test_model_hash_follows_the_files(tmp_path):
    card = tmp_path / "m.json"
    card.write_text("{}")
    (tmp_path / "m.safetensors").write_bytes(b"a")
    h = dask_engine.model_hash(card)
    (tmp_path / "m.safetensors").write_bytes(b"b")
    assert dask_engine.model_hash(card) != h and dask_engine.model_hash(tmp_path / "m.safetensors") != h
    assert dask_engine.model_hash(None) == ""
