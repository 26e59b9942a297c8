"""The review table's data, without Qt or Slicer.

:class:`ReviewRow` is one series as the module widget shows it (prediction
from the command line's result row, confirmation from the label store);
:func:`select_preset` picks the series to load for a preset;
:func:`confidence_color` and :func:`thumbnail_uint8` prepare what the table
draws.  Kept free of ``qt``/``slicer`` so it is tested with plain pytest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

from SeqClassifierLib.app.thumbnails import thumbnail_uint8

__all__ = ["ReviewRow", "thumbnail_uint8"]  # thumbnail_uint8: re-exported for the panel and tests
from SeqClassifierLib.records import ResultRow

#: Preset keys (stored in the parameter node; the panel shows :data:`PRESET_TEXT`, translated).
PRESET_AXIAL_T2_HIGHB_DWI_ADC = "t2_dwi_adc"
PRESET_ALL_BUT_OTHER = "all_but_other"
PRESET_ALL = "all"
PRESET_NONE = "none"
PRESETS = (PRESET_AXIAL_T2_HIGHB_DWI_ADC, PRESET_ALL_BUT_OTHER, PRESET_ALL, PRESET_NONE)
PRESET_TEXT = {
    PRESET_AXIAL_T2_HIGHB_DWI_ADC: "axial T2w + highest-b DWI + ADC",
    PRESET_ALL_BUT_OTHER: "everything but OTHER",
    PRESET_ALL: "everything",
    PRESET_NONE: "nothing",
}

#: Confidence at and above which a prediction is shown green (amber below, red when flagged).
HIGH_CONFIDENCE = 0.90
COLOR_HIGH = "#2e7d32"
COLOR_MEDIUM = "#f9a825"
COLOR_LOW = "#c62828"
COLOR_NONE = "#9e9e9e"

_B_IN_TEXT = re.compile(r"(?:^|[^a-z0-9])b[-_ =]?(\d{2,4})(?![0-9])", re.IGNORECASE)


def _text(v: Any) -> str:
    return "" if v is None else str(getattr(v, "value", v))


def _result_field(name: str, attr: Optional[str] = None) -> property:
    attr = attr or name
    return property(lambda self: getattr(self.result, attr), doc=f"``ResultRow.{attr}`` of the classifier's row.")


@dataclass
class ReviewRow:
    """One series in the review table: the classifier's :class:`ResultRow`, the person's
    confirmation from the label store, and what the panel draws (thumbnail)."""

    result: ResultRow
    confirmed_label: Optional[str] = None
    confirmed_by: Optional[str] = None
    #: 2D uint8 thumbnail sent by the classifier process (None: no picture).
    thumbnail: Any = None

    series_uid = _result_field("series_uid")
    series_number = _result_field("series_number")
    description = _result_field("description")
    predicted_label = _result_field("predicted_label", "label")
    confidence = _result_field("confidence")
    needs_review = _result_field("needs_review")
    review_reasons = _result_field("review_reasons")
    group = _result_field("group")
    model = _result_field("model")
    note = _result_field("note")
    folder = _result_field("folder")
    patient_id = _result_field("patient_id")
    study_uid = _result_field("study_uid")
    study_date = _result_field("study_date")
    n_files = _result_field("n_files")
    b_values = _result_field("b_values")

    @property
    def key(self):
        """The series' :class:`~SeqClassifierLib.records.SeriesKey` (patient, study, series UID)."""
        return self.result.key

    @property
    def plane(self) -> str:
        return self.result.plane or "unknown"

    @property
    def probabilities(self) -> dict:
        return dict(self.result.probabilities or {})

    @property
    def label(self) -> Optional[str]:
        """Confirmed label when set, else the prediction (None when neither exists)."""
        return self.confirmed_label or self.predicted_label

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_label is not None

    @property
    def awaits_review(self) -> bool:
        """Flagged for review and not yet confirmed by a person."""
        return bool(self.needs_review) and not self.is_confirmed

    @classmethod
    def from_result_row(cls, row: ResultRow, entry: Any = None, thumbnail: Any = None) -> "ReviewRow":
        """From the classifier's result row, plus the store entry."""
        r = cls(result=row, thumbnail=thumbnail)
        if entry is not None:
            r.apply_entry(entry)
        return r

    @classmethod
    def from_store_entry(cls, entry: Any) -> "ReviewRow":
        """From a :class:`~SeqClassifierLib.curation.label_store.LabelEntry` alone (cached prediction)."""
        result = ResultRow(
            series_uid=entry.series_uid, series_number=entry.series_number,
            description=entry.description or "", plane=entry.plane or "unknown",
            label=entry.predicted_label, confidence=entry.confidence,
            probabilities=dict(entry.probabilities) if entry.probabilities else None,
            needs_review=bool(entry.needs_review), review_reasons=list(getattr(entry, "review_reasons", []) or []),
            group=getattr(entry, "group", "") or "", model=entry.model or "", note=entry.note or "",
            folder=entry.series_dir or "", patient_id=entry.patient_id or "", study_uid=entry.study_uid or "")
        return cls.from_result_row(result, entry)

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

    A row that awaits review (``needs_review`` and not confirmed) is never ticked.
    ``preset``: a key of :data:`PRESETS` (or an Enum whose value is one).
    """
    preset = getattr(preset, "value", preset)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of: " + ", ".join(PRESETS))
    rows = [r for r in rows if not r.awaits_review]
    if preset == PRESET_ALL:
        return {r.series_uid for r in rows}
    if preset == PRESET_NONE:
        return set()
    if preset == PRESET_ALL_BUT_OTHER:
        return {r.series_uid for r in rows if r.label is not None and r.label != "OTHER"}
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


def review_text(row: ReviewRow) -> str:
    """The Review column: who confirmed, else the reasons for review (``; ``-joined), else ''."""
    if row.is_confirmed:
        return "confirmed" + (f" by {row.confirmed_by}" if row.confirmed_by else "")
    if row.needs_review:
        return "; ".join(row.review_reasons) or "needs review"
    return ""


def review_tooltip(row: ReviewRow) -> str:
    """The Review column's tooltip: one reason a line (also for a confirmed row)."""
    return "\n".join(row.review_reasons) if row.review_reasons else review_text(row)


def format_confidence(confidence: Optional[float]) -> str:
    return "" if confidence is None else f"{100.0 * confidence:.0f}%"


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
