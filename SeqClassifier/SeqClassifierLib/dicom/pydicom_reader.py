"""The reference header reader: pydicom's ``dcmread`` up to the pixel data.

:func:`read_file_header_pydicom` reads any file pydicom can (every transfer
syntax, enhanced multi-frame, odd encodings) and turns it into a
:class:`~.header.FileHeader` through :func:`~.header.header_from_dataset`;
the fast reader (:mod:`.fast_header`) must give exactly the same result.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from typing import Any, Optional, Union

import pydicom
import pydicom.uid
from pydicom.errors import InvalidDicomError

from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.dicom.header import FileHeader, UnusableFile, header_from_dataset

PathLike = Union[str, os.PathLike]


#: Bytes read to decide whether a file can be DICOM at all: the 128-byte preamble and 'DICM'.
SNIFF_BYTES = 132
NOT_DICOM = "not a DICOM file (no 'DICM' marker and no DICOM data set)"


def _starts_like_dataset(head: bytes) -> bool:
    """True if bytes without the 'DICM' preamble start like a DICOM data set.

    Such files (no 128-byte preamble, no file meta) still occur; they begin with
    a group 0x0002 or 0x0008 element in little-endian byte order.
    """
    if len(head) < 8:
        return False
    group, elem = struct.unpack("<HH", head[:4])
    return group in (0x0002, 0x0008) and elem < 0x1000


def _looks_like_raw_dataset(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return _starts_like_dataset(head)


def not_dicom_reason(path: str) -> Optional[str]:
    """:data:`NOT_DICOM` when the first :data:`SNIFF_BYTES` bytes rule DICOM out, else None.

    Reads at most :data:`SNIFF_BYTES` bytes, whatever the file's size (a 2 GB file
    of zeros is refused at once).  None also when the file cannot be opened or
    is shorter than 8 bytes: the readers report those with their own reasons.
    """
    try:
        with open(path, "rb", buffering=0) as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return None
    if len(head) < 8 or head[128:132] == b"DICM" or _starts_like_dataset(head):
        return None
    return NOT_DICOM


#: A deflated data set that inflates to more than this is refused (a "zip bomb" or a damaged file).
MAX_INFLATED = 1 << 30
_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"))


def _file_meta_end(raw: bytes) -> int:
    """Offset of the data set: after the preamble, 'DICM' and the group 0x0002 elements
    (always explicit VR little endian), as pydicom reads them."""
    pos = 132 if raw[128:132] == b"DICM" else 0
    while pos + 8 <= len(raw) and raw[pos:pos + 2] == b"\x02\x00":
        if raw[pos + 4:pos + 6] in _LONG_VRS:
            pos += 12 + struct.unpack_from("<I", raw, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", raw, pos + 6)[0]
    return pos


def _inflated(path: str, fh: Any, meta: Any, tags: list) -> tuple[Any, int, int, bytes]:
    """:func:`_read_dataset_pydicom` for the deflated transfer syntax: the data set inflated in
    memory, so that the pixel data's offset and length are those of the inflated stream (pydicom
    reads deflated files the same way, but does not say where the pixel data starts)."""
    fh.seek(0)
    raw = fh.read()
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw[_file_meta_end(raw):], MAX_INFLATED)
    except zlib.error as exc:
        raise UnusableFile(f"deflated transfer syntax: the data set does not inflate ({exc})") from None
    if inflater.unconsumed_tail:
        raise UnusableFile(f"deflated transfer syntax: the data set inflates to more than {MAX_INFLATED >> 20} MiB")
    buf = io.BytesIO(body)
    ds = pydicom.dcmread(buf, stop_before_pixels=True, specific_tags=tags, force=True)
    ds.file_meta = meta
    pixel_offset = buf.tell()
    return ds, len(body), pixel_offset, buf.read(12)


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
                    raise UnusableFile(NOT_DICOM) from None
                fh.seek(0)
                ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=tags, force=True)
            meta = getattr(ds, "file_meta", None)
            if getattr(meta, "TransferSyntaxUID", None) == pydicom.uid.DeflatedExplicitVRLittleEndian:
                return _inflated(path, fh, meta, tags)
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
    """:func:`.discovery.read_file_header` through pydicom only (the reference the fast reader must match)."""
    path = os.fspath(path)
    ds, size, pixel_offset, pixel_head = _read_dataset_pydicom(path)
    return header_from_dataset(path, ds, size, pixel_offset, pixel_head)
