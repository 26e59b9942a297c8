"""Small grey thumbnails of each series' center slice, sent with the JSON-lines results.

``classify --format jsonl --thumbnails`` adds ``"thumbnail"`` to every ``series`` event
(:func:`encode`: ``{"width", "height", "format": "gray8", "data": base64}``), so the
Slicer panel draws its images from the child process's output instead of reading the
DICOM files again in the application's GUI thread.
"""

from __future__ import annotations

import base64
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from SeqClassifierLib.app.output import format_jsonl
from SeqClassifierLib.inputs.image import load_center_slice
from SeqClassifierLib.records import ResultRow, SeriesRecord, SkippedFile

SIZE = 64
FORMAT = "gray8"


def thumbnail_uint8(image: Any, size: int = SIZE) -> np.ndarray:
    """A 2D image -> ``size`` x ``size`` uint8 (percentile window, aspect kept, black padding)."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:  # colour or multi-channel: average
        img = img.mean(axis=-1)
    if img.ndim != 2 or img.size == 0:
        return np.zeros((size, size), dtype=np.uint8)
    img = np.where(np.isfinite(img), img, 0.0)
    lo, hi = np.percentile(img, [1.0, 99.0])
    scaled = np.zeros_like(img) if hi - lo < 1e-6 else np.clip((img - lo) / (hi - lo), 0.0, 1.0)
    h, w = scaled.shape
    scale = size / float(max(h, w))
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    rows = np.minimum((np.arange(nh) / scale).astype(int), h - 1)
    cols = np.minimum((np.arange(nw) / scale).astype(int), w - 1)
    small = scaled[rows][:, cols]
    out = np.zeros((size, size), dtype=np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = (small * 255.0 + 0.5).astype(np.uint8)
    return out


def encode(pixels: np.ndarray) -> dict:
    """A uint8 2D array -> the JSON form of a thumbnail."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    h, w = pixels.shape
    return {"width": int(w), "height": int(h), "format": FORMAT,
            "data": base64.b64encode(pixels.tobytes()).decode("ascii")}


def decode(data: Any) -> Optional[np.ndarray]:
    """The JSON form -> uint8 (height, width) array; None when it is missing or malformed."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    try:
        w, h = int(data["width"]), int(data["height"])
        raw = base64.b64decode(str(data["data"]), validate=True)
    except (KeyError, TypeError, ValueError):
        return None
    if w <= 0 or h <= 0 or len(raw) != w * h:
        return None
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w).copy()


def series_thumbnail(record: SeriesRecord, size: int = SIZE) -> Optional[dict]:
    """The encoded thumbnail of one series, or None when its image cannot be read."""
    try:
        return encode(thumbnail_uint8(load_center_slice(record), size))
    except Exception:  # an unreadable image never stops a run: the row just has no picture
        return None


def format_jsonl_with_thumbnails(rows: Sequence[ResultRow], skipped: Iterable[SkippedFile],
                                 records: Sequence[SeriesRecord]) -> str:
    """:func:`~SeqClassifierLib.app.output.format_jsonl`, each series event with its thumbnail."""
    by_key = {r.key: r for r in records}

    def thumbnail(row: ResultRow) -> dict:
        record = by_key.get(row.key)
        return {"thumbnail": series_thumbnail(record) if record is not None else None}
    return format_jsonl(rows, skipped, extras=thumbnail)
