"""The review table's data, without Qt or Slicer.

:class:`ReviewRow` is one series as the module widget shows it (prediction
from the command line's result row, confirmation from the label store);
:func:`select_preset` picks the series to load for a preset;
:func:`confidence_color` and :func:`thumbnail_uint8` prepare what the table
draws.  Kept free of ``qt``/``slicer`` so it is tested with plain pytest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from SeqClassifierLib.records import ResultRow

PRESET_AXIAL_T2_HIGHB_DWI_ADC = "axial T2w + highest-b DWI + ADC"
PRESET_ALL_BUT_OTHER = "everything but OTHER"
PRESET_ALL = "everything"
PRESET_NONE = "nothing"
PRESETS = (PRESET_AXIAL_T2_HIGHB_DWI_ADC, PRESET_ALL_BUT_OTHER, PRESET_ALL, PRESET_NONE)

#: Confidence at and above which a prediction is shown green (amber below, red when flagged).
HIGH_CONFIDENCE = 0.90
COLOR_HIGH = "#2e7d32"
COLOR_MEDIUM = "#f9a825"
COLOR_LOW = "#c62828"
COLOR_NONE = "#9e9e9e"

_B_IN_TEXT = re.compile(r"(?:^|[^a-z0-9])b[-_ =]?(\d{2,4})(?![0-9])", re.IGNORECASE)


def _text(v: Any) -> str:
    return "" if v is None else str(getattr(v, "value", v))


@dataclass
class ReviewRow:
    """One series in the review table."""

    series_uid: str
    series_number: Optional[int] = None
    description: str = ""
    plane: str = "unknown"
    predicted_label: Optional[str] = None
    confidence: Optional[float] = None
    probabilities: dict = field(default_factory=dict)
    needs_review: bool = False
    review_reasons: list = field(default_factory=list)
    group: str = ""
    model: str = ""
    note: str = ""
    folder: str = ""
    patient_id: str = ""
    study_uid: str = ""
    study_date: str = ""
    n_files: int = 0
    b_values: list = field(default_factory=list)
    confirmed_label: Optional[str] = None
    confirmed_by: Optional[str] = None

    @property
    def label(self) -> Optional[str]:
        """Confirmed label when set, else the prediction (None when neither exists)."""
        return self.confirmed_label or self.predicted_label

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_label is not None

    @classmethod
    def from_result_row(cls, row: ResultRow, entry: Any = None) -> "ReviewRow":
        """From the classifier's result row, plus the store entry."""
        r = cls(
            series_uid=row.series_uid, series_number=row.series_number, description=row.description,
            plane=row.plane or "unknown", predicted_label=row.label, confidence=row.confidence,
            probabilities=dict(row.probabilities or {}), needs_review=row.needs_review,
            review_reasons=list(row.review_reasons), group=row.group, model=row.model, note=row.note,
            folder=row.folder, patient_id=row.patient_id, study_uid=row.study_uid,
            study_date=row.study_date, n_files=row.n_files, b_values=list(row.b_values))
        if entry is not None:
            r.apply_entry(entry)
        return r

    @classmethod
    def from_store_entry(cls, entry: Any) -> "ReviewRow":
        """From a :class:`~SeqClassifierLib.curation.label_store.LabelEntry` alone (cached prediction)."""
        r = cls(series_uid=entry.series_uid, series_number=entry.series_number,
                description=entry.description or "", plane=entry.plane or "unknown",
                predicted_label=entry.predicted_label, confidence=entry.confidence,
                probabilities=dict(entry.probabilities or {}), needs_review=bool(entry.needs_review),
                model=entry.model or "", note=entry.note or "", folder=entry.series_dir or "",
                patient_id=entry.patient_id or "", study_uid=entry.study_uid or "")
        r.apply_entry(entry)
        return r

    def apply_entry(self, entry: Any) -> None:
        self.confirmed_label = getattr(entry, "confirmed_label", None)
        self.confirmed_by = getattr(entry, "confirmed_by", None)

    @property
    def max_b_value(self) -> Optional[float]:
        """Highest b-value from the headers, else from the description (``b1400``), else None."""
        if self.b_values:
            return max(self.b_values)
        found = [float(m) for m in _B_IN_TEXT.findall(self.description or "")]
        return max(found) if found else None


def label_to_load(series_uid: str, row: Optional[ReviewRow], entry: Any = None,
                  overrides: Optional[Mapping[str, str]] = None) -> tuple[Optional[ReviewRow], Optional[str], bool]:
    """What a series is loaded as: (its row, label, whether a person confirmed that label).

    ``row`` is the table's row (None: build one from the label store ``entry``);
    ``overrides`` (SeriesInstanceUID -> label) wins over the row's label (the
    confirmed label, else the prediction).  "Confirmed" means the store holds a
    confirmed label equal to the one loaded: a label typed but not yet confirmed,
    or a caller's override that differs from the confirmed label, is not.
    """
    if row is None and entry is not None:
        row = ReviewRow.from_store_entry(entry)
    if overrides and series_uid in overrides:
        label = overrides[series_uid]
    else:
        label = row.label if row is not None else None
    confirmed = bool(entry is not None and getattr(entry, "confirmed_label", None) is not None
                     and entry.confirmed_label == label)
    return row, label, confirmed


def is_untrained(rows: Iterable[ReviewRow]) -> bool:
    """True when there are rows and none has a predicted label (no trained model)."""
    rows = list(rows)
    return bool(rows) and all(r.predicted_label is None for r in rows)


def select_preset(rows: Sequence[ReviewRow], preset: str) -> set[str]:
    """SeriesInstanceUIDs that a preset checks for loading (uses confirmed, else predicted labels).

    * ``axial T2w + highest-b DWI + ADC``: per study, every axial T2w, every
      ADC and the one DWI with the highest b-value (axial preferred; from the
      b-values, else a ``b1400``-like description, else the highest series number);
    * ``everything but OTHER``: every series with a label other than OTHER;
    * ``everything`` / ``nothing``.
    """
    if preset == PRESET_ALL:
        return {r.series_uid for r in rows}
    if preset == PRESET_NONE:
        return set()
    if preset == PRESET_ALL_BUT_OTHER:
        return {r.series_uid for r in rows if r.label is not None and r.label != "OTHER"}
    if preset != PRESET_AXIAL_T2_HIGHB_DWI_ADC:
        raise ValueError(f"unknown preset {preset!r}; choose one of: " + ", ".join(PRESETS))
    chosen: set[str] = set()
    studies: dict[tuple[str, str], list[ReviewRow]] = {}
    for r in rows:
        studies.setdefault((r.patient_id, r.study_uid), []).append(r)
    for study_rows in studies.values():
        for r in study_rows:
            if r.label == "T2w" and r.plane == "axial":
                chosen.add(r.series_uid)
            elif r.label == "ADC":
                chosen.add(r.series_uid)
        dwi = [r for r in study_rows if r.label == "DWI"]
        if dwi:
            axial = [r for r in dwi if r.plane == "axial"]
            pool = axial or dwi

            def key(r: ReviewRow):
                b = r.max_b_value
                return (b is not None, b if b is not None else -1.0,
                        r.series_number if r.series_number is not None else -1)

            chosen.add(max(pool, key=key).series_uid)
    return chosen


def confidence_color(confidence: Optional[float], needs_review: bool = False,
                     high: float = HIGH_CONFIDENCE) -> str:
    """Colour of the confidence cell: grey none, red flagged for review, green high, amber otherwise."""
    if confidence is None:
        return COLOR_NONE
    if needs_review:
        return COLOR_LOW
    return COLOR_HIGH if confidence >= high else COLOR_MEDIUM


def format_confidence(confidence: Optional[float]) -> str:
    return "" if confidence is None else f"{100.0 * confidence:.0f}%"


def thumbnail_uint8(image, size: int = 64):
    """A 2D image -> ``size`` x ``size`` uint8 (percentile window, aspect kept, black padding)."""
    import numpy as np

    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:  # colour or multi-channel: average
        img = img.mean(axis=-1)
    if img.ndim != 2 or img.size == 0:
        return np.zeros((size, size), dtype=np.uint8)
    img = np.where(np.isfinite(img), img, 0.0)
    lo, hi = np.percentile(img, [1.0, 99.0])
    scaled = np.zeros_like(img) if hi - lo < 1e-6 else np.clip((img - lo) / (hi - lo), 0.0, 1.0)
    h, w = scaled.shape
    scale = size / float(max(h, w))
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    rows = np.minimum((np.arange(nh) / scale).astype(int), h - 1)
    cols = np.minimum((np.arange(nw) / scale).astype(int), w - 1)
    small = scaled[rows][:, cols]
    out = np.zeros((size, size), dtype=np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = (small * 255.0 + 0.5).astype(np.uint8)
    return out


def status_text(rows: Sequence[ReviewRow], model_trained: Optional[bool], n_skipped: int = 0) -> str:
    """One line for the panel: how many series, how many need review, or that the model is untrained."""
    if model_trained is False or (model_trained is None and is_untrained(rows)):
        return ("Untrained model: no labels were predicted (no trained model is installed). "
                "Set each label by hand; confirmed labels are kept.")
    n = len(rows)
    n_review = sum(1 for r in rows if r.needs_review and not r.is_confirmed)
    n_confirmed = sum(1 for r in rows if r.is_confirmed)
    text = f"{n} series classified, {n_review} need review, {n_confirmed} confirmed"
    if n_skipped:
        text += f", {n_skipped} files skipped"
    return text + "."
