"""Durable labels: a writer killed with SIGKILL at random moments never tears the store.

test_label_store.py already covers: a failing rename leaves the old content,
readers during rewrites (threads) see complete JSON, concurrent writer
processes all land, and hand-made damaged stores ({not json, empty, wrong
schema) are moved aside.  Here: real SIGKILLs of a writer process (30 of
them), the lock after each kill, and a *truncated real store* found by a
reader (``load``), by ``sort --labels`` on the command line, and twice in the
same second.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from SeqClassifierLib.curation.label_store import CorruptLabelStoreError, LabelStore, LabelStoreWarning

LIB = str(Path(__file__).resolve().parents[3] / "SeqClassifier")
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")

WRITER = r"""
import sys
sys.path.insert(0, {lib!r})
from SeqClassifierLib.curation.label_store import LabelStore
from SeqClassifierLib.records import ResultRow
store = LabelStore({path!r}, lock_timeout=10)
run = {run}
i = 0
while True:
    if i % 3 == 2:
        store.record_predictions([ResultRow.from_dict({{"series_uid": f"{{run}}.{{i}}", "label": "DWI",
                                                       "confidence": 0.5, "model": "m", "folder": ""}})])
    else:
        store.confirm(f"{{run}}.{{i}}", ("T2w", "ADC")[i % 2], user="killer")
    if i == 0:
        print("ready", flush=True)
    i += 1
"""


def _check(path: Path, history: dict[int, int], run: int) -> int:
    """The store parses, holds every earlier run unchanged and a gap-free prefix of this run."""
    raw = path.read_bytes()
    doc = json.loads(raw)  # complete JSON, never torn
    assert doc["schema"] == "seqclassifier-labels"
    store = LabelStore(path, on_corrupt="raise")
    entries = {k.series_uid: e for k, e in store.load().items()}
    by_run: dict[int, set[int]] = {}
    for uid in entries:
        r, i = uid.split(".")
        by_run.setdefault(int(r), set()).add(int(i))
    for r, n in history.items():
        if r != run:
            assert by_run.get(r, set()) == set(range(n)), f"run {r} changed"
    mine = by_run.get(run, set())
    n = len(mine)
    assert mine == set(range(n)), f"run {run}: not a prefix: {sorted(set(range(max(mine) + 1)) - mine)[:5]}"
    for i in mine:
        e = entries[f"{run}.{i}"]
        if i % 3 == 2:
            assert e.predicted_label == "DWI"
        else:
            assert e.confirmed_label == ("T2w", "ADC")[i % 2] and e.confirmed_by == "killer"
    return n


def test_sigkill_never_tears_the_store_and_never_leaves_the_lock(tmp_path):
    path = tmp_path / "labels.json"
    # some bulk so that one write takes a little while
    LabelStore(path).confirm_many({f"0.{i}": "T2w" for i in range(300)}, user="killer")
    history = {0: 300}
    rng = random.Random(20240501)
    kills, writes = 30, 0
    t_start = time.monotonic()
    for run in range(1, kills + 1):
        proc = subprocess.Popen([sys.executable, "-c", WRITER.format(lib=LIB, path=str(path), run=run)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = proc.stdout.readline()
        assert line.strip() == b"ready", proc.stderr.read().decode()[-2000:]
        time.sleep(rng.uniform(0.0, 0.12))
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        assert proc.returncode == -signal.SIGKILL
        n = _check(path, history, run)
        assert n >= 1
        history[run] = n
        writes += n
        # the lock is free: a new writer gets it on its first, non-blocking try (lock_timeout=0: one
        # flock(LOCK_NB) attempt, else LockTimeout), since flock dies with its process
        probe = LabelStore(path, lock_timeout=0)
        probe.confirm(f"{run}.{n}", "DCE", user="probe")
        probe.remove(f"{run}.{n}")
        assert not probe.pop_warnings()
    elapsed = time.monotonic() - t_start
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("labels.json", "labels.json.lock"))
    print(f"\n{kills} SIGKILLs, {writes} complete writes survived, {elapsed:.1f} s; "
          f"stale temp files left by killed writers: {len(leftovers)}")
    assert not [p for p in leftovers if ".corrupt-" in p]  # nothing was ever found damaged
    assert len(leftovers) <= kills  # at most the one temporary file each killed writer had open


def _valid_store(path: Path, n: int = 20) -> bytes:
    LabelStore(path).confirm_many({f"1.2.{i}": "T2w" for i in range(n)}, user="a")
    return path.read_bytes()


def test_truncated_store_found_by_a_reader_is_moved_aside(tmp_path):
    path = tmp_path / "labels.json"
    raw = _valid_store(path)
    damaged = raw[: len(raw) // 2]
    path.write_bytes(damaged)
    store = LabelStore(path)
    with pytest.warns(LabelStoreWarning, match="damaged"):
        assert store.load() == {}
    (moved,) = tmp_path.glob("labels.json.corrupt-*")
    assert moved.read_bytes() == damaged  # the damaged bytes are kept, not discarded
    (report,) = store.pop_warnings()
    assert report.moved_to == str(moved) and "invalid JSON" in str(report)
    assert not path.exists()
    store.confirm("9.9", "ADC", user="a")  # and the store works again
    assert [k.series_uid for k in store.load()] == ["9.9"]


def test_two_damages_in_the_same_second_keep_both(tmp_path):
    path = tmp_path / "labels.json"
    raw = _valid_store(path)
    contents = [raw[:-7], raw[:40]]
    for c in contents:
        path.write_bytes(c)
        with pytest.raises(CorruptLabelStoreError):
            LabelStore(path, on_corrupt="raise").load()
    moved = sorted(tmp_path.glob("labels.json.corrupt-*"))
    assert sorted(p.read_bytes() for p in moved) == sorted(contents)


def test_truncated_store_is_reported_by_sort(tmp_path, prostatex):
    from SeqClassifierLib.app import cli

    path = tmp_path / "store" / "labels.json"
    path.parent.mkdir()
    raw = _valid_store(path)
    path.write_bytes(raw[:100])
    err = io.StringIO()
    src = prostatex / "ProstateX-0000" / "07-07-2011" / "4.000000-t2tsetra-00702"
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):  # reported once, as a "warning:" line, not a Python warning
        mp.setattr("SeqClassifierLib.model.classifier.default_model_path", lambda: None)
        code = cli.main(["sort", str(src), str(tmp_path / "dest"), "--labels", "--store", str(path), "--dry-run"])
    (moved,) = path.parent.glob("labels.json.corrupt-*")
    assert moved.read_bytes() == raw[:100]
    text = err.getvalue()
    assert "warning:" in text and "damaged" in text and str(moved) in text, text
    assert "LabelStoreWarning" not in text, text
    assert code == cli.EXIT_ERROR  # no model and (now) no confirmed labels: nothing to sort by
