"""Public result type, constants, size presets and the deterministic RNG / UID helpers of the generator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
from pydicom.uid import generate_uid

from SeqClassifierLib.labels import Plane, SequenceLabel

#: Vendors of prostate studies, in their default cycling order.
PROSTATE_VENDORS: tuple[str, ...] = ("SIEMENS", "GE", "PHILIPS")
#: Vendors of neuro studies, in their default cycling order ("SIEMENS" -- classic
#: syngo MR headers -- is accepted too when named explicitly).
NEURO_VENDORS: tuple[str, ...] = ("SIEMENS_XA", "GE", "PHILIPS", "UIH", "CANON")
#: Every vendor the generator knows (prostate studies: the first three only).
VENDORS: tuple[str, ...] = ("SIEMENS", "GE", "PHILIPS", "SIEMENS_XA", "UIH", "CANON")
#: Study kinds accepted by :func:`generate_studies`.
KINDS: tuple[str, ...] = ("prostate", "neuro")
#: Size presets accepted by :func:`generate_studies`.
SIZES: tuple[str, ...] = ("tiny", "small")
#: Name and columns of the label file written beside the studies.
LABELS_CSV = "labels.csv"
LABELS_COLUMNS: tuple[str, ...] = ("series_dir", "SeriesInstanceUID", "label", "SeriesDescription", "note", "family")
#: Columns of label files written before the ``family`` column (still recognised as ours).
LABELS_COLUMNS_V1: tuple[str, ...] = LABELS_COLUMNS[:5]
#: Every note written by this generator starts with this word; it is how an
#: existing ``labels.csv`` is recognised as ours.
_NOTE_PREFIX = "synthetic"
_UID_TAG = "seqclassifier-synth-v1"
_IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.8.498.1"
_IMPLEMENTATION_VERSION = "SEQCLS_SYNTH_1"

ProgressFn = Callable[[int, int], None]


# =============================================================================
# Public result type
# =============================================================================

@dataclass(frozen=True)
class SynthSeries:
    """One written series and its ground truth."""

    series_uid: str
    study_uid: str
    patient_id: str
    series_number: int
    description: str
    label: SequenceLabel
    plane: Plane
    vendor: str
    """One of :data:`VENDORS`: ``SIEMENS`` (syngo MR classic), ``GE``, ``PHILIPS``,
    ``SIEMENS_XA`` (Manufacturer "Siemens Healthineers", syngo MR XA, Enhanced MR),
    ``UIH`` or ``CANON`` (Manufacturer "CANON_MEC" or "TOSHIBA")."""
    series_dir: str
    """Folder holding the series' files, relative to the output folder (``/`` separated)."""
    n_files: int
    variant: str
    """Short tag of how the series was made (``t2_tra_tilted``, ``dwi_multib``,
    ``dce_4d``, ``dce_per_timepoint``, ``philips_enhanced``, ``mosaic``,
    ``misleading_description`` ...)."""
    family: str = ""
    """Vendor x protocol family, e.g. ``SIEMENS/dce_per_timepoint_no_timing`` or ``GE/fmri_epi``
    (for leave-one-protocol-family-out validation; never changed by a misleading name)."""


# =============================================================================
# Size presets
# =============================================================================

@dataclass(frozen=True)
class _Size:
    phantom_mm: float
    loc_matrix: int
    loc_per_plane: tuple[int, int]        # (majority plane, other planes)
    t2_matrix: tuple[int, ...]
    t2_ps: tuple[float, float]
    t2_tra_slices: tuple[int, int]
    t2_other_slices: tuple[int, int]
    t2_coverage: Optional[float]          # fixed stack extent (mm) or None: slices * spacing
    dwi_matrix: tuple[int, ...]
    dwi_fov: tuple[float, float]
    dwi_slices: tuple[int, int]
    dce_matrix: tuple[int, ...]
    dce_fov: tuple[float, float]
    dce_slices: tuple[int, int]
    dce_times: tuple[int, int]
    tra_coverage: Optional[float]         # DWI/DCE stack extent in tiny mode


_SIZE_SPECS: dict[str, _Size] = {
    "small": _Size(
        phantom_mm=1.5, loc_matrix=128, loc_per_plane=(5, 3),
        t2_matrix=(176, 192), t2_ps=(0.65, 0.8), t2_tra_slices=(17, 20),
        t2_other_slices=(14, 18), t2_coverage=None,
        dwi_matrix=(64, 80, 96), dwi_fov=(180.0, 240.0), dwi_slices=(15, 19),
        dce_matrix=(80, 96), dce_fov=(170.0, 220.0), dce_slices=(12, 16), dce_times=(6, 8),
        tra_coverage=None,
    ),
    "tiny": _Size(
        phantom_mm=3.0, loc_matrix=48, loc_per_plane=(2, 1),
        t2_matrix=(56, 64), t2_ps=(1.9, 2.3), t2_tra_slices=(4, 4),
        t2_other_slices=(3, 4), t2_coverage=48.0,
        dwi_matrix=(40, 48), dwi_fov=(190.0, 230.0), dwi_slices=(5, 5),
        dce_matrix=(40, 48), dce_fov=(180.0, 220.0), dce_slices=(4, 4), dce_times=(4, 4),
        tra_coverage=44.0,
    ),
}

_NEURO_SIZES: dict[str, dict[str, Any]] = {
    "small": dict(phantom_mm=1.5, loc_matrix=128, anat_matrix=(160, 192), anat_slices=(16, 18),
                  t1_slices=16, epi_matrix=(80, 96), dwi_slices=(14, 16), dti_slices=6,
                  fmri_slices=6, fmri_volumes=10, asl_slices=8, asl_pairs=3, fmap_slices=10),
    "tiny": dict(phantom_mm=3.0, loc_matrix=48, anat_matrix=(56, 64), anat_slices=(4, 4),
                 t1_slices=4, epi_matrix=(40, 48), dwi_slices=(4, 4), dti_slices=3,
                 fmri_slices=4, fmri_volumes=10, asl_slices=3, asl_pairs=2, fmap_slices=3),
}


def _study_rng(seed: int, study_index: int, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(study_index), int(stream), *[int(m) for m in more]])


def _norm_kinds(kinds: Any) -> list[str]:
    if isinstance(kinds, str):
        kinds = [kinds]
    out: list[str] = []
    for k in kinds:
        k = str(k).strip().lower()
        if k not in KINDS:
            raise ValueError(f"unknown study kind {k!r}; expected one of {', '.join(KINDS)}")
        if k not in out:
            out.append(k)
    if not out:
        raise ValueError("kinds must name at least one study kind")
    return out


def _size_spec(size: str) -> _Size:
    try:
        return _SIZE_SPECS[str(size).lower()]
    except KeyError:
        raise ValueError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}") from None


def _uid(seed: int, study_index: int, *what: Any) -> str:
    parts = [_UID_TAG, f"seed={seed}", f"study={study_index}"] + [f"{w}" for w in what]
    return str(generate_uid(entropy_srcs=["|".join(parts) + "|"]))


def _rint(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]
