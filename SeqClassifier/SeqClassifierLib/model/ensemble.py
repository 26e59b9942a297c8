"""The K-fold ensemble: the fold models of a checkpoint, calibrated and averaged.

``EnsembleModel(models, card)`` holds the fold models of one cross-validation
run (identical architecture).  ``forward(image, meta, image_present=None,
meta_present=None)`` returns the mean over folds of ``softmax(logits / T)`` --
class probabilities ``[B, num_classes]`` in :data:`~SeqClassifierLib.labels.CLASS_NAMES`
order -- with the one temperature ``T`` fitted on the out-of-fold logits
(the card's ``temperature``, 1 when absent).  :meth:`EnsembleModel.fold_probabilities`
gives the members' own calibrated probabilities ``[F, B, num_classes]``
(their spread is a measure of disagreement); :meth:`EnsembleModel.average`
also runs a context manager around each fold's forward pass (a feature
capture hook) and returns what each yielded.

Built by :func:`~SeqClassifierLib.model.checkpoint.load_checkpoint`; ``torch``
is imported at module level; never imports ``slicer`` or ``qt``.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, ContextManager, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.model.card import ModelCard
from SeqClassifierLib.model.fusion import SequenceModel
from SeqClassifierLib.model.ood import OodScorer, capture

__all__ = ["EnsembleModel", "checked_temperature"]


def checked_temperature(value: Any) -> float:
    """``value`` as a temperature: ``None`` -> 1.0; ValueError unless a positive finite number."""
    if value is None:
        return 1.0
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"invalid temperature {value!r}: not a number") from None
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"invalid temperature {value!r}: must be a positive finite number")
    return t


class EnsembleModel(nn.Module):
    """The fold models of a checkpoint, averaged (see the module docstring)."""

    def __init__(self, models: Sequence[SequenceModel], card: Union[ModelCard, Mapping[str, Any], None] = None):
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        config = models[0].config
        for i, m in enumerate(models[1:], start=1):
            if m.config != config:
                raise ValueError(f"fold {i} has a different model configuration than fold 0")
        self.models = nn.ModuleList(models)
        #: The checkpoint's :class:`~.card.ModelCard`, or the plain mapping a caller built the ensemble from.
        self.card: Union[ModelCard, Dict[str, Any]] = card if isinstance(card, ModelCard) else dict(card or {})
        if isinstance(card, ModelCard):
            self.temperature, self.classes = card.temperature, tuple(card.classes)
        else:
            self.temperature = checked_temperature(self.card.get("temperature"))
            self.classes = tuple(self.card.get("classes", CLASS_NAMES))
        if len(self.classes) != models[0].num_classes:
            raise ValueError(f"the card names {len(self.classes)} classes but the models predict "
                             f"{models[0].num_classes}")
        #: Distance-to-training-data scorer (model.ood), when the checkpoint holds its statistics.
        self.ood: Optional[OodScorer] = None

    # The preprocessing and description of the (identical) fold models.
    @property
    def config(self) -> Dict[str, Any]:
        return self.models[0].config

    @property
    def n_folds(self) -> int:
        return len(self.models)

    @property
    def strategy(self) -> str:
        return self.models[0].strategy

    @property
    def backbone_name(self) -> Optional[str]:
        return self.models[0].backbone_name

    @property
    def input_size(self) -> Optional[int]:
        return self.models[0].input_size

    @property
    def mean(self):
        return self.models[0].mean

    @property
    def std(self):
        return self.models[0].std

    @property
    def uses_image(self) -> bool:
        return self.models[0].uses_image

    @property
    def uses_metadata(self) -> bool:
        return self.models[0].uses_metadata

    def fold_probabilities(
        self,
        image: Optional[torch.Tensor],
        meta: Optional[torch.Tensor],
        image_present: Optional[torch.Tensor] = None,
        meta_present: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Each fold's ``softmax(logits / T)``, float32 ``[F, B, num_classes]``."""
        return torch.stack([
            torch.softmax(model(image, meta, image_present, meta_present).float() / self.temperature, dim=1)
            for model in self.models
        ])

    def average(
        self,
        image: Optional[torch.Tensor],
        meta: Optional[torch.Tensor],
        image_present: Optional[torch.Tensor] = None,
        meta_present: Optional[torch.Tensor] = None,
        around: Optional[Callable[[nn.Module], ContextManager[Any]]] = None,
    ) -> Tuple[torch.Tensor, List[Any]]:
        """``(mean over folds of softmax(logits / T) [B, C], [what around(fold) yielded, per fold])``.

        ``around(fold)``: a context manager entered around each fold's forward pass,
        e.g. a hook capturing the fold's features for a distance-to-training-data score.
        Summed fold by fold (not stacked): one batch of probabilities in memory at a time.
        """
        probs, entered = None, []
        for model in self.models:
            with (around(model) if around is not None else contextlib.nullcontext()) as value:
                logits = model(image, meta, image_present, meta_present)
            entered.append(value)
            p = torch.softmax(logits.float() / self.temperature, dim=1)
            probs = p if probs is None else probs + p
        return probs / len(self.models), entered

    def forward(
        self,
        image: Optional[torch.Tensor],
        meta: Optional[torch.Tensor],
        image_present: Optional[torch.Tensor] = None,
        meta_present: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        return self.average(image, meta, image_present, meta_present)[0]

    def forward_with_scores(self, image, meta, image_present=None, meta_present=None):
        """``(probabilities [B, C], {place: distance [B]})``; no distances without OOD statistics."""
        if self.ood is None:
            return self.forward(image, meta, image_present, meta_present), {}
        probs, captured = self.average(image, meta, image_present, meta_present, around=capture)
        return probs, self.ood.scores(captured)

    def forward_with_features(self, image, meta, image_present=None, meta_present=None):
        """``(probabilities [B, C], {place: distance [B]}, [each fold's {place: features [B, D]}])``.

        :meth:`forward_with_scores` plus the features of :func:`~.ood.capture` (the pre-logit fused
        vector among them) for the site memory (:mod:`SeqClassifierLib.adaptation`): the hooks only
        copy, so the probabilities are the same numbers.
        """
        probs, captured = self.average(image, meta, image_present, meta_present, around=capture)
        return probs, (self.ood.scores(captured) if self.ood is not None else {}), captured
