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

# The tuples below hold these very objects, never equal copies: the fast reader keys its values by
# them (fast_decode._CANON), and a dict finds the same object without calling pydicom's Python-level
# BaseTag.__eq__, which an equal copy costs on every lookup.

# Image Pixel module attributes read (besides HEADER_TAGS) with the pixels of a native frame.
PIXEL_TAGS: tuple[BaseTag, ...] = tuple(globals()[constant_name(a)] for a in ATTRIBUTES if a.keyword in (
    "PhotometricInterpretation", "PlanarConfiguration", "BitsStored", "PixelRepresentation"))

#: Everything discovery reads from a file header (the table's ``read`` rows).  The functional-group
#: sequences of enhanced multi-frame objects are included whole because the per-frame b-values,
#: positions and temporal indices live inside them.
HEADER_TAGS: tuple[BaseTag, ...] = tuple(globals()[constant_name(a)] for a in ATTRIBUTES if a.read)

# The SOP classes and other UIDs it tells apart: in .sop_classes (no pydicom there, for the model process).
from SeqClassifierLib.dicom.sop_classes import (  # noqa: E402,F401
    MR_IMAGE_STORAGE,
    ENHANCED_MR_IMAGE_STORAGE,
    LEGACY_ENHANCED_MR_IMAGE_STORAGE,
    MR_SOP_CLASSES,
    ENHANCED_SOP_CLASSES,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    SECONDARY_CAPTURE_SOP_CLASSES,
    SECONDARY_CAPTURE_MODALITIES,
    IMAGE_SOP_CLASSES,
    MEDIA_STORAGE_DIRECTORY,
)
