"""The Manufacturer (0008,0070) text as one vendor family name.

Part of the vendor knowledge of :mod:`.vendors` (which re-exports it), kept
apart because the metadata features need only this, and this needs no pydicom:
the command line's model process, which never reads a file, stays without it
(:mod:`SeqClassifierLib.app.startup`).
"""

from __future__ import annotations

from typing import Mapping, Optional


#: Vendor family -> upper-case keys found in Manufacturer texts (in this order;
#: the metadata features name one column per family, then OTHER).
MANUFACTURER_FAMILIES: Mapping[str, tuple[str, ...]] = {
    "SIEMENS": ("SIEMENS",),
    "GE": ("GE ", "GE_", "GENERAL ELECTRIC", "GE MEDICAL"),
    "PHILIPS": ("PHILIPS",),
    "CANON": ("TOSHIBA", "CANON"),
    "HITACHI": ("HITACHI", "FUJIFILM"),
    "UIH": ("UIH", "UNITED IMAGING"),
}
#: Family of a Manufacturer that matches none of :data:`MANUFACTURER_FAMILIES`.
OTHER_FAMILY = "OTHER"


def manufacturer_family(manufacturer: Optional[str]) -> str:
    """The vendor family of a Manufacturer (0008,0070) text: a key of
    :data:`MANUFACTURER_FAMILIES`, or :data:`OTHER_FAMILY`."""
    m = (manufacturer or "").upper() + " "
    for family, keys in MANUFACTURER_FAMILIES.items():
        if any(m.startswith(k) or k in m for k in keys):
            return family
    return OTHER_FAMILY
