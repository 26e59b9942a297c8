"""The vendor table (dicom/vendors.py): private b-value tags, creators, manufacturer families."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.dicom.vendors import (B_VALUE_TAGS, PRIVATE_CREATORS, b_value_tag, manufacturer_family,
                                            private_b_value)


@pytest.mark.parametrize("entry", B_VALUE_TAGS, ids=lambda e: e.vendor)
def test_encode_then_decode_gives_the_b_value(entry):
    for b in (0.0, 50.0, 800.0, 1000.0, 2800.0):
        assert entry.decode(entry.encode(b)) == b
    assert entry.value_tag.group == entry.creator_tag.group == entry.group
    assert entry.creator_tag in PRIVATE_CREATORS and entry.creator in PRIVATE_CREATORS[entry.creator_tag]


def _ds(entry, b: float, creator, manufacturer: str = "") -> Dataset:
    ds = Dataset()
    if manufacturer:
        ds.Manufacturer = manufacturer
    if creator is not None:
        ds.add_new(entry.creator_tag, "LO", creator)
    ds.add_new(entry.value_tag, entry.vr, entry.encode(b))
    return ds


@pytest.mark.parametrize("vendor,manufacturer", [("SIEMENS", "SIEMENS"), ("GE", "GE MEDICAL SYSTEMS"),
                                                 ("PHILIPS", "Philips Medical Systems")])
def test_private_b_value_trusts_only_the_vendors_block(vendor, manufacturer):
    entry = b_value_tag(vendor)
    assert private_b_value(_ds(entry, 800.0, entry.creator)) == 800.0
    assert private_b_value(_ds(entry, 800.0, entry.creator.upper())) == 800.0
    assert private_b_value(_ds(entry, 800.0, "ACME PRIVATE", manufacturer)) is None  # another creator's block
    assert private_b_value(_ds(entry, 800.0, None, manufacturer)) == 800.0           # creator stripped
    assert private_b_value(_ds(entry, 800.0, None, "ACME")) is None
    with pytest.raises(KeyError):
        b_value_tag("ACME")


def test_manufacturer_family():
    cases = {"SIEMENS": "SIEMENS", "Siemens Healthineers": "SIEMENS", "GE MEDICAL SYSTEMS": "GE", "GE": "GE",
             "Philips Medical Systems": "PHILIPS", "Philips": "PHILIPS", "CANON_MEC": "CANON", "TOSHIBA": "CANON",
             "UIH": "UIH", "United Imaging Healthcare": "UIH", "FUJIFILM Healthcare": "HITACHI",
             "ACME": "OTHER", "": "OTHER", None: "OTHER", "GENERIC": "OTHER"}
    assert {m: manufacturer_family(m) for m in cases} == cases


def test_tags_table_holds_only_numbers():
    """Vendor knowledge lives in vendors.py; tags.py names the numbers."""
    assert not hasattr(T, "PRIVATE_CREATORS")
    assert {e.value_tag for e in B_VALUE_TAGS} <= set(T.HEADER_TAGS)
    assert {e.creator_tag for e in B_VALUE_TAGS} <= set(T.HEADER_TAGS)
