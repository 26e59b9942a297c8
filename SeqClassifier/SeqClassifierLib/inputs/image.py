"""Image input: the center slice of a series, ready for a backbone.

Which image represents a series
-------------------------------
A series may hold several volumes (b-values, time points) and, for 3-plane
localizers, several orientations.  :func:`choose_volume` picks one volume by
this rule, in order:

1. only images in the series' majority orientation (a 3-plane localizer is
   represented by its majority plane);
2. **several b-values: the highest b-value.**  At high b, restricted
   diffusion is bright and fluid is dark, the contrast that tells DWI apart
   from T2w; the b≈0 image of a DWI series looks like a low-resolution T2w;
3. **several time points: the last one.**  A late dynamic frame is
   post-contrast (enhancing vessels and gland), the contrast that tells DCE
   apart from a pre-contrast T1 or a T1 map;
4. the center slice of that volume: the middle of its positions along the
   slice normal (for a Siemens mosaic, the middle tile).

Pixel values are read for that one image only (for enhanced multi-frame files
only that frame is decoded), rescale slope/intercept are applied, then
:func:`normalize_intensity` maps the 0.5-99.5 percentile range to [0, 1] and
the slice is padded to square and resized to the backbone's input size.

One image path
--------------
:func:`model_slice` is the one function that turns a series' center slice into
the model's image, ``[size, size]`` float32 in [0, 1]; :func:`standardize`
replicates it to 3 channels and applies the backbone's mean/std.  Inference
(:func:`prepare_image`, used by the classifier) is exactly
``standardize(model_slice(record, size), mean, std)``; training caches
``model_slice(record, size)`` per series and applies its random augmentation
(crop/scale, rotation, intensity) to that image before the same
standardisation, so with augmentation off the training input *is* the
inference input.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence

import numpy as np

from SeqClassifierLib.inputs import order_stats
from SeqClassifierLib.inputs.block_mean import block_mean
from SeqClassifierLib.records import FrameRef, SeriesRecord


class ImageUnavailable(Exception):
    """The series' image could not be read; the message says why (and what to install)."""


#: Decoder packages to suggest per transfer syntax family.
_DECODER_HINTS = {
    "JPEG Baseline": "pylibjpeg pylibjpeg-libjpeg (or pillow)",
    "JPEG Extended": "pylibjpeg pylibjpeg-libjpeg",
    "JPEG Lossless": "pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "JPEG-LS": "pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "JPEG 2000": "pylibjpeg pylibjpeg-openjpeg",
    "RLE": "pylibjpeg pylibjpeg-rle (or numpy alone with pydicom >= 3)",
    "Deflated": "(zlib, part of Python)",
}


def choose_volume(record: SeriesRecord) -> tuple[list[FrameRef], str]:
    """The frames of the one volume that represents the series, and why it was chosen."""
    frames = list(record.frames)
    if not frames:
        return [], "series has no images"
    reasons = []
    located = [f for f in frames if f.location is not None]
    if located and len(located) < len(frames):
        frames = located
        reasons.append("majority orientation")
    bs = sorted({f.b_value for f in frames if f.b_value is not None})
    if len(bs) > 1:
        frames = [f for f in frames if f.b_value == bs[-1]]
        reasons.append(f"highest b-value (b={bs[-1]:g})")
    ts = sorted({f.temporal_position for f in frames if f.temporal_position is not None})
    if len(ts) > 1:
        frames = [f for f in frames if f.temporal_position == ts[-1]]
        reasons.append(f"last time point ({ts[-1]} of {len(ts)})")
    elif record.temporal_positions > 1 and frames and frames[0].location is not None:
        # 4D series without temporal indices: repeated positions; keep the last repeat.
        by_loc: dict[float, FrameRef] = {}
        for f in frames:
            by_loc[f.location] = f  # frames are in acquisition order within a position
        frames = sorted(by_loc.values(), key=lambda f: f.location)
        reasons.append("last repeat of each position")
    return frames, ", ".join(reasons) or "single volume"


def center_frame(record: SeriesRecord) -> Optional[FrameRef]:
    """The frame at the middle of the chosen volume (see module docstring)."""
    frames, _ = choose_volume(record)
    if not frames:
        return None
    if frames[0].location is not None:
        frames = sorted(frames, key=lambda f: (f.location if f.location is not None else 0.0))
    return frames[(len(frames) - 1) // 2]


def _rescale(ds, frame: int, arr: np.ndarray) -> np.ndarray:
    from SeqClassifierLib.dicom import tags as T  # pydicom: see read_frame

    slope, intercept = 1.0, 0.0
    try:
        per_frame = ds.get(T.PER_FRAME_FUNCTIONAL_GROUPS)
        shared = ds.get(T.SHARED_FUNCTIONAL_GROUPS)
        item = None
        for groups, idx in ((per_frame, frame), (shared, 0)):
            if groups is not None and len(groups.value) > idx:
                seq = groups.value[idx].get(T.PIXEL_VALUE_TRANSFORMATION_SEQUENCE)
                if seq is not None and len(seq.value):
                    item = seq.value[0]
                    break
        src = item if item is not None else ds
        if T.RESCALE_SLOPE in src:
            slope = float(src[T.RESCALE_SLOPE].value)
        if T.RESCALE_INTERCEPT in src:
            intercept = float(src[T.RESCALE_INTERCEPT].value)
    except (TypeError, ValueError, KeyError):
        pass
    if not math.isfinite(slope) or slope == 0.0:
        slope = 1.0
    if not math.isfinite(intercept):
        intercept = 0.0
    return arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def _mosaic_tile(arr: np.ndarray, tiles: int, index: int) -> np.ndarray:
    grid = int(math.ceil(math.sqrt(tiles)))
    h, w = arr.shape[0] // grid, arr.shape[1] // grid
    r, c = divmod(index, grid)
    return arr[r * h:(r + 1) * h, c * w:(c + 1) * w]


def read_frame(frame: FrameRef) -> np.ndarray:
    """Pixel values (float32, rescaled) of one 2D image; raises :class:`ImageUnavailable`."""
    # pydicom (0.4 s to import) only where a file is read: the command line's model process, which
    # is given its inputs by the header-reading process, imports this module without it
    import pydicom

    from SeqClassifierLib.dicom.pixels import FastPathUnsupported, luminance, pixel_array, read_native_frame

    try:  # classic native single-frame image: pydicom's exact pixels, header parsed once, no pydicom
        arr, ds = read_native_frame(frame.path)
    except FastPathUnsupported:
        pass  # anything else (compressed, multi-frame, colour, ...): pydicom below
    else:
        if frame.mosaic_tiles > 1:
            arr = _mosaic_tile(arr, frame.mosaic_tiles, frame.mosaic_tiles // 2)
        return _rescale(ds, frame.frame, arr)
    try:
        ds = pydicom.dcmread(frame.path, stop_before_pixels=True)
    except Exception as exc:
        raise ImageUnavailable(f"{frame.path}: cannot read header ({exc})") from None
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n_frames = int(ds.get("NumberOfFrames", 1) or 1)
            arr = pixel_array(frame.path, index=frame.frame if n_frames > 1 else None)
    except Exception as exc:
        name = getattr(ts, "name", str(ts)) if ts is not None else "unknown transfer syntax"
        hint = next((v for k, v in _DECODER_HINTS.items() if k.lower() in name.lower()), None)
        msg = f"{frame.path}: cannot decode pixel data ({name}): {exc}"
        if hint and ("decod" in str(exc).lower() or "plugin" in str(exc).lower() or "handler" in str(exc).lower()):
            msg += f"; install a decoder: pip install {hint}"
        raise ImageUnavailable(msg) from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        arr = luminance(arr)  # colour (e.g. a Secondary Capture map): its grey image
    if arr.ndim != 2:
        raise ImageUnavailable(f"{frame.path}: unexpected pixel array shape {arr.shape}")
    if frame.mosaic_tiles > 1:
        arr = _mosaic_tile(arr, frame.mosaic_tiles, frame.mosaic_tiles // 2)
    return _rescale(ds, frame.frame, arr)


def load_center_slice(record: SeriesRecord) -> np.ndarray:
    """The rescaled center slice of a series (float32 2D); raises :class:`ImageUnavailable`."""
    frame = center_frame(record)
    if frame is None:
        raise ImageUnavailable(f"series {record.series_uid}: no images")
    return read_frame(frame)


def normalize_intensity(img: np.ndarray, low: float = 0.5, high: float = 99.5,
                        sorted_values: Optional[np.ndarray] = None) -> np.ndarray:
    """Map the [low, high] percentile range to [0, 1] (robust to outliers and scale).
    ``sorted_values``: the pixels of a float32 ``img`` sorted (:func:`.order_stats.ordered`), when the
    caller has them; ignored if ``img`` holds NaN or infinity."""
    src = img
    img = np.asarray(img, dtype=np.float32)
    finite = np.isfinite(img)
    if not finite.all():
        img = np.where(finite, img, 0.0).astype(np.float32)
        sorted_values = None
    elif sorted_values is not None and np.asarray(src).dtype != np.float32:
        sorted_values = None
    # the same bits as np.percentile(img, [low, high]), from one sort
    lo, hi = order_stats.percentile(img, [low, high], sorted_values)
    if not math.isfinite(lo) or not math.isfinite(hi) or hi - lo < 1e-6:
        return np.zeros_like(img, dtype=np.float32)
    out = np.subtract(img, lo)  # (img - lo) / (hi - lo), clipped, in one buffer: the same bits
    np.divide(out, hi - lo, out=out)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def _resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Pad to square (zeros, centred) and resize with area/bilinear interpolation."""
    h, w = img.shape
    side = max(h, w)
    canvas = np.zeros((side, side), dtype=np.float32)
    y0, x0 = (side - h) // 2, (side - w) // 2
    canvas[y0:y0 + h, x0:x0 + w] = img
    if side == size:
        return canvas
    # Separable linear interpolation with pre-averaging when shrinking: keeps
    # this module free of torch so that discovery and thumbnails stay light.
    if side > size and side % size == 0:  # canvas.reshape(size, f, size, f).mean(axis=(1, 3)), its bits
        return block_mean(canvas, side // size)
    coords = (np.arange(size, dtype=np.float64) + 0.5) * side / size - 0.5
    coords = np.clip(coords, 0, side - 1)
    i0 = np.floor(coords).astype(int)
    i1 = np.minimum(i0 + 1, side - 1)
    t = (coords - i0).astype(np.float32)
    if side > 2 * size:  # box-filter first to avoid aliasing
        k = side // size
        return _resize_square(block_mean(canvas, k), size)  # the means of its k x k blocks
    rows = canvas[i0] * (1 - t)[:, None] + canvas[i1] * t[:, None]
    return rows[:, i0] * (1 - t)[None, :] + rows[:, i1] * t[None, :]


def square_slice(img: np.ndarray, size: int, sorted_values: Optional[np.ndarray] = None) -> np.ndarray:
    """A rescaled 2D slice as the model sees it: percentile-normalised to [0, 1],
    padded to square, resized to ``size`` x ``size`` (float32).  ``sorted_values``: as
    :func:`normalize_intensity`'s."""
    return _resize_square(normalize_intensity(img, sorted_values=sorted_values),
                          int(size)).astype(np.float32, copy=False)


def model_slice(record: SeriesRecord, size: int) -> np.ndarray:
    """The series' center slice as the model's image: ``[size, size]`` float32 in [0, 1].

    The one image path of training and inference (see the module docstring);
    raises :class:`ImageUnavailable`.
    """
    return square_slice(load_center_slice(record), size)


def standardize(square: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``[S, S]`` image in [0, 1] -> float32 ``[3, S, S]``: replicated to 3 channels, ``(x - mean) / std``."""
    sq = np.asarray(square, dtype=np.float32)
    if sq.ndim != 2 or sq.shape[0] != sq.shape[1]:
        raise ValueError(f"standardize needs a square 2D image, got shape {sq.shape}")
    size = sq.shape[0]
    mean_a = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    std_a = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    return ((np.broadcast_to(sq, (3, size, size)) - mean_a) / std_a).astype(np.float32)


def to_model_input(img: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised 2D slice -> float32 array [3, size, size] with the backbone's mean/std."""
    return standardize(_resize_square(np.asarray(img, dtype=np.float32), size), mean, std)


def prepare_image(record: SeriesRecord, size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Center slice of a series as model input [3, size, size]; raises :class:`ImageUnavailable`."""
    return standardize(model_slice(record, size), mean, std)
