"""Symbolic table of every DICOM attribute SeqClassifier reads.

Code refers to attributes by these names, never by raw numbers; the names are
generated from :data:`.attribute_table.ATTRIBUTES`, so the list of what is read
stays in one place.  :data:`HEADER_TAGS` is passed to pydicom's
``specific_tags`` so discovery parses only these elements (plus whatever
pydicom needs to reach them).
"""

from __future__ import annotations

from pydicom.tag import BaseTag, Tag

from SeqClassifierLib.dicom.attribute_table import ATTRIBUTES, constant_name

# The constants, one per row of the attribute table: ECHO_TIME = Tag(0x0018, 0x0081), ...
# (private ones: their numbers only; which creator owns each block, how its values decode and
# which vendor it belongs to is in :mod:`.vendors`).
for _attr in ATTRIBUTES:
    globals()[constant_name(_attr)] = Tag(_attr.tag)
del _attr

# Image Pixel module attributes read (besides HEADER_TAGS) with the pixels of a native frame.
PIXEL_TAGS: tuple[BaseTag, ...] = tuple(Tag(a.tag) for a in ATTRIBUTES if a.keyword in (
    "PhotometricInterpretation", "PlanarConfiguration", "BitsStored", "PixelRepresentation"))

#: Everything discovery reads from a file header (the table's ``read`` rows).  The functional-group
#: sequences of enhanced multi-frame objects are included whole because the per-frame b-values,
#: positions and temporal indices live inside them.
HEADER_TAGS: tuple[BaseTag, ...] = tuple(Tag(a.tag) for a in ATTRIBUTES if a.read)

#: SOP classes of MR images SeqClassifier classifies.
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
LEGACY_ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.4"
MR_SOP_CLASSES = frozenset(
    {MR_IMAGE_STORAGE, ENHANCED_MR_IMAGE_STORAGE, LEGACY_ENHANCED_MR_IMAGE_STORAGE}
)
ENHANCED_SOP_CLASSES = frozenset(
    {ENHANCED_MR_IMAGE_STORAGE, LEGACY_ENHANCED_MR_IMAGE_STORAGE}
)
#: Secondary Capture: derived pictures (FA, perfusion, CBF colour maps...) stored beside an MR study.
#: They get a series (flagged by model/evidence.py when predicted other than OTHER).
SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
SECONDARY_CAPTURE_SOP_CLASSES = frozenset({
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture
})
#: Modality values a Secondary Capture of an MR study carries ("" when absent: it is optional there).
SECONDARY_CAPTURE_MODALITIES = frozenset({"MR", "OT", ""})
#: Every SOP class discovery makes a series of.
IMAGE_SOP_CLASSES = MR_SOP_CLASSES | SECONDARY_CAPTURE_SOP_CLASSES

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"   # DICOMDIR
