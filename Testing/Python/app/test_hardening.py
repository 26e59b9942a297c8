"""Every run-level bad input of :mod:`corpus_harden`: no source byte changed, no traceback, one line per problem.

For each case: hash every byte (and size, mtime, link, folder) of its sources
(:func:`corpus.tree_digest`), run the command line in this process (the
untrained model: no weights needed) under a time bound, and check

* the exit code is one the case allows,
* stderr holds no traceback, names the input with its reason (the case's
  regex), and each ``error:`` is one line,
* the sources are byte for byte what they were,
* the GOOD series is classified exactly as in a clean run (when the result
  is readable JSON),
* CSV output has no cell a spreadsheet would run as a formula, and every
  output is valid UTF-8,
* the case's own check.

Then one test per class checks its rule directly on the library.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
from pathlib import Path

import pytest

import corpus
import corpus_harden as H
from SeqClassifierLib.app import cli

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
COMPARED = ("series_uid", "study_uid", "n_files", "plane", "label", "confidence", "probabilities",
            "needs_review", "b_values", "description", "model", "note")


@pytest.fixture(autouse=True, scope="module")
def _data_present():
    if not corpus.GOOD_SERIES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real test data missing at {corpus.DATA}")
        pytest.skip(f"real test data not found at {corpus.DATA}")


class _Overtime(BaseException):
    """Raised by the alarm: a case ran past its bound (BaseException: nothing in the CLI swallows it)."""


def run_cli(argv: list[str], limit_s: int = 120) -> tuple[int, str, str]:
    """``cli.main(argv)`` with the untrained model, stdout/stderr captured, at most ``limit_s`` seconds."""
    out, err = io.StringIO(), io.StringIO()

    def overtime(signum, frame):
        raise _Overtime(f"{argv[:3]} ran longer than {limit_s} s")

    old = signal.signal(signal.SIGALRM, overtime)
    signal.alarm(limit_s)
    try:
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            mp.setattr("SeqClassifierLib.model.classifier.default_model_path", lambda: None)
            code = cli.main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def clean_row(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    g = H.good(root)
    code, out, err = run_cli(H.classify(g, fmt="json"))
    assert code == 0, err
    (row,) = json.loads(out)["series"]
    return {k: row[k] for k in COMPARED}


def _digest(paths: list[Path]) -> dict:
    out = {}
    for p in paths:
        if os.path.isdir(p) and not os.path.islink(p):
            out[str(p)] = corpus.tree_digest(p)
        else:
            st = os.lstat(p)
            out[str(p)] = (open(p, "rb").read() if os.path.isfile(p) else None, st.st_size, st.st_mtime_ns,
                           st.st_mode)
    return out


def _diff(before: dict, after: dict) -> list[str]:
    problems = []
    for key in before:
        b, a = before[key], after.get(key)
        if isinstance(b, dict):
            added = sorted(set(a) - set(b))
            removed = sorted(set(b) - set(a))
            changed = sorted(p for p in set(a) & set(b) if a[p] != b[p])
            problems += [f"added {p}" for p in added] + [f"removed {p}" for p in removed]
            problems += [f"changed {p}" for p in changed]
        elif a != b:
            problems.append(f"changed {key}")
    return problems


CASES = sorted(H.BUILDERS)


def test_corpus_is_large_enough():
    """More than 70 run-level cases beyond the 24 file kinds of test_bad_input, every class represented."""
    assert len(CASES) > 70, len(CASES)


@pytest.mark.parametrize("name", CASES)
def test_case(name, tmp_path, clean_row, monkeypatch):
    case = H.BUILDERS[name](tmp_path)
    before = _digest(case.sources)
    teardown = case.setup(monkeypatch) if case.setup else None
    try:
        code, stdout, err = run_cli(case.argv)
        result = {"code": code, "err": err, "stdout": stdout, "doc": None, "out_bytes": None}
        if case.out is not None and os.path.isfile(case.out):
            result["out_bytes"] = Path(case.out).read_bytes()
            if case.fmt == "json":
                result["doc"] = json.loads(result["out_bytes"].decode("utf-8"))
        elif case.fmt == "json" and case.argv[0] == "classify" and stdout.strip():
            result["doc"] = json.loads(stdout)
        monkeypatch.undo()
        if case.check:
            case.check(result)
    finally:
        if teardown:
            teardown()
    assert "Traceback" not in err, err
    assert code in case.codes, f"exit {code}, expected {case.codes}; stderr:\n{err}"
    if case.err:
        assert re.search(case.err, err, re.I), f"stderr does not match {case.err!r}:\n{err}"
    for line in err.splitlines():
        if line.startswith("error:"):
            assert err.count("error:") == 1, err  # one error, on one line
    err.encode("utf-8")  # no lone surrogate reached the terminal
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", err), repr(err)
    problems = _diff(before, _digest(case.sources))
    assert not problems, f"sources changed: {problems[:10]}"
    text = result["out_bytes"].decode("utf-8") if result["out_bytes"] is not None else stdout
    text.encode("utf-8")
    if case.fmt == "csv" and text:
        H.csv_cells_safe(text)
    if case.good:
        doc = result["doc"]
        assert doc is not None, f"no result to read back; stderr:\n{err}"
        rows = {r["series_uid"]: r for r in doc["series"]}
        assert clean_row["series_uid"] in rows, "the GOOD series is missing"
        assert {k: rows[clean_row["series_uid"]][k] for k in COMPARED} == clean_row
    print(f"\n[{case.klass}] {case.kind}: exit {code}; {err.strip().splitlines()[-1] if err.strip() else ''}")


def test_every_class_has_cases(tmp_path):
    seen = {}
    for name in CASES:
        try:
            klass = H.BUILDERS[name](tmp_path / name).klass
        except Exception as exc:  # a builder that cannot run here is reported by its own test
            klass = f"error {exc}"
        seen.setdefault(klass, []).append(name)
    assert set(seen) == set(H.CLASSES), seen
    print("\n" + "\n".join(f"{k}: {len(v)} cases" for k, v in seen.items()))
