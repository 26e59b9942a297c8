""""Unlike anything it was trained on": a distance in the model's own feature space.

Low softmax confidence cannot catch a model that is sure and wrong.  Beside
the probabilities, every series gets a distance to the training data in the
model's own feature space, separately for three places of each fold model:

``image``   the image branch's features (backbone output),
``meta``    the metadata branch's embedding,
``fused``   the input of the last linear layer (the penultimate fused features),
``header``  the metadata feature vector itself (the input of the metadata branch): an
            unusual header value the network happens to be insensitive to still counts.

Method (Lee et al. 2018, "A simple unified framework for detecting
out-of-distribution samples"): class-conditional means with one shared
covariance of the training samples' features, shrunk towards a scaled
identity (10 %); the score of a series is its smallest Mahalanobis distance
to a class mean, averaged over the folds of the ensemble.  The statistics are
stored in the checkpoint's safetensors file (``ood.fold<i>.<place>.means`` /
``.precision``), so they are hash-checked with the weights; the thresholds
are in the card: for each place, the (1 - target rate) quantile of the
distances of held-out samples (each fold's model on its own validation fold).
Cost at inference: one forward hook per place and a [B, D] x [D, D] product
per fold (D <= 512), well under 1 % of the model's time.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from SeqClassifierLib.model.places import PLACES  # noqa: F401 (re-exported)
from SeqClassifierLib.model.reasons import Reason
SHRINKAGE = 0.1
#: Default share of held-out (in-distribution) series flagged per place.
TARGET_RATE = 0.01


def _places(model: nn.Module) -> Dict[str, tuple[nn.Module, bool]]:
    """The modules whose output (False) or first input (True) is each place's feature."""
    out: Dict[str, tuple[nn.Module, bool]] = {}
    if isinstance(getattr(model, "image_branch", None), nn.Module):
        out["image"] = (model.image_branch, False)
    if isinstance(getattr(model, "meta_branch", None), nn.Module):
        out["meta"] = (model.meta_branch, False)
        out["header"] = (model.meta_branch, True)
    head = getattr(model, "head", None)
    if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
        out["fused"] = (head[-1], True)
    return out


@contextmanager
def capture(model: nn.Module) -> Iterator[Dict[str, torch.Tensor]]:
    """Collect each place's features of the next forward passes of ``model`` (a fold model)."""
    found: Dict[str, List[torch.Tensor]] = {}
    handles = []
    for name, (module, is_input) in _places(model).items():
        def hook(mod, args, output=None, name=name):
            t = args[0] if output is None else output
            if isinstance(t, torch.Tensor):  # a modality passed as None (missing for the batch) has no features
                found.setdefault(name, []).append(t.detach().float())
        handles.append(module.register_forward_pre_hook(hook) if is_input else module.register_forward_hook(hook))
    result: Dict[str, torch.Tensor] = {}
    try:
        yield result
    finally:
        for h in handles:
            h.remove()
        result.update({k: torch.cat(v) for k, v in found.items()})


def fit_statistics(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> Dict[str, torch.Tensor]:
    """Class means [C, D] (NaN for absent classes) and the shrunk shared precision [D, D]."""
    x = features.double()
    d = x.shape[1]
    means = torch.full((num_classes, d), float("nan"), dtype=torch.float64)
    centred = []
    for c in range(num_classes):
        m = labels == c
        if bool(m.any()):
            means[c] = x[m].mean(0)
            centred.append(x[m] - means[c])
    z = torch.cat(centred) if centred else x - x.mean(0)
    cov = z.T @ z / max(1, z.shape[0] - 1)
    scale = float(torch.trace(cov)) / d if d else 1.0
    cov = (1 - SHRINKAGE) * cov + SHRINKAGE * max(scale, 1e-8) * torch.eye(d, dtype=torch.float64)
    precision = torch.linalg.inv(cov)
    return {"means": means.float(), "precision": precision.float()}


def distances(features: torch.Tensor, stats: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Smallest Mahalanobis distance of each row to a class mean ``[B]``."""
    x = features.float()
    means, precision = stats["means"].to(x.device), stats["precision"].to(x.device)
    valid = ~torch.isnan(means).any(1)
    with torch.autocast(device_type=x.device.type, enabled=False):  # distances in float32 under bf16 inference
        diff = x[:, None, :] - means[valid][None, :, :]          # [B, C, D]
        d2 = torch.einsum("bcd,de,bce->bc", diff, precision, diff).clamp(min=0)
    return d2.min(1).values.sqrt().float()


def stats_to_tensors(per_fold: Sequence[Mapping[str, Mapping[str, torch.Tensor]]]) -> Dict[str, torch.Tensor]:
    """``{ood.fold<i>.<place>.<means|precision>: tensor}`` for the checkpoint file."""
    out = {}
    for i, places in enumerate(per_fold):
        for place, stats in places.items():
            for key, t in stats.items():
                out[f"ood.fold{i}.{place}.{key}"] = t.detach().cpu().float().contiguous()
    return out


def stats_from_tensors(tensors: Mapping[str, torch.Tensor], n_folds: int) -> List[Dict[str, Dict[str, torch.Tensor]]]:
    """The inverse of :func:`stats_to_tensors` (ValueError on a malformed key or shape)."""
    per_fold: List[Dict[str, Dict[str, torch.Tensor]]] = [{} for _ in range(n_folds)]
    for key, t in tensors.items():
        parts = key.split(".")
        if len(parts) != 4 or parts[0] != "ood" or not parts[1].startswith("fold") or parts[2] not in PLACES \
                or parts[3] not in ("means", "precision"):
            raise ValueError(f"unexpected OOD tensor {key!r}")
        i = int(parts[1][4:])
        if not 0 <= i < n_folds:
            raise ValueError(f"OOD tensor {key!r} names fold {i} of {n_folds}")
        # a copy: float32 tensors of safetensors' load_file are views of its memory map of the whole
        # weights file, which one of them kept mapped (and resident) for the process's life
        per_fold[i].setdefault(parts[2], {})[parts[3]] = t.to(torch.float32, copy=True)
    for i, places in enumerate(per_fold):
        for place, stats in places.items():
            if set(stats) != {"means", "precision"}:
                raise ValueError(f"OOD statistics of fold {i}, {place}: need means and precision")
            d = stats["precision"].shape
            if len(d) != 2 or d[0] != d[1] or stats["means"].shape[-1] != d[0]:
                raise ValueError(f"OOD statistics of fold {i}, {place}: shapes {tuple(stats['means'].shape)} "
                                 f"and {tuple(d)} do not fit")
    return per_fold


class OodScorer:
    """Distance scores of an ensemble's forward passes, against stored statistics and thresholds."""

    def __init__(self, per_fold: Sequence[Mapping[str, Mapping[str, torch.Tensor]]],
                 thresholds: Optional[Mapping[str, float]] = None):
        self.per_fold = list(per_fold)
        self.thresholds = {k: float(v) for k, v in (thresholds or {}).items() if v is not None}

    @property
    def places(self) -> list[str]:
        return [p for p in PLACES if all(p in f for f in self.per_fold) and self.per_fold]

    def scores(self, captured_per_fold: Sequence[Mapping[str, torch.Tensor]]) -> Dict[str, np.ndarray]:
        """Mean over folds of each place's distance, ``{place: [B]}``."""
        out = {}
        for place in self.places:
            ds = [distances(cap[place], stats[place]) for cap, stats in zip(captured_per_fold, self.per_fold)
                  if place in cap]
            if ds:
                out[place] = torch.stack(ds).mean(0).cpu().numpy()
        return out

    def reasons(self, scores: Mapping[str, np.ndarray], i: int,
                thresholds: Optional[Mapping[str, float]] = None) -> list[Reason]:
        """The review reasons of sample ``i``: one per place over its threshold (``thresholds``: these
        instead of the card's, e.g. a review rule's; a place not in them never flags)."""
        thresholds = self.thresholds if thresholds is None else thresholds
        out = []
        for place, values in scores.items():
            t = thresholds.get(place)
            if t is not None and float(values[i]) > t:
                out.append(Reason.unlike_training(place, float(values[i]), t))
        return out


def threshold(held_out: np.ndarray, rate: float = TARGET_RATE) -> Optional[float]:
    """The (1 - rate) quantile of held-out distances: ``rate`` of in-distribution series flagged."""
    held_out = np.asarray(held_out, dtype=np.float64)
    held_out = held_out[np.isfinite(held_out)]
    if held_out.size == 0:
        return None
    return float(np.quantile(held_out, 1.0 - rate))
