"""Fit (or refit) a checkpoint's distance-to-training-data statistics without retraining.

Training computes them (``train.fold_ood``); this recomputes them for an
existing checkpoint from the same labelled data and the same patient-grouped
folds (``group_folds`` is deterministic in the card's seed): each fold model's
statistics from its training folds, its threshold sample from its own held-out
fold.  Use it after changing the places or the target rate, or for a checkpoint
trained before the statistics existed.  The checkpoint is rewritten (weights
unchanged, new statistics, new hash, card ``ood`` entry replaced).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from SeqClassifierLib.model.checkpoint import _RESERVED_KEYS, load_checkpoint, save_checkpoint
from SeqClassifierLib.training.train import (TrainConfig, _Tensors, fold_ood, group_folds, load_samples,
                                             ood_summary)


def refit_ood(model_path: os.PathLike, labels: Sequence[os.PathLike], roots: Sequence[os.PathLike],
              rate: float = 0.01, log=print) -> dict:
    """Recompute and store the OOD statistics of ``model_path``; returns the new card ``ood`` entry."""
    ensemble, card = load_checkpoint(model_path, map_location="cpu")
    size = int(card.get("preprocessing", {}).get("input_size", 128))
    samples = load_samples(labels, roots, input_size=size, log=log)
    if len(samples) != int(card.get("data", {}).get("n_series", len(samples))):
        log(f"warning: {len(samples)} labelled series now, the card says {card['data']['n_series']} "
            "(folds may differ from training)")
    seed = int(card.get("training", {}).get("seed", 0))
    k = len(ensemble.models)
    folds = np.array(group_folds([s.group for s in samples], k if k > 1 else 5, seed))
    data = _Tensors(samples, size, "cpu")
    cfg = TrainConfig(seed=seed)
    stats_all, held_all = [], []
    for i, model in enumerate(ensemble.models):
        model.eval()
        trn, val = np.nonzero(folds != i)[0], np.nonzero(folds == i)[0]
        with torch.no_grad():
            stats, held = fold_ood(model, data, trn, val, cfg)
        stats_all.append(stats)
        held_all.append(held)
        log(f"fold {i + 1}/{k}: statistics of {len(trn)} series, thresholds from {len(val)} held out")
    summary = ood_summary(held_all, rate)
    new_card = {key: v for key, v in card.items() if key not in _RESERVED_KEYS and key not in
                ("created", "torch_version")}
    new_card["ood"] = summary
    dtype = torch.float16 if str(card.get("weights_dtype", "")) == "float16" else None
    save_checkpoint(model_path, list(ensemble.models), new_card, dtype=dtype, ood_stats=stats_all)
    return summary
