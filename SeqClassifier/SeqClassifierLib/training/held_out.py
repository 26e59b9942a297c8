"""What a checkpoint's held-out folds say, computed again without retraining.

For an existing K-fold checkpoint and the labelled data it was trained on,
the same patient-grouped folds are rebuilt (``group_folds`` is deterministic
in the card's seed) and every fold model is run on its own held-out fold:

* the distance-to-training-data statistics (``model.ood``) of each fold model
  from its training folds, and the thresholds from the held-out distances
  (use it after changing the places or the target rate);
* out-of-fold scores **by source**: real series (labels without a ``family``
  column) apart from synthetic ones, each series predicted by the fold model
  that never saw its patient, through the whole classifier (study context,
  evidence checks, image quality, distances) -- macro-F1, ECE, and how many
  wrong and right predictions are flagged for review;
* the **review threshold rule**: the lowest confidence threshold that, together
  with the other review reasons, flags :data:`TARGET_COVERAGE` of the wrong
  held-out *synthetic* predictions (the real ones are only reported).

The checkpoint is rewritten: weights unchanged, new statistics, new hash, the
card's ``ood``, ``review_threshold`` and ``metrics.held_out_by_source`` replaced.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np
import torch

from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.model.checkpoint import _RESERVED_KEYS, load_checkpoint, save_checkpoint
from SeqClassifierLib.model.classifier import Classifier
from SeqClassifierLib.model.ensemble import EnsembleModel
from SeqClassifierLib.model.ood import OodScorer
from SeqClassifierLib.model.reasons import Reason, ReasonKind, as_reason
from SeqClassifierLib.training.evaluate import prediction_scores
from SeqClassifierLib.training.families import family_of, read_families
from SeqClassifierLib.training.folds import sample_folds
from SeqClassifierLib.training.train import TrainConfig, _Tensors, fold_ood, load_samples, ood_summary


#: Share of wrong held-out synthetic predictions the review flags must cover (the review threshold rule).
TARGET_COVERAGE = 0.90
#: The threshold never goes below this: the panel shows confidences from 0.90 green, and a prediction
#: below that is never loaded unlooked-at, whatever the synthetic held-out data allow.
REVIEW_FLOOR = 0.90


def choose_review_threshold(confidence: np.ndarray, wrong: np.ndarray, other: np.ndarray,
                            target: float = TARGET_COVERAGE, floor: float = REVIEW_FLOOR, cap: float = 0.99) -> float:
    """The lowest confidence threshold that, with the other review reasons (``other``), flags at least
    ``target`` of the wrong predictions; fewest false alarms for that coverage."""
    n_wrong = int(wrong.sum())
    if n_wrong == 0:
        return floor
    need = int(np.ceil(target * n_wrong)) - int((wrong & other).sum())
    if need <= 0:
        return floor
    rest = np.sort(confidence[wrong & ~other])
    return float(np.clip(rest[need - 1] + 1e-4, floor, cap))


def _with_threshold(p, threshold: float):
    """The prediction with its low-confidence reason redone for another review threshold."""
    reasons = [r for r in map(as_reason, p.review_reasons) if r.kind is not ReasonKind.LOW_CONFIDENCE]
    if p.confidence is not None and p.confidence < threshold:
        reasons.insert(0, Reason.low_confidence(p.confidence, threshold))
    return dataclasses.replace(p, review_reasons=reasons, needs_review=bool(reasons))


def held_out_report(model_path: os.PathLike, labels: Sequence[os.PathLike], roots: Sequence[os.PathLike],
                    rate: float = 0.01, log=print, write: bool = True) -> dict[str, Any]:
    """Recompute the held-out statistics of ``model_path`` (see the module docstring); returns them."""
    ensemble, card = load_checkpoint(model_path, map_location="cpu")
    size = card.preprocessing.input_size
    samples = load_samples(labels, roots, input_size=size, log=log)
    if card.n_training_series is not None and len(samples) != card.n_training_series:
        log(f"warning: {len(samples)} labelled series now, the card says {card.n_training_series} "
            "(the folds may differ from training)")
    seed = card.training_seed
    k = len(ensemble.models)
    by_source = tuple((card.raw.get("training") or {}).get("folds_by_source") or ())
    folds = np.array(sample_folds([s.group for s in samples], [s.source for s in samples], k if k > 1 else 5, seed,
                                  by_source))
    data = _Tensors(samples, size, "cpu")
    cfg = TrainConfig(seed=seed)
    stats_all, held_all = [], []
    for i, model in enumerate(ensemble.models):
        model.eval()
        with torch.no_grad():
            stats, held = fold_ood(model, data, np.nonzero(folds != i)[0], np.nonzero(folds == i)[0], cfg)
        stats_all.append(stats)
        held_all.append(held)
    summary = ood_summary(held_all, rate)

    by_uid, by_dir = read_families(labels)
    synthetic = np.array([bool(family_of(s.record, by_uid, by_dir)) for s in samples])
    preds: list = [None] * len(samples)
    for i, model in enumerate(ensemble.models):
        single = EnsembleModel([model], card)
        single.ood = OodScorer([stats_all[i]], summary["thresholds"])
        clf = Classifier.from_ensemble(single, card, device="cpu", precision="fp32")
        idx = np.nonzero(folds == i)[0]
        for j, p in zip(idx, clf.classify([samples[j].record for j in idx])):
            preds[j] = p
        log(f"fold {i + 1}/{k}: {len(idx)} held-out series classified")
    y = np.array([s.label for s in samples])
    # The review threshold rule, set on the held-out synthetic series only (the real ones are reported, not used).
    conf = np.array([p.confidence for p in preds])
    wrong = np.array([p.label.value != CLASS_NAMES[t] for p, t in zip(preds, y)])
    other = np.array([any(as_reason(r).kind is not ReasonKind.LOW_CONFIDENCE for r in p.review_reasons)
                      for p in preds])
    threshold = choose_review_threshold(conf[synthetic], wrong[synthetic], other[synthetic])
    preds = [_with_threshold(p, threshold) for p in preds]
    s_conf, s_wrong, s_other = conf[synthetic], wrong[synthetic], other[synthetic]
    curve = []
    for th in (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99):
        flagged = s_other | (s_conf < th)
        curve.append({"threshold": th, "coverage": round(float((flagged & s_wrong).sum() / max(1, s_wrong.sum())), 4),
                      "false_alarm_rate": round(float((flagged & ~s_wrong).sum() / max(1, (~s_wrong).sum())), 4)})
    rule = {"review_threshold": round(threshold, 4), "target_coverage": TARGET_COVERAGE, "curve": curve,
            "rule": "lowest confidence threshold that, with the other review reasons, flags the target share of "
                    "wrong held-out synthetic predictions; real series are not used to choose it"}
    report: dict[str, Any] = {"review_rule": rule}
    for name, mask in (("real", ~synthetic), ("synthetic", synthetic)):
        idx = np.nonzero(mask)[0]
        if len(idx):
            report[name] = prediction_scores(y[idx], [preds[j] for j in idx])[0]
            report[name]["misclassified"] = [
                {"description": samples[j].record.description, "true": CLASS_NAMES[y[j]],
                 "predicted": preds[j].label.value, "confidence": preds[j].confidence,
                 "review_reasons": preds[j].review_reasons}
                for j in idx if preds[j].label.value != CLASS_NAMES[y[j]]][:50]
    if write:
        new_card = {key: v for key, v in card.raw.items() if key not in _RESERVED_KEYS
                    and key not in ("created", "torch_version")}
        new_card["ood"] = summary
        new_card["review_threshold"] = round(threshold, 4)
        new_card.setdefault("metrics", {})["held_out_by_source"] = report
        dtype = torch.float16 if card.weights_dtype == "float16" else None
        save_checkpoint(model_path, list(ensemble.models), new_card, dtype=dtype, ood_stats=stats_all)
    return {"ood": summary, "held_out_by_source": report}
