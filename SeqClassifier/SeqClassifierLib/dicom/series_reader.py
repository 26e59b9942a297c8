"""Find MR series on disk: walk folders, read headers only, group into series.

Discovery reads each file's header up to (not including) the pixel data and
keeps only the attributes listed in :mod:`.dicom_tags`.  Files are grouped by
SeriesInstanceUID; each series gets its 2D images (*frames*) ordered by
b-value / temporal position and then by position along the slice normal.

Handled layouts:

* classic single-frame MR, one file per slice, any number of series per folder;
* enhanced (and legacy converted enhanced) multi-frame MR: per-frame
  positions, b-values (MRDiffusionSequence) and temporal positions
  (FrameContentSequence) come from the functional groups;
* Siemens mosaic: one file holds all slices of a volume as tiles;
* one series holding several b-values or time points.

Everything that cannot be used (not DICOM, empty, truncated, DICOMDIR, non-MR,
missing SeriesInstanceUID, permission denied, ...) is reported as a
:class:`~.records.SkippedFile` with its path and the reason, and the run goes
on.  Nothing is ever written to the input folders.
"""

from __future__ import annotations

import math
import os
import re
import struct
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from dataclasses import replace as dataclasses_replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import pydicom
from pydicom.errors import InvalidDicomError

from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.atomic import atomic_write_text
from SeqClassifierLib.labels import Plane
from SeqClassifierLib.records import FrameRef, SeriesRecord, SkippedFile

PathLike = Union[str, os.PathLike]
ProgressFn = Callable[[int, int], None]

#: Plausible range of a diffusion b-value in s/mm^2; values outside are malformed.
MAX_B_VALUE = 100_000.0


class UnusableFile(Exception):
    """A file that discovery cannot use; the message is the reason shown to the user."""


# ----------------------------------------------------------------------------
# Value helpers: a missing or malformed value becomes None, never an exception.
# ----------------------------------------------------------------------------

def _text(value: Any) -> str:
    if type(value) is str:
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1", "replace").strip(" \x00")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(_text(v) for v in value)
    return str(value).strip()


def _text_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_text(v).upper() for v in value if _text(v)]
    text = _text(value)
    return [t.strip().upper() for t in text.split("\\") if t.strip()]


def _float(value: Any) -> Optional[float]:
    """First numeric value of an element value, or None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return _float(value[0]) if len(value) else None
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace").strip(" \x00")
    try:
        out = float(value)
    except (TypeError, ValueError):
        text = str(value).strip().split("\\")[0]
        try:
            out = float(text)
        except ValueError:
            return None
    return out if math.isfinite(out) else None


def _floats(value: Any, n: int) -> Optional[tuple[float, ...]]:
    """Exactly ``n`` finite floats, or None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace").strip(" \x00").split("\\")
    elif isinstance(value, str):
        value = value.split("\\")
    try:
        items = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(items) != n or not all(math.isfinite(v) for v in items):
        return None
    return tuple(items)


def _int(value: Any) -> Optional[int]:
    f = _float(value)
    return int(f) if f is not None and abs(f) < 2**62 else None


class _Value:
    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


class ValueDataset:
    """Already-decoded header values by tag (what :mod:`.fast_header` produces).

    Offers the small part of pydicom's ``Dataset`` API the reader uses
    (``get``, ``in``, ``file_meta``); values are plain str / int / float /
    bytes or lists of them, which the value helpers here treat exactly like
    pydicom's str / IS / DSfloat / bytes / MultiValue.
    """

    __slots__ = ("values", "file_meta")

    def __init__(self, values: dict, file_meta: Any = None):
        self.values = values
        self.file_meta = file_meta

    def get(self, tag: Any, default: Any = None) -> Any:
        if tag in self.values:
            return _Value(self.values[tag])
        return default

    def __contains__(self, tag: Any) -> bool:
        return tag in self.values

    def __getitem__(self, tag: Any) -> Any:
        if tag in self.values:
            return _Value(self.values[tag])
        raise KeyError(tag)


def _elem_value(ds: Any, tag: Any) -> Any:
    """Value of ``tag`` in ``ds`` or None; never raises on malformed elements."""
    if type(ds) is ValueDataset:
        return ds.values.get(tag)
    try:
        elem = ds.get(tag)
        return None if elem is None else elem.value
    except Exception:  # malformed value that pydicom cannot convert
        return None


def _first_item(ds: Any, tag: Any) -> Any:
    seq = _elem_value(ds, tag)
    try:
        return seq[0] if seq else None
    except Exception:
        return None


def _private_creator_ok(ds: Any, creator_tag: Any, vendor: str) -> bool:
    """Whether the vendor's private block 0x10 really belongs to that vendor.

    True when the block's private creator is the vendor's, or when no creator
    is recorded at all (anonymisers often strip creators) and the Manufacturer
    is that vendor.  A block owned by another creator is never trusted.
    """
    creator = _text(_elem_value(ds, creator_tag)).upper()
    if creator:
        return creator in {c.upper() for c in T.PRIVATE_CREATORS[creator_tag]}
    return vendor in _text(_elem_value(ds, T.MANUFACTURER)).upper()


def _valid_b(b: Optional[float]) -> Optional[float]:
    if b is None or not (0.0 <= b <= MAX_B_VALUE):
        return None
    return float(round(b, 3))


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


def b_value_of(ds: Any) -> Optional[float]:
    """b-value of a classic single-frame image: standard tag first, then vendors'."""
    b = _valid_b(_float(_elem_value(ds, T.DIFFUSION_B_VALUE)))
    if b is not None:
        return b
    if T.SIEMENS_B_VALUE in ds and _private_creator_ok(ds, T.SIEMENS_CREATOR, "SIEMENS"):
        b = siemens_b_value(_elem_value(ds, T.SIEMENS_B_VALUE))
        if b is not None:
            return b
    if T.GE_B_VALUE in ds and _private_creator_ok(ds, T.GE_CREATOR, "GE"):
        b = ge_b_value(_elem_value(ds, T.GE_B_VALUE))
        if b is not None:
            return b
    if T.PHILIPS_B_VALUE in ds and _private_creator_ok(ds, T.PHILIPS_CREATOR, "PHILIPS"):
        b = philips_b_value(_elem_value(ds, T.PHILIPS_B_VALUE))
        if b is not None:
            return b
    return None


#: Lines of the Siemens protocol ("ASCCONV" text of MrPhoenixProtocol) that give the
#: diffusion weightings; the protocol leaves out entries whose value is 0.
_PHOENIX_N_WEIGHTINGS = re.compile(rb"^sDiffusion\.lDiffWeightings\s*=\s*(\d+)", re.M)
_PHOENIX_B_VALUE = re.compile(rb"^sDiffusion\.alBValue\[(\d+)\]\s*=\s*(\d+(?:\.\d*)?)", re.M)


def phoenix_b_values(csa_series_header: bytes) -> list[float]:
    """b-values of the diffusion weightings in a Siemens CSA series header (0029,1020)
    (its MrPhoenixProtocol "ASCCONV" text), sorted; [] when it describes none."""
    start = csa_series_header.find(b"### ASCCONV BEGIN")
    if start < 0:
        return []
    end = csa_series_header.find(b"### ASCCONV END", start)
    text = csa_series_header[start:end if end > 0 else None]
    m = _PHOENIX_N_WEIGHTINGS.search(text)
    if m is None:
        return []
    n = min(int(m.group(1)), 64)
    given = {int(i): float(v) for i, v in _PHOENIX_B_VALUE.findall(text)}
    values = {_valid_b(given.get(i, 0.0)) for i in range(n)}
    return sorted(b for b in values if b is not None)


def siemens_protocol_b_values(path: PathLike) -> list[float]:
    """b-values from the Siemens protocol stored in one file's CSA series header, for a
    diffusion series whose per-image b-value tags were removed (anonymised exports);
    [] when the file has no such header.  Reads that one element, never pixels."""
    try:
        ds = pydicom.dcmread(os.fspath(path), stop_before_pixels=True, force=True,
                             specific_tags=[T.MANUFACTURER, T.SIEMENS_CSA_CREATOR, T.SIEMENS_CSA_SERIES_HEADER])
        raw = _elem_value(ds, T.SIEMENS_CSA_SERIES_HEADER)
    except Exception:  # unreadable now: keep what the headers gave
        return []
    if not isinstance(raw, bytes) or not _private_creator_ok(ds, T.SIEMENS_CSA_CREATOR, "SIEMENS"):
        return []
    return phoenix_b_values(raw)


def slice_normal(iop: Optional[Sequence[float]]) -> Optional[tuple[float, float, float]]:
    """Unit normal (row x column) of ImageOrientationPatient, or None if degenerate."""
    if iop is None or len(iop) != 6:
        return None
    r, c = iop[:3], iop[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(sum(v * v for v in n))
    if norm < 1e-6:
        return None
    return (n[0] / norm, n[1] / norm, n[2] / norm)


def plane_of(normal: Optional[Sequence[float]]) -> tuple[Plane, Optional[float]]:
    """Nearest anatomical plane of a slice normal and the angle to its axis (degrees).

    A prostate T2w tilted 10-20 degrees is still axial: the plane is the axis
    the normal is closest to, whatever the tilt.
    """
    if normal is None:
        return Plane.UNKNOWN, None
    axis = max(range(3), key=lambda i: abs(normal[i]))
    angle = math.degrees(math.acos(min(1.0, abs(normal[axis]))))
    return (Plane.SAGITTAL, Plane.CORONAL, Plane.AXIAL)[axis], angle


# ----------------------------------------------------------------------------
# One file
# ----------------------------------------------------------------------------

#: Attributes copied into ``SeriesRecord.header`` for the feature extractor.
_HEADER_FIELDS: dict[str, Any] = {
    "ImageType": T.IMAGE_TYPE,
    "ScanningSequence": T.SCANNING_SEQUENCE,
    "SequenceVariant": T.SEQUENCE_VARIANT,
    "ScanOptions": T.SCAN_OPTIONS,
    "MRAcquisitionType": T.MR_ACQUISITION_TYPE,
    "SequenceName": T.SEQUENCE_NAME,
    "PulseSequenceName": T.PULSE_SEQUENCE_NAME,
    "EchoPulseSequence": T.ECHO_PULSE_SEQUENCE,
    "EchoTime": T.ECHO_TIME,
    "RepetitionTime": T.REPETITION_TIME,
    "InversionTime": T.INVERSION_TIME,
    "FlipAngle": T.FLIP_ANGLE,
    "EchoTrainLength": T.ECHO_TRAIN_LENGTH,
    "ContrastBolusAgent": T.CONTRAST_BOLUS_AGENT,
    "SliceThickness": T.SLICE_THICKNESS,
    "SpacingBetweenSlices": T.SPACING_BETWEEN_SLICES,
    "PixelSpacing": T.PIXEL_SPACING,
    "Rows": T.ROWS,
    "Columns": T.COLUMNS,
    "MagneticFieldStrength": T.MAGNETIC_FIELD_STRENGTH,
    "NumberOfTemporalPositions": T.NUMBER_OF_TEMPORAL_POSITIONS,
    "TriggerTime": T.TRIGGER_TIME,
    "ManufacturerModelName": T.MANUFACTURER_MODEL_NAME,
    "RescaleSlope": T.RESCALE_SLOPE,
    "RescaleIntercept": T.RESCALE_INTERCEPT,
    # Times and acquisition number: the study-context stage orders a study's series in time.
    "SeriesTime": T.SERIES_TIME,
    "AcquisitionTime": T.ACQUISITION_TIME,
    "ContentTime": T.CONTENT_TIME,
    "AcquisitionNumber": T.ACQUISITION_NUMBER,
}
_LIST_FIELDS = {"ImageType", "ScanningSequence", "SequenceVariant", "ScanOptions"}
_NUMBER_FIELDS = {
    "EchoTime", "RepetitionTime", "InversionTime", "FlipAngle", "EchoTrainLength",
    "SliceThickness", "SpacingBetweenSlices", "Rows", "Columns",
    "MagneticFieldStrength", "NumberOfTemporalPositions", "TriggerTime",
    "RescaleSlope", "RescaleIntercept", "AcquisitionNumber",
}

# Where enhanced multi-frame objects keep the attributes above (shared or
# per-frame functional groups): keyword -> (macro sequence, attribute).
_ENHANCED_FIELDS: dict[str, tuple[Any, Any]] = {
    "EchoTime": (T.MR_ECHO_SEQUENCE, T.EFFECTIVE_ECHO_TIME),
    "RepetitionTime": (T.MR_TIMING_SEQUENCE, T.REPETITION_TIME),
    "FlipAngle": (T.MR_TIMING_SEQUENCE, T.FLIP_ANGLE),
    "EchoTrainLength": (T.MR_TIMING_SEQUENCE, T.ECHO_TRAIN_LENGTH),
    "SliceThickness": (T.PIXEL_MEASURES_SEQUENCE, T.SLICE_THICKNESS),
    "SpacingBetweenSlices": (T.PIXEL_MEASURES_SEQUENCE, T.SPACING_BETWEEN_SLICES),
    "PixelSpacing": (T.PIXEL_MEASURES_SEQUENCE, T.PIXEL_SPACING),
    "RescaleSlope": (T.PIXEL_VALUE_TRANSFORMATION_SEQUENCE, T.RESCALE_SLOPE),
    "RescaleIntercept": (T.PIXEL_VALUE_TRANSFORMATION_SEQUENCE, T.RESCALE_INTERCEPT),
    "ImageType": (T.MR_IMAGE_FRAME_TYPE_SEQUENCE, T.FRAME_TYPE),
}


@dataclass
class _Frame:
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
    frames: list[_Frame]
    mosaic_tiles: int = 0
    header: dict[str, Any] = field(default_factory=dict)


def _header_values(ds: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, tag in _HEADER_FIELDS.items():
        value = _elem_value(ds, tag)
        if value is None:
            continue
        if key in _LIST_FIELDS:
            out[key] = _text_list(value)
        elif key == "PixelSpacing":
            ps = _floats(value, 2)
            if ps is not None:
                out[key] = list(ps)
        elif key in _NUMBER_FIELDS:
            f = _float(value)
            if f is not None:
                out[key] = f
        else:
            text = _text(value)
            if text:
                out[key] = text
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


def _enhanced_frames(ds: Any, n_frames: int) -> list[_Frame]:
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
            _Frame(i, ipp, iop or shared_iop, b if b is not None else shared_b,
                   temporal, trigger, stack_pos)
        )
    return frames


def _mosaic_tiles(ds: Any, image_type: list[str]) -> int:
    if "MOSAIC" not in image_type:
        return 0
    n = _int(_elem_value(ds, T.SIEMENS_MOSAIC_IMAGES))
    if n and n > 0:
        return n
    # Without NumberOfImagesInMosaic, infer the tile grid from the acquisition
    # matrix: tiles are (matrix x matrix) pieces of the big image.
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


def _looks_like_raw_dataset(path: str) -> bool:
    """True if a file without the 'DICM' preamble starts like a DICOM data set.

    Such files (no 128-byte preamble, no file meta) still occur; they begin with
    a group 0x0008 element in little-endian byte order.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    if len(head) < 8:
        return False
    group, elem = struct.unpack("<HH", head[:4])
    return group in (0x0002, 0x0008) and elem < 0x1000


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


def _read_dataset_pydicom(path: str) -> tuple[Any, int, int, bytes]:
    """pydicom's view of the header: (data set, file size, pixel data offset, its first 12 bytes)."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise UnusableFile(f"cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise UnusableFile("empty file (0 bytes)")
    tags = list(T.HEADER_TAGS)
    try:
        with open(path, "rb") as fh:
            try:
                ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=tags)
            except InvalidDicomError:
                if not _looks_like_raw_dataset(path):
                    raise UnusableFile("not a DICOM file (no 'DICM' marker and no DICOM data set)") from None
                fh.seek(0)
                ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=tags, force=True)
            pixel_offset = fh.tell()
            pixel_head = fh.read(12)
    except UnusableFile:
        raise
    except PermissionError:
        raise UnusableFile("cannot read: permission denied") from None
    except OSError as exc:
        if exc.errno is None:  # pydicom's own "No tag to read at ...": the bytes, not the disk
            raise UnusableFile(f"corrupt or truncated DICOM header ({exc})") from None
        raise UnusableFile(f"cannot read: {exc.strerror or exc}") from None
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise UnusableFile(f"corrupt or truncated DICOM header ({type(exc).__name__}: {exc})") from None
    return ds, size, pixel_offset, pixel_head


def read_file_header_pydicom(path: PathLike) -> FileHeader:
    """:func:`read_file_header` through pydicom only (the reference the fast reader must match)."""
    path = os.fspath(path)
    ds, size, pixel_offset, pixel_head = _read_dataset_pydicom(path)
    return _header_from_dataset(path, ds, size, pixel_offset, pixel_head)


#: Use :mod:`.fast_header` before pydicom (set SEQCLASSIFIER_FAST_HEADERS=0 to turn it off).
FAST_HEADERS = os.environ.get("SEQCLASSIFIER_FAST_HEADERS", "1").strip().lower() not in ("0", "false", "no", "off")


def read_file_header(path: PathLike, *, fast: Optional[bool] = None) -> FileHeader:
    """Read what discovery needs from one file's header (never its pixel data).

    Tries :func:`.fast_header.read_file_header_fast` first (unless ``fast`` is
    False or :data:`FAST_HEADERS` is off); whatever it is not certain about
    is read by pydicom (:func:`read_file_header_pydicom`).  Both give the same
    result.  Raises :class:`UnusableFile` with a human-readable reason for
    anything that is not a usable MR image.
    """
    path = os.fspath(path)
    if FAST_HEADERS if fast is None else fast:
        from SeqClassifierLib.dicom.fast_header import FastPathUnsupported, read_file_header_fast

        try:
            return read_file_header_fast(path)
        except FastPathUnsupported:
            pass
    return read_file_header_pydicom(path)


def _header_from_dataset(path: str, ds: Any, size: int, pixel_offset: int, pixel_head: bytes) -> FileHeader:
    """Checks and values shared by the pydicom and the fast reader (``ds``: either's data set)."""
    meta = getattr(ds, "file_meta", None)
    sop_class = _text(_elem_value(ds, T.SOP_CLASS_UID)) or (
        _text(getattr(meta, "MediaStorageSOPClassUID", "")) if meta is not None else ""
    )
    if sop_class == T.MEDIA_STORAGE_DIRECTORY or os.path.basename(path).upper() == "DICOMDIR":
        raise UnusableFile("DICOMDIR (a media index, not an image); the image files it lists are read directly")
    modality = _text(_elem_value(ds, T.MODALITY)).upper()
    if modality and modality != "MR":
        raise UnusableFile(f"not an MR image (Modality {modality})")
    # A parse that ran into the end of the file before any pixel data, with the
    # image's identity incomplete, is a cut copy -- unless the SOP class (a
    # complete, registered UID) already says it is not an MR image.
    ended = len(pixel_head) < 8
    registered = sop_class in pydicom.uid.UID_dictionary
    if ended and not (sop_class and registered and sop_class not in T.MR_SOP_CLASSES) and (
        not _text(_elem_value(ds, T.SERIES_INSTANCE_UID))
        or _elem_value(ds, T.ROWS) is None or _elem_value(ds, T.COLUMNS) is None
    ):
        raise UnusableFile(f"truncated: the file ends after {size} bytes, inside the DICOM header "
                           "(no pixel data)")
    if not modality and sop_class and sop_class not in T.MR_SOP_CLASSES:
        raise UnusableFile(f"not an MR image (SOP class {sop_class})")
    if sop_class and sop_class not in T.MR_SOP_CLASSES and modality == "MR":
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
    header = _header_values(ds)
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
            _Frame(i, ipp, iop, b_value_of(ds), temporal, _float(_elem_value(ds, T.TRIGGER_TIME)))
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
        modality=modality or "MR",
        frames=frames,
        mosaic_tiles=_mosaic_tiles(ds, image_type),
        header=header,
    )


# ----------------------------------------------------------------------------
# Walking folders
# ----------------------------------------------------------------------------

def _special_kind(path: str) -> str:
    """What a path that is neither a regular file nor a folder is, in words."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"cannot stat: {exc.strerror or exc}"
    for test, name in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return f"not a regular file: {name}; not read"
    return "not a regular file; not read"


def iter_files(paths: Iterable[PathLike], skipped: list[SkippedFile]) -> Iterator[str]:
    """Yield every regular file under ``paths`` (files or folders), once each.

    Symbolic links to folders are followed, but a folder already visited (a
    symlink loop) is not entered twice.  Missing paths, unreadable folders,
    broken links and special files (pipes, sockets, devices: opening a pipe
    would block forever) are reported in ``skipped``.
    """
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()

    def emit(p: str, real: Optional[str] = None) -> Iterator[str]:
        if real is None:
            real = os.path.realpath(p)
        if real not in seen_files:
            seen_files.add(real)
            yield p

    for raw in paths:
        root = os.fspath(raw)
        if os.path.isfile(root):
            yield from emit(root)
            continue
        if not os.path.isdir(root):
            skipped.append(SkippedFile(root, _special_kind(root) if os.path.exists(root)
                                       else "no such file or folder"))
            continue
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                st = os.stat(folder)
            except OSError as exc:
                skipped.append(SkippedFile(folder, f"cannot open folder: {exc.strerror or exc}"))
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                continue
            seen_dirs.add(key)
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                skipped.append(SkippedFile(folder, f"cannot list folder: {exc.strerror or exc}"))
                continue
            subdirs = []
            # realpath(folder/name) is realpath(folder)/name unless name is a link:
            # one realpath per folder instead of one per file.
            real_folder = os.path.realpath(folder)
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=True):
                        subdirs.append(entry.path)
                    elif entry.is_file(follow_symlinks=True):
                        yield from emit(entry.path, None if entry.is_symlink()
                                        else os.path.join(real_folder, entry.name))
                    elif entry.is_symlink() and not os.path.exists(entry.path):
                        skipped.append(SkippedFile(entry.path, "broken symbolic link"))
                    else:
                        skipped.append(SkippedFile(entry.path, _special_kind(entry.path)))
                except OSError as exc:
                    skipped.append(SkippedFile(entry.path, f"cannot stat: {exc.strerror or exc}"))
            stack.extend(reversed(subdirs))


# ----------------------------------------------------------------------------
# Grouping into series
# ----------------------------------------------------------------------------

def _majority(values: Iterable[Any]) -> Any:
    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None


def _round_iop(iop: Optional[tuple[float, ...]]) -> Optional[tuple[float, ...]]:
    return tuple(round(v, 3) for v in iop) if iop is not None else None


def build_series(headers: list[FileHeader]) -> SeriesRecord:
    """Assemble one :class:`SeriesRecord` from the headers of its files."""
    headers = sorted(headers, key=lambda h: (h.acquisition_number or 0, h.instance_number or 0, h.path))
    first = headers[0]
    iop_key = _majority(_round_iop(f.iop) for h in headers for f in h.frames)
    iop = None
    if iop_key is not None:
        iop = next(f.iop for h in headers for f in h.frames if _round_iop(f.iop) == iop_key)
    normal = slice_normal(iop)
    plane, obliquity = plane_of(normal)

    # Temporal positions: explicit indices where present; otherwise the number
    # of repeats of the same slice position at the same b-value (4D series
    # without TemporalPositionIdentifier, e.g. many GE DCE exports).
    entries = []  # (header, frame, location)
    for h in headers:
        for f in h.frames:
            loc = None
            if (normal is not None and f.ipp is not None and h.mosaic_tiles == 0
                    and _round_iop(f.iop) == iop_key):
                loc = round(sum(p * n for p, n in zip(f.ipp, normal)), 3)
            entries.append((h, f, loc))
    temporal_ids = {f.temporal for _, f, _ in entries if f.temporal is not None}
    b_values = sorted({f.b_value for _, f, _ in entries if f.b_value is not None})
    if len(temporal_ids) > 1:
        n_temporal = len(temporal_ids)
    else:
        repeats = Counter((loc, f.b_value) for _, f, loc in entries if loc is not None)
        n_rep = max(repeats.values()) if repeats else 1
        n_temporal = n_rep if (n_rep > 1 and len(b_values) <= 1) else 1
    declared = _int(first.header.get("NumberOfTemporalPositions"))
    if declared and declared > n_temporal:
        n_temporal = declared

    def order(item: tuple[FileHeader, _Frame, Optional[float]]) -> tuple:
        h, f, loc = item
        return (
            f.b_value if f.b_value is not None else -1.0,
            f.temporal if f.temporal is not None else 0,
            loc if loc is not None else float(f.stack_position or h.instance_number or 0),
            h.instance_number or 0,
            f.frame,
        )

    entries.sort(key=order)
    frames = [
        FrameRef(
            path=h.path,
            frame=f.frame,
            location=loc,
            b_value=f.b_value,
            temporal_position=f.temporal,
            mosaic_tiles=h.mosaic_tiles,
        )
        for h, f, loc in entries
    ]
    files = list(dict.fromkeys(fr.path for fr in frames))
    header = dict(first.header)
    if (not b_values and "DIFFUSION" in [str(v).upper() for v in header.get("ImageType", [])]
            and (not first.manufacturer or "SIEMENS" in first.manufacturer.upper())):
        # A Siemens diffusion series stripped of its b-value tags: the protocol still has them.
        b_values = siemens_protocol_b_values(first.path)
        if b_values:
            header["BValueSource"] = "Siemens protocol (CSA series header)"
    if b_values:
        header["BValues"] = b_values
    return SeriesRecord(
        series_uid=first.series_uid,
        study_uid=first.study_uid,
        patient_id=first.patient_id,
        patient_name=first.patient_name,
        study_date=first.study_date,
        series_number=first.series_number,
        description=first.description,
        protocol_name=first.protocol_name,
        modality=first.modality,
        manufacturer=first.manufacturer,
        sop_class_uid=first.sop_class_uid,
        files=files,
        frames=frames,
        plane=plane,
        normal=normal,
        obliquity_deg=None if obliquity is None else round(obliquity, 2),
        b_values=b_values,
        temporal_positions=n_temporal,
        is_multiframe=any(len(h.frames) > 1 for h in headers),
        is_mosaic=any(h.mosaic_tiles > 0 for h in headers),
        header=header,
    )


@dataclass
class Discovery:
    """Result of :func:`discover_series`."""

    series: list[SeriesRecord]
    skipped: list[SkippedFile]
    n_files: int

    def by_uid(self) -> dict[str, SeriesRecord]:
        return {s.series_uid: s for s in self.series}


def _series_sort_key(s: SeriesRecord) -> tuple:
    return (s.patient_id, s.study_date, s.study_uid,
            s.series_number if s.series_number is not None else 1 << 30, s.series_uid)


def group_headers(headers: Iterable[FileHeader]) -> list[SeriesRecord]:
    """Group file headers by SeriesInstanceUID into ordered series records."""
    groups: dict[str, list[FileHeader]] = defaultdict(list)
    for h in headers:
        groups[h.series_uid].append(h)
    return sorted((build_series(hs) for hs in groups.values()), key=_series_sort_key)


# ----------------------------------------------------------------------------
# Reading many files: serial or in worker processes, with an optional cache
# ----------------------------------------------------------------------------

#: Result of reading one file: its header, or the reason it cannot be used.
_Outcome = Union[FileHeader, str]


def _read_one(path: str) -> _Outcome:
    try:
        return read_file_header(path)
    except UnusableFile as exc:
        return str(exc)
    except Exception as exc:  # a reader bug must not stop a run (nor a worker)
        return f"unexpected error while reading the header ({type(exc).__name__}: {exc})"


def _read_chunk(paths: Sequence[str]) -> list[_Outcome]:
    """Worker-process entry point: one outcome per path, in order."""
    return [_read_one(p) for p in paths]


#: Minimum number of files to read before worker processes pay off, by start
#: method (measured: fork ~10 ms to start, forkserver ~230 ms the first time in
#: a process and ~15 ms after, spawn ~300 ms; one worker saves ~0.07 ms/file).
PARALLEL_MIN_FILES = {"fork": 1500, "forkserver": 4000, "spawn": 10000}
#: Environment override of ``workers`` (an integer; 0 or 1: read in this process only).
WORKERS_ENV = "SEQCLASSIFIER_WORKERS"


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _start_method() -> str:
    """``fork`` on Linux while no other Python thread runs (fast, safe enough for
    this pure-Python work); else ``forkserver`` where available; else ``spawn``."""
    import multiprocessing as mp
    import threading

    methods = mp.get_all_start_methods()
    if sys.platform.startswith("linux") and "fork" in methods and threading.active_count() == 1:
        return "fork"
    if "forkserver" in methods and sys.platform != "darwin":
        return "forkserver"
    return "spawn"


def _plan_workers(n_files: int, workers: Optional[int]) -> tuple[int, str]:
    """(number of readers including this process, start method) for ``n_files``."""
    if workers is None:
        env = os.environ.get(WORKERS_ENV, "").strip()
        if env:
            try:
                workers = int(env)
            except ValueError:
                workers = None
    method = _start_method()
    if workers is None:
        # Inside the Slicer application itself (not its PythonSlicer CLI
        # children) never start processes unasked: forking a GUI or spawning
        # sys.executable (the Slicer launcher) is not safe there.
        if "slicer" in sys.modules or n_files < PARALLEL_MIN_FILES.get(method, 10000):
            return 1, method
        workers = min(_available_cpus(), 8)
    workers = max(1, min(int(workers), 64, max(1, n_files // 64)))
    return workers, method


def _read_parallel(files: list[str], n_readers: int, method: str,
                   report: Callable[[int], None]) -> list[_Outcome]:
    """Read ``files`` with ``n_readers - 1`` worker processes plus this one; same order as serial."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    n = len(files)
    chunk = max(32, min(1024, n // (n_readers * 6) or 1))
    bounds = [(i, min(i + chunk, n)) for i in range(0, n, chunk)]
    out: list[Optional[list[_Outcome]]] = [None] * len(bounds)
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload([__name__])
    pool = ProcessPoolExecutor(max_workers=n_readers - 1, mp_context=ctx)
    pending: dict[Any, int] = {}
    next_chunk = 0
    try:
        while next_chunk < len(bounds) or pending:
            # Keep every worker two chunks ahead; this process reads the next one itself.
            while next_chunk < len(bounds) and len(pending) < 2 * (n_readers - 1):
                lo, hi = bounds[next_chunk]
                pending[pool.submit(_read_chunk, files[lo:hi])] = next_chunk
                next_chunk += 1
            if next_chunk < len(bounds):
                lo, hi = bounds[next_chunk]
                out[next_chunk] = _read_chunk(files[lo:hi])
                report(hi - lo)
                next_chunk += 1
                done = [f for f in pending if f.done()]
            else:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                out[i] = fut.result()
                report(bounds[i][1] - bounds[i][0])
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [o for part in out for o in part]  # type: ignore[union-attr]


def discover_series(
    paths: Union[PathLike, Iterable[PathLike]],
    *,
    progress: Optional[ProgressFn] = None,
    workers: Optional[int] = None,
    cache: Optional["HeaderCache"] = None,
) -> Discovery:
    """Find every MR series under ``paths`` (folders and/or files).

    ``progress(done, total)`` is called as files are read.  Unusable files end
    up in :attr:`Discovery.skipped` with their reason; nothing raises for bad
    input.

    ``workers``: number of header readers (this process counts as one); None
    picks by file count and platform (:data:`PARALLEL_MIN_FILES`; environment
    variable ``SEQCLASSIFIER_WORKERS`` overrides), 0 or 1 reads in this process
    only.  The result is identical whatever the number of workers.

    ``cache``: a :class:`HeaderCache`; files whose path, size and modification
    time (and inode / change time) are unchanged since they were cached are not
    read again.  The caller saves a persistent cache (:meth:`HeaderCache.save`).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    skipped: list[SkippedFile] = []
    files = list(iter_files(paths, skipped))
    total = len(files)
    outcomes: list[Optional[_Outcome]] = [None] * total
    stats: list[Optional[os.stat_result]] = [None] * total
    todo = list(range(total))
    if cache is not None:
        todo = []
        for i, path in enumerate(files):
            hit, st = cache.lookup(path)
            stats[i] = st
            if hit is None:
                todo.append(i)
            else:
                outcomes[i] = hit

    done = total - len(todo)
    last = [0]

    def report(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None and (done == total or done - last[0] >= 50):
            last[0] = done
            progress(done, total)

    if progress is not None and done and done < total:
        progress(done, total)
        last[0] = done
    todo_paths = [files[i] for i in todo]
    n_readers, method = _plan_workers(len(todo_paths), workers)
    if n_readers > 1:
        read = _read_parallel(todo_paths, n_readers, method, report)
    else:
        read = []
        for path in todo_paths:
            read.append(_read_one(path))
            report(1)
    for i, outcome in zip(todo, read):
        outcomes[i] = outcome
        if cache is not None:
            cache.store(files[i], stats[i], outcome)
    if progress is not None and total and last[0] != total:
        progress(total, total)

    headers: list[FileHeader] = []
    for path, outcome in zip(files, outcomes):
        if isinstance(outcome, FileHeader):
            headers.append(outcome)
        else:
            skipped.append(SkippedFile(path, str(outcome)))
    return Discovery(series=group_headers(headers), skipped=skipped, n_files=total)


# ----------------------------------------------------------------------------
# Header cache
# ----------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """Folder of the persistent header cache: :func:`.user_dirs.cache_root` (``$SEQCLASSIFIER_CACHE``,
    else ``~/.cache/seqclassifier``); never an input folder."""
    from SeqClassifierLib.config import cache_root

    return cache_root()


def _header_to_json(h: FileHeader) -> dict[str, Any]:
    d = {f: getattr(h, f) for f in (
        "series_uid", "study_uid", "patient_id", "patient_name", "study_date", "series_number",
        "instance_number", "acquisition_number", "description", "protocol_name", "manufacturer",
        "sop_class_uid", "modality", "mosaic_tiles", "header")}
    d["frames"] = [[f.frame, f.ipp, f.iop, f.b_value, f.temporal, f.trigger_time, f.stack_position]
                   for f in h.frames]
    return d


def _header_from_json(path: str, d: dict[str, Any]) -> FileHeader:
    frames = [_Frame(fr[0], None if fr[1] is None else tuple(fr[1]), None if fr[2] is None else tuple(fr[2]),
                     fr[3], fr[4], fr[5], fr[6]) for fr in d["frames"]]
    fields_ = {k: v for k, v in d.items() if k != "frames"}
    return FileHeader(path=path, frames=frames, **fields_)


class HeaderCache:
    """Headers already read, keyed by absolute path and checked against the file's stat.

    An entry is used only while the file's size, modification time (ns),
    inode and status-change time are those recorded; anything else is a miss
    and the file is read again.  Files modified in the last
    :attr:`RACY_SECONDS` are not cached (they may still be being written).
    Reasons for unusable files are cached too, except I/O errors ("cannot
    read ...") which may be transient.

    In memory by default; :meth:`load` / :meth:`save` persist it as JSON in
    ``path`` (default ``default_cache_dir() / "headers.json"``), written
    atomically, and never inside a folder being read.
    """

    #: Bump when FileHeader, HEADER_TAGS or any value rule changes.
    FORMAT = 1
    RACY_SECONDS = 2.0

    def __init__(self, path: Optional[PathLike] = None, *, max_entries: int = 50_000):
        self.path = Path(path) if path is not None else None
        self.max_entries = max_entries  # ~1.2 KB of JSON each: 50,000 files ~ 60 MB on disk
        self.changed = False
        self._entries: dict[str, tuple[tuple[int, int, int, int], Any]] = {}
        self.hits = 0
        self.misses = 0

    @classmethod
    def persistent(cls, path: Optional[PathLike] = None, **kw: Any) -> "HeaderCache":
        """A cache stored at ``path`` (default: the user cache folder), loaded now if it exists."""
        cache = cls(path if path is not None else default_cache_dir() / "headers.json", **kw)
        cache.load()
        return cache

    @staticmethod
    def _stamp() -> str:
        from SeqClassifierLib import __version__

        return f"{HeaderCache.FORMAT}:{__version__}:{len(T.HEADER_TAGS)}:{sum(int(t) for t in T.HEADER_TAGS)}"

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    @staticmethod
    def _key(st: os.stat_result) -> tuple[int, int, int, int]:
        return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)

    def lookup(self, path: PathLike) -> tuple[Optional[_Outcome], Optional[os.stat_result]]:
        """(cached outcome or None, the file's stat or None) for ``path``."""
        path = os.fspath(path)
        try:
            st = os.stat(path)
        except OSError:
            self.misses += 1
            return None, None
        entry = self._entries.get(os.path.abspath(path))
        if entry is None or entry[0] != self._key(st):
            self.misses += 1
            return None, st
        self.hits += 1
        value = entry[1]
        if isinstance(value, str):
            return value, st
        if not isinstance(value, FileHeader):  # loaded from JSON: convert once
            value = _header_from_json(path, value)
            self._entries[os.path.abspath(path)] = (entry[0], value)
        return (value if value.path == path else dataclasses_replace(value, path=path)), st

    def store(self, path: PathLike, st: Optional[os.stat_result], outcome: _Outcome) -> None:
        """Remember ``outcome`` for ``path`` as it was when ``st`` was taken."""
        import time

        if st is None or (isinstance(outcome, str) and outcome.startswith(("cannot read", "unexpected error"))):
            return
        if time.time() - st.st_mtime_ns / 1e9 < self.RACY_SECONDS:
            return
        key = os.path.abspath(os.fspath(path))
        if key not in self._entries and len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (self._key(st), outcome)
        self.changed = True

    def load(self) -> bool:
        """Read the persisted cache (if any); False when absent, unreadable or from another version."""
        import json

        if self.path is None or not self.path.is_file():
            return False
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
            if data.get("stamp") != self._stamp():
                return False
            for key, (stat_key, value) in data["entries"].items():
                self._entries[key] = (tuple(stat_key), value)
        except (OSError, ValueError, KeyError, TypeError):
            self._entries.clear()
            return False
        return True

    def save(self, inputs: Iterable[PathLike] = ()) -> Optional[Path]:
        """Write the cache atomically; never into (or under) any of ``inputs``.  Returns its path."""
        import json

        if self.path is None:
            return None
        target = Path(os.path.abspath(self.path))
        for root in inputs:
            root_abs = os.path.realpath(os.fspath(root))
            if os.path.isfile(root_abs):
                root_abs = os.path.dirname(root_abs)
            real_parent = os.path.realpath(target.parent)
            if real_parent == root_abs or real_parent.startswith(root_abs.rstrip(os.sep) + os.sep):
                raise ValueError(f"refusing to write the header cache {target} inside the input folder {root}")
        if not self.changed and target.is_file():
            return target  # nothing new since it was loaded or saved: no rewrite
        entries = {}
        for key, (stat_key, value) in self._entries.items():
            if isinstance(value, FileHeader):
                value = _header_to_json(value)
            entries[key] = [list(stat_key), value]
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, json.dumps({"stamp": self._stamp(), "entries": entries},
                                             allow_nan=False, separators=(",", ":")))
        self.changed = False
        return target
