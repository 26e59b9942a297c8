"""Nothing is ever written into DICOM input folders.

Every byte, size and mtime of every file and folder (and the set of paths) of
a copy of ProstateX-0000 plus the whole bad-input corpus is recorded before
and after ``classify``, ``sort`` (copy and ``--link``, with confirmed labels
from a LabelStore outside the sources, so no model is needed) and the
Slicer-independent review session (:mod:`SeqClassifierSlicer.session`:
classify through the background process, confirm, confirm all, export,
center slice); not one may change and no file may appear.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil

import pytest

import corpus
from SeqClassifierLib.app import cli
from SeqClassifierLib.curation.label_store import LabelStore

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def sources(tmp_path_factory, prostatex):
    """Copy of ProstateX-0000 and the whole corpus; (roots, digest before, labels to confirm)."""
    root = tmp_path_factory.mktemp("src")
    px = root / "ProstateX-0000"
    shutil.copytree(prostatex / "ProstateX-0000", px, copy_function=shutil.copyfile)
    bad = root / "corpus"
    cases = corpus.build_corpus(bad)
    labels = {}
    import csv

    with open(prostatex / "labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["series_dir"].startswith("ProstateX-0000"):
                labels[row["SeriesInstanceUID"]] = row["label"]
    digest = {"px": corpus.tree_digest(px), "bad": corpus.tree_digest(bad)}
    n_files = sum(1 for k in digest.values() for p in k if not p.endswith(os.sep))
    n_bytes = sum(v[1] for k in digest.values() for v in k.values())
    print(f"\nsources: {n_files} files, {n_bytes / 1e6:.1f} MB, {len(cases)} corpus kinds")
    return {"roots": {"px": px, "bad": bad}, "digest": digest, "labels": labels, "root": root}


def _assert_untouched(sources) -> None:
    for key, root in sources["roots"].items():
        before = sources["digest"][key]
        after = corpus.tree_digest(root)
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
        assert not added, f"paths added in {root}: {added[:10]}"
        assert not removed, f"paths removed from {root}: {removed[:10]}"
        assert not changed, f"changed in {root}: {changed[:10]}"
    assert sorted(p.name for p in sources["root"].iterdir()) == ["ProstateX-0000", "corpus"]


def _cli(args) -> tuple[int, str]:
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        mp.setattr("SeqClassifierLib.model.classifier.default_model_path", lambda: None)
        code = cli.main([str(a) for a in args])
    return code, err.getvalue()


def test_classify_changes_nothing(sources, tmp_path):
    roots = sources["roots"]
    for fmt in ("json", "csv", "jsonl", "table"):
        code, err = _cli(["classify", roots["px"], roots["bad"], "--format", fmt, "--out", tmp_path / f"r.{fmt}"])
        assert code == cli.EXIT_SKIPPED, err
    # refusing --out inside an input folder also writes nothing there
    code, err = _cli(["classify", roots["px"], "--out", roots["px"] / "result.json"])
    assert code == cli.EXIT_ERROR and "inside the input folder" in err
    _assert_untouched(sources)


@pytest.mark.parametrize("link", [False, True])
def test_sort_with_confirmed_labels_changes_nothing(sources, tmp_path, link):
    roots = sources["roots"]
    store = LabelStore(tmp_path / "store" / "labels.json")
    store.confirm_many(sources["labels"], user="tester")
    dest = tmp_path / "sorted"
    args = ["sort", roots["px"], roots["bad"], dest, "--labels", "--store", store.path, "--quiet"]
    code, err = _cli(args + (["--link"] if link else []))
    assert code in (cli.EXIT_OK, cli.EXIT_SKIPPED), err
    labelled = [p for p in dest.rglob("*") if (p.is_file() or p.is_symlink())
                and not p.parent.name.startswith("unlabeled")]
    # every ProstateX-0000 file once (164); the 3 sagittal T2w copies of the corpus kind "mixed_studies" are
    # the same instances (same SOPInstanceUID in the same series) and are counted once, as duplicates
    assert len(labelled) == 164
    # a second run into the same DEST (conflicts or no-ops) still touches no source
    _cli(args + (["--link"] if link else []))
    code, err = _cli(args + ["--dry-run"])
    _assert_untouched(sources)


def test_review_session_changes_nothing(sources, tmp_path):
    from SeqClassifierSlicer.session import ClassificationSession

    roots = sources["roots"]
    store = LabelStore(tmp_path / "store" / "labels.json")
    env = dict(os.environ)
    session = ClassificationSession(store=store, env=env)
    rows = session.run([str(roots["px"]), str(roots["bad"])], device="cpu")
    uids = {r.series_uid for r in rows}
    assert set(sources["labels"]) <= uids
    assert session.n_skipped > 0
    first = sorted(sources["labels"])[0]
    session.confirm_label(first, sources["labels"][first], user="tester")
    session.confirm_label(first, None, user="tester")
    session.confirm_label(first, sources["labels"][first], user="tester")
    session.confirm_all(list(uids), user="tester")
    assert session.export_labels(str(tmp_path / "labels.csv")) >= 1
    session.export_labels(str(tmp_path / "labels.json"))
    img = session.thumbnail_of(first)  # sent by the classifier process
    assert img is not None and img.ndim == 2
    session.show_stored(uids)
    # the store (and its lock) live outside the sources
    assert store.path.is_file()
    _assert_untouched(sources)
