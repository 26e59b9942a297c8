"""Every DICOM attribute SeqClassifier reads, declared once (like pydicom's ``datadict``).

One row per attribute: its keyword, tag, how its value is kept (:class:`Kind`),
whether discovery reads it from every header, whether it is copied into
``SeriesRecord.header`` for the features, where an enhanced multi-frame object
keeps it (functional-group macro), the optional attribute group an export may
lack it with (:mod:`SeqClassifierLib.inputs.attributes`) and the numeric
feature made of it.  Generated from :data:`ATTRIBUTES`:

* :mod:`.tags` -- the constants (``T.ECHO_TIME``), :data:`~.tags.HEADER_TAGS`;
* :mod:`.header` -- the header fields, list / number fields, enhanced fields;
* :mod:`SeqClassifierLib.inputs.attributes` -- each group's header keys;
* :mod:`SeqClassifierLib.inputs.features` -- the ``num:*`` / ``miss:*`` features
  of header attributes, so the feature names (which a model card stores) follow.

Adding an attribute to the classifier's input is adding a row here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["Kind", "NumericFeature", "Attribute", "ATTRIBUTES", "constant_name", "by_keyword"]


class Kind:
    """How a value is kept: the decoding :mod:`.header` applies (and what the fast reader must keep)."""

    UID = "uid"            # text identifier, not copied as a header field
    TEXT = "text"          # one text value
    LIST = "list"          # backslash-separated code strings, upper-cased (ImageType, ScanOptions ...)
    NUMBER = "number"      # the first value as a finite float
    SPACING = "spacing"    # exactly two finite floats (PixelSpacing)
    INTEGER = "integer"    # an integer (counts, numbers)
    SEQUENCE = "sequence"  # a sequence (functional groups, macros)
    BINARY = "binary"      # bytes (pixel data, private blocks, CSA headers)


def _log1p(v: float) -> float:
    return math.log1p(max(v, 0.0))


@dataclass(frozen=True)
class NumericFeature:
    """The ``num:<short>`` feature (and its ``miss:<short>`` flag) of a numeric header attribute."""

    short: str
    scale: Callable[[float], float]
    description: str
    #: Position among the numeric features (those derived from the record interleave, see features.py).
    order: float

    @property
    def name(self) -> str:
        return f"num:{self.short}"


@dataclass(frozen=True)
class Attribute:
    keyword: str
    #: (group << 16) | element
    tag: int
    kind: str
    #: Read from every file header (part of HEADER_TAGS).
    read: bool = True
    #: Copied into ``SeriesRecord.header`` under ``keyword``.
    header: bool = False
    #: Enhanced multi-frame: (macro sequence keyword, keyword inside it) in the shared / first per-frame groups.
    enhanced: Optional[tuple[str, str]] = None
    #: Optional attribute group (inputs.attributes) that removes this header key; "" for none.
    group: str = ""
    feature: Optional[NumericFeature] = None
    #: Constant name in :mod:`.tags` when it is not the keyword in upper snake case.
    name: str = ""


def _tag(group: int, element: int) -> int:
    return (group << 16) | element


A = Attribute
N = Kind
F = NumericFeature

#: The table.  Header fields come first, in the order they are copied into ``SeriesRecord.header``.
ATTRIBUTES: tuple[Attribute, ...] = (
    # -- copied into SeriesRecord.header (feature extractor, study context) ------------------------------
    A("ImageType", _tag(0x0008, 0x0008), N.LIST, header=True, group="image_type",
      enhanced=("MRImageFrameTypeSequence", "FrameType")),
    A("ScanningSequence", _tag(0x0018, 0x0020), N.LIST, header=True, group="sequence"),
    A("SequenceVariant", _tag(0x0018, 0x0021), N.LIST, header=True, group="sequence"),
    A("ScanOptions", _tag(0x0018, 0x0022), N.LIST, header=True, group="sequence"),
    A("MRAcquisitionType", _tag(0x0018, 0x0023), N.TEXT, header=True, group="sequence"),
    A("SequenceName", _tag(0x0018, 0x0024), N.TEXT, header=True, group="names"),
    A("PulseSequenceName", _tag(0x0018, 0x9005), N.TEXT, header=True, group="names"),
    A("EchoPulseSequence", _tag(0x0018, 0x9008), N.TEXT, header=True, group="sequence"),
    A("EchoTime", _tag(0x0018, 0x0081), N.NUMBER, header=True, enhanced=("MREchoSequence", "EffectiveEchoTime"),
      feature=F("te", lambda v: _log1p(v) / 2.0, "log1p(EchoTime ms)/2", 10)),
    A("RepetitionTime", _tag(0x0018, 0x0080), N.NUMBER, header=True, enhanced=("MRTimingAndRelatedParametersSequence",
                                                                             "RepetitionTime"),
      feature=F("tr", lambda v: _log1p(v) / 3.0, "log1p(RepetitionTime ms)/3", 20)),
    A("InversionTime", _tag(0x0018, 0x0082), N.NUMBER, header=True, group="inversion_etl",
      feature=F("ti", lambda v: _log1p(v) / 3.0, "log1p(InversionTime ms)/3", 30)),
    A("FlipAngle", _tag(0x0018, 0x1314), N.NUMBER, header=True, group="flip_angle",
      enhanced=("MRTimingAndRelatedParametersSequence", "FlipAngle"),
      feature=F("flip", lambda v: v / 90.0, "FlipAngle deg / 90", 40)),
    A("EchoTrainLength", _tag(0x0018, 0x0091), N.NUMBER, header=True, group="inversion_etl",
      enhanced=("MRTimingAndRelatedParametersSequence", "EchoTrainLength"),
      feature=F("etl", lambda v: _log1p(v) / 2.0, "log1p(EchoTrainLength)/2", 50)),
    A("ContrastBolusAgent", _tag(0x0018, 0x0010), N.TEXT, header=True, group="contrast_timing"),
    A("SliceThickness", _tag(0x0018, 0x0050), N.NUMBER, header=True, enhanced=("PixelMeasuresSequence",
                                                                             "SliceThickness"),
      feature=F("thick", lambda v: _log1p(v), "log1p(SliceThickness mm)", 60)),
    A("SpacingBetweenSlices", _tag(0x0018, 0x0088), N.NUMBER, header=True,
      enhanced=("PixelMeasuresSequence", "SpacingBetweenSlices"),
      feature=F("spacing", lambda v: _log1p(abs(v)), "log1p(|SpacingBetweenSlices| mm)", 70)),
    A("PixelSpacing", _tag(0x0028, 0x0030), N.SPACING, header=True, enhanced=("PixelMeasuresSequence", "PixelSpacing"),
      feature=F("pixel", lambda v: _log1p(v), "log1p(PixelSpacing mm)", 80)),
    A("Rows", _tag(0x0028, 0x0010), N.NUMBER, header=True, feature=F("rows", lambda v: _log1p(v) / 3.0,
                                                                      "log1p(Rows)/3", 90)),
    A("Columns", _tag(0x0028, 0x0011), N.NUMBER, header=True, feature=F("cols", lambda v: _log1p(v) / 3.0,
                                                                         "log1p(Columns)/3", 100)),
    A("MagneticFieldStrength", _tag(0x0018, 0x0087), N.NUMBER, header=True, group="field_strength",
      feature=F("field", lambda v: v / 3.0 if v < 20 else v / 30000.0, "field strength T / 3 (gauss handled)", 140)),
    A("NumberOfTemporalPositions", _tag(0x0020, 0x0105), N.NUMBER, header=True, group="contrast_timing"),
    A("TriggerTime", _tag(0x0018, 0x1060), N.NUMBER, header=True, group="contrast_timing"),
    A("ManufacturerModelName", _tag(0x0008, 0x1090), N.TEXT, header=True, group="manufacturer"),
    A("RescaleSlope", _tag(0x0028, 0x1053), N.NUMBER, header=True,
      enhanced=("PixelValueTransformationSequence", "RescaleSlope")),
    A("RescaleIntercept", _tag(0x0028, 0x1052), N.NUMBER, header=True,
      enhanced=("PixelValueTransformationSequence", "RescaleIntercept")),
    # times and acquisition number: the study-context stage orders a study's series in time
    A("SeriesTime", _tag(0x0008, 0x0031), N.TEXT, header=True, group="times"),
    A("AcquisitionTime", _tag(0x0008, 0x0032), N.TEXT, header=True, group="times"),
    A("ContentTime", _tag(0x0008, 0x0033), N.TEXT, header=True, group="times"),
    A("AcquisitionNumber", _tag(0x0020, 0x0012), N.NUMBER, header=True),
    # -- read into FileHeader's own fields ----------------------------------------------------------------
    A("SOPClassUID", _tag(0x0008, 0x0016), N.UID),
    A("SOPInstanceUID", _tag(0x0008, 0x0018), N.UID),
    A("StudyDate", _tag(0x0008, 0x0020), N.TEXT),
    A("Modality", _tag(0x0008, 0x0060), N.TEXT),
    A("Manufacturer", _tag(0x0008, 0x0070), N.TEXT),
    A("StudyDescription", _tag(0x0008, 0x1030), N.TEXT),
    A("SeriesDescription", _tag(0x0008, 0x103E), N.TEXT),
    A("PatientName", _tag(0x0010, 0x0010), N.TEXT),
    A("PatientID", _tag(0x0010, 0x0020), N.TEXT),
    A("ProtocolName", _tag(0x0018, 0x1030), N.TEXT),
    A("ContrastBolusStartTime", _tag(0x0018, 0x1042), N.TEXT),
    A("AcquisitionMatrix", _tag(0x0018, 0x1310), N.INTEGER),
    A("DiffusionBValue", _tag(0x0018, 0x9087), N.NUMBER),
    A("StudyInstanceUID", _tag(0x0020, 0x000D), N.UID),
    A("SeriesInstanceUID", _tag(0x0020, 0x000E), N.UID),
    A("SeriesNumber", _tag(0x0020, 0x0011), N.INTEGER),
    A("InstanceNumber", _tag(0x0020, 0x0013), N.INTEGER),
    A("ImagePositionPatient", _tag(0x0020, 0x0032), N.NUMBER),
    A("ImageOrientationPatient", _tag(0x0020, 0x0037), N.NUMBER),
    A("TemporalPositionIdentifier", _tag(0x0020, 0x0100), N.INTEGER),
    A("SliceLocation", _tag(0x0020, 0x1041), N.NUMBER),
    A("SamplesPerPixel", _tag(0x0028, 0x0002), N.INTEGER),
    A("NumberOfFrames", _tag(0x0028, 0x0008), N.INTEGER),
    A("BitsAllocated", _tag(0x0028, 0x0100), N.INTEGER),
    A("SharedFunctionalGroupsSequence", _tag(0x5200, 0x9229), N.SEQUENCE, name="SHARED_FUNCTIONAL_GROUPS"),
    A("PerFrameFunctionalGroupsSequence", _tag(0x5200, 0x9230), N.SEQUENCE, name="PER_FRAME_FUNCTIONAL_GROUPS"),
    # -- private (element numbers of the usual creator block 0x10; creators and decoding in .vendors) -----
    A("SiemensCreator", _tag(0x0019, 0x0010), N.TEXT),
    A("SiemensBValue", _tag(0x0019, 0x100C), N.BINARY),
    A("SiemensMosaicImages", _tag(0x0019, 0x100A), N.BINARY),   # NumberOfImagesInMosaic
    A("GECreator", _tag(0x0043, 0x0010), N.TEXT, name="GE_CREATOR"),
    A("GEBValue", _tag(0x0043, 0x1039), N.BINARY, name="GE_B_VALUE"),  # slop_int_6..9
    A("PhilipsCreator", _tag(0x2001, 0x0010), N.TEXT),
    A("PhilipsBValue", _tag(0x2001, 0x1003), N.BINARY),
    A("SiemensCSAImageHeader", _tag(0x0029, 0x1010), N.BINARY, read=False, name="SIEMENS_CSA_IMAGE_HEADER"),
    A("SiemensCSASeriesHeader", _tag(0x0029, 0x1020), N.BINARY, read=False,  # holds MrPhoenixProtocol
      name="SIEMENS_CSA_SERIES_HEADER"),
    A("SiemensCSACreator", _tag(0x0029, 0x0010), N.TEXT, read=False, name="SIEMENS_CSA_CREATOR"),
    # -- not in every header read: meta, pixels, and what lies inside functional groups ------------------
    A("TransferSyntaxUID", _tag(0x0002, 0x0010), N.UID, read=False),
    A("PixelData", _tag(0x7FE0, 0x0010), N.BINARY, read=False),
    A("PhotometricInterpretation", _tag(0x0028, 0x0004), N.TEXT, read=False),
    A("PlanarConfiguration", _tag(0x0028, 0x0006), N.INTEGER, read=False),
    A("BitsStored", _tag(0x0028, 0x0101), N.INTEGER, read=False),
    A("PixelRepresentation", _tag(0x0028, 0x0103), N.INTEGER, read=False),
    A("TemporalPositionIndex", _tag(0x0020, 0x9128), N.INTEGER, read=False),
    A("PlanePositionSequence", _tag(0x0020, 0x9113), N.SEQUENCE, read=False),
    A("PlaneOrientationSequence", _tag(0x0020, 0x9116), N.SEQUENCE, read=False),
    A("FrameContentSequence", _tag(0x0020, 0x9111), N.SEQUENCE, read=False),
    A("PixelMeasuresSequence", _tag(0x0028, 0x9110), N.SEQUENCE, read=False),
    A("PixelValueTransformationSequence", _tag(0x0028, 0x9145), N.SEQUENCE, read=False),
    A("MRDiffusionSequence", _tag(0x0018, 0x9117), N.SEQUENCE, read=False),
    A("MREchoSequence", _tag(0x0018, 0x9114), N.SEQUENCE, read=False),
    A("MRTimingAndRelatedParametersSequence", _tag(0x0018, 0x9112), N.SEQUENCE, read=False,
      name="MR_TIMING_SEQUENCE"),
    A("MRImageFrameTypeSequence", _tag(0x0018, 0x9226), N.SEQUENCE, read=False),
    A("MRModifierSequence", _tag(0x0018, 0x9006), N.SEQUENCE, read=False),
    A("MRFOVGeometrySequence", _tag(0x0018, 0x9107), N.SEQUENCE, read=False, name="MR_FOV_GEOMETRY_SEQUENCE"),
    A("MRMetaboliteMapSequence", _tag(0x0018, 0x9152), N.SEQUENCE, read=False),
    A("EffectiveEchoTime", _tag(0x0018, 0x9082), N.NUMBER, read=False),
    A("FrameType", _tag(0x0008, 0x9007), N.LIST, read=False),
    A("StackID", _tag(0x0020, 0x9056), N.TEXT, read=False, name="STACK_ID"),
    A("InStackPositionNumber", _tag(0x0020, 0x9057), N.INTEGER, read=False),
)

del A, N, F

_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def constant_name(attr: Attribute) -> str:
    """The :mod:`.tags` constant of an attribute: ``EchoTime`` -> ``ECHO_TIME``, ``SOPClassUID`` -> ``SOP_CLASS_UID``."""
    return attr.name or _SNAKE.sub("_", attr.keyword).upper()


def by_keyword() -> dict[str, Attribute]:
    return {a.keyword: a for a in ATTRIBUTES}
