"""The classes SeqClassifier assigns, and the image plane of a series.

Label definitions follow ``shared/data/README.md`` of the project: the plane is
a separate attribute derived from ImageOrientationPatient, never part of the
label.
"""

from __future__ import annotations

import enum


class SequenceLabel(str, enum.Enum):
    """What an MR series of a prostate study is."""

    T2w = "T2w"
    """T2-weighted turbo/fast spin-echo images in any plane (axial, sagittal, coronal)."""

    DWI = "DWI"
    """Diffusion-weighted images: acquired b-value images (single- or multi-b),
    trace-weighted, calculated (synthetic) high b-value, raw multi-direction
    including Siemens mosaic."""

    ADC = "ADC"
    """Apparent diffusion coefficient maps (values in 10^-6 mm^2/s)."""

    DCE = "DCE"
    """T1-weighted dynamic series acquired during contrast injection, either one
    4D series or one series per time point."""

    OTHER = "OTHER"
    """Everything else: localizers/scouts (even when T2-weighted), pre-contrast
    T1 maps (variable flip angle), proton-density references, FA and other
    parametric maps, calibration scans, T1w/FLAIR/other sequences."""

    @classmethod
    def parse(cls, text: str) -> "SequenceLabel":
        """Parse a label case-insensitively (``t2w``, ``T2W``, ``adc`` ...)."""
        key = str(text).strip().lower()
        for member in cls:
            if member.value.lower() == key:
                return member
        raise ValueError(
            f"unknown sequence label {text!r}; expected one of "
            + ", ".join(m.value for m in cls)
        )


#: The class order used by every model output and probability vector.
CLASSES: tuple[SequenceLabel, ...] = (
    SequenceLabel.T2w,
    SequenceLabel.DWI,
    SequenceLabel.ADC,
    SequenceLabel.DCE,
    SequenceLabel.OTHER,
)
CLASS_NAMES: tuple[str, ...] = tuple(c.value for c in CLASSES)


class Plane(str, enum.Enum):
    """Nearest anatomical plane of a series, from its slice normal."""

    AXIAL = "axial"
    """Slice normal closest to the patient's head-foot (z) axis."""

    SAGITTAL = "sagittal"
    """Slice normal closest to the patient's left-right (x) axis."""

    CORONAL = "coronal"
    """Slice normal closest to the patient's anterior-posterior (y) axis."""

    UNKNOWN = "unknown"
    """ImageOrientationPatient missing or malformed."""
