"""The study plan: every series of a study with its geometry, names and sequence parameters (no pixels)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from SeqClassifierLib.labels import Plane, SequenceLabel
from SeqClassifierLib.synth.geometry import _Stack

@dataclass
class _SeriesPlan:
    """Everything needed to render and write one series."""

    kind: str                 # loc, t2, dwi, calc, adc, mosaic, dce, vfa, pd
    label: SequenceLabel
    plane: Plane
    description: str
    protocol: str
    variant: str
    note: str
    stacks: list[_Stack]
    params: dict[str, Any] = field(default_factory=dict)
    series_number: int = 0
    uid: str = ""
    enhanced: bool = False
    misleading: bool = False
    start_s: float = 0.0      # acquisition start, seconds after study start
    family: str = ""          # protocol family (labels.csv: vendor/family); default: the variant


@dataclass
class _StudyPlan:
    index: int
    seed: int
    vendor: str
    model: str
    field_strength: float
    patient_id: str
    patient_name: str
    study_uid: str
    frame_uid: str
    study_date: str
    study_time_s: float
    study_description: str
    software: str
    accession: str
    age: int
    weight: int
    height: float
    patient_position: str
    series: list[_SeriesPlan]
    opts: dict[str, Any]
