"""Every walk is bounded: links into system folders, link loops, deep nesting (corpus form).

The walk itself lives in ``dicom/discovery.iter_files``; these cases say
what a bounded walk must do.  Each runs the command line in a child process
with a hard time limit, so an unbounded walk fails the test instead of
hanging the suite.  The in-process cases below check the walk's rules one by
one (links inside / outside the input, into system folders, to a folder that
contains the input, loops).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import corpus
from SeqClassifierLib.dicom.discovery import iter_files

REPO = Path(__file__).resolve().parents[3]
_CHILD = ("import sys; sys.path.insert(0, {lib!r});"
          "import SeqClassifierLib.model.classifier as c; c.default_model_path = lambda: None;"
          "from SeqClassifierLib.app import cli; sys.exit(cli.main(sys.argv[1:]))")
LIMIT_S = 120
#: a bounded walk over five files ends in seconds; an unbounded one is stopped here
SYSTEM_LINK_LIMIT_S = 20


def _links_to(target: str):
    def build(folder: Path) -> None:
        os.symlink(target, folder / ("link_to_" + target.strip("/").replace("/", "_") or "root"))
    return build


def _link_loop(folder: Path) -> None:
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    os.symlink(folder / "b", folder / "a" / "to_b")
    os.symlink(folder / "a", folder / "b" / "to_a")


def _deep(folder: Path) -> None:
    d = folder
    for i in range(300):
        d = d / f"d{i % 10}"
    d.mkdir(parents=True)
    (d / "deep.txt").write_text("not DICOM")


def _wide(folder: Path) -> None:
    for i in range(3000):
        (folder / f"empty{i:04d}").mkdir()


CASES = {
    "two symlinks pointing at each other": (_link_loop, False),
    "300 nested folders": (_deep, False),
    "3,000 empty folders": (_wide, False),
    "symlink to /proc": (_links_to("/proc"), True),
    "symlink to /sys": (_links_to("/sys"), True),
    "symlink to /": (_links_to("/"), True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_walk_is_bounded(name, tmp_path):
    if not corpus.GOOD_SERIES.is_dir():
        pytest.skip(f"real test data not found at {corpus.DATA}")
    build, system_link = CASES[name]
    limit = SYSTEM_LINK_LIMIT_S if system_link else LIMIT_S
    root = tmp_path / "in"
    corpus.copy_good(root / "good")
    build(root)
    before = corpus.tree_digest(root)
    out = tmp_path / "r.json"
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD.format(lib=str(REPO / "SeqClassifier")), "classify",
                               str(root), "--format", "json", "--out", str(out), "--device", "cpu", "--quiet"],
                              capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name}: the walk did not end within {limit} s")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode in (0, 2), proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert [r["n_files"] for r in doc["series"]] == [5], "only the GOOD series may be found"
    assert corpus.tree_digest(root) == before
    # a bounded walk does not wander outside the inputs: every reported path lies under them
    outside = [s["path"] for s in doc["skipped"] if not s["path"].startswith(str(root))]
    assert not outside, outside[:5]
    assert len(doc["skipped"]) < 100, f"{len(doc['skipped'])} skipped: the walk left the input"


# -- the walk's rules, in process ------------------------------------------------

def _walk(*roots) -> tuple[list[str], dict[str, str]]:
    skipped = []
    files = list(iter_files(list(roots), skipped))
    return files, {s.path: s.reason for s in skipped}


def _tree(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f1").write_text("x")
    (root / "a" / "f2").write_text("x")
    return root


@pytest.mark.parametrize("target", ["/proc", "/sys", "/dev", "/", "/usr", "/etc"])
def test_link_into_a_system_folder_is_reported_not_followed(tmp_path, target):
    root = _tree(tmp_path / "in")
    os.symlink(target, root / "link")
    files, skipped = _walk(root)
    assert sorted(files) == sorted([str(root / "a" / "b" / "f1"), str(root / "a" / "f2")])
    assert skipped == {str(root / "link"): f"symbolic link to {target}, a system folder; not followed"}


def test_link_to_a_folder_that_contains_the_input_is_not_followed(tmp_path):
    root = _tree(tmp_path / "deep" / "in")
    (tmp_path / "beside").mkdir()
    (tmp_path / "beside" / "other").write_text("x")
    os.symlink(tmp_path, root / "up")
    files, skipped = _walk(root)
    assert len(files) == 2
    assert skipped == {str(root / "up"): f"symbolic link to {os.path.realpath(tmp_path)}, "
                                         "a folder that contains the input; not followed"}


def test_links_inside_the_input_and_loops_are_walked_once_silently(tmp_path):
    root = _tree(tmp_path / "in")
    os.symlink(root / "a" / "b", root / "again")      # a second way into a folder: entered once
    os.symlink(root, root / "a" / "b" / "to_root")    # a loop back to the input
    os.symlink("..", root / "a" / "parent")           # a loop to the parent
    files, skipped = _walk(root)
    assert skipped == {}
    assert sorted(os.path.realpath(f) for f in files) == sorted(
        os.path.realpath(p) for p in (root / "a" / "b" / "f1", root / "a" / "f2"))
    assert len(files) == 2


def test_link_out_of_the_input_to_an_ordinary_folder_is_followed(tmp_path):
    """A folder of links to series kept elsewhere is read through the links."""
    root = _tree(tmp_path / "in")
    elsewhere = _tree(tmp_path / "store")
    os.symlink(elsewhere / "a", root / "linked")
    files, skipped = _walk(root)
    assert skipped == {}
    assert str(root / "linked" / "f2") in files and str(root / "linked" / "b" / "f1") in files
    assert len(files) == 4


def test_links_between_two_inputs_read_each_file_once(tmp_path):
    one, two = _tree(tmp_path / "one"), _tree(tmp_path / "two")
    os.symlink(two, one / "to_two")
    files, skipped = _walk(one, two)
    assert skipped == {} and len(files) == 4


def test_a_pseudo_file_system_given_as_input_is_not_read(tmp_path):
    files, skipped = _walk("/proc")
    assert files == [] and skipped == {"/proc": "/proc is a system folder; not read"}


def test_file_link_into_proc_is_not_read(tmp_path):
    root = _tree(tmp_path / "in")
    os.symlink("/proc/self/status", root / "status.dcm")
    files, skipped = _walk(root)
    assert len(files) == 2
    (reason,) = skipped.values()
    assert reason.endswith("is in a system folder; not read") and reason.startswith("/proc/")
