#!/usr/bin/env python3
"""Check (not a test) that a change which only makes things faster keeps the model's numbers.

``dump`` classifies the series under PATH... and writes, per series, the
ensemble's unrounded probabilities (before the decision rules), the raw
distances of every place, and the model inputs (the unrounded image quality,
digests of the image and of the feature vector) to an ``.npz``; ``compare`` says whether two dumps are
bit-identical, and where they are not, by how much.  ``--tree DIR`` runs the
checkout at DIR (e.g. a ``git worktree`` of the commit before the change)::

    git worktree add /tmp/before HEAD~3
    .venv/bin/python Testing/benchmarks/same_bits.py dump /tmp/before.npz --tree /tmp/before \\
        /tmp/seqclassifier-bench/replicated_2000 ../shared/data
    .venv/bin/python Testing/benchmarks/same_bits.py dump /tmp/after.npz \\
        /tmp/seqclassifier-bench/replicated_2000 ../shared/data
    .venv/bin/python Testing/benchmarks/same_bits.py compare /tmp/before.npz /tmp/after.npz

Rows rounded to four decimals hide most differences; this does not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]


def dump(out: Path, paths: list, precisions: list) -> int:
    import numpy as np

    from SeqClassifierLib.dicom.discovery import discover_series
    from SeqClassifierLib.model.classifier import Classifier

    class Recording(Classifier):
        """The classifier, keeping each series' probabilities as the ensemble gave them."""

        def _to_prediction(self, record, probs, *args, **kwargs):
            self.raw.append(np.array(probs, dtype=np.float32, copy=True))
            return super()._to_prediction(record, probs, *args, **kwargs)

    records = discover_series(paths).series
    arrays = {"keys": np.array(["|".join(r.key) for r in records])}
    arrays["inputs"] = _inputs(records, Classifier(device="cpu"))
    for precision in precisions:
        classifier = Recording(device="cpu", precision=precision)
        classifier.raw, classifier.score_log = [], []
        classifier.classify(records)
        arrays[f"probs_{precision}"] = np.stack(classifier.raw)
        arrays[f"scores_{precision}"] = np.array([json.dumps(s, sort_keys=True) for s in classifier.score_log])
        print(f"{precision}: {len(records)} series (model arithmetic {classifier.precision})")
    np.savez(out, **arrays)
    return 0


def _inputs(records: list, classifier) -> "np.ndarray":
    """Per series, what the model is given, as JSON: the image quality unrounded (its floats written
    exactly), SHA-256 of the standardised image and of the feature vector, and the image note."""
    import hashlib

    import numpy as np

    from SeqClassifierLib.inputs.prepare_pool import prepare_many, spec_of
    from SeqClassifierLib.inputs.study import study_contexts

    def digest(a) -> Optional[str]:
        return None if a is None else hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

    rows = []
    for p in prepare_many(records, study_contexts(records), spec_of(classifier.card), processes=1):
        q = p.quality
        rows.append(json.dumps({
            "quality": None if q is None else [q.score, q.snr, q.coverage, q.clipped_fraction, list(q.problems)],
            "image": digest(p.image), "meta": digest(p.meta), "note": p.image_note}))
    return np.array(rows)


def compare(a_path: Path, b_path: Path) -> int:
    import numpy as np

    a, b = np.load(a_path), np.load(b_path)
    if list(a["keys"]) != list(b["keys"]):
        print("different series (or order): not comparable")
        return 1
    same = True
    for name in sorted(set(a.files) & set(b.files) - {"keys"}):
        if name.startswith("probs_"):
            equal = np.array_equal(a[name], b[name])
            worst = float(np.abs(a[name].astype(np.float64) - b[name]).max()) if not equal else 0.0
        elif name == "inputs":  # JSON per series: equal, or how many series differ
            differ = sum(x != y for x, y in zip(a[name], b[name]))
            equal = differ == 0
            print(f"{name}: {'bit-identical' if equal else f'DIFFERENT in {differ} series'}")
            same &= equal
            continue
        else:
            sa = [json.loads(x) for x in a[name]]
            sb = [json.loads(x) for x in b[name]]
            equal = sa == sb
            worst = 0.0 if equal else max((abs(x.get(k, 0.0) - y.get(k, 0.0)) for x, y in zip(sa, sb)
                                           for k in set(x) | set(y)), default=0.0)
        print(f"{name}: {'bit-identical' if equal else f'DIFFERENT, largest difference {worst:.3g}'}")
        same &= equal
    print(f"{len(a['keys'])} series")
    return 0 if same else 1


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="classify PATH... and write the raw numbers to OUT (.npz)")
    d.add_argument("out", type=Path)
    d.add_argument("paths", nargs="+")
    d.add_argument("--tree", type=Path, default=REPO, help="the checkout to run (default: this one)")
    d.add_argument("--precision", action="append", choices=("fp32", "auto"),
                   help="model arithmetic; repeat for both (default: fp32 and auto)")
    c = sub.add_parser("compare", help="whether two dumps are bit-identical")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "compare":
        return compare(args.a, args.b)
    sys.path.insert(0, str(args.tree.resolve() / "SeqClassifier"))
    return dump(args.out, args.paths, args.precision or ["fp32", "auto"])


if __name__ == "__main__":
    sys.exit(main())
