"""Vendor knowledge, in one table: private tags, their creators, decoders, names.

Everything SeqClassifier knows about one scanner vendor lives here (the tag
*numbers* are named in :mod:`.tags`, like every attribute read):

* :data:`B_VALUE_TAGS` -- where each vendor keeps the b-value of a classic
  single-frame image when the standard DiffusionBValue (0018,9087) is absent:
  Siemens (0019,100C), GE (0043,1039), Philips (2001,1003), each with the
  private creator that must own its block, the VR scanners write, a decoder
  (raw value -> b-value) and an encoder (b-value -> value as scanners write
  it, for writers of test data);
* :data:`PRIVATE_CREATORS` and :func:`private_creator_ok` -- the rule that a
  private element is trusted only when its block belongs to the vendor (or
  the creator was stripped and the Manufacturer is that vendor);
* the Siemens fall-backs: the mosaic tile count (:func:`mosaic_tiles`) and the
  b-values in the protocol of the CSA series header (:func:`protocol_b_values`,
  decoded by :mod:`.phoenix`);
* :data:`MANUFACTURER_FAMILIES` and :func:`manufacturer_family` -- the
  Manufacturer (0008,0070) text as one vendor family name (kept in
  :mod:`.manufacturers`, which needs no pydicom, and re-exported here).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import pydicom
from pydicom.tag import BaseTag

from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.dicom.manufacturers import MANUFACTURER_FAMILIES, OTHER_FAMILY, manufacturer_family  # noqa: F401
from SeqClassifierLib.dicom.phoenix import phoenix_b_values
from SeqClassifierLib.dicom.values import _elem_value, _float, _int, _text, _valid_b


# ----------------------------------------------------------------------------
# Decoders of the private b-value elements
# ----------------------------------------------------------------------------

def siemens_b_value(value: Any) -> Optional[float]:
    """Siemens (0019,100C) B_value: IS/DS text, or OB/UN bytes holding text."""
    return _valid_b(_float(value))


def ge_b_value(value: Any) -> Optional[float]:
    """GE (0043,1039) slop_int_6: the first value is the b-value, often +1e9."""
    b = _float(value)
    if b is None:
        return None
    if b >= 1e9:
        b -= 1e9
    return _valid_b(b)


def philips_b_value(value: Any) -> Optional[float]:
    """Philips (2001,1003) FL; an implicit/UN copy arrives as 4 little-endian bytes."""
    if isinstance(value, bytes):
        if len(value) == 4:
            return _valid_b(struct.unpack("<f", value)[0])
        if len(value) == 8:
            return _valid_b(struct.unpack("<d", value)[0])
    return _valid_b(_float(value))


# ----------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PrivateBValue:
    """Where one vendor keeps the b-value of a classic image, and how to read it."""

    vendor: str
    """Vendor family (a key of :data:`MANUFACTURER_FAMILIES`)."""
    manufacturer_key: str
    """Upper-case text in Manufacturer that vouches for a block whose creator was stripped."""
    creator_tag: BaseTag
    """The private creator element of the block, (gggg,0010)."""
    creators: tuple[str, ...]
    """Creator strings that own the block; the first is what scanners write."""
    value_tag: BaseTag
    """The b-value element, (gggg,10xx)."""
    vr: str
    """The VR scanners write it with."""
    decode: Callable[[Any], Optional[float]]
    """Raw element value (any VR, bytes of UN included) -> b-value or None."""
    encode: Callable[[float], Any]
    """b-value -> the value as the vendor writes it (for writers of test data)."""

    @property
    def group(self) -> int:
        return self.value_tag.group

    @property
    def creator(self) -> str:
        return self.creators[0]

    @property
    def offset(self) -> int:
        """Element number inside the private block (``private_block(...)[offset]``)."""
        return self.value_tag.element & 0xFF


#: Vendors' private b-value elements, in the order they are tried.
B_VALUE_TAGS: tuple[PrivateBValue, ...] = (
    PrivateBValue("SIEMENS", "SIEMENS", T.SIEMENS_CREATOR, ("SIEMENS MR HEADER",), T.SIEMENS_B_VALUE,
                  "IS", siemens_b_value, lambda b: str(int(b))),
    PrivateBValue("GE", "GE", T.GE_CREATOR, ("GEMS_PARM_01",), T.GE_B_VALUE,
                  "IS", ge_b_value, lambda b: [1_000_000_000 + int(b), 0, 0, 0]),
    PrivateBValue("PHILIPS", "PHILIPS", T.PHILIPS_CREATOR, ("Philips Imaging DD 001", "PHILIPS IMAGING DD 001"),
                  T.PHILIPS_B_VALUE, "FL", philips_b_value, float),
)

#: Siemens CSA header block: its creator and the series header holding MrPhoenixProtocol.
SIEMENS_CSA_CREATORS: tuple[str, ...] = ("SIEMENS CSA HEADER",)

#: Private creators that make the element numbers above trustworthy, by creator tag.
PRIVATE_CREATORS: Mapping[BaseTag, tuple[str, ...]] = {
    **{e.creator_tag: e.creators for e in B_VALUE_TAGS},
    T.SIEMENS_CSA_CREATOR: SIEMENS_CSA_CREATORS,
}
#: The same in capitals, as :func:`private_creator_ok` compares them (made once, not per file).
_CREATORS_UPPER = {tag: frozenset(c.upper() for c in names) for tag, names in PRIVATE_CREATORS.items()}


def b_value_tag(vendor: str) -> PrivateBValue:
    """The :data:`B_VALUE_TAGS` entry of a vendor family ("SIEMENS", "GE", "PHILIPS")."""
    for entry in B_VALUE_TAGS:
        if entry.vendor == vendor:
            return entry
    raise KeyError(f"no private b-value tag known for vendor {vendor!r}")


def private_creator_ok(ds: Any, creator_tag: Any, vendor: str) -> bool:
    """Whether the vendor's private block 0x10 really belongs to that vendor.

    True when the block's private creator is the vendor's, or when no creator
    is recorded at all (anonymisers often strip creators) and the Manufacturer
    is that vendor.  A block owned by another creator is never trusted.
    """
    creator = _text(_elem_value(ds, creator_tag)).upper()
    if creator:
        return creator in _CREATORS_UPPER[creator_tag]
    return vendor in _text(_elem_value(ds, T.MANUFACTURER)).upper()


def private_b_value(ds: Any) -> Optional[float]:
    """The b-value in a vendor's private element of ``ds`` (first trusted one of
    :data:`B_VALUE_TAGS` that decodes), or None."""
    for entry in B_VALUE_TAGS:
        if entry.value_tag in ds and private_creator_ok(ds, entry.creator_tag, entry.manufacturer_key):
            b = entry.decode(_elem_value(ds, entry.value_tag))
            if b is not None:
                return b
    return None


# ----------------------------------------------------------------------------
# Siemens: mosaic images and the protocol in the CSA series header
# ----------------------------------------------------------------------------

def mosaic_tiles(ds: Any, image_type: Sequence[str]) -> int:
    """Number of tiles of a Siemens mosaic (ImageType MOSAIC); 0 for other images.

    NumberOfImagesInMosaic (0019,100A) when present, else the tile grid
    inferred from the acquisition matrix (tiles are matrix x matrix pieces).
    """
    if "MOSAIC" not in image_type:
        return 0
    n = _int(_elem_value(ds, T.SIEMENS_MOSAIC_IMAGES))
    if n and n > 0:
        return n
    matrix = _elem_value(ds, T.ACQUISITION_MATRIX)
    if not (isinstance(matrix, (list, tuple)) or type(matrix).__name__ == "MultiValue"):
        matrix = [] if matrix is None or isinstance(matrix, (str, bytes)) else [matrix]
    matrix = [v for v in matrix if v]
    rows, cols = _int(_elem_value(ds, T.ROWS)), _int(_elem_value(ds, T.COLUMNS))
    if matrix and rows and cols:
        tile = max(int(matrix[0]), 1)
        grid = max(rows // tile, 1) * max(cols // tile, 1)
        return grid
    return 0


#: ``header["BValueSource"]`` of a series whose b-values came from the Siemens protocol.
PROTOCOL_B_VALUE_SOURCE = "Siemens protocol (CSA series header)"


def siemens_protocol_b_values(path: Any) -> list[float]:
    """b-values from the Siemens protocol stored in one file's CSA series header, for a
    diffusion series whose per-image b-value tags were removed (anonymised exports);
    [] when the file has no such header.  Reads that one element, never pixels."""
    try:
        ds = pydicom.dcmread(os.fspath(path), stop_before_pixels=True, force=True,
                             specific_tags=[T.MANUFACTURER, T.SIEMENS_CSA_CREATOR, T.SIEMENS_CSA_SERIES_HEADER])
        raw = _elem_value(ds, T.SIEMENS_CSA_SERIES_HEADER)
    except Exception:  # unreadable now: keep what the headers gave
        return []
    if not isinstance(raw, bytes) or not private_creator_ok(ds, T.SIEMENS_CSA_CREATOR, "SIEMENS"):
        return []
    return phoenix_b_values(raw)


def protocol_b_values(path: str, image_type: Sequence[Any], manufacturer: str) -> list[float]:
    """The Siemens fall-back for a diffusion series without b-values: read them from
    the protocol of ``path`` (one of its files) when the series is a diffusion series
    (ImageType DIFFUSION) of a Siemens scanner (or of an unnamed one); else []."""
    if "DIFFUSION" not in [str(v).upper() for v in image_type]:
        return []
    if manufacturer and "SIEMENS" not in manufacturer.upper():
        return []
    return siemens_protocol_b_values(path)
