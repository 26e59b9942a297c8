"""Optional attribute groups: what a real export may lack, as data.

Every header attribute the features read is missing or different somewhere:
de-identification strips private tags and descriptions, some vendors never
write ContrastBolusAgent or temporal tags, b-values sit in a private tag or
nowhere.  :data:`ATTRIBUTE_GROUPS` names each optional group with the header
keys (from the attribute table, dicom.attribute_table) and record fields it covers; :func:`drop_groups` returns a copy of a
series as an export without those attributes would look.  Training drops
groups at random (attribute-group dropout), and the shortcut audit
(:mod:`SeqClassifierLib.training.audit`) drops each in turn and counts how many
predictions flip.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Sequence

from SeqClassifierLib.dicom.attribute_table import ATTRIBUTES
from SeqClassifierLib.records import FrameRef, SeriesRecord


@dataclass(frozen=True)
class AttributeGroup:
    """One group of attributes that an export may lack together."""

    name: str
    description: str
    #: ``SeriesRecord.header`` keys removed.
    header_keys: tuple[str, ...] = ()
    #: Record fields blanked: description, protocol_name, manufacturer, b_values, temporal_positions.
    fields: tuple[str, ...] = ()
    #: Feature-name prefixes that only this group determines (for feature-level dropout).
    feature_prefixes: tuple[str, ...] = ()


def _group(name: str, description: str, extra_keys: tuple[str, ...] = (), fields: tuple[str, ...] = (),
           prefixes: tuple[str, ...] = ()) -> AttributeGroup:
    """A group whose header keys are the attribute table's rows of that group (plus ``extra_keys``, keys
    that are no DICOM attribute), and whose feature prefixes include those rows' ``num:`` / ``miss:``."""
    rows = [a for a in ATTRIBUTES if a.header and a.group == name]
    keys = tuple(a.keyword for a in rows) + tuple(extra_keys)
    made = tuple(p for a in rows if a.feature is not None for p in (a.feature.name, "miss:" + a.feature.short))
    return AttributeGroup(name, description, keys, fields, tuple(dict.fromkeys(tuple(prefixes) + made)))


ATTRIBUTE_GROUPS: tuple[AttributeGroup, ...] = (
    _group("names", "SeriesDescription, ProtocolName, SequenceName, PulseSequenceName",
           fields=("description", "protocol_name"), prefixes=("tok:",)),
    _group("image_type", "ImageType", prefixes=("it:",)),
    _group("sequence", "ScanningSequence, SequenceVariant, ScanOptions, MRAcquisitionType",
           prefixes=("ss:", "sv:", "so:", "acq:")),
    _group("contrast_timing", "ContrastBolusAgent, TriggerTime, temporal position tags",
           fields=("temporal_positions",), prefixes=("agent", "num:temporal", "miss:temporal")),
    _group("diffusion", "b-values (standard and private tags, Siemens protocol)",
           extra_keys=("BValues", "BValueSource"), fields=("b_values",), prefixes=("b:",)),
    _group("inversion_etl", "InversionTime, EchoTrainLength"),
    _group("flip_angle", "FlipAngle"),
    _group("field_strength", "MagneticFieldStrength"),
    _group("manufacturer", "Manufacturer, ManufacturerModelName", fields=("manufacturer",), prefixes=("mfr:",)),
    _group("times", "AcquisitionTime, ContentTime, SeriesTime (de-identified)"),
)
GROUP_NAMES: tuple[str, ...] = tuple(g.name for g in ATTRIBUTE_GROUPS)
_BY_NAME = {g.name: g for g in ATTRIBUTE_GROUPS}


def group(name: str) -> AttributeGroup:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown attribute group {name!r}; known: {', '.join(GROUP_NAMES)}") from None


def drop_groups(record: SeriesRecord, names: Iterable[str]) -> SeriesRecord:
    """A copy of ``record`` as an export without the attributes of these groups would read."""
    groups = [group(n) for n in names]
    if not groups:
        return record
    header = dict(record.header)
    changes: dict = {}
    for g in groups:
        for key in g.header_keys:
            header.pop(key, None)
        for f in g.fields:
            if f in ("description", "protocol_name", "manufacturer"):
                changes[f] = ""
            elif f == "b_values":
                changes["b_values"] = []
            elif f == "temporal_positions":
                changes["temporal_positions"] = 1
    frames = record.frames
    if "b_values" in changes or "temporal_positions" in changes:
        frames = [FrameRef(f.path, f.frame, f.location,
                           None if "b_values" in changes else f.b_value,
                           None if "temporal_positions" in changes else f.temporal_position,
                           f.mosaic_tiles) for f in record.frames]
    return dataclasses.replace(record, header=header, frames=list(frames), **changes)


def drop_in_study(records: Sequence[SeriesRecord], names: Iterable[str]) -> list[SeriesRecord]:
    """:func:`drop_groups` applied to every series (an export is stripped as a whole)."""
    names = list(names)
    return [drop_groups(r, names) for r in records]
