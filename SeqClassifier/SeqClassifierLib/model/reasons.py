"""Why a series needs review: one short reason per cause, in a fixed order.

``needs_review`` is true exactly when this list is not empty.  The causes:
low confidence (below the card's review threshold), unlike training data (a
distance of :mod:`~SeqClassifierLib.model.ood` over its threshold), evidence
conflict (:mod:`~SeqClassifierLib.model.evidence`), low image quality
(:mod:`~SeqClassifierLib.inputs.quality`), image unreadable.
"""

from __future__ import annotations

from typing import Optional, Sequence

from SeqClassifierLib.inputs.quality import ImageQuality

LOW_CONFIDENCE = "low confidence"
UNLIKE_TRAINING = "unlike training data"
EVIDENCE_CONFLICT = "evidence conflict"
LOW_QUALITY = "low image quality"
IMAGE_UNREADABLE = "image unreadable"
#: Every reason starts with one of these.
KINDS = (LOW_CONFIDENCE, UNLIKE_TRAINING, EVIDENCE_CONFLICT, LOW_QUALITY, IMAGE_UNREADABLE)


def review_reasons(confidence: float, threshold: float, *, image_note: str = "", unlike: Sequence[str] = (),
                   conflicts: Sequence[str] = (), quality: Optional[ImageQuality] = None) -> list[str]:
    """The review reasons of one prediction (empty: no review needed)."""
    out = []
    if confidence < threshold:
        out.append(f"{LOW_CONFIDENCE} ({confidence:.2f} < {threshold:.2f})")
    out += [u if u.startswith(UNLIKE_TRAINING) else f"{UNLIKE_TRAINING} ({u})" for u in unlike]
    out += [f"{EVIDENCE_CONFLICT}: {c}" for c in conflicts]
    if quality is not None and quality.is_low:
        out.append(f"{LOW_QUALITY} ({quality.score:.2f}: {', '.join(quality.problems)})")
    if image_note:
        out.append(f"{IMAGE_UNREADABLE}: {image_note}")
    return out


def reason_kind(reason: str) -> str:
    """Which of :data:`KINDS` a reason is ("" if none)."""
    return next((k for k in KINDS if reason.startswith(k)), "")
