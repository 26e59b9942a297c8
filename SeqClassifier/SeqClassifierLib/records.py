"""Typed records passed between discovery, prediction, output and the Slicer module.

They are plain dataclasses of built-in types so that they serialise to JSON
(:func:`dataclasses.asdict`) and cross process boundaries unchanged.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple, Optional

from SeqClassifierLib.labels import CLASS_NAMES, Plane, SequenceLabel


class SeriesKey(NamedTuple):
    """Who a series is: (PatientID, StudyInstanceUID, SeriesInstanceUID).

    Discovery groups files by these three, so a SeriesInstanceUID repeated under
    another patient or study is another series.  Every map, store and resume file
    of SeqClassifier (study context, classifier, label store, thumbnails, the
    streamed output's resume, ``sort``, the Slicer session) is keyed by it, never
    by the UID alone.  A missing PatientID / StudyInstanceUID is "".
    """

    patient_id: str
    study_uid: str
    series_uid: str

    @classmethod
    def of(cls, obj: Any) -> "SeriesKey":
        """The key of anything carrying ``patient_id``, ``study_uid`` and ``series_uid``
        (a record, a row, a label store entry, or a dict with those fields)."""
        if isinstance(obj, SeriesKey):
            return obj
        get = obj.get if isinstance(obj, Mapping) else (lambda k, d=None: getattr(obj, k, d))
        return cls(str(get("patient_id", "") or ""), str(get("study_uid", "") or ""),
                   str(get("series_uid", "") or ""))

    @classmethod
    def of_uid(cls, uid: str) -> "SeriesKey":
        """The key of a series known by its UID only (a training CSV row, a label given by UID):
        patient and study "" -- :func:`lookup` lets it stand for that UID under any patient and study."""
        return cls("", "", str(uid))

    @classmethod
    def coerce(cls, value: Any) -> "SeriesKey":
        """A SeriesKey, a (patient, study, series) sequence, or a bare UID (:meth:`of_uid`)."""
        if isinstance(value, SeriesKey):
            return value
        if isinstance(value, str):
            return cls.of_uid(value)
        if isinstance(value, (tuple, list)) and len(value) == 3:
            return cls(*(str(v or "") for v in value))
        return cls.of(value)

    @property
    def uid_only(self) -> bool:
        """Neither patient nor study is known."""
        return not self.patient_id and not self.study_uid

    def to_dict(self) -> dict[str, str]:
        return {"patient_id": self.patient_id, "study_uid": self.study_uid, "series_uid": self.series_uid}

    def short(self) -> str:
        """For messages: the UID, with the patient and study when they are known."""
        extra = ", ".join(f"{k} {v}" for k, v in (("patient", self.patient_id), ("study", self.study_uid)) if v)
        return f"{self.series_uid} ({extra})" if extra else self.series_uid


def lookup(mapping: Mapping[SeriesKey, Any], key: SeriesKey, default: Any = None) -> Any:
    """``mapping[key]``; else the value recorded for the same UID without patient and study
    (:meth:`SeriesKey.of_uid`: it stands for that UID under any patient and study); else ``default``.

    A value recorded under another patient or study is never returned.
    """
    if key in mapping:
        return mapping[key]
    bare = SeriesKey.of_uid(key.series_uid)
    return mapping.get(bare, default) if not key.uid_only else default


@dataclass(frozen=True)
class FrameRef:
    """One 2D image of a series: a file, and the frame inside it (0 for single-frame)."""

    path: str
    frame: int = 0
    #: Position of the slice along the series' slice normal (mm); None if unknown.
    location: Optional[float] = None
    #: b-value of this image (s/mm^2) when the series is diffusion-weighted.
    b_value: Optional[float] = None
    #: Temporal position (1-based) for dynamic series; None if not dynamic.
    temporal_position: Optional[int] = None
    #: Number of tiles when this image is a Siemens mosaic; 0 otherwise.
    mosaic_tiles: int = 0


@dataclass
class SeriesRecord:
    """One MR series found on disk, with what its headers say.

    ``files`` holds every file of the series in slice order; ``frames`` every
    2D image (several per file for enhanced multi-frame objects), ordered by
    b-value / temporal position and then by position along the slice normal.
    ``header`` holds the first image's header values by keyword (strings,
    numbers and lists only) for the feature extractor.
    """

    series_uid: str
    study_uid: str = ""
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    series_number: Optional[int] = None
    description: str = ""
    protocol_name: str = ""
    modality: str = "MR"
    manufacturer: str = ""
    sop_class_uid: str = ""
    files: list[str] = field(default_factory=list)
    frames: list[FrameRef] = field(default_factory=list)
    plane: Plane = Plane.UNKNOWN
    #: Unit slice normal (x, y, z) in patient coordinates; None if unknown.
    normal: Optional[tuple[float, float, float]] = None
    #: Angle (degrees) between the slice normal and the nearest patient axis.
    obliquity_deg: Optional[float] = None
    b_values: list[float] = field(default_factory=list)
    temporal_positions: int = 1
    is_multiframe: bool = False
    is_mosaic: bool = False
    header: dict[str, Any] = field(default_factory=dict)
    #: Problems that did not stop the series (e.g. one unreadable slice).
    warnings: list[str] = field(default_factory=list)

    @property
    def key(self) -> SeriesKey:
        """The series' identity (patient, study, series UID)."""
        return SeriesKey(self.patient_id or "", self.study_uid or "", self.series_uid)

    @property
    def n_files(self) -> int:
        return len(self.files)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["plane"] = self.plane.value
        d["n_files"] = self.n_files
        d["n_frames"] = self.n_frames
        return d


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not used, and why (never fatal to a run)."""

    path: str
    reason: str


@dataclass
class Discovery:
    """Result of :func:`~SeqClassifierLib.dicom.discovery.discover_series` (defined here, with the
    records it holds, so that a process given a discovery needs no DICOM reader to use it)."""

    series: list[SeriesRecord]
    skipped: list[SkippedFile]
    n_files: int

    def by_uid(self) -> dict[str, SeriesRecord]:
        """Records by SeriesInstanceUID; a UID found under several patients or studies
        (see :func:`~SeqClassifierLib.dicom.discovery.group_headers`) keeps its last record here --
        use :meth:`by_key` for all."""
        return {s.series_uid: s for s in self.series}

    def by_key(self) -> dict[SeriesKey, SeriesRecord]:
        """Records by (PatientID, StudyInstanceUID, SeriesInstanceUID): every record, once."""
        return {s.key: s for s in self.series}


@dataclass
class Prediction:
    """The classifier's answer for one series.

    ``label`` is None when no trained model is available: SeqClassifier never
    invents a label.  ``probabilities`` maps every class name (in
    :data:`~SeqClassifierLib.labels.CLASS_NAMES` order) to its probability.
    """

    series_uid: str
    label: Optional[SequenceLabel]
    confidence: Optional[float]
    probabilities: dict[str, float]
    needs_review: bool
    model: str
    #: Why the series needs review or has no label (empty when confident).
    note: str = ""
    #: Each reason for review on its own (low confidence, unlike training data, evidence conflict, ...).
    review_reasons: list[str] = field(default_factory=list)
    #: The series' study-context group in words (inputs.study.SeriesContext.group).
    group: str = ""
    #: Quality score in [0, 1] of the slice the model saw (inputs.quality); None without an image.
    image_quality: Optional[float] = None
    #: What the site memory changed (SeqClassifierLib.adaptation), e.g. ``{"label_changed": False,
    #: "flag_changed": True, "neighbours": 3, ...}``; None when no site memory was used.
    adapted: Optional[dict[str, Any]] = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "series_uid": self.series_uid,
            "label": self.label.value if self.label is not None else None,
            "confidence": self.confidence,
            "probabilities": {k: self.probabilities.get(k) for k in CLASS_NAMES},
            "needs_review": self.needs_review,
            "model": self.model,
            "note": self.note,
            "review_reasons": list(self.review_reasons),
            "group": self.group,
            "image_quality": self.image_quality,
        }
        if self.adapted is not None:  # only with a site memory: the shipped rows are unchanged
            out["adapted"] = dict(self.adapted)
        return out


#: Version of the result row's fields; bump it when a field is added, renamed or changes meaning.
ROW_VERSION = 2


def _common_folder(files: list[str]) -> str:
    if not files:
        return ""
    folders = {os.path.dirname(f) for f in files}
    return folders.pop() if len(folders) == 1 else os.path.commonpath(sorted(folders))


@dataclass
class ResultRow:
    """One classified series: the single row that goes from the classifier to every output.

    The command line's table / CSV / JSON / JSON lines, the label store, ``sort``
    and the Slicer review panel all take this record (``to_dict`` /
    ``from_dict`` carry it across processes).  ``files`` travels in memory for
    ``sort`` and is left out of the written formats.
    """

    series_uid: str
    patient_id: str = ""
    study_uid: str = ""
    study_date: str = ""
    series_number: Optional[int] = None
    description: str = ""
    n_files: int = 0
    plane: str = Plane.UNKNOWN.value
    label: Optional[str] = None
    confidence: Optional[float] = None
    #: Every class's probability (CLASS_NAMES order); None without a trained model.
    probabilities: Optional[dict[str, float]] = None
    needs_review: bool = False
    #: Why the series needs review, one short text each (empty when it does not).
    review_reasons: list[str] = field(default_factory=list)
    #: The series' study-context group, e.g. ``dynamic, 70 time points`` (empty when alone).
    group: str = ""
    #: Quality score in [0, 1] of the slice the model saw; None without an image.
    image_quality: Optional[float] = None
    b_values: list[float] = field(default_factory=list)
    manufacturer: str = ""
    model: str = ""
    note: str = ""
    folder: str = ""
    files: list[str] = field(default_factory=list, repr=False)
    version: int = ROW_VERSION
    #: What the site memory changed (see :attr:`Prediction.adapted`); None (and not written) without one.
    adapted: Optional[dict[str, Any]] = None

    #: Fields written by the output formats, in order (``files`` stays in memory).
    FIELDS = ("patient_id", "study_uid", "study_date", "series_number", "series_uid", "description",
              "n_files", "plane", "label", "confidence", "probabilities", "needs_review", "review_reasons",
              "group", "image_quality", "b_values", "manufacturer", "model", "note", "folder")

    @property
    def key(self) -> SeriesKey:
        """The series' identity (patient, study, series UID)."""
        return SeriesKey(self.patient_id or "", self.study_uid or "", self.series_uid)

    @classmethod
    def from_series(cls, record: SeriesRecord, prediction: Prediction, group: str = "") -> "ResultRow":
        """The row of one discovered series and its prediction."""
        if prediction.series_uid != record.series_uid:
            raise ValueError(f"prediction for {prediction.series_uid} paired with series {record.series_uid}")
        return cls(
            series_uid=record.series_uid, patient_id=record.patient_id, study_uid=record.study_uid,
            study_date=record.study_date, series_number=record.series_number, description=record.description,
            n_files=record.n_files, plane=record.plane.value,
            label=prediction.label.value if prediction.label is not None else None,
            confidence=prediction.confidence,
            probabilities=({k: prediction.probabilities.get(k) for k in CLASS_NAMES}
                           if prediction.probabilities else None),
            needs_review=prediction.needs_review, review_reasons=list(prediction.review_reasons),
            group=group or prediction.group, image_quality=prediction.image_quality, b_values=list(record.b_values), manufacturer=record.manufacturer,
            model=prediction.model, note=prediction.note, folder=_common_folder(record.files),
            files=list(record.files),
            adapted=dict(prediction.adapted) if prediction.adapted is not None else None)

    def to_dict(self, with_files: bool = False) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.FIELDS}
        d["probabilities"] = dict(self.probabilities) if self.probabilities is not None else None
        d["review_reasons"] = list(self.review_reasons)
        d["b_values"] = list(self.b_values)
        d["version"] = self.version
        if self.adapted is not None:
            d["adapted"] = dict(self.adapted)
        if with_files:
            d["files"] = list(self.files)
        return d

    @classmethod
    def from_dict(cls, data: Any) -> "ResultRow":
        """A row from its dict form, every field checked by type (ValueError naming the field)."""
        if not isinstance(data, dict):
            raise ValueError(f"result row is not an object: {type(data).__name__}")
        uid = data.get("series_uid")
        if not isinstance(uid, str) or not uid:
            raise ValueError("result row without series_uid")

        def text(key: str) -> str:
            v = data.get(key)
            if v is None:
                return ""
            if not isinstance(v, (str, int, float)):
                raise ValueError(f"result row {uid}: {key} is not text")
            return str(getattr(v, "value", v))

        def opt_float(key: str) -> Optional[float]:
            v = data.get(key)
            if v is None or v == "":
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                raise ValueError(f"result row {uid}: {key} is not a number")
            return float(v)

        number = data.get("series_number")
        if number in (None, ""):
            number = None
        elif isinstance(number, bool) or not isinstance(number, (int, float, str)):
            raise ValueError(f"result row {uid}: series_number is not a number")
        else:
            number = int(float(number))
        probs = data.get("probabilities")
        if probs is not None and not isinstance(probs, dict):
            raise ValueError(f"result row {uid}: probabilities is not an object")
        label = data.get("label")
        if label not in (None, ""):
            label = SequenceLabel.parse(str(label)).value  # ValueError on an unknown label
        else:
            label = None
        lists = {}
        for key in ("review_reasons", "b_values", "files"):
            v = data.get(key) or []
            if isinstance(v, str) or not isinstance(v, (list, tuple)):
                raise ValueError(f"result row {uid}: {key} is not a list")
            lists[key] = v
        return cls(
            series_uid=uid, patient_id=text("patient_id"), study_uid=text("study_uid"),
            study_date=text("study_date"), series_number=number, description=text("description"),
            n_files=int(data.get("n_files") or 0), plane=text("plane") or Plane.UNKNOWN.value, label=label,
            confidence=opt_float("confidence"),
            probabilities=None if probs is None else {str(k): (None if v is None else float(v))
                                                      for k, v in probs.items()},
            needs_review=bool(data.get("needs_review", False)),
            review_reasons=[str(r) for r in lists["review_reasons"]], group=text("group"),
            image_quality=opt_float("image_quality"),
            b_values=[float(b) for b in lists["b_values"] if b is not None], manufacturer=text("manufacturer"),
            model=text("model"), note=text("note"), folder=text("folder"),
            files=[str(f) for f in lists["files"]],
            version=int(data.get("version") or ROW_VERSION),
            adapted=dict(data["adapted"]) if isinstance(data.get("adapted"), dict) else None)
