"""Leave-one-protocol-family-out validation.

Validation on the same generator as the training set cannot see the
generator's beliefs.  Holding out whole protocol families (vendor x sequence
family, e.g. ``SIEMENS/dce_per_timepoint``) asks the closer question: is a
protocol the model has never seen still recognised from what it shares with
the others?  The family of each labelled series comes from the ``family``
column of the labels CSV (``seqclassifier synth`` writes it).

Each family with at least ``min_series`` series is held out in turn: one model
is trained on every other family (early stopping on a patient-grouped tenth of
them) and scored on the held-out family.  The default strategy is
``metadata`` -- seconds per family on a CPU -- which is the branch the
shortcuts live in; the joint model can be given for the families that matter
most, at minutes each.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from SeqClassifierLib.inputs.features import N_FEATURES
from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.model.classifier import resolve_device
from SeqClassifierLib.training.folds import group_folds
from SeqClassifierLib.training.train import _logits, _Tensors, train_one

LogFn = Callable[[str], None]


def read_families(labels: Sequence[os.PathLike]) -> tuple[dict[str, str], dict[str, str]]:
    """``family`` of each labelled series: by SeriesInstanceUID and by resolved series folder."""
    by_uid: dict[str, str] = {}
    by_dir: dict[str, str] = {}
    for lab in labels:
        base = Path(lab).resolve().parent
        with open(lab, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                fam = (row.get("family") or "").strip()
                if not fam:
                    continue
                if row.get("SeriesInstanceUID"):
                    by_uid[row["SeriesInstanceUID"].strip()] = fam
                if row.get("series_dir"):
                    by_dir[str((base / row["series_dir"]).resolve())] = fam
    return by_uid, by_dir


def family_of(record, by_uid: dict[str, str], by_dir: dict[str, str]) -> str:
    fam = by_uid.get(record.series_uid)
    if fam is None and record.files:
        fam = by_dir.get(str(Path(record.files[0]).resolve().parent))
    return fam or ""


@dataclass
class FamilyResult:
    family: str
    label: str
    n: int
    correct: int
    #: predicted class -> count, over the held-out series
    predicted: dict[str, int] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0


def leave_one_family_out(samples: Sequence, families: Sequence[str], cfg, min_series: int = 3,
                         only: Optional[Sequence[str]] = None, log: LogFn = print) -> list[FamilyResult]:
    """Hold out each family in turn (see the module docstring); ``cfg`` is a TrainConfig."""
    device = resolve_device(cfg.device)
    size = 128
    cache = next((s.image.shape[-1] for s in samples if s.image is not None), size)
    data = _Tensors(samples, cache, device)
    fams = np.array(families)
    names = sorted({f for f in families if f})
    if only:
        names = [f for f in names if f in set(only)]
    out = []
    for k, fam in enumerate(names):
        test = np.nonzero(fams == fam)[0]
        if len(test) < min_series:
            continue
        rest = np.nonzero(fams != fam)[0]
        groups = [samples[i].group for i in rest]
        fold = np.array(group_folds(groups, 10, cfg.seed + k))
        trn, val = rest[fold != 0], rest[fold == 0]
        model, _ = train_one(trn, val, data, cfg, N_FEATURES, k, log=lambda m: None)
        logits, _, y = _logits(model, data, test, cfg)
        pred = logits.argmax(1).cpu().numpy()
        y = y.cpu().numpy()
        labels = [CLASS_NAMES[i] for i in y]
        res = FamilyResult(fam, max(set(labels), key=labels.count), len(test), int((pred == y).sum()))
        for p in pred:
            res.predicted[CLASS_NAMES[p]] = res.predicted.get(CLASS_NAMES[p], 0) + 1
        out.append(res)
        log(f"held out {fam:40} {res.label:5} {res.correct:4}/{res.n:<4} right  predicted {res.predicted}")
    return out


def family_table(results: Sequence[FamilyResult]) -> str:
    lines = [f"{'held-out family':40} {'label':5} {'right':>9} {'accuracy':>8}  predictions",
             "-" * 80]
    for r in sorted(results, key=lambda r: (r.accuracy, r.family)):
        preds = ", ".join(f"{c} {n}" for c, n in sorted(r.predicted.items(), key=lambda kv: -kv[1]))
        lines.append(f"{r.family:40} {r.label:5} {r.correct:>4}/{r.n:<4} {r.accuracy:8.2f}  {preds}")
    n = sum(r.n for r in results)
    right = sum(r.correct for r in results)
    worst = min(results, key=lambda r: r.accuracy) if results else None
    lines.append(f"{len(results)} families, {right}/{n} held-out series right ({100 * right / max(n, 1):.1f} %)"
                 + (f"; worst {worst.family} {worst.accuracy:.2f}" if worst else ""))
    return "\n".join(lines) + "\n"
