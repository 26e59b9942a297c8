"""Leave-one-source-out: every real series predicted by a model that never saw its source.

A *source* is one data root given to training (one vendor x site of the real
corpus, ``data/real_series.csv``); synthetic roots (their labels have a
``family`` column) are never held out.  For each real source a single model
(one fold of the recipe, the same configuration as the shipped ensemble) is
trained on everything else -- the synthetic studies and the other real
sources -- and classifies the held-out source through the whole classifier
(study context, decision rules, evidence checks, image quality, distances).

The result is one row per real series with what the review rule needs
(:mod:`~SeqClassifierLib.model.review_rule`): confidence, the raw distance of
each place, the evidence checks the final label contradicts, low image
quality; and per-source and pooled scores.  ``seqclassifier by-source``
writes them as JSON, fits the review rule on them, and can store both in a
model card (``--into-card``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from SeqClassifierLib.inputs.study import study_contexts
from SeqClassifierLib.labels import CLASS_NAMES, SequenceLabel
from SeqClassifierLib.model.checkpoint import load_checkpoint
from SeqClassifierLib.model.classifier import Classifier
from SeqClassifierLib.model.ensemble import EnsembleModel
from SeqClassifierLib.model.ood import OodScorer
from SeqClassifierLib.model.decision import RULES as DECISION_RULES
from SeqClassifierLib.model.evidence import evidence_conflict_items
from SeqClassifierLib.model.reasons import LOW_QUALITY, reason_kind
from SeqClassifierLib.training.evaluate import prediction_scores
from SeqClassifierLib.training.folds import sample_folds, source_groups, source_name
from SeqClassifierLib.training.train import Sample, TrainConfig, classification_metrics, train

LogFn = Callable[[str], None]


def prediction_row(source: str, sample: Sample, pred, distances: dict, context=None) -> dict[str, Any]:
    """One out-of-source prediction as the review rule reads it."""
    label = pred.label
    conflicts = [n for n, _ in evidence_conflict_items(sample.record, label, context)] if label is not None else []
    return {
        "source": source, "series_uid": sample.record.series_uid, "study_uid": sample.record.study_uid,
        "patient_id": sample.record.patient_id, "description": sample.record.description,
        "manufacturer": sample.record.manufacturer, "true": CLASS_NAMES[sample.label],
        "predicted": label.value if label is not None else None, "confidence": pred.confidence,
        "probabilities": pred.probabilities, "distances": {k: round(v, 3) for k, v in distances.items()},
        "conflicts": conflicts, "quality_low": any(reason_kind(r) == LOW_QUALITY for r in pred.review_reasons),
        "note": pred.note,
    }


def _classified(clf: Classifier, samples: Sequence[Sample], source: str) -> tuple[list, list[dict[str, Any]]]:
    """(predictions, rows) of ``samples`` by ``clf`` (its distances recorded through ``score_log``)."""
    clf.score_log = []
    records = [s.record for s in samples]
    preds = clf.classify(records)
    contexts = study_contexts(records)
    rows = [prediction_row(source, s, p, d, contexts.get(s.record.series_uid))
            for s, p, d in zip(samples, preds, clf.score_log)]
    return preds, rows


def _for_rows(clf: Classifier, rules: Optional[Sequence[str]]) -> Classifier:
    """``clf`` set to produce out-of-source rows: the decision rules ``rules`` (all when None), no review
    rule (the rows hold the raw scores the rule is fitted on)."""
    clf.decision_rules = list(DECISION_RULES) if rules is None else list(rules)
    clf.review_rule = None
    return clf


def _classifier(checkpoint: os.PathLike, rules: Optional[Sequence[str]]) -> Classifier:
    """The checkpoint's classifier, set up by :func:`_for_rows`."""
    return _for_rows(Classifier(checkpoint, device="cpu", precision="fp32"), rules)


def _fold_classifier(ensemble: Any, card: Any, i: int, thresholds: Optional[dict] = None) -> Classifier:
    """A classifier of fold model ``i`` of ``ensemble`` alone, with its own distance statistics
    (``thresholds``: the card's when None)."""
    single = EnsembleModel([ensemble.models[i]], card)
    if ensemble.ood is not None:
        single.ood = OodScorer([ensemble.ood.per_fold[i]],
                               ensemble.ood.thresholds if thresholds is None else thresholds)
    return Classifier.from_ensemble(single, card, device="cpu", precision="fp32")


def predict_source(checkpoint: os.PathLike, samples: Sequence[Sample], source: str,
                   rules: Optional[Sequence[str]] = None) -> tuple[list, list[dict[str, Any]]]:
    """(predictions, rows) of ``samples`` by ``checkpoint`` with the decision rules ``rules`` (all when None)."""
    return _classified(_classifier(checkpoint, rules), samples, source)


class _Collected:
    """Rows and per-source scores of the out-of-source predictions, source by source."""

    def __init__(self):
        self.rows: list[dict[str, Any]] = []
        self.per_source: dict[str, Any] = {}
        self.y: list[int] = []
        self.preds: list = []

    def add(self, name: str, held: Sequence[Sample], preds: list, rows: list, held_with: Sequence[str]) -> dict:
        self.rows += rows
        y = np.array([s.label for s in held])
        metrics, _ = prediction_scores(y, preds)
        metrics["n_series"] = len(held)
        metrics["held_out_with"] = list(held_with)
        self.per_source[name] = metrics
        self.y += list(y)
        self.preds += preds
        return metrics

    def result(self, groups: list) -> dict[str, Any]:
        if not self.preds:
            raise ValueError("no labelled series of the real sources were predicted")
        pooled, _ = prediction_scores(np.array(self.y), self.preds)
        return {"rows": self.rows, "per_source": self.per_source, "pooled": pooled, "groups": groups}


def leave_one_source_out(samples: Sequence[Sample], real_roots: Sequence[str], cfg: TrainConfig,
                         workdir: Optional[os.PathLike] = None, log: LogFn = print,
                         rules: Optional[Sequence[str]] = None, n_groups: Optional[int] = None) -> dict[str, Any]:
    """Train without each real source (or group of sources, ``n_groups``) in turn and predict it.

    Returns ``{"rows", "per_source", "pooled", "groups"}``; every real series is
    predicted by a model that saw no series of its source.
    """
    real = {str(r) for r in real_roots}
    by_root: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_root.setdefault(str(s.source), []).append(i)
    held_roots = [r for r in by_root if r in real]
    if not held_roots:
        raise ValueError("leave-one-source-out: none of the real roots has labelled series")
    groups = [g for g in source_groups({r: len(by_root[r]) for r in held_roots}, n_groups) if g]
    cfg1 = dataclasses.replace(cfg, folds=1)
    out = _Collected()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for n, group in enumerate(groups, 1):
            names = [source_name(r) for r in group]
            keep = [s for s in samples if str(s.source) not in group]
            t0 = time.perf_counter()
            log(f"[{n}/{len(groups)}] without {', '.join(names)}: training on {len(keep)} series, "
                f"{sum(len(by_root[r]) for r in group)} held out")
            ckpt = Path(tmp) / f"without_{n}.json"
            train(keep, cfg1, ckpt, log=lambda m: None)
            clf = _classifier(ckpt, rules)
            for root, name in zip(group, names):
                held = [samples[i] for i in by_root[root]]
                m = out.add(name, held, *_classified(clf, held, name), names)
                log(f"    {name}: macro-F1 {m['macro_f1']:.3f}, accuracy {m['accuracy']:.3f}")
            log(f"    ({time.perf_counter() - t0:.0f} s)")
    return out.result([[source_name(r) for r in g] for g in groups])


def out_of_fold(model_path: os.PathLike, samples: Sequence[Sample], log: LogFn = print,
                rules: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Out-of-source predictions from an ensemble trained with ``folds_by_source`` (``train --fold-by-source``).

    The folds are rebuilt as training built them (``training.folds.sample_folds``, deterministic in the
    card's seed); each real source lies whole in one fold, so its fold model never saw it.  Each fold
    model alone (its own distance statistics) classifies the real series of its fold.  Same result
    form as :func:`leave_one_source_out`, without training anything.
    """
    ensemble, card = load_checkpoint(model_path, map_location="cpu")
    by_source = tuple((card.raw.get("training") or {}).get("folds_by_source") or ())
    if not by_source:
        raise ValueError(f"{model_path}: trained without folds by source (train --fold-by-source); "
                         "use leave-one-source-out training instead")
    if card.n_training_series is not None and len(samples) != card.n_training_series:
        log(f"warning: {len(samples)} labelled series now, the card says {card.n_training_series} "
            "(the folds may differ from training)")
    k = len(ensemble.models)
    folds = sample_folds([s.group for s in samples], [s.source for s in samples], k if k > 1 else 5,
                         card.training_seed, by_source)
    out = _Collected()
    groups = []
    for i in range(k):
        clf = _for_rows(_fold_classifier(ensemble, card, i, thresholds={}), rules)
        names = sorted({source_name(s.source) for s, f in zip(samples, folds) if f == i} & set(by_source))
        groups.append(names)
        for name in names:
            held = [s for s, f in zip(samples, folds) if f == i and source_name(s.source) == name]
            out.add(name, held, *_classified(clf, held, name), names)
        log(f"fold {i + 1}/{k}: {', '.join(names) or '(no real source)'}")
    return out.result(groups)


def fold_classifiers(model_path: os.PathLike) -> dict[str, Classifier]:
    """``{source name: the classifier of the fold model that never saw it}`` of an ensemble trained with
    folds by source, from its card's leave-one-source-out report (``groups``: the sources of each fold)."""
    ensemble, card = load_checkpoint(model_path, map_location="cpu")
    groups = (card.raw.get("leave_one_source_out") or {}).get("groups")
    if not groups or len(groups) != len(ensemble.models):
        raise ValueError(f"{model_path}: its card has no leave-one-source-out fold groups (seqclassifier "
                         "by-source --model ... --into-card)")
    out = {}
    for i, names in enumerate(groups):
        clf = _fold_classifier(ensemble, card, i)
        out.update({n: clf for n in names})
    return out


def keyword_label(description: str) -> SequenceLabel:
    """A keyword rule on SeriesDescription, the baseline a person would write first."""
    d = (description or "").lower()
    if any(k in d for k in ("loc", "scout", "survey", "tripilot", "3pl")):
        return SequenceLabel.OTHER
    if "adc" in d or "apparent" in d:
        return SequenceLabel.ADC
    if any(k in d for k in ("diff", "dwi", "dti", "trace", "b1000", "b800", "b1400", "b2000", "ep2d_diff")):
        return SequenceLabel.DWI
    if any(k in d for k in ("dce", "dyn", "twist", "vibe", "perf", "disco", "lava")) and "dsc" not in d:
        return SequenceLabel.DCE
    if "t2" in d and not any(k in d for k in ("flair", "map", "star", "*", "swi")):
        return SequenceLabel.T2w
    return SequenceLabel.OTHER


def keyword_scores(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Macro-F1 of :func:`keyword_label` per source and pooled, on the same rows."""
    out: dict[str, Any] = {}
    for name in sorted({r["source"] for r in rows}) + ["pooled"]:
        sel = [r for r in rows if name == "pooled" or r["source"] == name]
        y = np.array([CLASS_NAMES.index(r["true"]) for r in sel])
        p = np.array([CLASS_NAMES.index(keyword_label(r["description"]).value) for r in sel])
        out[name] = round(float(classification_metrics(y, p)["macro_f1"]), 4)
    return out
