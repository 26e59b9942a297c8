"""Reading the pixels of one image (frame) of a file.

:func:`read_native_frame` reads a classic native (uncompressed,
little-endian) single-frame monochrome image with the fast reader's walk
(:func:`.fast_header.walk_file`): the header parsed once, no pydicom, the
same array as pydicom's.  Anything else (compressed, multi-frame, colour,
big endian...) raises :class:`FastPathUnsupported`; read it with
:func:`pixel_array` (pydicom, any version: :mod:`.pydicom_compat`).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from SeqClassifierLib.dicom import pydicom_compat
from SeqClassifierLib.dicom import tags as T
from SeqClassifierLib.dicom.fast_header import (WANTED_WITH_PIXELS, FastPathUnsupported, FileMeta, sop_class_of,
                                                walk_file)
from SeqClassifierLib.dicom.values import ValueDataset

__all__ = ["FastPathUnsupported", "read_native_frame", "pixel_array", "luminance"]

#: ITU-R BT.601 luma weights of R, G, B (what a YBR_FULL image's Y channel holds).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def luminance(arr: np.ndarray) -> np.ndarray:
    """The grey image (float32, rows x columns) of a colour frame (rows x columns x 3 RGB, as
    :func:`pixel_array` gives colour on pydicom 2.4 and 3.x alike); a grey frame is returned as is."""
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        return arr
    rgb = arr[..., :3].astype(np.float32)
    return rgb @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)


def pixel_array(path: Any, index: Optional[int] = None) -> np.ndarray:
    """pydicom's pixel array of ``path`` (frame ``index`` of a multi-frame file, or
    all of it when None), on pydicom 2.4 and 3.x alike."""
    return pydicom_compat.pixel_array(os.fspath(path), index)


def read_native_frame(path: Any) -> tuple[np.ndarray, ValueDataset]:
    """``(pixels, dataset)`` of a classic single-frame native MR image, without pydicom.

    ``pixels`` equals ``pydicom.pixels.pixel_array(path)`` exactly (same
    values, dtype, shape; unused high bits corrected the same way) and is
    writeable.  ``dataset`` is a :class:`~.values.ValueDataset` with
    the header values (``get``, ``in``, ``[]``), e.g. for rescale
    slope/intercept.  Raises :class:`FastPathUnsupported` for anything else
    (compressed, big endian, multi-frame, colour, unusual bit depths, missing
    or odd Image Pixel attributes, ...): read those with pydicom.
    """
    values, meta, size, stop, head, data = walk_file(os.fspath(path), None, WANTED_WITH_PIXELS, True)
    sop_class, _ = sop_class_of(values, meta)

    def number(tag: Any) -> int:
        v = values.get(tag)
        if type(v) is not int:
            raise FastPathUnsupported(f"{tag} missing or not a single integer")
        return v

    rows, cols = number(T.ROWS), number(T.COLUMNS)
    samples = number(T.SAMPLES_PER_PIXEL)
    allocated, stored = number(T.BITS_ALLOCATED), number(T.BITS_STORED)
    representation = number(T.PIXEL_REPRESENTATION)
    photometric = values.get(T.PHOTOMETRIC_INTERPRETATION)
    n_frames = values.get(T.NUMBER_OF_FRAMES)
    if not (rows > 0 and cols > 0 and samples == 1 and allocated in (8, 16, 32)
            and 1 <= stored <= allocated and representation in (0, 1)
            and isinstance(photometric, str) and photometric.strip() in ("MONOCHROME1", "MONOCHROME2")
            and (n_frames is None or n_frames == 1)):
        raise FastPathUnsupported("not a plain monochrome single-frame image")
    n_bytes = rows * cols * (allocated // 8)
    if len(data) not in (n_bytes, n_bytes + 1):  # + 1: the pad byte of an odd length
        raise FastPathUnsupported("pixel data length differs from rows x columns")
    dtype = np.dtype(f"<{'i' if representation else 'u'}{allocated // 8}")
    arr = np.frombuffer(data, dtype=dtype, count=rows * cols).reshape(rows, cols).copy()
    if stored < allocated:  # as pydicom: ignore the unused high bits (sign-extends when signed)
        shift = allocated - stored
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr, ValueDataset(values, FileMeta(sop_class))
