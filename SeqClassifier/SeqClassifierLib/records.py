"""Typed records passed between discovery, prediction, output and the Slicer module.

They are plain dataclasses of built-in types so that they serialise to JSON
(:func:`dataclasses.asdict`) and cross process boundaries unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from SeqClassifierLib.labels import CLASS_NAMES, Plane, SequenceLabel


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "series_uid": self.series_uid,
            "label": self.label.value if self.label is not None else None,
            "confidence": self.confidence,
            "probabilities": {k: self.probabilities.get(k) for k in CLASS_NAMES},
            "needs_review": self.needs_review,
            "model": self.model,
            "note": self.note,
        }
