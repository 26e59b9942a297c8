"""Why a series needs review: one typed reason per cause, in a fixed order.

``needs_review`` is true exactly when this list is not empty.  The causes
(:class:`ReasonKind`): low confidence (below the card's review threshold),
unlike training data (a distance of :mod:`~SeqClassifierLib.model.ood` over its
threshold), evidence conflict (:mod:`~SeqClassifierLib.model.evidence`), low
image quality (:mod:`~SeqClassifierLib.inputs.quality`), image unreadable.

A :class:`Reason` is a typed value -- its :attr:`~Reason.kind` and, for a
distance, the :attr:`~Reason.place` it was measured at -- that is also its own
text (a ``str`` subclass), so that records, label stores and every output
format carry the same words as before while the library decides by kind and
place, never by matching text.
"""

from __future__ import annotations

import enum
from typing import Any, Optional, Sequence

from SeqClassifierLib.inputs.quality import ImageQuality


class ReasonKind(str, enum.Enum):
    LOW_CONFIDENCE = "low confidence"
    UNLIKE_TRAINING = "unlike training data"
    EVIDENCE_CONFLICT = "evidence conflict"
    LOW_QUALITY = "low image quality"
    IMAGE_UNREADABLE = "image unreadable"


LOW_CONFIDENCE = ReasonKind.LOW_CONFIDENCE.value
UNLIKE_TRAINING = ReasonKind.UNLIKE_TRAINING.value
EVIDENCE_CONFLICT = ReasonKind.EVIDENCE_CONFLICT.value
LOW_QUALITY = ReasonKind.LOW_QUALITY.value
IMAGE_UNREADABLE = ReasonKind.IMAGE_UNREADABLE.value
#: Every reason starts with one of these.
KINDS = tuple(k.value for k in ReasonKind)


class Reason(str):
    """One review reason: ``kind`` (a :class:`ReasonKind`), ``place`` (the distance's place for
    ``unlike training data``, else "") and, as a string, the words shown to people."""

    kind: ReasonKind
    place: str

    def __new__(cls, kind: ReasonKind, text: str, place: str = "") -> "Reason":
        obj = super().__new__(cls, text)
        obj.kind = kind
        obj.place = place
        return obj

    def __reduce__(self) -> Any:  # pickled across worker processes as the typed value
        return (Reason, (self.kind, str(self), self.place))

    # -- the causes ------------------------------------------------------------------------

    @classmethod
    def low_confidence(cls, confidence: float, threshold: float) -> "Reason":
        return cls(ReasonKind.LOW_CONFIDENCE, f"{LOW_CONFIDENCE} ({confidence:.2f} < {threshold:.2f})")

    @classmethod
    def unlike_training(cls, place: str, distance: float, threshold: float) -> "Reason":
        return cls(ReasonKind.UNLIKE_TRAINING,
                   f"{UNLIKE_TRAINING} ({place} distance {distance:.1f} > {threshold:.1f})", place)

    @classmethod
    def evidence_conflict(cls, conflict: str) -> "Reason":
        return cls(ReasonKind.EVIDENCE_CONFLICT, f"{EVIDENCE_CONFLICT}: {conflict}")

    @classmethod
    def low_quality(cls, quality: ImageQuality) -> "Reason":
        return cls(ReasonKind.LOW_QUALITY, f"{LOW_QUALITY} ({quality.score:.2f}: {', '.join(quality.problems)})")

    @classmethod
    def image_unreadable(cls, note: str) -> "Reason":
        return cls(ReasonKind.IMAGE_UNREADABLE, f"{IMAGE_UNREADABLE}: {note}")


def as_reason(value: str) -> Reason:
    """A reason of any origin (a :class:`Reason`, or text read back from a file) as a :class:`Reason`."""
    if isinstance(value, Reason):
        return value
    kind = next((k for k in ReasonKind if value.startswith(k.value)), None)
    if kind is None:
        raise ValueError(f"not a review reason: {value!r}")
    return Reason(kind, value)


def review_reasons(confidence: float, threshold: float, *, image_note: str = "", unlike: Sequence[str] = (),
                   conflicts: Sequence[str] = (), quality: Optional[ImageQuality] = None) -> list[Reason]:
    """The review reasons of one prediction (empty: no review needed)."""
    out = []
    if confidence < threshold:
        out.append(Reason.low_confidence(confidence, threshold))
    out += [u if isinstance(u, Reason) else
            Reason(ReasonKind.UNLIKE_TRAINING, u if u.startswith(UNLIKE_TRAINING) else f"{UNLIKE_TRAINING} ({u})")
            for u in unlike]
    out += [Reason.evidence_conflict(c) for c in conflicts]
    if quality is not None and quality.is_low:
        out.append(Reason.low_quality(quality))
    if image_note:
        out.append(Reason.image_unreadable(image_note))
    return out


def reason_kind(reason: str) -> str:
    """Which of :data:`KINDS` a reason is ("" if none): its kind, or for text read back, its first words."""
    if isinstance(reason, Reason):
        return reason.kind.value
    return next((k for k in KINDS if reason.startswith(k)), "")
