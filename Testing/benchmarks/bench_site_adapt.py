#!/usr/bin/env python3
"""Label-efficiency curve of the site memory (not a test): what k confirmed series of a source buy.

For each labelled source (a folder with ``labels.csv`` + its DICOM; a ``?``
label is not scored) the source's series are classified ONCE by the source's
model (default: the shipped one; ``--model NAME=FILE`` for a model that held
that source out), with every series' feature row and replay inputs recorded.
Then, for k = 0, 1, 2, 5, 10, 20 (those below the number of labelled series)
and ``--seeds`` random draws, k series are "confirmed" (their true label goes
into a site memory with their features) and the other labelled series of the
source are re-decided from the cached vectors exactly as ``classify --adapt``
would (:meth:`SeqClassifierLib.adaptation.hook.SiteHook.adapt_row`).  Measured
on those others:

* ``macro_f1``     over the classes present in their truth or predictions;
* ``false_alarm``  share of right predictions flagged for review;
* ``coverage``     share of wrong predictions flagged for review (None without a mistake).

Writes ``site_curve.json`` (for the model card) and ``site_curve.png`` into
``--out``.  ``--timing`` also prints the time to build a site memory from
1,000 confirmed series (add + whiten + save + read) and the cost of
classifying with a 1,000-series site against the shipped path.

Usage::

    python Testing/benchmarks/bench_site_adapt.py                      # shared prostatex + vendors
    python Testing/benchmarks/bench_site_adapt.py --corpus /work/corpus --timing
    python Testing/benchmarks/bench_site_adapt.py --source NAME=ROOT --model NAME=MODEL.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "SeqClassifier"))

from SeqClassifierLib.adaptation import sitefile  # noqa: E402
from SeqClassifierLib.adaptation.hook import SiteHook, features_of  # noqa: E402
from SeqClassifierLib.adaptation.memory import Geometry, SiteMemory  # noqa: E402
from SeqClassifierLib.dicom.discovery import discover_series  # noqa: E402
from SeqClassifierLib.labels import CLASS_NAMES, SequenceLabel  # noqa: E402
from SeqClassifierLib.model.classifier import Classifier  # noqa: E402

KS = (0, 1, 2, 5, 10, 20)
DATA = Path(os.environ.get("SEQCLASSIFIER_DATA", REPO.parent / "shared" / "data"))


def read_truth(root: Path) -> Dict[str, str]:
    out = {}
    with open(root / "labels.csv", newline="", encoding="utf-8-sig") as fh:
        for r in csv.DictReader(fh):
            try:
                label = SequenceLabel.parse((r.get("label") or "").strip()).value
            except ValueError:
                continue  # "?": not scored
            if label in CLASS_NAMES and r.get("SeriesInstanceUID"):
                out[r["SeriesInstanceUID"].strip()] = label
    return out


def macro_f1(truth: List[str], pred: List[str]) -> float:
    classes = sorted(set(truth) | set(pred))
    f1s = []
    for c in classes:
        tp = sum(t == c and p == c for t, p in zip(truth, pred))
        fp = sum(t != c and p == c for t, p in zip(truth, pred))
        fn = sum(t == c and p != c for t, p in zip(truth, pred))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
    return float(np.mean(f1s)) if f1s else float("nan")


def scores(truth: List[str], preds: List[Any]) -> Dict[str, Optional[float]]:
    labels = [p.label.value if p.label is not None else "" for p in preds]
    right = [t == p for t, p in zip(truth, labels)]
    flagged = [bool(p.needs_review) for p in preds]
    n_right, n_wrong = sum(right), len(right) - sum(right)
    return {
        "macro_f1": macro_f1(truth, labels),
        "accuracy": float(np.mean(right)) if right else None,
        "false_alarm": (sum(f for f, r in zip(flagged, right) if r) / n_right) if n_right else None,
        "coverage": (sum(f for f, r in zip(flagged, right) if not r) / n_wrong) if n_wrong else None,
        "n_eval": len(truth), "n_wrong": n_wrong,
    }


class Source:
    """One source classified once: shipped predictions and the recorded replay inputs."""

    def __init__(self, name: str, root: Path, model: Any):
        self.name, self.root = name, root
        self.classifier = model if isinstance(model, Classifier) else Classifier(model, device="cpu",
                                                                                   precision="fp32")
        truth = read_truth(root)
        records = [r for r in discover_series(root).series if r.series_uid in truth]
        t0 = time.perf_counter()
        preds, self.hook = features_of(self.classifier, records)
        self.classify_s = time.perf_counter() - t0
        self.records = records
        self.truth = {r.series_uid: truth[r.series_uid] for r in records}
        self.geometry: Geometry = self.hook.geometry
        # one entry per series UID (a UID found twice, e.g. split by discovery, counts once)
        self.uids = list(dict.fromkeys(r.series_uid for r in records if r.series_uid in self.hook.rows))

    def replay(self, confirmed: List[str]) -> List[Any]:
        """The other series' predictions with ``confirmed`` in the site memory."""
        memory = SiteMemory(self.geometry.layout())
        conf = {u: {"label": self.truth[u], "confirmed_by": "bench"} for u in confirmed}
        if confirmed:
            memory.add_many([{"series_uid": u, **conf[u]} for u in confirmed],
                            np.stack([self.hook.rows[u] for u in confirmed]))
        hook = SiteHook(memory, self.geometry, confirmations=conf)
        out = []
        for u in self.uids:
            if u in conf:
                continue
            rec, probs, unlike, note, context, quality, has_image = self.hook.inputs[u]
            out.append(hook.adapt_row(self.classifier, rec, probs, self.hook.shipped[u], self.hook.rows[u],
                                      unlike, note, context, quality, has_image))
        return out

    def curve(self, ks, seeds: int) -> List[Dict[str, Any]]:
        rows = []
        for k in ks:
            if k >= len(self.uids):
                continue
            runs = []
            for seed in range(seeds if k else 1):
                rng = np.random.default_rng(seed)
                confirmed = list(rng.choice(self.uids, size=k, replace=False)) if k else []
                preds = self.replay(confirmed)
                truth = [self.truth[u] for u in self.uids if u not in set(confirmed)]
                runs.append(scores(truth, preds))

            def mean(key):
                vals = [r[key] for r in runs if r[key] is not None]
                return round(float(np.mean(vals)), 4) if vals else None

            def std(key):
                vals = [r[key] for r in runs if r[key] is not None]
                return round(float(np.std(vals)), 4) if vals else None

            rows.append({"k": k, "runs": len(runs), "n_eval": runs[0]["n_eval"],
                         "macro_f1": mean("macro_f1"), "macro_f1_std": std("macro_f1"),
                         "accuracy": mean("accuracy"), "false_alarm": mean("false_alarm"),
                         "false_alarm_std": std("false_alarm"), "coverage": mean("coverage"),
                         "runs_with_mistakes": sum(r["n_wrong"] > 0 for r in runs)})
        return rows


def timing(src: Source, n: int = 1000) -> Dict[str, float]:
    """Build a site of ``n`` confirmed series (rows: the source's, jittered) and classify with it."""
    rng = np.random.default_rng(0)
    base = np.stack([src.hook.rows[u] for u in src.uids])
    rows = base[rng.integers(0, len(base), n)] + rng.normal(0, 0.05, (n, base.shape[1])).astype(np.float32)
    entries = [{"series_uid": f"2.25.{i}", "label": CLASS_NAMES[i % len(CLASS_NAMES)], "confirmed_by": "bench"}
               for i in range(n)]
    identity = sitefile.model_identity(src.classifier.card)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        memory = SiteMemory(src.geometry.layout())
        memory.add_many(entries, rows)
        memory.fit(src.geometry)
        sitefile.save(memory, Path(tmp) / "labels.json", identity)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        loaded = sitefile.read(Path(tmp) / "labels.json", identity)
        hook = SiteHook(loaded, src.geometry)
        load_s = time.perf_counter() - t0
    c = src.classifier
    plain, adapted, in_hook = [], [], []
    # the site's whole extra work is inside hook.adapt (the features are captured for the OOD check
    # anyway): its share of the same run is robust to a shared machine's load, the wall ratio is not
    inner = hook.adapt

    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return inner(*a, **k)
        finally:
            in_hook[-1] += time.perf_counter() - t

    hook.adapt = timed
    for i in range(6):  # interleaved, in alternating order, the minimum of each
        for with_site in ((False, True) if i % 2 else (True, False)):
            c.site = hook if with_site else None
            if with_site:
                in_hook.append(0.0)
            t0 = time.perf_counter()
            c.classify(src.records)
            (adapted if with_site else plain).append(time.perf_counter() - t0)
    c.site = None
    share = min(h / max(1e-9, a - h) for h, a in zip(in_hook, adapted))
    return {"n_site": n, "build_s": round(build_s, 3), "load_s": round(load_s, 3),
            "classify_plain_s": round(min(plain), 3), "classify_site_s": round(min(adapted), 3),
            "overhead_wall": round(min(adapted) / min(plain) - 1.0, 4), "overhead_in_hook": round(share, 4),
            "hook_ms_per_series": round(1000 * min(in_hook) / max(1, len(src.records)), 3),
            "n_series": len(src.records)}


def plot(results: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # sources with enough series that k = 10 leaves some to score; the others are in the JSON
    shown = {n: r for n, r in results["sources"].items() if r["n_labelled"] > 10} or results["sources"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name, res in shown.items():
        ks = [r["k"] for r in res["curve"]]
        for ax, key in zip(axes, ("macro_f1", "false_alarm", "coverage")):
            ys = [r[key] if r[key] is not None else np.nan for r in res["curve"]]
            ax.plot(ks, ys, marker="o", label=f"{name} ({res['n_labelled']})")
    for ax, title in zip(axes, ("macro-F1 (others)", "right predictions flagged", "mistakes flagged")):
        ax.set_title(title)
        ax.set_xlabel("confirmed series k")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", action="append", default=[], metavar="NAME=ROOT")
    ap.add_argument("--corpus", default=None, help="also every <corpus>/<source_id>/labels.csv")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=MODEL",
                    help="the model that held NAME out (default: the shipped model)")
    ap.add_argument("--held-out-folds", default=None, metavar="MODEL",
                    help="an ensemble trained with train --fold-by-source: each source is classified by the "
                         "fold model that never saw it (as in its card's leave-one-source-out report)")
    ap.add_argument("--ks", default=",".join(map(str, KS)))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--out", default=str(REPO / "Testing" / "benchmarks" / "results"))
    ap.add_argument("--timing", action="store_true")
    args = ap.parse_args(argv)
    sources = dict(s.split("=", 1) for s in args.source)
    if not sources:
        sources = {"prostatex": str(DATA / "prostatex"), "vendors": str(DATA / "vendors")}
    if args.corpus:
        for d in sorted(Path(args.corpus).iterdir()):
            if (d / "labels.csv").is_file():
                sources.setdefault(d.name, str(d))
    models: Dict[str, Any] = dict(m.split("=", 1) for m in args.model)
    if args.held_out_folds:
        from SeqClassifierLib.training.by_source import fold_classifiers  # torch: only with this option

        for name, clf in fold_classifiers(args.held_out_folds).items():
            models.setdefault(name, clf)
        sources = {n: r for n, r in sources.items() if n in models}  # a source no fold held out: not scored
    ks = [int(k) for k in args.ks.split(",")]
    results: Dict[str, Any] = {"ks": ks, "seeds": args.seeds, "sources": {}}
    first = None
    for name, root in sources.items():
        src = Source(name, Path(root), models.get(name))
        if len(src.uids) < 2:
            print(f"{name}: {len(src.uids)} labelled series, skipped", file=sys.stderr)
            continue
        first = first or src
        t0 = time.perf_counter()
        curve = src.curve(ks, args.seeds)
        results["sources"][name] = {"root": Path(root).name, "model": src.classifier.model_name,
                                    "n_labelled": len(src.uids), "classify_s": round(src.classify_s, 2),
                                    "simulate_s": round(time.perf_counter() - t0, 2), "curve": curve}
        print(f"{name} ({len(src.uids)} labelled series, model {src.classifier.model_name})")
        print("   k  n_eval  macro_f1  false_alarm  coverage")
        for r in curve:
            cov = "n/a" if r["coverage"] is None else f"{r['coverage']:.3f}"
            print(f"{r['k']:4} {r['n_eval']:7} {r['macro_f1']:9.3f} {r['false_alarm'] or 0:12.3f} {cov:>9}")
    if args.timing and first is not None:
        results["timing"] = timing(first)
        t = results["timing"]
        print(f"site memory of {t['n_site']} confirmed series: built + saved in {t['build_s']:.3f} s, "
              f"read in {t['load_s']:.3f} s; classifying {t['n_series']} series: {t['classify_plain_s']:.3f} s "
              f"shipped vs {t['classify_site_s']:.3f} s with the site (wall {100 * t['overhead_wall']:+.1f} %; "
              f"the site's own work {t['hook_ms_per_series']:.2f} ms a series = "
              f"{100 * t['overhead_in_hook']:+.1f} % of the rest of the run)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "site_curve.json").write_text(json.dumps(results, indent=1) + "\n")
    if results["sources"]:
        plot(results, out / "site_curve.png")
    print(f"wrote {out / 'site_curve.json'} and {out / 'site_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
