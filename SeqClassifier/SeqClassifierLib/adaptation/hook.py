"""The classifier hook (``Classifier.site``): a shipped prediction in, the site's prediction out.

For each series the classifier computes its shipped prediction as always,
then calls :meth:`SiteHook.adapt` with the features of every fold.  The hook:

* keeps the series' feature row when asked (``record=True``): a later
  confirmation of that series adds it to the site memory without another run;
* a series the site confirmed shows its confirmed label (probability 1), not
  flagged, with who confirmed it in the note;
* otherwise the probabilities are blended with the confirmed neighbours
  (:meth:`.memory.SiteMemory.blend`) and the "unlike training data" places a
  confirmed series is close to are dropped; the review reasons are made again
  by the classifier's own rule from the blended confidence and label;
* unanimous voters of the predicted label, the nearest within the fused OOD
  threshold (as close as training series are to their class mean), *vouch* for
  the prediction: its "unlike training data" and "low image quality" reasons go
  (the reader has seen the model right on series like it); low confidence and
  evidence conflicts stay with the rule;
* nothing close (no voter, no flag cleared): the shipped prediction comes back
  unchanged, probabilities bit for bit (``adapted`` says ``neighbours: 0``).

``adapted`` on the prediction says what changed: ``label_changed``,
``flag_changed``, ``neighbours`` (voters), ``weight``, ``confirmed`` and the
``shipped`` answer (label, confidence, needs_review, review_reasons,
probabilities) for the panel's "shipped model" switch.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from SeqClassifierLib.adaptation.memory import Geometry, SiteMemory, row_from_features
from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.model.reasons import LOW_CONFIDENCE, LOW_QUALITY, UNLIKE_TRAINING

#: Unanimous voters vouch for a prediction when the nearest lies within the fused OOD threshold x this.
VOUCH_FACTOR = 1.0
#: Low confidence is cleared only by a confirmed near twin of the same label: within this share of the
#: fused threshold (on real out-of-source predictions a right series' nearest confirmed neighbour of its
#: own source lies far inside it; a loose radius let a confirmed qT2 vouch for a DTI b0 called OTHER).
CLEAR_CONFIDENCE_FACTOR = 0.2
_PLACE = re.compile(r"\((\w+) distance ")


def _place_of(reason: str) -> str:
    m = _PLACE.search(reason)
    return m.group(1) if m else ""


def shipped_summary(pred: Any) -> Dict[str, Any]:
    return {
        "label": pred.label.value if pred.label is not None else None,
        "confidence": pred.confidence,
        "needs_review": bool(pred.needs_review),
        "review_reasons": list(pred.review_reasons),
        "probabilities": dict(pred.probabilities),
        "note": pred.note,
    }


class SiteHook:
    """Adapts predictions with a :class:`~.memory.SiteMemory` (may be None: record only)."""

    def __init__(self, memory: Optional[SiteMemory], geometry: Optional[Geometry], record: bool = False,
                 site_name: str = "site", confirmations: Optional[Dict[str, Dict[str, Any]]] = None):
        self.memory = memory if memory is not None and len(memory) else None
        #: series UID -> confirmation ({label, confirmed_by, ...}) of confirmed series the memory has no row
        #: of (yet): they still show their confirmed label.
        self.confirmations = dict(confirmations or {})
        self.geometry = geometry
        self.record = record
        self.site_name = site_name
        #: series UID -> feature row, for the series classified while ``record`` was on.
        self.rows: Dict[str, np.ndarray] = {}
        #: series UID -> the shipped prediction of the series classified (with ``record``).
        self.shipped: Dict[str, Any] = {}
        #: series UID -> what :meth:`adapt_row` needs to replay the series (with ``record``).
        self.inputs: Dict[str, tuple] = {}
        if self.memory is not None and geometry is not None:
            self.memory.fit(geometry)

    @property
    def active(self) -> bool:
        return self.memory is not None or bool(self.confirmations)

    def adapt(self, classifier: Any, record: Any, probs: np.ndarray, shipped: Any, captured: Optional[list],
              i: int, scores: Any, unlike: Sequence[str], note: str, context: Any, quality: Any,
              has_image: bool = True) -> Any:
        layout = self.memory.layout if self.memory is not None else (
            self.geometry.layout() if self.geometry is not None else {})
        row = row_from_features(captured, i, layout) if captured is not None and layout else None
        if self.record:
            if row is not None:
                self.rows[record.series_uid] = row
            self.shipped[record.series_uid] = shipped
            self.inputs[record.series_uid] = (record, np.array(probs, copy=True), list(unlike), note, context,
                                              quality, has_image)
        return self.adapt_row(classifier, record, probs, shipped, row, unlike, note, context, quality, has_image)

    def adapt_row(self, classifier: Any, record: Any, probs: np.ndarray, shipped: Any, row: Optional[np.ndarray],
                  unlike: Sequence[str], note: str, context: Any, quality: Any, has_image: bool = True) -> Any:
        """:meth:`adapt` from a feature row already taken (the benchmark replays recorded series)."""
        if not self.active or shipped.label is None:
            return shipped
        confirmed = self.memory.entry(record.series_uid) if self.memory is not None else None
        confirmed = confirmed or self.confirmations.get(record.series_uid)
        if confirmed is not None:
            return self._confirmed(classifier, record, probs, shipped, confirmed, note, context, quality)
        if row is None or self.geometry is None or self.memory is None:
            return dataclasses.replace(shipped, adapted=self._info(shipped, shipped, 0, 0.0))
        flagged = {_place_of(u) for u in unlike} - {""}
        # distances of the fused place (the voters) and of the flagged places only: the cost stays small
        nb = self.memory.neighbours(row, skip_places=() if has_image else ("image",), places=sorted(flagged))
        new_probs, w = self.memory.blend(probs, nb.voters)
        cleared = set(self.memory.known_places(nb.nearest)) & flagged
        if w == 0.0 and not cleared:
            return dataclasses.replace(shipped, adapted=self._info(shipped, shipped, 0, 0.0, nb))
        kept = [u for u in unlike if _place_of(u) not in cleared]
        pred = classifier._to_prediction(record, new_probs, note, context, quality, kept)
        if self._vouched(nb, pred):
            # confirmed series of this very label as close as training series are to their class: the
            # reader has seen the model right here, so "unlike training data" and the slice's low quality
            # score (this scanner's normal) are no longer reasons to look again; low confidence only
            # when the nearest is a near twin (CLEAR_CONFIDENCE_FACTOR of that distance)
            twin = self._vouched(nb, pred, CLEAR_CONFIDENCE_FACTOR)
            gone = (UNLIKE_TRAINING, LOW_QUALITY) + ((LOW_CONFIDENCE,) if twin else ())
            reasons = [r for r in pred.review_reasons if not r.startswith(gone)]
            if len(reasons) != len(pred.review_reasons):
                note_ = pred.note
                for kind in gone:
                    note_ = self._without(note_, kind)
                pred = dataclasses.replace(pred, review_reasons=reasons, needs_review=bool(reasons), note=note_)
        info = self._info(shipped, pred, len(nb.voters), w, nb)
        words = []
        if info["label_changed"]:
            words.append(f"{self.site_name}: label {info['shipped']['label']} -> {pred.label.value} from "
                         f"{len(nb.voters)} confirmed series")
        if info["flag_changed"]:
            words.append(f"{self.site_name}: " + ("review flag cleared" if not pred.needs_review else
                                                  "flagged for review") +
                         f" ({len(nb.voters) or len(cleared)} confirmed series close)")
        if words:
            pred = dataclasses.replace(pred, note="; ".join([n for n in (pred.note, *words) if n]))
        return dataclasses.replace(pred, adapted=info)

    def _vouched(self, nb, pred, factor: float = None) -> bool:
        """The voters all confirmed the predicted label and the nearest lies within the fused OOD
        threshold x ``factor`` (default VOUCH_FACTOR: as close as the training series are to their class mean)."""
        factor = VOUCH_FACTOR if factor is None else factor
        t = self.geometry.thresholds.get("fused") if self.geometry is not None else None
        if not nb.voters or pred.label is None or t is None or nb.voters[0][1] > t * factor:
            return False
        labels = self.memory._labels if len(self.memory._labels) == len(self.memory) else self.memory.labels()
        k = CLASS_NAMES.index(pred.label.value)
        return all(int(labels[i]) == k for i, _ in nb.voters)

    @staticmethod
    def _without(note: str, kind: str) -> str:
        return "; ".join(part for part in note.split("; ") if part and not part.startswith(kind))

    def _confirmed(self, classifier, record, probs, shipped, entry, note, context, quality):
        k = CLASS_NAMES.index(entry["label"])
        onehot = np.zeros_like(probs)
        onehot[k] = 1.0
        pred = classifier._to_prediction(record, onehot, note, context, quality, [])
        who = entry.get("confirmed_by") or "a reader"
        words = f"{self.site_name}: confirmed {entry['label']} by {who}"
        pred = dataclasses.replace(pred, needs_review=False, review_reasons=[],
                                   note="; ".join(n for n in (note, words) if n))
        info = self._info(shipped, pred, 0, 1.0)
        info["confirmed"] = True
        info["confirmed_by"] = entry.get("confirmed_by")
        return dataclasses.replace(pred, adapted=info)

    @staticmethod
    def _info(shipped, pred, n: int, w: float, nb=None) -> Dict[str, Any]:
        return {
            "label_changed": pred.label != shipped.label,
            "flag_changed": bool(pred.needs_review) != bool(shipped.needs_review),
            "neighbours": int(n),
            "weight": round(float(w), 4),
            "nearest": (round(nb.nearest["fused"], 3) if nb is not None and "fused" in nb.nearest else None),
            "confirmed": False,
            "shipped": shipped_summary(shipped),
        }


def features_of(classifier: Any, records: Sequence[Any], progress=None):
    """Classify ``records`` with the shipped model only, recording every series' feature row.

    Returns (shipped predictions, the recording hook: ``rows``, ``inputs``, ``geometry``).  The
    classifier's own hook is restored.
    """
    old = classifier.site
    hook = SiteHook(None, Geometry.from_classifier(classifier), record=True)
    classifier.site = hook
    try:
        preds = classifier.classify(records, progress=progress)
    finally:
        classifier.site = old
    return preds, hook


def unlike_places(pred: Any) -> List[str]:
    return [_place_of(r) for r in pred.review_reasons if _place_of(r)]
