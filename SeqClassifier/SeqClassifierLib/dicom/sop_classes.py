"""The SOP classes (and other UIDs) SeqClassifier tells apart, as plain strings.

Re-exported by :mod:`.tags` (``T.MR_SOP_CLASSES`` ...), kept apart because the
evidence rules need them and this needs no pydicom: the command line's model
process, which never reads a file, stays without it
(:mod:`SeqClassifierLib.app.startup`).
"""

from __future__ import annotations

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
