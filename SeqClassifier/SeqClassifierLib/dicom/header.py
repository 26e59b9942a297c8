"""The per-file header record (:class:`FileHeader`) and building it from a data set.

:func:`header_from_dataset` holds every check and value rule of one file's
header; both readers use it -- :mod:`.pydicom_reader` with pydicom's data set,
:mod:`.fast_header` with its :class:`~.values.ValueDataset` -- so they give
the same record and the same :class:`UnusableFile` reasons.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import pydicom

from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.dicom.attribute_table import ATTRIBUTES, Kind, by_keyword, constant_name
from SeqClassifierLib.dicom.values import (ValueDataset, _elem_value, _first_item, _float, _floats, _int, _text, _text_list,
                                          _valid_b)
from SeqClassifierLib.dicom.vendors import mosaic_tiles, private_b_value


class UnusableFile(Exception):
    """A file that discovery cannot use; the message is the reason shown to the user."""


def b_value_of(ds: Any) -> Optional[float]:
    """b-value of a classic single-frame image: standard tag first, then vendors'
    (:func:`.vendors.private_b_value`)."""
    b = _valid_b(_float(_elem_value(ds, T.DIFFUSION_B_VALUE)))
    if b is not None:
        return b
    return private_b_value(ds)

# Generated from the attribute table (dicom.attribute_table): its ``header`` rows.
_TABLE = by_keyword()
#: Attributes copied into ``SeriesRecord.header`` for the feature extractor: keyword -> tag.
_HEADER_FIELDS: dict[str, Any] = {a.keyword: getattr(T, constant_name(a)) for a in ATTRIBUTES if a.header}
_LIST_FIELDS = {a.keyword for a in ATTRIBUTES if a.header and a.kind == Kind.LIST}
_NUMBER_FIELDS = {a.keyword for a in ATTRIBUTES if a.header and a.kind == Kind.NUMBER}

# Where enhanced multi-frame objects keep the attributes above (shared or
# per-frame functional groups): keyword -> (macro sequence, attribute).
_ENHANCED_FIELDS: dict[str, tuple[Any, Any]] = {
    a.keyword: (getattr(T, constant_name(_TABLE[a.enhanced[0]])), getattr(T, constant_name(_TABLE[a.enhanced[1]])))
    for a in ATTRIBUTES if a.header and a.enhanced is not None
}


@dataclass
class FileFrame:
    """One 2D image of a file: its frame index, geometry, b-value and time point."""

    frame: int
    ipp: Optional[tuple[float, ...]]
    iop: Optional[tuple[float, ...]]
    b_value: Optional[float]
    temporal: Optional[int]
    trigger_time: Optional[float]
    stack_position: Optional[int] = None


@dataclass
class FileHeader:
    """What discovery keeps of one file (internal; picklable for worker processes)."""

    path: str
    series_uid: str
    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    series_number: Optional[int]
    instance_number: Optional[int]
    acquisition_number: Optional[int]
    description: str
    protocol_name: str
    manufacturer: str
    sop_class_uid: str
    modality: str
    frames: list[FileFrame]
    mosaic_tiles: int = 0
    header: dict[str, Any] = field(default_factory=dict)
    #: SOPInstanceUID: the same instance found twice (a copied file) is counted once.
    sop_instance_uid: str = ""


_ABSENT = object()


def _header_field(key: str, value: Any) -> Any:
    """The header value of attribute ``key`` from its element value; :data:`_ABSENT`: none."""
    if value is None:
        return _ABSENT
    if key in _LIST_FIELDS:
        return _text_list(value)
    if key == "PixelSpacing":
        ps = _floats(value, 2)
        return _ABSENT if ps is None else list(ps)
    if key in _NUMBER_FIELDS:
        f = _float(value)
        return _ABSENT if f is None else f
    text = _text(value)
    return text if text else _ABSENT


def _header_values(ds: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, tag in _HEADER_FIELDS.items():
        value = _header_field(key, _elem_value(ds, tag))
        if value is not _ABSENT:
            out[key] = value
    return out


_HEADER_NUMBERS = [(key, tag, int(tag)) for key, tag in _HEADER_FIELDS.items()]


def _header_values_of(ds: Any) -> dict[str, Any]:
    """:func:`_header_values`; for a file replayed by runs (:attr:`.values.ValueDataset.same`) each value
    whose element is not among the fresh ones is its walked file's (worked out once, from the values
    decoded there: the cache's ``"values"``), a list as a new list."""
    same = ds.same if type(ds) is ValueDataset else None
    if same is None or not same[0].get("values"):
        return _header_values(ds)
    cache, fresh = same
    base = cache.get("header")
    if base is None:
        base = cache["header"] = _header_values(ValueDataset(cache["values"]))
    values = ds.values
    out: dict[str, Any] = {}
    for key, tag, number in _HEADER_NUMBERS:
        if number in fresh:  # plain ints (a pydicom tag compares in Python)
            value = _header_field(key, values.get(tag))
        else:
            value = base.get(key, _ABSENT)
            if type(value) is list:
                value = value.copy()
        if value is not _ABSENT:
            out[key] = value
    return out


def _enhanced_header_values(ds: Any, out: dict[str, Any]) -> None:
    """Fill header values of an enhanced object from its shared/first per-frame groups."""
    shared = _first_item(ds, T.SHARED_FUNCTIONAL_GROUPS)
    first = _first_item(ds, T.PER_FRAME_FUNCTIONAL_GROUPS)
    for key, (macro, attr) in _ENHANCED_FIELDS.items():
        if key in out and key != "ImageType":
            continue
        for group in (shared, first):
            item = _first_item(group, macro) if group is not None else None
            value = _elem_value(item, attr) if item is not None else None
            if value is None:
                continue
            if key == "ImageType":
                frame_type = _text_list(value)
                if frame_type:
                    merged = list(out.get("ImageType", []))
                    merged += [v for v in frame_type if v not in merged]
                    out["ImageType"] = merged
            elif key == "PixelSpacing":
                ps = _floats(value, 2)
                if ps is not None:
                    out[key] = list(ps)
            else:
                f = _float(value)
                if f is not None:
                    out[key] = f
            break


def _enhanced_frames(ds: Any, n_frames: int) -> list[FileFrame]:
    shared = _first_item(ds, T.SHARED_FUNCTIONAL_GROUPS)
    per_frame = _elem_value(ds, T.PER_FRAME_FUNCTIONAL_GROUPS) or []
    shared_iop = None
    shared_b = None
    if shared is not None:
        item = _first_item(shared, T.PLANE_ORIENTATION_SEQUENCE)
        shared_iop = _floats(_elem_value(item, T.IMAGE_ORIENTATION_PATIENT), 6) if item else None
        item = _first_item(shared, T.MR_DIFFUSION_SEQUENCE)
        shared_b = _valid_b(_float(_elem_value(item, T.DIFFUSION_B_VALUE))) if item else None
    frames = []
    for i in range(n_frames):
        group = per_frame[i] if i < len(per_frame) else None
        ipp = iop = b = temporal = stack_pos = None
        trigger = None
        if group is not None:
            item = _first_item(group, T.PLANE_POSITION_SEQUENCE)
            ipp = _floats(_elem_value(item, T.IMAGE_POSITION_PATIENT), 3) if item else None
            item = _first_item(group, T.PLANE_ORIENTATION_SEQUENCE)
            iop = _floats(_elem_value(item, T.IMAGE_ORIENTATION_PATIENT), 6) if item else None
            item = _first_item(group, T.MR_DIFFUSION_SEQUENCE)
            b = _valid_b(_float(_elem_value(item, T.DIFFUSION_B_VALUE))) if item else None
            item = _first_item(group, T.FRAME_CONTENT_SEQUENCE)
            if item is not None:
                temporal = _int(_elem_value(item, T.TEMPORAL_POSITION_INDEX))
                stack_pos = _int(_elem_value(item, T.IN_STACK_POSITION_NUMBER))
        frames.append(
            FileFrame(i, ipp, iop or shared_iop, b if b is not None else shared_b,
                   temporal, trigger, stack_pos)
        )
    return frames


def _check_pixel_data(head: bytes, offset: int, file_size: int) -> Optional[int]:
    """Check the pixel data element that starts at ``offset`` (its first bytes in ``head``);
    return its declared length (None when encapsulated).

    pydicom's ``stop_before_pixels`` leaves the file positioned at the pixel
    data tag, so its declared length can be compared with the file size at no
    extra I/O: a copy cut short is refused here instead of failing later.
    """
    if len(head) < 8 or head[:4] not in (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10"):
        raise UnusableFile("no pixel data (header only)")
    little = head[:4] == b"\xe0\x7f\x10\x00"
    fmt = "<" if little else ">"
    if head[4:6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN") and len(head) >= 12:
        header_len, length = 12, struct.unpack(fmt + "I", head[8:12])[0]
    else:
        header_len, length = 8, struct.unpack(fmt + "I", head[4:8])[0]
    if length == 0xFFFFFFFF:  # encapsulated (compressed) fragments: no fixed length
        return None
    if offset + header_len + length > file_size:
        raise UnusableFile(
            f"truncated: pixel data declares {length} bytes but the file ends "
            f"{offset + header_len + length - file_size} bytes early"
        )
    return length


#: More frames than this in one file is not an MR image but a damaged header
#: (the largest real enhanced MR objects hold a few thousand).
MAX_FRAMES = 65536


def _number_of_frames(ds: Any, pixel_length: Optional[int]) -> int:
    """NumberOfFrames, checked: never more than :data:`MAX_FRAMES`, and, for
    native pixel data, no more frames than the declared pixel data holds."""
    n = _int(_elem_value(ds, T.NUMBER_OF_FRAMES)) or 1
    if n < 1:
        n = 1
    if n > MAX_FRAMES:
        raise UnusableFile(f"implausible NumberOfFrames {n} (more than {MAX_FRAMES:,}): damaged header")
    if n > 1 and pixel_length is not None:
        rows, cols = _int(_elem_value(ds, T.ROWS)) or 0, _int(_elem_value(ds, T.COLUMNS)) or 0
        bits = _int(_elem_value(ds, T.BITS_ALLOCATED)) or 0
        samples = _int(_elem_value(ds, T.SAMPLES_PER_PIXEL)) or 1
        frame_bytes = rows * cols * samples * bits // 8
        if frame_bytes > 0 and n * frame_bytes > pixel_length:
            raise UnusableFile(
                f"NumberOfFrames {n} does not fit the pixel data: {pixel_length} bytes hold "
                f"{pixel_length // frame_bytes} frame(s) of {rows}x{cols}x{bits} bits")
    return n


def header_from_dataset(path: str, ds: Any, size: int, pixel_offset: int, pixel_head: bytes) -> FileHeader:
    """Checks and values shared by the pydicom and the fast reader (``ds``: either's data set)."""
    meta = getattr(ds, "file_meta", None)
    sop_class = _text(_elem_value(ds, T.SOP_CLASS_UID)) or (
        _text(getattr(meta, "MediaStorageSOPClassUID", "")) if meta is not None else ""
    )
    if sop_class == T.MEDIA_STORAGE_DIRECTORY or os.path.basename(path).upper() == "DICOMDIR":
        raise UnusableFile("DICOMDIR (a media index, not an image); the image files it lists are read directly")
    modality = _text(_elem_value(ds, T.MODALITY)).upper()
    secondary_capture = sop_class in T.SECONDARY_CAPTURE_SOP_CLASSES
    if modality and modality != "MR" and not (secondary_capture and modality in T.SECONDARY_CAPTURE_MODALITIES):
        raise UnusableFile(f"not an MR image (Modality {modality})")
    # A parse that ran into the end of the file before any pixel data, with the
    # image's identity incomplete, is a cut copy -- unless the SOP class (a
    # complete, registered UID) already says it is not an MR image.
    ended = len(pixel_head) < 8
    registered = sop_class in pydicom.uid.UID_dictionary
    if ended and not (sop_class and registered and sop_class not in T.IMAGE_SOP_CLASSES) and (
        not _text(_elem_value(ds, T.SERIES_INSTANCE_UID))
        or _elem_value(ds, T.ROWS) is None or _elem_value(ds, T.COLUMNS) is None
    ):
        raise UnusableFile(f"truncated: the file ends after {size} bytes, inside the DICOM header "
                           "(no pixel data)")
    if not modality and sop_class and sop_class not in T.IMAGE_SOP_CLASSES:
        raise UnusableFile(f"not an MR image (SOP class {sop_class})")
    if sop_class and sop_class not in T.IMAGE_SOP_CLASSES and modality == "MR":
        try:
            name = pydicom.uid.UID(sop_class).name
        except Exception:
            name = sop_class
        raise UnusableFile(f"MR object that is not an image ({name})")
    series_uid = _text(_elem_value(ds, T.SERIES_INSTANCE_UID))
    if not series_uid:
        raise UnusableFile("missing SeriesInstanceUID (0020,000E)")
    if _elem_value(ds, T.ROWS) is None or _elem_value(ds, T.COLUMNS) is None:
        raise UnusableFile("no image: Rows/Columns missing")

    pixel_length = _check_pixel_data(pixel_head, pixel_offset, size)
    n_frames = _number_of_frames(ds, pixel_length)
    header = _header_values_of(ds)
    image_type = header.get("ImageType", [])
    enhanced = sop_class in T.ENHANCED_SOP_CLASSES or _elem_value(ds, T.PER_FRAME_FUNCTIONAL_GROUPS) is not None
    if enhanced:
        _enhanced_header_values(ds, header)
        frames = _enhanced_frames(ds, max(n_frames, 1))
        bs = {f.b_value for f in frames if f.b_value is not None}
    else:
        iop = _floats(_elem_value(ds, T.IMAGE_ORIENTATION_PATIENT), 6)
        ipp = _floats(_elem_value(ds, T.IMAGE_POSITION_PATIENT), 3)
        temporal = _int(_elem_value(ds, T.TEMPORAL_POSITION_IDENTIFIER))
        frames = [
            FileFrame(i, ipp, iop, b_value_of(ds), temporal, _float(_elem_value(ds, T.TRIGGER_TIME)))
            for i in range(max(n_frames, 1))
        ]
        bs = {frames[0].b_value} if frames[0].b_value is not None else set()
    if bs:
        header["BValues"] = sorted(bs)
    return FileHeader(
        path=path,
        series_uid=series_uid,
        study_uid=_text(_elem_value(ds, T.STUDY_INSTANCE_UID)),
        patient_id=_text(_elem_value(ds, T.PATIENT_ID)),
        patient_name=_text(_elem_value(ds, T.PATIENT_NAME)),
        study_date=_text(_elem_value(ds, T.STUDY_DATE)),
        series_number=_int(_elem_value(ds, T.SERIES_NUMBER)),
        instance_number=_int(_elem_value(ds, T.INSTANCE_NUMBER)),
        acquisition_number=_int(_elem_value(ds, T.ACQUISITION_NUMBER)),
        description=_text(_elem_value(ds, T.SERIES_DESCRIPTION)),
        protocol_name=_text(_elem_value(ds, T.PROTOCOL_NAME)),
        manufacturer=_text(_elem_value(ds, T.MANUFACTURER)),
        sop_class_uid=sop_class,
        modality=modality or ("OT" if secondary_capture else "MR"),
        frames=frames,
        mosaic_tiles=mosaic_tiles(ds, image_type),
        header=header,
        sop_instance_uid=_text(_elem_value(ds, T.SOP_INSTANCE_UID)),
    )


#: Result of reading one file: its header, or the reason it cannot be used.
Outcome = Union[FileHeader, str]
